// The page cache (src/checkpoint/page-cache.ts) and the cache references of a delta
// (src/checkpoint/cache-refs.ts) on real memory images: two node processes holding the
// same marker pages are scanned from /proc (the pre-copy's capture); the first scan is kept
// in the cache, the second one's delta leaves out what the cache holds and gets it back.
// Reading /proc/PID/mem of another process needs root: skipped otherwise.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeCacheRefs, encodeCacheRefs, fillFromCache, leaveOutCached } from '../../src/checkpoint/cache-refs.js';
import { writeDelta } from '../../src/checkpoint/delta-write.js';
import { hashPage } from '../../src/checkpoint/page-index.js';
import { PageCache } from '../../src/checkpoint/page-cache.js';
import { scanContainerMemory } from '../../src/checkpoint/proc-scan.js';
import { markerPage, spawnMarkerProcess, stopProcess, type MarkerProcess } from '../helpers/procscan-fixtures.js';

const skip = process.getuid?.() === 0 ? false : 'needs root to read /proc/PID/mem of other processes';
const MARKS = 2048; // 8 MiB of marker pages in each process
const IMAGE = `sha256:${'a'.repeat(64)}`;
const OTHER = `sha256:${'b'.repeat(64)}`;

describe('page cache on /proc scans of real processes', { skip, timeout: 120_000 }, () => {
  let dir: string;
  const procs: MarkerProcess[] = [];
  let scanA: string;
  let scanB: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cl-page-cache-'));
    scanA = join(dir, 'scan-a');
    scanB = join(dir, 'scan-b');
    for (const [i, out] of [scanA, scanB].entries()) {
      const p = await spawnMarkerProcess({ pages: MARKS });
      procs[i] = p;
      await scanContainerMemory({ initPid: p.pid, outDir: out });
    }
  });
  after(async () => {
    for (const p of procs) await stopProcess(p.child);
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps the unique pages of a scan and offers them for its image only', async () => {
    const cache = new PageCache({ dir: join(dir, 'cache-1'), maxBytes: 1 << 30, maxAgeMs: 60_000 });
    const kept = await cache.ingest({ imageId: IMAGE, label: 'sent: test', dirs: [scanA, join(dir, 'missing')] });
    assert.ok(kept.entry, 'an entry was made');
    assert.ok(kept.entry.pages >= MARKS, `${kept.entry.pages} pages kept, at least the ${MARKS} marker pages`);
    assert.ok(kept.entry.pages <= kept.pagesRead, 'never more pages than were read');
    const offer = await cache.offer(IMAGE);
    try {
      assert.equal(offer.hashes.length, kept.entry.pages);
      for (let i = 1; i < offer.hashes.length; i++) assert.ok(offer.hashes[i]! > offer.hashes[i - 1]!, 'sorted, unique');
      const page = await someNonZeroPage(scanA);
      assert.deepEqual(
        await offer.read([hashPage(page), hashPage(Buffer.alloc(4096, 1))]),
        [page, null],
        'a scanned page comes back byte for byte; a page never seen is null',
      );
    } finally {
      await offer.close();
    }
    const none = await cache.offer(OTHER);
    assert.equal(none.hashes.length, 0, 'another image is offered nothing');
    await none.close();
  });

  it("leaves the cached pages out of another process's delta and puts them back", async () => {
    const cache = new PageCache({ dir: join(dir, 'cache-2'), maxBytes: 1 << 30, maxAgeMs: 60_000 });
    await cache.ingest({ imageId: IMAGE, label: 'restored: test', dirs: [scanA] });
    const full = await writeDelta(null, scanB);
    const offer = await cache.offer(IMAGE);
    try {
      const { delta, refs } = leaveOutCached(full, offer.hashes);
      assert.ok(refs.pages >= MARKS, `${refs.pages} pages left out: at least the marker pages both processes hold`);
      assert.equal(delta.pages.length + refs.pages, full.pages.length);
      const back = decodeCacheRefs(encodeCacheRefs(refs), 'test refs');
      assert.deepEqual(back, refs);
      await fillFromCache(delta, back, (h) => offer.read(h), 'test');
      assert.equal(delta.pages.length, full.pages.length);
      delta.pages.forEach((p, i) => {
        const q = full.pages[i]!;
        assert.equal(`${p.id}#${p.index}@${p.vaddr}`, `${q.id}#${q.index}@${q.vaddr}`);
        assert.ok(p.data.equals(q.data), `page ${p.id}#${p.index} has the same data`);
      });
    } finally {
      await offer.close();
    }
  });

  it('fails the round, naming the page, when the cache no longer holds what the hash says', async () => {
    const cacheDir = join(dir, 'cache-3');
    const cache = new PageCache({ dir: cacheDir, maxBytes: 1 << 30, maxAgeMs: 60_000 });
    const kept = await cache.ingest({ imageId: IMAGE, label: 'sent: test', dirs: [scanA] });
    // Every cached page damaged on disk after it was offered: reads must notice it.
    const offer = await cache.offer(IMAGE);
    const fh = await open(join(cacheDir, kept.entry!.id, 'pages.bin'), 'r+');
    await fh.write(Buffer.alloc(kept.entry!.bytes, 0x5a), 0, kept.entry!.bytes, 0);
    await fh.close();
    try {
      const full = await writeDelta(null, scanB);
      const { delta, refs } = leaveOutCached(full, offer.hashes);
      await assert.rejects(
        fillFromCache(delta, refs, (h) => offer.read(h), 'round 1'),
        /round 1: page \d+ @0x[0-9a-f]+ \(hash [0-9a-f]+\) is not in this cloudlet's page cache/,
      );
    } finally {
      await offer.close();
    }
  });
});

/** The first page of the first pages file of a scan directory that is not all zeros. */
async function someNonZeroPage(scanDir: string): Promise<Buffer> {
  const name = (await readdir(scanDir)).find((n) => /^pages-\d+\.img$/.test(n))!;
  const data = await readFile(join(scanDir, name));
  for (let o = 0; o < data.length; o += 4096) {
    const p = data.subarray(o, o + 4096);
    if (p.some((b) => b !== 0)) return Buffer.from(p);
  }
  throw new Error(`no non-zero page in ${scanDir}`);
}

describe('page cache bounds and damaged input', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cl-page-cache-b-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  /** A directory with one pages file of `n` distinct pages (marker pages from `first`). */
  async function imageDir(name: string, first: number, n: number): Promise<string> {
    const d = join(dir, name);
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'pages-1.img'), Buffer.concat(Array.from({ length: n }, (_, i) => markerPage(first + i))));
    return d;
  }

  it('evicts entries past their age, then the oldest beyond the size bound', async () => {
    let now = 1_000_000;
    const cache = new PageCache({ dir: join(dir, 'bounds'), maxBytes: 10 * 4096, maxAgeMs: 5_000, now: () => now });
    await cache.ingest({ imageId: IMAGE, label: 'one', dirs: [await imageDir('one', 0, 4)] });
    now += 1000;
    await cache.ingest({ imageId: IMAGE, label: 'two', dirs: [await imageDir('two', 100, 4)] });
    assert.deepEqual(
      (await cache.list()).map((e) => e.label),
      ['one', 'two'],
    );
    now += 1000;
    await cache.ingest({ imageId: IMAGE, label: 'three', dirs: [await imageDir('three', 200, 4)] });
    assert.deepEqual(
      (await cache.list()).map((e) => e.label),
      ['two', 'three'],
      '12 pages > 10: the oldest went',
    );
    now += 4_500;
    assert.equal(await cache.evict(), 1, 'two is older than 5 s now, three is not');
    assert.deepEqual(
      (await cache.list()).map((e) => e.label),
      ['three'],
    );
    const offer = await cache.offer(IMAGE);
    assert.equal(offer.hashes.length, 4);
    await offer.close();
  });

  it('a cache reopened keeps complete entries and removes incomplete ones', async () => {
    const at = join(dir, 'reopen');
    const first = new PageCache({ dir: at, maxBytes: 1 << 20, maxAgeMs: 60_000 });
    const kept = await first.ingest({ imageId: IMAGE, label: 'kept', dirs: [await imageDir('r', 300, 3), await imageDir('r2', 300, 3)] });
    assert.equal(kept.entry?.pages, 3, 'the same pages twice are kept once');
    await mkdir(join(at, '.tmp-crashed'));
    const again = new PageCache({ dir: at, maxBytes: 1 << 20, maxAgeMs: 60_000 });
    assert.deepEqual(
      (await again.list()).map((e) => e.label),
      ['kept'],
    );
    assert.deepEqual(await readdir(at), [kept.entry!.id]);
  });

  it('refuses damaged references with the reason', () => {
    assert.throws(() => decodeCacheRefs(Buffer.from('nonsense'), 'round 2 cached pages'), /round 2 cached pages: not a list of cached pages/);
    const refs = encodeCacheRefs({ byId: new Map([['12', [3, 1]]]), pages: 2 });
    assert.throws(() => decodeCacheRefs(refs, 'r'), /not ascending/);
    const ok = encodeCacheRefs({ byId: new Map([['12', [1, 3]]]), pages: 2 });
    assert.throws(() => decodeCacheRefs(ok.subarray(0, ok.length - 2), 'r'), /ends early/);
    assert.throws(() => decodeCacheRefs(Buffer.concat([ok, Buffer.alloc(1)]), 'r'), /trailing bytes/);
  });
});
