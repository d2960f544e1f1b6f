// Page index: every PRESENT page of a dump directory, keyed by (pagemap id, vaddr), with
// its xxh64 hash and a zero flag. Pre-copy compares the index of dump N with that of dump
// N-1 to find the pages that changed: this replaces CRIU's soft-dirty tracking, which the
// kernel here (and every arm64 kernel) lacks.
//
// Keys: a PageIndex is keyed by the pagemap id, i.e. what follows "pagemap-" in the file
// name: the pid as a decimal string for a process ("1234"), "shmem-N" for anonymous shared
// memory. `pid` holds the number for process pagemaps.
//
// Hash: xxh64 (seed 0) from @node-rs/xxhash, ~3 GB/s on 4 KiB pages here (xxhash-wasm's
// h64Raw measured ~2.5 GB/s). Identity by hash means a changed page whose new content
// collides with the old one's 64-bit hash would not be resent: probability 2^-64 per page.
// Zero pages cost nothing extra: a page is zero when its hash equals the zero page's hash
// AND a memcmp against a zero page confirms it (the memcmp only runs on that rare match).
import { open } from 'node:fs/promises';
import { xxh64 } from '@node-rs/xxhash';
import { ImageFormatError } from './image-file.js';
import { listPagemapIds, PAGE_SIZE, PE_PARENT, PE_PRESENT, pagesPath, presentPageCount, readPagemap, type Pagemap, type PagemapEntry } from './pagemap.js';

export const ZERO_PAGE: Buffer = Buffer.alloc(PAGE_SIZE);
export const ZERO_PAGE_HASH: bigint = xxh64(ZERO_PAGE);

export function hashPage(page: Uint8Array): bigint {
  return xxh64(page);
}

export function isZeroPage(page: Buffer, hash: bigint): boolean {
  return hash === ZERO_PAGE_HASH && page.equals(ZERO_PAGE);
}

/** The present pages of one pagemap, in pagemap order (= ascending vaddr). */
export interface ProcessPages {
  id: string;
  /** The pid for process pagemaps, null for shmem and other non-process pagemaps. */
  pid: number | null;
  pagesId: number;
  /** The pagemap's entries (all of them, not only PRESENT). */
  entries: PagemapEntry[];
  /** vaddr of the i-th present page; ascending. */
  vaddrs: Float64Array;
  hashes: BigUint64Array;
  /** 1 when the i-th present page is all zeros. */
  zero: Uint8Array;
  /** Pages of PARENT entries: their data is in a parent directory and is not indexed. */
  parentPages: number;
}

export type PageIndex = Map<string, ProcessPages>;

export function idToPid(id: string): number | null {
  return /^\d+$/.test(id) ? Number(id) : null;
}

/** Expands the PRESENT entries into one vaddr per page. */
export function presentVaddrs(pm: Pick<Pagemap, 'entries'>): Float64Array {
  const out = new Float64Array(presentPageCount(pm));
  let k = 0;
  for (const e of pm.entries) {
    if (!(e.flags & PE_PRESENT)) continue;
    for (let j = 0; j < e.nrPages; j++) out[k++] = e.vaddr + j * PAGE_SIZE;
  }
  return out;
}

/** Index of `v` in the ascending array (vaddrs, sorted hashes), or -1. */
export function sortedIndexOf<T extends number | bigint>(sorted: { readonly length: number; readonly [i: number]: T }, v: T): number {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const x = sorted[mid]!;
    if (x === v) return mid;
    if (x < v) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Index of vaddr in the ascending array, or -1. */
export function findPage(vaddrs: Float64Array, vaddr: number): number {
  return sortedIndexOf(vaddrs, vaddr);
}

/** Called for every present page; `page` is only valid during the call (copy to keep it). */
export type PageVisitor = (pp: ProcessPages, index: number, page: Buffer, hash: bigint, zero: boolean) => void;

const CHUNK_PAGES = 256; // 1 MiB reads

/**
 * Streams pages-N.img of one pagemap in 1 MiB reads (two buffers: the next read is in
 * flight while the current chunk is hashed) and calls `each` for every page.
 */
export async function streamPages(dir: string, pm: Pagemap, total: number, each: (index: number, page: Buffer) => void): Promise<void> {
  if (total === 0) return;
  const path = pagesPath(dir, pm.pagesId);
  const fh = await open(path, 'r');
  try {
    const bufs = [Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE), Buffer.allocUnsafe(CHUNK_PAGES * PAGE_SIZE)];
    const readChunk = async (first: number, buf: Buffer): Promise<number> => {
      const want = Math.min(CHUNK_PAGES, total - first) * PAGE_SIZE;
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, first * PAGE_SIZE + got);
        if (bytesRead === 0) {
          throw new ImageFormatError(path, first * PAGE_SIZE + got, `pages file ends early: expected ${total} pages`);
        }
        got += bytesRead;
      }
      return want / PAGE_SIZE;
    };
    let first = 0;
    let which = 0;
    let pending: Promise<number> = readChunk(0, bufs[0]!);
    while (first < total) {
      const n = await pending;
      const buf = bufs[which]!;
      const next = first + n;
      if (next < total) pending = readChunk(next, bufs[which ^ 1]!);
      for (let i = 0; i < n; i++) each(first + i, buf.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
      first = next;
      which ^= 1;
    }
  } finally {
    await fh.close();
  }
}

export interface IndexOptions {
  onPage?: PageVisitor;
}

/** Reads one pagemap and hashes its present pages. */
export async function indexPagemap(dir: string, id: string, opts: IndexOptions = {}): Promise<ProcessPages> {
  const pm = await readPagemap(dir, id);
  const vaddrs = presentVaddrs(pm);
  const n = vaddrs.length;
  let parentPages = 0;
  for (const e of pm.entries) if (e.flags & PE_PARENT) parentPages += e.nrPages;
  const pp: ProcessPages = {
    id: pm.id,
    pid: idToPid(pm.id),
    pagesId: pm.pagesId,
    entries: pm.entries,
    vaddrs,
    hashes: new BigUint64Array(n),
    zero: new Uint8Array(n),
    parentPages,
  };
  const onPage = opts.onPage;
  await streamPages(dir, pm, n, (i, page) => {
    const h = xxh64(page);
    const z = h === ZERO_PAGE_HASH && page.equals(ZERO_PAGE);
    pp.hashes[i] = h;
    if (z) pp.zero[i] = 1;
    if (onPage) onPage(pp, i, page, h, z);
  });
  return pp;
}

/** Indexes every pagemap-*.img of a dump directory. */
export async function indexDump(dir: string, opts: IndexOptions = {}): Promise<PageIndex> {
  const index: PageIndex = new Map();
  for (const id of await listPagemapIds(dir)) index.set(id, await indexPagemap(dir, id, opts));
  return index;
}

export function indexPageCount(index: PageIndex): number {
  let n = 0;
  for (const pp of index.values()) n += pp.vaddrs.length;
  return n;
}

export interface PageDiffCounts {
  /** Present pages in the current dump: scanned = zero + unchanged + changed + new. */
  scanned: number;
  /** Non-zero, same (id, vaddr) in prev with the same hash: not sent. */
  unchanged: number;
  /** Non-zero, same (id, vaddr) in prev with another hash (or zero in prev): sent. */
  changed: number;
  /** All-zero pages: never sent, the receiver zero-fills them. */
  zero: number;
  /** Non-zero and absent from prev: sent. */
  new: number;
}

export interface PageRef {
  id: string;
  vaddr: number;
  /** Index among the current pagemap's present pages. */
  index: number;
}

export interface PageDiff extends PageDiffCounts {
  /** changed + new pages, ordered by pagemap id then vaddr. */
  toSend: PageRef[];
}

export function emptyCounts(): PageDiffCounts {
  return { scanned: 0, unchanged: 0, changed: 0, zero: 0, new: 0 };
}

export type PageClass = 'zero' | 'unchanged' | 'changed' | 'new';

/** How page (vaddr, hash, zero) of the current dump compares with prev (undefined: no such pagemap before). */
export function classifyPage(prev: ProcessPages | undefined, vaddr: number, hash: bigint, zero: boolean): PageClass {
  if (zero) return 'zero';
  if (!prev) return 'new';
  const j = findPage(prev.vaddrs, vaddr);
  if (j < 0) return 'new';
  return prev.zero[j] === 0 && prev.hashes[j] === hash ? 'unchanged' : 'changed';
}

/** Compares the current dump's index with the previous one (null: first round, all new). */
export function diffPageIndex(prev: PageIndex | null, cur: PageIndex): PageDiff {
  const d: PageDiff = { ...emptyCounts(), toSend: [] };
  for (const pp of cur.values()) {
    const before = prev?.get(pp.id);
    for (let i = 0; i < pp.vaddrs.length; i++) {
      const vaddr = pp.vaddrs[i]!;
      const c = classifyPage(before, vaddr, pp.hashes[i]!, pp.zero[i] === 1);
      d.scanned++;
      d[c]++;
      if (c === 'changed' || c === 'new') d.toSend.push({ id: pp.id, vaddr, index: i });
    }
  }
  return d;
}
