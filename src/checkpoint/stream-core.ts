// The hashing core of dumpAndDelta (stream-delta.ts), shared by the main thread and the
// low-priority worker (stream-worker.ts): pages-*.img files of an image directory that a
// dump is still writing, hashed by file offset, complete 4 KiB pages below each file's
// current size only, with positioned sync reads. A page's position in its pages file is
// its index among the PRESENT pages of the pagemap that names that file.
import { closeSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { xxh64 } from '@node-rs/xxhash';
import { PAGE_SIZE } from './pagemap.js';

// ZERO_PAGE and its hash, as in page-index.ts (not imported: the worker loads this file
// alone and should not pull in the rest of the module).
const ZERO_PAGE: Buffer = Buffer.alloc(PAGE_SIZE);
const ZERO_PAGE_HASH: bigint = xxh64(ZERO_PAGE);

export const PAGES_FILE = /^pages-(\d+)\.img$/;
const READ_PAGES = 256; // 1 MiB reads (4 MiB reads measured slower: they leave the caches before being hashed)
const SLAB_PAGES = 256;
const DIR_SCAN_MS = 4;

/** The streamed state cannot be trusted: dumpAndDelta runs writeDelta after the dump instead. */
export class Fallback extends Error {}

/** Open-addressing set of 64-bit hashes held as (lo, hi) u32 pairs; xxh64's low bits are uniform. */
export class HashSet64 {
  private readonly lo: Uint32Array;
  private readonly hi: Uint32Array;
  private readonly used: Uint8Array;
  private readonly mask: number;

  constructor(hashes: BigUint64Array) {
    let size = 1024;
    while (size < hashes.length * 2) size *= 2;
    this.lo = new Uint32Array(size);
    this.hi = new Uint32Array(size);
    this.used = new Uint8Array(size);
    this.mask = size - 1;
    const h32 = new Uint32Array(hashes.buffer, hashes.byteOffset, hashes.length * 2);
    for (let j = 0; j < hashes.length; j++) this.add(h32[2 * j]!, h32[2 * j + 1]!);
  }

  private add(lo: number, hi: number): void {
    let s = lo & this.mask;
    while (this.used[s]) {
      if (this.lo[s] === lo && this.hi[s] === hi) return;
      s = (s + 1) & this.mask;
    }
    this.used[s] = 1;
    this.lo[s] = lo;
    this.hi[s] = hi;
  }

  has(lo: number, hi: number): boolean {
    let s = lo & this.mask;
    while (this.used[s]) {
      if (this.lo[s] === lo && this.hi[s] === hi) return true;
      s = (s + 1) & this.mask;
    }
    return false;
  }
}

export interface TrackedFile {
  name: string;
  pagesId: number;
  fd: number;
  ino: number;
  /** Complete pages hashed so far (from offset 0). */
  pages: number;
  hashes: BigUint64Array;
  zero: Uint8Array;
  /** Data of the pages kept while streaming (certainly changed or new), by page index. */
  kept: Map<number, Buffer>;
}

/** A PageStreamer's state in a form postMessage can carry (its ArrayBuffers transferred). */
export interface StreamerState {
  files: Array<{
    name: string;
    pagesId: number;
    ino: number;
    pages: number;
    hashes: BigUint64Array;
    zero: Uint8Array;
    /** Kept pages: page index, buffer number in `buffers`, byte offset there. */
    keptIndex: Int32Array;
    keptBuffer: Int32Array;
    keptOffset: Int32Array;
  }>;
  buffers: ArrayBuffer[];
  bytes: number;
  busyMs: number;
  /** performance.timeOrigin + performance.now() of the first hashed page (null: none). */
  firstHashAt: number | null;
}

export class PageStreamer {
  readonly files = new Map<string, TrackedFile>();
  /** Bytes hashed, time spent in pump() while it hashed something. */
  bytes = 0;
  busyMs = 0;
  firstHashAt: number | null = null;
  private lastScan = -Infinity;
  private buf: Buffer = Buffer.allocUnsafe(READ_PAGES * PAGE_SIZE);
  private slab: Buffer = Buffer.allocUnsafe(0);
  private slabUsed = 0;
  private readonly prevSet: HashSet64 | null;

  /** prevHashes: the previous round's non-zero hashes (null: first round, every non-zero page is kept). */
  constructor(
    private readonly dir: string,
    prevHashes: BigUint64Array | null,
  ) {
    this.prevSet = prevHashes === null ? null : new HashSet64(prevHashes);
  }

  /**
   * Discovers pages files (at most every DIR_SCAN_MS unless `final`) and hashes the complete
   * pages below each one's current size; returns early when `yieldNow()` says so (checked
   * after every read). True when anything was hashed.
   */
  pump(final: boolean, yieldNow: () => boolean = () => false): boolean {
    const t0 = performance.now();
    if (final || t0 - this.lastScan >= DIR_SCAN_MS) {
      this.lastScan = t0;
      this.scanDir();
    }
    let progressed = false;
    try {
      for (const f of this.files.values()) {
        const size = fstatSync(f.fd).size;
        if (size < f.pages * PAGE_SIZE) throw new Fallback(`${f.name} shrank from ${f.pages * PAGE_SIZE} to ${size} bytes`);
        while (Math.floor(size / PAGE_SIZE) > f.pages) {
          this.hashMore(f, Math.min(READ_PAGES, Math.floor(size / PAGE_SIZE) - f.pages));
          progressed = true;
          if (!final && yieldNow()) return true;
        }
      }
      return progressed;
    } finally {
      if (progressed) this.busyMs += performance.now() - t0;
    }
  }

  private scanDir(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const name of names) {
      const m = PAGES_FILE.exec(name);
      if (!m || this.files.has(name)) continue;
      let fd: number;
      try {
        fd = openSync(join(this.dir, name), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const cap = 4096;
      this.files.set(name, {
        name,
        pagesId: Number(m[1]),
        fd,
        ino: fstatSync(fd).ino,
        pages: 0,
        hashes: new BigUint64Array(cap),
        zero: new Uint8Array(cap),
        kept: new Map(),
      });
    }
  }

  /** Reads and hashes up to `want` complete pages of f after the ones already hashed. */
  private hashMore(f: TrackedFile, want: number): void {
    const buf = this.buf;
    const bytes = readSync(f.fd, buf, 0, want * PAGE_SIZE, f.pages * PAGE_SIZE);
    const n = Math.floor(bytes / PAGE_SIZE);
    if (n === 0) return;
    if (this.firstHashAt === null) this.firstHashAt = performance.timeOrigin + performance.now();
    if (f.pages + n > f.hashes.length) {
      let cap = f.hashes.length * 2;
      while (cap < f.pages + n) cap *= 2;
      const h = new BigUint64Array(cap);
      h.set(f.hashes.subarray(0, f.pages));
      const z = new Uint8Array(cap);
      z.set(f.zero.subarray(0, f.pages));
      f.hashes = h;
      f.zero = z;
    }
    const base = f.pages;
    const hashes = f.hashes;
    const h32 = new Uint32Array(hashes.buffer, 0, hashes.length * 2);
    const prevSet = this.prevSet;
    const keep: number[] = [];
    for (let k = 0; k < n; k++) {
      const page = buf.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE);
      const h = xxh64(page);
      const i = base + k;
      hashes[i] = h;
      if (h === ZERO_PAGE_HASH && page.equals(ZERO_PAGE)) {
        f.zero[i] = 1;
        continue;
      }
      // An unchanged page has the same hash at the same vaddr in prev: a hash prev does not
      // have at all is a page that goes into the delta.
      if (prevSet === null || !prevSet.has(h32[2 * i]!, h32[2 * i + 1]!)) keep.push(k);
    }
    if (keep.length * 2 > n) {
      // Most of the chunk goes into the delta: keep the read buffer itself, read into a new one.
      for (const k of keep) f.kept.set(base + k, buf.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE));
      this.buf = Buffer.allocUnsafe(READ_PAGES * PAGE_SIZE);
    } else {
      for (const k of keep) f.kept.set(base + k, this.copyToSlab(buf.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE)));
    }
    f.pages += n;
    this.bytes += n * PAGE_SIZE;
  }

  copyToSlab(page: Buffer): Buffer {
    if (this.slabUsed + PAGE_SIZE > this.slab.length) {
      this.slab = Buffer.allocUnsafe(SLAB_PAGES * PAGE_SIZE);
      this.slabUsed = 0;
    }
    page.copy(this.slab, this.slabUsed);
    const out = this.slab.subarray(this.slabUsed, this.slabUsed + PAGE_SIZE);
    this.slabUsed += PAGE_SIZE;
    return out;
  }

  closeAll(): void {
    for (const f of this.files.values()) {
      try {
        closeSync(f.fd);
      } catch {
        /* already closed */
      }
    }
    this.files.clear();
  }

  /** The state for postMessage and the ArrayBuffers to transfer (the streamer is unusable afterwards). */
  exportState(): { state: StreamerState; transfer: ArrayBuffer[] } {
    const buffers: ArrayBuffer[] = [];
    const bufNo = new Map<ArrayBufferLike, number>();
    const files: StreamerState['files'] = [];
    for (const f of this.files.values()) {
      const keptIndex = new Int32Array(f.kept.size);
      const keptBuffer = new Int32Array(f.kept.size);
      const keptOffset = new Int32Array(f.kept.size);
      let k = 0;
      for (const [i, b] of f.kept) {
        let no = bufNo.get(b.buffer);
        if (no === undefined) {
          no = buffers.length;
          bufNo.set(b.buffer, no);
          buffers.push(b.buffer as ArrayBuffer);
        }
        keptIndex[k] = i;
        keptBuffer[k] = no;
        keptOffset[k++] = b.byteOffset;
      }
      files.push({ name: f.name, pagesId: f.pagesId, ino: f.ino, pages: f.pages, hashes: f.hashes, zero: f.zero, keptIndex, keptBuffer, keptOffset });
    }
    const transfer = [...buffers];
    for (const f of files) transfer.push(f.hashes.buffer as ArrayBuffer, f.zero.buffer as ArrayBuffer);
    return { state: { files, buffers, bytes: this.bytes, busyMs: this.busyMs, firstHashAt: this.firstHashAt }, transfer };
  }

  /** Continues from another streamer's state (the files are opened again and must be the same inodes). */
  importState(state: StreamerState): void {
    for (const s of state.files) {
      let fd: number;
      try {
        fd = openSync(join(this.dir, s.name), 'r');
      } catch (err) {
        throw new Fallback(`${s.name} cannot be opened again: ${(err as Error).message}`);
      }
      const kept = new Map<number, Buffer>();
      for (let k = 0; k < s.keptIndex.length; k++) {
        kept.set(s.keptIndex[k]!, Buffer.from(state.buffers[s.keptBuffer[k]!]!, s.keptOffset[k]!, PAGE_SIZE));
      }
      this.files.set(s.name, { name: s.name, pagesId: s.pagesId, fd, ino: s.ino, pages: s.pages, hashes: s.hashes, zero: s.zero, kept });
      if (fstatSync(fd).ino !== s.ino) throw new Fallback(`${s.name} was replaced during the dump`);
    }
    this.bytes += state.bytes;
    this.busyMs += state.busyMs;
    this.firstHashAt = state.firstHashAt;
  }
}
