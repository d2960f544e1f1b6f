// Median and spread of repeated measurements: the report's "median (min-max)", and the
// p95 that repeated handoffs (`--repeat N`) report beside them.
import { percentile } from '../client/stats.js';

export interface Summary {
  n: number;
  median: number;
  /** Nearest-rank 95th percentile (with fewer than 20 values: the largest or next to it). */
  p95: number;
  min: number;
  max: number;
}

export function summarize(values: readonly number[]): Summary | null {
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = Math.floor(xs.length / 2);
  const median = xs.length % 2 === 1 ? xs[mid]! : (xs[mid - 1]! + xs[mid]!) / 2;
  return { n: xs.length, median, p95: percentile(xs, 95), min: xs[0]!, max: xs[xs.length - 1]! };
}

/** The Summary of one figure over repeated runs, each run's value read by `pick` (null: not measured). */
export function summarizeRuns<T>(runs: readonly T[], pick: (run: T) => number | null | undefined): Summary | null {
  return summarize(runs.map(pick).filter((v): v is number => typeof v === 'number'));
}
