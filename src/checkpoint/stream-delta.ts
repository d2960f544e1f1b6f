// Hashing a dump while CRIU writes it. Without soft-dirty every round hashes every page of
// a full dump; done after `runc checkpoint` returns, that hashing is on the downtime path of
// the final round. CRIU writes pages-N.img progressively during memwrite (chunk mode: the
// page pipe is drained a few MiB at a time, measured ~2.5-3 MiB steps for a 267 MiB file),
// the pages in pagemap order, and pagemap-ID.img only at the end (bfd-buffered). So the
// page at byte offset k*4096 of pages-N.img is present page k of the pagemap that names
// pages file N, whatever that pagemap turns out to say: the hashes can be computed by file
// offset while the dump runs, and tied to vaddrs once the pagemaps exist.
//
//   const { dumpResult, delta, overlapMs } = await dumpAndDelta({ dump: () => runcCheckpoint(...), dir, prev });
//
// gives byte for byte the delta `writeDelta(prev, dir)` would give after the dump (checked
// on real CRIU dumps by test/unit/checkpoint-stream.test.ts). While `dump()` runs the image
// directory is polled (every pollMs): every pages-*.img seen is read with positioned reads
// below its current size, complete pages only, and hashed. When dump() resolves the tails
// are hashed, the pagemaps read and the pages classified against `prev` with the hashes
// already computed. Page data for the delta: while streaming, a non-zero page whose hash is
// not among prev's non-zero hashes is certainly changed or new (an unchanged page has the
// same hash at the same vaddr in prev), so it is kept then (copied to a slab, or the whole
// read buffer kept when most of its pages are kept: the first round keeps everything
// without copying). The rare rest (content moved to another vaddr, same as some old page)
// is read back from the file and checked against its hash.
//
// While the dump runs, the hashing runs in a worker thread at nice 19 (stream-worker.ts):
// CRIU's dump is CPU-sensitive (an un-niced hashing thread on the second vCPU made it
// 30-250% slower here, i.e. longer freezes), a niced one only takes CPU nobody else wants.
// After the dump the worker hands its state over and the tail is hashed on this thread at
// the normal priority (it is on the critical path). hasher: 'main' hashes on this thread
// instead, in slices of at most sliceMs between event-loop turns. Anything unexpected (pages files in the directory before the dump, a file
// shrinking or replaced, sizes not matching the pagemaps, a page read back that differs
// from its hash, a read error) abandons the streamed state and runs writeDelta(prev, dir)
// after the dump instead: the result and the errors are then exactly writeDelta's.
import { readdirSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { setPriority } from 'node:os';
import { xxh64 } from '@node-rs/xxhash';
import { UsageError } from '../util/errors.js';
import type { Delta, DeltaPage } from './delta-types.js';
import { writeDelta } from './delta-write.js';
import { classifyPage, emptyCounts, idToPid, presentVaddrs, ZERO_PAGE, type PageIndex } from './page-index.js';
import { listPagemapIds, PAGE_SIZE, PE_PARENT, readPagemap } from './pagemap.js';
import { Fallback, PAGES_FILE, PageStreamer, type TrackedFile } from './stream-core.js';
import type { StreamWorkerData, StreamWorkerMessage } from './stream-worker.js';

export interface DumpAndDeltaOptions<T> {
  /** Runs the dump (runc checkpoint / criu dump) that writes its images into `dir`. */
  dump: () => Promise<T>;
  /** The image directory the dump writes (may not exist yet when dump() starts). */
  dir: string;
  /** Index of the previous round (null: first round, every non-zero page is sent). */
  prev: PageIndex | null;
  /** Where pages are hashed while the dump runs (default 'worker': a thread at `nice`). */
  hasher?: 'worker' | 'main';
  /** Nice value of the worker thread (default 19; null: leave it). */
  nice?: number | null;
  /** Poll interval while no new complete page is there (default 2 ms). */
  pollMs?: number;
  /** hasher 'main': longest run of hashing between two event-loop turns (default 5 ms). */
  sliceMs?: number;
}

export interface DumpAndDeltaStats {
  /** Page bytes hashed before dump() settled (worker: up to one 1 MiB read more). */
  bytesDuringDump: number;
  /** Page bytes hashed in all (0 after a fallback). */
  bytesTotal: number;
  /** From dump() settling to the delta being ready: what is left on the critical path. */
  tailMs: number;
  /** Time spent hashing (reads included) while dump() ran. */
  busyMsDuringDump: number;
  /** Delta pages whose data was kept while streaming. */
  keptPages: number;
  /** Delta pages read back from the pages files at the end. */
  readBackPages: number;
  pagesFiles: number;
  hasher: 'worker' | 'main';
  /** Nice value the worker thread really ran at (null: main thread, or not permitted). */
  nice: number | null;
  /** Why the streamed state was abandoned for writeDelta after the dump (null: it was not). */
  fallback: string | null;
}

export interface DumpAndDeltaResult<T> {
  dumpResult: T;
  delta: Delta;
  /** Wall time during which hashing overlapped the dump: first page hashed to dump() settling. */
  overlapMs: number;
  stats: DumpAndDeltaStats;
}

export interface StreamingDump<T> {
  /** Settles with dump() (for work that must start right after the dump, e.g. fs batches). */
  dumped: Promise<T>;
  /** The delta; rejects with dump()'s error when the dump fails. */
  result: Promise<DumpAndDeltaResult<T>>;
}

/** dump() and writeDelta(prev, dir) with the hashing overlapped with the dump. */
export function dumpAndDelta<T>(opts: DumpAndDeltaOptions<T>): Promise<DumpAndDeltaResult<T>> {
  return startDumpAndDelta(opts).result;
}

/**
 * Like dumpAndDelta, but also hands back the dump's own promise. Both promises are marked
 * handled: a caller may await either or both without an unhandled-rejection warning.
 */
export function startDumpAndDelta<T>(opts: DumpAndDeltaOptions<T>): StreamingDump<T> {
  const tracker = new PagesTracker(opts);
  const dumped = (async () => {
    try {
      // dump() first: its synchronous part cannot have written anything yet when the
      // tracker looks for stale pages files, and the tracker's set-up does not delay it.
      const p = opts.dump();
      tracker.start();
      return await p;
    } finally {
      tracker.dumpSettled();
    }
  })();
  const result = (async (): Promise<DumpAndDeltaResult<T>> => {
    let dumpResult: T;
    try {
      dumpResult = await dumped;
    } catch (err) {
      await tracker.stop();
      throw err;
    }
    const t0 = performance.now();
    const delta = await tracker.finish();
    const stats = tracker.stats;
    stats.tailMs = performance.now() - t0;
    return { dumpResult, delta, overlapMs: tracker.overlapMs(), stats };
  })();
  dumped.catch(() => undefined);
  result.catch(() => undefined);
  return { dumped, result };
}

/** The non-zero hashes of prev (an unchanged page's hash is necessarily among them). */
function prevNonZeroHashes(prev: PageIndex): BigUint64Array {
  let n = 0;
  for (const pp of prev.values()) for (let j = 0; j < pp.hashes.length; j++) if (!pp.zero[j]) n++;
  const out = new BigUint64Array(n);
  let k = 0;
  for (const pp of prev.values()) for (let j = 0; j < pp.hashes.length; j++) if (!pp.zero[j]) out[k++] = pp.hashes[j]!;
  return out;
}

class PagesTracker {
  readonly stats: DumpAndDeltaStats;
  private readonly dir: string;
  private readonly prev: PageIndex | null;
  private streamer: PageStreamer | null = null;
  private prevHashes: BigUint64Array | null = null;
  private running: Promise<void> = Promise.resolve();
  private worker: { control: Int32Array; message: Promise<StreamWorkerMessage | string>; thread: Worker } | null = null;
  private settled = false;
  private settledAt = 0;
  private failure: string | null = null;

  constructor(private readonly opts: DumpAndDeltaOptions<unknown>) {
    this.dir = opts.dir;
    this.prev = opts.prev;
    this.stats = {
      bytesDuringDump: 0,
      bytesTotal: 0,
      tailMs: 0,
      busyMsDuringDump: 0,
      keptPages: 0,
      readBackPages: 0,
      pagesFiles: 0,
      hasher: opts.hasher ?? 'worker',
      nice: null,
      fallback: null,
    };
  }

  /** Called right after dump() was started. */
  start(): void {
    // Pages files that are there before the dump may be truncated and rewritten in place
    // (same inode) by it: what was hashed of them could not be trusted.
    try {
      const stale = readdirSync(this.dir).filter((n) => PAGES_FILE.test(n));
      if (stale.length > 0) this.failure = `pages files in ${this.dir} before the dump (${stale.join(', ')})`;
    } catch {
      /* no directory yet: the dump creates it */
    }
    if (this.failure !== null) return;
    this.prevHashes = this.prev === null ? null : prevNonZeroHashes(this.prev);
    if (this.stats.hasher === 'main') this.running = this.loop();
    else this.startWorker();
  }

  private startWorker(): void {
    const control = new Int32Array(new SharedArrayBuffer(12));
    const data: StreamWorkerData = {
      dir: this.dir,
      prevHashes: this.prevHashes,
      nice: this.opts.nice === undefined ? 19 : this.opts.nice,
      pollMs: this.opts.pollMs ?? 2,
      control: control.buffer as SharedArrayBuffer,
    };
    let worker: Worker;
    try {
      worker = new Worker(new URL('./stream-worker.js', import.meta.url), { workerData: data });
    } catch (err) {
      this.failure = `hasher worker did not start: ${(err as Error).message}`;
      return;
    }
    // A string: the worker failed (then everything is hashed after the dump, by writeDelta).
    const message = new Promise<StreamWorkerMessage | string>((resolve) => {
      worker.once('message', (m: StreamWorkerMessage) => resolve(m));
      worker.once('error', (err) => resolve(`hasher worker failed: ${err.message}`));
      worker.once('exit', (code) => resolve(`hasher worker exited (${code}) without its state`));
    });
    this.worker = { control, message, thread: worker };
  }

  dumpSettled(): void {
    this.settled = true;
    this.settledAt = performance.now();
    const w = this.worker;
    if (!w) return;
    Atomics.store(w.control, 0, 1);
    Atomics.notify(w.control, 0);
    if (Atomics.compareExchange(w.control, 2, 0, 2) === 0) {
      // The dump ended before the worker ran: do not wait for its start-up, hash here.
      this.worker = null;
      void w.thread.terminate().catch(() => undefined);
      this.running = this.hashHere();
      return;
    }
    // From here on the worker is on the critical path: back to the normal priority (it
    // finishes its current read, hands over, and this thread hashes the tail).
    const tid = Atomics.load(w.control, 1);
    if (tid > 0 && this.stats.hasher === 'worker' && (this.opts.nice ?? 19) !== 0) {
      try {
        setPriority(tid, 0);
      } catch {
        /* not permitted (no CAP_SYS_NICE): it finishes its 1 MiB read at nice 19 */
      }
    }
  }

  /** The worker never ran: an empty streamer, everything is hashed by finish(). */
  private async hashHere(): Promise<void> {
    this.streamer = new PageStreamer(this.dir, this.prevHashes);
  }

  overlapMs(): number {
    const first = this.streamer?.firstHashAt ?? null;
    if (first === null) return 0;
    return Math.max(0, performance.timeOrigin + this.settledAt - first);
  }

  /** The dump failed: stop and release everything. */
  async stop(): Promise<void> {
    await this.running;
    await this.worker?.message; // the worker closes its own files
    this.streamer?.closeAll();
  }

  private async loop(): Promise<void> {
    const s = new PageStreamer(this.dir, this.prevHashes);
    this.streamer = s;
    try {
      while (!this.settled) {
        const deadline = performance.now() + (this.opts.sliceMs ?? 5);
        if (s.pump(false, () => performance.now() >= deadline)) await nextTurn();
        else await sleep(this.opts.pollMs ?? 2);
      }
    } catch (err) {
      this.failure = `streaming failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    this.stats.bytesDuringDump = s.bytes;
    this.stats.busyMsDuringDump = s.busyMs;
  }

  /** After the dump: hashes the tails and builds the delta (or falls back to writeDelta). */
  async finish(): Promise<Delta> {
    await this.running;
    if (this.worker) {
      const m = await this.worker.message;
      if (typeof m === 'string') this.failure ??= m;
      else {
        this.stats.nice = m.nice;
        if (m.error !== null) this.failure ??= `streaming failed: ${m.error}`;
        const s = new PageStreamer(this.dir, this.prevHashes);
        this.streamer = s;
        try {
          s.importState(m.state);
        } catch (err) {
          this.failure ??= err instanceof Fallback ? err.message : `streaming failed: ${(err as Error).message}`;
        }
        this.stats.bytesDuringDump = m.state.bytes;
        this.stats.busyMsDuringDump = m.state.busyMs;
      }
    }
    try {
      if (this.failure === null && this.streamer !== null) {
        try {
          return await this.build(this.streamer);
        } catch (err) {
          if (!(err instanceof Fallback)) throw err;
          this.failure = err.message;
        }
      }
    } finally {
      this.streamer?.closeAll();
    }
    this.stats.fallback = this.failure ?? 'nothing was streamed';
    this.stats.bytesTotal = 0;
    this.stats.keptPages = 0;
    return writeDelta(this.prev, this.dir);
  }

  private async build(streamer: PageStreamer): Promise<Delta> {
    try {
      streamer.pump(true);
      for (const f of streamer.files.values()) {
        const st = statSync(join(this.dir, f.name));
        if (st.ino !== f.ino) throw new Fallback(`${f.name} was replaced during the dump`);
        if (st.size !== f.pages * PAGE_SIZE) throw new Fallback(`${f.name}: ${st.size} bytes, not a whole number of pages`);
      }
    } catch (err) {
      if (err instanceof Fallback) throw err;
      throw new Fallback(`streaming failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.stats.bytesTotal = streamer.bytes;
    this.stats.pagesFiles = streamer.files.size;
    const byPagesId = new Map<number, TrackedFile>();
    for (const f of streamer.files.values()) byPagesId.set(f.pagesId, f);

    // The layout, as indexDump would give it, with the hashes computed while streaming.
    const index: PageIndex = new Map();
    const fileOf = new Map<string, TrackedFile | undefined>();
    for (const id of await listPagemapIds(this.dir)) {
      let pm;
      try {
        pm = await readPagemap(this.dir, id); // also checks the pages file's size
      } catch {
        throw new Fallback(`pagemap-${id}.img could not be read after the dump`);
      }
      const vaddrs = presentVaddrs(pm);
      const n = vaddrs.length;
      const f = byPagesId.get(pm.pagesId);
      if (n > 0 && (!f || f.pages !== n)) throw new Fallback(`pages-${pm.pagesId}.img: ${f?.pages ?? 0} pages hashed, pagemap-${id}.img has ${n}`);
      let parentPages = 0;
      for (const e of pm.entries) if (e.flags & PE_PARENT) parentPages += e.nrPages;
      index.set(id, {
        id: pm.id,
        pid: idToPid(pm.id),
        pagesId: pm.pagesId,
        entries: pm.entries,
        vaddrs,
        hashes: f ? f.hashes.slice(0, n) : new BigUint64Array(0),
        zero: f ? f.zero.slice(0, n) : new Uint8Array(0),
        parentPages,
      });
      fileOf.set(id, f);
    }

    // Classification, in writeDelta's order.
    const counts = emptyCounts();
    const pages: DeltaPage[] = [];
    const missing: Array<[DeltaPage, TrackedFile, bigint]> = [];
    for (const pp of index.values()) {
      const before = this.prev?.get(pp.id);
      const f = fileOf.get(pp.id);
      for (let i = 0; i < pp.vaddrs.length; i++) {
        const hash = pp.hashes[i]!;
        const c = classifyPage(before, pp.vaddrs[i]!, hash, pp.zero[i] === 1);
        counts.scanned++;
        counts[c]++;
        if (c !== 'changed' && c !== 'new') continue;
        const data = f!.kept.get(i);
        const p: DeltaPage = { id: pp.id, index: i, vaddr: pp.vaddrs[i]!, data: data ?? ZERO_PAGE };
        if (data) this.stats.keptPages++;
        else missing.push([p, f!, hash]);
        pages.push(p);
      }
    }
    // Pages not kept while streaming (their hash was among prev's): read back and checked.
    for (const [p, f, hash] of missing) {
      const data = streamer.copyToSlab(ZERO_PAGE);
      const got = readSync(f.fd, data, 0, PAGE_SIZE, p.index * PAGE_SIZE);
      if (got !== PAGE_SIZE || xxh64(data) !== hash) throw new Fallback(`${f.name}: page ${p.index} changed after it was hashed`);
      p.data = data;
      this.stats.readBackPages++;
    }
    for (const pp of index.values()) {
      if (pp.parentPages > 0) {
        throw new UsageError(`dump ${this.dir} has ${pp.parentPages} pages in a parent image (pagemap-${pp.id}.img): deltas need full dumps`, {
          context: { dir: this.dir, id: pp.id },
        });
      }
    }
    return { pageSize: PAGE_SIZE, index, pages, counts };
  }
}
