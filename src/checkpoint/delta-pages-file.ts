// Pages files of a receiver's image directories: open a base's pages for reading, read and
// write whole runs of pages (short reads and writes handled), write a complete pages file
// from a base and a delta, and check base pages against a delta's hashes.
import { open, type FileHandle } from 'node:fs/promises';
import { UsageError } from '../util/errors.js';
import { ImageFormatError } from './image-file.js';
import { findPage, hashPage, presentVaddrs, ZERO_PAGE, type ProcessPages } from './page-index.js';
import { PAGE_SIZE, pagesPath, presentPageCount } from './pagemap.js';
import { readPagemapIfAny } from './delta-base.js';
import { SLAB_PAGES } from './delta-types.js';

export interface BaseSource {
  fh: FileHandle;
  vaddrs: Float64Array;
  path: string;
}

export async function openBase(baseDir: string, id: string): Promise<BaseSource | null> {
  const pm = await readPagemapIfAny(baseDir, id);
  if (pm === null || presentPageCount(pm) === 0) return null;
  const path = pagesPath(baseDir, pm.pagesId);
  return { fh: await open(path, 'r'), vaddrs: presentVaddrs(pm), path };
}

export async function readFully(fh: FileHandle, buf: Buffer, off: number, len: number, pos: number, path: string): Promise<void> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, off + got, len - got, pos + got);
    if (bytesRead === 0) throw new ImageFormatError(path, pos + got, 'base pages file ends early');
    got += bytesRead;
  }
}

export const MAX_IOV = 512;

/** Writes buffers back to back from `pos` (writev in batches, short writes handled). */
export async function writeAllAt(fh: FileHandle, bufs: Buffer[], pos: number): Promise<number> {
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

/** Counts writeFullPagesFile adds to (RebuildStats, or a local tally). */
export interface FullPagesTally {
  fromDelta: number;
  fromBase: number;
  zeroFilled: number;
}

/** One chunk's pages that come from the base: runs to read, and the slots to check. */
interface BaseReads {
  /** Runs of consecutive base pages that land in consecutive output slots: one read each. */
  runs: Array<[outSlot: number, baseIndex: number, len: number]>;
  /** Output slots filled from the base. */
  slots: number[];
}

/**
 * Fills the slots of pages first..first+n-1 that need no read (zero pages, delta pages) and
 * collects the base reads for the others; a page in neither the delta nor the base fails.
 */
function fillChunk(
  pp: ProcessPages,
  first: number,
  n: number,
  out: Buffer,
  source: { base: BaseSource | null; baseDir: string | null; dataOf: Map<number, Buffer> | undefined },
  stats: FullPagesTally,
): BaseReads {
  const { base, baseDir, dataOf } = source;
  const reads: BaseReads = { runs: [], slots: [] };
  let runOut = -1;
  let runBase = -1;
  let runLen = 0;
  const flush = (): void => {
    if (runLen > 0) reads.runs.push([runOut, runBase, runLen]);
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
      throw new UsageError(`page ${pp.id} @0x${pp.vaddrs[i]!.toString(16)} is neither in the delta nor in the base directory`, {
        context: { id: pp.id, vaddr: pp.vaddrs[i], baseDir },
      });
    }
    if (runLen > 0 && s === runOut + runLen && j === runBase + runLen) runLen++;
    else {
      flush();
      runOut = s;
      runBase = j;
      runLen = 1;
    }
    reads.slots.push(s);
    stats.fromBase++;
  }
  flush();
  return reads;
}

/** The base pages copied into a chunk must have the delta's hashes. */
function checkCopiedPages(pp: ProcessPages, first: number, out: Buffer, slots: number[], basePath: string): void {
  for (const s of slots) {
    const i = first + s;
    if (hashPage(out.subarray(s * PAGE_SIZE, (s + 1) * PAGE_SIZE)) !== pp.hashes[i]) {
      throw new ImageFormatError(
        basePath,
        undefined,
        `base page ${pp.id} @0x${pp.vaddrs[i]!.toString(16)} does not match the delta's hash: the base is not the previous round`,
      );
    }
  }
}

/**
 * Writes the complete pages file of pp to outPath: each present page from the delta,
 * zero-filled, or copied from the base's page at the same vaddr (hash-checked with verify).
 */
export async function writeFullPagesFile(
  pp: ProcessPages,
  base: BaseSource | null,
  baseDir: string | null,
  dataOf: Map<number, Buffer> | undefined,
  outPath: string,
  verify: boolean,
  stats: FullPagesTally,
): Promise<number> {
  const chunkPages = SLAB_PAGES;
  const out = Buffer.allocUnsafe(chunkPages * PAGE_SIZE);
  const fh = await open(outPath, 'w');
  try {
    const k = pp.vaddrs.length;
    for (let first = 0; first < k; first += chunkPages) {
      const n = Math.min(chunkPages, k - first);
      const reads = fillChunk(pp, first, n, out, { base, baseDir, dataOf }, stats);
      if (reads.runs.length > 0) {
        const b = base!;
        await Promise.all(reads.runs.map(([o, j, len]) => readFully(b.fh, out, o * PAGE_SIZE, len * PAGE_SIZE, j * PAGE_SIZE, b.path)));
      }
      if (verify && reads.slots.length > 0) checkCopiedPages(pp, first, out, reads.slots, base!.path);
      await writeAllAt(fh, [out.subarray(0, n * PAGE_SIZE)], first * PAGE_SIZE);
    }
    return k * PAGE_SIZE;
  } finally {
    await fh.close();
  }
}

/** Reads base pages (by index in the base's pages file) and checks their hashes. */
export async function verifyBasePages(path: string, checks: Array<[baseIndex: number, hash: bigint, vaddr: number]>, id: string): Promise<void> {
  if (checks.length === 0) return;
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(SLAB_PAGES * PAGE_SIZE);
    for (let c = 0; c < checks.length;) {
      // one read for a run of consecutive base pages (up to a slab)
      let n = 1;
      while (c + n < checks.length && n < SLAB_PAGES && checks[c + n]![0] === checks[c]![0] + n) n++;
      await readFully(fh, buf, 0, n * PAGE_SIZE, checks[c]![0] * PAGE_SIZE, path);
      for (let x = 0; x < n; x++) {
        const [, hash, vaddr] = checks[c + x]!;
        if (hashPage(buf.subarray(x * PAGE_SIZE, (x + 1) * PAGE_SIZE)) !== hash) {
          throw new ImageFormatError(
            path,
            undefined,
            `base page ${id} @0x${vaddr.toString(16)} does not match the delta's hash: the base is not the previous round`,
          );
        }
      }
      c += n;
    }
  } finally {
    await fh.close();
  }
}
