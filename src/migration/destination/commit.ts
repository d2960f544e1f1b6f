// Destination, commit: the source removed its copy, the twin is now the service; the staging
// data goes. Also the staging clean-up shared with the abort.
import { rm } from 'node:fs/promises';
import { removeInstalledCheckpoint } from '../../engine/checkpoint-install.js';
import { checkpointName, enterState, type DestinationDeps, type Incoming } from './incoming.js';
import { keepRestoredPages } from './page-cache.js';

export async function commitIncoming(deps: DestinationDeps, inc: Incoming): Promise<void> {
  // The service holds its address here now (it may have left from here once before).
  if (inc.serviceAddress) deps.db.clearMovedAddress(inc.serviceAddress);
  await keepRestoredPages(deps, inc);
  await cleanupStaging(deps, inc);
}

/** The journal's record of a commit, once the handoff is forgotten in memory. */
export function markCommitted(deps: DestinationDeps, inc: Incoming): void {
  enterState(deps, inc, 'done');
  refillSpare(deps, inc);
}

/** After a handoff that took the spare holder: a new one, made outside any handoff's timing. */
export function refillSpare(deps: DestinationDeps, inc: Incoming): void {
  if (inc.holderFrom === 'spare') deps.spareHolder?.refill(deps.log ?? (() => undefined));
}

export async function cleanupStaging(deps: DestinationDeps, inc: Incoming): Promise<void> {
  const { dataRoot, xdgRuntimeDir } = deps;
  await inc.cacheOffer?.close();
  inc.cacheOffer = null;
  await inc.lazyDaemon?.stop();
  if (inc.lazyImagesDir) await rm(inc.lazyImagesDir, { recursive: true, force: true });
  if (inc.twinId) {
    await removeInstalledCheckpoint({ dataRoot, containerId: inc.twinId, name: checkpointName(inc.id), xdgRuntimeDir });
  }
  await rm(inc.stageDir, { recursive: true, force: true });
  if (xdgRuntimeDir !== null) await deps.restores.pruneCopiesIfIdle(xdgRuntimeDir);
}
