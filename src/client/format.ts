// Human output of a client report: a summary per session and an ASCII timeline of replies
// over the run (blank columns are gaps), for `cloudlet client` and for benchmarks' logs.
import type { ClientReport, SessionReport } from './types.js';

const s = (ms: number) => `${(ms / 1000).toFixed(3)} s`;

export function formatSummary(r: ClientReport): string {
  const lines: string[] = [];
  lines.push(`target ${r.target}, ${s(r.durationMs)} (stopped by ${r.stoppedBy}), a request every ${r.intervalMs} ms`);
  lines.push(r.readyAtMs === null ? 'never ready (a session did not connect or was not answered)' : `ready after ${r.readyAtMs} ms`);
  for (const x of Object.values(r.sessions)) lines.push('', ...sessionLines(x));
  lines.push('', r.ok ? 'OK: every session kept its connection, nothing lost, served counter continuous' : 'NOT OK: see above');
  return lines.join('\n') + '\n';
}

function sessionLines(x: SessionReport): string[] {
  const out: string[] = [];
  out.push(`${x.kind} ${x.target}:${x.port}  ${x.survived ? 'survived' : 'DID NOT SURVIVE'}`);
  out.push(
    `  sent ${x.sent}, answered ${x.answered}, lost ${x.lost}${x.answeredInGrace ? ` (${x.answeredInGrace} answered in the grace period)` : ''}, errors ${x.errors.length}, reconnects ${x.reconnects}, connections ${x.connections.length}`,
  );
  if (x.latencyMs) out.push(`  latency ms: p50 ${x.latencyMs.p50}, p95 ${x.latencyMs.p95}, max ${x.latencyMs.max}, mean ${x.latencyMs.mean}`);
  if (x.largestGap)
    out.push(
      `  largest gap between replies: ${x.largestGap.ms} ms from ${s(x.largestGap.startMs)} (${x.largestGap.start}), after #${x.largestGap.afterN}, before #${x.largestGap.beforeN}`,
    );
  const c = x.served;
  out.push(
    `  served: ${c.first ?? '-'} .. ${c.last ?? '-'}, ${c.continuous ? 'continuous' : `${c.jumps.length} jump(s), ${c.resets.length} reset(s)`}` +
      (x.instances.length > 1 ? `; instances: ${x.instances.join(', ')}` : x.instances.length === 1 ? `; instance ${x.instances[0]}` : ''),
  );
  for (const j of c.jumps.slice(0, 5)) out.push(`    jump at #${j.n}: ${j.from} -> ${j.to}`);
  for (const j of c.resets.slice(0, 5)) out.push(`    reset at #${j.n}: ${j.from} -> ${j.to}`);
  const q = x.sequence;
  if (q.duplicates.length + q.outOfOrder.length + q.unexpected.length > 0) {
    out.push(
      `  replies: duplicated ${q.duplicates.join(',') || '-'}; out of order ${q.outOfOrder.join(',') || '-'}; never sent ${q.unexpected.join(',') || '-'}`,
    );
  }
  if (x.lostNumbers.length > 0) out.push(`  lost requests: ${x.lostNumbers.join(',')}${x.lost > x.lostNumbers.length ? ', ...' : ''}`);
  for (const e of x.errors.slice(0, 10)) out.push(`  error at ${s(e.atMs)}: ${e.code}: ${e.message}`);
  if (x.errors.length > 10) out.push(`  ... ${x.errors.length - 10} more errors`);
  return out;
}

/**
 * One row per session, `width` columns over the run: '-' the service answered, ' ' a gap
 * between replies longer than the larger of 3 intervals and 50 ms (and before the first or
 * after the last reply), 'x' an error, 'R' a new connection after the first. Needs the samples.
 */
export function formatTimeline(r: ClientReport, width = 100): string {
  const span = Math.max(r.durationMs, 1);
  const threshold = Math.max(3 * r.intervalMs, 50);
  const col = (ms: number) => Math.min(width - 1, Math.max(0, Math.floor((ms / span) * width)));
  const lines: string[] = [];
  for (const x of Object.values(r.sessions)) {
    const row = Array<string>(width).fill(' ');
    const replies = (x.samples ?? []).flatMap((p) => (p.repliedAtMs === null ? [] : [p.repliedAtMs])).sort((a, b) => a - b);
    if (replies.length > 0) {
      for (let c = col(replies[0]!); c <= col(replies[replies.length - 1]!); c++) row[c] = '-';
      for (let i = 1; i < replies.length; i++) {
        if (replies[i]! - replies[i - 1]! < threshold) continue;
        for (let c = col(replies[i - 1]!) + 1; c < col(replies[i]!); c++) row[c] = ' ';
      }
    }
    x.connections.slice(1).forEach((c) => (row[col(c.openedAtMs)] = 'R'));
    for (const e of x.errors) row[col(e.atMs)] = 'x';
    lines.push(`${x.kind.padEnd(5)}|${row.join('')}|`);
  }
  lines.push(`     0${' '.repeat(Math.max(1, width - 8))}${s(span)}`);
  lines.push(`     1 column = ${Math.round(span / width)} ms; '-' answered, ' ' no reply for >= ${threshold} ms, 'x' error, 'R' new connection`);
  for (const x of Object.values(r.sessions)) {
    for (const g of x.topGaps) {
      lines.push(`     ${x.kind} gap ${g.ms} ms from ${s(g.startMs)} (after #${g.afterN}, before #${g.beforeN})`);
    }
  }
  return lines.join('\n') + '\n';
}
