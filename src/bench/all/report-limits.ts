// The `bench all` report's physical-limit tables (issue 21, item 4; the figures: wire-limit.ts).
import { distinct } from './charts.js';
import { summarize } from '../stats.js';
import type { BenchAllResult, MigrationRow } from './types.js';
import { limitOf } from './wire-limit.js';
import { fmt, sec, table } from './report-format.js';

export const LIMIT_TEXT =
  "The physical limit: the bytes that had to cross (every round's unique changed pages after compression, the sum of sentBytes) take bytes * 8 / bandwidth to send, however pre-copy is decided; beside it the measured total.";

/**
 * Per group: the bytes that had to cross the link (the rounds' sentBytes summed), the time
 * they take at its bandwidth (the physical limit) and the measured total beside it.
 */
export function limitTable(rows: readonly MigrationRow[], plan: BenchAllResult['plan'], keys: (r: MigrationRow) => string[], head: string[]): string {
  const groups = new Map<string, MigrationRow[]>();
  for (const x of rows) {
    const k = JSON.stringify(keys(x));
    groups.set(k, [...(groups.get(k) ?? []), x]);
  }
  const body = [...groups].map(([k, xs]) => {
    const limits = xs.map((x) => limitOf(x, plan));
    return [
      ...(JSON.parse(k) as string[]),
      distinct(limits.map((l) => (l.mbit === null ? '-' : String(l.mbit)))).join(', '),
      fmt(summarize(limits.map((l) => l.bytes / 1e6)), 1),
      fmt(summarize(limits.map((l) => (l.limitMs === null ? Number.NaN : sec(l.limitMs))))),
      fmt(summarize(xs.map((x) => sec(x.totalMs)))),
      fmt(summarize(xs.map((x, i) => (limits[i]!.limitMs ? x.totalMs / limits[i]!.limitMs! : Number.NaN)))),
    ];
  });
  return table([...head, 'link Mbit/s', 'MB to cross', 'limit s (bytes*8/bandwidth)', 'measured total s', 'total / limit'], body);
}
