// `bench migrate --repeat N`: one workload handed off N times (alternating directions) under
// one client. Which of the client's silences belongs to which handoff, the round trip the
// client had before it, the summaries over the runs and the targets checked on them: pure
// functions over the client's report and the daemons' migration reports. The attribution is
// the handoff bench's (handoff-runs.ts): the same client, the same definitions.
import { round2 } from '../client/clock.js';
import type { ClientReport } from '../client/types.js';
import type { MigrationReport } from '../migration/types.js';
import { GAP_RTT_MARGIN_MS, gapWithinRttOfDowntime, largestGapIn, migrationWindow, rttBefore } from './handoff-runs.js';
import { summarizeRuns, type Summary } from './stats.js';

export interface Target {
  name: string;
  value: number;
  limit: number;
  ok: boolean;
  /** A target counted over runs: how many met it, out of how many (value is then the runs that missed). */
  met?: number;
  runs?: number;
}

export function target(name: string, value: number | null, limit: number): Target {
  return { name, value: value ?? Number.NaN, limit, ok: value !== null && value <= limit };
}

/** One handoff of a repeated workload, as the daemons reported it and the client saw it. */
export interface MigrateRun {
  /** 1-based, in the order they ran. */
  run: number;
  from: string;
  to: string;
  startedAt: string;
  finishedAt: string | null;
  restoreMode: 'lazy' | 'eager' | null;
  downtimeMs: number | null;
  /** The largest silence between the client's replies that overlaps this handoff (start to end, post-copy included). */
  clientGapMs: number | null;
  /** Median client request latency in the second before this handoff started. */
  rttMs: number | null;
  gapMinusDowntimeMs: number | null;
  /** clientGapMs - downtimeMs <= rttMs + GAP_RTT_MARGIN_MS. */
  gapWithinRttOfDowntime: boolean;
  restoreMs: number | null;
  postCopyMs: number | null;
  totalMs: number | null;
  bytesSent: number;
  precopyRounds: number;
  stopReason: string | null;
}

/** Every handoff's run; the client's HTTP session gives the gaps and latencies (it needs its samples). */
export function migrateRuns(client: ClientReport, migrations: readonly MigrationReport[]): MigrateRun[] {
  const samples = client.sessions.http?.samples ?? [];
  return migrations.map((m, i) => {
    const w = migrationWindow(client.startedAt, m);
    const clientGapMs = client.sessions.http ? largestGapIn(samples, w, client.durationMs) : null;
    const rttMs = rttBefore([samples], w.startMs);
    const downtimeMs = m.downtimeMs;
    return {
      run: i + 1,
      from: m.from,
      to: m.to,
      startedAt: m.startedAt,
      finishedAt: m.finishedAt,
      restoreMode: m.restoreMode ?? (m.postCopyMs !== null ? 'lazy' : null),
      downtimeMs,
      clientGapMs,
      rttMs,
      gapMinusDowntimeMs: clientGapMs === null || downtimeMs === null ? null : round2(clientGapMs - downtimeMs),
      gapWithinRttOfDowntime: gapWithinRttOfDowntime({ clientGapMs, downtimeMs, rttMs }),
      restoreMs: m.restoreMs,
      postCopyMs: m.postCopyMs,
      totalMs: m.totalMs,
      bytesSent: m.bytesSent,
      precopyRounds: m.precopyRounds,
      stopReason: m.stopReason,
    };
  });
}

export interface MigrateRunsSummary {
  runs: number;
  downtimeMs: Summary | null;
  clientGapMs: Summary | null;
  gapMinusDowntimeMs: Summary | null;
  rttMs: Summary | null;
  restoreMs: Summary | null;
  postCopyMs: Summary | null;
  totalMs: Summary | null;
  bytesSent: Summary | null;
}

export function summarizeMigrateRuns(runs: readonly MigrateRun[]): MigrateRunsSummary {
  return {
    runs: runs.length,
    downtimeMs: summarizeRuns(runs, (r) => r.downtimeMs),
    clientGapMs: summarizeRuns(runs, (r) => r.clientGapMs),
    gapMinusDowntimeMs: summarizeRuns(runs, (r) => r.gapMinusDowntimeMs),
    rttMs: summarizeRuns(runs, (r) => r.rttMs),
    restoreMs: summarizeRuns(runs, (r) => r.restoreMs),
    postCopyMs: summarizeRuns(runs, (r) => r.postCopyMs),
    totalMs: summarizeRuns(runs, (r) => r.totalMs),
    bytesSent: summarizeRuns(runs, (r) => r.bytesSent),
  };
}

/**
 * The client heard back within one round trip (+ margin) of each handoff's downtime, counted
 * over the runs: value = runs that missed (unmeasured runs miss), met when none did.
 */
export function gapCheckTarget(runs: readonly MigrateRun[]): Target {
  const met = runs.filter((r) => r.gapWithinRttOfDowntime).length;
  const missed = runs.length - met;
  return {
    name: `runs missing clientGapMs - downtimeMs <= rttMs + ${GAP_RTT_MARGIN_MS}`,
    value: missed,
    limit: 0,
    ok: runs.length > 0 && missed === 0,
    met,
    runs: runs.length,
  };
}

/** The restore mode most runs had (the engine floor is measured in it); null without any. */
export function prevailingRestoreMode(runs: readonly Pick<MigrateRun, 'restoreMode'>[]): 'lazy' | 'eager' | null {
  const lazy = runs.filter((r) => r.restoreMode === 'lazy').length;
  const eager = runs.filter((r) => r.restoreMode === 'eager').length;
  if (lazy + eager === 0) return null;
  return lazy > eager ? 'lazy' : 'eager';
}

/**
 * A service address for a bench workload: the highest of `candidates` (the cloudlet's range,
 * ascending) that nothing uses, so that it stays clear of the addresses cloudletd hands out
 * from the bottom of the range. Null when every one is taken.
 */
export function pickFreeAddress(candidates: readonly string[], used: ReadonlySet<string>): string | null {
  for (let i = candidates.length - 1; i >= 0; i--) {
    if (!used.has(candidates[i]!)) return candidates[i]!;
  }
  return null;
}
