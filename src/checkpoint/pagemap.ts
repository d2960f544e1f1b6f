// pagemap-ID.img: which virtual pages of a process (or of a shared-memory object) a dump
// holds, and where their data lives. ID is a pid ("pagemap-1234.img") or a shared-memory
// id ("pagemap-shmem-5678.img", anonymous MAP_SHARED memory); both have the same format.
// The first entry (pagemap_head) names the pages file pages-PAGES_ID.img; every following
// entry is a run of nrPages pages starting at vaddr with flags:
//   PE_PRESENT: the pages are in this directory's pages file, in pagemap order;
//   PE_PARENT:  the pages are in the parent image directory (the `parent` link);
//   PE_LAZY:    may be restored lazily (with PRESENT: the data is in the file anyway).
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  decodePagemapEntry,
  decodePagemapHead,
  encodePagemapEntry,
  encodePagemapHead,
  ImageFormatError,
  IMG_COMMON_MAGIC,
  PAGEMAP_MAGIC,
  readImageFile,
  serializeImage,
} from './image-file.js';

export const PAGE_SIZE = 4096;
export const PE_PARENT = 1;
export const PE_LAZY = 2;
export const PE_PRESENT = 4;
const KNOWN_FLAGS = PE_PARENT | PE_LAZY | PE_PRESENT;

/** pagemap entries are tiny; anything bigger than this is corruption, not data. */
const MAX_PAGEMAP_ENTRY_BYTES = 1024;

export interface PagemapEntry {
  vaddr: number;
  nrPages: number;
  /** Normalized: absent flags mean PE_PRESENT, or PE_PARENT when in_parent was set. */
  flags: number;
}

export interface Pagemap {
  /** What follows "pagemap-" in the file name: a pid ("1234") or "shmem-5678". */
  id: string;
  pagesId: number;
  entries: PagemapEntry[];
}

export type PagemapId = string | number;

export function pagemapPath(dir: string, id: PagemapId): string {
  return join(dir, `pagemap-${id}.img`);
}

export function pagesPath(dir: string, pagesId: number): string {
  return join(dir, `pages-${pagesId}.img`);
}

const PAGEMAP_NAME = /^pagemap-([A-Za-z0-9_-]+)\.img$/;
const PAGES_NAME = /^pages-\d+\.img$/;

/** True for the files that carry page data or its layout (pagemap-*.img, pages-*.img). */
export function isPageImageName(name: string): boolean {
  return PAGEMAP_NAME.test(name) || PAGES_NAME.test(name);
}

/** The ids of every pagemap in an image directory: pids first (numerically), then others. */
export async function listPagemapIds(dir: string): Promise<string[]> {
  const ids: string[] = [];
  for (const name of await readdir(dir)) {
    const m = PAGEMAP_NAME.exec(name);
    if (m) ids.push(m[1]!);
  }
  return ids.sort(compareIds);
}

export function compareIds(a: string, b: string): number {
  const na = /^\d+$/.test(a);
  const nb = /^\d+$/.test(b);
  if (na && nb) return Number(a) - Number(b);
  if (na !== nb) return na ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function presentPageCount(pm: Pick<Pagemap, 'entries'>): number {
  let n = 0;
  for (const e of pm.entries) if (e.flags & PE_PRESENT) n += e.nrPages;
  return n;
}

export interface ReadPagemapOptions {
  /** Check that pages-N.img exists and holds exactly the PRESENT pages (default true). */
  checkPagesFile?: boolean;
}

/**
 * Reads and validates pagemap-ID.img: head first, entries page-aligned, non-empty,
 * ascending and non-overlapping, known flags only, PRESENT and PARENT not both set.
 */
export async function readPagemap(dir: string, id: PagemapId, opts: ReadPagemapOptions = {}): Promise<Pagemap> {
  const file = pagemapPath(dir, id);
  const img = await readImageFile(file, { expectMagic: PAGEMAP_MAGIC, maxEntryBytes: MAX_PAGEMAP_ENTRY_BYTES });
  if (img.prefix !== 'common') throw new ImageFormatError(file, 0, 'pagemap image without the common CRIU magic');
  if (img.entries.length === 0) throw new ImageFormatError(file, 8, 'pagemap image without pagemap_head');
  const head = decodePagemapHead(img.entries[0]!, { file, offset: img.offsets[0]! + 4 });
  const entries: PagemapEntry[] = [];
  let prevEnd = -1;
  for (let i = 1; i < img.entries.length; i++) {
    const offset = img.offsets[i]!;
    const m = decodePagemapEntry(img.entries[i]!, { file, offset: offset + 4 });
    const nrPages = m.nrPages ?? m.compatNrPages;
    const flags = m.flags ?? (m.inParent ? PE_PARENT : PE_PRESENT);
    if (m.vaddr % PAGE_SIZE !== 0) {
      throw new ImageFormatError(file, offset, `entry ${i}: vaddr 0x${m.vaddr.toString(16)} is not page aligned`);
    }
    if (nrPages <= 0) throw new ImageFormatError(file, offset, `entry ${i}: nr_pages is ${nrPages}`);
    if ((flags & ~KNOWN_FLAGS) !== 0) {
      throw new ImageFormatError(file, offset, `entry ${i}: unknown flags 0x${flags.toString(16)}`);
    }
    if (flags & PE_PRESENT && flags & PE_PARENT) {
      throw new ImageFormatError(file, offset, `entry ${i}: both PE_PRESENT and PE_PARENT set`);
    }
    if (m.vaddr < prevEnd) {
      throw new ImageFormatError(
        file,
        offset,
        `entry ${i}: vaddr 0x${m.vaddr.toString(16)} is below the end of the previous entry (not sorted or overlapping)`,
      );
    }
    const end = m.vaddr + nrPages * PAGE_SIZE;
    if (!Number.isSafeInteger(end)) throw new ImageFormatError(file, offset, `entry ${i}: range end is above 2^53`);
    prevEnd = end;
    entries.push({ vaddr: m.vaddr, nrPages, flags });
  }
  const pm: Pagemap = { id: String(id), pagesId: head.pagesId, entries };
  if (opts.checkPagesFile ?? true) await checkPagesFile(dir, pm);
  return pm;
}

/** Throws ImageFormatError when pages-N.img is missing or its size disagrees with the pagemap. */
export async function checkPagesFile(dir: string, pm: Pagemap): Promise<void> {
  const path = pagesPath(dir, pm.pagesId);
  const expected = presentPageCount(pm) * PAGE_SIZE;
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    if (expected === 0) return;
    throw new ImageFormatError(path, undefined, `pages file missing (pagemap-${pm.id}.img has ${expected / PAGE_SIZE} present pages)`);
  }
  if (size !== expected) {
    throw new ImageFormatError(
      path,
      undefined,
      `page count inconsistent with pages file size: pagemap-${pm.id}.img has ${expected / PAGE_SIZE} present pages ` +
        `(${expected} bytes) but the file has ${size} bytes`,
      { expectedBytes: expected, actualBytes: size },
    );
  }
}

/**
 * Encodes a pagemap the way criu >= 4.0 does (vaddr, compat_nr_pages = 0, flags, nr_pages):
 * a pagemap read from a criu 4.x image is written back byte for byte.
 */
export function encodePagemap(pm: Pick<Pagemap, 'pagesId' | 'entries'>): Buffer {
  // Fast path, straight into one buffer (parent-mode pagemaps have thousands of entries):
  // the same bytes as encodePagemapSlow, which goes through the generic protobuf encoder.
  // Per entry: u32 length, 08 varint(vaddr), 10 00, 20 varint(flags), 28 varint(nr_pages).
  const out = Buffer.allocUnsafe(8 + 4 + 1 + 5 + pm.entries.length * (4 + 1 + 10 + 2 + 1 + 5 + 1 + 10));
  out.writeUInt32LE(IMG_COMMON_MAGIC, 0);
  out.writeUInt32LE(PAGEMAP_MAGIC, 4);
  let pos = 8;
  const varint = (v: number): void => {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint value ${v} is not a safe non-negative integer`);
    while (v >= 0x80) {
      out[pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    out[pos++] = v;
  };
  const lenAt = pos;
  pos += 4;
  out[pos++] = 0x08;
  varint(pm.pagesId);
  out.writeUInt32LE(pos - lenAt - 4, lenAt);
  for (const e of pm.entries) {
    const at = pos;
    pos += 4;
    out[pos++] = 0x08;
    varint(e.vaddr);
    out[pos++] = 0x10;
    out[pos++] = 0x00;
    out[pos++] = 0x20;
    varint(e.flags);
    out[pos++] = 0x28;
    varint(e.nrPages);
    out.writeUInt32LE(pos - at - 4, at);
  }
  return out.subarray(0, pos);
}

/** encodePagemap through the generic protobuf encoder (reference for tests). */
export function encodePagemapSlow(pm: Pick<Pagemap, 'pagesId' | 'entries'>): Buffer {
  const entries = [encodePagemapHead({ pagesId: pm.pagesId, unknown: [] })];
  for (const e of pm.entries) {
    entries.push(encodePagemapEntry({ vaddr: e.vaddr, compatNrPages: 0, inParent: undefined, flags: e.flags, nrPages: e.nrPages, unknown: [] }));
  }
  return serializeImage({ prefix: 'common', typeMagic: PAGEMAP_MAGIC, entries });
}

export async function writePagemap(dir: string, pm: Pagemap): Promise<void> {
  await writeFile(pagemapPath(dir, pm.id), encodePagemap(pm));
}
