// The page cache both sides of a handoff share on one cloudlet (checkpoint/page-cache.ts),
// made from the daemon's configuration: the daemon knows sizes and paths, not the store.
import { PageCache } from '../checkpoint/page-cache.js';

export type { PageCache } from '../checkpoint/page-cache.js';

export function createPageCache(o: { dir: string; maxMB: number; maxAgeSeconds: number }): PageCache {
  return new PageCache({ dir: o.dir, maxBytes: o.maxMB * 1024 * 1024, maxAgeMs: o.maxAgeSeconds * 1000 });
}
