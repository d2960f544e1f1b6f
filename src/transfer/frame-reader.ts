// Reads a framed stream (format: frames.ts) from any async iterable of bytes, checking every
// frame's CRC, every artifact's sha256 and sizes, the stream's totals and the limits.
import { createHash, type Hash } from 'node:crypto';
import zlib from 'node:zlib';
import { UsageError } from '../util/errors.js';
import { ByteQueue } from './byte-queue.js';
import { MAX_BLOCK_SIZE, decodeBlock, isCodecName } from './codecs.js';
import { TransferError } from './errors.js';
import {
  END_PAYLOAD,
  EOS_PAYLOAD,
  FLAG_STORED,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameType,
  MAX_CONTROL_FRAME,
  MAX_NAME_BYTES,
  frameTypeName,
  type ArtifactHeader,
  type ArtifactSummary,
  type Meta,
  type StreamSummary,
} from './frames.js';

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

/** The stream so far, for EOS to be checked against. */
interface StreamState {
  names: Set<string>;
  artifacts: number;
  rawTotal: number;
  helloSha: Buffer;
}

/** A DATA block being decoded, with its frame (for errors). */
interface PendingBlock {
  p: Promise<Buffer>;
  f: RawFrame;
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
      throw this.err(
        'truncated',
        `stream ended inside a ${frameTypeName(type)} frame (${this.q.length - FRAME_HEADER_BYTES} of ${length} payload bytes, ${where})`,
        {
          ...ctx,
          have: this.q.length - FRAME_HEADER_BYTES,
        },
      );
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

  private frameErr(
    f: RawFrame,
    kind: ConstructorParameters<typeof TransferError>[0],
    msg: string,
    ctx: Record<string, unknown> = {},
    cause?: unknown,
  ): TransferError {
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

  /** MAGIC, then HELLO: the stream's version and metadata. */
  private async readHello(): Promise<{ helloSha: Buffer; meta: Meta }> {
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
    return { helloSha, meta: meta !== null && typeof meta === 'object' && !Array.isArray(meta) ? (meta as Meta) : {} };
  }

  private async *run(): AsyncGenerator<TransferEvent, void, undefined> {
    const { helloSha, meta } = await this.readHello();
    yield { type: 'hello', meta };
    const stream: StreamState = { names: new Set(), artifacts: 0, rawTotal: 0, helloSha };
    let current: OpenArtifact | null = null;
    const window: PendingBlock[] = [];
    for (;;) {
      const where: string = current ? `inside artifact '${current.header.name}'` : 'between artifacts';
      const f = await this.readFrame(where);
      if (f === null) {
        throw this.err('truncated', `stream ended without END-OF-STREAM (${where}, after ${stream.artifacts} complete artifacts)`, {
          artifact: current?.header.name,
          artifacts: stream.artifacts,
        });
      }
      if (current === null) {
        if (f.type === FrameType.EOS) {
          yield { type: 'eos', summary: this.checkEos(f, stream) };
          return;
        }
        current = this.beginArtifact(f, where, stream.names);
        yield { type: 'begin', artifact: current.header };
        continue;
      }
      const name = current.header.name;
      if (f.type === FrameType.DATA) {
        window.push({ p: this.acceptData(f, current), f });
        while (window.length >= this.concurrency) yield await this.emitBlock(window, current);
        continue;
      }
      if (f.type !== FrameType.END)
        throw this.frameErr(f, 'bad_frame', `expected DATA or END inside artifact '${name}', got ${frameTypeName(f.type)}`, { artifact: name });
      while (window.length > 0) yield await this.emitBlock(window, current);
      const summary = this.endArtifact(f, current);
      stream.artifacts++;
      stream.rawTotal += current.rawBytes;
      current = null;
      yield { type: 'end', summary };
    }
  }

  /** EOS: its totals and HELLO's sha256 must match the stream, and nothing may follow it. */
  private checkEos(f: RawFrame, stream: StreamState): StreamSummary {
    const { artifacts, rawTotal } = stream;
    if (f.payload.length !== EOS_PAYLOAD) throw this.frameErr(f, 'bad_frame', `EOS payload of ${f.payload.length} bytes, expected ${EOS_PAYLOAD}`);
    const n = f.payload.readUInt32BE(0);
    const raw = Number(f.payload.readBigUInt64BE(4));
    const wire = Number(f.payload.readBigUInt64BE(12));
    if (!f.payload.subarray(20, 52).equals(stream.helloSha)) {
      throw this.frameErr(f, 'checksum', 'HELLO does not match the sha256 that EOS gives for it (stream metadata damaged)');
    }
    if (n !== artifacts || raw !== rawTotal || wire !== f.offset) {
      throw this.frameErr(
        f,
        'checksum',
        `EOS totals disagree with the stream: ${n} artifacts/${raw} raw/${wire} wire bytes announced, ${artifacts}/${rawTotal}/${f.offset} received`,
        {
          announced: { artifacts: n, rawBytes: raw, wireBytes: wire },
          received: { artifacts, rawBytes: rawTotal, wireBytes: f.offset },
        },
      );
    }
    if (this.q.length > 0) throw this.err('bad_frame', `${this.q.length} bytes after END-OF-STREAM`);
    return { artifacts, rawBytes: rawTotal, wireBytes: this.offset };
  }

  /** BEGIN: a new artifact with a valid, unused name, a known codec and a size within limits. */
  private beginArtifact(f: RawFrame, where: string, names: Set<string>): OpenArtifact {
    if (f.type !== FrameType.BEGIN) throw this.frameErr(f, 'bad_frame', `expected BEGIN or EOS ${where}, got ${frameTypeName(f.type)}`);
    const j = this.parseJson(f);
    const { name, codec, rawSize } = j;
    if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > MAX_NAME_BYTES) {
      throw this.frameErr(f, 'bad_frame', `BEGIN with an invalid artifact name ${JSON.stringify(name)}`);
    }
    if (names.has(name)) throw this.frameErr(f, 'bad_frame', `artifact '${name}' appears twice`, { artifact: name });
    if (typeof codec !== 'string' || !isCodecName(codec))
      throw this.frameErr(f, 'bad_frame', `artifact '${name}' has unknown codec ${JSON.stringify(codec)}`, { artifact: name });
    if (rawSize !== null && !(typeof rawSize === 'number' && Number.isSafeInteger(rawSize) && rawSize >= 0)) {
      throw this.frameErr(f, 'bad_frame', `artifact '${name}' has an invalid rawSize ${JSON.stringify(rawSize)}`, { artifact: name });
    }
    if (rawSize !== null && rawSize > this.maxArtifact) {
      const named = this.limitNames.artifact ? ` (${this.limitNames.artifact})` : '';
      throw this.frameErr(f, 'oversize', `artifact '${name}' of ${rawSize} bytes exceeds the limit of ${this.maxArtifact} bytes${named}`, {
        artifact: name,
        limit: this.maxArtifact,
      });
    }
    names.add(name);
    const header: ArtifactHeader = { name, codec, rawSize: rawSize ?? null };
    const m = j['meta'];
    if (m !== undefined && m !== null && typeof m === 'object' && !Array.isArray(m)) header.meta = m as Meta;
    return {
      header,
      beginSha: createHash('sha256').update(f.payload).digest(),
      hash: createHash('sha256'),
      rawBytes: 0,
      declaredRaw: 0,
      sent: FRAME_HEADER_BYTES + f.payload.length,
      blocks: 0,
      storedBlocks: 0,
    };
  }

  /** DATA: checked against the limits and the announced size, then decoded (not awaited). */
  private acceptData(f: RawFrame, art: OpenArtifact): Promise<Buffer> {
    const name = art.header.name;
    if (f.payload.length < 4) throw this.frameErr(f, 'bad_frame', `DATA payload of ${f.payload.length} bytes has no length`, { artifact: name });
    const rawLen = f.payload.readUInt32BE(0);
    const stored = (f.flags & FLAG_STORED) !== 0;
    if (rawLen > this.maxBlock) {
      throw this.frameErr(f, 'oversize', `DATA block of ${rawLen} raw bytes exceeds the limit of ${this.maxBlock}`, { artifact: name, rawLen });
    }
    art.declaredRaw += rawLen;
    const cap = Math.min(art.header.rawSize ?? Number.POSITIVE_INFINITY, this.maxArtifact);
    if (art.declaredRaw > cap) {
      throw this.frameErr(
        f,
        art.header.rawSize !== null && art.declaredRaw > art.header.rawSize ? 'checksum' : 'oversize',
        `artifact '${name}' grows to ${art.declaredRaw} raw bytes, more than ${cap}`,
        { artifact: name, rawSize: art.header.rawSize },
      );
    }
    art.sent += FRAME_HEADER_BYTES + f.payload.length;
    art.blocks++;
    if (stored) art.storedBlocks++;
    const p = decodeBlock(art.header.codec, rawLen, stored, f.payload.subarray(4), this.maxBlock);
    p.catch(() => undefined);
    return p;
  }

  /** The oldest block of the window, decoded: hashed and counted into its artifact. */
  private async emitBlock(window: PendingBlock[], art: OpenArtifact): Promise<TransferEvent> {
    const { p, f } = window.shift()!;
    let chunk: Buffer;
    try {
      chunk = await p;
    } catch (e) {
      if (e instanceof TransferError) {
        Object.assign(e.context, { frameIndex: f.index, offset: f.offset, artifact: art.header.name });
        throw e;
      }
      throw this.frameErr(f, 'codec', `DATA block failed to decode: ${(e as Error).message}`, { artifact: art.header.name }, e);
    }
    art.hash.update(chunk);
    art.rawBytes += chunk.length;
    return { type: 'data', name: art.header.name, chunk };
  }

  /** END: the artifact's sha256, sizes and BEGIN digest must match what arrived. */
  private endArtifact(f: RawFrame, art: OpenArtifact): ArtifactSummary {
    const name = art.header.name;
    if (f.payload.length !== END_PAYLOAD)
      throw this.frameErr(f, 'bad_frame', `END payload of ${f.payload.length} bytes, expected ${END_PAYLOAD}`, { artifact: name });
    const sha = f.payload.subarray(0, 32);
    const rawBytes = Number(f.payload.readBigUInt64BE(64));
    const sentBytes = Number(f.payload.readBigUInt64BE(72));
    const digest = art.hash.digest();
    const ctx = { artifact: name, codec: art.header.codec };
    if (!f.payload.subarray(32, 64).equals(art.beginSha)) {
      throw this.frameErr(f, 'checksum', `artifact '${name}': BEGIN does not match the sha256 that END gives for it (name, codec or meta damaged)`, ctx);
    }
    if (rawBytes !== art.rawBytes || (art.header.rawSize !== null && art.header.rawSize !== art.rawBytes)) {
      throw this.frameErr(
        f,
        'checksum',
        `artifact '${name}': ${art.rawBytes} raw bytes received, END says ${rawBytes}, BEGIN said ${art.header.rawSize ?? 'unknown'}`,
        {
          ...ctx,
          received: art.rawBytes,
          announced: rawBytes,
          rawSize: art.header.rawSize,
        },
      );
    }
    if (sentBytes !== art.sent) {
      throw this.frameErr(f, 'checksum', `artifact '${name}': ${art.sent} wire bytes received, END says ${sentBytes}`, {
        ...ctx,
        received: art.sent,
        announced: sentBytes,
      });
    }
    if (!digest.equals(sha)) {
      throw this.frameErr(f, 'checksum', `artifact '${name}': sha256 mismatch (received ${digest.toString('hex')}, END says ${sha.toString('hex')})`, {
        ...ctx,
        expected: sha.toString('hex'),
        actual: digest.toString('hex'),
      });
    }
    return {
      name,
      codec: art.header.codec,
      rawBytes: art.rawBytes,
      sentBytes: art.sent,
      sha256: digest.toString('hex'),
      blocks: art.blocks,
      storedBlocks: art.storedBlocks,
    };
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
