// Repeated handoffs under one client (`bench handoff --scenario direct --repeat N`): which of
// the client's silences belongs to which migration, the round trip the client had just
// before it, and whether the silence stayed within that round trip of the migration's
// downtime. Pure functions over the client's report and the migrations' reports.
import { round2 } from '../client/clock.js';
import type { ClientReport, RequestSample } from '../client/types.js';
import type { MigrationReport } from '../migration/types.js';
import type { PacketHoldStats } from '../network/packet-hold.js';
import { summarizeRuns, type Summary } from './stats.js';

/**
 * With the destination holding the client's packets through the freeze and letting them
 * through right after the restore, the client hears back one round trip after the downtime;
 * the margin covers the request interval and scheduling on a shared machine.
 */
export const GAP_RTT_MARGIN_MS = 100;

/** How long before a migration the client's request latencies give its round trip. */
export const RTT_SPAN_MS = 1000;

/** A stretch of the client's run, in its own milliseconds since start. */
export interface RunWindow {
  startMs: number;
  endMs: number;
}

/** A migration's start and end (wall clock) on the client's clock (ms since the client started). */
export function migrationWindow(clientStartedAt: string, m: Pick<MigrationReport, 'startedAt' | 'finishedAt'>): RunWindow {
  const t0 = Date.parse(clientStartedAt);
  const start = Date.parse(m.startedAt) - t0;
  // A report without an end (it did not finish) is taken to last until the client stopped.
  const end = m.finishedAt === null ? Number.POSITIVE_INFINITY : Date.parse(m.finishedAt) - t0;
  return { startMs: start, endMs: end };
}

/**
 * The longest silence between consecutive replies (in arrival order) that overlaps the window,
 * or null when the session had no reply around it. A session that fell silent for good is
 * silent until `endMs` (when the client stopped): that silence counts too.
 */
export function largestGapIn(samples: readonly RequestSample[], w: RunWindow, endMs: number): number | null {
  const replies = samples
    .map((s) => s.repliedAtMs)
    .filter((t): t is number => t !== null)
    .sort((a, b) => a - b);
  if (replies.length === 0) return null;
  const marks = [...replies, Math.max(endMs, replies[replies.length - 1]!)];
  let largest: number | null = null;
  for (let i = 1; i < marks.length; i++) {
    const a = marks[i - 1]!;
    const b = marks[i]!;
    if (a < w.endMs && b > w.startMs && (largest === null || b - a > largest)) largest = b - a;
  }
  return largest === null ? null : round2(largest);
}

/** Median latency of the requests sent in the `spanMs` before `beforeMs`, over every session given. */
export function rttBefore(sessions: readonly (readonly RequestSample[])[], beforeMs: number, spanMs = RTT_SPAN_MS): number | null {
  const sent = sessions.flat().filter((s) => s.sentAtMs >= beforeMs - spanMs && s.sentAtMs < beforeMs);
  const m = summarizeRuns(sent, (s) => s.latencyMs)?.median;
  return m === undefined ? null : round2(m);
}

/** The client heard back within one round trip (plus the margin) of the downtime; unmeasured is a miss. */
export function gapWithinRttOfDowntime(x: { clientGapMs: number | null; downtimeMs: number | null; rttMs: number | null }): boolean {
  if (x.clientGapMs === null || x.downtimeMs === null || x.rttMs === null) return false;
  return x.clientGapMs - x.downtimeMs <= x.rttMs + GAP_RTT_MARGIN_MS;
}

/** One migration of a repeated handoff, as the client saw it. */
export interface HandoffRun {
  /** 1-based, in the order they ran. */
  run: number;
  from: string;
  to: string;
  state: MigrationReport['state'];
  startedAt: string;
  finishedAt: string | null;
  downtimeMs: number | null;
  /** The longer of the sessions' largest silences overlapping this migration. */
  clientGapMs: number | null;
  tcpGapMs: number | null;
  httpGapMs: number | null;
  gapMinusDowntimeMs: number | null;
  /** Median client request latency in the second before this migration started. */
  rttMs: number | null;
  /** clientGapMs - downtimeMs <= rttMs + GAP_RTT_MARGIN_MS. */
  gapWithinRttOfDowntime: boolean;
  restoreMs: number | null;
  hold: PacketHoldStats | null;
  bytesSent: number;
  totalMs: number | null;
  precopyRounds: number;
}

/** Every migration's run: gaps attributed by time window, RTT from the second before it. */
export function handoffRuns(client: ClientReport, migrations: readonly MigrationReport[]): HandoffRun[] {
  const tcp = client.sessions.tcp?.samples ?? [];
  const http = client.sessions.http?.samples ?? [];
  const hasTcp = client.sessions.tcp !== undefined;
  const hasHttp = client.sessions.http !== undefined;
  const endMs = client.durationMs;
  return migrations.map((m, i) => {
    const w = migrationWindow(client.startedAt, m);
    const tcpGapMs = hasTcp ? largestGapIn(tcp, w, endMs) : null;
    const httpGapMs = hasHttp ? largestGapIn(http, w, endMs) : null;
    const gaps = [tcpGapMs, httpGapMs].filter((g): g is number => g !== null);
    const clientGapMs = gaps.length ? Math.max(...gaps) : null;
    const rttMs = rttBefore([tcp, http], w.startMs);
    const downtimeMs = m.downtimeMs;
    return {
      run: i + 1,
      from: m.from,
      to: m.to,
      state: m.state,
      startedAt: m.startedAt,
      finishedAt: m.finishedAt,
      downtimeMs,
      clientGapMs,
      tcpGapMs,
      httpGapMs,
      gapMinusDowntimeMs: clientGapMs === null || downtimeMs === null ? null : round2(clientGapMs - downtimeMs),
      rttMs,
      gapWithinRttOfDowntime: gapWithinRttOfDowntime({ clientGapMs, downtimeMs, rttMs }),
      restoreMs: m.restoreMs,
      hold: m.hold ?? null,
      bytesSent: m.bytesSent,
      totalMs: m.totalMs,
      precopyRounds: m.precopyRounds,
    };
  });
}

export interface HandoffRunsSummary {
  runs: number;
  /** Runs that met gapWithinRttOfDowntime, and those that did not (kept in `runs`, never dropped). */
  metCheck: number;
  missedCheck: number;
  marginMs: number;
  /** Requests never answered, over the whole client run (both sessions). */
  messagesLost: number;
  downtimeMs: Summary | null;
  clientGapMs: Summary | null;
  gapMinusDowntimeMs: Summary | null;
  rttMs: Summary | null;
  totalMs: Summary | null;
  restoreMs: Summary | null;
}

export function summarizeHandoffRuns(runs: readonly HandoffRun[], client: ClientReport): HandoffRunsSummary {
  const met = runs.filter((r) => r.gapWithinRttOfDowntime).length;
  return {
    runs: runs.length,
    metCheck: met,
    missedCheck: runs.length - met,
    marginMs: GAP_RTT_MARGIN_MS,
    messagesLost: (client.sessions.tcp?.lost ?? 0) + (client.sessions.http?.lost ?? 0),
    downtimeMs: summarizeRuns(runs, (r) => r.downtimeMs),
    clientGapMs: summarizeRuns(runs, (r) => r.clientGapMs),
    gapMinusDowntimeMs: summarizeRuns(runs, (r) => r.gapMinusDowntimeMs),
    rttMs: summarizeRuns(runs, (r) => r.rttMs),
    totalMs: summarizeRuns(runs, (r) => r.totalMs),
    restoreMs: summarizeRuns(runs, (r) => r.restoreMs),
  };
}
