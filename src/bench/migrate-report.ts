// Markdown for a `bench migrate` result: what docs/results/migration.md is made of, so the
// page is regenerated from a run rather than edited by hand.
import type { MigrateBenchResult } from './migrate.js';
import { addedByHandoffMs } from './engine-floor.js';
import type { MigrationReport } from '../migration/types.js';

const mb = (b: number) => (b / 1e6).toFixed(2);

function roundsTable(r: MigrationReport): string {
  const head = '| round | capture ms | stall ms | hash ms | pages sent/scanned | MB raw | MB sent | codec | send ms | Mbit/s | dest. ms |\n|---|---|---|---|---|---|---|---|---|---|---|';
  const rows = r.rounds.map(
    (x) =>
      `| ${x.index}${x.final ? ' (final)' : ''} | ${x.dumpMs} | ${x.stallMs} | ${x.hashMs} | ${x.pagesChanged}/${x.pagesScanned} | ${mb(x.rawBytes)} | ${mb(x.sentBytes)} | ${x.codec} | ${x.sendMs} | ${(x.bandwidthBps / 1e6).toFixed(1)} | ${x.applyMs} |`,
  );
  return [head, ...rows].join('\n');
}

export function migrateBenchMarkdown(r: MigrateBenchResult, command: string): string {
  const out: string[] = [];
  out.push(`Measured ${r.date} on this project's machine kind (${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, kernel ${r.machine.kernel}), lab link ${r.link.bandwidth} / ${r.link.latency} one way per link, with:`);
  out.push('', '```', command, '```', '');
  out.push('| scenario | network namespace | total ms | downtime ms | MB sent | pre-copy rounds | stopped by |', '|---|---|---|---|---|---|---|');
  const ns = (m: MigrationReport) => (m.netnsHolder ? `holder (${m.netnsHolderFrom === 'spare' ? "destination's spare" : 'started for it'})` : 'its own');
  for (const s of r.scenarios) {
    out.push(`| ${s.name} | ${ns(s.report)} | ${s.totalMs} | ${s.downtimeMs} | ${mb(s.bytesSent)} | ${s.precopyRounds} | ${s.stopReason} |`);
    if (s.baseline) out.push(`| ${s.name}: ${s.baseline.name} (baseline, same run) | ${ns(s.baseline.report)} | ${s.baseline.totalMs} | ${s.baseline.downtimeMs} | ${mb(s.baseline.bytesSent)} | 0 | - |`);
    const e = s.eagerRestore;
    if (e) out.push(`| ${s.name}: eager restore (same run) | ${ns(e.report)} | ${e.totalMs} | ${e.downtimeMs} | ${mb(e.report.bytesSent)} | ${e.report.precopyRounds} | ${e.report.stopReason} |`);
  }
  out.push('', '| restore at the destination | restore ms | post-copy ms (service already up) |', '|---|---|---|');
  for (const s of r.scenarios) {
    out.push(`| ${s.name}${(s.report.postCopyMs ?? null) !== null ? ' (lazy)' : ''} | ${s.report.restoreMs} | ${s.report.postCopyMs ?? '-'} |`);
    if (s.eagerRestore) out.push(`| ${s.name} (eager, same run) | ${s.eagerRestore.restoreMs} | - |`);
  }
  out.push(
    '',
    '| engine floor (same container, checkpoint + restore in place on one cloudlet, same run) | checkpoint ms | restore ms | floor ms | handoff downtime ms | added by the handoff ms |',
    '|---|---|---|---|---|---|',
  );
  for (const s of r.scenarios) {
    const f = s.engineFloor;
    out.push(`| ${s.name} (on ${f.node}) | ${f.checkpointMs} | ${f.restoreMs} | ${f.floorMs} | ${s.downtimeMs ?? '-'} | ${addedByHandoffMs(s.downtimeMs, f) ?? '-'} |`);
  }
  out.push('', '| target (issue 4) | measured | met |', '|---|---|---|');
  for (const s of r.scenarios) for (const t of s.targets) out.push(`| ${s.name}: ${t.name} | ${Math.round(t.value)} | ${t.ok ? 'yes' : 'no'} |`);
  for (const s of r.scenarios) {
    out.push('', `### ${s.name}: rounds`, '', roundsTable(s.report));
    if (s.baseline) out.push('', `Baseline (${s.baseline.name}):`, '', roundsTable(s.baseline.report));
  }
  return out.join('\n') + '\n';
}
