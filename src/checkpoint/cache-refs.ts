// Pages of a delta the receiver supplies from its page cache (page-cache.ts): the sender
// leaves their data out (`leaveOutCached`) and sends, beside the delta, which pages they are
// (`encodeCacheRefs`); the receiver puts them back from its cache, each checked against the
// layout's hash, before the delta is applied (`fillFromCache`). The delta's layout already
// carries every page's hash, so a reference is only (pagemap id, present-page index).
//
// Wire form (little-endian): u32 magic "CREF", u32 S sections, then per section
//   u16 L, L bytes pagemap id (UTF-8), u32 K, K x u32 present-page index (ascending).
import { UsageError } from '../util/errors.js';
import type { Delta, DeltaPage } from './delta-types.js';
import { sortedIndexOf } from './page-index.js';

const MAGIC = 0x46455243;

export interface CacheRefs {
  /** Present-page indexes by pagemap id, ascending. */
  byId: Map<string, number[]>;
  pages: number;
}

/** The delta without the pages whose hash `held` (sorted) has, and which pages those were. */
export function leaveOutCached(delta: Delta, held: BigUint64Array): { delta: Delta; refs: CacheRefs } {
  const byId = new Map<string, number[]>();
  const kept: DeltaPage[] = [];
  let pages = 0;
  for (const p of delta.pages) {
    const pp = delta.index.get(p.id)!;
    if (sortedIndexOf(held, pp.hashes[p.index]!) < 0) {
      kept.push(p);
      continue;
    }
    let list = byId.get(p.id);
    if (!list) byId.set(p.id, (list = []));
    list.push(p.index);
    pages++;
  }
  return { delta: { ...delta, pages: kept }, refs: { byId, pages } };
}

export function encodeCacheRefs(refs: CacheRefs): Buffer {
  const ids = [...refs.byId.entries()].map(([id, list]) => ({ id: Buffer.from(id, 'utf8'), list }));
  const size = 8 + ids.reduce((n, s) => n + 2 + s.id.length + 4 + 4 * s.list.length, 0);
  const out = Buffer.alloc(size);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(ids.length, 4);
  let pos = 8;
  for (const s of ids) {
    out.writeUInt16LE(s.id.length, pos);
    s.id.copy(out, pos + 2);
    pos += 2 + s.id.length;
    out.writeUInt32LE(s.list.length, pos);
    pos += 4;
    for (const i of s.list) {
      out.writeUInt32LE(i, pos);
      pos += 4;
    }
  }
  return out;
}

export function decodeCacheRefs(buf: Buffer, what: string): CacheRefs {
  const bad = (why: string): never => {
    throw new UsageError(`${what}: ${why}`);
  };
  if (buf.length < 8 || buf.readUInt32LE(0) !== MAGIC) bad('not a list of cached pages');
  const sections = buf.readUInt32LE(4);
  const byId = new Map<string, number[]>();
  let pos = 8;
  let pages = 0;
  for (let s = 0; s < sections; s++) {
    if (pos + 2 > buf.length) bad('ends early');
    const len = buf.readUInt16LE(pos);
    if (pos + 2 + len + 4 > buf.length) bad('ends early');
    const id = buf.toString('utf8', pos + 2, pos + 2 + len);
    pos += 2 + len;
    const k = buf.readUInt32LE(pos);
    pos += 4;
    if (pos + 4 * k > buf.length) bad('ends early');
    if (byId.has(id)) bad(`pagemap ${id} listed twice`);
    const list: number[] = [];
    for (let i = 0; i < k; i++, pos += 4) {
      const v = buf.readUInt32LE(pos);
      if (list.length > 0 && v <= list[list.length - 1]!) bad(`pages of ${id} not ascending`);
      list.push(v);
    }
    byId.set(id, list);
    pages += k;
  }
  if (pos !== buf.length) bad('has trailing bytes');
  return { byId, pages };
}

/**
 * Puts the referenced pages back into `delta`, read by `read` (the pages with those hashes,
 * null where one is missing). A reference outside the layout, to a zero page, to a page the
 * delta already carries, or to a page the cache cannot supply with its hash fails with an
 * error naming it.
 */
export async function fillFromCache(
  delta: Delta,
  refs: CacheRefs,
  read: (hashes: readonly bigint[]) => Promise<(Buffer | null)[]>,
  what: string,
): Promise<void> {
  const carried = new Set(delta.pages.map((p) => `${p.id}/${p.index}`));
  const wanted: Array<{ id: string; index: number; vaddr: number; hash: bigint }> = [];
  for (const [id, list] of refs.byId) {
    const pp = delta.index.get(id);
    if (!pp) throw new UsageError(`${what}: cached pages of pagemap ${id}, which the delta does not have`);
    for (const index of list) {
      if (index >= pp.vaddrs.length) throw new UsageError(`${what}: cached page ${id}#${index} is outside the layout`);
      if (pp.zero[index] || carried.has(`${id}/${index}`)) throw new UsageError(`${what}: page ${id}#${index} cannot come from the cache`);
      wanted.push({ id, index, vaddr: pp.vaddrs[index]!, hash: pp.hashes[index]! });
    }
  }
  const data = await read(wanted.map((w) => w.hash));
  const added: DeltaPage[] = wanted.map((w, k) => {
    const page = data[k];
    if (!page) throw new UsageError(`${what}: page ${w.id} @0x${w.vaddr.toString(16)} (hash ${w.hash.toString(16)}) is not in this cloudlet's page cache`);
    return { id: w.id, index: w.index, vaddr: w.vaddr, data: page };
  });
  const order = new Map([...delta.index.keys()].map((id, i) => [id, i]));
  delta.pages = [...delta.pages, ...added].sort((a, b) => order.get(a.id)! - order.get(b.id)! || a.index - b.index);
}
