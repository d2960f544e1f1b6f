// CRIU's statistics files (stats-dump, stats-restore), decoded without a protobuf runtime.
//
// Layout (verified on criu 4.2.1, compared with `crit show` in the tests):
//   u32 LE 0x55105940 (IMG_SERVICE; stats files are "service" images, not IMG_COMMON
//   0x54564319, which we also accept), u32 LE 0x57093306 (STATS), then one entry:
//   u32 LE length + protobuf stats_entry { optional dump_stats_entry dump = 1;
//   optional restore_stats_entry restore = 2; }
// CRIU writes stats-dump / stats-restore into its WORK directory (runc --work-path), not
// into the image directory (unless both are the same).
// Times are microseconds. Field numbers are those of CRIU's images/stats.proto.
import { readFileIfExists } from '../util/fs.js';
import { CloudletError } from '../util/errors.js';

export const IMG_COMMON_MAGIC = 0x54564319;
export const IMG_SERVICE_MAGIC = 0x55105940;
export const STATS_MAGIC = 0x57093306;

export interface DumpStats {
  freezingTimeUs: number;
  frozenTimeUs: number;
  memdumpTimeUs: number;
  memwriteTimeUs: number;
  pagesScanned: number;
  pagesSkippedParent: number;
  pagesWritten: number;
  irmapResolveUs: number;
  pagesLazy: number;
  pagePipes: number;
  pagePipeBufs: number;
  shpagesScanned: number;
  shpagesSkippedParent: number;
  shpagesWritten: number;
}

export interface RestoreStats {
  pagesCompared: number;
  pagesSkippedCow: number;
  forkingTimeUs: number;
  restoreTimeUs: number;
  pagesRestored: number;
}

export interface CriuStats {
  dump: DumpStats | null;
  restore: RestoreStats | null;
}

/** A stats file is truncated or not a CRIU stats image. */
export class CriuStatsFormatError extends CloudletError {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super('criu_stats_format', `${file}: ${message}`, { context: { file }, kind: 'invalid-data' });
  }
}

const DUMP_FIELDS: Record<number, keyof DumpStats> = {
  1: 'freezingTimeUs',
  2: 'frozenTimeUs',
  3: 'memdumpTimeUs',
  4: 'memwriteTimeUs',
  5: 'pagesScanned',
  6: 'pagesSkippedParent',
  7: 'pagesWritten',
  8: 'irmapResolveUs',
  9: 'pagesLazy',
  10: 'pagePipes',
  11: 'pagePipeBufs',
  12: 'shpagesScanned',
  13: 'shpagesSkippedParent',
  14: 'shpagesWritten',
};

const RESTORE_FIELDS: Record<number, keyof RestoreStats> = {
  1: 'pagesCompared',
  2: 'pagesSkippedCow',
  3: 'forkingTimeUs',
  4: 'restoreTimeUs',
  5: 'pagesRestored',
};

/** Parses the bytes of a stats-dump or stats-restore file. */
export function parseCriuStats(buf: Buffer, file = 'stats'): CriuStats {
  if (buf.length < 12) throw new CriuStatsFormatError(file, `too short (${buf.length} bytes)`);
  const m0 = buf.readUInt32LE(0);
  if (m0 !== IMG_SERVICE_MAGIC && m0 !== IMG_COMMON_MAGIC) {
    throw new CriuStatsFormatError(file, `bad image magic 0x${m0.toString(16)}`);
  }
  const m1 = buf.readUInt32LE(4);
  if (m1 !== STATS_MAGIC) throw new CriuStatsFormatError(file, `not a stats image (type magic 0x${m1.toString(16)})`);
  const len = buf.readUInt32LE(8);
  if (12 + len > buf.length) throw new CriuStatsFormatError(file, `entry of ${len} bytes overruns the file`);
  const out: CriuStats = { dump: null, restore: null };
  const r = new Reader(buf, 12, 12 + len, file);
  while (!r.done()) {
    const { field, wire } = r.key();
    if (field === 1 && wire === 2) out.dump = decodeMessage(r.sub(), DUMP_FIELDS, emptyDump());
    else if (field === 2 && wire === 2) out.restore = decodeMessage(r.sub(), RESTORE_FIELDS, emptyRestore());
    else r.skip(wire);
  }
  return out;
}

/** Reads and parses a stats file; null when the file does not exist (CRIU did not get that far). */
export async function readCriuStats(path: string): Promise<CriuStats | null> {
  const buf = await readFileIfExists(path);
  return buf === null ? null : parseCriuStats(buf, path);
}

function decodeMessage<T extends object>(r: Reader, fields: Record<number, keyof T>, into: T): T {
  while (!r.done()) {
    const { field, wire } = r.key();
    const name = fields[field];
    if (name !== undefined && wire === 0) (into as Record<keyof T, number>)[name] = r.varint();
    else r.skip(wire);
  }
  return into;
}

function emptyDump(): DumpStats {
  return {
    freezingTimeUs: 0,
    frozenTimeUs: 0,
    memdumpTimeUs: 0,
    memwriteTimeUs: 0,
    pagesScanned: 0,
    pagesSkippedParent: 0,
    pagesWritten: 0,
    irmapResolveUs: 0,
    pagesLazy: 0,
    pagePipes: 0,
    pagePipeBufs: 0,
    shpagesScanned: 0,
    shpagesSkippedParent: 0,
    shpagesWritten: 0,
  };
}

function emptyRestore(): RestoreStats {
  return { pagesCompared: 0, pagesSkippedCow: 0, forkingTimeUs: 0, restoreTimeUs: 0, pagesRestored: 0 };
}

/** Just enough of the protobuf wire format: varints, length-delimited, fixed32/64 skipping. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    private pos: number,
    private readonly end: number,
    private readonly file: string,
  ) {}

  done(): boolean {
    return this.pos >= this.end;
  }

  key(): { field: number; wire: number } {
    const k = this.varint();
    return { field: Math.floor(k / 8), wire: k % 8 };
  }

  /** An unsigned varint up to 2^53 - 1 (counters and microseconds never come near it). */
  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new CriuStatsFormatError(this.file, `truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) throw new CriuStatsFormatError(this.file, `varint too large at byte ${this.pos}`);
        return result;
      }
      mul *= 128;
    }
    throw new CriuStatsFormatError(this.file, `varint longer than 10 bytes at byte ${this.pos}`);
  }

  sub(): Reader {
    const len = this.varint();
    if (this.pos + len > this.end) throw new CriuStatsFormatError(this.file, `field of ${len} bytes overruns its message at byte ${this.pos}`);
    const r = new Reader(this.buf, this.pos, this.pos + len, this.file);
    this.pos += len;
    return r;
  }

  skip(wire: number): void {
    switch (wire) {
      case 0:
        this.varint();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.sub();
        return;
      case 5:
        this.advance(4);
        return;
      default:
        throw new CriuStatsFormatError(this.file, `unsupported wire type ${wire} at byte ${this.pos}`);
    }
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) throw new CriuStatsFormatError(this.file, `truncated field at byte ${this.pos}`);
    this.pos += n;
  }
}
