// Codecs for moving bytes between cloudlets: none, lz4, zstd, gzip.
//
// One-shot API (`compress` / `decompress`) produces and accepts each codec's standard format:
//   lz4  - an LZ4 *frame* (lz4-napi, lz4_flex underneath; 4 MiB max block, independent blocks)
//   zstd - a Zstandard frame at level ZSTD_LEVEL (zstd-napi, libzstd), content size in the header
//   gzip - a gzip member (node:zlib, level GZIP_LEVEL)
//   none - the bytes themselves
//
// Block API (`encodeBlock` / `decodeBlock`): what framed transfers send. A block is at most
// a few MiB of raw data compressed on its own, so blocks can be compressed in parallel and
// sent while the next one is compressed (pipelining). A block whose compressed form would
// not be smaller than the raw bytes is sent *stored* (raw), so incompressible data never
// grows. A compressed block is therefore always strictly smaller than its raw length: the
// receiver rejects anything else.
//
// Streaming API (`compressStream` / `decompressStream`): Transforms carrying a sequence of
// blocks (format below) for lz4, zstd and gzip; for `none` they are plain pass-throughs.
//
//   stream := "CLB1" block* end
//   block  := flags u8 (bit0: stored) | rawLen u32 BE | payloadLen u32 BE | payload
//   end    := flags u8 = 0x80 | u32 0 | u32 0
//
// Decompression bombs: every decompression has an output limit known *before* the output
// is allocated: the block's declared raw length (itself capped at maxBlockSize), or for the
// one-shot API the caller's expectedSize or maxSize. lz4 frames are walked block by block
// first (header only, no decoding) to bound their output; zstd decodes into a buffer of
// exactly the allowed size (libzstd refuses to write past it); gzip uses zlib's
// maxOutputLength.
import { Transform, PassThrough, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { promisify } from 'node:util';
import lz4 from 'lz4-napi';
import zstdBinding from 'zstd-napi/binding.js';
import type { CCtx, DCtx } from 'zstd-napi/binding.js';
import { UsageError } from '../util/errors.js';
import { TransferError } from './errors.js';
import { ByteQueue } from './byte-queue.js';

export const CODEC_NAMES = ['none', 'lz4', 'zstd', 'gzip'] as const;
export type CodecName = (typeof CODEC_NAMES)[number];
/** A codec, or 'auto': let codec-choice pick from measurements. */
export type CodecChoice = CodecName | 'auto';

/**
 * zstd level 1, measured (bench-codecs.ts, 1 MiB blocks): on a Node.js heap level 1 compressed
 * ~1.7x faster than level 3 at the same ratio (0.156 vs 0.158); on the node binary ~1.7x
 * faster for 11 % more bytes (0.413 vs 0.371). Decompression is as fast or faster.
 */
export const ZSTD_LEVEL = 1;
export const GZIP_LEVEL = 1;
/** Raw bytes per block in framed transfers and compress streams. */
export const DEFAULT_BLOCK_SIZE = 1 << 20;
/** The largest raw block a receiver accepts (and so the most one block can allocate). */
export const MAX_BLOCK_SIZE = 8 << 20;
/** Output limit of one-shot `decompress` when the caller gives neither size. */
export const DEFAULT_MAX_DECOMPRESSED = 256 << 20;

const gzipAsync = promisify(zlib.gzip);
const gunzipAsync = promisify(zlib.gunzip);

export function isCodecName(name: string): name is CodecName {
  return (CODEC_NAMES as readonly string[]).includes(name);
}

/** The codec called `name`; a UsageError naming the unknown codec and the known ones otherwise. */
export function parseCodec(name: string): CodecName {
  if (isCodecName(name)) return name;
  throw new UsageError(`unknown codec '${name}' (known: ${CODEC_NAMES.join(', ')})`, {
    context: { codec: name, known: [...CODEC_NAMES] },
  });
}

/** Like parseCodec, also accepting 'auto'. */
export function parseCodecChoice(name: string): CodecChoice {
  if (name === 'auto') return 'auto';
  if (isCodecName(name)) return name;
  throw new UsageError(`unknown codec '${name}' (known: auto, ${CODEC_NAMES.join(', ')})`, {
    context: { codec: name, known: ['auto', ...CODEC_NAMES] },
  });
}

// ---------------------------------------------------------------------------------------
// zstd through the native binding: contexts reused (the high-level API re-applies
// parameters on every call), output bounded by the destination buffer.

let cctx: CCtx | undefined;
let dctx: DCtx | undefined;

function zstdCompressSync(buf: Uint8Array, level: number): Buffer {
  cctx ??= new zstdBinding.CCtx();
  const dst = Buffer.allocUnsafe(zstdBinding.compressBound(buf.length));
  const n = cctx.compress(dst, buf, level);
  // Do not pin a worst-case-sized slab for a small result.
  return n < dst.length / 2 ? Buffer.from(dst.subarray(0, n)) : dst.subarray(0, n);
}

function zstdDecompressSync(buf: Buffer, expectedSize: number | undefined, maxSize: number): Buffer {
  dctx ??= new zstdBinding.DCtx();
  if (expectedSize !== undefined) {
    const dst = Buffer.allocUnsafe(expectedSize);
    // libzstd fails ("Destination buffer is too small") rather than write past dst.
    const n = dctx.decompress(dst, buf);
    if (n !== expectedSize) throw new Error(`decompressed ${n} bytes, expected ${expectedSize}`);
    return dst;
  }
  let declared: number | null = null;
  try {
    declared = zstdBinding.getFrameContentSize(buf);
  } catch {
    declared = null;
  }
  if (declared !== null && declared <= maxSize) {
    // The header's size is only a claim: decode into exactly that much, no more.
    const dst = Buffer.allocUnsafe(declared);
    const n = dctx.decompress(dst, buf);
    return n === declared ? dst : dst.subarray(0, n);
  }
  if (declared !== null) throw new BombError(declared, maxSize);
  // Unknown content size: stream it out, counting.
  const out: Buffer[] = [];
  let total = 0;
  let src = buf;
  const stream = new zstdBinding.DCtx();
  for (;;) {
    const chunk = Buffer.allocUnsafe(128 * 1024);
    const [ret, produced, consumed] = stream.decompressStream(chunk, src);
    total += produced;
    if (total > maxSize) throw new BombError(total, maxSize);
    if (produced > 0) out.push(chunk.subarray(0, produced));
    src = src.subarray(consumed);
    if (ret === 0 && src.length === 0) break;
    if (produced === 0 && consumed === 0) throw new Error('zstd: truncated or corrupt frame');
  }
  return Buffer.concat(out, total);
}

class BombError extends Error {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(`decompressed size ${size} exceeds the limit of ${limit} bytes`);
  }
}

// ---------------------------------------------------------------------------------------
// lz4 frames: walk the block headers to bound the output before decoding anything.

const LZ4_MAGIC = 0x184d2204;
const LZ4_BLOCK_MAX = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

/** Upper bound of an LZ4 frame's decompressed size; throws on a malformed frame layout. */
export function lz4FrameBound(buf: Buffer): number {
  if (buf.length < 7 || buf.readUInt32LE(0) !== LZ4_MAGIC) throw new Error('lz4: not an LZ4 frame (bad magic)');
  const flg = buf[4]!;
  const bd = buf[5]!;
  if (flg >> 6 !== 1) throw new Error('lz4: unsupported frame version');
  if ((flg & 0x02) !== 0 || (bd & 0x8f) !== 0) throw new Error('lz4: reserved bits set');
  const blockMax = LZ4_BLOCK_MAX[(bd >> 4) & 7]!;
  if (blockMax === 0) throw new Error('lz4: invalid block max size');
  const blockChecksum = (flg & 0x10) !== 0;
  const hasContentSize = (flg & 0x08) !== 0;
  const contentChecksum = (flg & 0x04) !== 0;
  const hasDictId = (flg & 0x01) !== 0;
  let pos = 6 + (hasContentSize ? 8 : 0) + (hasDictId ? 4 : 0) + 1; // + header checksum byte
  let contentSize = Number.POSITIVE_INFINITY;
  if (hasContentSize) {
    if (buf.length < 14) throw new Error('lz4: truncated frame header');
    contentSize = Number(buf.readBigUInt64LE(6));
  }
  let blocks = 0;
  for (;;) {
    if (pos + 4 > buf.length) throw new Error('lz4: truncated frame (no end mark)');
    const word = buf.readUInt32LE(pos);
    pos += 4;
    if (word === 0) break; // end mark
    const size = word & 0x7fffffff;
    if (size > blockMax) throw new Error('lz4: block larger than the frame block size');
    pos += size + (blockChecksum ? 4 : 0);
    blocks++;
  }
  pos += contentChecksum ? 4 : 0;
  if (pos !== buf.length) throw new Error(`lz4: frame ends at ${pos} of ${buf.length} bytes (truncated or trailing data)`);
  return Math.min(contentSize, blocks * blockMax);
}

// ---------------------------------------------------------------------------------------
// One-shot API

/** Compress `buf` with `codec` into that codec's standard format. */
export async function compress(codec: CodecName, buf: Buffer): Promise<Buffer> {
  switch (codec) {
    case 'none':
      return buf;
    case 'lz4':
      return lz4.compressFrame(buf);
    case 'zstd':
      return zstdCompressSync(buf, ZSTD_LEVEL);
    case 'gzip':
      return gzipAsync(buf, { level: GZIP_LEVEL });
  }
}

/**
 * Decompress `buf`. With `expectedSize` the output must be exactly that long (and nothing
 * larger is ever allocated); without it the output may not exceed `maxSize`. Damaged input
 * and oversize output throw a TransferError (kind 'codec' or 'bomb').
 */
export async function decompress(codec: CodecName, buf: Buffer, expectedSize?: number, maxSize: number = DEFAULT_MAX_DECOMPRESSED): Promise<Buffer> {
  const limit = expectedSize ?? maxSize;
  let out: Buffer;
  try {
    switch (codec) {
      case 'none':
        if (buf.length > limit) throw new BombError(buf.length, limit);
        out = buf;
        break;
      case 'lz4': {
        const bound = lz4FrameBound(buf);
        // A valid frame of N bytes has ceil(N / blockMax) blocks: its bound is < N + blockMax.
        const slack = expectedSize === undefined ? 0 : 4 << 20;
        if (bound > limit + slack) throw new BombError(bound, limit);
        out = await lz4.decompressFrame(buf);
        break;
      }
      case 'zstd':
        out = zstdDecompressSync(buf, expectedSize, maxSize);
        break;
      case 'gzip':
        out = await gunzipAsync(buf, { maxOutputLength: Math.max(1, limit) });
        break;
    }
  } catch (err) {
    if (err instanceof TransferError) throw err;
    if (err instanceof BombError || (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      throw new TransferError('bomb', `${codec}: ${(err as Error).message}`, {
        context: { codec, compressedBytes: buf.length, limit },
        cause: err,
      });
    }
    throw new TransferError('codec', `${codec}: cannot decompress ${buf.length} bytes: ${(err as Error).message}`, {
      context: { codec, compressedBytes: buf.length, expectedSize },
      cause: err,
    });
  }
  if (expectedSize !== undefined && out.length !== expectedSize) {
    throw new TransferError('codec', `${codec}: decompressed to ${out.length} bytes, expected ${expectedSize}`, {
      context: { codec, compressedBytes: buf.length, expectedSize, actual: out.length },
    });
  }
  if (out.length > limit) {
    throw new TransferError('bomb', `${codec}: decompressed size ${out.length} exceeds the limit of ${limit} bytes`, {
      context: { codec, compressedBytes: buf.length, limit },
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Block API

export interface EncodedBlock {
  rawLen: number;
  /** true: payload is the raw bytes (compression would not have made it smaller). */
  stored: boolean;
  payload: Buffer;
}

export async function encodeBlock(codec: CodecName, raw: Buffer): Promise<EncodedBlock> {
  if (codec === 'none' || raw.length === 0) return { rawLen: raw.length, stored: true, payload: raw };
  const c = await compress(codec, raw);
  if (c.length >= raw.length) return { rawLen: raw.length, stored: true, payload: raw };
  return { rawLen: raw.length, stored: false, payload: c };
}

/** Decode one block; its size rules are checked here, so callers can trust rawLen. */
export async function decodeBlock(codec: CodecName, rawLen: number, stored: boolean, payload: Buffer, maxBlockSize: number = MAX_BLOCK_SIZE): Promise<Buffer> {
  if (rawLen > maxBlockSize) {
    throw new TransferError('oversize', `block of ${rawLen} raw bytes exceeds the limit of ${maxBlockSize}`, {
      context: { codec, rawLen, maxBlockSize },
    });
  }
  if (stored || codec === 'none') {
    if (payload.length !== rawLen) {
      throw new TransferError('codec', `stored block holds ${payload.length} bytes, its header says ${rawLen}`, {
        context: { codec, rawLen, payloadBytes: payload.length },
      });
    }
    return payload;
  }
  if (payload.length >= rawLen) {
    throw new TransferError('codec', `compressed block of ${payload.length} bytes is not smaller than its ${rawLen} raw bytes`, {
      context: { codec, rawLen, payloadBytes: payload.length },
    });
  }
  return decompress(codec, payload, rawLen);
}

// ---------------------------------------------------------------------------------------
// Streaming API

export const STREAM_MAGIC = Buffer.from('CLB1', 'latin1');
const BLOCK_HEADER = 9;
const FLAG_STORED = 0x01;
const FLAG_END = 0x80;

export interface StreamOptions {
  /** Raw bytes per block (compress side). Default DEFAULT_BLOCK_SIZE. */
  blockSize?: number;
  /** Blocks (de)compressed at once; order is kept. Default 2 (lz4 and gzip run on libuv's pool). */
  concurrency?: number;
  /** Largest raw block accepted (decompress side). Default MAX_BLOCK_SIZE. */
  maxBlockSize?: number;
  /** Largest total output accepted (decompress side). Default unlimited. */
  maxOutputBytes?: number;
}

/** Keeps up to `concurrency` promises in flight and pushes their results in order. */
class Ordered {
  private readonly pending: Promise<Buffer[]>[] = [];
  constructor(
    private readonly concurrency: number,
    private readonly emit: (bufs: Buffer[]) => void,
  ) {}

  async add(p: Promise<Buffer[]>): Promise<void> {
    p.catch(() => undefined); // observed when its turn comes; never an unhandled rejection
    this.pending.push(p);
    while (this.pending.length >= this.concurrency) this.emit(await this.pending.shift()!);
  }

  async drain(): Promise<void> {
    while (this.pending.length > 0) this.emit(await this.pending.shift()!);
  }
}

function blockHeader(flags: number, rawLen: number, payloadLen: number): Buffer {
  const h = Buffer.allocUnsafe(BLOCK_HEADER);
  h.writeUInt8(flags, 0);
  h.writeUInt32BE(rawLen, 1);
  h.writeUInt32BE(payloadLen, 5);
  return h;
}

/** A Transform compressing its input as a block stream (see the format at the top). */
export function compressStream(codec: CodecName, opts: StreamOptions = {}): Transform {
  if (codec === 'none') return new PassThrough();
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!(blockSize > 0 && blockSize <= MAX_BLOCK_SIZE)) {
    throw new UsageError(`block size ${blockSize} out of range 1..${MAX_BLOCK_SIZE}`);
  }
  const input = new ByteQueue();
  let ordered: Ordered;
  const t = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      input.push(chunk);
      void (async () => {
        while (input.length >= blockSize) await ordered.add(encode(input.take(blockSize)));
      })().then(() => cb(), cb);
    },
    flush(cb: TransformCallback) {
      void (async () => {
        if (input.length > 0) await ordered.add(encode(input.take(input.length)));
        await ordered.drain();
        t.push(blockHeader(FLAG_END, 0, 0));
      })().then(() => cb(), cb);
    },
  });
  ordered = new Ordered(Math.max(1, opts.concurrency ?? 2), (bufs) => {
    for (const b of bufs) t.push(b);
  });
  const encode = async (raw: Buffer): Promise<Buffer[]> => {
    const b = await encodeBlock(codec, raw);
    return [blockHeader(b.stored ? FLAG_STORED : 0, b.rawLen, b.payload.length), b.payload];
  };
  t.push(STREAM_MAGIC);
  return t;
}

/** The inverse of compressStream; damaged, truncated or oversize input fails with a TransferError. */
export function decompressStream(codec: CodecName, opts: StreamOptions = {}): Transform {
  if (codec === 'none') return new PassThrough();
  const maxBlock = opts.maxBlockSize ?? MAX_BLOCK_SIZE;
  const maxOut = opts.maxOutputBytes ?? Number.POSITIVE_INFINITY;
  const input = new ByteQueue();
  let offset = 0; // input bytes consumed
  let declaredOut = 0;
  let sawMagic = false;
  let ended = false;
  let ordered: Ordered;
  const parse = async (): Promise<void> => {
    if (!sawMagic) {
      if (input.length < STREAM_MAGIC.length) return;
      const m = input.take(STREAM_MAGIC.length);
      if (!m.equals(STREAM_MAGIC)) {
        throw new TransferError('bad_magic', `not a ${codec} block stream (bad magic)`, { context: { codec, offset: 0 } });
      }
      offset += m.length;
      sawMagic = true;
    }
    while (!ended && input.length >= BLOCK_HEADER) {
      const h = input.peek(BLOCK_HEADER);
      const flags = h.readUInt8(0);
      const rawLen = h.readUInt32BE(1);
      const payloadLen = h.readUInt32BE(5);
      const ctx = { codec, offset, flags, rawLen, payloadLen };
      if (flags === FLAG_END) {
        if (rawLen !== 0 || payloadLen !== 0) throw new TransferError('bad_frame', 'malformed end block', { context: ctx });
        input.take(BLOCK_HEADER);
        offset += BLOCK_HEADER;
        ended = true;
        break;
      }
      if ((flags & ~FLAG_STORED) !== 0) throw new TransferError('bad_frame', `unknown block flags 0x${flags.toString(16)}`, { context: ctx });
      if (rawLen > maxBlock || payloadLen > maxBlock) {
        throw new TransferError('oversize', `block of ${Math.max(rawLen, payloadLen)} bytes exceeds the limit of ${maxBlock}`, { context: ctx });
      }
      declaredOut += rawLen;
      if (declaredOut > maxOut) throw new TransferError('bomb', `output would exceed the limit of ${maxOut} bytes`, { context: ctx });
      if (input.length < BLOCK_HEADER + payloadLen) return;
      input.take(BLOCK_HEADER);
      const payload = input.take(payloadLen);
      offset += BLOCK_HEADER + payloadLen;
      await ordered.add(
        decodeBlock(codec, rawLen, (flags & FLAG_STORED) !== 0, payload, maxBlock).then(
          (b) => [b],
          (err: unknown) => {
            if (err instanceof TransferError) Object.assign(err.context, { offset: ctx.offset });
            throw err;
          },
        ),
      );
    }
    if (ended && input.length > 0) {
      throw new TransferError('bad_frame', `${input.length} bytes after the end block`, { context: { codec, offset } });
    }
  };
  const t = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      input.push(chunk);
      parse().then(() => cb(), cb);
    },
    flush(cb: TransformCallback) {
      void (async () => {
        await ordered.drain();
        if (!ended) {
          throw new TransferError('truncated', `${codec} block stream ended without its end block`, {
            context: { codec, offset, pendingBytes: input.length },
          });
        }
      })().then(() => cb(), cb);
    },
  });
  ordered = new Ordered(Math.max(1, opts.concurrency ?? 2), (bufs) => {
    for (const b of bufs) t.push(b);
  });
  return t;
}
