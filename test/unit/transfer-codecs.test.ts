// Codecs on real data: one-shot, block and stream round trips, bombs, damaged input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CODEC_NAMES,
  compress,
  compressStream,
  decodeBlock,
  decompress,
  decompressStream,
  encodeBlock,
  lz4FrameBound,
  parseCodec,
  parseCodecChoice,
  type CodecName,
} from '../../src/transfer/codecs.js';
import { TransferError } from '../../src/transfer/errors.js';
import { UsageError } from '../../src/util/errors.js';

async function nodeBinaryChunk(bytes: number, at = 16 << 20): Promise<Buffer> {
  const fh = await open(process.execPath, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, at);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const isTransferError =
  (kind?: string) =>
  (err: unknown): boolean => {
    assert.ok(err instanceof TransferError, `expected a TransferError, got ${String(err)}`);
    if (kind !== undefined) assert.equal(err.kind, kind, err.message);
    return true;
  };

async function collect(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('parseCodec accepts the four codecs and names an unknown one in a UsageError', () => {
  for (const c of CODEC_NAMES) assert.equal(parseCodec(c), c);
  assert.equal(parseCodecChoice('auto'), 'auto');
  assert.throws(
    () => parseCodec('brotli'),
    (e: unknown) => e instanceof UsageError && /brotli/.test(e.message) && /lz4/.test(e.message),
  );
  assert.throws(() => parseCodec('auto'), UsageError);
  assert.throws(
    () => parseCodecChoice('LZ4'),
    (e: unknown) => e instanceof UsageError && /'LZ4'/.test(e.message),
  );
});

test('every codec round-trips the node binary, random bytes, zeros and empty input (one-shot and blocks)', async () => {
  const samples: Record<string, Buffer> = {
    node: await nodeBinaryChunk(6 << 20),
    random: randomBytes(3 << 20),
    zeros: Buffer.alloc(8 << 20),
    empty: Buffer.alloc(0),
    tiny: Buffer.from('x'),
  };
  for (const codec of CODEC_NAMES) {
    for (const [name, buf] of Object.entries(samples)) {
      const c = await compress(codec, buf);
      assert.ok((await decompress(codec, c, buf.length)).equals(buf), `${codec}/${name} one-shot with size`);
      assert.ok((await decompress(codec, c)).equals(buf), `${codec}/${name} one-shot without size`);
      const b = await encodeBlock(codec, buf.subarray(0, 1 << 20));
      assert.ok(b.payload.length <= b.rawLen, `${codec}/${name}: a block never grows`);
      const back = await decodeBlock(codec, b.rawLen, b.stored, b.payload);
      assert.ok(back.equals(buf.subarray(0, 1 << 20)), `${codec}/${name} block`);
      if (name === 'random' && codec !== 'none') assert.ok(b.stored, `${codec}: random data is sent stored`);
      if (name === 'zeros' && codec !== 'none') assert.ok(!b.stored && b.payload.length < 8192, `${codec}: zeros shrink`);
    }
  }
});

test('streams round-trip in blocks, with small and odd-sized writes', async () => {
  const data = Buffer.concat([await nodeBinaryChunk(3 << 20), Buffer.alloc(1 << 20), randomBytes(700_001)]);
  for (const codec of CODEC_NAMES) {
    const pieces: Buffer[] = [];
    for (let off = 0, i = 0; off < data.length; i++) {
      const n = [1, 4095, 65536, 1 << 20, 333_333][i % 5]!;
      pieces.push(data.subarray(off, off + n));
      off += n;
    }
    const compressed = await collect(Readable.from(pieces).pipe(compressStream(codec, { blockSize: 256 << 10 })));
    if (codec !== 'none') assert.ok(compressed.length < data.length, `${codec} shrinks the mix`);
    const back = await collect(Readable.from([compressed.subarray(0, 5), compressed.subarray(5)]).pipe(decompressStream(codec)));
    assert.ok(back.equals(data), `${codec} stream round trip`);
  }
});

test('decompression bombs are refused before the output is allocated', async () => {
  const zeros = Buffer.alloc(64 << 20);
  for (const codec of ['lz4', 'zstd', 'gzip'] as CodecName[]) {
    const c = await compress(codec, zeros);
    assert.ok(c.length < 1 << 20, `${codec} compressed 64 MiB of zeros to ${c.length}`);
    await assert.rejects(decompress(codec, c, undefined, 1 << 20), isTransferError('bomb'), codec);
    // A sender lying about the block size: the codec would produce more than declared.
    await assert.rejects(decompress(codec, c, 1 << 20), isTransferError(), codec);
  }
  assert.equal(lz4FrameBound(await compress('lz4', zeros)), 64 << 20);
  // A block stream declaring a block above the receiver's limit fails on the header alone.
  const s = await collect(Readable.from([Buffer.alloc(4 << 20)]).pipe(compressStream('zstd', { blockSize: 4 << 20 })));
  await assert.rejects(
    pipeline(Readable.from([s]), decompressStream('zstd', { maxBlockSize: 1 << 20 }), async function* (src) {
      for await (const _ of src) void _;
    }),
    isTransferError('oversize'),
  );
});

test('damaged compressed input fails as a TransferError, never a crash (300 mutations per codec)', async () => {
  const raw = await nodeBinaryChunk(256 << 10);
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (const codec of ['lz4', 'zstd', 'gzip'] as CodecName[]) {
    const b = await encodeBlock(codec, raw);
    assert.ok(!b.stored);
    let failed = 0;
    for (let i = 0; i < 300; i++) {
      const p = Buffer.from(b.payload);
      const k = 1 + rnd(4);
      for (let j = 0; j < k; j++) p[rnd(p.length)] = rnd(256);
      const cut = rnd(10) === 0 ? p.subarray(0, rnd(p.length)) : p;
      try {
        const out = await decodeBlock(codec, b.rawLen, false, cut);
        assert.equal(out.length, raw.length, 'a decoded block always has its declared size');
      } catch (err) {
        isTransferError()(err);
        failed++;
      }
    }
    assert.ok(failed > 0, `${codec}: some mutations must be detected`);
  }
});

test('a truncated or foreign block stream is a clear TransferError', async () => {
  const c = await collect(Readable.from([await nodeBinaryChunk(2 << 20)]).pipe(compressStream('lz4', { blockSize: 512 << 10 })));
  const drain = async (input: Buffer): Promise<void> => {
    await pipeline(Readable.from([input]), decompressStream('lz4'), async function* (src) {
      for await (const _ of src) void _;
    });
  };
  await drain(c);
  await assert.rejects(drain(c.subarray(0, c.length - 9)), isTransferError('truncated'));
  await assert.rejects(drain(c.subarray(0, c.length - 1000)), isTransferError('truncated'));
  await assert.rejects(drain(Buffer.from('HTTP/1.1 500 oops\r\n\r\n')), isTransferError('bad_magic'));
});
