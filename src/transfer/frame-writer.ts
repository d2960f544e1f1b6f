// Writes one round's artifacts as a framed stream (format: frames.ts) into any Writable.
import { createHash } from 'node:crypto';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { UsageError } from '../util/errors.js';
import { ByteQueue } from './byte-queue.js';
import { DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, encodeBlock, isCodecName, type CodecName, type EncodedBlock } from './codecs.js';
import { TransferError } from './errors.js';
import {
  END_PAYLOAD,
  EOS_PAYLOAD,
  FLAG_STORED,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameType,
  MAX_NAME_BYTES,
  frameHeader,
  jsonPayload,
  writeU64,
  type ArtifactHeader,
  type ArtifactSource,
  type ArtifactSummary,
  type Meta,
  type StreamSummary,
} from './frames.js';

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
  writeArtifact(name: string, codec: CodecName, source: ArtifactSource, opts: { rawSize?: number; meta?: Meta } = {}): Promise<ArtifactSummary> {
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

  private async doWriteArtifact(name: string, codec: CodecName, source: ArtifactSource, opts: { rawSize?: number; meta?: Meta }): Promise<ArtifactSummary> {
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
