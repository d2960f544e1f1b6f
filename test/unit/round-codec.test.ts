// The codec of a round when the daemon chooses ('auto'): small rounds are bound by round
// trips (TCP slow start), so they take the smaller output (zstd) without measuring codecs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pickCodec } from '../../src/migration/round-transport.js';
import type { Delta } from '../../src/checkpoint/delta-types.js';
import type { RoundReport } from '../../src/migration/types.js';

function deltaOf(pages: number): Delta {
  const data = Buffer.alloc(4096, 7);
  return {
    pageSize: 4096,
    index: new Map(),
    pages: Array.from({ length: pages }, (_, i) => ({ id: '1', index: i, vaddr: i * 4096, data })),
    counts: { scanned: pages, changed: pages, new: 0, zero: 0, unchanged: 0 },
  };
}

test('a round under a megabyte of pages is sent with zstd, without measuring', async () => {
  assert.equal(await pickCodec('auto', deltaOf(50), [], true), 'zstd');
  assert.equal(await pickCodec('auto', deltaOf(0), [], false), 'zstd');
});

test('a fixed codec and the previous round choice for a final round are kept', async () => {
  assert.equal(await pickCodec('lz4', deltaOf(50), [], true), 'lz4');
  const previous = [{ codec: 'gzip' } as RoundReport];
  assert.equal(await pickCodec('auto', deltaOf(50), previous, true), 'gzip');
});
