// One round on the wire: the source streams the round's artifacts (page delta, small CRIU
// images, filesystem batches) as a framed stream (transfer/frames.ts: compressed blocks,
// sha256 per artifact) in the body of one HTTP PUT to the destination, which decodes them
// as they arrive. Compression, hashing and sending overlap: blocks are compressed while
// earlier ones are on the wire.
import { Transform, pipeline } from 'node:stream';
import { FrameReader } from '../transfer/frame-reader.js';
import { FrameWriter } from '../transfer/frame-writer.js';
import type { ArtifactSource } from '../transfer/frames.js';
import { TransferError } from '../transfer/errors.js';
import type { CodecName } from '../transfer/codecs.js';
import { chooseCodec, measureCodecs } from '../transfer/codec-choice.js';
import type { Delta } from '../checkpoint/delta-types.js';
import type { PeerTransport } from './peer-transport.js';
import type { CodecChoice, RoundReport } from './types.js';

export interface OutgoingArtifact {
  name: string;
  chunks: () => ArtifactSource;
}

export interface ReceivedArtifact {
  name: string;
  data: Buffer;
}

export interface SentRound<T> {
  response: T;
  rawBytes: number;
  sentBytes: number;
  sendMs: number;
}

export async function sendRound<T>(
  peer: PeerTransport,
  path: string,
  artifacts: readonly OutgoingArtifact[],
  codec: CodecName,
  opts: { corruptByteAt?: number } = {},
): Promise<SentRound<T>> {
  const { writer, stream } = FrameWriter.toReadable();
  let rawBytes = 0;
  const writing = (async () => {
    for (const a of artifacts) rawBytes += (await writer.writeArtifact(a.name, codec, a.chunks())).rawBytes;
    return (await writer.finish({ endSink: true })).wireBytes;
  })().catch((err: unknown) => {
    // A half-written stream must reach the peer as truncated, never as a shorter valid one.
    stream.destroy(err as Error);
    throw err;
  });
  // Fault injection only (corrupt-frame): damage in transit, which the receiver must detect.
  // (pipeline, not pipe: a failed writer's destroy must reach the upload.)
  const body = opts.corruptByteAt === undefined ? stream : pipeline(stream, corruptOneByte(opts.corruptByteAt), (err) => void (err && stream.destroy(err)));
  const [uploaded, sentBytes] = await Promise.all([peer.upload<T>({ path, body, contentType: 'application/octet-stream' }), writing]);
  return { response: uploaded.response, rawBytes, sentBytes, sendMs: uploaded.uploadMs };
}

/** Flips the bits of the byte at `offset` of the stream (a test's damage in transit). */
function corruptOneByte(offset: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (offset >= seen && offset < seen + chunk.length) {
        const copy = Buffer.from(chunk);
        copy[offset - seen] = copy[offset - seen]! ^ 0xff;
        chunk = copy;
      }
      seen += chunk.length;
      done(null, chunk);
    },
  });
}

/** What one round may weigh (DaemonConfig.limits): as sent, and per artifact once decoded. */
export interface RoundLimits {
  roundBytes: number;
  roundArtifactBytes: number;
}

/**
 * Decodes a round's stream; yields each artifact once its sha256 and size are verified.
 * Artifacts are held in memory whole: the limits keep a sender from exhausting it.
 */
export async function* receiveRound(
  body: AsyncIterable<Buffer | Uint8Array | string>,
  limits: RoundLimits = { roundBytes: 4 * 2 ** 30, roundArtifactBytes: 2 ** 32 },
): AsyncGenerator<ReceivedArtifact> {
  let name: string | null = null;
  let chunks: Buffer[] = [];
  const reader = new FrameReader(body, {
    maxStreamBytes: limits.roundBytes,
    maxArtifactBytes: limits.roundArtifactBytes,
    limitNames: { stream: 'limits.roundBytes', artifact: 'limits.roundArtifactBytes' },
  });
  for await (const ev of reader) {
    if (ev.type === 'begin') {
      name = ev.artifact.name;
      chunks = [];
    } else if (ev.type === 'data') {
      chunks.push(ev.chunk);
    } else if (ev.type === 'end') {
      if (name === null) throw new TransferError('bad_frame', 'artifact end without a begin');
      yield { name, data: Buffer.concat(chunks) };
      name = null;
      chunks = [];
    } else if (ev.type === 'eos') {
      return;
    }
  }
}

/**
 * Sample of the round's page data on which codecs are measured (auto choice). The measure
 * is on the round's path before its first byte is sent: with 4 MiB and 50 ms per codec it
 * took 0.9-1.1 s per round on the lab (256 MiB service); 1 MiB and 20 ms keep it near 0.1 s.
 */
const SAMPLE_BYTES = 1 << 20;
const MEASURE_MIN_SECONDS = 0.02;
const SMALL_DELTA_BYTES = 1 << 20;
/** Link speed assumed before the first round has measured one. */
const DEFAULT_LINK_BPS = 100e6;

/**
 * The codec for a round: fixed, or ('auto') the one predicted fastest for this round's own
 * data at the bandwidth the previous round measured.
 */
export async function pickCodec(choice: CodecChoice, delta: Delta, previous: readonly RoundReport[], final: boolean): Promise<CodecName> {
  if (choice !== 'auto') return choice;
  const last = previous[previous.length - 1];
  // The final round is on the downtime path: it keeps the last round's choice (same kind of
  // data, same link) instead of measuring codecs again.
  if (final && last && last.codec !== 'auto') return last.codec as CodecName;
  const pages = delta.pages;
  // Below a megabyte measuring costs more than it saves; zstd (level 1) then: on a busybox
  // final dump (246 KiB: pages and ~30 small images) it wrote 45 KiB in 0.8 ms where lz4
  // wrote 62 KiB in 1.8 ms. A round this small is bound by TCP's slow start on a fresh or
  // idle connection, not by the codec: every 15 KiB less saves a round trip.
  if (pages.length * delta.pageSize < SMALL_DELTA_BYTES) return 'zstd';
  // Evenly spaced pages, so that the sample is not just the first region of memory.
  const n = Math.min(pages.length, SAMPLE_BYTES / delta.pageSize);
  const step = pages.length / n;
  const sample = Buffer.concat(Array.from({ length: n }, (_, i) => pages[Math.floor(i * step)]!.data));
  const linkBps = last && last.bandwidthBps > 0 ? last.bandwidthBps : DEFAULT_LINK_BPS;
  const measured = await measureCodecs(sample, ['none', 'lz4', 'zstd', 'gzip'], { maxSampleBytes: SAMPLE_BYTES, minSeconds: MEASURE_MIN_SECONDS });
  // codec-choice works in bytes per second; round reports carry bits per second.
  return chooseCodec(measured, linkBps / 8).codec;
}
