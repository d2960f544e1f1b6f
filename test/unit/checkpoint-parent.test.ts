// Pre-copy on the destination with the REAL criu: a base directory built from round 1,
// updated in place with round 2's delta (applyDeltaInPlace), then the final round written
// in CRIU parent-image mode (only changed pages + PE_PARENT entries + a relative `parent`
// link) and restored by `criu restore`. Also: a layout change between rounds (a new
// mapping) takes the rewrite path, and CRIU really needs the parent to cover PE_PARENT pages.
// Skipped (with the reason) when not root or criu is missing.
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { applyDeltaInPlace, type ApplyOptions, type ApplyStats } from '../../src/checkpoint/delta-apply.js';
import { BASE_EXTRA_FILE, BASE_INDEX_FILE, readBaseIndex } from '../../src/checkpoint/delta-base.js';
import { rebuildImageDir, type RebuildStats } from '../../src/checkpoint/delta-rebuild.js';
import type { Delta } from '../../src/checkpoint/delta-types.js';
import { decodeDelta, encodeDelta, readDeltaFile } from '../../src/checkpoint/delta-wire.js';
import { writeDelta } from '../../src/checkpoint/delta-write.js';
import { findPage, hashPage, presentVaddrs, type PageIndex } from '../../src/checkpoint/page-index.js';
import { encodePagemap, PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT, pagemapPath, pagesPath, readPagemap } from '../../src/checkpoint/pagemap.js';
import { linkImagesForDaemon, startLazyPagesDaemon } from '../../src/engine/lazy-pages.js';
import { CriuLab, criuSkipReason, type Workload, type WorkloadStatus } from '../helpers/criu-fixtures.js';

const skip = criuSkipReason();

/** What crosses the wire: the sender's delta, encoded and decoded (with verification). */
async function roundDelta(prev: PageIndex | null, dumpDir: string): Promise<Delta> {
  return decodeDelta(encodeDelta(await writeDelta(prev, dumpDir)));
}

async function smallImagesOf(dumpDir: string, out: string): Promise<string> {
  await mkdir(out);
  for (const name of await readdir(dumpDir)) if (!/^pages-\d+\.img$/.test(name)) await cp(join(dumpDir, name), join(out, name));
  return out;
}

/**
 * Every present page of `idx` is in the base (by pagemap id and vaddr) with that content:
 * in its pages files, or (new vaddrs) among its extra pages, or a zero page.
 */
async function assertBaseHolds(baseDir: string, idx: PageIndex): Promise<number> {
  const extra = new Map<string, Buffer>();
  const xd = await readDeltaFile(join(baseDir, BASE_EXTRA_FILE)).catch(() => null);
  for (const p of xd?.pages ?? []) extra.set(`${p.id}@${p.vaddr}`, p.data);
  let fromExtra = 0;
  for (const pp of idx.values()) {
    const pm = await readPagemap(baseDir, pp.id);
    const vaddrs = presentVaddrs(pm);
    const data = await readFile(pagesPath(baseDir, pm.pagesId));
    for (let i = 0; i < pp.vaddrs.length; i++) {
      const j = findPage(vaddrs, pp.vaddrs[i]!);
      if (j < 0) {
        const x = extra.get(`${pp.id}@${pp.vaddrs[i]!}`);
        assert.ok(x || pp.zero[i], `base lacks ${pp.id} @0x${pp.vaddrs[i]!.toString(16)}`);
        if (x) assert.equal(hashPage(x), pp.hashes[i]);
        fromExtra++;
        continue;
      }
      assert.equal(hashPage(data.subarray(j * PAGE_SIZE, (j + 1) * PAGE_SIZE)), pp.hashes[i], `base page ${pp.id} @0x${pp.vaddrs[i]!.toString(16)}`);
    }
  }
  // the base index describes the base
  const bi = (await readBaseIndex(baseDir))!;
  assert.ok(bi, 'base index present');
  for (const pp of bi.values()) {
    const pm = await readPagemap(baseDir, pp.id);
    assert.equal(pp.pagesId, pm.pagesId);
    assert.deepEqual(pp.entries, pm.entries);
  }
  return fromExtra;
}

interface Precopy {
  tmp: string;
  lab: CriuLab;
  w: Workload;
  base: string;
  out: string;
  apply2: ApplyStats;
  final: RebuildStats;
  delta3: Delta;
  before3: WorkloadStatus;
}

/**
 * dump1 (leave-running) -> base; between1(); dump2 (leave-running) -> applyDeltaInPlace;
 * between2(); final dump3 -> parent-mode rebuild into stage/final with parent ../base.
 */
async function precopy(
  tmp: string,
  lab: CriuLab,
  between1: (w: Workload) => Promise<unknown>,
  between2: (w: Workload) => Promise<unknown>,
  applyOpts: ApplyOptions = {},
): Promise<Precopy> {
  const w = await lab.startWorkload({ mib: 16, hot: 32, zeroMib: 1 });
  const stage = join(tmp, 'stage');
  const base = join(stage, 'base');
  const out = join(stage, 'final');
  await w.dump(join(tmp, 'd1'), true);
  const delta1 = await roundDelta(null, join(tmp, 'd1'));
  await rebuildImageDir({ baseDir: null, delta: delta1, smallImagesDir: null, outDir: base });
  await assertBaseHolds(base, delta1.index);

  await between1(w);
  await w.dump(join(tmp, 'd2'), true);
  const delta2 = await roundDelta(delta1.index, join(tmp, 'd2'));
  const apply2 = await applyDeltaInPlace(base, delta2, applyOpts);
  await assertBaseHolds(base, delta2.index);
  // the base index and extras were rewritten: applying the same layout again writes nothing
  const again = await applyDeltaInPlace(base, { ...delta2, pages: [] }, applyOpts);
  assert.deepEqual([again.rewrittenPagemaps, again.pagesWritten - again.zeroWritten], [0, 0]);
  assert.equal(again.extraPages, apply2.extraPages);
  await assertBaseHolds(base, delta2.index);

  await between2(w);
  const before3 = await w.status();
  await w.dump(join(tmp, 'd3'), false); // final: criu kills the workload
  await w.waitExit();
  const delta3 = await roundDelta(delta2.index, join(tmp, 'd3'));
  const small3 = await smallImagesOf(join(tmp, 'd3'), join(tmp, 'small3'));
  const final = await rebuildImageDir({ baseDir: base, delta: delta3, smallImagesDir: small3, outDir: out, parent: { dir: base, link: '../base' } });
  return { tmp, lab, w, base, out, apply2, final, delta3, before3 };
}

async function restoreAndCheck(p: Precopy, dir: string, extraArgs: readonly string[] = []): Promise<void> {
  const restored = await p.lab.restore(dir, p.w.pid, p.w.statusFile, extraArgs);
  const s = await restored.status();
  assert.equal(s.pid, p.w.pid);
  assert.equal(s.gen, p.before3.gen);
  assert.equal(s.grows, p.before3.grows);
  assert.equal(s.sum, p.before3.sum, 'memory checksum after restore equals the one before the final dump');
  const s2 = await restored.mutate(); // and it carries on
  assert.equal(s2.gen, p.before3.gen + 1);
  process.kill(p.w.pid, 'SIGKILL');
  await restored.waitExit();
}

describe('CRIU parent images from an in-place base', { skip: skip ?? false, timeout: 90_000 }, () => {
  let p: Precopy;
  let tmp: string | undefined;
  let lab: CriuLab | undefined;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'cloudlet-ckpt-parent-'));
    lab = new CriuLab(tmp);
    p = await precopy(
      tmp,
      lab,
      (w) => w.mutate(),
      (w) => w.mutate(),
    );
  });

  after(async () => {
    await lab?.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('round 2 updates the base in place; the final dir holds only changed pages', async (t) => {
    t.diagnostic(`apply2: ${JSON.stringify({ ...p.apply2, index: undefined })}`);
    t.diagnostic(`final: ${JSON.stringify(p.final)}`);
    const main = String(p.w.pid);
    assert.ok(p.apply2.inPlacePagemaps >= 1);
    assert.ok(p.apply2.pagesWritten >= 32, 'at least the hot pages');
    assert.equal(p.final.fromDelta, p.delta3.pages.length);
    assert.equal(p.final.fromBase, 0);
    assert.equal(p.final.pages, p.final.fromDelta + p.final.zeroFilled + p.final.inParent + p.final.fromExtra);
    assert.ok(p.final.inParent > p.final.pages * 0.8, 'most pages stay in the parent');
    assert.equal(p.final.pageBytes, (p.final.fromDelta + p.final.zeroFilled + p.final.fromExtra) * PAGE_SIZE);
    assert.equal(p.apply2.rewrittenPagemaps, 0);
    assert.equal(await readlink(join(p.out, 'parent')), '../base');
    const pm = await readPagemap(p.out, main);
    assert.ok(pm.entries.some((e) => e.flags === PE_PARENT));
    assert.ok(pm.entries.some((e) => e.flags & PE_PRESENT));
    await assert.rejects(readFile(join(p.out, BASE_INDEX_FILE)), { code: 'ENOENT' });
  });

  it('criu restore from the parent-mode dir: memory intact, process continues', async () => {
    await restoreAndCheck(p, p.out);
  });

  it('lazy restore: CRIU leaves the PE_LAZY pages to the lazy-pages daemon, which serves them from its view of the base', async (t) => {
    // Another final dir from the same base, now with a view for the daemon (the base's
    // pages file gets the changed pages in place: the eager dir above stays valid).
    const out = join(p.tmp, 'stage', 'final-lazy');
    const view = join(p.tmp, 'stage', 'lazy-view');
    const small = join(p.tmp, 'small3');
    const st = await rebuildImageDir({
      baseDir: p.base,
      delta: p.delta3,
      smallImagesDir: small,
      outDir: out,
      parent: { dir: p.base, link: '../base' },
      lazyView: view,
    });
    const main = String(p.w.pid);
    const restorePm = await readPagemap(out, main);
    const viewPm = await readPagemap(view, main, { checkPagesFile: false });
    const lazyIn = (entries: { flags: number; nrPages: number }[]): number => entries.filter((e) => e.flags & PE_LAZY).reduce((n, e) => n + e.nrPages, 0);
    t.diagnostic(`final: ${JSON.stringify(st)}; lazy pages: restore dir ${lazyIn(restorePm.entries)}, daemon view ${lazyIn(viewPm.entries)}`);
    assert.ok(
      restorePm.entries.some((e) => e.flags === (PE_PARENT | PE_LAZY)),
      'pages left in the parent are lazy',
    );
    assert.equal(lazyIn(viewPm.entries), lazyIn(restorePm.entries), 'the daemon serves exactly the pages the restore leaves to it');
    assert.ok(lazyIn(viewPm.entries) > st.pages * 0.8, 'most pages are served lazily');
    assert.equal(await realpath(pagesPath(view, viewPm.pagesId)), await realpath(pagesPath(p.base, viewPm.pagesId)));

    await linkImagesForDaemon(out, view);
    const work = join(p.tmp, 'lazy-work');
    await mkdir(work, { recursive: true });
    const daemon = await startLazyPagesDaemon({ criu: 'criu', imagesDir: view, workDir: work, logFile: join(p.tmp, 'lazy-pages.log') });
    // The same images were restored above, whose process wrote statuses past the ones this
    // restored copy will write: start its status file afresh.
    await rm(p.w.statusFile, { force: true });
    try {
      await restoreAndCheck(p, out, ['--lazy-pages', '-W', work]);
      await daemon.done; // exit 0: every lazy page was copied in
    } finally {
      await daemon.stop();
    }
  });

  it('CRIU needs the parent pagemap to cover the PE_PARENT pages', async () => {
    // A parent without the largest run of pages (the workload's 16 MiB buffer).
    const main = String(p.w.pid);
    const broken = join(p.tmp, 'stage', 'broken');
    await cp(p.base, broken, { recursive: true });
    const pm = await readPagemap(broken, main);
    const big = pm.entries.reduce((a, e, i) => (e.flags & PE_PRESENT && e.nrPages > pm.entries[a]!.nrPages ? i : a), 0);
    let before = 0;
    for (let i = 0; i < big; i++) if (pm.entries[i]!.flags & PE_PRESENT) before += pm.entries[i]!.nrPages;
    const data = await readFile(pagesPath(broken, pm.pagesId));
    const n = pm.entries[big]!.nrPages;
    await writeFile(pagesPath(broken, pm.pagesId), Buffer.concat([data.subarray(0, before * PAGE_SIZE), data.subarray((before + n) * PAGE_SIZE)]));
    await writeFile(pagemapPath(broken, main), encodePagemap({ pagesId: pm.pagesId, entries: pm.entries.filter((_, i) => i !== big) }));
    await rm(join(broken, BASE_INDEX_FILE));

    // our rebuild refuses such a parent...
    const delta3 = p.delta3;
    const small = join(p.tmp, 'small3');
    await assert.rejects(
      rebuildImageDir({ delta: delta3, smallImagesDir: small, outDir: join(p.tmp, 'stage', 'final-x'), parent: { dir: broken, link: '../broken' } }),
      /neither in the delta nor in the parent/,
    );
    // ...and criu, given the good final dir re-pointed at it, fails the restore.
    const out2 = join(p.tmp, 'stage', 'final-broken');
    await cp(p.out, out2, { recursive: true, verbatimSymlinks: true });
    await rm(join(out2, 'parent'));
    await symlink('../broken', join(out2, 'parent'));
    await assert.rejects(p.lab.restore(out2, p.w.pid, p.w.statusFile), /criu restore failed/);
    const logs = (await readdir(p.tmp)).filter((f) => f.startsWith('restore-')).sort();
    const text = await readFile(join(p.tmp, logs[logs.length - 1]!), 'utf8');
    assert.match(text, /Missing [0-9a-f]+ in parent pagemap|parent/i);
  });
});

describe('CRIU parent images after a layout change', { skip: skip ?? false, timeout: 90_000 }, () => {
  for (const mode of ['extra pages', 'rewrite'] as const) {
    describe(mode, () => {
      let p: Precopy;
      let tmp: string | undefined;
      let lab: CriuLab | undefined;

      before(async () => {
        // a new 2 MiB mapping before round 2 and another before the final round
        tmp = await mkdtemp(join(tmpdir(), 'cloudlet-ckpt-grow-'));
        lab = new CriuLab(tmp);
        p = await precopy(
          tmp,
          lab,
          async (w) => (await w.grow(), w.mutate()),
          async (w) => (await w.grow(), w.mutate()),
          mode === 'rewrite' ? { maxExtraPages: 16 } : {},
        );
      });

      after(async () => {
        await lab?.cleanup();
        if (tmp) await rm(tmp, { recursive: true, force: true });
      });

      it('updates the base and the final restore is intact', async (t) => {
        t.diagnostic(`apply2: ${JSON.stringify({ ...p.apply2, index: undefined })}`);
        t.diagnostic(`final: ${JSON.stringify(p.final)}`);
        if (mode === 'rewrite') {
          assert.ok(p.apply2.rewrittenPagemaps >= 1, 'the grown pagemap is rewritten');
          assert.equal(p.apply2.extraPages, 0);
          assert.equal(p.final.fromExtra, 0);
        } else {
          assert.equal(p.apply2.rewrittenPagemaps, 0);
          assert.ok(p.apply2.extraPages >= 512, 'the first new buffer is kept as extra pages');
          assert.ok(p.final.fromExtra >= 512, 'and written from there into the final dir');
        }
        assert.equal(p.before3.grows, 2);
        assert.ok(p.final.fromDelta >= 512, 'the second new 2 MiB buffer is in the final dir');
        await restoreAndCheck(p, p.out);
      });
    });
  }
});
