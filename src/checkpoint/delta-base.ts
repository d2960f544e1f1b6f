// What a receiver's base directory carries besides CRIU's images: the page index of every
// page it holds (BASE_INDEX_FILE) and the pages held outside its pages files
// (BASE_EXTRA_FILE), both in the delta wire format; plus the checks that say whether a
// base pagemap is the one an index or a delta describes. Shared by delta-rebuild.ts and
// delta-apply.ts.
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readFileIfExists } from '../util/fs.js';
import { emptyCounts, idToPid, type PageIndex, type ProcessPages } from './page-index.js';
import { PAGE_SIZE, PE_PRESENT, readPagemap, type Pagemap, type PagemapEntry } from './pagemap.js';
import type { DeltaPage } from './delta-types.js';
import { decodeDelta, encodeDelta, writeDeltaFile } from './delta-wire.js';

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
  await writeFile(tmp, encodeDelta({ pageSize: PAGE_SIZE, index, pages: [], counts: emptyCounts() }));
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

export interface ExtraPage {
  hash: bigint;
  data: Buffer;
}

/** By pagemap id, then vaddr. */
export type Extras = Map<string, Map<number, ExtraPage>>;

export async function readExtras(dir: string): Promise<Extras> {
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

export async function writeExtras(dir: string, extras: Extras): Promise<number> {
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
      id,
      pid: idToPid(id),
      pagesId: 0,
      entries,
      vaddrs: Float64Array.from(vs),
      hashes: BigUint64Array.from(vs.map((v) => m.get(v)!.hash)),
      zero: new Uint8Array(vs.length),
      parentPages: 0,
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
export function dataWithExtras(
  pp: ProcessPages,
  dataOf: Map<number, Buffer> | undefined,
  extra: Map<number, ExtraPage> | undefined,
): Map<number, Buffer> | undefined {
  if (!extra || extra.size === 0) return dataOf;
  const out = new Map(dataOf);
  for (let i = 0; i < pp.vaddrs.length; i++) {
    if (pp.zero[i] || out.has(i)) continue;
    const x = extra.get(pp.vaddrs[i]!);
    if (x && x.hash === pp.hashes[i]) out.set(i, x.data);
  }
  return out;
}

export function sameEntries(a: readonly PagemapEntry[], b: readonly PagemapEntry[]): boolean {
  return a.length === b.length && a.every((e, i) => e.vaddr === b[i]!.vaddr && e.nrPages === b[i]!.nrPages && e.flags === b[i]!.flags);
}

/** The index entry of `id` when it describes the pagemap on disk exactly, else undefined. */
export function trustedIndex(index: PageIndex | null, pm: Pagemap): ProcessPages | undefined {
  const pp = index?.get(pm.id);
  return pp && pp.pagesId === pm.pagesId && sameEntries(pp.entries, pm.entries) ? pp : undefined;
}

export async function readPagemapIfAny(dir: string, id: string): Promise<Pagemap | null> {
  try {
    return await readPagemap(dir, id);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}
