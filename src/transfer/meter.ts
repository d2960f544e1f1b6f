// A byte/throughput meter: a pass-through Transform that counts the bytes flowing through it
// and the time from the first byte to the last one (or to the end of the stream).
//
// Where it sits decides what it measures. Between a FrameWriter and a socket it measures the
// rate at which the socket ACCEPTED bytes: the last few MiB may still sit in kernel buffers
// when the writer finishes, so on a slow link a short send reads optimistic (a 4 MiB socket
// buffer is 6.7 s at 5 Mbit/s). On the receiving side (between the socket and a FrameReader)
// it measures the rate at which bytes ARRIVED, which is the link's real rate: prefer that
// for bandwidth estimates, or end a sender-side reading with markEnd() when the receiver
// acknowledges the round.
//
// Units are explicit in every name: bytesPerSecond (B/s) and bitsPerSecond (bit/s).
import { Transform, type TransformCallback } from 'node:stream';

export interface MeterReading {
  bytes: number;
  /** Seconds from the first byte to the last byte (or to markEnd / the end of the stream). */
  elapsedSeconds: number;
  /**
   * Bytes per second over the interval; 0 before two distinct instants were seen. When timing
   * starts at the first chunk, that chunk's bytes arrived before the interval and are left
   * out of the rate (not of `bytes`).
   */
  bytesPerSecond: number;
  bitsPerSecond: number;
}

export interface MeterOptions {
  /** Clock in seconds (monotonic). Default performance.now() / 1000. Injected in tests. */
  clock?: () => number;
  /** Start timing at construction instead of at the first byte (includes idle time before it). */
  startNow?: boolean;
}

export class ByteMeter extends Transform {
  private count = 0;
  private firstChunkBytes = 0;
  private first: number | undefined;
  private last: number | undefined;
  private endedAt: number | undefined;
  private readonly clock: () => number;

  constructor(opts: MeterOptions = {}) {
    super();
    this.clock = opts.clock ?? (() => performance.now() / 1000);
    if (opts.startNow) this.first = this.clock();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const now = this.clock();
    if (this.first === undefined) {
      this.first = now;
      this.firstChunkBytes = chunk.length;
    }
    this.last = now;
    this.count += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.endedAt ??= this.clock();
    cb();
  }

  get bytes(): number {
    return this.count;
  }

  /** Fix the end of the measured interval now (e.g. when the receiver acknowledged). */
  markEnd(): void {
    this.endedAt = this.clock();
  }

  reading(): MeterReading {
    const r = meterReading(this.count - this.firstChunkBytes, this.first, this.endedAt ?? this.last);
    return { ...r, bytes: this.count };
  }
}

export function meterReading(bytes: number, start: number | undefined, end: number | undefined): MeterReading {
  const elapsed = start === undefined || end === undefined ? 0 : Math.max(0, end - start);
  const bps = elapsed > 0 ? bytes / elapsed : 0;
  return { bytes, elapsedSeconds: elapsed, bytesPerSecond: bps, bitsPerSecond: bps * 8 };
}

/** Mbit/s (as links are quoted) to bytes per second (as codec-choice and meters count). */
export function mbitToBytesPerSecond(mbit: number): number {
  return (mbit * 1e6) / 8;
}
