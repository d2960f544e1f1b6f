// Filesystem sync of a container's R/W layer (overlay2 upperdir) and named volumes between
// cloudlets, in rounds: several while the container runs (pre-copy), one after the freeze.
//
// Design: rsync batch mode against a private shadow copy (chosen over a tar + manifest design).
//  - The SOURCE keeps a shadow tree equal to what the destination holds. Round k runs
//      rsync -aHAX --numeric-ids --delete --no-whole-file --only-write-batch=OUT UPPER/ SHADOW/
//    which compares UPPER with SHADOW (size + nanosecond mtime quick check, the whole tree's
//    metadata) and records in OUT only what the destination needs: the full file list
//    (~20 bytes per entry: type, mode, numeric owner, mtime, device numbers, symlink
//    targets, hard-link groups, xattrs, ACLs) plus rolling-checksum deltas of changed files
//    against the version the destination already has. Deletions are implied by the file
//    list (--delete on the reading side).
//  - The shadow is then brought forward by applying OUT to it with exactly the same code
//    the destination runs (applyBatch). So shadow == destination holds by construction,
//    which is what rsync's read-batch requires (deltas name blocks of the destination's
//    current files; on a diverged destination rsync fails a file's verification and then
//    hangs, see the contract below). --write-batch would update the shadow in the same pass, but a
//    failed round would then leave the shadow half-updated while the caller discards the
//    batch; with --only-write-batch a failed round changes nothing and can be retried.
//    The final round (opts.final) skips the shadow update: it is on the downtime path and
//    no later round needs it.
//  - Overlay specifics ride on rsync's normal metadata: whiteouts are character devices 0:0
//    (-D, needs root), opaque directories and origin/impure markers are trusted.overlay.*
//    xattrs (-X copies trusted.* and security.* when run as root).
//  - rsync loses security.capability when it changes a file's owner (chown clears the xattr
//    after rsync has set it; seen with rsync 3.5.0). Every batch therefore carries a
//    getfattr dump of the source's security.capability xattrs, re-applied with
//    `setfattr --restore` after rsync (to the shadow as well as to the destination).
//  - Batch file = rsync batch bytes, then a JSON trailer, its u32 LE length and the magic
//    "CLFSYNC1". The reader streams only the rsync part to `rsync --read-batch=-`.
//
// Measured here (ext4, 2-core VM, rsync 3.5.0; test/integration/fssync-rounds.test.ts prints it):
//  initial round, 1,000 files / 104.9 MB: batch 104.93 MB (+0.03 % overhead); nextBatch
//  1.4-1.9 s (writing the batch and applying it to the shadow), applyBatch 0.8-1.6 s.
//  final round after rewriting 4 KiB in each of 3 files: batch 35.6 KB (~20 KB of it is the
//  file list of all 1,010 entries, the rest the three deltas), nextBatch 113-126 ms,
//  applyBatch 74-109 ms (of which ~20-60 ms is the destination's tree digest). An unchanged
//  tree gives an `empty` batch that is the file list alone.
// Why not tar + manifest: tar carries whole files only (no deltas for a big file with a
// small change), hard links only within one archive, whiteouts and trusted.* xattrs need
// GNU tar flags on both ends, and we would re-implement rsync's diff and delete logic.
//
// Trust (issue 19): a batch comes from a peer cloudlet and is applied as root; it must not
// change anything outside its target directory.
//  - The capability dump is parsed here (xattr-dump.ts) before anything is applied: absolute
//    paths, `..` components, NUL bytes and attributes other than security.capability are
//    refused; after rsync, each path is walked in the target (a symlink as any component but
//    the last is refused, since lsetxattr follows those); setfattr then gets our canonical
//    rendering of the dump, never the peer's bytes.
//  - rsync's receiver (--read-batch takes the same path as a network receive) refuses file
//    names that are absolute or hold `..` ("ABORTING due to unsafe pathname from sender",
//    rsync >= 3.1.1), and an entry whose parent directory is not a directory in the file list
//    ("invalid path from sender", >= 3.1.2); without --keep-dirlinks a symlink found where the
//    list has a directory is replaced by a directory, not followed; rsync 3.5.0 also resolves
//    every receiver-side path with a held-dirfd walk that refuses to leave the destination
//    (CVE-2026-53785/53793/53799 fixes). test/unit/fssync-xattr-dump.test.ts feeds it batches
//    edited to hold such names. We check the batch's option flags against ours
//    (BATCH_STREAM_FLAGS) before running it.
//  - Not used: --safe-links and --munge-links. Both act on the receiver in batch mode, but
//    they drop or break symlinks pointing outside the tree, and a container layer's absolute
//    symlinks (/etc/alternatives/..., /proc/self/fd...) are meant to resolve inside the
//    container's root, not ours: they would break the service. Such a symlink is harmless
//    in the target unless something on the host follows it: treeDigest lstats, setfattr is
//    checked as above, Docker resolves the layer inside the container.
//  - Not covered: a batch may still create anything INSIDE the target that root can:
//    device nodes (-D, needed for overlay whiteouts 0:0; a node of a host disk is left to
//    the container's device cgroup), setuid files, any trusted.*/security.* xattr (-X).
//    The walk-then-setfattr check is not race-free against another writer in the target
//    (none exists for a twin's upperdir; a named volume shared with a running container at
//    the destination would be one). Older rsync (< 3.5.0) lacks the receiver's dirfd walk.
//
// Contract: one FsSyncSource per (directory, destination); batches are applied in order,
// each exactly once, to a destination that started empty. A round whose batch is not
// delivered breaks the shadow == destination invariant: start over with a new source.
// Every batch names the treeDigest (tree-digest.ts) of the tree it was written against and
// applyBatch refuses a destination that differs (a missed, repeated or reordered round):
// rsync itself would hang on such a destination instead of failing.
//
// Modules: this one is the source side (FsSyncSource); apply.ts the receiving side
// (applyBatch); batch-file.ts the batch format and rsync's options; programs.ts runs rsync,
// getfattr and setfattr.
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { ProgramExit } from '../util/spawner.js';
import { applyBatchStep } from './apply.js';
import { appendTrailer, DEFAULT_TIMEOUT_MS, RSYNC_COMMON, RSYNC_PARTIAL, RSYNC_VANISHED, TRAILER_VERSION } from './batch-file.js';
import { FsSyncError } from './errors.js';
import { runChecked } from './programs.js';
import { treeDigest } from './tree-digest.js';

/** Writes of a pre-copy batch that rsync reports partial before the round skips the filesystem. */
const PARTIAL_RETRIES = 4;

export interface BatchStats {
  /** Size of the batch file (what the migration sends). */
  bytes: number;
  /** Entries rsync itemized: created, updated, attribute changes, deletions. */
  files: number;
  /** Wall time of the round on the source (write batch + update shadow). */
  ms: number;
  /** True when the batch changes nothing: the caller may skip sending it. */
  empty: boolean;
  /** Pre-copy: times the batch was written again because a file changed while rsync read it. */
  rewrites: number;
  /** Pre-copy: the tree kept changing under rsync, so this round carries none of its changes. */
  deferred: boolean;
}

export interface FsSyncSourceOptions {
  /** The directory to sync (an upperdir, DATA_ROOT/overlay2/ID/diff, or a volume's _data). */
  sourceDir: string;
  /** Private state of this source (the shadow tree); not inside sourceDir. */
  stateDir: string;
  /** Limit per rsync run (default 30 minutes). */
  timeoutMs?: number;
  /**
   * Nice value for writing batches (rsync, getfattr); null (default): inherited. A handoff
   * writes them beside the memory dump on the same cores: niced, they leave CRIU the CPU.
   */
  nice?: number | null;
}

/** What errors of one round name. */
interface RoundContext {
  sourceDir: string;
  stateDir: string;
  outFile: string;
  round: number;
  [key: string]: unknown;
}

function isInside(child: string, parent: string): boolean {
  const c = resolve(child);
  const p = resolve(parent);
  return c === p || c.startsWith(p.endsWith(sep) ? p : p + sep);
}

/** The source side of a directory's sync: produces one batch per round. */
export class FsSyncSource {
  readonly sourceDir: string;
  readonly stateDir: string;
  private readonly shadowDir: string;
  private readonly timeoutMs: number;
  private readonly nice: number | null;
  private round = 0;
  private busy = false;
  private finished = false;
  private disposed = false;
  private broken: FsSyncError | undefined;
  /** treeDigest of the shadow = of the destination once it applied every batch so far. */
  private base = { digest: '', entries: 0 };

  constructor(opts: FsSyncSourceOptions) {
    this.sourceDir = resolve(opts.sourceDir);
    this.stateDir = resolve(opts.stateDir);
    this.shadowDir = join(this.stateDir, 'shadow');
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.nice = opts.nice ?? null;
    if (isInside(this.stateDir, this.sourceDir) || isInside(this.sourceDir, this.stateDir)) {
      throw new FsSyncError('fssync_usage', 'stateDir and sourceDir must not contain each other', {
        context: { sourceDir: this.sourceDir, stateDir: this.stateDir },
      });
    }
  }

  /** Rounds written so far. */
  get rounds(): number {
    return this.round;
  }

  /**
   * Writes the next round's batch to outFile: everything that changed in sourceDir since the
   * previous batch (the first batch carries the whole tree). With `final: true` (after the
   * freeze) the shadow is not updated and no further rounds are possible.
   */
  async nextBatch(outFile: string, opts: { final?: boolean } = {}): Promise<BatchStats> {
    const final = opts.final === true;
    const ctx: RoundContext = { sourceDir: this.sourceDir, stateDir: this.stateDir, outFile, round: this.round + 1 };
    const out = this.checkRoundAllowed(outFile, ctx);
    this.busy = true;
    const t0 = performance.now();
    try {
      await this.prepareRound(out, ctx);
      const { w, rewrites, deferred, caps } = await this.writeRound(out, final, ctx);
      const files = w.stdout
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim() !== '').length;
      await appendTrailer(out, {
        v: TRAILER_VERSION,
        rsyncBytes: (await stat(out)).size,
        writerExit: w.code ?? 0,
        round: this.round + 1,
        final,
        base: this.base.digest,
        baseEntries: this.base.entries,
        caps: caps.stdout.toString('base64'),
        empty: files === 0,
      });
      // An empty batch leaves the shadow as it is (its digest too): nothing to bring forward.
      if (final) this.finished = true;
      else if (files !== 0) await this.advanceShadow(out, ctx);
      this.round++;
      const bytes = (await stat(out)).size;
      return { bytes, files, ms: performance.now() - t0, empty: files === 0, rewrites, deferred };
    } finally {
      this.busy = false;
    }
  }

  /** Refuses a round on a closed, broken or busy source, or into a bad outFile; its path. */
  private checkRoundAllowed(outFile: string, ctx: RoundContext): string {
    if (this.disposed || this.finished) {
      throw new FsSyncError('fssync_closed', `fssync source for ${this.sourceDir} is ${this.disposed ? 'disposed' : 'finished (final round written)'}`, {
        context: ctx,
      });
    }
    if (this.broken) {
      throw new FsSyncError(
        'fssync_state_lost',
        `fssync source for ${this.sourceDir} lost its shadow state in an earlier round; start over with an empty destination`,
        {
          context: ctx,
          cause: this.broken,
        },
      );
    }
    if (this.busy) throw new FsSyncError('fssync_busy', 'a round is already running for this source', { context: ctx });
    const out = resolve(outFile);
    if (isInside(out, this.sourceDir) || isInside(out, this.shadowDir)) {
      throw new FsSyncError('fssync_usage', 'outFile must not be inside sourceDir or the shadow', { context: ctx });
    }
    return out;
  }

  /** The source must be a directory; a first round starts from an empty shadow. */
  private async prepareRound(out: string, ctx: RoundContext): Promise<void> {
    const st = await stat(this.sourceDir).catch((e: unknown) => {
      throw new FsSyncError('fssync_source_missing', `source directory ${this.sourceDir}: ${(e as Error).message}`, { context: ctx, cause: e });
    });
    if (!st.isDirectory()) throw new FsSyncError('fssync_source_missing', `${this.sourceDir} is not a directory`, { context: ctx });
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    if (this.round === 0) {
      // A fresh source starts from an empty destination: drop any stale shadow.
      await rm(this.shadowDir, { recursive: true, force: true });
      await mkdir(this.shadowDir, { mode: 0o700 });
      this.base = await treeDigest(this.shadowDir);
    }
    await mkdir(dirname(out), { recursive: true });
    await rm(out, { force: true });
    await rm(out + '.sh', { force: true });
  }

  /** rsync's batch of this round (written again while the tree changes under it), and the caps listing. */
  private async writeRound(
    out: string,
    final: boolean,
    ctx: RoundContext,
  ): Promise<{ w: ProgramExit; rewrites: number; deferred: boolean; caps: ProgramExit }> {
    const okCodes = final ? [0, RSYNC_VANISHED] : [0, RSYNC_VANISHED, RSYNC_PARTIAL];
    const writeBatch = async (from: string) => {
      await rm(out, { force: true });
      const r = await runChecked(
        'write-batch',
        'rsync',
        [...RSYNC_COMMON, '--out-format=%i', `--only-write-batch=${out}`, from + '/', this.shadowDir + '/'],
        { timeoutMs: this.timeoutMs, okCodes, nice: this.nice },
        ctx,
      );
      await rm(out + '.sh', { force: true });
      return r;
    };
    // Security capabilities (rsync's batch does not carry them). On a frozen tree (final)
    // the listing runs beside rsync: that round is on the downtime path.
    const listCaps = () =>
      runChecked(
        'caps',
        'getfattr',
        ['-R', '-h', '-P', '-d', '-e', 'hex', '-m', '^security\\.capability$', '.'],
        { cwd: this.sourceDir, timeoutMs: this.timeoutMs, okCodes: final ? [0] : [0, 1], nice: this.nice },
        ctx,
      );
    const finalCaps = final ? listCaps() : null;
    finalCaps?.catch(() => undefined); // awaited below, after rsync's own errors
    // A pre-copy round reads a live tree. Exit 23 (partial) means rsync saw a file change
    // under it (e.g. truncated and rewritten while read): the batch then holds data that
    // fails rsync's whole-file verification, and `--read-batch` does not fail on that, it
    // waits for a resend that a batch never brings (found by the evaluation run: the
    // busybox counter rewrites its file every 0.1 s). So such a batch is never applied:
    // the round is written again, and if the tree keeps changing under it, the round
    // carries no filesystem changes (a batch of the shadow against itself) and the next
    // round (at the latest the final one, on a frozen container) carries them.
    let w = await writeBatch(this.sourceDir);
    let rewrites = 0;
    let deferred = false;
    while (!final && w.code === RSYNC_PARTIAL) {
      if (rewrites === PARTIAL_RETRIES) {
        w = await writeBatch(this.shadowDir);
        deferred = true;
        break;
      }
      rewrites++;
      await new Promise((r) => setTimeout(r, 20 * rewrites));
      w = await writeBatch(this.sourceDir);
    }
    const caps = await (finalCaps ?? listCaps());
    return { w, rewrites, deferred, caps };
  }

  /** Brings the shadow forward with the batch, as the destination will; a failure breaks the source. */
  private async advanceShadow(out: string, ctx: RoundContext): Promise<void> {
    try {
      // The shadow's digest is known (computed after the previous round; nobody else writes it).
      await applyBatchStep(out, this.shadowDir, { timeoutMs: this.timeoutMs, step: 'apply-shadow', knownDigest: this.base.digest });
      this.base = await treeDigest(this.shadowDir);
    } catch (e) {
      this.broken = e instanceof FsSyncError ? e : new FsSyncError('fssync_apply_shadow_failed', String(e), { context: ctx, cause: e });
      throw this.broken;
    }
  }

  /** Removes the shadow (and stateDir when it is then empty). */
  async dispose(): Promise<void> {
    this.disposed = true;
    await rm(this.shadowDir, { recursive: true, force: true });
    await rmdir(this.stateDir).catch(() => undefined);
  }
}
