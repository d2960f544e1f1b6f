// Destination, restore (final round): builds the final image directory and starts the twin
// from it, then lets the packets held for the service address through (or routes the address
// here), and - lazy restore - waits until every page is in.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { PacketHoldStats } from '../../network/packet-hold.js';
import { CloudletError, errorMessage } from '../../util/errors.js';
import { checkpointPaths, installCheckpoint, STAGE_DIR } from '../../engine/checkpoint-install.js';
import { LazyPagesError, linkImagesForDaemon, startLazyPagesDaemon, type LazyPagesDaemon, type LazyRestoreConfig } from '../../engine/lazy-pages.js';
import { withRestoreOptions, type CriuRestoreOption } from '../../engine/criu-config.js';
import { rebuildImageDir } from '../../checkpoint/delta-rebuild.js';
import type { Delta } from '../../checkpoint/delta-types.js';
import { FAULT_STALL_MS, type FaultPoint } from '../types.js';
import { checkpointName, enterState, type DestinationDeps, type Incoming } from './incoming.js';

/** Directly in $XDG_RUNTIME_DIR like containerd's copies, so that the images' relative links resolve. */
export const LAZY_IMAGES_PREFIX = 'cloudlet-lazy-';
/** Post-copy of 256 MiB on this machine takes ~0.2 s; a daemon still busy after this has hung. */
const POST_COPY_TIMEOUT_MS = 60_000;

export interface FinalRestoreOptions {
  delta: Delta;
  /** The final round's small image files. */
  smallDir: string;
  inject: FaultPoint | undefined;
  eagerRestore: boolean;
  /** Records a milestone of the restore (the round's spans). */
  mark?: (name: string) => void;
}

export interface Restored {
  restoreMs: number;
  announceMs: number | null;
  /** performance.now() when the restored service was reachable. */
  reachableAt: number;
  hold: PacketHoldStats | null;
  postCopyMs: number | null;
}

async function waitPostCopy(lazy: LazyPagesDaemon, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new LazyPagesError(`CRIU's lazy-pages daemon (pid ${lazy.pid}) did not finish within ${timeoutMs / 1000} s`, { pid: lazy.pid })),
      timeoutMs,
    );
  });
  try {
    await Promise.race([lazy.done, timeout]);
  } catch (err) {
    await lazy.stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Builds the final image directory and starts the twin from it. With a base from pre-copy
 * and a known XDG_RUNTIME_DIR, the directory holds only the pages that changed and a
 * relative `parent` link to the base (CRIU parent images): containerd copies a few MB,
 * not the whole memory. Without a base (stop-and-copy), the full directory is installed
 * with its page files staged outside containerd's copy (installCheckpoint).
 */
export async function finalRestore(deps: DestinationDeps, inc: Incoming, o: FinalRestoreOptions): Promise<Restored> {
  const { xdgRuntimeDir } = deps;
  const name = checkpointName(inc.id);
  const lazyCfg = xdgRuntimeDir !== null && !o.eagerRestore ? deps.lazyRestore : null;
  // Lazy restore: CRIU's lazy-pages daemon reads the images from a view of its own, beside
  // containerd's copy (see linkImagesForDaemon and RebuildOptions.lazyView).
  const lazyDir = lazyCfg ? join(xdgRuntimeDir!, `${LAZY_IMAGES_PREFIX}${inc.twinId}-${name}`) : null;
  if (lazyDir !== null) {
    await rm(lazyDir, { recursive: true, force: true });
    inc.lazyImagesDir = lazyDir;
  }
  const checkpointDir = await buildFinalImages(deps, inc, o, lazyDir);
  o.mark?.('imagesBuilt');
  enterState(deps, inc, 'restoring');
  if (o.inject === 'before-restore') {
    throw new CloudletError('injected_fault', 'injected fault: the destination fails before the restore', { kind: 'internal' });
  }
  // Fault injection (lab only): a window in which a test kills this cloudlet's engine.
  if (o.inject === 'stall-before-restore') await new Promise((r) => setTimeout(r, FAULT_STALL_MS));
  const t1 = performance.now();
  await startTwin(deps, inc, { name, checkpointDir, lazy: lazyCfg && lazyDir !== null ? { cfg: lazyCfg, dir: lazyDir } : null });
  o.mark?.('engineStarted');
  const after = await deps.engine.inspectContainer(inc.twinId);
  o.mark?.('inspected');
  if (!after.running) {
    throw new CloudletError('restore_failed', `the restored container ${inc.name} is not running after the start`, {
      kind: 'internal',
      context: { twinId: inc.twinId },
    });
  }
  const restoreMs = performance.now() - t1;
  const released = await releaseService(deps, inc);
  o.mark?.('released');
  return { restoreMs, ...released };
}

/**
 * `docker start --checkpoint` of the twin, with the CRIU options this restore needs added to
 * the engine's configuration for it alone: lazy-pages (its daemon started first) and tcp-close
 * (the source's final dump closed the connections). Without either it still takes its turn.
 */
async function startTwin(
  deps: DestinationDeps,
  inc: Incoming,
  o: { name: string; checkpointDir: string; lazy: { cfg: LazyRestoreConfig; dir: string } | null },
): Promise<void> {
  const start = () => deps.restores.run(() => deps.engine.startFromCheckpoint(inc.twinId, o.name));
  const options: CriuRestoreOption[] = [...(o.lazy ? (['lazy-pages'] as const) : []), ...(inc.tcpClose ? (['tcp-close'] as const) : [])];
  // tcp-close without a file is refused at prepare (tcpCloseUnsupported); lazy restores name theirs.
  const configFile = deps.criuConfigFile ?? o.lazy?.cfg.criuConfigFile ?? null;
  const lazy = o.lazy;
  if (lazy) await linkImagesForDaemon(o.checkpointDir, lazy.dir);
  await withRestoreOptions(configFile, options, async () => {
    if (lazy) {
      inc.lazyDaemon = await startLazyPagesDaemon({
        criu: lazy.cfg.criu,
        imagesDir: lazy.dir,
        workDir: lazy.cfg.workDir,
        logFile: join(inc.stageDir, 'lazy-pages.log'),
      });
    }
    await start();
  });
}

/** The final image directory, installed as the twin's checkpoint; returns containerd's checkpoint dir. */
async function buildFinalImages(deps: DestinationDeps, inc: Incoming, o: FinalRestoreOptions, lazyDir: string | null): Promise<string> {
  const { dataRoot, xdgRuntimeDir } = deps;
  const name = checkpointName(inc.id);
  const { checkpointDir } = checkpointPaths({ dataRoot, containerId: inc.twinId, name, xdgRuntimeDir });
  if (inc.baseDir !== null && xdgRuntimeDir !== null) {
    const link = `../${STAGE_DIR}/${inc.twinId}-${name}/base`;
    await rebuildImageDir({
      baseDir: inc.baseDir,
      delta: o.delta,
      smallImagesDir: o.smallDir,
      outDir: checkpointDir,
      parent: { dir: inc.baseDir, link },
      ...(lazyDir !== null ? { lazyView: lazyDir } : {}),
    });
  } else {
    const full = join(inc.stageDir, 'final');
    await rm(full, { recursive: true, force: true });
    await rebuildImageDir({ baseDir: inc.baseDir, delta: o.delta, smallImagesDir: o.smallDir, outDir: full });
    if (inc.baseDir !== null) await rm(inc.baseDir, { recursive: true, force: true });
    await installCheckpoint({ dataRoot, containerId: inc.twinId, name, imageDir: full, xdgRuntimeDir });
  }
  return checkpointDir;
}

/**
 * The twin runs: the packets held since the source moved the address (takeAddress) go on now
 * that the sockets are restored: not before, or a segment reaching the twin's network
 * namespace after Docker gave it the address but before CRIU restored the connection would be
 * answered with a reset (seen in the lab). Then a lazy restore's post-copy is waited for.
 */
async function releaseService(deps: DestinationDeps, inc: Incoming): Promise<Omit<Restored, 'restoreMs'>> {
  let announceMs: number | null = null;
  let hold: PacketHoldStats | null = null;
  const svc = deps.serviceNetwork;
  if (inc.hold) inc.hold.release();
  // A source that did not move the address before its freeze: routed here only now.
  else if (inc.serviceAddress !== null && svc) announceMs = await svc.announce(inc.serviceAddress);
  const reachableAt = performance.now();
  if (inc.hold) {
    // The service runs here: a hold that cannot report its figures fails nothing.
    hold = await inc.hold.close().catch((err: unknown) => {
      deps.log?.(`migration ${inc.id}: ${errorMessage(err)}`);
      return null;
    });
    inc.hold = null;
  }
  // Lazy restore: the service runs and answers; the round is answered (and the source may
  // remove its copy) only once every page is in. A daemon failure fails the handoff.
  let postCopyMs: number | null = null;
  if (inc.lazyDaemon) {
    const t2 = performance.now();
    await waitPostCopy(inc.lazyDaemon, POST_COPY_TIMEOUT_MS);
    postCopyMs = performance.now() - t2;
  }
  return { announceMs, reachableAt, hold, postCopyMs };
}
