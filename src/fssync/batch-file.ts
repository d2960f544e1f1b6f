// The batch file fssync writes and reads (see index.ts for the design): rsync batch bytes,
// then a JSON trailer, its u32 LE length and the magic "CLFSYNC1"; the rsync options both
// sides run with, and the checks a received batch passes before anything is applied.
import { appendFile, open } from 'node:fs/promises';
import { FsSyncError } from './errors.js';

// Options common to writing and reading: archive (incl. -D devices/specials), hard links,
// ACLs, xattrs, numeric owners, deletions, deltas even for local paths.
// --modify-window=-1: the quick check compares mtimes to the nanosecond; rsync's default
// compares whole seconds and misses a same-size rewrite within the second of the last round.
// A pre-copy round reads files that may be written meanwhile: a write after rsync's lstat
// gets a newer mtime (kernels >= 6.13 give a fine-grained stamp once mtime was queried), so
// the next round sees it; the final round runs on a frozen container.
// overlayfs's origin/impure/nlink xattrs hold file handles of the SOURCE's lower layers:
// meaningless on another host, and with -H they make rsync 3.2 fail to apply a batch
// ("stat DIR failed") when a whiteout (nlink 2: shared with overlay's work dir) sits in a
// directory carrying trusted.overlay.origin. Opaque, redirect and metacopy markers are kept.
export const RSYNC_COMMON = [
  '-aHAX',
  '--numeric-ids',
  '--delete',
  '--no-whole-file',
  '--modify-window=-1',
  '--filter=-x trusted.overlay.origin',
  '--filter=-x trusted.overlay.impure',
  '--filter=-x trusted.overlay.nlink',
] as const;
/**
 * The data-stream flags a batch written with RSYNC_COMMON starts with (an int32 LE, rsync's
 * batch.c flag_ptr[]): recurse, uid, gid, links, devices, hard links, xfer-dirs, ACLs,
 * xattrs. rsync's reader takes these from the batch, overriding its own options; a batch
 * asking for others (inplace, append, iconv, checksum, compression) was not written by
 * nextBatch and is refused. Change it with RSYNC_COMMON.
 */
const BATCH_STREAM_FLAGS = 0x0cbf;
/** Oldest rsync protocol accepted in a batch (30: rsync 3.0, varint file lists). */
const BATCH_MIN_PROTOCOL = 30;
/** The one attribute the capability dump carries (see nextBatch's getfattr). */
export const CAPS_ATTRS = ['security.capability'] as const;
const MAGIC = Buffer.from('CLFSYNC1', 'ascii');
export const TRAILER_VERSION = 1;
export const DEFAULT_TIMEOUT_MS = 30 * 60_000;
/** rsync exit codes: 23 partial transfer (some files/attrs not transferred), 24 files vanished. */
export const RSYNC_PARTIAL = 23;
export const RSYNC_VANISHED = 24;

export interface Trailer {
  v: number;
  /** Length of the rsync batch at the start of the file. */
  rsyncBytes: number;
  /** Exit code of the writing rsync: 0, or 23/24 in a pre-copy round (the reader may see it too). */
  writerExit: number;
  /** Round number, 1-based. */
  round: number;
  final: boolean;
  /** treeDigest of the destination this batch applies to (the shadow before this round). */
  base: string;
  baseEntries: number;
  /** base64 of `getfattr -R -h -P -d -e hex -m ^security\.capability$ .` run in the source. */
  caps: string;
  /**
   * rsync itemized no change (no file, directory, attribute or deletion): applying the batch
   * would leave the target as it is, so a reader may skip it. Absent in older batches.
   */
  empty?: boolean;
}

export async function readTrailer(batchFile: string): Promise<Trailer> {
  let fh;
  try {
    fh = await open(batchFile, 'r');
  } catch (e) {
    throw new FsSyncError('fssync_batch_unreadable', `cannot open batch ${batchFile}: ${(e as Error).message}`, {
      context: { step: 'trailer', batchFile },
      cause: e,
    });
  }
  try {
    const { size } = await fh.stat();
    const tailLen = 4 + MAGIC.length;
    const bad = (why: string): FsSyncError =>
      new FsSyncError('fssync_batch_invalid', `${batchFile} is not a fssync batch: ${why}`, {
        context: { step: 'trailer', batchFile, size },
      });
    if (size < tailLen) throw bad('too short');
    const tail = Buffer.alloc(tailLen);
    await fh.read(tail, 0, tailLen, size - tailLen);
    if (!tail.subarray(4).equals(MAGIC)) throw bad('no trailer magic (truncated or foreign file)');
    const jsonLen = tail.readUInt32LE(0);
    if (jsonLen > size - tailLen) throw bad('trailer length out of range');
    const json = Buffer.alloc(jsonLen);
    await fh.read(json, 0, jsonLen, size - tailLen - jsonLen);
    let t: Trailer;
    try {
      t = JSON.parse(json.toString('utf8')) as Trailer;
    } catch {
      throw bad('trailer is not JSON');
    }
    if (t.v !== TRAILER_VERSION) throw bad(`trailer version ${String(t.v)}, expected ${TRAILER_VERSION}`);
    if (!Number.isInteger(t.rsyncBytes) || t.rsyncBytes !== size - tailLen - jsonLen) throw bad('length mismatch');
    return t;
  } finally {
    await fh.close();
  }
}

/** The rsync part's stream flags and protocol must be what nextBatch writes (see BATCH_STREAM_FLAGS). */
export async function checkBatchHeader(batchFile: string, trailer: Trailer, step: string): Promise<void> {
  const head = Buffer.alloc(8);
  let got = 0;
  const fh = await open(batchFile, 'r').catch((e: unknown) => {
    throw new FsSyncError('fssync_batch_unreadable', `cannot open batch ${batchFile}: ${(e as Error).message}`, { context: { step, batchFile }, cause: e });
  });
  try {
    if (trailer.rsyncBytes >= head.length) got = (await fh.read(head, 0, head.length, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  const flags = got === head.length ? head.readInt32LE(0) : null;
  const protocol = got === head.length ? head.readInt32LE(4) : null;
  if (flags !== BATCH_STREAM_FLAGS || protocol === null || protocol < BATCH_MIN_PROTOCOL) {
    throw new FsSyncError(
      'fssync_batch_options',
      `batch round ${trailer.round} was not written with fssync's rsync options ` +
        `(stream flags ${flags === null ? 'missing' : '0x' + (flags >>> 0).toString(16)}, expected 0x${BATCH_STREAM_FLAGS.toString(16)}; protocol ${protocol ?? 'missing'}, at least ${BATCH_MIN_PROTOCOL})`,
      { context: { step, batchFile, round: trailer.round, flags, protocol } },
    );
  }
}

/** Appends the trailer to a batch file rsync has written. */
export async function appendTrailer(batchFile: string, trailer: Trailer): Promise<void> {
  const json = Buffer.from(JSON.stringify(trailer), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length, 0);
  await appendFile(batchFile, Buffer.concat([json, len, MAGIC]));
}
