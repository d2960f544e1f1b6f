// Source, page cache (checkpoint/page-cache.ts): the destination's offer read at prepare,
// the pages it holds left out of pre-copy rounds, and after the commit the final dump's
// pages kept here, so that a handoff of the same image back to this cloudlet sends little.
import { UsageError, errorMessage } from '../../util/errors.js';
import { encodeCacheRefs, leaveOutCached } from '../../checkpoint/cache-refs.js';
import type { Delta } from '../../checkpoint/delta-types.js';
import type { PrepareResponse } from '../destination/wire.js';
import { lastDumpDir, type SourceHandoff } from './handoff.js';

/** The destination's offer, checked: sorted unique hashes; null when it made none. */
export function offeredHashes(offer: PrepareResponse['cachedPages']): BigUint64Array | null {
  if (!offer) return null;
  const raw = Buffer.from(offer.hashes, 'base64');
  if (raw.length !== offer.count * 8) throw new UsageError(`the destination offered ${offer.count} cached pages but sent ${raw.length} bytes of hashes`);
  const hashes = new BigUint64Array(offer.count);
  Buffer.from(hashes.buffer).set(raw);
  for (let i = 1; i < hashes.length; i++) {
    if (hashes[i]! <= hashes[i - 1]!) throw new UsageError('the destination offered cached page hashes that are not sorted');
  }
  return hashes;
}

/**
 * A pre-copy round's delta without the pages the destination offered, and the artifact
 * naming them (null: nothing left out). The final round sends everything: a page the cache
 * could not supply then would fail the handoff after the freeze.
 */
export function leaveOutOffered(h: SourceHandoff, delta: Delta, final: boolean): { delta: Delta; refs: Buffer | null; pages: number } {
  const held = h.destinationPages;
  if (final || held === null || held.length === 0) return { delta, refs: null, pages: 0 };
  const out = leaveOutCached(delta, held);
  if (out.refs.pages === 0) return { delta, refs: null, pages: 0 };
  if (h.report.pageCache) h.report.pageCache.pagesFromCache += out.refs.pages;
  return { delta: out.delta, refs: encodeCacheRefs(out.refs), pages: out.refs.pages };
}

/** After the commit: the final dump's pages kept for a handoff of this image back here. Never fails. */
export async function keepSentPages(h: SourceHandoff): Promise<void> {
  const cache = h.deps.pageCache;
  // Kept whatever the request said about using the destination's offer (a baseline sends every page).
  if (!cache) return;
  const dir = await lastDumpDir(h.stage);
  if (dir === null) return;
  try {
    const kept = await cache.ingest({ imageId: h.details.imageId, label: `sent: ${h.report.id}`, dirs: [dir] });
    h.report.pageCache ??= { offeredPages: null, pagesFromCache: 0, keptPages: null, keepMs: null };
    h.report.pageCache.keptPages = kept.entry?.pages ?? 0;
    h.report.pageCache.keepMs = Math.round(kept.ms);
  } catch (err) {
    h.report.warnings.push(`the sent pages could not be kept in the page cache: ${errorMessage(err)}`);
  }
}
