// Fuzz-ish: random mutations of a valid framed stream must give either exactly the original
// artifacts or a TransferError: never another exception, a crash, a wrong result or a hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { readAllArtifacts } from '../../src/transfer/frame-reader.js';
import { FrameWriter } from '../../src/transfer/frame-writer.js';
import { FRAME_HEADER_BYTES, FRAME_MAGIC, FrameType } from '../../src/transfer/frames.js';
import { TransferError } from '../../src/transfer/errors.js';
import type { CodecName } from '../../src/transfer/codecs.js';

/** Seeded PRNG (mulberry32): a failure prints its seed and case and can be replayed. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n) | 0;
  };
}

async function validStream(): Promise<{ wire: Buffer; arts: Map<string, Buffer> }> {
  const fh = await open(process.execPath, 'r');
  const bin = Buffer.alloc(96 << 10);
  await fh.read(bin, 0, bin.length, 20 << 20);
  await fh.close();
  const arts = new Map<string, Buffer>([
    ['pages-delta', bin],
    ['fs-batch', Buffer.concat([Buffer.from('line of text\n'.repeat(3000)), randomBytes(10_000)])],
    ['images.tar', Buffer.alloc(50_000, 1)],
    ['raw', randomBytes(20_000)],
  ]);
  const codecs: CodecName[] = ['lz4', 'zstd', 'gzip', 'none'];
  const { writer, stream } = FrameWriter.toReadable({ blockSize: 16 << 10, meta: { round: 7 } });
  const parts: Buffer[] = [];
  const done = (async () => {
    for await (const c of stream) parts.push(c as Buffer);
  })();
  let i = 0;
  for (const [name, data] of arts) await writer.writeArtifact(name, codecs[i++]!, data);
  await writer.finish();
  await done;
  return { wire: Buffer.concat(parts), arts };
}

function frames(wire: Buffer): { offset: number; length: number; type: number }[] {
  const out = [];
  for (let off = FRAME_MAGIC.length; off + FRAME_HEADER_BYTES <= wire.length;) {
    const length = wire.readUInt32BE(off + 2);
    out.push({ offset: off, length, type: wire[off]! });
    off += FRAME_HEADER_BYTES + length;
  }
  return out;
}

function mutate(wire: Buffer, rnd: (n: number) => number): { buf: Buffer; what: string } {
  const b = Buffer.from(wire);
  switch (rnd(6)) {
    case 0: {
      const at = rnd(b.length);
      b[at] ^= 1 << rnd(8);
      return { buf: b, what: `flip bit at ${at}` };
    }
    case 1: {
      const n = 1 + rnd(8);
      for (let i = 0; i < n; i++) b[rnd(b.length)] = rnd(256);
      return { buf: b, what: `${n} random bytes` };
    }
    case 2: {
      const at = rnd(b.length);
      return { buf: b.subarray(0, at), what: `truncate at ${at}` };
    }
    case 3: {
      const at = rnd(b.length);
      const n = 1 + rnd(64);
      return { buf: Buffer.concat([b.subarray(0, at), b.subarray(at + n)]), what: `delete ${n} at ${at}` };
    }
    case 4: {
      const at = rnd(b.length);
      return { buf: Buffer.concat([b.subarray(0, at), randomBytesFrom(rnd, 1 + rnd(32)), b.subarray(at)]), what: `insert at ${at}` };
    }
    default: {
      // Header fields are the interesting part: hit one of a frame's first 10 bytes.
      const fs = frames(wire);
      const f = fs[rnd(fs.length)]!;
      const at = f.offset + rnd(FRAME_HEADER_BYTES);
      b[at] = rnd(256);
      return { buf: b, what: `header byte ${at}` };
    }
  }
}

function randomBytesFrom(rnd: (n: number) => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rnd(256);
  return b;
}

/** Mutate inside one frame's payload, then fix its CRC: the decoders and trailers face the damage. */
function mutateBehindCrc(wire: Buffer, rnd: (n: number) => number): { buf: Buffer; what: string } {
  const b = Buffer.from(wire);
  const fs = frames(wire).filter((f) => f.length > 0);
  const f = fs[rnd(fs.length)]!;
  const n = 1 + rnd(4);
  for (let i = 0; i < n; i++) b[f.offset + FRAME_HEADER_BYTES + rnd(f.length)] = rnd(256);
  const crc = zlib.crc32(b.subarray(f.offset + FRAME_HEADER_BYTES, f.offset + FRAME_HEADER_BYTES + f.length), zlib.crc32(b.subarray(f.offset, f.offset + 6)));
  b.writeUInt32BE(crc >>> 0, f.offset + 6);
  return { buf: b, what: `${n} bytes in ${FrameType.DATA === f.type ? 'DATA' : `type ${f.type}`} payload at ${f.offset}, CRC fixed` };
}

async function check(buf: Buffer, arts: Map<string, Buffer>, what: string, split: number): Promise<'ok' | string> {
  const chunks = [];
  for (let off = 0; off < buf.length; off += split) chunks.push(buf.subarray(off, off + split));
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang (> 5 s): ${what}`)), 5000);
  });
  try {
    const got = await Promise.race([readAllArtifacts(Readable.from(chunks)), hang]);
    assert.deepEqual(got.meta, { round: 7 }, what);
    assert.equal(got.artifacts.size, arts.size, what);
    for (const [name, data] of arts) assert.ok(got.artifacts.get(name)?.data.equals(data), `${what}: ${name} differs`);
    return 'ok';
  } catch (err) {
    if (err instanceof TransferError) return err.kind;
    throw new Error(`${what}: not a TransferError: ${(err as Error).stack}`);
  } finally {
    clearTimeout(timer);
  }
}

test('2,000 random mutations of a valid stream: correct output or a TransferError, bounded time', async (t) => {
  const { wire, arts } = await validStream();
  assert.equal(await check(wire, arts, 'unmutated', 4096), 'ok');
  const seed = Number(process.env['TRANSFER_FUZZ_SEED'] ?? 20261128);
  const rnd = prng(seed);
  const kinds = new Map<string, number>();
  const started = Date.now();
  for (let i = 0; i < 2000; i++) {
    const { buf, what } = mutate(wire, rnd);
    const k = await check(buf, arts, `seed ${seed} case ${i}: ${what}`, 1 + rnd(9000));
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  const seconds = (Date.now() - started) / 1000;
  t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(kinds))} in ${seconds.toFixed(1)} s`);
  assert.ok(seconds < 30, `took ${seconds} s`);
  // The CRC catches almost everything; an 'ok' is only possible for a no-op mutation.
  assert.ok((kinds.get('crc') ?? 0) > 500, JSON.stringify([...kinds]));
  assert.ok((kinds.get('truncated') ?? 0) > 100, JSON.stringify([...kinds]));
});

test('500 mutations behind a fixed CRC: decoders and trailers catch them, never a crash', async (t) => {
  const { wire, arts } = await validStream();
  const rnd = prng(99);
  const kinds = new Map<string, number>();
  for (let i = 0; i < 500; i++) {
    const { buf, what } = mutateBehindCrc(wire, rnd);
    const k = await check(buf, arts, `crc-fixed case ${i}: ${what}`, 1 + rnd(20000));
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(kinds))}`);
  assert.ok((kinds.get('checksum') ?? 0) > 50, JSON.stringify([...kinds]));
  assert.ok((kinds.get('ok') ?? 0) < 50, JSON.stringify([...kinds]));
});
