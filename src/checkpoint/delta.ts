// Page deltas between two full dumps (`criu dump --leave-running` rounds, then the final
// dump), and the receiver side that turns a base directory plus a delta back into a
// complete CRIU image directory that `criu restore` accepts.
//
// Sender, round N:  delta = await writeDelta(prevIndex, dumpDirN); send encodeDelta(delta)
//                   (or its chunks) and keep delta.index as prevIndex for round N+1.
// Receiver:         rebuilt = rebuildImageDir({ baseDir: rebuilt dir of round N-1 or null,
//                   delta, smallImagesDir: non-pages files of dump N (or null for a
//                   pages-only intermediate round), outDir }).
//
// ---------------------------------------------------------------- Delta wire format v1
// All integers little-endian. A delta is self-describing: it carries the complete page
// layout of the current dump (every pagemap, with the xxh64 hash and zero flag of every
// present page) plus the data of the pages the receiver does not have yet.
//
//   Header (40 bytes)
//     0  u32  magic 0x544c4443 (bytes "CDLT")
//     4  u16  version = 1
//     6  u16  header size = 40
//     8  u32  page size = 4096
//    12  u32  P = number of pagemap sections
//    16  u32  N = number of page records (pages with data)
//    20  u32  counts.scanned   (informational: diff counts of this round)
//    24  u32  counts.unchanged
//    28  u32  counts.changed
//    32  u32  counts.zero
//    36  u32  counts.new
//   P pagemap sections, in pagemap id order
//     u16  L, then L bytes: pagemap id, UTF-8 ("1234" for pid 1234, "shmem-5678")
//     u32  pages_id (the current dump's pages-N.img number)
//     u32  E = number of pagemap entries
//     u32  K = number of present pages (must equal the sum of nr_pages of PRESENT entries)
//     E x { u64 vaddr, u32 nr_pages, u32 flags }                  (16 bytes each)
//     K x u64 xxh64 of present page k, in pagemap order           (8 bytes each)
//     ceil(K/8) bytes zero bitmap: bit (k % 8) of byte (k >> 3) set = page k is all zeros
//   N page records, ascending by (section, page index), no duplicates
//     u32 section index, u32 page index k, u64 vaddr (must equal the layout's k-th vaddr)
//   N x page size bytes of page data, in record order
// The total length must match exactly. Zero pages never have records; a record's data must
// hash to the layout's hash. Integrity of the whole artifact (sha256) is transfer's job.
//
// ---------------------------------------------------------------- v2: hashes inherited
// Between rounds of one migration the receiver holds the previous round's layout (the index
// the sender compared against), and most pages keep their hash. v1 repeats every page's
// 8-byte hash each round: ~0.54 MB for 256 MiB, on the final round's downtime path. v2 (header
// version = 2, encoded `against` that index) replaces a section's K hashes with
//     ceil(K/8) bytes inherit bitmap: bit set = page k has the hash that the base index gives
//                                     the same pagemap id at the same vaddr
//     u32  M = number of pages without the bit, then M x u64 their hashes, in page order
// followed by the zero bitmap as in v1. The receiver decodes it only with that same index.
// The base index file (writeBaseIndex) stays v1: it is read without any other index.
import { copyFile, mkdir, open, readdir, readFile, rename, rm, symlink, writeFile, type FileHandle } from 'node:fs/promises';
import { closeSync, openSync, writevSync } from 'node:fs';
import { endianness } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../util/errors.js';
import { readFileIfExists } from '../util/fs.js';
import { ImageFormatError } from './image-file.js';
import {
  classifyPage,
  emptyCounts,
  findPage,
  hashPage,
  idToPid,
  indexDump,
  presentVaddrs,
  ZERO_PAGE,
  type PageDiffCounts,
  type PageIndex,
  type ProcessPages,
} from './page-index.js';
import {
  encodePagemap,
  isPageImageName,
  listPagemapIds,
  PAGE_SIZE,
  PE_LAZY,
  PE_PARENT,
  PE_PRESENT,
  pagemapPath,
  pagesPath,
  presentPageCount,
  readPagemap,
  writePagemap,
  type Pagemap,
  type PagemapEntry,
} from './pagemap.js';

export const DELTA_MAGIC = 0x544c4443;
export const DELTA_VERSION = 1;
/** Hashes inherited from the receiver's base index (see the format above). */
export const DELTA_VERSION_AGAINST_BASE = 2;
export const DELTA_HEADER_BYTES = 40;
const PAGE_RECORD_BYTES = 16;
const ENTRY_BYTES = 16;
const MAX_ID_BYTES = 255;

export interface DeltaPage {
  /** Pagemap id ("1234" = pid 1234). */
  id: string;
  /** Index among that pagemap's present pages. */
  index: number;
  vaddr: number;
  data: Buffer;
}

export interface Delta {
  pageSize: number;
  /** The current dump's complete layout: every pagemap, hash and zero flag of every page. */
  index: PageIndex;
  /** Data of the changed and new non-zero pages, ordered by pagemap id then vaddr. */
  pages: DeltaPage[];
  counts: PageDiffCounts;
}

const SLAB_PAGES = 256;

// Hash arrays are copied to and from the wire as raw bytes, which are little-endian there.
if (endianness() !== 'LE') throw new Error('the checkpoint module needs a little-endian host');

/** a[i] === b[j] on 64-bit hashes through 32-bit views (no BigInt allocation). */
function hashView(h: BigUint64Array): Uint32Array {
  return new Uint32Array(h.buffer, h.byteOffset, h.length * 2);
}
function sameHash(a: Uint32Array, i: number, b: Uint32Array, j: number): boolean {
  return a[2 * i] === b[2 * j] && a[2 * i + 1] === b[2 * j + 1];
}

/**
 * Indexes the dump in `curDir` (one streaming pass over its pages files) and collects the
 * data of every non-zero page that is new or changed relative to `prev` (null: first
 * round, every non-zero page is sent). Page data is copied into 1 MiB slabs.
 */
export async function writeDelta(prev: PageIndex | null, curDir: string): Promise<Delta> {
  const counts = emptyCounts();
  const pages: DeltaPage[] = [];
  let slab = Buffer.allocUnsafe(0);
  let slabUsed = 0;
  const index = await indexDump(curDir, {
    onPage: (pp, i, page, hash, zero) => {
      const c = classifyPage(prev?.get(pp.id), pp.vaddrs[i]!, hash, zero);
      counts.scanned++;
      counts[c]++;
      if (c !== 'changed' && c !== 'new') return;
      if (slabUsed + PAGE_SIZE > slab.length) {
        slab = Buffer.allocUnsafe(SLAB_PAGES * PAGE_SIZE);
        slabUsed = 0;
      }
      page.copy(slab, slabUsed);
      pages.push({ id: pp.id, index: i, vaddr: pp.vaddrs[i]!, data: slab.subarray(slabUsed, slabUsed + PAGE_SIZE) });
      slabUsed += PAGE_SIZE;
    },
  });
  for (const pp of index.values()) {
    if (pp.parentPages > 0) {
      throw new UsageError(
        `dump ${curDir} has ${pp.parentPages} pages in a parent image (pagemap-${pp.id}.img): deltas need full dumps`,
        { context: { dir: curDir, id: pp.id } },
      );
    }
  }
  return { pageSize: PAGE_SIZE, index, pages, counts };
}

/** Bytes of page data a delta carries (what dominates its size on the wire). */
export function deltaDataBytes(delta: Delta): number {
  return delta.pages.length * delta.pageSize;
}

// ---------------------------------------------------------------- encoding

/**
 * v2: which pages of `pp` have the hash `against` gives the same id at the same vaddr
 * (one byte per page, 1 = inherited), and how many do not.
 */
function inheritedHashes(pp: ProcessPages, against: PageIndex): { inherit: Uint8Array; explicit: number } {
  const k = pp.vaddrs.length;
  const inherit = new Uint8Array(k);
  const base = against.get(pp.id);
  let explicit = k;
  if (base) {
    const cur32 = hashView(pp.hashes);
    const base32 = hashView(base.hashes);
    for (let i = 0; i < k; i++) {
      const j = findPage(base.vaddrs, pp.vaddrs[i]!);
      if (j >= 0 && sameHash(cur32, i, base32, j)) {
        inherit[i] = 1;
        explicit--;
      }
    }
  }
  return { inherit, explicit };
}

function sectionBytes(pp: ProcessPages, idBytes: Buffer, explicitHashes: number | null): number {
  const k = pp.vaddrs.length;
  const hashBytes = explicitHashes === null ? k * 8 : Math.ceil(k / 8) + 4 + explicitHashes * 8;
  return 2 + idBytes.length + 12 + pp.entries.length * ENTRY_BYTES + hashBytes + Math.ceil(k / 8);
}

/** Header, layout sections and page table: everything but the page data. */
function encodeMeta(delta: Delta, against: PageIndex | null): Buffer {
  if (delta.pageSize !== PAGE_SIZE) throw new UsageError(`page size ${delta.pageSize} is not supported`);
  const procs = [...delta.index.values()];
  const sectionOf = new Map<string, number>();
  const ids = procs.map((pp, i) => {
    sectionOf.set(pp.id, i);
    const b = Buffer.from(pp.id, 'utf8');
    if (b.length > MAX_ID_BYTES) throw new UsageError(`pagemap id '${pp.id}' is too long`);
    return b;
  });
  const inherited = against === null ? null : procs.map((pp) => inheritedHashes(pp, against));
  let total = DELTA_HEADER_BYTES + delta.pages.length * PAGE_RECORD_BYTES;
  procs.forEach((pp, i) => (total += sectionBytes(pp, ids[i]!, inherited ? inherited[i]!.explicit : null)));
  const out = Buffer.alloc(total);
  out.writeUInt32LE(DELTA_MAGIC, 0);
  out.writeUInt16LE(inherited ? DELTA_VERSION_AGAINST_BASE : DELTA_VERSION, 4);
  out.writeUInt16LE(DELTA_HEADER_BYTES, 6);
  out.writeUInt32LE(delta.pageSize, 8);
  out.writeUInt32LE(procs.length, 12);
  out.writeUInt32LE(delta.pages.length, 16);
  const c = delta.counts;
  [c.scanned, c.unchanged, c.changed, c.zero, c.new].forEach((v, i) => out.writeUInt32LE(v, 20 + 4 * i));
  let pos = DELTA_HEADER_BYTES;
  procs.forEach((pp, s) => {
    const id = ids[s]!;
    out.writeUInt16LE(id.length, pos);
    id.copy(out, pos + 2);
    pos += 2 + id.length;
    const k = pp.vaddrs.length;
    out.writeUInt32LE(pp.pagesId, pos);
    out.writeUInt32LE(pp.entries.length, pos + 4);
    out.writeUInt32LE(k, pos + 8);
    pos += 12;
    for (const e of pp.entries) {
      out.writeBigUInt64LE(BigInt(e.vaddr), pos);
      out.writeUInt32LE(e.nrPages, pos + 8);
      out.writeUInt32LE(e.flags, pos + 12);
      pos += ENTRY_BYTES;
    }
    const inh = inherited?.[s];
    if (inh) {
      for (let i = 0; i < k; i++) if (inh.inherit[i]) out[pos + (i >> 3)]! |= 1 << (i & 7);
      pos += Math.ceil(k / 8);
      out.writeUInt32LE(inh.explicit, pos);
      pos += 4;
      for (let i = 0; i < k; i++) {
        if (inh.inherit[i]) continue;
        out.writeBigUInt64LE(pp.hashes[i]!, pos);
        pos += 8;
      }
    } else {
      // u64 LE hashes: the array's bytes as they are (little-endian hosts only, checked below)
      Buffer.from(pp.hashes.buffer, pp.hashes.byteOffset, k * 8).copy(out, pos);
      pos += 8 * k;
    }
    for (let i = 0; i < k; i++) if (pp.zero[i]) out[pos + (i >> 3)]! |= 1 << (i & 7);
    pos += Math.ceil(k / 8);
  });
  for (const p of delta.pages) {
    const s = sectionOf.get(p.id);
    if (s === undefined) throw new UsageError(`delta page of unknown pagemap '${p.id}'`);
    out.writeUInt32LE(s, pos);
    out.writeUInt32LE(p.index, pos + 4);
    out.writeBigUInt64LE(BigInt(p.vaddr), pos + 8);
    pos += PAGE_RECORD_BYTES;
  }
  return out;
}

/**
 * The wire form in pieces (metadata, then the page data), for streaming. Page data is not
 * copied: consecutive pages that are adjacent in memory (writeDelta's slabs, decodeDelta's
 * input buffer) are yielded as one view of up to 1 MiB.
 */
export function* encodeDeltaChunks(delta: Delta, opts: { against?: PageIndex | null } = {}): Generator<Buffer> {
  yield encodeMeta(delta, opts.against ?? null);
  const maxRun = SLAB_PAGES * PAGE_SIZE;
  let run: Buffer | null = null;
  for (const p of delta.pages) {
    if (p.data.length !== PAGE_SIZE) throw new UsageError(`delta page ${p.id} @0x${p.vaddr.toString(16)} is not ${PAGE_SIZE} bytes`);
    if (
      run !== null &&
      run.length < maxRun &&
      p.data.buffer === run.buffer &&
      p.data.byteOffset === run.byteOffset + run.length
    ) {
      run = Buffer.from(run.buffer, run.byteOffset, run.length + PAGE_SIZE);
      continue;
    }
    if (run !== null) yield run;
    run = p.data;
  }
  if (run !== null) yield run;
}

/** The wire form; `against`: the index the receiver holds (v2, hashes inherited from it). */
export function encodeDelta(delta: Delta, opts: { against?: PageIndex | null } = {}): Buffer {
  return Buffer.concat([...encodeDeltaChunks(delta, opts)]);
}

export async function writeDeltaFile(path: string, delta: Delta): Promise<number> {
  const fh = await open(path, 'w');
  let bytes = 0;
  try {
    for (const chunk of encodeDeltaChunks(delta)) {
      await fh.write(chunk);
      bytes += chunk.length;
    }
  } finally {
    await fh.close();
  }
  return bytes;
}

/**
 * Parses and validates the wire form. Page data are views into `buf` (no copy). With
 * verify (default) every page record's data is hashed and checked against the layout.
 */
export function decodeDelta(buf: Buffer, name = 'delta', opts: { verify?: boolean; against?: PageIndex | null } = {}): Delta {
  const fail = (offset: number, msg: string): never => {
    throw new ImageFormatError(name, offset, msg);
  };
  const need = (pos: number, n: number, what: string): void => {
    if (pos + n > buf.length) fail(pos, `truncated delta: ${what} needs ${n} bytes, ${Math.max(0, buf.length - pos)} left`);
  };
  need(0, DELTA_HEADER_BYTES, 'header');
  if (buf.readUInt32LE(0) !== DELTA_MAGIC) fail(0, `bad delta magic 0x${buf.readUInt32LE(0).toString(16)}`);
  const version = buf.readUInt16LE(4);
  if (version !== DELTA_VERSION && version !== DELTA_VERSION_AGAINST_BASE) fail(4, `unsupported delta version ${version}`);
  const against = opts.against ?? null;
  if (version === DELTA_VERSION_AGAINST_BASE && against === null) {
    fail(4, 'delta inherits hashes from a base index (version 2), but no base index was given');
  }
  const headerBytes = buf.readUInt16LE(6);
  if (headerBytes < DELTA_HEADER_BYTES) fail(6, `header size ${headerBytes} too small`);
  need(0, headerBytes, 'header');
  const pageSize = buf.readUInt32LE(8);
  if (pageSize !== PAGE_SIZE) fail(8, `page size ${pageSize} is not supported`);
  const nProcs = buf.readUInt32LE(12);
  const nPages = buf.readUInt32LE(16);
  const [scanned, unchanged, changed, zero, nw] = [0, 1, 2, 3, 4].map((i) => buf.readUInt32LE(20 + 4 * i)) as [
    number, number, number, number, number,
  ];
  const counts: PageDiffCounts = { scanned, unchanged, changed, zero, new: nw };
  let pos = headerBytes;
  const index: PageIndex = new Map();
  const procs: ProcessPages[] = [];
  for (let s = 0; s < nProcs; s++) {
    need(pos, 2, 'pagemap id length');
    const idLen = buf.readUInt16LE(pos);
    need(pos + 2, idLen + 12, 'pagemap section');
    const id = buf.toString('utf8', pos + 2, pos + 2 + idLen);
    if (!/^[A-Za-z0-9_-]+$/.test(id)) fail(pos, `invalid pagemap id '${id}'`);
    if (index.has(id)) fail(pos, `duplicate pagemap id '${id}'`);
    pos += 2 + idLen;
    const pagesId = buf.readUInt32LE(pos);
    const nEntries = buf.readUInt32LE(pos + 4);
    const k = buf.readUInt32LE(pos + 8);
    pos += 12;
    need(pos, nEntries * ENTRY_BYTES + (version === DELTA_VERSION ? k * 8 : Math.ceil(k / 8) + 4) + Math.ceil(k / 8), `pagemap '${id}' layout`);
    const entries = [];
    let prevEnd = 0;
    for (let e = 0; e < nEntries; e++) {
      const vaddr = buf.readBigUInt64LE(pos);
      const nrPages = buf.readUInt32LE(pos + 8);
      const flags = buf.readUInt32LE(pos + 12);
      const end = vaddr + BigInt(nrPages) * BigInt(PAGE_SIZE);
      if (end > BigInt(Number.MAX_SAFE_INTEGER)) fail(pos, `entry vaddr 0x${vaddr.toString(16)} above 2^53`);
      if (Number(vaddr) % PAGE_SIZE !== 0 || nrPages === 0 || Number(vaddr) < prevEnd) {
        fail(pos, `invalid pagemap entry ${e} of '${id}' (unaligned, empty or not ascending)`);
      }
      prevEnd = Number(end);
      entries.push({ vaddr: Number(vaddr), nrPages, flags });
      pos += ENTRY_BYTES;
    }
    // Counted before the vaddrs are materialised: entries claiming billions of pages must be
    // refused, not allocated (k is bounded by the buffer: its hashes are in it). Found by fuzzing.
    const present = presentPageCount({ entries });
    if (present !== k) fail(pos, `pagemap '${id}': ${k} present pages announced, entries hold ${present}`);
    const vaddrs = presentVaddrs({ entries });
    const hashes = new BigUint64Array(k);
    if (version === DELTA_VERSION) {
      new Uint8Array(hashes.buffer).set(buf.subarray(pos, pos + 8 * k));
      pos += 8 * k;
    } else {
      const bitmap = pos;
      pos += Math.ceil(k / 8);
      const explicit = buf.readUInt32LE(pos);
      pos += 4;
      need(pos, explicit * 8 + Math.ceil(k / 8), `pagemap '${id}' hashes`);
      const base = against!.get(id);
      let m = 0;
      for (let i = 0; i < k; i++) {
        if ((buf[bitmap + (i >> 3)]! >> (i & 7)) & 1) {
          const j = base ? findPage(base.vaddrs, vaddrs[i]!) : -1;
          if (j < 0) fail(bitmap, `pagemap '${id}': page ${i} inherits a hash the base index does not have`);
          hashes[i] = base!.hashes[j]!;
        } else {
          if (m === explicit) fail(pos - 4, `pagemap '${id}': more pages without an inherited hash than the ${explicit} announced`);
          hashes[i] = buf.readBigUInt64LE(pos + 8 * m);
          m++;
        }
      }
      if (m !== explicit) fail(pos - 4, `pagemap '${id}': ${explicit} hashes announced, ${m} pages without an inherited hash`);
      pos += 8 * explicit;
    }
    const zeroFlags = new Uint8Array(k);
    for (let i = 0; i < k; i++) zeroFlags[i] = (buf[pos + (i >> 3)]! >> (i & 7)) & 1;
    pos += Math.ceil(k / 8);
    const pp: ProcessPages = { id, pid: idToPid(id), pagesId, entries, vaddrs, hashes, zero: zeroFlags, parentPages: 0 };
    index.set(id, pp);
    procs.push(pp);
  }
  need(pos, nPages * PAGE_RECORD_BYTES, 'page table');
  const dataStart = pos + nPages * PAGE_RECORD_BYTES;
  const expected = dataStart + nPages * PAGE_SIZE;
  if (buf.length !== expected) {
    fail(Math.min(buf.length, expected), `delta length ${buf.length} != expected ${expected} (${nPages} pages): truncated or trailing bytes`);
  }
  const pages: DeltaPage[] = [];
  let lastS = -1;
  let lastK = -1;
  for (let r = 0; r < nPages; r++) {
    const s = buf.readUInt32LE(pos);
    const k = buf.readUInt32LE(pos + 4);
    const vaddr = buf.readBigUInt64LE(pos + 8);
    const pp = procs[s];
    if (!pp) fail(pos, `page record ${r}: section ${s} out of range`);
    if (k >= pp!.vaddrs.length) fail(pos, `page record ${r}: page index ${k} out of range`);
    if (BigInt(pp!.vaddrs[k]!) !== vaddr) fail(pos, `page record ${r}: vaddr 0x${vaddr.toString(16)} disagrees with the layout`);
    if (s < lastS || (s === lastS && k <= lastK)) fail(pos, `page record ${r}: records not ascending`);
    if (pp!.zero[k]) fail(pos, `page record ${r}: data for a zero page`);
    lastS = s;
    lastK = k;
    const data = buf.subarray(dataStart + r * PAGE_SIZE, dataStart + (r + 1) * PAGE_SIZE);
    if ((opts.verify ?? true) && hashPage(data) !== pp!.hashes[k]) {
      fail(dataStart + r * PAGE_SIZE, `page record ${r} (${pp!.id} @0x${vaddr.toString(16)}): data does not match its hash`);
    }
    pages.push({ id: pp!.id, index: k, vaddr: Number(vaddr), data });
    pos += PAGE_RECORD_BYTES;
  }
  return { pageSize, index, pages, counts };
}

export async function readDeltaFile(path: string, opts: { verify?: boolean } = {}): Promise<Delta> {
  return decodeDelta(await readFile(path), path, opts);
}

// ---------------------------------------------------------------- receiver: base index

/**
 * A base directory (rebuilt by rebuildImageDir without small images, or maintained by
 * applyDeltaInPlace) carries this file: the layout, hash and zero flag of every page it
 * holds, in the delta wire format with no page records. It lets applyDeltaInPlace and the
 * parent mode of rebuildImageDir check the base and classify pages without reading the
 * (large) pages files. CRIU ignores it. It is removed while the base is being modified, so
 * a base whose update failed half-way has none (and is then checked by reading it).
 */
export const BASE_INDEX_FILE = 'cloudlet-page-index.bin';

export async function writeBaseIndex(dir: string, index: PageIndex): Promise<void> {
  const tmp = join(dir, `${BASE_INDEX_FILE}.tmp`);
  // v1: the base index is read without any other index.
  await writeFile(tmp, encodeMeta({ pageSize: PAGE_SIZE, index, pages: [], counts: emptyCounts() }, null));
  await rename(tmp, join(dir, BASE_INDEX_FILE));
}

/** The base index of dir, or null when it has none. */
export async function readBaseIndex(dir: string): Promise<PageIndex | null> {
  const path = join(dir, BASE_INDEX_FILE);
  const buf = await readFileIfExists(path);
  return buf === null ? null : decodeDelta(buf, path, { verify: false }).index;
}

/**
 * Pages the base holds outside its pages files: pages of the current layout at vaddrs the
 * base's pagemap does not have (memory that appeared since the base's layout was written).
 * Kept in this file, in the delta wire format, so that an in-place update does not have to
 * rewrite a whole pages file for a few new pages; rebuildImageDir takes them from here.
 * Zero pages are not kept (they are written as zeros).
 */
export const BASE_EXTRA_FILE = 'cloudlet-extra-pages.bin';

interface ExtraPage {
  hash: bigint;
  data: Buffer;
}

/** By pagemap id, then vaddr. */
type Extras = Map<string, Map<number, ExtraPage>>;

async function readExtras(dir: string): Promise<Extras> {
  const path = join(dir, BASE_EXTRA_FILE);
  const buf = await readFileIfExists(path);
  if (buf === null) return new Map();
  const d = decodeDelta(buf, path);
  const out: Extras = new Map();
  for (const p of d.pages) {
    let m = out.get(p.id);
    if (!m) out.set(p.id, (m = new Map()));
    m.set(p.vaddr, { hash: d.index.get(p.id)!.hashes[p.index]!, data: p.data });
  }
  return out;
}

async function writeExtras(dir: string, extras: Extras): Promise<number> {
  const path = join(dir, BASE_EXTRA_FILE);
  const index: PageIndex = new Map();
  const pages: DeltaPage[] = [];
  for (const [id, m] of extras) {
    if (m.size === 0) continue;
    const vs = [...m.keys()].sort((a, b) => a - b);
    const entries: PagemapEntry[] = [];
    for (const v of vs) {
      const last = entries[entries.length - 1];
      if (last && last.vaddr + last.nrPages * PAGE_SIZE === v) last.nrPages++;
      else entries.push({ vaddr: v, nrPages: 1, flags: PE_PRESENT });
    }
    const pp: ProcessPages = {
      id, pid: idToPid(id), pagesId: 0, entries, vaddrs: Float64Array.from(vs),
      hashes: BigUint64Array.from(vs.map((v) => m.get(v)!.hash)), zero: new Uint8Array(vs.length), parentPages: 0,
    };
    index.set(id, pp);
    vs.forEach((v, i) => pages.push({ id, index: i, vaddr: v, data: m.get(v)!.data }));
  }
  if (pages.length === 0) {
    await rm(path, { force: true });
    return 0;
  }
  await writeDeltaFile(`${path}.tmp`, { pageSize: PAGE_SIZE, index, pages, counts: emptyCounts() });
  await rename(`${path}.tmp`, path);
  return pages.length;
}

/**
 * The delta's data of pp by present-page index, plus the base's extra pages for the other
 * non-zero pages of pp whose hash matches (they are then taken from there, not the base).
 */
function dataWithExtras(pp: ProcessPages, dataOf: Map<number, Buffer> | undefined, extra: Map<number, ExtraPage> | undefined): Map<number, Buffer> | undefined {
  if (!extra || extra.size === 0) return dataOf;
  const out = new Map(dataOf);
  for (let i = 0; i < pp.vaddrs.length; i++) {
    if (pp.zero[i] || out.has(i)) continue;
    const x = extra.get(pp.vaddrs[i]!);
    if (x && x.hash === pp.hashes[i]) out.set(i, x.data);
  }
  return out;
}

function sameEntries(a: readonly PagemapEntry[], b: readonly PagemapEntry[]): boolean {
  return a.length === b.length && a.every((e, i) => e.vaddr === b[i]!.vaddr && e.nrPages === b[i]!.nrPages && e.flags === b[i]!.flags);
}

/** The index entry of `id` when it describes the pagemap on disk exactly, else undefined. */
function trustedIndex(index: PageIndex | null, pm: Pagemap): ProcessPages | undefined {
  const pp = index?.get(pm.id);
  return pp && pp.pagesId === pm.pagesId && sameEntries(pp.entries, pm.entries) ? pp : undefined;
}

async function readPagemapIfAny(dir: string, id: string): Promise<Pagemap | null> {
  try {
    return await readPagemap(dir, id);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

// ---------------------------------------------------------------- receiver: rebuild

export interface ParentImage {
  /**
   * The base: an image directory (complete or pages-only) holding every page of the
   * previous round under the same pagemap ids, e.g. maintained by applyDeltaInPlace.
   */
  dir: string;
  /**
   * Written verbatim as the target of outDir/parent. CRIU resolves it relative to the image
   * directory it restores from (and after entering the container's root under runc), so it
   * must be RELATIVE; absolute links fail there. Not checked against `dir`: the image
   * directory may be restored from another place (e.g. a copy made by containerd).
   */
  link: string;
}

export interface RebuildOptions {
  /**
   * A complete image directory holding the previous round's pages (rebuilt or dumped), or
   * null. In parent mode: null or the same directory as parent.dir.
   */
  baseDir?: string | null;
  delta: Delta;
  /** The non-pages images of the dump the delta describes, or null for a pages-only dir. */
  smallImagesDir: string | null;
  /** Created; must not exist or be empty. Must differ from baseDir. */
  outDir: string;
  /**
   * Check every page taken from the base against the delta's layout hash (default true).
   * Full mode hashes the pages it copies; parent mode compares the base index
   * (BASE_INDEX_FILE) and reads and hashes base pages only when the base has none.
   */
  verify?: boolean;
  /**
   * Parent mode (CRIU parent images): pages unchanged relative to the base become PE_PARENT
   * entries and are not written; only the delta's pages and zero pages that differ from the
   * base are written to pages-N.img; outDir/parent -> parent.link. The cost is proportional
   * to the delta, not to the memory size.
   */
  parent?: ParentImage;
  /**
   * Parent mode only: also prepare a lazy (post-copy) restore. CRIU's lazy-pages daemon
   * cannot serve pages from parent images (it reads them but never completes the fault), so
   * it gets a directory of its own, `lazyView` (created, empty): for each pagemap, one in the
   * BASE's layout whose pages file is the base's (linked, and updated in place with the
   * pages that changed), with PE_LAZY on exactly the pages outDir leaves to the daemon.
   * outDir keeps PE_LAZY (as CRIU's dump set it) only on pages the base holds; the others
   * (new in this dump) are restored eagerly from outDir. The small images are not linked.
   */
  lazyView?: string;
  /** Write BASE_INDEX_FILE into outDir (default: when smallImagesDir is null, i.e. a base). */
  writeIndex?: boolean;
}

export interface RebuildStats {
  /** Present pages of the delta's layout. */
  pages: number;
  /** Pages written with data from the delta. */
  fromDelta: number;
  /** Pages copied from the base directory (0 in parent mode). */
  fromBase: number;
  /** Zero pages written. */
  zeroFilled: number;
  /** Pages left in the parent as PE_PARENT entries (parent mode only). */
  inParent: number;
  /** Pages written from the base's extra pages (BASE_EXTRA_FILE). */
  fromExtra: number;
  /** Bytes written to pages files. */
  pageBytes: number;
  smallFiles: number;
  ms: number;
}

interface BaseSource {
  fh: FileHandle;
  vaddrs: Float64Array;
  path: string;
}

async function openBase(baseDir: string, id: string): Promise<BaseSource | null> {
  const pm = await readPagemapIfAny(baseDir, id);
  if (pm === null || presentPageCount(pm) === 0) return null;
  const path = pagesPath(baseDir, pm.pagesId);
  return { fh: await open(path, 'r'), vaddrs: presentVaddrs(pm), path };
}

async function readFully(fh: FileHandle, buf: Buffer, off: number, len: number, pos: number, path: string): Promise<void> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, off + got, len - got, pos + got);
    if (bytesRead === 0) throw new ImageFormatError(path, pos + got, 'base pages file ends early');
    got += bytesRead;
  }
}

const MAX_IOV = 512;

/** Writes buffers back to back from `pos` (writev in batches, short writes handled). */
async function writeAllAt(fh: FileHandle, bufs: Buffer[], pos: number): Promise<number> {
  let total = 0;
  for (let b = 0; b < bufs.length; b += MAX_IOV) {
    let batch = bufs.slice(b, b + MAX_IOV);
    let want = batch.reduce((a, x) => a + x.length, 0);
    while (want > 0) {
      const { bytesWritten } = await fh.writev(batch, pos + total);
      total += bytesWritten;
      want -= bytesWritten;
      if (want === 0) break;
      // short write: drop what was written and retry the rest
      let skip = bytesWritten;
      const rest: Buffer[] = [];
      for (const x of batch) {
        if (skip >= x.length) skip -= x.length;
        else {
          rest.push(skip > 0 ? x.subarray(skip) : x);
          skip = 0;
        }
      }
      batch = rest;
    }
  }
  return total;
}

/** Page data of the delta, by pagemap id then present-page index. */
function deltaDataByPage(delta: Delta): Map<string, Map<number, Buffer>> {
  const fromDelta = new Map<string, Map<number, Buffer>>();
  for (const p of delta.pages) {
    let m = fromDelta.get(p.id);
    if (!m) fromDelta.set(p.id, (m = new Map()));
    m.set(p.index, p.data);
  }
  return fromDelta;
}

/**
 * Writes the complete pages file of pp to outPath: each present page from the delta,
 * zero-filled, or copied from the base's page at the same vaddr (hash-checked with verify).
 */
async function writeFullPagesFile(
  pp: ProcessPages,
  base: BaseSource | null,
  baseDir: string | null,
  dataOf: Map<number, Buffer> | undefined,
  outPath: string,
  verify: boolean,
  stats: { fromDelta: number; fromBase: number; zeroFilled: number },
): Promise<number> {
  const chunkPages = SLAB_PAGES;
  const out = Buffer.allocUnsafe(chunkPages * PAGE_SIZE);
  const fh = await open(outPath, 'w');
  try {
    const k = pp.vaddrs.length;
    for (let first = 0; first < k; first += chunkPages) {
      const n = Math.min(chunkPages, k - first);
      // Runs of consecutive base pages land in consecutive output slots: one read each.
      const runs: Array<[outSlot: number, baseIndex: number, len: number]> = [];
      const baseSlots: number[] = [];
      let runOut = -1;
      let runBase = -1;
      let runLen = 0;
      const flush = (): void => {
        if (runLen > 0) runs.push([runOut, runBase, runLen]);
        runLen = 0;
      };
      for (let s = 0; s < n; s++) {
        const i = first + s;
        if (pp.zero[i]) {
          ZERO_PAGE.copy(out, s * PAGE_SIZE);
          stats.zeroFilled++;
          continue;
        }
        const d = dataOf?.get(i);
        if (d) {
          d.copy(out, s * PAGE_SIZE);
          stats.fromDelta++;
          continue;
        }
        const j = base ? findPage(base.vaddrs, pp.vaddrs[i]!) : -1;
        if (j < 0) {
          throw new UsageError(
            `page ${pp.id} @0x${pp.vaddrs[i]!.toString(16)} is neither in the delta nor in the base directory`,
            { context: { id: pp.id, vaddr: pp.vaddrs[i], baseDir } },
          );
        }
        if (runLen > 0 && s === runOut + runLen && j === runBase + runLen) runLen++;
        else {
          flush();
          runOut = s;
          runBase = j;
          runLen = 1;
        }
        baseSlots.push(s);
        stats.fromBase++;
      }
      flush();
      if (runs.length > 0) {
        const b = base!;
        await Promise.all(runs.map(([o, j, len]) => readFully(b.fh, out, o * PAGE_SIZE, len * PAGE_SIZE, j * PAGE_SIZE, b.path)));
      }
      if (verify) {
        for (const s of baseSlots) {
          const i = first + s;
          if (hashPage(out.subarray(s * PAGE_SIZE, (s + 1) * PAGE_SIZE)) !== pp.hashes[i]) {
            throw new ImageFormatError(
              base!.path,
              undefined,
              `base page ${pp.id} @0x${pp.vaddrs[i]!.toString(16)} does not match the delta's hash: the base is not the previous round`,
            );
          }
        }
      }
      await writeAllAt(fh, [out.subarray(0, n * PAGE_SIZE)], first * PAGE_SIZE);
    }
    return k * PAGE_SIZE;
  } finally {
    await fh.close();
  }
}

/** Reads base pages (by index in the base's pages file) and checks their hashes. */
async function verifyBasePages(
  path: string,
  checks: Array<[baseIndex: number, hash: bigint, vaddr: number]>,
  id: string,
): Promise<void> {
  if (checks.length === 0) return;
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(SLAB_PAGES * PAGE_SIZE);
    for (let c = 0; c < checks.length; ) {
      // one read for a run of consecutive base pages (up to a slab)
      let n = 1;
      while (c + n < checks.length && n < SLAB_PAGES && checks[c + n]![0] === checks[c]![0] + n) n++;
      await readFully(fh, buf, 0, n * PAGE_SIZE, checks[c]![0] * PAGE_SIZE, path);
      for (let x = 0; x < n; x++) {
        const [, hash, vaddr] = checks[c + x]!;
        if (hashPage(buf.subarray(x * PAGE_SIZE, (x + 1) * PAGE_SIZE)) !== hash) {
          throw new ImageFormatError(path, undefined, `base page ${id} @0x${vaddr.toString(16)} does not match the delta's hash: the base is not the previous round`);
        }
      }
      c += n;
    }
  } finally {
    await fh.close();
  }
}

async function copySmallImages(smallImagesDir: string, outDir: string, delta: Delta): Promise<number> {
  let n = 0;
  for (const ent of await readdir(smallImagesDir, { withFileTypes: true })) {
    if (!ent.isFile() || isPageImageName(ent.name) || ent.name.startsWith('cloudlet-')) continue;
    await copyFile(join(smallImagesDir, ent.name), join(outDir, ent.name));
    n++;
  }
  // The dump's own pagemaps must describe the same layout as the delta (same round).
  for (const id of await listPagemapIds(smallImagesDir)) {
    const pp = delta.index.get(id);
    if (!pp) throw new UsageError(`small images have pagemap-${id}.img but the delta has no such pagemap`, { context: { id } });
    const onDisk = await readFile(pagemapPath(smallImagesDir, id));
    if (!onDisk.equals(encodePagemap(pp))) {
      const pm = await readPagemap(smallImagesDir, id, { checkPagesFile: false });
      if (pm.pagesId !== pp.pagesId || !sameEntries(pm.entries, pp.entries)) {
        throw new UsageError(`pagemap-${id}.img of the small images differs from the delta's layout (another round?)`);
      }
    }
  }
  return n;
}

/**
 * Writes a CRIU image directory for the dump the delta describes: the small images copied
 * from smallImagesDir (everything but pagemap-*.img, pages-*.img, a `parent` link and the
 * base index), one pagemap-ID.img per pagemap of the delta's layout, and pages-N.img.
 *
 * Full mode: every present page is written, taken from the delta, zero-filled, or copied
 * from the base directory's page at the same (id, vaddr).
 *
 * Parent mode (opts.parent): see ParentImage. A page is left in the parent when the base
 * holds the same (id, vaddr) with the same hash (zero pages included, when the base index
 * says so); every other page must be in the delta or be a zero page.
 */
export async function rebuildImageDir(opts: RebuildOptions): Promise<RebuildStats> {
  const t0 = performance.now();
  const { delta, outDir, smallImagesDir, parent } = opts;
  const baseDir = opts.baseDir ?? null;
  const verify = opts.verify ?? true;
  if (parent && baseDir !== null && resolve(baseDir) !== resolve(parent.dir)) {
    throw new UsageError('rebuildImageDir: in parent mode baseDir must be null or parent.dir');
  }
  for (const b of [baseDir, parent?.dir]) {
    if (b != null && resolve(b) === resolve(outDir)) throw new UsageError('rebuildImageDir: outDir must differ from the base directory');
  }
  if (parent && (parent.link === '' || isAbsolute(parent.link))) {
    throw new UsageError(`rebuildImageDir: the parent link must be a relative path (CRIU cannot follow '${parent.link}' under runc)`);
  }
  await mkdir(outDir, { recursive: true });
  if ((await readdir(outDir)).length > 0) throw new UsageError(`rebuildImageDir: ${outDir} is not empty`);

  const stats: RebuildStats = { pages: 0, fromDelta: 0, fromBase: 0, zeroFilled: 0, inParent: 0, fromExtra: 0, pageBytes: 0, smallFiles: 0, ms: 0 };
  if (smallImagesDir !== null) stats.smallFiles = await copySmallImages(smallImagesDir, outDir, delta);
  const fromDelta = deltaDataByPage(delta);

  if (parent) {
    const baseIndex = await readBaseIndex(parent.dir);
    const extras = await readExtras(parent.dir);
    if (opts.lazyView !== undefined) {
      await mkdir(opts.lazyView, { recursive: true });
      if ((await readdir(opts.lazyView)).length > 0) throw new UsageError(`rebuildImageDir: ${opts.lazyView} is not empty`);
    }
    for (const pp of delta.index.values()) {
      await writeParentPagemap(pp, parent.dir, baseIndex, fromDelta.get(pp.id), extras.get(pp.id), outDir, verify, stats, opts.lazyView ?? null);
    }
    await symlink(parent.link, join(outDir, 'parent'));
  } else {
    const extras = baseDir === null ? new Map() : await readExtras(baseDir);
    for (const pp of delta.index.values()) {
      await writePagemap(outDir, { id: pp.id, pagesId: pp.pagesId, entries: pp.entries });
      const base = baseDir === null ? null : await openBase(baseDir, pp.id);
      const dataOf = fromDelta.get(pp.id);
      const withExtras = dataWithExtras(pp, dataOf, extras.get(pp.id));
      const nExtra = (withExtras?.size ?? 0) - (dataOf?.size ?? 0);
      stats.fromExtra += nExtra;
      stats.fromDelta -= nExtra;
      try {
        stats.pageBytes += await writeFullPagesFile(pp, base, baseDir, withExtras, pagesPath(outDir, pp.pagesId), verify, stats);
      } finally {
        await base?.fh.close();
      }
      stats.pages += pp.vaddrs.length;
    }
    if (opts.writeIndex ?? smallImagesDir === null) await writeBaseIndex(outDir, delta.index);
  }
  stats.ms = performance.now() - t0;
  return stats;
}

/** Parent mode, one pagemap: split its PRESENT entries into PE_PARENT and PE_PRESENT runs. */
async function writeParentPagemap(
  pp: ProcessPages,
  parentDir: string,
  baseIndex: PageIndex | null,
  dataOf: Map<number, Buffer> | undefined,
  extra: Map<number, ExtraPage> | undefined,
  outDir: string,
  verify: boolean,
  stats: RebuildStats,
  lazyView: string | null,
): Promise<void> {
  const basePm = await readPagemapIfAny(parentDir, pp.id);
  const known = basePm ? trustedIndex(baseIndex, basePm) : undefined;
  const baseVaddrs = known?.vaddrs ?? (basePm ? presentVaddrs(basePm) : new Float64Array(0));
  const checks: Array<[number, bigint, number]> = [];
  const cur32 = hashView(pp.hashes);
  const known32 = known ? hashView(known.hashes) : null;
  const entries: PagemapEntry[] = [];
  const data: Buffer[] = [];
  let i = 0; // present page index in pp
  let j = 0; // merge cursor in baseVaddrs (both ascending)
  const push = (vaddr: number, flags: number): void => {
    const last = entries[entries.length - 1];
    if (last && last.flags === flags && last.vaddr + last.nrPages * PAGE_SIZE === vaddr) last.nrPages++;
    else entries.push({ vaddr, nrPages: 1, flags });
  };
  // Lazy view (see RebuildOptions.lazyView): which base pages the daemon serves, and the
  // changed pages it serves from the base pages file, written there in place.
  const lazy = lazyView !== null && basePm !== null;
  const lazyMark = new Uint8Array(lazy ? baseVaddrs.length : 0);
  const inPlace: Array<[number, Buffer]> = [];
  // In the lazy case a page stays PE_LAZY in outDir only when the daemon can serve it.
  const flagsFor = (eflags: number, inBase: boolean, atBase: number, write: Buffer | null): number => {
    if (lazyView === null) return eflags;
    if (!lazy || !inBase || !(eflags & PE_LAZY)) return eflags & ~PE_LAZY;
    lazyMark[atBase] = 1;
    if (write) inPlace.push([atBase, write]);
    return eflags;
  };
  // A page left in the parent: PE_LAZY too when the daemon serves it (eager restores: none).
  const parentFlags = (eflags: number, atBase: number): number => (lazyView === null ? PE_PARENT : PE_PARENT | (flagsFor(eflags, true, atBase, null) & PE_LAZY));
  for (const e of pp.entries) {
    if (!(e.flags & PE_PRESENT)) {
      entries.push({ ...e });
      continue;
    }
    for (let p = 0; p < e.nrPages; p++, i++) {
      const vaddr = pp.vaddrs[i]!;
      while (j < baseVaddrs.length && baseVaddrs[j]! < vaddr) j++;
      const inBase = j < baseVaddrs.length && baseVaddrs[j] === vaddr;
      const d = dataOf?.get(i);
      if (d) {
        data.push(d);
        stats.fromDelta++;
        push(vaddr, flagsFor(e.flags, inBase, j, d));
      } else if (pp.zero[i]) {
        if (inBase && known && known.zero[j]) {
          stats.inParent++;
          push(vaddr, parentFlags(e.flags, j));
        } else {
          data.push(ZERO_PAGE);
          stats.zeroFilled++;
          push(vaddr, flagsFor(e.flags, inBase, j, ZERO_PAGE));
        }
      } else {
        if (!inBase) {
          const x = extra?.get(vaddr);
          if (!x || x.hash !== pp.hashes[i]) {
            throw new UsageError(`page ${pp.id} @0x${vaddr.toString(16)} is neither in the delta nor in the parent directory`, {
              context: { id: pp.id, vaddr, parentDir },
            });
          }
          data.push(x.data);
          stats.fromExtra++;
          push(vaddr, flagsFor(e.flags, false, j, null));
          continue;
        }
        if (known) {
          if (known.zero[j] || !sameHash(known32!, j, cur32, i)) {
            throw new ImageFormatError(
              join(parentDir, BASE_INDEX_FILE),
              undefined,
              `base page ${pp.id} @0x${vaddr.toString(16)} does not match the delta's hash: the base is not the previous round`,
            );
          }
        } else if (verify) checks.push([j, pp.hashes[i]!, vaddr]);
        stats.inParent++;
        push(vaddr, parentFlags(e.flags, j));
      }
    }
  }
  if (checks.length > 0) await verifyBasePages(pagesPath(parentDir, basePm!.pagesId), checks, pp.id);
  if (lazyView !== null) await writeLazyView(lazyView, pp.id, basePm, parentDir, lazyMark, inPlace);
  await writePagemap(outDir, { id: pp.id, pagesId: pp.pagesId, entries });
  const fh = await open(pagesPath(outDir, pp.pagesId), 'w');
  try {
    stats.pageBytes += await writeAllAt(fh, data, 0);
  } finally {
    await fh.close();
  }
  stats.pages += pp.vaddrs.length;
}

/**
 * The lazy-pages daemon's pagemap for one process (RebuildOptions.lazyView): the base's
 * layout, PE_LAZY where `lazyMark` says the restore left the page to the daemon, its pages
 * file the base's own (linked), after the changed pages are written into it at their
 * offsets. Pages the base has but the dump does not stay PRESENT without LAZY: never copied.
 * A process the base does not know gets an empty pagemap (the restore loads it eagerly).
 */
async function writeLazyView(
  viewDir: string,
  id: string,
  basePm: Pagemap | null,
  parentDir: string,
  lazyMark: Uint8Array,
  inPlace: Array<[number, Buffer]>,
): Promise<void> {
  if (basePm === null) {
    await writePagemap(viewDir, { id, pagesId: lazyViewEmptyPagesId(id), entries: [] });
    await writeFile(pagesPath(viewDir, lazyViewEmptyPagesId(id)), Buffer.alloc(0));
    return;
  }
  const basePages = resolve(pagesPath(parentDir, basePm.pagesId));
  if (inPlace.length > 0) {
    const fh = await open(basePages, 'r+');
    try {
      for (const [at, page] of inPlace) await writeAllAt(fh, [page], at * PAGE_SIZE);
    } finally {
      await fh.close();
    }
  }
  const entries: PagemapEntry[] = [];
  let k = 0;
  for (const e of basePm.entries) {
    if (!(e.flags & PE_PRESENT)) continue;
    for (let p = 0; p < e.nrPages; p++, k++) {
      const vaddr = e.vaddr + p * PAGE_SIZE;
      const flags = PE_PRESENT | (lazyMark[k] ? PE_LAZY : 0);
      const last = entries[entries.length - 1];
      if (last && last.flags === flags && last.vaddr + last.nrPages * PAGE_SIZE === vaddr) last.nrPages++;
      else entries.push({ vaddr, nrPages: 1, flags });
    }
  }
  await writePagemap(viewDir, { id, pagesId: basePm.pagesId, entries });
  await symlink(basePages, pagesPath(viewDir, basePm.pagesId));
}

/** pages ids of empty lazy-view pagemaps: far above CRIU's (which count from 1). */
function lazyViewEmptyPagesId(id: string): number {
  return 1_000_000 + (Number(id) || 0);
}

// ---------------------------------------------------------------- receiver: update the base in place

export interface ApplyOptions {
  /**
   * Check the pages the delta does not carry against the base index (in memory, no reads)
   * before writing anything (default true; no effect when the base has no index).
   */
  verify?: boolean;
  /**
   * Most pages of one pagemap kept as extra pages (new vaddrs the base's layout lacks)
   * before that pagemap's pages file is rewritten instead (default 2048 = 8 MiB). The
   * final round writes the extra pages into its directory: they cost downtime.
   */
  maxExtraPages?: number;
}

export interface ApplyStats {
  /** Pages written in place (delta pages and zero pages), over all in-place pagemaps. */
  pagesWritten: number;
  /** Extra pages held after the update (BASE_EXTRA_FILE), over all pagemaps. */
  extraPages: number;
  /** Of pagesWritten, zero pages. */
  zeroWritten: number;
  /** Pagemaps updated by writes at their offsets (pages file and pagemap otherwise untouched). */
  inPlacePagemaps: number;
  /** Pagemaps whose pages file was rewritten whole (layout not covered by the base) or created. */
  rewrittenPagemaps: number;
  /** Pages written by those rewrites. */
  rewrittenPages: number;
  /** Pagemaps of the base that the delta no longer has: deleted. */
  removedPagemaps: number;
  /** True when the base had an index and the untouched pages were checked against it. */
  verified: boolean;
  ms: number;
  /** The base's index after the update (also written to BASE_INDEX_FILE). */
  index: PageIndex;
}

interface InPlacePlan {
  kind: 'inplace';
  pp: ProcessPages;
  path: string;
  extra: Map<number, ExtraPage>;
  /** [position in the base pages file (page index), data] ascending by position. */
  writes: Array<[number, Buffer]>;
  zeros: number;
  next: ProcessPages;
}

interface RewritePlan {
  kind: 'rewrite';
  pp: ProcessPages;
  dataOf: Map<number, Buffer> | undefined;
  pagesId: number;
  oldPagesId: number | null;
}

/**
 * Updates a base directory (rebuilt by rebuildImageDir, or maintained by this function) so
 * that it holds every page of the dump `delta` describes, writing as little as possible:
 *
 *  - a pagemap whose every present page of the delta's layout is already present in the
 *    base (same entries; or, when the base has an index, any layout covering them) is
 *    updated in place: only the delta's pages and the zero pages that are not already zero
 *    are written, at their offsets in the existing pages file (pwrite). The pagemap and the
 *    other pages are not touched; pages the dump no longer has stay as harmless extras.
 *  - otherwise (new pages, new pagemap) the pagemap's pages file is rebuilt whole into a
 *    temporary file from the old one and the delta, then renamed over it with a new pagemap.
 *  - pagemaps the delta no longer has are deleted.
 *
 * The base keeps its own pages file numbers. Everything is planned and checked (against the
 * base index, and rewritten files against the old pages) before the base is modified; then
 * the index and extras files are removed, the base updated, and both rewritten last. Not
 * atomic: after a failure past that point the base must be rebuilt from scratch.
 * No fsync (the base is read back on this host through the page cache).
 */
export async function applyDeltaInPlace(baseDir: string, delta: Delta, opts: ApplyOptions = {}): Promise<ApplyStats> {
  const t0 = performance.now();
  const verify = opts.verify ?? true;
  const maxExtra = opts.maxExtraPages ?? 2048;
  const baseIndex = await readBaseIndex(baseDir);
  const extras = await readExtras(baseDir);
  const newExtras: Extras = new Map();
  const fromDelta = deltaDataByPage(delta);
  const stats: ApplyStats = {
    pagesWritten: 0, extraPages: 0, zeroWritten: 0, inPlacePagemaps: 0, rewrittenPagemaps: 0, rewrittenPages: 0,
    removedPagemaps: 0, verified: baseIndex !== null && verify, ms: 0, index: new Map(),
  };

  // Plan everything (and check the base) before writing anything.
  const basePms = new Map<string, Pagemap>();
  for (const id of await listPagemapIds(baseDir)) basePms.set(id, await readPagemap(baseDir, id));
  const usedPagesIds = new Set([...basePms.values()].map((pm) => pm.pagesId));
  const plans: Array<InPlacePlan | RewritePlan> = [];
  for (const pp of delta.index.values()) {
    const pm = basePms.get(pp.id);
    const dataOf = fromDelta.get(pp.id);
    const extra = extras.get(pp.id);
    const plan = pm ? planInPlace(pp, pm, trustedIndex(baseIndex, pm), dataOf, extra, maxExtra, baseDir, verify) : null;
    if (plan) plans.push(plan);
    else {
      let pagesId = pm?.pagesId ?? pp.pagesId;
      if (!pm) {
        while (usedPagesIds.has(pagesId)) pagesId++;
        usedPagesIds.add(pagesId);
      }
      plans.push({ kind: 'rewrite', pp, dataOf: dataWithExtras(pp, dataOf, extra), pagesId, oldPagesId: pm?.pagesId ?? null });
    }
  }

  // Rewrites first, into temporary files (they read the old pages files and check them):
  // the base is still untouched when one fails.
  const renames: Array<[tmp: string, pp: ProcessPages, pagesId: number]> = [];
  for (const plan of plans) {
    if (plan.kind !== 'rewrite') continue;
    const base = plan.oldPagesId === null ? null : await openBase(baseDir, plan.pp.id);
    const tmp = `${pagesPath(baseDir, plan.pagesId)}.tmp`;
    const st = { fromDelta: 0, fromBase: 0, zeroFilled: 0 };
    try {
      await writeFullPagesFile(plan.pp, base, baseDir, plan.dataOf, tmp, verify, st);
    } catch (err) {
      for (const t of [tmp, ...renames.map((r) => r[0])]) await rm(t, { force: true });
      throw err;
    } finally {
      await base?.fh.close();
    }
    renames.push([tmp, plan.pp, plan.pagesId]);
    stats.rewrittenPagemaps++;
    stats.rewrittenPages += plan.pp.vaddrs.length;
    stats.index.set(plan.pp.id, { ...plan.pp, pagesId: plan.pagesId });
  }
  // From here on the base is modified: without index and extras until they are rewritten.
  await rm(join(baseDir, BASE_INDEX_FILE), { force: true });
  await rm(join(baseDir, BASE_EXTRA_FILE), { force: true }); // its pages are in memory (extras)
  for (const plan of plans) {
    if (plan.kind !== 'inplace') continue;
    if (plan.writes.length > 0) writePagesAtSync(plan.path, plan.writes);
    stats.inPlacePagemaps++;
    stats.pagesWritten += plan.writes.length;
    stats.zeroWritten += plan.zeros;
    stats.index.set(plan.pp.id, plan.next);
    if (plan.extra.size > 0) newExtras.set(plan.pp.id, plan.extra);
  }
  for (const [tmp, pp, pagesId] of renames) {
    await rename(tmp, pagesPath(baseDir, pagesId));
    const pmTmp = join(baseDir, `pagemap-${pp.id}.img.tmp`);
    await writeFile(pmTmp, encodePagemap({ pagesId, entries: pp.entries }));
    await rename(pmTmp, pagemapPath(baseDir, pp.id));
  }
  for (const [id, pm] of basePms) {
    if (delta.index.has(id)) continue;
    await rm(pagemapPath(baseDir, id), { force: true });
    if (![...stats.index.values()].some((x) => x.pagesId === pm.pagesId)) await rm(pagesPath(baseDir, pm.pagesId), { force: true });
    stats.removedPagemaps++;
  }
  stats.extraPages = await writeExtras(baseDir, newExtras);
  await writeBaseIndex(baseDir, stats.index);
  stats.ms = performance.now() - t0;
  return stats;
}

/**
 * pwrite()s pages at their page positions, consecutive positions coalesced into one
 * pwritev. Synchronous on purpose: the pages are scattered (typically one per run), an
 * async call per run costs ~0.1 ms of thread-pool round trip against ~5 us for the
 * syscall into the page cache; the event loop is blocked for about 5-10 us per run.
 */
function writePagesAtSync(path: string, writes: Array<[number, Buffer]>): void {
  const fd = openSync(path, 'r+');
  try {
    for (let w = 0; w < writes.length; ) {
      let n = 1;
      while (w + n < writes.length && n < MAX_IOV && writes[w + n]![0] === writes[w]![0] + n) n++;
      let bufs = writes.slice(w, w + n).map((x) => x[1]);
      let pos = writes[w]![0] * PAGE_SIZE;
      let want = n * PAGE_SIZE;
      while (want > 0) {
        const done = writevSync(fd, bufs, pos);
        want -= done;
        pos += done;
        if (want > 0) {
          const all = Buffer.concat(bufs);
          bufs = [all.subarray(all.length - want)];
        }
      }
      w += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** The in-place plan for pp over the base pagemap pm, or null when pm does not cover pp. */
function planInPlace(
  pp: ProcessPages,
  pm: Pagemap,
  known: ProcessPages | undefined,
  dataOf: Map<number, Buffer> | undefined,
  oldExtra: Map<number, ExtraPage> | undefined,
  maxExtra: number,
  baseDir: string,
  verify: boolean,
): InPlacePlan | null {
  const exact = sameEntries(pm.entries, pp.entries);
  // Without an index, the hashes of base pages the delta's layout lacks would be unknown.
  if (!exact && !known) return null;
  const baseVaddrs = known?.vaddrs ?? pp.vaddrs;
  const hashes = known ? known.hashes.slice() : pp.hashes.slice();
  const next32 = hashView(hashes);
  const zero = known ? known.zero.slice() : pp.zero.slice();
  const writes: Array<[number, Buffer]> = [];
  const extra = new Map<number, ExtraPage>();
  const cur32 = hashView(pp.hashes);
  const known32 = known ? hashView(known.hashes) : null;
  let zeros = 0;
  let j = 0;
  for (let i = 0; i < pp.vaddrs.length; i++) {
    const vaddr = pp.vaddrs[i]!;
    while (j < baseVaddrs.length && baseVaddrs[j]! < vaddr) j++;
    const d = dataOf?.get(i);
    if (j >= baseVaddrs.length || baseVaddrs[j] !== vaddr) {
      // A page the base's layout lacks: kept as an extra page (zero pages need nothing).
      if (pp.zero[i]) continue;
      const x = d ?? oldExtra?.get(vaddr)?.data;
      if (!x) return null; // not in the delta, not kept: let the rewrite report it
      if (!d && oldExtra!.get(vaddr)!.hash !== pp.hashes[i]) return null;
      extra.set(vaddr, { hash: pp.hashes[i]!, data: x });
      if (extra.size > maxExtra) return null;
      continue;
    }
    if (d) writes.push([j, d]);
    else if (pp.zero[i]) {
      if (!known || !known.zero[j]) {
        writes.push([j, ZERO_PAGE]);
        zeros++;
      }
    } else if (known && verify && (known.zero[j] || !sameHash(known32!, j, cur32, i))) {
      throw new ImageFormatError(
        join(baseDir, BASE_INDEX_FILE),
        undefined,
        `base page ${pp.id} @0x${vaddr.toString(16)} is not in the delta and differs from it: the base is not the previous round`,
      );
    }
    next32[2 * j] = cur32[2 * i]!;
    next32[2 * j + 1] = cur32[2 * i + 1]!;
    zero[j] = pp.zero[i]!;
  }
  const next: ProcessPages = known
    ? { ...known, hashes, zero }
    : { ...pp, pagesId: pm.pagesId, hashes, zero };
  return { kind: 'inplace', pp, path: pagesPath(baseDir, pm.pagesId), extra, writes, zeros, next };
}
