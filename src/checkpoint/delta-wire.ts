// The wire form of a page delta (see delta-types.ts for the round flow): encodeDelta /
// encodeDeltaChunks on the sender, decodeDelta on the receiver, and the file forms.
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
import { open, readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { UsageError } from '../util/errors.js';
import { ImageFormatError } from './image-file.js';
import { findPage, hashPage, idToPid, presentVaddrs, type PageDiffCounts, type PageIndex, type ProcessPages } from './page-index.js';
import { PAGE_SIZE, presentPageCount, type PagemapEntry } from './pagemap.js';
import { hashView, sameHash, SLAB_PAGES, type Delta, type DeltaPage } from './delta-types.js';

export const DELTA_MAGIC = 0x544c4443;
export const DELTA_VERSION = 1;
/** Hashes inherited from the receiver's base index (see the format above). */
export const DELTA_VERSION_AGAINST_BASE = 2;
export const DELTA_HEADER_BYTES = 40;
const PAGE_RECORD_BYTES = 16;
const ENTRY_BYTES = 16;
const MAX_ID_BYTES = 255;

// Hash arrays are copied to and from the wire as raw bytes, which are little-endian there.
if (endianness() !== 'LE') throw new Error('the checkpoint module needs a little-endian host');

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
      // u64 LE hashes: the array's bytes as they are (little-endian hosts only, checked above)
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
    if (run !== null && run.length < maxRun && p.data.buffer === run.buffer && p.data.byteOffset === run.byteOffset + run.length) {
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

// ---------------------------------------------------------------- decoding

/** The buffer being decoded; every failure names the artifact and the offset. */
class DeltaCursor {
  constructor(
    readonly buf: Buffer,
    readonly name: string,
  ) {}

  fail(offset: number, msg: string): never {
    throw new ImageFormatError(this.name, offset, msg);
  }

  need(pos: number, n: number, what: string): void {
    if (pos + n > this.buf.length) this.fail(pos, `truncated delta: ${what} needs ${n} bytes, ${Math.max(0, this.buf.length - pos)} left`);
  }
}

interface DeltaHeader {
  version: number;
  headerBytes: number;
  pageSize: number;
  nProcs: number;
  nPages: number;
  counts: PageDiffCounts;
}

function decodeHeader(c: DeltaCursor, against: PageIndex | null): DeltaHeader {
  const { buf } = c;
  c.need(0, DELTA_HEADER_BYTES, 'header');
  if (buf.readUInt32LE(0) !== DELTA_MAGIC) c.fail(0, `bad delta magic 0x${buf.readUInt32LE(0).toString(16)}`);
  const version = buf.readUInt16LE(4);
  if (version !== DELTA_VERSION && version !== DELTA_VERSION_AGAINST_BASE) c.fail(4, `unsupported delta version ${version}`);
  if (version === DELTA_VERSION_AGAINST_BASE && against === null) {
    c.fail(4, 'delta inherits hashes from a base index (version 2), but no base index was given');
  }
  const headerBytes = buf.readUInt16LE(6);
  if (headerBytes < DELTA_HEADER_BYTES) c.fail(6, `header size ${headerBytes} too small`);
  c.need(0, headerBytes, 'header');
  const pageSize = buf.readUInt32LE(8);
  if (pageSize !== PAGE_SIZE) c.fail(8, `page size ${pageSize} is not supported`);
  const nProcs = buf.readUInt32LE(12);
  const nPages = buf.readUInt32LE(16);
  const [scanned, unchanged, changed, zero, nw] = [0, 1, 2, 3, 4].map((i) => buf.readUInt32LE(20 + 4 * i)) as [number, number, number, number, number];
  const counts: PageDiffCounts = { scanned, unchanged, changed, zero, new: nw };
  return { version, headerBytes, pageSize, nProcs, nPages, counts };
}

/** The nEntries pagemap entries of section `id` at pos: aligned, non-empty, ascending. */
function decodeEntries(c: DeltaCursor, start: number, nEntries: number, id: string): PagemapEntry[] {
  const { buf } = c;
  const entries: PagemapEntry[] = [];
  let pos = start;
  let prevEnd = 0;
  for (let e = 0; e < nEntries; e++) {
    const vaddr = buf.readBigUInt64LE(pos);
    const nrPages = buf.readUInt32LE(pos + 8);
    const flags = buf.readUInt32LE(pos + 12);
    const end = vaddr + BigInt(nrPages) * BigInt(PAGE_SIZE);
    if (end > BigInt(Number.MAX_SAFE_INTEGER)) c.fail(pos, `entry vaddr 0x${vaddr.toString(16)} above 2^53`);
    if (Number(vaddr) % PAGE_SIZE !== 0 || nrPages === 0 || Number(vaddr) < prevEnd) {
      c.fail(pos, `invalid pagemap entry ${e} of '${id}' (unaligned, empty or not ascending)`);
    }
    prevEnd = Number(end);
    entries.push({ vaddr: Number(vaddr), nrPages, flags });
    pos += ENTRY_BYTES;
  }
  return entries;
}

/** v2: the inherit bitmap, then the hashes of the pages without its bit (see the format). */
function decodeInheritedHashes(c: DeltaCursor, start: number, id: string, vaddrs: Float64Array, against: PageIndex): { hashes: BigUint64Array; pos: number } {
  const { buf } = c;
  const k = vaddrs.length;
  const hashes = new BigUint64Array(k);
  const bitmap = start;
  let pos = start + Math.ceil(k / 8);
  const explicit = buf.readUInt32LE(pos);
  pos += 4;
  c.need(pos, explicit * 8 + Math.ceil(k / 8), `pagemap '${id}' hashes`);
  const base = against.get(id);
  let m = 0;
  for (let i = 0; i < k; i++) {
    if ((buf[bitmap + (i >> 3)]! >> (i & 7)) & 1) {
      const j = base ? findPage(base.vaddrs, vaddrs[i]!) : -1;
      if (j < 0) c.fail(bitmap, `pagemap '${id}': page ${i} inherits a hash the base index does not have`);
      hashes[i] = base!.hashes[j]!;
    } else {
      if (m === explicit) c.fail(pos - 4, `pagemap '${id}': more pages without an inherited hash than the ${explicit} announced`);
      hashes[i] = buf.readBigUInt64LE(pos + 8 * m);
      m++;
    }
  }
  if (m !== explicit) c.fail(pos - 4, `pagemap '${id}': ${explicit} hashes announced, ${m} pages without an inherited hash`);
  return { hashes, pos: pos + 8 * explicit };
}

/** One pagemap section at `start`: its layout, hashes and zero flags. */
function decodeSection(c: DeltaCursor, start: number, version: number, against: PageIndex | null, index: PageIndex): { pp: ProcessPages; pos: number } {
  const { buf } = c;
  let pos = start;
  c.need(pos, 2, 'pagemap id length');
  const idLen = buf.readUInt16LE(pos);
  c.need(pos + 2, idLen + 12, 'pagemap section');
  const id = buf.toString('utf8', pos + 2, pos + 2 + idLen);
  if (!/^[A-Za-z0-9_-]+$/.test(id)) c.fail(pos, `invalid pagemap id '${id}'`);
  if (index.has(id)) c.fail(pos, `duplicate pagemap id '${id}'`);
  pos += 2 + idLen;
  const pagesId = buf.readUInt32LE(pos);
  const nEntries = buf.readUInt32LE(pos + 4);
  const k = buf.readUInt32LE(pos + 8);
  pos += 12;
  c.need(pos, nEntries * ENTRY_BYTES + (version === DELTA_VERSION ? k * 8 : Math.ceil(k / 8) + 4) + Math.ceil(k / 8), `pagemap '${id}' layout`);
  const entries = decodeEntries(c, pos, nEntries, id);
  pos += nEntries * ENTRY_BYTES;
  // Counted before the vaddrs are materialised: entries claiming billions of pages must be
  // refused, not allocated (k is bounded by the buffer: its hashes are in it). Found by fuzzing.
  const present = presentPageCount({ entries });
  if (present !== k) c.fail(pos, `pagemap '${id}': ${k} present pages announced, entries hold ${present}`);
  const vaddrs = presentVaddrs({ entries });
  let hashes: BigUint64Array;
  if (version === DELTA_VERSION) {
    hashes = new BigUint64Array(k);
    new Uint8Array(hashes.buffer).set(buf.subarray(pos, pos + 8 * k));
    pos += 8 * k;
  } else {
    ({ hashes, pos } = decodeInheritedHashes(c, pos, id, vaddrs, against!));
  }
  const zeroFlags = new Uint8Array(k);
  for (let i = 0; i < k; i++) zeroFlags[i] = (buf[pos + (i >> 3)]! >> (i & 7)) & 1;
  pos += Math.ceil(k / 8);
  const pp: ProcessPages = { id, pid: idToPid(id), pagesId, entries, vaddrs, hashes, zero: zeroFlags, parentPages: 0 };
  return { pp, pos };
}

/** The page table at `start` and the page data after it (views into the buffer). */
function decodePageRecords(c: DeltaCursor, start: number, nPages: number, procs: ProcessPages[], verify: boolean): DeltaPage[] {
  const { buf } = c;
  let pos = start;
  c.need(pos, nPages * PAGE_RECORD_BYTES, 'page table');
  const dataStart = pos + nPages * PAGE_RECORD_BYTES;
  const expected = dataStart + nPages * PAGE_SIZE;
  if (buf.length !== expected) {
    c.fail(Math.min(buf.length, expected), `delta length ${buf.length} != expected ${expected} (${nPages} pages): truncated or trailing bytes`);
  }
  const pages: DeltaPage[] = [];
  let lastS = -1;
  let lastK = -1;
  for (let r = 0; r < nPages; r++) {
    const s = buf.readUInt32LE(pos);
    const k = buf.readUInt32LE(pos + 4);
    const vaddr = buf.readBigUInt64LE(pos + 8);
    const pp = procs[s];
    if (!pp) c.fail(pos, `page record ${r}: section ${s} out of range`);
    if (k >= pp!.vaddrs.length) c.fail(pos, `page record ${r}: page index ${k} out of range`);
    if (BigInt(pp!.vaddrs[k]!) !== vaddr) c.fail(pos, `page record ${r}: vaddr 0x${vaddr.toString(16)} disagrees with the layout`);
    if (s < lastS || (s === lastS && k <= lastK)) c.fail(pos, `page record ${r}: records not ascending`);
    if (pp!.zero[k]) c.fail(pos, `page record ${r}: data for a zero page`);
    lastS = s;
    lastK = k;
    const data = buf.subarray(dataStart + r * PAGE_SIZE, dataStart + (r + 1) * PAGE_SIZE);
    if (verify && hashPage(data) !== pp!.hashes[k]) {
      c.fail(dataStart + r * PAGE_SIZE, `page record ${r} (${pp!.id} @0x${vaddr.toString(16)}): data does not match its hash`);
    }
    pages.push({ id: pp!.id, index: k, vaddr: Number(vaddr), data });
    pos += PAGE_RECORD_BYTES;
  }
  return pages;
}

/**
 * Parses and validates the wire form. Page data are views into `buf` (no copy). With
 * verify (default) every page record's data is hashed and checked against the layout.
 */
export function decodeDelta(buf: Buffer, name = 'delta', opts: { verify?: boolean; against?: PageIndex | null } = {}): Delta {
  const c = new DeltaCursor(buf, name);
  const against = opts.against ?? null;
  const header = decodeHeader(c, against);
  let pos = header.headerBytes;
  const index: PageIndex = new Map();
  const procs: ProcessPages[] = [];
  for (let s = 0; s < header.nProcs; s++) {
    const section = decodeSection(c, pos, header.version, against, index);
    index.set(section.pp.id, section.pp);
    procs.push(section.pp);
    pos = section.pos;
  }
  const pages = decodePageRecords(c, pos, header.nPages, procs, opts.verify ?? true);
  return { pageSize: header.pageSize, index, pages, counts: header.counts };
}

export async function readDeltaFile(path: string, opts: { verify?: boolean } = {}): Promise<Delta> {
  return decodeDelta(await readFile(path), path, opts);
}
