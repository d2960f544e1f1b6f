// CRIU stats files decoded without protobuf: a real stats-dump written by criu 4.2.1 (bytes
// copied from a runc checkpoint of a busybox container) and the values `crit show` printed
// for it. The integration test compares the decoder with crit on fresh files as well.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCriuStats, CriuStatsFormatError } from '../../src/engine/criu-stats.js';

const STATS_DUMP_HEX = '405910550633095724000000' + '0a2208f19a0610d0991a18c61d20dc0228313000382340004800500858086000680070' + '00';

test('criu stats: a real stats-dump decodes to what crit showed', () => {
  const s = parseCriuStats(Buffer.from(STATS_DUMP_HEX, 'hex'));
  assert.equal(s.restore, null);
  assert.deepEqual(s.dump, {
    freezingTimeUs: 101745,
    frozenTimeUs: 429264,
    memdumpTimeUs: 3782,
    memwriteTimeUs: 348,
    pagesScanned: 49,
    pagesSkippedParent: 0,
    pagesWritten: 35,
    irmapResolveUs: 0,
    pagesLazy: 0,
    pagePipes: 8,
    pagePipeBufs: 8,
    shpagesScanned: 0,
    shpagesSkippedParent: 0,
    shpagesWritten: 0,
  });
});

test('criu stats: restore entry, multi-byte varints, unknown fields skipped', () => {
  // stats_entry { restore (2) { pages_compared=1: 0, forking_time=3: 300, restore_time=4: 501319, pages_restored=5: 67179, field 9 (unknown): 7 } }
  const restore = Buffer.from([0x08, 0x00, 0x18, 0xac, 0x02, 0x20, 0xc7, 0xcc, 0x1e, 0x28, 0xeb, 0x8c, 0x04, 0x48, 0x07]);
  const entry = Buffer.concat([Buffer.from([0x12, restore.length]), restore]);
  const head = Buffer.alloc(12);
  head.writeUInt32LE(0x55105940, 0);
  head.writeUInt32LE(0x57093306, 4);
  head.writeUInt32LE(entry.length, 8);
  const s = parseCriuStats(Buffer.concat([head, entry]));
  assert.equal(s.dump, null);
  assert.deepEqual(s.restore, { pagesCompared: 0, pagesSkippedCow: 0, forkingTimeUs: 300, restoreTimeUs: 501319, pagesRestored: 67179 });
});

test('criu stats: wrong magics and truncation are format errors', () => {
  const good = Buffer.from(STATS_DUMP_HEX, 'hex');
  const badMagic = Buffer.from(good);
  badMagic.writeUInt32LE(0x56084025, 4);
  assert.throws(
    () => parseCriuStats(badMagic, 'x'),
    (e: unknown) => e instanceof CriuStatsFormatError && /type magic/.test(e.message),
  );
  assert.throws(() => parseCriuStats(good.subarray(0, 20), 'x'), CriuStatsFormatError);
  assert.throws(() => parseCriuStats(Buffer.alloc(4)), CriuStatsFormatError);
});
