// dumpAndDelta (hashing while the dump writes) must give byte for byte the delta that
// writeDelta gives after the dump: on synthetic dumps written progressively in odd chunk
// sizes (several pages files, one appearing late, moved pages that must be read back), on
// the fallbacks (stale files, parent pages, a failing dump), and on real CRIU dumps.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Delta } from '../../src/checkpoint/delta-types.js';
import { encodeDelta } from '../../src/checkpoint/delta-wire.js';
import { writeDelta } from '../../src/checkpoint/delta-write.js';
import type { PageIndex } from '../../src/checkpoint/page-index.js';
import { dumpAndDelta, startDumpAndDelta, type DumpAndDeltaStats } from '../../src/checkpoint/stream-delta.js';
import { PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT, pagesPath, writePagemap, type PagemapEntry } from '../../src/checkpoint/pagemap.js';
import { CriuLab, criuSkipReason, type Workload } from '../helpers/criu-fixtures.js';

interface SynthMap {
  id: string;
  pagesId: number;
  entries: PagemapEntry[];
  /** One buffer per present page, in pagemap order. */
  pages: Buffer[];
}

function page(fill: number | null): Buffer {
  return fill === null ? randomBytes(PAGE_SIZE) : Buffer.alloc(PAGE_SIZE, fill);
}

/**
 * Writes the pages files progressively (chunks of odd sizes that split pages, a pause
 * between chunks, file `late` created only after the others are half written), then the
 * pagemaps, the way CRIU orders it.
 */
async function progressiveDump(dir: string, maps: SynthMap[], late: number | null = null): Promise<string> {
  await mkdir(dir, { recursive: true });
  const sizes = [5000, 12_288 + 100, 3, 4093, 65_536, 1 << 20];
  for (const [n, m] of maps.entries()) {
    if (m.pages.length === 0) continue;
    if (n === late) await sleep(15);
    const data = Buffer.concat(m.pages);
    const fh = await open(pagesPath(dir, m.pagesId), 'w');
    try {
      for (let pos = 0, k = 0; pos < data.length; k++) {
        const len = Math.min(sizes[k % sizes.length]!, data.length - pos);
        await fh.write(data, pos, len);
        pos += len;
        if (k % 3 === 0) await sleep(1);
      }
    } finally {
      await fh.close();
    }
  }
  await sleep(3);
  for (const m of maps) await writePagemap(dir, { id: m.id, pagesId: m.pagesId, entries: m.entries });
  return 'dumped';
}

/** A layout: runs of present pages (and one lazy+present run) with gaps. */
function synthMaps(): SynthMap[] {
  const mk = (id: string, pagesId: number, runs: Array<[vaddr: number, n: number, flags: number]>, fill: (k: number) => number | null): SynthMap => {
    const entries = runs.map(([vaddr, nrPages, flags]) => ({ vaddr, nrPages, flags }));
    const n = runs.reduce((s, r) => s + r[1], 0);
    return { id, pagesId, entries, pages: Array.from({ length: n }, (_, k) => page(fill(k))) };
  };
  return [
    mk(
      '100',
      1,
      [
        [0x400000, 700, PE_PRESENT],
        [0x800000, 33, PE_PRESENT | PE_LAZY],
        [0x900000, 300, PE_PRESENT],
      ],
      (k) => (k % 50 === 7 ? 0 : null),
    ),
    mk('200', 2, [[0x10000, 5, PE_PRESENT]], () => null),
    mk('shmem-9', 3, [[0, 400, PE_PRESENT]], (k) => (k < 100 ? 0 : k < 110 ? 0x5a : null)),
  ];
}

function sameDelta(a: Delta, b: Delta, what: string): void {
  assert.deepEqual(a.counts, b.counts, `${what}: counts`);
  assert.equal(a.pages.length, b.pages.length, `${what}: pages`);
  assert.ok(encodeDelta(a).equals(encodeDelta(b)), `${what}: encodeDelta bytes`);
}

describe('dumpAndDelta on synthetic progressive dumps', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cloudlet-stream-'));
  });
  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  for (const hasher of ['main', 'worker'] as const) {
    it(`${hasher} hasher: first round and a later round equal writeDelta, pages kept and read back`, async (t) => {
      const maps = synthMaps();
      const d1 = join(tmp, hasher, 'r1', 'img'); // the directory does not exist when the dump starts
      const r1 = await dumpAndDelta({ dump: () => progressiveDump(d1, maps, 2), dir: d1, prev: null, hasher });
      assert.equal(r1.dumpResult, 'dumped');
      const ref1 = await writeDelta(null, d1);
      sameDelta(r1.delta, ref1, 'round 1');
      t.diagnostic(`round 1: ${JSON.stringify({ overlapMs: Math.round(r1.overlapMs), ...r1.stats })}`);
      assert.equal(r1.stats.fallback, null);
      assert.equal(r1.stats.pagesFiles, 3);
      assert.equal(r1.stats.readBackPages, 0);
      assert.equal(r1.stats.keptPages, ref1.pages.length);
      // the niced worker may get no CPU on a loaded machine: only the main-thread hasher must stream
      if (hasher === 'main') assert.ok(r1.stats.bytesDuringDump > 0, 'hashed while the dump ran');
      assert.equal(r1.stats.hasher, hasher);

      // Round 2: some pages rewritten, a page's old content moved to another vaddr (its hash
      // is in prev: not kept while streaming, read back), zero <-> non-zero, a new run.
      const m2 = maps.map((m) => ({ ...m, entries: m.entries.map((e) => ({ ...e })), pages: [...m.pages] }));
      const p = m2[0]!;
      for (let k = 0; k < p.pages.length; k += 37) p.pages[k] = page(null);
      p.pages[3] = maps[0]!.pages[500]!; // moved content
      p.pages[4] = maps[2]!.pages[200]!; // content of another pagemap
      p.pages[7] = page(0x11); // was zero
      p.pages[8] = page(0); // becomes zero
      p.entries.push({ vaddr: 0xc00000, nrPages: 2, flags: PE_PRESENT });
      p.pages.push(page(null), maps[0]!.pages[1]!);
      m2[2]!.pages[150] = page(0);
      const d2 = join(tmp, hasher, 'r2', 'img');
      const r2 = await dumpAndDelta({ dump: () => progressiveDump(d2, m2), dir: d2, prev: r1.delta.index, hasher });
      const ref2 = await writeDelta(ref1.index, d2);
      sameDelta(r2.delta, ref2, 'round 2');
      t.diagnostic(`round 2: ${JSON.stringify({ overlapMs: Math.round(r2.overlapMs), ...r2.stats, counts: ref2.counts })}`);
      assert.equal(r2.stats.fallback, null);
      // pages hashed during the dump are kept or read back; pages hashed after it likewise
      assert.ok(r2.stats.readBackPages >= 3, `read back ${r2.stats.readBackPages}`);
      assert.equal(r2.stats.keptPages + r2.stats.readBackPages, ref2.pages.length);
      assert.ok(ref2.counts.unchanged > 1000);
    });
  }

  it('worker hasher hands its state over: hashes and kept pages computed during the dump', async () => {
    const maps = synthMaps();
    const d = join(tmp, 'handover');
    // pages written, then a pause before the pagemaps: the worker (not niced here) has time
    const r = await dumpAndDelta({
      dump: async () => {
        await progressiveDump(d, maps);
        await sleep(300);
        return 'dumped';
      },
      dir: d,
      prev: null,
      hasher: 'worker',
      nice: null,
    });
    const ref = await writeDelta(null, d);
    sameDelta(r.delta, ref, 'handover');
    assert.equal(r.stats.fallback, null);
    assert.equal(r.stats.bytesDuringDump, r.stats.bytesTotal);
    assert.equal(r.stats.keptPages, ref.pages.length);
    assert.ok(r.overlapMs > 0);
  });

  it('falls back to writeDelta when pages files are there before the dump', async () => {
    const maps = synthMaps();
    const d = join(tmp, 'stale');
    await mkdir(d, { recursive: true });
    await writeFile(pagesPath(d, 1), randomBytes(3 * PAGE_SIZE));
    const r = await dumpAndDelta({ dump: () => progressiveDump(d, maps), dir: d, prev: null });
    assert.match(r.stats.fallback ?? '', /before the dump/);
    sameDelta(r.delta, await writeDelta(null, d), 'stale');
  });

  it('rejects like writeDelta on parent pages', async () => {
    const maps = synthMaps();
    maps[1]!.entries.push({ vaddr: 0x100000, nrPages: 4, flags: PE_PARENT });
    const d = join(tmp, 'parent');
    const ref = join(tmp, 'parent-ref');
    await progressiveDump(ref, maps);
    const expected = await writeDelta(null, ref).then(
      () => null,
      (e: Error) => e,
    );
    assert.ok(expected, 'writeDelta rejects parent pages');
    await assert.rejects(dumpAndDelta({ dump: () => progressiveDump(d, maps), dir: d, prev: null }), (err: Error) => {
      assert.equal(err.constructor, expected.constructor);
      assert.equal(err.message.replace(d, 'X'), expected.message.replace(ref, 'X'));
      return true;
    });
  });

  it('a failing dump rejects both promises with its error', async () => {
    const d = join(tmp, 'failing');
    const boom = new Error('runc checkpoint failed');
    const s = startDumpAndDelta({
      dump: async () => {
        await progressiveDump(d, synthMaps());
        throw boom;
      },
      dir: d,
      prev: null,
    });
    await assert.rejects(s.dumped, (e) => e === boom);
    await assert.rejects(s.result, (e) => e === boom);
  });

  it('startDumpAndDelta: dumped settles before the delta is ready', async () => {
    const d = join(tmp, 'order');
    const s = startDumpAndDelta({ dump: () => progressiveDump(d, synthMaps()), dir: d, prev: null });
    let deltaReady = false;
    void s.result.then(() => (deltaReady = true));
    assert.equal(await s.dumped, 'dumped');
    assert.equal(deltaReady, false);
    sameDelta((await s.result).delta, await writeDelta(null, d), 'order');
  });
});

const skip = criuSkipReason();

describe('dumpAndDelta on real CRIU dumps', { skip: skip ?? false, timeout: 80_000 }, () => {
  let tmp: string;
  let lab: CriuLab;
  let w: Workload;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cloudlet-stream-criu-'));
    lab = new CriuLab(tmp);
    w = await lab.startWorkload({ mib: 64, hot: 512, zeroMib: 2, random: true });
  });
  after(async () => {
    await lab?.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('three rounds (leave-running on the main thread, grown layout and final with the worker): same delta as writeDelta', async (t) => {
    let prev: PageIndex | null = null;
    for (const [round, final] of [
      [1, false],
      [2, false],
      [3, true],
    ] as const) {
      if (round === 2) {
        await w.mutate();
        await w.grow();
      }
      if (round === 3) await w.mutate();
      const dir = join(tmp, `round-${round}`, 'img');
      const hasher = round === 1 ? 'main' : 'worker';
      const r: { delta: Delta; overlapMs: number; stats: DumpAndDeltaStats } = await dumpAndDelta({ dump: () => w.dump(dir, !final), dir, prev, hasher });
      const ref = await writeDelta(prev, dir);
      sameDelta(r.delta, ref, `round ${round}`);
      assert.equal(r.stats.fallback, null, `round ${round}: no fallback`);
      assert.equal(r.stats.bytesTotal, ref.counts.scanned * PAGE_SIZE);
      if (round > 1) assert.ok(ref.counts.unchanged > ref.counts.changed, `round ${round}: mostly unchanged`);
      if (hasher === 'main') assert.ok(r.stats.bytesDuringDump > 0, 'some pages were hashed while CRIU was still writing');
      t.diagnostic(`round ${round}: ${JSON.stringify({ overlapMs: Math.round(r.overlapMs), ...r.stats, counts: ref.counts })}`);
      prev = r.delta.index;
    }
    await w.waitExit();
  });
});
