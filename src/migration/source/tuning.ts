// How the source tunes a handoff to the service's memory size: where pages are hashed, how
// the filesystem batches are niced, which restore the destination is asked for.
import type { RestoreChoice } from '../types.js';

/** Link speed the first decision assumes, before a round has measured the real one. */
export const ASSUMED_LINK_BPS = 100e6;

/** Nice value of the filesystem batch writers (rsync, getfattr) during a handoff. */
const FS_BATCH_NICE = 19;
/** Below this much anonymous memory the pages are hashed on the main thread (see hasherFor). */
const MAIN_HASHER_MAX_BYTES = 16 * 2 ** 20;

/**
 * Where a round's pages are hashed. A worker thread keeps the hashing of a large dump off
 * the event loop and, niced, out of CRIU's way; for a small one its start-up costs more than
 * the hashing (busybox counter, 6 migrations each way on the lab: final capture 215-269 ms
 * hashing on the main thread against 247-349 ms with the worker).
 */
export function hasherFor(memoryBytes: number): 'worker' | 'main' {
  return memoryBytes < MAIN_HASHER_MAX_BYTES ? 'main' : 'worker';
}

/**
 * Nice value of the filesystem batches, written beside the memory dump. For a large dump,
 * niced batches leave it the CPU (lab: final dumps ~50 ms shorter on average, batches no
 * longer). For a small one the dump is over in ~120 ms and the niced final batch was what
 * the round waited for (94-248 ms, busybox counter in bench migrate): not niced there.
 */
export function fsBatchNice(memoryBytes: number): number | null {
  return memoryBytes < MAIN_HASHER_MAX_BYTES ? null : FS_BATCH_NICE;
}

/** From this much anonymous memory on, `restore: auto` asks for a lazy restore (see restoreFor). */
export const LAZY_RESTORE_MIN_BYTES = 128 * 2 ** 20;

/**
 * The restore the final round asks of the destination. A lazy restore (where the destination
 * is configured for it) lets the service run before CRIU has copied its memory in; that copy
 * is what a large service's restore waits for (256 MiB service in bench migrate on the lab:
 * downtime 1474 / 1324 ms lazy against 1839 / 1464 ms eager, same runs). Below ~128 MiB the
 * copy is short and no gain was measured (32 and 64 MiB services: lazy and eager within
 * ~60 ms of each other, either way), so `auto` restores those eagerly: no daemon, no
 * post-copy to wait for before the commit.
 */
export function restoreFor(requested: RestoreChoice | undefined, memoryBytes: number): 'lazy' | 'eager' {
  if (requested === 'lazy' || requested === 'eager') return requested;
  return memoryBytes >= LAZY_RESTORE_MIN_BYTES ? 'lazy' : 'eager';
}
