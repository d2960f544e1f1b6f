// Destination, page cache (checkpoint/page-cache.ts): at prepare the source is offered the
// hashes of the pages held here for the container's image; a pre-copy round's pages left
// out by the source are read back from the cache (each checked against the delta's hash);
// at the commit the restored images' pages are kept for the next handoff of that image.
import { checkpointPaths } from '../../engine/checkpoint-install.js';
import { decodeCacheRefs, fillFromCache } from '../../checkpoint/cache-refs.js';
import type { Delta } from '../../checkpoint/delta-types.js';
import { errorMessage, UsageError } from '../../util/errors.js';
import { checkpointName, type DestinationDeps, type Incoming } from './incoming.js';
import type { PrepareRequest, PrepareResponse } from './wire.js';

/** The prepare's answer about cached pages (and the offer kept for the rounds). */
export async function offerCachedPages(deps: DestinationDeps, inc: Incoming, req: PrepareRequest): Promise<PrepareResponse['cachedPages']> {
  if (!req.pageCache || !deps.pageCache) return null;
  const offer = await deps.pageCache.offer(inc.imageId);
  inc.cacheOffer = offer;
  const h = offer.hashes;
  return { count: h.length, hashes: Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString('base64') };
}

/** A pre-copy round's `cache-refs` artifact: its pages put back into the delta from the cache. */
export async function fillCachedPages(inc: Incoming, o: { delta: Delta; refs: Buffer; round: number; final: boolean }): Promise<number> {
  const what = `round ${o.round} of migration ${inc.id}`;
  // The final round runs while the service is frozen: a page the cache cannot supply then
  // would fail the handoff after the freeze, so only pre-copy rounds may refer to it.
  if (o.final) throw new UsageError(`${what}: the final round cannot refer to cached pages`);
  if (!inc.cacheOffer) throw new UsageError(`${what}: refers to cached pages, but none were offered`);
  const refs = decodeCacheRefs(o.refs, `${what} cached pages`);
  await fillFromCache(o.delta, refs, (hashes) => inc.cacheOffer!.read(hashes), what);
  return refs.pages;
}

/**
 * At the commit: the pages of the images the twin was restored from (the final images and
 * the base they refer to), kept for the next handoff of the same image. Never fails the
 * commit: a problem is logged.
 */
export async function keepRestoredPages(deps: DestinationDeps, inc: Incoming): Promise<void> {
  if (!deps.pageCache || !inc.twinId) return;
  const { checkpointDir } = checkpointPaths({
    dataRoot: deps.dataRoot,
    containerId: inc.twinId,
    name: checkpointName(inc.id),
    xdgRuntimeDir: deps.xdgRuntimeDir,
  });
  const dirs = [checkpointDir, ...(inc.baseDir ? [inc.baseDir] : [])];
  try {
    await deps.pageCache.ingest({ imageId: inc.imageId, label: `restored: ${inc.id}`, dirs });
  } catch (err) {
    deps.log?.(`migration ${inc.id}: the restored pages could not be kept in the page cache: ${errorMessage(err)}`);
  }
}
