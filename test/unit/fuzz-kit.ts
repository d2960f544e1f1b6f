// Shared machinery of the fuzz tests (test/unit/fuzz-*.test.ts): a seeded PRNG, byte-level
// mutators (bit flips, random bytes, truncation, deletion, insertion, splices between seeds,
// duplicated ranges, tweaks of known length fields) and a runner that feeds every input to a
// parser, tallies the outcomes and fails on anything but a typed error or on slowness.
//
// Seeds always come from the real producers (FrameWriter, overlay create, criu dump, the
// delta encoder...); the fuzz only damages them. FUZZ_SEED replays a run; FUZZ_CASES changes
// the count (default 10,000 per parser).
import { CloudletError } from '../../src/util/errors.js';

export const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 20261128);
export const FUZZ_CASES = Number(process.env.FUZZ_CASES ?? 10_000);

export type Rnd = (n: number) => number;

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number): Rnd {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

export function randomBytesFrom(rnd: Rnd, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = rnd(256);
  return b;
}

/** A length or count field at `offset`: `bytes` wide, little- or big-endian. */
export interface LengthField {
  offset: number;
  bytes: 2 | 4 | 8;
  le: boolean;
}

const INTERESTING_32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x1000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

function writeField(b: Buffer, f: LengthField, v: bigint): void {
  if (f.offset + f.bytes > b.length) return;
  const mask = (1n << BigInt(f.bytes * 8)) - 1n;
  const x = ((v % (mask + 1n)) + mask + 1n) & mask;
  if (f.bytes === 2) f.le ? b.writeUInt16LE(Number(x), f.offset) : b.writeUInt16BE(Number(x), f.offset);
  else if (f.bytes === 4) f.le ? b.writeUInt32LE(Number(x), f.offset) : b.writeUInt32BE(Number(x), f.offset);
  else f.le ? b.writeBigUInt64LE(x, f.offset) : b.writeBigUInt64BE(x, f.offset);
}

function readField(b: Buffer, f: LengthField): bigint {
  if (f.offset + f.bytes > b.length) return 0n;
  if (f.bytes === 2) return BigInt(f.le ? b.readUInt16LE(f.offset) : b.readUInt16BE(f.offset));
  if (f.bytes === 4) return BigInt(f.le ? b.readUInt32LE(f.offset) : b.readUInt32BE(f.offset));
  return f.le ? b.readBigUInt64LE(f.offset) : b.readBigUInt64BE(f.offset);
}

export interface Mutation {
  buf: Buffer;
  what: string;
}

/**
 * One random mutation of `seed`. `fields` are the seed's known length/count fields (tweaked
 * by one strategy); `others` are further seeds to splice from.
 */
export function mutate(seed: Buffer, rnd: Rnd, opts: { fields?: LengthField[]; others?: Buffer[] } = {}): Mutation {
  const b = Buffer.from(seed);
  const at = () => rnd(Math.max(1, b.length));
  const fields = opts.fields ?? [];
  switch (rnd(fields.length > 0 ? 10 : 8)) {
    case 0: {
      const n = 1 + rnd(4);
      const where: number[] = [];
      for (let i = 0; i < n && b.length > 0; i++) {
        const p = at();
        b[p]! ^= 1 << rnd(8);
        where.push(p);
      }
      return { buf: b, what: `flip bits at ${where.join(',')}` };
    }
    case 1: {
      const n = 1 + rnd(8);
      for (let i = 0; i < n && b.length > 0; i++) b[at()] = [0, 0xff, 0x7f, 0x80, rnd(256)][rnd(5)]!;
      return { buf: b, what: `${n} bytes overwritten` };
    }
    case 2: {
      const p = at();
      return { buf: b.subarray(0, p), what: `truncate at ${p}` };
    }
    case 3: {
      const p = at();
      const n = 1 + rnd(rnd(2) ? 16 : 512);
      return { buf: Buffer.concat([b.subarray(0, p), b.subarray(p + n)]), what: `delete ${n} at ${p}` };
    }
    case 4: {
      const p = at();
      const n = 1 + rnd(64);
      return { buf: Buffer.concat([b.subarray(0, p), randomBytesFrom(rnd, n), b.subarray(p)]), what: `insert ${n} random at ${p}` };
    }
    case 5: {
      // Splice: the head of this seed with the tail of another (or of itself, elsewhere).
      const pool = [seed, ...(opts.others ?? [])];
      const other = pool[rnd(pool.length)]!;
      const p = at();
      const q = rnd(Math.max(1, other.length));
      return { buf: Buffer.concat([b.subarray(0, p), other.subarray(q)]), what: `splice at ${p} with other@${q}` };
    }
    case 6: {
      const p = at();
      const n = 1 + rnd(256);
      const q = at();
      return { buf: Buffer.concat([b.subarray(0, q), b.subarray(p, p + n), b.subarray(q)]), what: `duplicate ${n} from ${p} to ${q}` };
    }
    case 7: {
      // Byte-aligned small integers: where most length fields of these formats live.
      const p = at() & ~3;
      if (p + 4 <= b.length) b.writeUInt32LE(INTERESTING_32[rnd(INTERESTING_32.length)]!, p);
      return { buf: b, what: `u32 at ${p} set` };
    }
    default: {
      const f = fields[rnd(fields.length)]!;
      const old = readField(b, f);
      const choices: bigint[] = [
        0n,
        1n,
        old + 1n,
        old - 1n,
        old * 2n,
        old + 4096n,
        (1n << BigInt(f.bytes * 8)) - 1n,
        BigInt(INTERESTING_32[rnd(INTERESTING_32.length)]!),
        BigInt(rnd(1 << 30)),
      ];
      const v = choices[rnd(choices.length)]!;
      writeField(b, f, v);
      return { buf: b, what: `length field @${f.offset} (${f.bytes}${f.le ? 'LE' : 'BE'}) ${old} -> ${v}` };
    }
  }
}

/** A JSON value an attacker might put anywhere. */
export function junkValue(rnd: Rnd): unknown {
  const pool: (() => unknown)[] = [
    () => null,
    () => true,
    () => -1,
    () => 2 ** 53 + 2,
    () => 1e308,
    () => 0.5,
    () => '',
    () => 'x'.repeat(1 + rnd(3000)),
    () => `sha256:${'0'.repeat(64)}`,
    () => 'zstd',
    () => [],
    () => ({}),
    () => Array.from({ length: rnd(50) }, () => `sha256:${randomBytesFrom(rnd, 32).toString('hex')}`),
    () => JSON.parse('['.repeat(200) + ']'.repeat(200)) as unknown,
    () => ({ __proto__: { polluted: true }, constructor: 'x' }),
  ];
  return pool[rnd(pool.length)]!();
}

/** Structural mutation of a JSON document: delete, replace or add at a random place. */
export function mutateJson(doc: unknown, rnd: Rnd): { value: unknown; what: string } {
  const copy = JSON.parse(JSON.stringify(doc)) as unknown;
  const containers: { parent: Record<string, unknown> | unknown[]; key: string | number; path: string }[] = [];
  const walk = (v: unknown, path: string) => {
    if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        containers.push({ parent: v as Record<string, unknown>, key: Array.isArray(v) ? Number(k) : k, path: `${path}.${k}` });
        walk(x, `${path}.${k}`);
      }
    }
  };
  walk(copy, '$');
  if (containers.length === 0) return { value: junkValue(rnd), what: 'replaced whole' };
  const c = containers[rnd(containers.length)]!;
  const p = c.parent as Record<string | number, unknown>;
  switch (rnd(4)) {
    case 0:
      if (Array.isArray(c.parent)) c.parent.splice(c.key as number, 1);
      else delete p[c.key];
      return { value: copy, what: `deleted ${c.path}` };
    case 1: {
      // Same kind, other value: numbers off by one or huge, strings altered.
      const v = p[c.key];
      p[c.key] =
        typeof v === 'number'
          ? [v + 1, v - 1, -v, v * 1024, 0][rnd(5)]
          : typeof v === 'string'
            ? v.slice(0, rnd(v.length + 1)) + (rnd(2) ? '..' : '')
            : junkValue(rnd);
      return { value: copy, what: `tweaked ${c.path}` };
    }
    case 2:
      if (Array.isArray(c.parent)) c.parent.push(c.parent[rnd(c.parent.length)]);
      else p[`extra${rnd(9)}`] = junkValue(rnd);
      return { value: copy, what: `added next to ${c.path}` };
    default:
      p[c.key] = junkValue(rnd);
      return { value: copy, what: `replaced ${c.path}` };
  }
}

export interface FuzzStats {
  cases: number;
  outcomes: Record<string, number>;
  ms: number;
  maxCaseMs: number;
}

/**
 * Runs `parse` on `cases` inputs made by `gen(i)`. The outcome of a case is 'ok' or the
 * error's code; an error that is not a CloudletError (RangeError, TypeError, ...) fails the
 * test with the case's seed, index and mutation. Async parsers are raced against
 * `caseTimeoutMs`; every case's duration is recorded (a sync parser cannot be interrupted,
 * so its slowness shows in maxCaseMs, which callers bound).
 */
export async function runFuzz(opts: {
  name: string;
  cases: number;
  seed: number;
  gen: (i: number) => { input: Buffer; what: string };
  parse: (input: Buffer) => unknown;
  caseTimeoutMs?: number;
  /** Extra errors to accept as typed (e.g. a library's own error class). */
  typed?: (err: unknown) => string | null;
}): Promise<FuzzStats> {
  const outcomes: Record<string, number> = {};
  const started = performance.now();
  let maxCaseMs = 0;
  const timeoutMs = opts.caseTimeoutMs ?? 5000;
  for (let i = 0; i < opts.cases; i++) {
    const { input, what } = opts.gen(i);
    const t0 = performance.now();
    let outcome: string;
    let timer: NodeJS.Timeout | undefined;
    try {
      const r = opts.parse(input);
      if (r instanceof Promise) {
        const hang = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new HangError(timeoutMs)), timeoutMs);
        });
        await Promise.race([r, hang]);
      }
      outcome = 'ok';
    } catch (err) {
      const extra = opts.typed?.(err) ?? null;
      if (err instanceof CloudletError) outcome = err.code;
      else if (extra !== null) outcome = extra;
      else {
        const kind = err instanceof HangError ? 'hang' : 'untyped error';
        throw new Error(`${opts.name}: ${kind} on case ${i} (FUZZ_SEED=${opts.seed}, ${what}, ${input.length} bytes): ${(err as Error)?.stack ?? String(err)}`);
      }
    } finally {
      clearTimeout(timer);
    }
    const ms = performance.now() - t0;
    if (ms > maxCaseMs) maxCaseMs = ms;
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  return { cases: opts.cases, outcomes, ms: Math.round(performance.now() - started), maxCaseMs: Math.round(maxCaseMs * 10) / 10 };
}

class HangError extends Error {
  constructor(ms: number) {
    super(`no result within ${ms} ms`);
  }
}

/** One line for the test's diagnostics (and docs/results/reliability.md). */
export function describe(name: string, s: FuzzStats, seed: number): string {
  return `${name}: ${s.cases} cases, FUZZ_SEED=${seed}, ${s.ms} ms (slowest case ${s.maxCaseMs} ms), outcomes ${JSON.stringify(s.outcomes)}`;
}
