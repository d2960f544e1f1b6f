// A framed binary stream for one migration round: named artifacts, each compressed in
// blocks, each with a sha256 of its raw bytes. Transport-agnostic: the writer writes to any
// Writable (TCP socket, HTTP request, file, PassThrough) or hands out a Readable; the reader
// consumes any async iterable of bytes (a Readable: socket, HTTP body, file).
//
// WIRE FORMAT (version 1; all integers big-endian)
//
//   stream   := MAGIC HELLO artifact* EOS
//   MAGIC    := "CLT" 0x01                                   (4 bytes: protocol and version)
//   artifact := BEGIN DATA* END
//   frame    := type u8 | flags u8 | length u32 | crc u32 | payload[length]
//               crc = CRC-32 (zlib's) of the 6 header bytes before it, then the payload:
//               any damage to a frame is caught at that frame, before its payload is used.
//
//   type 0x01 HELLO  payload: UTF-8 JSON {"v":1,"meta":{...}}           (first frame, once)
//   type 0x02 BEGIN  payload: UTF-8 JSON {"name","codec","rawSize"|null,"meta"?}
//                    name: 1..255 bytes, unique in the stream; codec: none|lz4|zstd|gzip
//   type 0x03 DATA   payload: rawLen u32 | block
//                    flags bit0 STORED: block is rawLen raw bytes; otherwise block is one
//                    codec-compressed unit (see codecs.ts) strictly smaller than rawLen.
//                    rawLen <= the reader's maxBlockSize (default 8 MiB, writer uses 1 MiB)
//   type 0x04 END    payload: sha256[32] of the artifact's raw bytes |
//                    sha256[32] of its BEGIN payload | rawBytes u64 |
//                    sentBytes u64 = wire bytes of this artifact's BEGIN and DATA frames
//   type 0x05 EOS    payload: artifacts u32 | rawBytes u64 (all artifacts) |
//                    wireBytes u64 = stream bytes before this frame (MAGIC included) |
//                    sha256[32] of the HELLO payload
//   The CRC catches damage in transit; the sha256s catch what a CRC can miss (or damage
//   done before framing), for the data and for the metadata (names, codecs, meta) alike.
//   Flags other than DATA's STORED must be 0. Control frames (all but DATA) are at most
//   64 KiB. A stream that ends anywhere before the end of EOS is truncated.
//
// The reader yields each artifact's raw bytes as they are decoded, BEFORE its END has been
// checked: a consumer must treat an artifact as valid only once its 'end' event arrived
// (write to a temporary name, rename on 'end'). Any failure throws a TransferError with
// kind, frame index and stream offset in its context; after an error nothing of the
// artifact in progress may be used.
import { createHash, type Hash } from 'node:crypto';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import zlib from 'node:zlib';
import { UsageError } from '../util/errors.js';
import { ByteQueue } from './byte-queue.js';
import {
  DEFAULT_BLOCK_SIZE,
  MAX_BLOCK_SIZE,
  decodeBlock,
  encodeBlock,
  isCodecName,
  type CodecName,
  type EncodedBlock,
} from './codecs.js';
import { TransferError } from './errors.js';

export const FRAME_MAGIC = Buffer.from([0x43, 0x4c, 0x54, 0x01]); // "CLT" v1
export const FRAME_HEADER_BYTES = 10;
export const FrameType = { HELLO: 0x01, BEGIN: 0x02, DATA: 0x03, END: 0x04, EOS: 0x05 } as const;
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];
const TYPE_NAMES: Record<number, string> = { 1: 'HELLO', 2: 'BEGIN', 3: 'DATA', 4: 'END', 5: 'EOS' };
export const FLAG_STORED = 0x01;
/** Largest HELLO/BEGIN/END/EOS payload. */
export const MAX_CONTROL_FRAME = 64 * 1024;
const END_PAYLOAD = 80;
const EOS_PAYLOAD = 52;
const MAX_NAME_BYTES = 255;

export function frameTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `0x${t.toString(16).padStart(2, '0')}`;
}

export type Meta = Record<string, unknown>;

export interface ArtifactHeader {
  name: string;
  codec: CodecName;
  /** Raw size announced by the sender; null when it streamed without knowing it. */
  rawSize: number | null;
  meta?: Meta;
}

export interface ArtifactSummary {
  name: string;
  codec: CodecName;
  rawBytes: number;
  /** Wire bytes of the artifact's BEGIN and DATA frames (headers included). */
  sentBytes: number;
  /** sha256 of the raw bytes, hex. */
  sha256: string;
  blocks: number;
  /** Blocks sent raw because compression would not have shrunk them. */
  storedBlocks: number;
}

export interface StreamSummary {
  artifacts: number;
  rawBytes: number;
  /** All bytes of the stream, EOS included. */
  wireBytes: number;
}

// ---------------------------------------------------------------------------------------
// Frame encoding

function frameHeader(type: number, flags: number, payload: Buffer, prefix?: Buffer): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  const len = payload.length + (prefix?.length ?? 0);
  h.writeUInt8(type, 0);
  h.writeUInt8(flags, 1);
  h.writeUInt32BE(len, 2);
  let crc = zlib.crc32(h.subarray(0, 6));
  if (prefix) crc = zlib.crc32(prefix, crc);
  crc = zlib.crc32(payload, crc);
  h.writeUInt32BE(crc >>> 0, 6);
  return h;
}

function jsonPayload(v: unknown): Buffer {
  const b = Buffer.from(JSON.stringify(v), 'utf8');
  if (b.length > MAX_CONTROL_FRAME) throw new UsageError(`control frame of ${b.length} bytes exceeds ${MAX_CONTROL_FRAME} (meta too large?)`);
  return b;
}

function writeU64(b: Buffer, v: number, off: number): void {
  b.writeBigUInt64BE(BigInt(v), off);
}

async function writeToSink(sink: Writable, bufs: Buffer[]): Promise<void> {
  if (sink.destroyed || sink.writableEnded) {
    throw new TransferError('source', 'the transfer sink is closed', { context: { destroyed: sink.destroyed } });
  }
  let ok = true;
  for (const b of bufs) ok = sink.write(b);
  if (ok) return;
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      sink.off('drain', onDrain);
      sink.off('error', onError);
      sink.off('close', onClose);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(new TransferError('source', `the transfer sink failed: ${err.message}`, { cause: err }));
    };
    const onClose = (): void => {
      cleanup();
      reject(new TransferError('source', 'the transfer sink closed while data was pending'));
    };
    sink.on('drain', onDrain);
    sink.on('error', onError);
    sink.on('close', onClose);
  });
}

export type ArtifactSource = Buffer | Iterable<Buffer | Uint8Array> | AsyncIterable<Buffer | Uint8Array>;

export interface FrameWriterOptions {
  /** Raw bytes per DATA block. Default 1 MiB. */
  blockSize?: number;
  /** Blocks compressed at once, sent in order. Default 2. */
  concurrency?: number;
  /** Stream-level metadata, sent in HELLO (round number, container id...). */
  meta?: Meta;
}

/**
 * Writes one round's artifacts as a framed stream into `sink`. Calls are serialized (a
 * second writeArtifact waits for the first). On any error the stream is unusable: destroy
 * the sink, so the receiver sees a truncated stream rather than a wrong one.
 */
export class FrameWriter {
  private written = 0;
  private rawTotal = 0;
  private artifacts = 0;
  private started = false;
  private helloSha: Buffer = Buffer.alloc(32);
  private finished = false;
  private failed: unknown;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly names = new Set<string>();
  private readonly blockSize: number;
  private readonly concurrency: number;

  constructor(
    private readonly sink: Writable,
    private readonly opts: FrameWriterOptions = {},
  ) {
    this.blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!(Number.isInteger(this.blockSize) && this.blockSize > 0 && this.blockSize <= MAX_BLOCK_SIZE)) {
      throw new UsageError(`block size ${this.blockSize} out of range 1..${MAX_BLOCK_SIZE}`);
    }
    this.concurrency = Math.max(1, opts.concurrency ?? 2);
  }

  /** A writer whose frames are read from the returned Readable (an async iterable too). */
  static toReadable(opts: FrameWriterOptions = {}): { writer: FrameWriter; stream: Readable } {
    const stream = new PassThrough({ highWaterMark: 4 << 20 });
    return { writer: new FrameWriter(stream, opts), stream };
  }

  /** Bytes written to the sink so far (MAGIC and frame headers included). */
  get bytesWritten(): number {
    return this.written;
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      if (this.failed !== undefined) throw new TransferError('source', 'the frame writer failed earlier; the stream is unusable', { cause: this.failed });
      try {
        return await fn();
      } catch (err) {
        this.failed = err;
        throw err;
      }
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async frame(type: number, flags: number, payload: Buffer, prefix?: Buffer): Promise<number> {
    const h = frameHeader(type, flags, payload, prefix);
    const bufs = prefix ? [h, prefix, payload] : [h, payload];
    const n = FRAME_HEADER_BYTES + (prefix?.length ?? 0) + payload.length;
    this.written += n;
    await writeToSink(this.sink, bufs);
    return n;
  }

  private async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.written += FRAME_MAGIC.length;
    await writeToSink(this.sink, [FRAME_MAGIC]);
    const hello = jsonPayload({ v: 1, meta: this.opts.meta ?? {} });
    this.helloSha = createHash('sha256').update(hello).digest();
    await this.frame(FrameType.HELLO, 0, hello);
  }

  /**
   * Send one artifact: BEGIN, its bytes as DATA blocks (compressed `concurrency` at a time
   * while earlier ones are written), END with its sha256. `rawSize` is announced in BEGIN
   * (known for a Buffer) and checked against what the source yields.
   */
  writeArtifact(
    name: string,
    codec: CodecName,
    source: ArtifactSource,
    opts: { rawSize?: number; meta?: Meta } = {},
  ): Promise<ArtifactSummary> {
    // Misuse is refused before anything is written, so it does not spoil the stream.
    try {
      if (this.finished) throw new UsageError('frame writer: artifact after finish()');
      if (!isCodecName(codec)) throw new UsageError(`unknown codec '${String(codec)}'`);
      const nameBytes = Buffer.byteLength(name, 'utf8');
      if (nameBytes === 0 || nameBytes > MAX_NAME_BYTES) throw new UsageError(`artifact name must be 1..${MAX_NAME_BYTES} bytes: '${name}'`);
      if (this.names.has(name)) throw new UsageError(`artifact '${name}' sent twice in one stream`);
    } catch (err) {
      return Promise.reject(err);
    }
    this.names.add(name);
    return this.serialize(() => this.doWriteArtifact(name, codec, source, opts));
  }

  private async doWriteArtifact(
    name: string,
    codec: CodecName,
    source: ArtifactSource,
    opts: { rawSize?: number; meta?: Meta },
  ): Promise<ArtifactSummary> {
    if (this.finished) throw new UsageError('frame writer: artifact after finish()');
    const rawSize = opts.rawSize ?? (Buffer.isBuffer(source) ? source.length : null);
    await this.start();

    const header: ArtifactHeader = { name, codec, rawSize };
    if (opts.meta !== undefined) header.meta = opts.meta;
    const begin = jsonPayload(header);
    const beginSha = createHash('sha256').update(begin).digest();
    let sent = await this.frame(FrameType.BEGIN, 0, begin);

    const hash = createHash('sha256');
    let rawBytes = 0;
    let blocks = 0;
    let storedBlocks = 0;
    const window: Promise<EncodedBlock>[] = [];
    const sendOne = async (): Promise<void> => {
      const b = await window.shift()!;
      const prefix = Buffer.allocUnsafe(4);
      prefix.writeUInt32BE(b.rawLen, 0);
      sent += await this.frame(FrameType.DATA, b.stored ? FLAG_STORED : 0, b.payload, prefix);
      blocks++;
      if (b.stored) storedBlocks++;
    };
    const submit = async (raw: Buffer): Promise<void> => {
      hash.update(raw);
      rawBytes += raw.length;
      const p = encodeBlock(codec, raw);
      p.catch(() => undefined);
      window.push(p);
      while (window.length >= this.concurrency) await sendOne();
    };

    try {
      if (Buffer.isBuffer(source)) {
        for (let off = 0; off < source.length; off += this.blockSize) {
          await submit(source.subarray(off, Math.min(source.length, off + this.blockSize)));
        }
      } else {
        const q = new ByteQueue();
        for await (const chunk of source as AsyncIterable<Buffer | Uint8Array>) {
          q.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          while (q.length >= this.blockSize) await submit(q.take(this.blockSize));
        }
        if (q.length > 0) await submit(q.take(q.length));
      }
      while (window.length > 0) await sendOne();
    } catch (err) {
      if (err instanceof TransferError || err instanceof UsageError) throw err;
      throw new TransferError('source', `artifact '${name}': ${(err as Error).message}`, { context: { name, rawBytes }, cause: err });
    }
    if (rawSize !== null && rawBytes !== rawSize) {
      throw new TransferError('source', `artifact '${name}': source gave ${rawBytes} bytes, ${rawSize} announced`, {
        context: { name, rawBytes, rawSize },
      });
    }

    const digest = hash.digest();
    const end = Buffer.allocUnsafe(END_PAYLOAD);
    digest.copy(end, 0);
    beginSha.copy(end, 32);
    writeU64(end, rawBytes, 64);
    writeU64(end, sent, 72);
    await this.frame(FrameType.END, 0, end);
    this.artifacts++;
    this.rawTotal += rawBytes;
    return { name, codec, rawBytes, sentBytes: sent, sha256: digest.toString('hex'), blocks, storedBlocks };
  }

  /** Write EOS. The sink is ended too unless `endSink` is false (e.g. a socket reused after). */
  finish(opts: { endSink?: boolean } = {}): Promise<StreamSummary> {
    return this.serialize(async () => {
      if (this.finished) throw new UsageError('frame writer: finish() called twice');
      await this.start();
      const p = Buffer.allocUnsafe(EOS_PAYLOAD);
      p.writeUInt32BE(this.artifacts, 0);
      writeU64(p, this.rawTotal, 4);
      writeU64(p, this.written, 12);
      this.helloSha.copy(p, 20);
      await this.frame(FrameType.EOS, 0, p);
      this.finished = true;
      if (opts.endSink ?? true) {
        await new Promise<void>((resolve, reject) => {
          this.sink.once('error', reject);
          this.sink.end(() => {
            this.sink.off('error', reject);
            resolve();
          });
        });
      }
      return { artifacts: this.artifacts, rawBytes: this.rawTotal, wireBytes: this.written };
    });
  }
}

// ---------------------------------------------------------------------------------------
// Reader

export interface FrameReaderOptions {
  /** Largest DATA payload accepted. Default maxBlockSize + 4. */
  maxFrameSize?: number;
  /** Largest raw block accepted (bounds each decompression). Default 8 MiB. */
  maxBlockSize?: number;
  /** Largest raw artifact accepted. Default 64 GiB. */
  maxArtifactBytes?: number;
  /** Largest whole stream accepted, as sent (wire bytes). Default: unbounded. */
  maxStreamBytes?: number;
  /** Names the limits in 'oversize' errors (e.g. the config keys they come from). */
  limitNames?: { stream?: string; artifact?: string };
  /** DATA blocks decompressed at once, yielded in order. Default 2. */
  concurrency?: number;
}

export type TransferEvent =
  | { type: 'hello'; meta: Meta }
  | { type: 'begin'; artifact: ArtifactHeader }
  /** Raw (decompressed) bytes of the current artifact; valid only once its 'end' arrives. */
  | { type: 'data'; name: string; chunk: Buffer }
  | { type: 'end'; summary: ArtifactSummary }
  | { type: 'eos'; summary: StreamSummary };

interface RawFrame {
  type: number;
  flags: number;
  payload: Buffer;
  index: number;
  offset: number;
}

interface OpenArtifact {
  header: ArtifactHeader;
  beginSha: Buffer;
  hash: Hash;
  rawBytes: number;
  declaredRaw: number;
  sent: number;
  blocks: number;
  storedBlocks: number;
}

/**
 * Reads a framed stream; iterate it once: `for await (const ev of new FrameReader(socket))`.
 * Ends after EOS (bytes after EOS already received are an error; the source is not read
 * further). On an error the source's iterator is closed (a Readable is destroyed).
 */
export class FrameReader implements AsyncIterable<TransferEvent> {
  private readonly q = new ByteQueue();
  private offset = 0; // stream bytes consumed
  private frameIndex = 0;
  private readonly maxBlock: number;
  private readonly maxFrame: number;
  private readonly maxArtifact: number;
  private readonly maxStream: number;
  private readonly limitNames: { stream?: string; artifact?: string };
  private readonly concurrency: number;
  private iterated = false;
  private sourceIt: AsyncIterator<unknown> | undefined;

  constructor(
    private readonly source: AsyncIterable<Buffer | Uint8Array | string>,
    opts: FrameReaderOptions = {},
  ) {
    this.maxBlock = opts.maxBlockSize ?? MAX_BLOCK_SIZE;
    this.maxFrame = opts.maxFrameSize ?? this.maxBlock + 4;
    this.maxArtifact = opts.maxArtifactBytes ?? 64 * 2 ** 30;
    this.maxStream = opts.maxStreamBytes ?? Number.POSITIVE_INFINITY;
    this.limitNames = opts.limitNames ?? {};
    this.concurrency = Math.max(1, opts.concurrency ?? 2);
  }

  /** Stream bytes consumed so far. */
  get bytesRead(): number {
    return this.offset;
  }

  private err(kind: ConstructorParameters<typeof TransferError>[0], msg: string, ctx: Record<string, unknown> = {}, cause?: unknown): TransferError {
    return new TransferError(kind, msg, { context: { frameIndex: this.frameIndex, offset: this.offset, ...ctx }, cause });
  }

  /** Ensure n bytes are buffered; false when the source ended first. */
  private async fill(n: number): Promise<boolean> {
    while (this.q.length < n) {
      const r = await this.sourceIt!.next();
      if (r.done) return false;
      const v = r.value as Buffer | Uint8Array | string;
      this.q.push(typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));
      // Checked as bytes arrive: a sender cannot make us buffer past the limit.
      if (this.offset + this.q.length > this.maxStream) {
        const named = this.limitNames.stream ? ` (${this.limitNames.stream})` : '';
        throw this.err('oversize', `stream exceeds the limit of ${this.maxStream} bytes${named}`, { limit: this.maxStream });
      }
    }
    return true;
  }

  private async readFrame(where: string): Promise<RawFrame | null> {
    if (!(await this.fill(FRAME_HEADER_BYTES))) {
      if (this.q.length === 0) return null;
      throw this.err('truncated', `stream ended inside a frame header (${this.q.length} of ${FRAME_HEADER_BYTES} bytes, ${where})`, { have: this.q.length });
    }
    const h = this.q.peek(FRAME_HEADER_BYTES);
    const type = h.readUInt8(0);
    const flags = h.readUInt8(1);
    const length = h.readUInt32BE(2);
    const crc = h.readUInt32BE(6);
    const ctx = { type: frameTypeName(type), flags, length };
    if (type < FrameType.HELLO || type > FrameType.EOS) throw this.err('bad_frame', `unknown frame type ${frameTypeName(type)} (${where})`, ctx);
    const allowedFlags = type === FrameType.DATA ? FLAG_STORED : 0;
    if ((flags & ~allowedFlags) !== 0) throw this.err('bad_frame', `unknown flags 0x${flags.toString(16)} on a ${frameTypeName(type)} frame`, ctx);
    const limit = type === FrameType.DATA ? this.maxFrame : MAX_CONTROL_FRAME;
    if (length > limit) throw this.err('oversize', `${frameTypeName(type)} frame of ${length} bytes exceeds the limit of ${limit}`, { ...ctx, limit });
    if (!(await this.fill(FRAME_HEADER_BYTES + length))) {
      throw this.err('truncated', `stream ended inside a ${frameTypeName(type)} frame (${this.q.length - FRAME_HEADER_BYTES} of ${length} payload bytes, ${where})`, {
        ...ctx,
        have: this.q.length - FRAME_HEADER_BYTES,
      });
    }
    // Consumed before the CRC check: on a mismatch the stream is dead anyway.
    const whole = this.q.take(FRAME_HEADER_BYTES + length);
    const actual = zlib.crc32(whole.subarray(FRAME_HEADER_BYTES), zlib.crc32(whole.subarray(0, 6))) >>> 0;
    if (actual !== crc) {
      throw this.err('crc', `${frameTypeName(type)} frame fails its CRC-32 (corrupted in transit)`, {
        ...ctx,
        expectedCrc: crc,
        actualCrc: actual,
      });
    }
    const frame: RawFrame = { type, flags, payload: whole.subarray(FRAME_HEADER_BYTES), index: this.frameIndex, offset: this.offset };
    this.offset += FRAME_HEADER_BYTES + length;
    this.frameIndex++;
    return frame;
  }

  private parseJson(f: RawFrame): Record<string, unknown> {
    try {
      const v: unknown = JSON.parse(f.payload.toString('utf8'));
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
      return v as Record<string, unknown>;
    } catch (e) {
      throw this.frameErr(f, 'bad_frame', `${frameTypeName(f.type)} payload is not a JSON object: ${(e as Error).message}`);
    }
  }

  private frameErr(f: RawFrame, kind: ConstructorParameters<typeof TransferError>[0], msg: string, ctx: Record<string, unknown> = {}, cause?: unknown): TransferError {
    return new TransferError(kind, msg, { context: { frameIndex: f.index, offset: f.offset, type: frameTypeName(f.type), ...ctx }, cause });
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<TransferEvent, void, undefined> {
    if (this.iterated) throw new UsageError('a FrameReader can be iterated once');
    this.iterated = true;
    this.sourceIt = this.source[Symbol.asyncIterator]();
    let ok = false;
    try {
      yield* this.run();
      ok = true;
    } catch (err) {
      if (err instanceof TransferError) throw err;
      throw this.err('source', `reading the transfer stream failed: ${(err as Error).message}`, {}, err);
    } finally {
      // On error (or a consumer that stopped early) release the source: a socket is destroyed.
      if (!ok) await this.sourceIt.return?.().catch(() => undefined);
    }
  }

  private async *run(): AsyncGenerator<TransferEvent, void, undefined> {
    // MAGIC
    if (!(await this.fill(FRAME_MAGIC.length))) {
      throw this.err('truncated', `stream ended before its preamble (${this.q.length} of ${FRAME_MAGIC.length} bytes)`);
    }
    const magic = this.q.take(FRAME_MAGIC.length);
    if (!magic.equals(FRAME_MAGIC)) {
      throw this.err('bad_magic', `not a Cloudlet transfer stream (preamble ${magic.toString('hex')}, expected ${FRAME_MAGIC.toString('hex')})`);
    }
    this.offset += FRAME_MAGIC.length;

    const hello = await this.readFrame('expecting HELLO');
    if (hello === null) throw this.err('truncated', 'stream ended before HELLO');
    if (hello.type !== FrameType.HELLO) throw this.frameErr(hello, 'bad_frame', `expected HELLO, got ${frameTypeName(hello.type)}`);
    const helloSha = createHash('sha256').update(hello.payload).digest();
    const h = this.parseJson(hello);
    if (h['v'] !== 1) throw this.frameErr(hello, 'bad_frame', `unsupported stream version ${JSON.stringify(h['v'])}`);
    const meta = h['meta'];
    yield { type: 'hello', meta: meta !== null && typeof meta === 'object' && !Array.isArray(meta) ? (meta as Meta) : {} };

    const names = new Set<string>();
    let artifacts = 0;
    let rawTotal = 0;
    let current: OpenArtifact | null = null;
    const window: { p: Promise<Buffer>; f: RawFrame }[] = [];

    const emitOne = async (): Promise<TransferEvent> => {
      const { p, f } = window.shift()!;
      let chunk: Buffer;
      try {
        chunk = await p;
      } catch (e) {
        if (e instanceof TransferError) {
          Object.assign(e.context, { frameIndex: f.index, offset: f.offset, artifact: current!.header.name });
          throw e;
        }
        throw this.frameErr(f, 'codec', `DATA block failed to decode: ${(e as Error).message}`, { artifact: current!.header.name }, e);
      }
      current!.hash.update(chunk);
      current!.rawBytes += chunk.length;
      return { type: 'data', name: current!.header.name, chunk };
    };

    for (;;) {
      const where: string = current ? `inside artifact '${current.header.name}'` : 'between artifacts';
      const f = await this.readFrame(where);
      if (f === null) {
        throw this.err('truncated', `stream ended without END-OF-STREAM (${where}, after ${artifacts} complete artifacts)`, {
          artifact: current?.header.name,
          artifacts,
        });
      }
      if (current === null) {
        if (f.type === FrameType.EOS) {
          if (f.payload.length !== EOS_PAYLOAD) throw this.frameErr(f, 'bad_frame', `EOS payload of ${f.payload.length} bytes, expected ${EOS_PAYLOAD}`);
          const n = f.payload.readUInt32BE(0);
          const raw = Number(f.payload.readBigUInt64BE(4));
          const wire = Number(f.payload.readBigUInt64BE(12));
          if (!f.payload.subarray(20, 52).equals(helloSha)) {
            throw this.frameErr(f, 'checksum', 'HELLO does not match the sha256 that EOS gives for it (stream metadata damaged)');
          }
          if (n !== artifacts || raw !== rawTotal || wire !== f.offset) {
            throw this.frameErr(f, 'checksum', `EOS totals disagree with the stream: ${n} artifacts/${raw} raw/${wire} wire bytes announced, ${artifacts}/${rawTotal}/${f.offset} received`, {
              announced: { artifacts: n, rawBytes: raw, wireBytes: wire },
              received: { artifacts, rawBytes: rawTotal, wireBytes: f.offset },
            });
          }
          if (this.q.length > 0) throw this.err('bad_frame', `${this.q.length} bytes after END-OF-STREAM`);
          yield { type: 'eos', summary: { artifacts, rawBytes: rawTotal, wireBytes: this.offset } };
          return;
        }
        if (f.type !== FrameType.BEGIN) throw this.frameErr(f, 'bad_frame', `expected BEGIN or EOS ${where}, got ${frameTypeName(f.type)}`);
        const j = this.parseJson(f);
        const { name, codec, rawSize } = j;
        if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > MAX_NAME_BYTES) {
          throw this.frameErr(f, 'bad_frame', `BEGIN with an invalid artifact name ${JSON.stringify(name)}`);
        }
        if (names.has(name)) throw this.frameErr(f, 'bad_frame', `artifact '${name}' appears twice`, { artifact: name });
        if (typeof codec !== 'string' || !isCodecName(codec)) throw this.frameErr(f, 'bad_frame', `artifact '${name}' has unknown codec ${JSON.stringify(codec)}`, { artifact: name });
        if (rawSize !== null && !(typeof rawSize === 'number' && Number.isSafeInteger(rawSize) && rawSize >= 0)) {
          throw this.frameErr(f, 'bad_frame', `artifact '${name}' has an invalid rawSize ${JSON.stringify(rawSize)}`, { artifact: name });
        }
        if (rawSize !== null && rawSize > this.maxArtifact) {
          const named = this.limitNames.artifact ? ` (${this.limitNames.artifact})` : '';
          throw this.frameErr(f, 'oversize', `artifact '${name}' of ${rawSize} bytes exceeds the limit of ${this.maxArtifact} bytes${named}`, { artifact: name, limit: this.maxArtifact });
        }
        names.add(name);
        const header: ArtifactHeader = { name, codec, rawSize: rawSize ?? null };
        const m = j['meta'];
        if (m !== undefined && m !== null && typeof m === 'object' && !Array.isArray(m)) header.meta = m as Meta;
        current = { header, beginSha: createHash('sha256').update(f.payload).digest(), hash: createHash('sha256'), rawBytes: 0, declaredRaw: 0, sent: FRAME_HEADER_BYTES + f.payload.length, blocks: 0, storedBlocks: 0 };
        yield { type: 'begin', artifact: header };
        continue;
      }

      const art: OpenArtifact = current;
      const name = art.header.name;
      if (f.type === FrameType.DATA) {
        if (f.payload.length < 4) throw this.frameErr(f, 'bad_frame', `DATA payload of ${f.payload.length} bytes has no length`, { artifact: name });
        const rawLen = f.payload.readUInt32BE(0);
        const stored = (f.flags & FLAG_STORED) !== 0;
        if (rawLen > this.maxBlock) {
          throw this.frameErr(f, 'oversize', `DATA block of ${rawLen} raw bytes exceeds the limit of ${this.maxBlock}`, { artifact: name, rawLen });
        }
        art.declaredRaw += rawLen;
        const cap = Math.min(art.header.rawSize ?? Number.POSITIVE_INFINITY, this.maxArtifact);
        if (art.declaredRaw > cap) {
          throw this.frameErr(f, art.header.rawSize !== null && art.declaredRaw > art.header.rawSize ? 'checksum' : 'oversize',
            `artifact '${name}' grows to ${art.declaredRaw} raw bytes, more than ${cap}`, { artifact: name, rawSize: art.header.rawSize });
        }
        art.sent += FRAME_HEADER_BYTES + f.payload.length;
        art.blocks++;
        if (stored) art.storedBlocks++;
        const p = decodeBlock(art.header.codec, rawLen, stored, f.payload.subarray(4), this.maxBlock);
        p.catch(() => undefined);
        window.push({ p, f });
        while (window.length >= this.concurrency) yield await emitOne();
        continue;
      }
      if (f.type !== FrameType.END) throw this.frameErr(f, 'bad_frame', `expected DATA or END inside artifact '${name}', got ${frameTypeName(f.type)}`, { artifact: name });
      while (window.length > 0) yield await emitOne();
      if (f.payload.length !== END_PAYLOAD) throw this.frameErr(f, 'bad_frame', `END payload of ${f.payload.length} bytes, expected ${END_PAYLOAD}`, { artifact: name });
      const sha = f.payload.subarray(0, 32);
      const rawBytes = Number(f.payload.readBigUInt64BE(64));
      const sentBytes = Number(f.payload.readBigUInt64BE(72));
      const digest = art.hash.digest();
      const ctx = { artifact: name, codec: art.header.codec };
      if (!f.payload.subarray(32, 64).equals(art.beginSha)) {
        throw this.frameErr(f, 'checksum', `artifact '${name}': BEGIN does not match the sha256 that END gives for it (name, codec or meta damaged)`, ctx);
      }
      if (rawBytes !== art.rawBytes || (art.header.rawSize !== null && art.header.rawSize !== art.rawBytes)) {
        throw this.frameErr(f, 'checksum', `artifact '${name}': ${art.rawBytes} raw bytes received, END says ${rawBytes}, BEGIN said ${art.header.rawSize ?? 'unknown'}`, {
          ...ctx,
          received: art.rawBytes,
          announced: rawBytes,
          rawSize: art.header.rawSize,
        });
      }
      if (sentBytes !== art.sent) {
        throw this.frameErr(f, 'checksum', `artifact '${name}': ${art.sent} wire bytes received, END says ${sentBytes}`, { ...ctx, received: art.sent, announced: sentBytes });
      }
      if (!digest.equals(sha)) {
        throw this.frameErr(f, 'checksum', `artifact '${name}': sha256 mismatch (received ${digest.toString('hex')}, END says ${sha.toString('hex')})`, {
          ...ctx,
          expected: sha.toString('hex'),
          actual: digest.toString('hex'),
        });
      }
      artifacts++;
      rawTotal += art.rawBytes;
      current = null;
      yield {
        type: 'end',
        summary: { name, codec: art.header.codec, rawBytes: art.rawBytes, sentBytes: art.sent, sha256: digest.toString('hex'), blocks: art.blocks, storedBlocks: art.storedBlocks },
      };
    }
  }
}

export interface ReceivedArtifact {
  header: ArtifactHeader;
  data: Buffer;
  summary: ArtifactSummary;
}

/** Read a whole stream into memory (small rounds, tests). Only verified artifacts are returned. */
export async function readAllArtifacts(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  opts: FrameReaderOptions = {},
): Promise<{ meta: Meta; artifacts: Map<string, ReceivedArtifact>; summary: StreamSummary }> {
  const out = new Map<string, ReceivedArtifact>();
  let meta: Meta = {};
  let chunks: Buffer[] = [];
  let header: ArtifactHeader | null = null;
  for await (const ev of new FrameReader(source, opts)) {
    switch (ev.type) {
      case 'hello':
        meta = ev.meta;
        break;
      case 'begin':
        header = ev.artifact;
        chunks = [];
        break;
      case 'data':
        chunks.push(ev.chunk);
        break;
      case 'end':
        out.set(ev.summary.name, { header: header!, data: Buffer.concat(chunks), summary: ev.summary });
        chunks = [];
        break;
      case 'eos':
        return { meta, artifacts: out, summary: ev.summary };
    }
  }
  // Unreachable: the reader ends with 'eos' or throws.
  throw new TransferError('truncated', 'stream ended without END-OF-STREAM');
}
