// Summaries of one session's records: latency percentiles, gaps between consecutive replies,
// and the continuity of the service's `served` counter. Pure functions over plain arrays.
import type { GapRecord, ServedContinuity } from './types.js';
import { round2 } from './clock.js';

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) throw new RangeError('percentile of an empty set');
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function latencyStats(values: readonly number[]): { p50: number; p95: number; max: number; mean: number } | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((s, v) => s + v, 0) / sorted.length;
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), max: sorted[sorted.length - 1]!, mean: round2(mean) };
}

export interface ReplyMark {
  n: number;
  atMs: number;
}

/** Gaps between consecutive replies (in arrival order), longest first. */
export function replyGaps(replies: readonly ReplyMark[], iso: (atMs: number) => string): GapRecord[] {
  const gaps: GapRecord[] = [];
  for (let i = 1; i < replies.length; i++) {
    const a = replies[i - 1]!;
    const b = replies[i]!;
    gaps.push({ ms: round2(b.atMs - a.atMs), startMs: a.atMs, start: iso(a.atMs), afterN: a.n, beforeN: b.n });
  }
  return gaps.sort((x, y) => y.ms - x.ms);
}

/** `served` must go up by exactly one per reply, in arrival order. */
export function servedContinuity(replies: readonly { n: number; served: number }[]): ServedContinuity {
  const out: ServedContinuity = { first: null, last: null, continuous: true, jumps: [], resets: [] };
  for (const r of replies) {
    if (out.last !== null) {
      if (r.served > out.last + 1) out.jumps.push({ n: r.n, from: out.last, to: r.served });
      else if (r.served <= out.last) out.resets.push({ n: r.n, from: out.last, to: r.served });
    } else {
      out.first = r.served;
    }
    out.last = r.served;
  }
  out.continuous = out.jumps.length === 0 && out.resets.length === 0;
  return out;
}
