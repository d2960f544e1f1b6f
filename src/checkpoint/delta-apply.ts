// Receiver side of a page delta: update a base directory in place so that it holds every
// page of the dump the delta describes (see applyDeltaInPlace), writing as little as
// possible. Used between pre-copy rounds, so that the final round's rebuild has little left.
import { closeSync, openSync, writevSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageFormatError } from './image-file.js';
import { ZERO_PAGE, type PageIndex, type ProcessPages } from './page-index.js';
import { encodePagemap, listPagemapIds, PAGE_SIZE, pagemapPath, pagesPath, readPagemap, type Pagemap } from './pagemap.js';
import {
  BASE_EXTRA_FILE,
  BASE_INDEX_FILE,
  dataWithExtras,
  readBaseIndex,
  readExtras,
  sameEntries,
  trustedIndex,
  writeBaseIndex,
  writeExtras,
  type ExtraPage,
  type Extras,
} from './delta-base.js';
import { MAX_IOV, openBase, writeFullPagesFile } from './delta-pages-file.js';
import { deltaDataByPage, hashView, sameHash, type Delta } from './delta-types.js';

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

/** The pagemaps of the base directory, by id. */
async function readBasePagemaps(baseDir: string): Promise<Map<string, Pagemap>> {
  const basePms = new Map<string, Pagemap>();
  for (const id of await listPagemapIds(baseDir)) basePms.set(id, await readPagemap(baseDir, id));
  return basePms;
}

/** One plan per pagemap of the delta: in place where the base covers it, else a rewrite. */
function planApply(
  baseDir: string,
  delta: Delta,
  base: { pms: Map<string, Pagemap>; index: PageIndex | null; extras: Extras },
  opts: { verify: boolean; maxExtra: number },
): Array<InPlacePlan | RewritePlan> {
  const fromDelta = deltaDataByPage(delta);
  const usedPagesIds = new Set([...base.pms.values()].map((pm) => pm.pagesId));
  const plans: Array<InPlacePlan | RewritePlan> = [];
  for (const pp of delta.index.values()) {
    const pm = base.pms.get(pp.id);
    const dataOf = fromDelta.get(pp.id);
    const extra = base.extras.get(pp.id);
    const plan = pm ? planInPlace(pp, pm, trustedIndex(base.index, pm), dataOf, extra, opts.maxExtra, baseDir, opts.verify) : null;
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
  return plans;
}

/**
 * The rewrites, into temporary files (they read the old pages files and check them): the
 * base is still untouched when one fails, and every temporary file is then removed.
 */
async function writeRewrites(
  baseDir: string,
  plans: Array<InPlacePlan | RewritePlan>,
  verify: boolean,
  stats: ApplyStats,
): Promise<Array<[tmp: string, pp: ProcessPages, pagesId: number]>> {
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
  return renames;
}

/** The in-place writes; returns the extra pages each pagemap keeps afterwards. */
function writeInPlace(plans: Array<InPlacePlan | RewritePlan>, stats: ApplyStats): Extras {
  const newExtras: Extras = new Map();
  for (const plan of plans) {
    if (plan.kind !== 'inplace') continue;
    if (plan.writes.length > 0) writePagesAtSync(plan.path, plan.writes);
    stats.inPlacePagemaps++;
    stats.pagesWritten += plan.writes.length;
    stats.zeroWritten += plan.zeros;
    stats.index.set(plan.pp.id, plan.next);
    if (plan.extra.size > 0) newExtras.set(plan.pp.id, plan.extra);
  }
  return newExtras;
}

/** Moves the rewritten pages files in place, each with its new pagemap. */
async function commitRewrites(baseDir: string, renames: Array<[tmp: string, pp: ProcessPages, pagesId: number]>): Promise<void> {
  for (const [tmp, pp, pagesId] of renames) {
    await rename(tmp, pagesPath(baseDir, pagesId));
    const pmTmp = join(baseDir, `pagemap-${pp.id}.img.tmp`);
    await writeFile(pmTmp, encodePagemap({ pagesId, entries: pp.entries }));
    await rename(pmTmp, pagemapPath(baseDir, pp.id));
  }
}

/** Deletes the base's pagemaps the delta no longer has (and their pages files, unless reused). */
async function removeGonePagemaps(baseDir: string, delta: Delta, basePms: Map<string, Pagemap>, stats: ApplyStats): Promise<void> {
  for (const [id, pm] of basePms) {
    if (delta.index.has(id)) continue;
    await rm(pagemapPath(baseDir, id), { force: true });
    if (![...stats.index.values()].some((x) => x.pagesId === pm.pagesId)) await rm(pagesPath(baseDir, pm.pagesId), { force: true });
    stats.removedPagemaps++;
  }
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
  const stats: ApplyStats = {
    pagesWritten: 0,
    extraPages: 0,
    zeroWritten: 0,
    inPlacePagemaps: 0,
    rewrittenPagemaps: 0,
    rewrittenPages: 0,
    removedPagemaps: 0,
    verified: baseIndex !== null && verify,
    ms: 0,
    index: new Map(),
  };
  // Plan everything (and check the base) before writing anything.
  const basePms = await readBasePagemaps(baseDir);
  const plans = planApply(baseDir, delta, { pms: basePms, index: baseIndex, extras }, { verify, maxExtra });
  const renames = await writeRewrites(baseDir, plans, verify, stats);
  // From here on the base is modified: without index and extras until they are rewritten.
  await rm(join(baseDir, BASE_INDEX_FILE), { force: true });
  await rm(join(baseDir, BASE_EXTRA_FILE), { force: true }); // its pages are in memory (extras)
  const newExtras = writeInPlace(plans, stats);
  await commitRewrites(baseDir, renames);
  await removeGonePagemaps(baseDir, delta, basePms, stats);
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
    for (let w = 0; w < writes.length;) {
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
  const next: ProcessPages = known ? { ...known, hashes, zero } : { ...pp, pagesId: pm.pagesId, hashes, zero };
  return { kind: 'inplace', pp, path: pagesPath(baseDir, pm.pagesId), extra, writes, zeros, next };
}
