// Page deltas between two full dumps (`criu dump --leave-running` rounds, then the final
// dump): the in-memory model every delta module shares. The jobs live apart:
//   delta-write.ts    sender: index a dump and collect the pages that changed (writeDelta)
//   delta-wire.ts     the wire format, v1 and v2 (encodeDelta / decodeDelta)
//   delta-base.ts     what a receiver's base directory carries besides CRIU's images
//                     (page index, extra pages)
//   delta-rebuild.ts  receiver: a complete CRIU image directory from a base and a delta
//   delta-apply.ts    receiver: update a base directory in place
//
// Sender, round N:  delta = await writeDelta(prevIndex, dumpDirN); send encodeDelta(delta)
//                   (or its chunks) and keep delta.index as prevIndex for round N+1.
// Receiver:         rebuilt = rebuildImageDir({ baseDir: rebuilt dir of round N-1 or null,
//                   delta, smallImagesDir: non-pages files of dump N (or null for a
//                   pages-only intermediate round), outDir }).
import type { PageDiffCounts, PageIndex } from './page-index.js';

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

/** Pages per slab: page data is copied and written in runs of up to 1 MiB. */
export const SLAB_PAGES = 256;

/** a[i] === b[j] on 64-bit hashes through 32-bit views (no BigInt allocation). */
export function hashView(h: BigUint64Array): Uint32Array {
  return new Uint32Array(h.buffer, h.byteOffset, h.length * 2);
}
export function sameHash(a: Uint32Array, i: number, b: Uint32Array, j: number): boolean {
  return a[2 * i] === b[2 * j] && a[2 * i + 1] === b[2 * j + 1];
}

/** Page data of the delta, by pagemap id then present-page index. */
export function deltaDataByPage(delta: Delta): Map<string, Map<number, Buffer>> {
  const fromDelta = new Map<string, Map<number, Buffer>>();
  for (const p of delta.pages) {
    let m = fromDelta.get(p.id);
    if (!m) fromDelta.set(p.id, (m = new Map()));
    m.set(p.index, p.data);
  }
  return fromDelta;
}
