// The engine's floor for a handoff's downtime: a checkpoint and a restore of the same
// container on one cloudlet, through exactly the steps a handoff's final round takes there
// (freeze the cgroup, `runc checkpoint` on the engine's runc state; install the images as a
// checkpoint, `docker start --checkpoint`), with nothing in between: no transfer, no page
// delta, no filesystem sync, no rebuild against a base. A handoff's downtime minus this floor
// is what the migration itself adds; the floor is what this engine, runc and CRIU cost.
// A handoff that restored lazily is compared with a lazy restore in place: the engine starts
// the container with `lazy-pages` and CRIU's lazy-pages daemon fills its memory from the
// installed images, as the destination of a handoff does (engine/lazy-pages.ts).
import { join } from 'node:path';
import { mkdir, rm } from 'node:fs/promises';
import { CloudletError } from '../util/errors.js';
import { DockerEngine } from '../engine/docker.js';
import { freezeCgroup } from '../engine/cgroups.js';
import { engineRuncRoot, runcCheckpoint } from '../engine/runc.js';
import { installCheckpoint, removeInstalledCheckpoint } from '../engine/checkpoint-install.js';
import { linkImagesForDaemon, startLazyPagesDaemon, type LazyPagesDaemon } from '../engine/lazy-pages.js';
import { withRestoreOptions } from '../engine/criu-config.js';
import { engineCriuSettings } from '../lab/engines.js';
import type { LabCloudlet } from '../lab/state.js';

export interface EngineFloor {
  /** Where it was measured. */
  node: string;
  /** Freeze + runc/CRIU checkpoint (the container is stopped by it). */
  checkpointMs: number;
  /** Moving the images where the engine restores from (not on the floor: a handoff rebuilds instead). */
  installMs: number;
  /** `docker start --checkpoint` until the engine reports the container running. */
  restoreMs: number;
  /** checkpointMs + restoreMs. */
  floorMs: number;
  /** How the restore ran (absent in older results: eager). */
  restoreMode?: 'eager' | 'lazy';
  /** Lazy: from the container running to the daemon's last page copied in (not on the floor); null when eager. */
  postCopyMs?: number | null;
}

/** What a handoff adds to the floor: its downtime minus the floor (null without a downtime). */
export function addedByHandoffMs(downtimeMs: number | null, floor: EngineFloor): number | null {
  return downtimeMs === null ? null : downtimeMs - floor.floorMs;
}

/**
 * Checkpoints the running container `name` on `cl` and restores it in place, timing both,
 * eagerly or lazily (`restore`). The container runs again afterwards (from its checkpoint,
 * state kept). A failure before the restore leaves it stopped with its checkpoint installed
 * under the name in the error. A lazy restore edits the engine's CRIU configuration for its
 * duration (as cloudletd does, serialized only within this process): nothing else may
 * restore on that engine meanwhile.
 */
export async function measureEngineFloor(cl: LabCloudlet, name: string, opts: { restore?: 'eager' | 'lazy' } = {}): Promise<EngineFloor> {
  const lazy = opts.restore === 'lazy' ? engineCriuSettings(cl.engine) : null;
  const engine = new DockerEngine(cl.engine.socket, { timeoutMs: 120_000 });
  const details = await engine.inspectContainer(name);
  if (!details.running || details.pid === 0) {
    throw new CloudletError('bench_failed', `engine floor: ${name} is not running on ${cl.name}`, { kind: 'internal' });
  }
  const checkpoint = `floor-${Date.now().toString(36)}`;
  // Beside the daemon's own staging (the lab's scratch tmpfs), as in a handoff.
  const work = join(cl.engine.xdgRuntimeDir, '..', `bench-${checkpoint}`);
  const imageDir = join(work, 'images');
  // The daemon's view of the images lies directly in XDG_RUNTIME_DIR, like containerd's copy,
  // so that the checkpoint's relative links into the stage resolve from it.
  const lazyView = join(cl.engine.xdgRuntimeDir, `cloudlet-lazy-${checkpoint}`);
  let daemon: LazyPagesDaemon | null = null;
  await mkdir(imageDir, { recursive: true });
  try {
    const t0 = performance.now();
    const frozen = await freezeCgroup(details.pid);
    try {
      await runcCheckpoint({
        runcRoot: engineRuncRoot(cl.engine.execRoot),
        containerId: details.id,
        imageDir,
        workDir: join(work, 'work'),
        leaveRunning: false,
      });
    } catch (err) {
      await frozen.thaw();
      throw err;
    }
    const checkpointMs = performance.now() - t0;
    // dockerd sees the exit a little after runc: not on a handoff's path (the restore is elsewhere).
    await engine.waitNotRunning(details.id);
    const t1 = performance.now();
    const installed = await installCheckpoint({
      dataRoot: cl.engine.dataRoot,
      containerId: details.id,
      name: checkpoint,
      imageDir,
      xdgRuntimeDir: cl.engine.xdgRuntimeDir,
    });
    if (lazy) await linkImagesForDaemon(installed.checkpointDir, lazyView);
    const installMs = performance.now() - t1;
    const t2 = performance.now();
    if (lazy) {
      await withRestoreOptions(lazy.criuConfigFile, ['lazy-pages'], async () => {
        daemon = await startLazyPagesDaemon({ criu: lazy.criu, imagesDir: lazyView, workDir: lazy.workDir, logFile: join(work, 'lazy-pages.log') });
        await engine.startFromCheckpoint(details.id, checkpoint);
      });
    } else {
      await engine.startFromCheckpoint(details.id, checkpoint);
    }
    const after = await engine.inspectContainer(details.id);
    const restoreMs = performance.now() - t2;
    if (!after.running) throw new CloudletError('bench_failed', `engine floor: ${name} is not running after its restore on ${cl.name}`, { kind: 'internal' });
    let postCopyMs: number | null = null;
    if (daemon) {
      const t3 = performance.now();
      // Every page must be in before the staged images go.
      await (daemon as LazyPagesDaemon).done;
      postCopyMs = Math.round(performance.now() - t3);
      daemon = null;
    }
    await removeInstalledCheckpoint({ dataRoot: cl.engine.dataRoot, containerId: details.id, name: checkpoint, xdgRuntimeDir: cl.engine.xdgRuntimeDir });
    const round = (ms: number) => Math.round(ms);
    return {
      node: cl.name,
      checkpointMs: round(checkpointMs),
      installMs: round(installMs),
      restoreMs: round(restoreMs),
      floorMs: round(checkpointMs) + round(restoreMs),
      restoreMode: lazy ? 'lazy' : 'eager',
      postCopyMs,
    };
  } finally {
    if (daemon) await (daemon as LazyPagesDaemon).stop();
    await rm(lazyView, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}
