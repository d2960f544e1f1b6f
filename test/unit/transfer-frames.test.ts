// Framed streams over a real TCP loopback connection, and every way they can go wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { FrameReader, readAllArtifacts, type TransferEvent } from '../../src/transfer/frame-reader.js';
import { FrameWriter } from '../../src/transfer/frame-writer.js';
import { FRAME_HEADER_BYTES, FRAME_MAGIC, FrameType } from '../../src/transfer/frames.js';
import { TransferError } from '../../src/transfer/errors.js';
import { ByteMeter } from '../../src/transfer/meter.js';
import type { CodecName } from '../../src/transfer/codecs.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A connected TCP socket pair on 127.0.0.1. */
async function socketPair(): Promise<{ client: net.Socket; server: net.Socket; close: () => void }> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  const accepted = once(srv, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(port, '127.0.0.1');
  await once(client, 'connect');
  const [server] = await accepted;
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
    },
  };
}

async function* chunked(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let off = 0; off < buf.length; off += size) {
    yield buf.subarray(off, off + size);
    if ((off / size) % 8 === 0) await new Promise((r) => setImmediate(r));
  }
}

/** A valid stream with a few artifacts, in memory. */
async function sampleStream(blockSize = 64 << 10): Promise<{ wire: Buffer; arts: Map<string, Buffer> }> {
  const arts = new Map<string, Buffer>([
    ['pages-delta', Buffer.concat([randomBytes(100_000), Buffer.alloc(200_000, 7)])],
    ['fs-batch', Buffer.from('hello '.repeat(50_000))],
    ['images.tar', randomBytes(70_000)],
  ]);
  const codecs: CodecName[] = ['zstd', 'lz4', 'gzip'];
  const { writer, stream } = FrameWriter.toReadable({ blockSize, meta: { round: 1 } });
  const parts: Buffer[] = [];
  const done = (async () => {
    for await (const c of stream) parts.push(c as Buffer);
  })();
  let i = 0;
  for (const [name, data] of arts) await writer.writeArtifact(name, codecs[i++ % codecs.length]!, data);
  await writer.finish();
  await done;
  return { wire: Buffer.concat(parts), arts };
}

/** Offsets of each frame in a stream. */
function frameOffsets(wire: Buffer): { offset: number; type: number; length: number }[] {
  const out = [];
  let off = FRAME_MAGIC.length;
  while (off + FRAME_HEADER_BYTES <= wire.length) {
    const length = wire.readUInt32BE(off + 2);
    out.push({ offset: off, type: wire[off]!, length });
    off += FRAME_HEADER_BYTES + length;
  }
  return out;
}

function fixCrc(wire: Buffer, frameOffset: number): void {
  const len = wire.readUInt32BE(frameOffset + 2);
  const crc = zlib.crc32(
    wire.subarray(frameOffset + FRAME_HEADER_BYTES, frameOffset + FRAME_HEADER_BYTES + len),
    zlib.crc32(wire.subarray(frameOffset, frameOffset + 6)),
  );
  wire.writeUInt32BE(crc >>> 0, frameOffset + 6);
}

const transferError =
  (kind: string, extra?: (e: TransferError) => void) =>
  (err: unknown): boolean => {
    assert.ok(err instanceof TransferError, `expected a TransferError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    assert.equal(err.code, `transfer_${kind}`);
    extra?.(err);
    return true;
  };

test('several artifacts through a real TCP socket pair: data, sizes and sha256 arrive intact', async () => {
  const { client, server, close } = await socketPair();
  try {
    const nodeChunk = await new Promise<Buffer>((resolve, reject) => {
      const parts: Buffer[] = [];
      createReadStream(process.execPath, { start: 32 << 20, end: (32 << 20) + (5 << 20) - 1 })
        .on('data', (c) => parts.push(c as Buffer))
        .on('end', () => resolve(Buffer.concat(parts)))
        .on('error', reject);
    });
    const streamed = Buffer.concat([Buffer.alloc(1 << 20), randomBytes(1 << 20)]);
    const expected = new Map<string, { data: Buffer; codec: CodecName }>([
      ['pages-delta', { data: nodeChunk, codec: 'zstd' }],
      ['fs-batch', { data: streamed, codec: 'lz4' }],
      ['images.tar', { data: randomBytes(300_000), codec: 'gzip' }],
      ['empty', { data: Buffer.alloc(0), codec: 'none' }],
      ['raw', { data: randomBytes(2_500_000), codec: 'none' }],
    ]);

    const sendMeter = new ByteMeter();
    const recvMeter = new ByteMeter();
    sendMeter.pipe(client);
    const writer = new FrameWriter(sendMeter, { meta: { round: 3, container: 'abc' } });
    const sending = (async () => {
      const sums = [];
      for (const [name, { data, codec }] of expected) {
        // fs-batch streams from an async source without an announced size; the rest are Buffers.
        const src = name === 'fs-batch' ? chunked(data, 100_000) : data;
        sums.push(await writer.writeArtifact(name, codec, src, { meta: { n: name.length } }));
      }
      return { sums, total: await writer.finish() };
    })();

    const got = new Map<string, Buffer>();
    const events: string[] = [];
    let current: Buffer[] = [];
    let eos: Extract<TransferEvent, { type: 'eos' }> | undefined;
    for await (const ev of new FrameReader(server.pipe(recvMeter))) {
      events.push(ev.type);
      if (ev.type === 'hello') assert.deepEqual(ev.meta, { round: 3, container: 'abc' });
      if (ev.type === 'begin') {
        current = [];
        const { data, codec } = expected.get(ev.artifact.name)!;
        assert.equal(ev.artifact.codec, codec);
        assert.equal(ev.artifact.rawSize, ev.artifact.name === 'fs-batch' ? null : data.length);
        assert.deepEqual(ev.artifact.meta, { n: ev.artifact.name.length });
      }
      if (ev.type === 'data') current.push(ev.chunk);
      if (ev.type === 'end') {
        got.set(ev.summary.name, Buffer.concat(current));
        assert.equal(ev.summary.sha256, sha(expected.get(ev.summary.name)!.data));
      }
      if (ev.type === 'eos') eos = ev;
    }
    const { sums, total } = await sending;
    assert.equal(events[0], 'hello');
    assert.equal(events.at(-1), 'eos');
    for (const [name, { data }] of expected) assert.ok(got.get(name)!.equals(data), name);
    assert.equal(eos!.summary.wireBytes, total.wireBytes);
    assert.equal(eos!.summary.artifacts, expected.size);
    assert.equal(writer.bytesWritten, total.wireBytes);
    assert.equal(sendMeter.bytes, total.wireBytes);
    assert.equal(recvMeter.bytes, total.wireBytes);
    // Random blocks are stored, not expanded; compressible ones shrink.
    const raw = sums.find((s) => s.name === 'raw')!;
    assert.equal(raw.storedBlocks, raw.blocks);
    const pages = sums.find((s) => s.name === 'pages-delta')!;
    assert.ok(pages.sentBytes < pages.rawBytes * 0.7, `zstd on the node binary: ${pages.sentBytes}/${pages.rawBytes}`);
    const fs = sums.find((s) => s.name === 'fs-batch')!;
    assert.ok(fs.storedBlocks >= 1 && fs.storedBlocks < fs.blocks, 'zeros compressed, random stored');
    assert.ok(recvMeter.reading().bytesPerSecond > 0);
  } finally {
    close();
  }
});

test('a byte corrupted in transit over TCP fails its frame CRC with frame index and offset', async () => {
  const { wire } = await sampleStream();
  const frames = frameOffsets(wire);
  const victim = frames.find((f) => f.type === FrameType.DATA)!;
  const at = victim.offset + FRAME_HEADER_BYTES + 100;
  const { client, server, close } = await socketPair();
  try {
    let seen = 0;
    const corrupt = new Transform({
      transform(chunk: Buffer, _e, cb: TransformCallback) {
        const c = Buffer.from(chunk);
        if (at >= seen && at < seen + c.length) c[at - seen]! ^= 0x40;
        seen += c.length;
        cb(null, c);
      },
    });
    Readable.from([wire]).pipe(corrupt).pipe(client);
    await assert.rejects(
      readAllArtifacts(server),
      transferError('crc', (e) => {
        assert.equal(e.context['offset'], victim.offset);
        assert.equal(typeof e.context['frameIndex'], 'number');
        assert.equal(e.context['type'], 'DATA');
      }),
    );
  } finally {
    close();
  }
});

test('corruption that the frame CRC misses is caught by the artifact sha256 at END', async () => {
  const { wire } = await sampleStream();
  // A stored block (random bytes): flip one byte and recompute the CRC, as if the corruption
  // happened before framing (or the CRC collided). The sha256 trailer must catch it.
  const stored = frameOffsets(wire).find((f) => f.type === FrameType.DATA && (wire[f.offset + 1]! & 1) === 1)!;
  const bad = Buffer.from(wire);
  bad[stored.offset + FRAME_HEADER_BYTES + 4 + 10]! ^= 0xff;
  fixCrc(bad, stored.offset);
  await assert.rejects(
    readAllArtifacts(Readable.from([bad])),
    transferError('checksum', (e) => {
      assert.match(e.message, /sha256 mismatch/);
      assert.equal(e.context['artifact'], 'pages-delta');
    }),
  );
});

test('truncated streams fail clearly wherever they are cut', async () => {
  const { wire, arts } = await sampleStream();
  const ok = await readAllArtifacts(Readable.from([wire]));
  for (const [name, data] of arts) assert.ok(ok.artifacts.get(name)!.data.equals(data));
  const frames = frameOffsets(wire);
  const cuts = [0, 2, FRAME_MAGIC.length + 3, frames[3]!.offset + 20, frames.at(-1)!.offset, wire.length - 1];
  // Cut exactly between two artifacts: no frame is broken, EOS is missing.
  const endOfFirst = frames.find((f) => f.type === FrameType.END)!;
  cuts.push(endOfFirst.offset + FRAME_HEADER_BYTES + endOfFirst.length);
  for (const cut of cuts) {
    await assert.rejects(readAllArtifacts(Readable.from([wire.subarray(0, cut)])), transferError('truncated'), `cut at ${cut}`);
  }
  await assert.rejects(readAllArtifacts(Readable.from([wire.subarray(0, cuts.at(-1)!)])), (e: TransferError) =>
    /without END-OF-STREAM.*1 complete/.test(e.message),
  );
});

test('an oversize frame is refused from its header, before its payload is read', async () => {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header[0] = FrameType.HELLO;
  header.writeUInt32BE(1 << 30, 2);
  // Only the header is ever sent: a reader that waited for the payload would hang.
  const src = new PassThrough();
  src.write(Buffer.concat([FRAME_MAGIC, header]));
  await assert.rejects(
    readAllArtifacts(src),
    transferError('oversize', (e) => assert.equal(e.context['length'], 1 << 30)),
  );

  const { wire } = await sampleStream(256 << 10);
  await assert.rejects(readAllArtifacts(Readable.from([wire]), { maxBlockSize: 64 << 10 }), transferError('oversize'));
});

test('foreign data, unknown frame types and trailing bytes are refused', async () => {
  await assert.rejects(readAllArtifacts(Readable.from([Buffer.from('HTTP/1.1 502 Bad Gateway\r\n\r\n')])), transferError('bad_magic'));
  const { wire } = await sampleStream();
  const bad = Buffer.from(wire);
  const f = frameOffsets(bad)[2]!;
  bad[f.offset] = 0x7e;
  fixCrc(bad, f.offset);
  await assert.rejects(
    readAllArtifacts(Readable.from([bad])),
    transferError('bad_frame', (e) => assert.match(e.message, /unknown frame type 0x7e/)),
  );
  await assert.rejects(readAllArtifacts(Readable.from([Buffer.concat([wire, Buffer.from([0])])])), transferError('bad_frame'));
});

test('the writer rejects misuse and a source shorter than announced', async () => {
  const { writer, stream } = FrameWriter.toReadable();
  stream.resume();
  await writer.writeArtifact('a', 'lz4', Buffer.from('abc'));
  await assert.rejects(writer.writeArtifact('a', 'lz4', Buffer.from('x')), /twice/);
  const { writer: w2, stream: s2 } = FrameWriter.toReadable();
  s2.resume();
  await assert.rejects(w2.writeArtifact('b', 'zstd', chunked(Buffer.alloc(10), 3), { rawSize: 11 }), transferError('source'));
  await assert.rejects(w2.finish(), /failed earlier/);
});
