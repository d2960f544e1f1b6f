// Sender side of a page delta: one streaming pass over a dump's pages, keeping the data of
// the pages the receiver does not have yet (see delta-types.ts for the round flow).
import { UsageError } from '../util/errors.js';
import { classifyPage, emptyCounts, indexDump, type PageIndex } from './page-index.js';
import { PAGE_SIZE } from './pagemap.js';
import { SLAB_PAGES, type Delta, type DeltaPage } from './delta-types.js';

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
      throw new UsageError(`dump ${curDir} has ${pp.parentPages} pages in a parent image (pagemap-${pp.id}.img): deltas need full dumps`, {
        context: { dir: curDir, id: pp.id },
      });
    }
  }
  return { pageSize: PAGE_SIZE, index, pages, counts };
}

/** Bytes of page data a delta carries (what dominates its size on the wire). */
export function deltaDataBytes(delta: Delta): number {
  return delta.pages.length * delta.pageSize;
}
