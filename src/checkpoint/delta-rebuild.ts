// Receiver side of a page delta: a complete CRIU image directory that `criu restore`
// accepts, from a base directory (or none) and a delta (see delta-types.ts for the round
// flow). Full mode writes every page; parent mode writes only what changed and links the
// base as CRIU's parent image, optionally with a view for a lazy (post-copy) restore.
import { copyFile, mkdir, open, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../util/errors.js';
import { ImageFormatError } from './image-file.js';
import { presentVaddrs, ZERO_PAGE, type PageIndex, type ProcessPages } from './page-index.js';
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
  readPagemap,
  writePagemap,
  type Pagemap,
  type PagemapEntry,
} from './pagemap.js';
import {
  BASE_INDEX_FILE,
  dataWithExtras,
  readBaseIndex,
  readExtras,
  readPagemapIfAny,
  sameEntries,
  trustedIndex,
  writeBaseIndex,
  type ExtraPage,
} from './delta-base.js';
import { openBase, verifyBasePages, writeAllAt, writeFullPagesFile } from './delta-pages-file.js';
import { deltaDataByPage, hashView, sameHash, type Delta } from './delta-types.js';

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

async function copySmallImages(smallImagesDir: string, outDir: string, delta: Delta): Promise<number> {
  const names = (await readdir(smallImagesDir, { withFileTypes: true }))
    .filter((ent) => ent.isFile() && !isPageImageName(ent.name) && !ent.name.startsWith('cloudlet-'))
    .map((ent) => ent.name);
  // In parallel: a final round waits for these copies (dozens of small files).
  await Promise.all(names.map((name) => copyFile(join(smallImagesDir, name), join(outDir, name))));
  const n = names.length;
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

/** Refuses contradictory options, then creates outDir (which must be empty). */
async function prepareRebuild(opts: RebuildOptions): Promise<void> {
  const { outDir, parent } = opts;
  const baseDir = opts.baseDir ?? null;
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
  await prepareRebuild(opts);
  const stats: RebuildStats = { pages: 0, fromDelta: 0, fromBase: 0, zeroFilled: 0, inParent: 0, fromExtra: 0, pageBytes: 0, smallFiles: 0, ms: 0 };
  if (opts.smallImagesDir !== null) stats.smallFiles = await copySmallImages(opts.smallImagesDir, opts.outDir, opts.delta);
  if (opts.parent) await rebuildOnParent(opts, opts.parent, stats);
  else await rebuildFull(opts, stats);
  stats.ms = performance.now() - t0;
  return stats;
}

/** Full mode: every pagemap's complete pages file, from the delta, zeros and the base. */
async function rebuildFull(opts: RebuildOptions, stats: RebuildStats): Promise<void> {
  const { delta, outDir } = opts;
  const baseDir = opts.baseDir ?? null;
  const verify = opts.verify ?? true;
  const fromDelta = deltaDataByPage(delta);
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
  if (opts.writeIndex ?? opts.smallImagesDir === null) await writeBaseIndex(outDir, delta.index);
}

/** Parent mode: pagemaps that leave unchanged pages in the parent, then outDir/parent. */
async function rebuildOnParent(opts: RebuildOptions, parent: ParentImage, stats: RebuildStats): Promise<void> {
  const { delta, outDir } = opts;
  const fromDelta = deltaDataByPage(delta);
  const baseIndex = await readBaseIndex(parent.dir);
  const extras = await readExtras(parent.dir);
  if (opts.lazyView !== undefined) {
    await mkdir(opts.lazyView, { recursive: true });
    if ((await readdir(opts.lazyView)).length > 0) throw new UsageError(`rebuildImageDir: ${opts.lazyView} is not empty`);
  }
  for (const pp of delta.index.values()) {
    await writeParentPagemap(
      pp,
      {
        parentDir: parent.dir,
        baseIndex,
        dataOf: fromDelta.get(pp.id),
        extra: extras.get(pp.id),
        outDir,
        verify: opts.verify ?? true,
        lazyView: opts.lazyView ?? null,
      },
      stats,
    );
  }
  await symlink(parent.link, join(outDir, 'parent'));
}

// ---------------------------------------------------------------- parent mode, one pagemap

/** What one pagemap of parent mode is written from. */
interface ParentPagemapSource {
  parentDir: string;
  baseIndex: PageIndex | null;
  /** The delta's page data of this pagemap, by present-page index. */
  dataOf: Map<number, Buffer> | undefined;
  /** The base's extra pages of this pagemap (BASE_EXTRA_FILE), by vaddr. */
  extra: Map<number, ExtraPage> | undefined;
  outDir: string;
  verify: boolean;
  lazyView: string | null;
}

/**
 * Parent mode, one pagemap being built: outDir's entries and page data, the base pages
 * still to be read and checked, and the lazy view's marks (see RebuildOptions.lazyView).
 */
class ParentPagemapBuilder {
  readonly entries: PagemapEntry[] = [];
  readonly data: Buffer[] = [];
  /** [base index, hash, vaddr] of base pages to read and hash (the base has no index). */
  readonly checks: Array<[number, bigint, number]> = [];
  /** Which base pages the lazy-pages daemon serves. */
  readonly lazyMark: Uint8Array;
  /** Changed pages the daemon serves from the base pages file, written there in place. */
  readonly inPlace: Array<[number, Buffer]> = [];
  private readonly lazy: boolean;

  constructor(
    private readonly lazyView: string | null,
    hasBase: boolean,
    basePages: number,
  ) {
    this.lazy = lazyView !== null && hasBase;
    this.lazyMark = new Uint8Array(this.lazy ? basePages : 0);
  }

  push(vaddr: number, flags: number): void {
    const last = this.entries[this.entries.length - 1];
    if (last && last.flags === flags && last.vaddr + last.nrPages * PAGE_SIZE === vaddr) last.nrPages++;
    else this.entries.push({ vaddr, nrPages: 1, flags });
  }

  /** A page outDir holds: in the lazy case it stays PE_LAZY only when the daemon can serve it. */
  flagsFor(eflags: number, inBase: boolean, atBase: number, write: Buffer | null): number {
    if (this.lazyView === null) return eflags;
    if (!this.lazy || !inBase || !(eflags & PE_LAZY)) return eflags & ~PE_LAZY;
    this.lazyMark[atBase] = 1;
    if (write) this.inPlace.push([atBase, write]);
    return eflags;
  }

  /** A page left in the parent: PE_LAZY too when the daemon serves it (eager restores: none). */
  parentFlags(eflags: number, atBase: number): number {
    return this.lazyView === null ? PE_PARENT : PE_PARENT | (this.flagsFor(eflags, true, atBase, null) & PE_LAZY);
  }
}

/** One pagemap's comparison state: the delta's layout against the base's. */
interface ParentPageContext {
  pp: ProcessPages;
  src: ParentPagemapSource;
  /** The base index of this pagemap when it describes the base's pagemap exactly. */
  known: ProcessPages | undefined;
  known32: Uint32Array | null;
  cur32: Uint32Array;
  stats: RebuildStats;
}

/**
 * Present page i of pp (at base position j; inBase: the base has its vaddr): written from
 * the delta, zero-filled, taken from the base's extra pages, or left in the parent.
 */
function placeParentPage(b: ParentPagemapBuilder, c: ParentPageContext, eflags: number, i: number, j: number, inBase: boolean): void {
  const { pp, src, known, stats } = c;
  const vaddr = pp.vaddrs[i]!;
  const d = src.dataOf?.get(i);
  if (d) {
    b.data.push(d);
    stats.fromDelta++;
    b.push(vaddr, b.flagsFor(eflags, inBase, j, d));
    return;
  }
  if (pp.zero[i]) {
    if (inBase && known && known.zero[j]) {
      stats.inParent++;
      b.push(vaddr, b.parentFlags(eflags, j));
    } else {
      b.data.push(ZERO_PAGE);
      stats.zeroFilled++;
      b.push(vaddr, b.flagsFor(eflags, inBase, j, ZERO_PAGE));
    }
    return;
  }
  if (!inBase) {
    const x = src.extra?.get(vaddr);
    if (!x || x.hash !== pp.hashes[i]) {
      throw new UsageError(`page ${pp.id} @0x${vaddr.toString(16)} is neither in the delta nor in the parent directory`, {
        context: { id: pp.id, vaddr, parentDir: src.parentDir },
      });
    }
    b.data.push(x.data);
    stats.fromExtra++;
    b.push(vaddr, b.flagsFor(eflags, false, j, null));
    return;
  }
  if (known) {
    if (known.zero[j] || !sameHash(c.known32!, j, c.cur32, i)) {
      throw new ImageFormatError(
        join(src.parentDir, BASE_INDEX_FILE),
        undefined,
        `base page ${pp.id} @0x${vaddr.toString(16)} does not match the delta's hash: the base is not the previous round`,
      );
    }
  } else if (src.verify) b.checks.push([j, pp.hashes[i]!, vaddr]);
  stats.inParent++;
  b.push(vaddr, b.parentFlags(eflags, j));
}

/** Parent mode, one pagemap: split its PRESENT entries into PE_PARENT and PE_PRESENT runs. */
async function writeParentPagemap(pp: ProcessPages, src: ParentPagemapSource, stats: RebuildStats): Promise<void> {
  const basePm = await readPagemapIfAny(src.parentDir, pp.id);
  const known = basePm ? trustedIndex(src.baseIndex, basePm) : undefined;
  const baseVaddrs = known?.vaddrs ?? (basePm ? presentVaddrs(basePm) : new Float64Array(0));
  const b = new ParentPagemapBuilder(src.lazyView, basePm !== null, baseVaddrs.length);
  const c: ParentPageContext = { pp, src, known, known32: known ? hashView(known.hashes) : null, cur32: hashView(pp.hashes), stats };
  let i = 0; // present page index in pp
  let j = 0; // merge cursor in baseVaddrs (both ascending)
  for (const e of pp.entries) {
    if (!(e.flags & PE_PRESENT)) {
      b.entries.push({ ...e });
      continue;
    }
    for (let p = 0; p < e.nrPages; p++, i++) {
      const vaddr = pp.vaddrs[i]!;
      while (j < baseVaddrs.length && baseVaddrs[j]! < vaddr) j++;
      placeParentPage(b, c, e.flags, i, j, j < baseVaddrs.length && baseVaddrs[j] === vaddr);
    }
  }
  if (b.checks.length > 0) await verifyBasePages(pagesPath(src.parentDir, basePm!.pagesId), b.checks, pp.id);
  if (src.lazyView !== null) await writeLazyView(src.lazyView, pp.id, basePm, src.parentDir, b.lazyMark, b.inPlace);
  await writePagemap(src.outDir, { id: pp.id, pagesId: pp.pagesId, entries: b.entries });
  const fh = await open(pagesPath(src.outDir, pp.pagesId), 'w');
  try {
    stats.pageBytes += await writeAllAt(fh, b.data, 0);
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
