// Codec choice from measured numbers: the winner must follow from the measurements.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { CODEC_NAMES } from '../../src/transfer/codecs.js';
import { chooseCodec, measureCodecs, predictSeconds, sampleOf, type CodecMeasurement } from '../../src/transfer/codec-choice.js';
import { mbitToBytesPerSecond } from '../../src/transfer/meter.js';

/** The winner recomputed from the measurements with the documented rule (min T, ties -> least CPU). */
function expectedWinner(ms: CodecMeasurement[], linkBps: number, bytes: number): string {
  const t = ms.map((m) => ({ m, t: predictSeconds(m, bytes, linkBps) }));
  const best = Math.min(...t.map((x) => x.t));
  const tied = t.filter((x) => x.t <= best * 1.02);
  return tied.reduce((a, b) => (b.m.compressBps > a.m.compressBps ? b : a)).m.codec;
}

/** Compressible but not trivially so: text-like records, as a heap or a log would hold. */
function compressibleSample(bytes: number): Buffer {
  const words = ['container', 'cloudlet', 'migration', 'page', 'delta', 'round', 'edge', 'user', 'handoff', 'socket'];
  const parts: string[] = [];
  let n = 0;
  let i = 0;
  while (n < bytes) {
    const s = `{"id":${i},"name":"${words[i % 10]}-${words[(i * 7) % 10]}","v":${(i * 31) % 1000}}\n`;
    parts.push(s);
    n += s.length;
    i++;
  }
  return Buffer.from(parts.join('')).subarray(0, bytes);
}

test('measureCodecs reports sane numbers for every codec', async () => {
  const ms = await measureCodecs(compressibleSample(2 << 20), CODEC_NAMES, { minSeconds: 0.01 });
  assert.deepEqual(
    ms.map((m) => m.codec),
    [...CODEC_NAMES],
  );
  for (const m of ms) {
    assert.equal(m.sampleBytes, 2 << 20);
    assert.ok(m.ratio > 0 && m.ratio <= 1.001, `${m.codec} ratio ${m.ratio}`);
    assert.ok(m.compressBps > 0 && m.decompressBps > 0);
    if (m.codec !== 'none') assert.ok(m.ratio < 0.5, `${m.codec} compresses text-like records: ${m.ratio}`);
  }
  assert.equal(sampleOf(Buffer.alloc(10 << 20), 4 << 20).length, 4 << 20);
});

test('incompressible data on a 1 Gbit/s link: none or lz4 wins, as the measurements say', async () => {
  const data = randomBytes(4 << 20);
  const ms = await measureCodecs(data, CODEC_NAMES, { minSeconds: 0.02 });
  for (const m of ms) assert.ok(m.ratio > 0.999, `${m.codec} cannot shrink random data (${m.ratio})`);
  const link = mbitToBytesPerSecond(1000);
  const bytes = 256 << 20;
  const d = chooseCodec(ms, link, { bytes });
  assert.equal(d.codec, expectedWinner(ms, link, bytes), d.reason);
  assert.ok(d.codec === 'none' || d.codec === 'lz4', d.reason);
  assert.equal(d.candidates[0]!.predictedSeconds, Math.min(...d.candidates.map((c) => c.predictedSeconds)));
  assert.match(d.reason, /Mbit\/s/);
});

test('highly compressible data on a 5 Mbit/s link: zstd or gzip wins, as the measurements say', async () => {
  const data = compressibleSample(4 << 20);
  const ms = await measureCodecs(data, CODEC_NAMES, { minSeconds: 0.02 });
  const link = mbitToBytesPerSecond(5);
  const bytes = 64 << 20;
  const d = chooseCodec(ms, link, { bytes });
  assert.equal(d.codec, expectedWinner(ms, link, bytes), d.reason);
  assert.ok(d.codec === 'zstd' || d.codec === 'gzip', d.reason);
  const none = d.candidates.find((c) => c.codec === 'none')!;
  assert.ok(d.predictedSeconds < none.predictedSeconds / 3, d.reason);
});

test('the node binary at several link speeds: the choice always follows from the numbers', async () => {
  const fh = await open(process.execPath, 'r');
  const buf = Buffer.alloc(4 << 20);
  await fh.read(buf, 0, buf.length, 24 << 20);
  await fh.close();
  const ms = await measureCodecs(buf, CODEC_NAMES, { minSeconds: 0.02 });
  for (const mbit of [5, 20, 100, 1000]) {
    const link = mbitToBytesPerSecond(mbit);
    const d = chooseCodec(ms, link, { bytes: 100 << 20 });
    assert.equal(d.codec, expectedWinner(ms, link, 100 << 20), `${mbit} Mbit/s: ${d.reason}`);
  }
});

test('the pipeline model: bottleneck stage times the blocks plus a one-block tail', () => {
  const m = { ratio: 0.5, compressBps: 100e6, decompressBps: 400e6 };
  const B = 1 << 20;
  // Link-bound: 10 MB/s link, 0.5 ratio -> 5 MB/s raw effective.
  const t = predictSeconds(m, 64 * B, 10e6, B);
  const expected = B / 100e6 + (B * 0.5) / 10e6 + B / 400e6 + 63 * ((B * 0.5) / 10e6);
  assert.ok(Math.abs(t - expected) < 1e-9);
  // 'none' is exactly N / link.
  assert.equal(predictSeconds({ ratio: 1, compressBps: Infinity, decompressBps: Infinity }, 10e6, 1e6), 10);
  // Less than one block: every stage once.
  assert.ok(Math.abs(predictSeconds(m, 1000, 1e6, B) - (1000 / 100e6 + 500 / 1e6 + 1000 / 400e6)) < 1e-12);
  // Ties go to the cheaper codec.
  const tie = chooseCodec(
    [
      { codec: 'zstd', sampleBytes: 1, ratio: 1, compressBps: 100e6, decompressBps: 1e9 },
      { codec: 'none', sampleBytes: 1, ratio: 1, compressBps: Infinity, decompressBps: Infinity },
    ],
    1e6,
    { bytes: 100e6 },
  );
  assert.equal(tie.codec, 'none');
});
