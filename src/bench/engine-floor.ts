// The engine's floor for a handoff's downtime: a checkpoint and a restore of the same
// container on one cloudlet, through exactly the steps a handoff's final round takes there
// (freeze the cgroup, `runc checkpoint` on the engine's runc state; install the images as a
// checkpoint, `docker start --checkpoint`), with nothing in between: no transfer, no page
// delta, no filesystem sync, no rebuild against a base. A handoff's downtime minus this floor
// is what the migration itself adds; the floor is what this engine, runc and CRIU cost.
import { join } from 'node:path';
import { mkdir, rm } from 'node:fs/promises';
import { CloudletError } from '../util/errors.js';
import { DockerEngine } from '../engine/docker.js';
import { freezeCgroup } from '../engine/cgroups.js';
import { engineRuncRoot, runcCheckpoint } from '../engine/runc.js';
import { installCheckpoint, removeInstalledCheckpoint } from '../engine/checkpoint-install.js';
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
}

/** What a handoff adds to the floor: its downtime minus the floor (null without a downtime). */
export function addedByHandoffMs(downtimeMs: number | null, floor: EngineFloor): number | null {
  return downtimeMs === null ? null : downtimeMs - floor.floorMs;
}

/**
 * Checkpoints the running container `name` on `cl` and restores it in place, timing both.
 * The container runs again afterwards (from its checkpoint, state kept). A failure before the
 * restore leaves it stopped with its checkpoint installed under the name in the error.
 */
export async function measureEngineFloor(cl: LabCloudlet, name: string): Promise<EngineFloor> {
  const engine = new DockerEngine(cl.engine.socket, { timeoutMs: 120_000 });
  const details = await engine.inspectContainer(name);
  if (!details.running || details.pid === 0) {
    throw new CloudletError('bench_failed', `engine floor: ${name} is not running on ${cl.name}`);
  }
  const checkpoint = `floor-${Date.now().toString(36)}`;
  // Beside the daemon's own staging (the lab's scratch tmpfs), as in a handoff.
  const work = join(cl.engine.xdgRuntimeDir, '..', `bench-${checkpoint}`);
  const imageDir = join(work, 'images');
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
    await installCheckpoint({ dataRoot: cl.engine.dataRoot, containerId: details.id, name: checkpoint, imageDir, xdgRuntimeDir: cl.engine.xdgRuntimeDir });
    const installMs = performance.now() - t1;
    const t2 = performance.now();
    await engine.startFromCheckpoint(details.id, checkpoint);
    const after = await engine.inspectContainer(details.id);
    const restoreMs = performance.now() - t2;
    if (!after.running) throw new CloudletError('bench_failed', `engine floor: ${name} is not running after its restore on ${cl.name}`);
    await removeInstalledCheckpoint({ dataRoot: cl.engine.dataRoot, containerId: details.id, name: checkpoint, xdgRuntimeDir: cl.engine.xdgRuntimeDir });
    const round = (ms: number) => Math.round(ms);
    return { node: cl.name, checkpointMs: round(checkpointMs), installMs: round(installMs), restoreMs: round(restoreMs), floorMs: round(checkpointMs) + round(restoreMs) };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
