// CRIU's kernel-data cache. Every CRIU run first probes the kernel (pagemap, netns, vDSO,
// sockets...) and keeps the result in /run/criu.kdat, but only when that file is on tmpfs:
// the cache must not outlive a reboot. Where /run is not tmpfs (this machine kind: ext4),
// every dump and every restore probed again, inside the frozen window of a handoff: the
// restore log showed CRIU's pre-restore step at 65 ms instead of 3 ms with a cache (busybox
// counter on the lab). ensureCriuKdatCache makes the cache CRIU would have made: it runs
// `criu check` once in a private mount namespace whose /run is a tmpfs, keeps the file on
// /dev/shm (tmpfs: gone at reboot, as CRIU wants) and links /run/criu.kdat to it. CRIU loads
// it through the link; a stale one (another CRIU, another kernel) CRIU removes and probes
// again, as without a cache.
import { lstat, readlink, rename, rm, stat, statfs, symlink } from 'node:fs/promises';
import { run } from '../util/exec.js';
import { CloudletError, errorMessage } from '../util/errors.js';

export const KDAT_PATH = '/run/criu.kdat';
/** Where the cache lives when /run is not tmpfs. */
export const KDAT_CACHE = '/dev/shm/cloudlet-criu.kdat';
const TMPFS_MAGIC = 0x01021994;

export type KdatState = 'criu-keeps-it' | 'present' | 'made';

async function isTmpfs(path: string): Promise<boolean> {
  return (await statfs(path)).type === TMPFS_MAGIC;
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

/** What KDAT_PATH is: absent, our link, or something else (left alone). */
async function kdatPathState(): Promise<'absent' | 'ours' | 'other'> {
  try {
    const st = await lstat(KDAT_PATH);
    return st.isSymbolicLink() && (await readlink(KDAT_PATH)) === KDAT_CACHE ? 'ours' : 'other';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
}

/**
 * Makes sure CRIU finds its kernel-data cache (see above). `criu` is the CRIU to probe
 * with (the one the engines run). Idempotent; leaves a /run/criu.kdat that is not ours alone.
 */
export async function ensureCriuKdatCache(criu: string): Promise<KdatState> {
  if (await isTmpfs('/run')) return 'criu-keeps-it';
  const at = await kdatPathState();
  if (at === 'other') return 'present';
  if (at === 'ours' && (await sizeOf(KDAT_CACHE)) > 0) return 'present';
  if (!(await isTmpfs('/dev/shm'))) {
    throw new CloudletError('kdat_cache', "/dev/shm is not tmpfs: nowhere to keep CRIU's kernel-data cache", {
      kind: 'internal',
      context: { path: '/dev/shm' },
    });
  }
  const tmp = `${KDAT_CACHE}.${process.pid}`;
  // criu check may report a missing optional feature (exit 1) and still write the cache.
  const probe = `mount -t tmpfs cloudlet-kdat /run && "$0" check >/dev/null 2>&1; cp /run/criu.kdat "$1"`;
  try {
    await run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', probe, criu, tmp], { timeoutMs: 60_000 });
    await rename(tmp, KDAT_CACHE);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new CloudletError('kdat_cache', `could not make CRIU's kernel-data cache: ${errorMessage(err)}`, { kind: 'internal', cause: err });
  }
  if (at === 'absent') {
    await symlink(KDAT_CACHE, KDAT_PATH).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err; // another set-up linked it meanwhile
    });
  }
  return 'made';
}
