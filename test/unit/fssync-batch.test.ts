// fssync batch files and error paths: trailer validation, typed errors with rsync's stderr,
// usage checks, retry after a failed round, a diverged destination detected (not corrupted).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, truncate, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyBatch } from '../../src/fssync/apply.js';
import { FsSyncError } from '../../src/fssync/errors.js';
import { FsSyncSource } from '../../src/fssync/index.js';
import { CloudletError } from '../../src/util/errors.js';

const isRoot = process.getuid?.() === 0;

async function rejectsWith(p: Promise<unknown>, code: string): Promise<FsSyncError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FsSyncError, `expected FsSyncError, got ${String(e)}`);
    assert.ok(e instanceof CloudletError);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

describe('fssync batch files', () => {
  let work = '';
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cloudlet-fssync-unit-'));
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('refuses a file without a trailer, a missing file, and a truncated batch', async () => {
    const junk = join(work, 'junk');
    await writeFile(junk, 'not a batch at all, just some bytes');
    await rejectsWith(applyBatch(junk, join(work, 't-junk')), 'fssync_batch_invalid');
    await rejectsWith(applyBatch(join(work, 'missing'), join(work, 't-missing')), 'fssync_batch_unreadable');
  });

  it('refuses a stateDir inside the sourceDir (and the reverse)', () => {
    assert.throws(() => new FsSyncSource({ sourceDir: work, stateDir: join(work, 'st') }), FsSyncError);
    assert.throws(() => new FsSyncSource({ sourceDir: join(work, 'x'), stateDir: work }), FsSyncError);
  });

  describe('with rsync', { skip: isRoot ? false : 'needs root: rsync copies owners, devices and trusted.* xattrs' }, () => {
    it('round-trips, detects truncation, and a failed round can be retried', async () => {
      const src2 = join(work, 'src1-missing');
      const state = join(work, 'state1');
      const tgt = join(work, 'tgt1');
      const s = new FsSyncSource({ sourceDir: src2, stateDir: state });
      try {
        await rejectsWith(s.nextBatch(join(work, 'b0')), 'fssync_source_missing');
        await mkdir(src2);
        await writeFile(join(src2, 'f'), 'hello');
        const b1 = join(work, 'b1');
        const st = await s.nextBatch(b1);
        assert.equal(st.empty, false);
        assert.ok(st.files >= 2, JSON.stringify(st)); // ./ and f
        assert.equal(st.bytes, (await stat(b1)).size);
        await applyBatch(b1, tgt);
        assert.equal(await readFile(join(tgt, 'f'), 'utf8'), 'hello');
        // a batch is usable only whole
        const cut = join(work, 'b1-cut');
        await writeFile(cut, await readFile(b1));
        await truncate(cut, (await stat(cut)).size - 1);
        await rejectsWith(applyBatch(cut, join(work, 'tgt-cut')), 'fssync_batch_invalid');
        // a damaged rsync header (its option flags and protocol): refused before rsync runs
        const badHead = join(work, 'b1-bad-head');
        const head = await readFile(b1);
        head.fill(0xff, 0, 8);
        await writeFile(badHead, head);
        await rejectsWith(applyBatch(badHead, join(work, 'tgt-bad-head')), 'fssync_batch_options');
        // a damaged rsync part behind it: typed error carrying rsync's exit code and stderr tail
        const bad = join(work, 'b1-bad');
        const bytes = await readFile(b1);
        bytes.fill(0xff, 8, 72);
        await writeFile(bad, bytes);
        const err = await rejectsWith(applyBatch(bad, join(work, 'tgt-bad')), 'fssync_apply_failed');
        assert.ok(typeof err.context.exitCode === 'number' && err.context.exitCode !== 0, JSON.stringify(err.context));
        assert.ok(String(err.context.stderrTail).length > 0, err.message);
        // nothing changed: an empty round
        const again = await s.nextBatch(join(work, 'b2'));
        assert.equal(again.empty, true, JSON.stringify(again));
        assert.equal(again.files, 0);
        await applyBatch(join(work, 'b2'), tgt);
        // final round, then the source is closed
        await writeFile(join(src2, 'g'), 'world');
        const fin = await s.nextBatch(join(work, 'b3'), { final: true });
        assert.equal(fin.empty, false);
        await applyBatch(join(work, 'b3'), tgt);
        assert.equal(await readFile(join(tgt, 'g'), 'utf8'), 'world');
        await rejectsWith(s.nextBatch(join(work, 'b4')), 'fssync_closed');
      } finally {
        await s.dispose();
      }
      await assert.rejects(stat(join(state, 'shadow')), /ENOENT/);
    });

    it('a destination that missed or repeated a round is refused before rsync touches it', async () => {
      const src = join(work, 'src2');
      const state = join(work, 'state2');
      await mkdir(src);
      const big = randomBytes(512 * 1024);
      await writeFile(join(src, 'big'), big);
      const s = new FsSyncSource({ sourceDir: src, stateDir: state });
      try {
        await s.nextBatch(join(work, 'd1')); // never applied to the destination
        const fh = await open(join(src, 'big'), 'r+');
        await fh.write(Buffer.from('changed!'), 0, 8, 200_000);
        await fh.close();
        await s.nextBatch(join(work, 'd2'));
        const tgt = join(work, 'tgt2');
        await mkdir(tgt);
        // The stale destination has a different 'big' of the same name: deltas cannot apply.
        await writeFile(join(tgt, 'big'), randomBytes(512 * 1024));
        const stale = await readFile(join(tgt, 'big'));
        const err = await rejectsWith(applyBatch(join(work, 'd2'), tgt), 'fssync_target_diverged');
        assert.equal(err.context.round, 2);
        assert.deepEqual(await readFile(join(tgt, 'big')), stale, 'refused before touching the destination');
        // An empty destination can take round 1, then round 2; a repeated round is refused.
        const tgt2 = join(work, 'tgt2b');
        await applyBatch(join(work, 'd1'), tgt2);
        await applyBatch(join(work, 'd2'), tgt2);
        assert.deepEqual(await readFile(join(tgt2, 'big')), await readFile(join(src, 'big')));
        await rejectsWith(applyBatch(join(work, 'd2'), tgt2), 'fssync_target_diverged');
      } finally {
        await s.dispose();
      }
    });
  });
});
