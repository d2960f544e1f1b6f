// Which codec makes a round's transfer finish first, from numbers measured on the round's
// own data and the link's measured bandwidth.
//
// UNITS: every *Bps here is BYTES per second (compressBps: raw bytes in per second;
// decompressBps: raw bytes out per second; linkBps: wire bytes per second). Links quoted in
// Mbit/s convert with mbitToBytesPerSecond (meter.ts). ratio = wire bytes / raw bytes
// (block and frame headers included; < 1 means the codec shrinks the data).
//
// MODEL. A transfer of N raw bytes is cut into blocks of B bytes (1 MiB) that flow
// through three stages, each working on one block while the next stage works on the
// previous one (FrameWriter/FrameReader pipeline):
//   compress   c = b / compressBps
//   send       s = b * ratio / linkBps
//   decompress d = b / decompressBps
// The time is the first block's trip through every stage plus the remaining bytes at the
// bottleneck stage's rate (for k equal blocks: + (k - 1) * max(c, s, d)):
//   T(N) = (c1 + s1 + d1) + (N - b1) * max(1/compressBps, ratio/linkBps, 1/decompressBps)
//   with b1 = min(N, B) and c1, s1, d1 the stage times of a b1-byte block.
// For large N this is max(N/compressBps, N*ratio/linkBps, N/decompressBps) plus a fill and
// drain tail of about one block. 'none' has infinite codec rates: T = N / linkBps.
// The model assumes one block compressed at a time (conservative: lz4 and gzip blocks do
// run two at a time on libuv's pool, zstd-napi is synchronous) and that the measured rates
// hold while CRIU and the application compete for the same cores.
//
// CHOICE. The codec with the smallest T wins; codecs within `tolerance` (2 %) of the best
// are treated as a tie and the one with the highest compressBps (least CPU) is taken.
import { performance } from 'node:perf_hooks';
import { CODEC_NAMES, DEFAULT_BLOCK_SIZE, decodeBlock, encodeBlock, type CodecName } from './codecs.js';
import { FRAME_HEADER_BYTES } from './frames.js';

export interface CodecMeasurement {
  codec: CodecName;
  /** Raw bytes measured (per repetition). */
  sampleBytes: number;
  /** Wire bytes / raw bytes, DATA frame headers included. */
  ratio: number;
  /** Raw bytes compressed per second (Infinity for 'none'). */
  compressBps: number;
  /** Raw bytes produced by decompression per second (Infinity for 'none'). */
  decompressBps: number;
}

export interface MeasureOptions {
  /** Bytes of the sample actually measured; a larger sample is sampled evenly. Default 4 MiB. */
  maxSampleBytes?: number;
  blockSize?: number;
  /** Repeat each codec until this much time was spent on it (stabler rates). Default 0.05 s. */
  minSeconds?: number;
  /** At most this many repetitions. Default 20. */
  maxRepeats?: number;
}

const DATA_OVERHEAD = FRAME_HEADER_BYTES + 4; // frame header + rawLen

/** Take up to `max` bytes of `buf`: whole if small, else evenly spaced slices of 256 KiB. */
export function sampleOf(buf: Buffer, max: number): Buffer {
  if (buf.length <= max) return buf;
  const slice = Math.min(256 << 10, max);
  const n = Math.floor(max / slice);
  const step = (buf.length - slice) / Math.max(1, n - 1);
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const off = Math.floor(i * step);
    parts.push(buf.subarray(off, off + slice));
  }
  return Buffer.concat(parts);
}

/** Measure ratio and speeds of `codecs` on `sample` exactly as framed transfers use them (blocks). */
export async function measureCodecs(sample: Buffer, codecs: readonly CodecName[] = CODEC_NAMES, opts: MeasureOptions = {}): Promise<CodecMeasurement[]> {
  const data = sampleOf(sample, opts.maxSampleBytes ?? 4 << 20);
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  const minSeconds = opts.minSeconds ?? 0.05;
  const maxRepeats = opts.maxRepeats ?? 20;
  const blocks: Buffer[] = [];
  for (let off = 0; off < data.length; off += blockSize) blocks.push(data.subarray(off, off + blockSize));
  const out: CodecMeasurement[] = [];
  for (const codec of codecs) {
    if (codec === 'none' || data.length === 0) {
      const wire = data.length + blocks.length * DATA_OVERHEAD;
      out.push({
        codec,
        sampleBytes: data.length,
        ratio: data.length === 0 ? 1 : wire / data.length,
        compressBps: Number.POSITIVE_INFINITY,
        decompressBps: Number.POSITIVE_INFINITY,
      });
      continue;
    }
    // Warm-up: first calls allocate contexts and fault in code.
    const warm = await encodeBlock(codec, blocks[0]!.subarray(0, 65536));
    await decodeBlock(codec, warm.rawLen, warm.stored, warm.payload);

    let cSeconds = 0;
    let dSeconds = 0;
    let raw = 0;
    let wire = 0;
    for (let rep = 0; rep < maxRepeats && (rep === 0 || Math.min(cSeconds, dSeconds) < minSeconds); rep++) {
      const encoded = [];
      let t = performance.now();
      for (const b of blocks) encoded.push(await encodeBlock(codec, b));
      cSeconds += (performance.now() - t) / 1000;
      t = performance.now();
      for (const e of encoded) await decodeBlock(codec, e.rawLen, e.stored, e.payload);
      dSeconds += (performance.now() - t) / 1000;
      raw += data.length;
      for (const e of encoded) wire += e.payload.length + DATA_OVERHEAD;
    }
    out.push({
      codec,
      sampleBytes: data.length,
      ratio: wire / raw,
      compressBps: cSeconds > 0 ? raw / cSeconds : Number.POSITIVE_INFINITY,
      decompressBps: dSeconds > 0 ? raw / dSeconds : Number.POSITIVE_INFINITY,
    });
  }
  return out;
}

export interface CodecPrediction {
  codec: CodecName;
  predictedSeconds: number;
  /** The stage that bounds the pipeline. */
  bottleneck: 'compress' | 'link' | 'decompress';
}

export interface CodecDecision {
  codec: CodecName;
  predictedSeconds: number;
  reason: string;
  /** Every candidate's prediction, best first. */
  candidates: CodecPrediction[];
}

export interface ChooseOptions {
  /** Raw bytes to send. Default: the measurements' sample size. */
  bytes?: number;
  blockSize?: number;
  /** Relative difference under which two predictions tie. Default 0.02. */
  tolerance?: number;
}

/** T(N) of the model at the top of this file. */
export function predictSeconds(
  m: Pick<CodecMeasurement, 'ratio' | 'compressBps' | 'decompressBps'>,
  bytes: number,
  linkBps: number,
  blockSize: number = DEFAULT_BLOCK_SIZE,
): number {
  if (bytes <= 0) return 0;
  const b1 = Math.min(bytes, blockSize);
  const perByte = [1 / m.compressBps, m.ratio / linkBps, 1 / m.decompressBps];
  return b1 * (perByte[0]! + perByte[1]! + perByte[2]!) + (bytes - b1) * Math.max(...perByte);
}

function bottleneckOf(m: CodecMeasurement, linkBps: number): CodecPrediction['bottleneck'] {
  const c = 1 / m.compressBps;
  const s = m.ratio / linkBps;
  const d = 1 / m.decompressBps;
  return s >= c && s >= d ? 'link' : c >= d ? 'compress' : 'decompress';
}

const fmtRate = (bps: number): string => (Number.isFinite(bps) ? `${(bps / 1e6).toFixed(1)} MB/s` : 'free');

/** Pick the codec with the smallest predicted time for `opts.bytes` over a link of `linkBps` bytes/s. */
export function chooseCodec(measurements: readonly CodecMeasurement[], linkBps: number, opts: ChooseOptions = {}): CodecDecision {
  if (measurements.length === 0) throw new RangeError('chooseCodec: no measurements');
  if (!(linkBps > 0)) throw new RangeError(`chooseCodec: link rate must be > 0 bytes/s, got ${linkBps}`);
  const bytes = opts.bytes ?? measurements[0]!.sampleBytes;
  const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
  const tolerance = opts.tolerance ?? 0.02;
  const candidates = measurements
    .map((m) => ({ m, p: { codec: m.codec, predictedSeconds: predictSeconds(m, bytes, linkBps, blockSize), bottleneck: bottleneckOf(m, linkBps) } }))
    .sort((a, b) => a.p.predictedSeconds - b.p.predictedSeconds);
  const best = candidates[0]!.p.predictedSeconds;
  const tied = candidates.filter((c) => c.p.predictedSeconds <= best * (1 + tolerance));
  const winner = tied.reduce((a, b) => (b.m.compressBps > a.m.compressBps ? b : a));
  const w = winner.m;
  const others = candidates
    .filter((c) => c !== winner)
    .map((c) => `${c.p.codec} ${c.p.predictedSeconds.toFixed(3)} s`)
    .join(', ');
  const reason =
    `${w.codec}: ratio ${w.ratio.toFixed(3)}, compress ${fmtRate(w.compressBps)}, decompress ${fmtRate(w.decompressBps)}; ` +
    `link ${fmtRate(linkBps)} (${((linkBps * 8) / 1e6).toFixed(1)} Mbit/s); ${(bytes / 1e6).toFixed(1)} MB predicted ` +
    `${winner.p.predictedSeconds.toFixed(3)} s, ${winner.p.bottleneck}-bound` +
    (tied.length > 1
      ? ` (tie within ${tolerance * 100}% with ${tied
          .filter((t) => t !== winner)
          .map((t) => t.p.codec)
          .join(', ')}: least CPU wins)`
      : '') +
    (others ? `; others: ${others}` : '');
  return { codec: w.codec, predictedSeconds: winner.p.predictedSeconds, reason, candidates: candidates.map((c) => c.p) };
}
