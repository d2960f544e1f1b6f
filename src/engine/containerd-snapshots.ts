// A container's R/W layer on Docker's containerd image store (`containerd-snapshotter`).
//
// With the classic store, `docker inspect` names the R/W layer (GraphDriver.Data.UpperDir).
// With the containerd store it does not (GraphDriver is `{Name: overlayfs, Data: null}` on
// 28.5.2, checked on the lab): the layer is an active snapshot of containerd's overlayfs
// snapshotter, keyed by the container's id in the `moby` namespace, stored as
// DATA_ROOT/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots/<N>/fs with N
// a number only containerd's metadata knows. `ctr snapshots mounts` asks containerd for the
// snapshot's mount (nothing is mounted): its `upperdir=` option is that directory. A twin
// created but not started has its snapshot too, so this works on both sides of a handoff.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CloudletError } from '../util/errors.js';
import { tryRun } from '../util/exec.js';

/** containerd's socket of an engine: dockerd starts its own under EXEC_ROOT/containerd. */
export function containerdSocket(execRoot: string): string {
  return join(execRoot, 'containerd', 'containerd.sock');
}

/**
 * The `ctr` shipped beside the containerd the engine runs (read from that containerd's
 * /proc/PID/exe), else the one on PATH: the client of the same release as the daemon.
 */
export function ctrFor(execRoot: string): string {
  try {
    const pid = Number(readFileSync(join(execRoot, 'containerd', 'containerd.pid'), 'utf8').trim());
    const sibling = join(dirname(readlinkSync(`/proc/${pid}/exe`)), 'ctr');
    if (existsSync(sibling)) return sibling;
  } catch {
    // containerd not started by the engine here, or gone: the one on PATH.
  }
  return 'ctr';
}

/** The `upperdir=` of a `ctr snapshots mounts` answer (`mount -t overlay overlay T -o a=b,upperdir=D,...`). */
export function upperDirOfMountCommand(text: string): string | null {
  const m = /(?:^|[\s,])upperdir=([^,\s]+)/.exec(text);
  return m ? m[1]! : null;
}

/** The upper directory of the container's snapshot, asked of the engine's containerd. */
export async function snapshotUpperDir(opts: { execRoot: string; containerId: string; snapshotter?: string }): Promise<string> {
  const snapshotter = opts.snapshotter ?? 'overlayfs';
  const ctr = ctrFor(opts.execRoot);
  const args = ['-a', containerdSocket(opts.execRoot), '-n', 'moby', 'snapshots', '--snapshotter', snapshotter, 'mounts', '/nonexistent', opts.containerId];
  const r = await tryRun(ctr, args, { timeoutMs: 15_000 });
  const dir = r.exitCode === 0 ? upperDirOfMountCommand(r.stdout) : null;
  if (dir === null) {
    throw new CloudletError('no_upperdir', `containerd has no ${snapshotter} snapshot with an upper directory for container ${opts.containerId.slice(0, 12)}`, {
      kind: 'internal',
      context: { ctr, args, exitCode: r.exitCode, stdout: r.stdout.slice(0, 500), stderr: r.stderr.slice(0, 500) },
    });
  }
  return dir;
}
