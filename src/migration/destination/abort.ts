// Destination, rollback (DELETE /v1/incoming/:id): removes everything the handoff made here -
// twin, holder copy, created volumes, staging data - then drops what was held for the address.
import type { DestinationDeps, Incoming } from './incoming.js';
import { cleanupStaging, refillSpare } from './commit.js';

/** Removes what `inc` made here; what was removed, in words. The caller forgets `inc` after. */
export async function abortIncoming(deps: DestinationDeps, inc: Incoming, forget: () => void): Promise<{ removed: string[] }> {
  const removed: string[] = [];
  const { engine } = deps;
  // A background base update must be over before its directory is removed.
  await inc.baseUpdate.catch(() => undefined);
  if (inc.twinId) {
    if (await engine.removeContainer(inc.twinId, { force: true })) removed.push(`container ${inc.twinId.slice(0, 12)}`);
  }
  if (inc.holderId) {
    if (await engine.removeContainer(inc.holderId, { force: true })) removed.push(`network namespace holder ${inc.holderId.slice(0, 12)}`);
  }
  // Only now that no namespace here has the address without its sockets: what was held for
  // it is dropped (its senders retransmit to wherever the source routes the address).
  if (inc.hold) {
    inc.hold.discard();
    const h = await inc.hold.close();
    inc.hold = null;
    if (h && h.held > 0) removed.push(`${h.held} packets held for ${inc.serviceAddress} (dropped)`);
  }
  for (const v of inc.createdVolumes) {
    if (await engine.removeVolume(v)) removed.push(`volume ${v}`);
  }
  await cleanupStaging(deps, inc);
  forget();
  refillSpare(deps, inc);
  return { removed };
}
