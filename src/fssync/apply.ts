// The receiving side of fssync (see index.ts for the design and the trust model): applies a
// batch to a directory, after checking the batch and that the directory holds what the
// batch was written against. The source runs the same code on its shadow.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { CAPS_ATTRS, checkBatchHeader, DEFAULT_TIMEOUT_MS, readTrailer, RSYNC_COMMON, RSYNC_PARTIAL, RSYNC_VANISHED, type Trailer } from './batch-file.js';
import { FsSyncError } from './errors.js';
import { runChecked } from './programs.js';
import { treeDigest } from './tree-digest.js';
import { confinedXattrDump, parseXattrDump, renderXattrDump, type XattrDumpEntry } from './xattr-dump.js';

export interface ApplyStepOptions {
  timeoutMs: number;
  /** Names the step in errors: 'apply' at the destination, 'apply-shadow' at the source. */
  step: string;
  /** treeDigest of targetDir when the caller knows it (the source's shadow); else computed. */
  knownDigest?: string;
}

export interface AppliedBatch {
  ms: number;
  trailer: Trailer;
  /** The batch changed nothing (trailer.empty), so rsync did not run. */
  skipped: boolean;
}

/** The target must hold what the batch was written against, and the batch must be complete. */
async function checkTarget(batchFile: string, targetDir: string, trailer: Trailer, opts: ApplyStepOptions): Promise<void> {
  const { step, knownDigest } = opts;
  const have = knownDigest === undefined ? await treeDigest(targetDir) : { digest: knownDigest, entries: trailer.baseEntries };
  if (have.digest !== trailer.base) {
    throw new FsSyncError(
      'fssync_target_diverged',
      `${targetDir} does not hold what batch round ${trailer.round} was written against ` + `(${have.entries} entries here, ${trailer.baseEntries} expected)`,
      {
        context: { step, batchFile, targetDir, round: trailer.round, haveEntries: have.entries, expectedEntries: trailer.baseEntries },
        hint: 'apply every batch of a source once, in order, to a destination that was empty before the first; otherwise start over with a new FsSyncSource and an empty destination',
      },
    );
  }
  // A partial batch (a file changed while rsync read it) would make rsync wait forever for a
  // resend; nextBatch never writes one, so one arriving is refused rather than applied.
  if (trailer.writerExit === RSYNC_PARTIAL) {
    throw new FsSyncError('fssync_partial_batch', `batch round ${trailer.round} was written while files changed under rsync (exit 23): it cannot be applied`, {
      context: { step, batchFile, targetDir, round: trailer.round },
    });
  }
}

/** Re-applies the batch's security.capability dump to the tree rsync left. */
async function restoreCaps(batchFile: string, targetDir: string, trailer: Trailer, caps: XattrDumpEntry[], opts: ApplyStepOptions): Promise<void> {
  // On the tree rsync left: no path may pass through a symlink (see xattr-dump.ts).
  await confinedXattrDump(targetDir, caps);
  const dump = `${batchFile}.caps.${process.pid}`;
  await writeFile(dump, renderXattrDump(caps), { mode: 0o600 });
  try {
    // Pre-copy rounds: a file the dump names may have appeared after rsync's walk; the
    // next round carries it. The final round (frozen source) must apply cleanly.
    // -h before --restore: setfattr applies the dump while it parses its options.
    await runChecked(
      opts.step + '-caps',
      'setfattr',
      ['-h', `--restore=${dump}`],
      { cwd: targetDir, timeoutMs: opts.timeoutMs, okCodes: trailer.final ? [0] : [0, 1] },
      { batchFile, targetDir, round: trailer.round },
    );
  } finally {
    await rm(dump, { force: true });
  }
}

/** Checks a batch and applies it to targetDir (the destination, or the source's shadow). */
export async function applyBatchStep(batchFile: string, targetDir: string, opts: ApplyStepOptions): Promise<AppliedBatch> {
  const t0 = performance.now();
  const trailer = await readTrailer(batchFile);
  // Both checks of what the peer sent come before anything in the target changes.
  await checkBatchHeader(batchFile, trailer, opts.step);
  const caps: XattrDumpEntry[] = parseXattrDump(Buffer.from(typeof trailer.caps === 'string' ? trailer.caps : '', 'base64'), { allowedNames: CAPS_ATTRS });
  // An empty batch changes nothing; rsync would still read its whole file list and stat
  // every entry, on the downtime path when it is the final round of a container that wrote
  // nothing since the last round. The next batch is written against the same base, checked.
  const skipped = trailer.empty === true && trailer.writerExit === 0;
  await mkdir(targetDir, { recursive: true });
  if (!skipped) await applyRsync(batchFile, targetDir, trailer, opts);
  if (caps.length > 0) await restoreCaps(batchFile, targetDir, trailer, caps, opts);
  return { ms: performance.now() - t0, trailer, skipped };
}

/** Checks the target against the batch's base, then lets rsync apply the batch. */
async function applyRsync(batchFile: string, targetDir: string, trailer: Trailer, opts: ApplyStepOptions): Promise<void> {
  const { step, timeoutMs } = opts;
  await checkTarget(batchFile, targetDir, trailer, opts);
  const ok = [0];
  // A pre-copy round in which files vanished replays with the same code (rsync then also
  // skips deletions, on both sides alike).
  if (trailer.writerExit === RSYNC_VANISHED) ok.push(trailer.writerExit);
  await runChecked(
    step,
    'rsync',
    // --timeout: a safety net. rsync waits forever for a resend when a batch's file fails
    // its verification (see nextBatch); an I/O pause of minutes is never a normal apply.
    [...RSYNC_COMMON, '--timeout=300', '--read-batch=-', targetDir.replace(/\/*$/, '/')],
    { timeoutMs, stdinFile: { path: batchFile, end: trailer.rsyncBytes }, okCodes: ok },
    { batchFile, targetDir, round: trailer.round, writerExit: trailer.writerExit },
  );
}

/**
 * Applies a batch written by FsSyncSource.nextBatch to the destination directory (which held
 * exactly the previous batches' result; empty before the first). Run as root.
 */
export async function applyBatch(batchFile: string, targetDir: string, opts: { timeoutMs?: number } = {}): Promise<{ ms: number; skipped: boolean }> {
  const { ms, skipped } = await applyBatchStep(batchFile, targetDir, { timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, step: 'apply' });
  return { ms, skipped };
}
