// The handoff bench's story as text: what the user did, what the service did, what the
// client saw. Used by `cloudlet bench handoff` and the README's demo.
import type { HandoffBenchResult, HandoffSummary, SessionOutcome, StrategiesResult } from './handoff.js';
import { GAP_SLACK_MS } from './handoff.js';
import type { HandoffRun, HandoffRunsSummary } from './handoff-runs.js';
import type { Summary } from './stats.js';
import type { MigrationReport } from '../migration/types.js';

const mb = (b: number) => (b / 1e6).toFixed(2);

function session(name: string, s: SessionOutcome | null): string {
  if (!s) return `  ${name}: not run\n`;
  return (
    `  ${name}: ${s.survived ? 'SURVIVED' : 'BROKEN'} - ${s.answered}/${s.sent} answered, ${s.lost} lost, ` +
    `${s.reconnects} reconnects, ${s.errors} errors, longest gap ${s.largestGapMs ?? '-'} ms, ` +
    `served counter ${s.servedContinuous ? 'continuous (memory moved)' : 'NOT continuous'}\n`
  );
}

function migration(m: MigrationReport): string {
  const rounds = m.rounds
    .map((r) => `    round ${r.index}${r.final ? ' (final)' : ''}: ${r.pagesChanged} pages, ${mb(r.sentBytes)} MB sent (${r.codec}) in ${r.sendMs} ms`)
    .join('\n');
  return (
    `  ${m.container} ${m.from} -> ${m.to}: ${m.state}; total ${m.totalMs} ms, downtime ${m.downtimeMs} ms ` +
    `(restore ${m.restoreMs} ms, then route switch ${m.announceMs ?? '-'} ms), ${mb(m.bytesSent)} MB sent, ` +
    `${m.precopyRounds} pre-copy round(s), stopped by ${m.stopReason}; address ${m.serviceAddress ?? '-'} kept` +
    `${m.netnsHolder ? ` (in network namespace holder ${m.netnsHolder}, ${m.to}'s copy ${m.netnsHolderFrom === 'spare' ? 'was its spare' : 'started before the freeze'})` : ''}\n${rounds}\n`
  );
}

const num = (x: number | null | undefined) => (x === null || x === undefined ? '-' : String(Math.round(x * 10) / 10));

/** One line per migration of the direct scenario: its downtime against the client's gap around it. */
export function runsTable(runs: readonly HandoffRun[]): string {
  const cols: [string, number, (r: HandoffRun) => string][] = [
    ['run', 4, (r) => String(r.run)],
    ['direction', 10, (r) => `${r.from}->${r.to}`],
    ['down_ms', 8, (r) => num(r.downtimeMs)],
    ['gap_ms', 8, (r) => num(r.clientGapMs)],
    ['gap-down', 9, (r) => num(r.gapMinusDowntimeMs)],
    ['rtt_ms', 7, (r) => num(r.rttMs)],
    ['check', 6, (r) => (r.gapWithinRttOfDowntime ? 'met' : 'MISSED')],
    ['restore', 8, (r) => num(r.restoreMs)],
    ['total_ms', 9, (r) => num(r.totalMs)],
    ['held', 5, (r) => (r.hold ? String(r.hold.held) : '-')],
    ['sent_mb', 8, (r) => mb(r.bytesSent)],
    ['rounds', 6, (r) => String(r.precopyRounds)],
  ];
  const line = (cells: string[]) => `  ${cells.map((c, i) => (i < 2 ? c.padEnd(cols[i]![1]) : c.padStart(cols[i]![1]))).join(' ')}\n`;
  return line(cols.map((c) => c[0])) + runs.map((r) => line(cols.map((c) => c[2](r)))).join('');
}

function figure(name: string, s: Summary | null): string {
  if (!s) return `  ${name.padEnd(16)} -\n`;
  return `  ${name.padEnd(16)} median ${num(s.median)}, p95 ${num(s.p95)}, min-max ${num(s.min)}-${num(s.max)} ms (n=${s.n})\n`;
}

/** The per-run table, each figure's median, p95 and range over the runs, and how many runs met the gap check. */
export function runsText(runs: readonly HandoffRun[], s: HandoffRunsSummary): string {
  let out = runsTable(runs);
  if (runs.length > 1) {
    out += figure('downtime', s.downtimeMs);
    out += figure('client gap', s.clientGapMs);
    out += figure('gap - downtime', s.gapMinusDowntimeMs);
    out += figure('rtt (before)', s.rttMs);
    out += figure('restore', s.restoreMs);
    out += figure('total', s.totalMs);
  }
  out += `  client gap within RTT + ${s.marginMs} ms of downtime: ${s.metCheck}/${s.runs} runs (${s.missedCheck} missed); messages lost over the client's run: ${s.messagesLost}\n`;
  return out;
}

function summary(s: HandoffSummary): string {
  return (
    session('raw TCP session     ', s.tcp) +
    session('HTTP keep-alive     ', s.http) +
    `  client-observed gap ${s.clientGapMs ?? '-'} ms vs downtime ${s.downtimeMs ?? '-'} ms ` +
    `(bound: downtime + ${GAP_SLACK_MS} ms: ${s.gapWithinDowntimePlusSlack ? 'met' : 'NOT met'}); messages lost: ${s.messagesLost}\n`
  );
}

export function handoffReportText(r: HandoffBenchResult): string {
  let out = `links ${Object.entries(r.links)
    .map(([n, l]) => `${n} ${l}`)
    .join(', ')}; ${r.machine.cores} cores, kernel ${r.machine.kernel}\n`;
  if (r.direct) {
    const d = r.direct;
    out += `\nDirect handoff: service ${d.service.container} at ${d.service.address}, provisioned on ${d.service.node} from overlay ${d.service.overlay} (${(d.service.overlayBytes / 1e3).toFixed(1)} kB) in ${d.service.firstRequestMs} ms\n`;
    // Reports written before --repeat have one migration and no runs.
    const migrations = d.migrations ?? [d.migration];
    if (migrations.length === 1) out += migration(d.migration);
    else
      out += `  ${migrations.length} live migrations under one client (window ${d.window} per session, HTTP pipelined), alternating directions, ${d.pauseMs} ms apart\n`;
    if (d.runs && d.runSummary) out += runsText(d.runs, d.runSummary);
    out += `  router sends ${d.service.address} to: ${d.routedTo ?? 'nobody'}\n`;
    out += summary(d.summary);
  }
  if (r.mobility) {
    const m = r.mobility;
    out += `\nMobility: the user walks from a's cell to b's; policy: margin ${m.policy.marginMs} ms, dwell ${m.policy.dwellMs} ms, cooldown ${m.policy.cooldownMs} ms\n`;
    out += `  service ${m.service.container} at ${m.service.address}, provisioned on ${m.service.node} from overlay ${m.service.overlay} in ${m.service.firstRequestMs} ms\n`;
    for (const e of m.events) out += `  [${(e.atMs / 1000).toFixed(1).padStart(5)} s] ${e.what}\n`;
    for (const mg of m.migrations) out += migration(mg);
    out += `  moves: ${m.migrations.length}; service ends on ${m.finalNode}, router sends its address to ${m.routedTo ?? 'nobody'}\n`;
    out += `  client request RTT (median): ${m.rttNearStartMs ?? '-'} ms near a at the start, ${m.rttBeforeMoveMs ?? '-'} ms just before the move, ${m.rttNearEndMs ?? '-'} ms near b at the end\n`;
    out += summary(m.summary);
  }
  if (r.strategies) out += strategiesText(r.strategies);
  return out;
}

/** Migrate vs recreate of the same stateless HTTP service, side by side (issue 9). */
export function strategiesText(s: StrategiesResult): string {
  let out = `\nStrategies: a stateless HTTP service (health ${s.health}), a new client connection per request; image on the destination beforehand: ${s.imagePreloaded ? 'yes' : 'no'}\n`;
  out += `  ${'strategy'.padEnd(9)} ${'total_ms'.padStart(8)} ${'downtime'.padStart(8)} ${'gap_ms'.padStart(7)} ${'failed'.padStart(7)} ${'sent_mb'.padStart(8)} ${'conns'.padStart(6)}  old gone  routed to\n`;
  for (const x of s.runs) {
    out +=
      `  ${x.strategy.padEnd(9)} ${String(x.report.totalMs ?? '-').padStart(8)} ${String(x.report.downtimeMs ?? '-').padStart(8)} ${String(x.largestGapMs ?? '-').padStart(7)} ` +
      `${`${x.failed}/${x.sent}`.padStart(7)} ${mb(x.report.bytesSent + (x.report.imageShipped?.bytes ?? 0)).padStart(8)} ${String(x.connections).padStart(6)}  ${(x.oldInstanceGone ? 'yes' : 'NO').padEnd(8)}  ${x.routedTo ?? '-'}\n`;
    out += `    ${x.report.strategyReason ?? ''}\n`;
    if (x.report.recreate) {
      const p = x.report.recreate;
      out +=
        `    create ${p.createMs} ms, start ${p.startMs} ms, healthy after ${p.healthyMs} ms (${p.healthChecks} checks), route switch ${x.report.announceMs ?? '-'} ms, ` +
        `${p.drainedConnections ?? '-'} connection(s) of the old instance drained to it for ${p.drainMs ?? '-'} ms, old instance removed in ${p.removeOldMs ?? '-'} ms\n`;
    }
  }
  return out;
}
