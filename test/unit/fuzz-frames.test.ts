// Fuzz of the migration frame reader (transfer/frame-reader.ts): 10,000 mutations of streams
// written by the real FrameWriter (four codecs, several block sizes), a third of them with
// the damaged frame's CRC recomputed so that the decoders and trailers face the damage.
// Every input must give a result or a TransferError, within bounded time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { readAllArtifacts } from '../../src/transfer/frame-reader.js';
import { FrameWriter } from '../../src/transfer/frame-writer.js';
import { FRAME_HEADER_BYTES, FRAME_MAGIC } from '../../src/transfer/frames.js';
import type { CodecName } from '../../src/transfer/codecs.js';
import { FUZZ_CASES, FUZZ_SEED, describe, mutate, prng, runFuzz, type LengthField, type Rnd } from './fuzz-kit.js';

async function writeStream(artifacts: [string, CodecName, Buffer][], blockSize: number, meta: Record<string, unknown>): Promise<Buffer> {
  const { writer, stream } = FrameWriter.toReadable({ blockSize, meta });
  const parts: Buffer[] = [];
  const done = (async () => {
    for await (const c of stream) parts.push(c as Buffer);
  })();
  for (const [name, codec, data] of artifacts) await writer.writeArtifact(name, codec, data);
  await writer.finish({ endSink: true });
  await done;
  return Buffer.concat(parts);
}

function frameSpans(wire: Buffer): { offset: number; length: number }[] {
  const out = [];
  for (let off = FRAME_MAGIC.length; off + FRAME_HEADER_BYTES <= wire.length;) {
    const length = wire.readUInt32BE(off + 2);
    out.push({ offset: off, length });
    off += FRAME_HEADER_BYTES + length;
  }
  return out;
}

/** Damage inside one frame's payload, CRC recomputed: only the payload checks can catch it. */
function mutateBehindCrc(wire: Buffer, rnd: Rnd): { buf: Buffer; what: string } {
  const b = Buffer.from(wire);
  const fs = frameSpans(wire).filter((f) => f.length > 0);
  const f = fs[rnd(fs.length)]!;
  const n = 1 + rnd(4);
  for (let i = 0; i < n; i++) b[f.offset + FRAME_HEADER_BYTES + rnd(f.length)] = rnd(256);
  const crc = zlib.crc32(b.subarray(f.offset + FRAME_HEADER_BYTES, f.offset + FRAME_HEADER_BYTES + f.length), zlib.crc32(b.subarray(f.offset, f.offset + 6)));
  b.writeUInt32BE(crc >>> 0, f.offset + 6);
  return { buf: b, what: `${n} bytes in the payload of the frame at ${f.offset}, CRC fixed` };
}

test(`frames: ${FUZZ_CASES} mutated streams -> result or TransferError, no hang`, { timeout: 120_000 }, async (t) => {
  const text = Buffer.from('GET /index.html HTTP/1.1\r\nHost: cloudlet\r\n\r\n'.repeat(80));
  const pages = Buffer.alloc(12 * 1024);
  for (let i = 0; i < pages.length; i += 4) pages.writeUInt32LE((i * 2654435761) >>> 0, i);
  const seeds = [
    await writeStream(
      [
        ['delta', 'lz4', pages],
        ['img/core-1.img', 'none', text.subarray(0, 700)],
      ],
      4096,
      { round: 1 },
    ),
    await writeStream(
      [
        ['fs/upper', 'zstd', text],
        ['img/mm-1.img', 'gzip', pages.subarray(0, 3000)],
      ],
      2048,
      { round: 2, final: true },
    ),
    await writeStream(
      [
        ['manifest.json', 'gzip', text.subarray(0, 500)],
        ['empty', 'none', Buffer.alloc(0)],
        ['layer', 'zstd', pages],
      ],
      8192,
      {},
    ),
  ];
  const fields = seeds.map((s) => frameSpans(s).map((f): LengthField => ({ offset: f.offset + 2, bytes: 4, le: false })));
  const rnd = prng(FUZZ_SEED);
  let split = 1;
  const stats = await runFuzz({
    name: 'frames',
    cases: FUZZ_CASES,
    seed: FUZZ_SEED,
    gen: () => {
      const k = rnd(seeds.length);
      const m = rnd(3) === 0 ? mutateBehindCrc(seeds[k]!, rnd) : mutate(seeds[k]!, rnd, { fields: fields[k]!, others: seeds });
      split = 1 + rnd(6000);
      return { input: m.buf, what: `${m.what}, chunks of ${split}` };
    },
    parse: (buf) => {
      const chunks = [];
      for (let off = 0; off < buf.length; off += split) chunks.push(buf.subarray(off, off + split));
      return readAllArtifacts(Readable.from(chunks));
    },
  });
  const outcomes = stats.outcomes;
  t.diagnostic(describe('frames', stats, FUZZ_SEED));
  assert.ok(stats.maxCaseMs < 2000, `slowest case took ${stats.maxCaseMs} ms`);
  // The damage is caught where it should be: CRC for raw damage, the trailers behind it.
  assert.ok((outcomes['transfer_crc'] ?? 0) > FUZZ_CASES / 10, JSON.stringify(outcomes));
  assert.ok(
    (outcomes['transfer_checksum'] ?? 0) + (outcomes['transfer_codec'] ?? 0) + (outcomes['transfer_bad_frame'] ?? 0) > FUZZ_CASES / 20,
    JSON.stringify(outcomes),
  );
});
