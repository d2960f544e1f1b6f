// The handoff bench's story as text: what the user did, what the service did, what the
// client saw. Used by `cloudlet bench handoff` and the README's demo.
import type { HandoffBenchResult, HandoffSummary, SessionOutcome, StrategiesResult } from './handoff.js';
import { GAP_SLACK_MS } from './handoff.js';
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

function summary(s: HandoffSummary): string {
  return (
    session('raw TCP session     ', s.tcp) +
    session('HTTP keep-alive     ', s.http) +
    `  client-observed gap ${s.clientGapMs ?? '-'} ms vs downtime ${s.downtimeMs ?? '-'} ms ` +
    `(bound: downtime + ${GAP_SLACK_MS} ms: ${s.gapWithinDowntimePlusSlack ? 'met' : 'NOT met'}); messages lost: ${s.messagesLost}\n`
  );
}

export function handoffReportText(r: HandoffBenchResult): string {
  let out = `links ${Object.entries(r.links).map(([n, l]) => `${n} ${l}`).join(', ')}; ${r.machine.cores} cores, kernel ${r.machine.kernel}\n`;
  if (r.direct) {
    const d = r.direct;
    out += `\nDirect handoff: service ${d.service.container} at ${d.service.address}, provisioned on ${d.service.node} from overlay ${d.service.overlay} (${(d.service.overlayBytes / 1e3).toFixed(1)} kB) in ${d.service.firstRequestMs} ms\n`;
    out += migration(d.migration);
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
      out += `    create ${p.createMs} ms, start ${p.startMs} ms, healthy after ${p.healthyMs} ms (${p.healthChecks} checks), route switch ${x.report.announceMs ?? '-'} ms, ` +
        `${p.drainedConnections ?? '-'} connection(s) of the old instance drained to it for ${p.drainMs ?? '-'} ms, old instance removed in ${p.removeOldMs ?? '-'} ms\n`;
    }
  }
  return out;
}
