// Markdown for a `bench migrate` result: what docs/results/migration.md is made of, so the
// page is regenerated from a run rather than edited by hand.
import type { MigrateBenchResult, ScenarioResult } from './migrate.js';
import type { PageCacheBench } from './migrate-cache.js';
import { addedByHandoffMs, type EngineFloor } from './engine-floor.js';
import type { MigrateRun } from './migrate-runs.js';
import type { Summary } from './stats.js';
import type { MigrationReport } from '../migration/types.js';

const mb = (b: number | null) => (b === null ? '-' : (b / 1e6).toFixed(2));
const num = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : String(Math.round(x * 10) / 10));

/** Each figure over the runs: [label, summary, unit] (bytes shown in MB). */
function figures(s: ScenarioResult): [string, Summary | null, 'ms' | 'MB'][] {
  const x = s.summary;
  return [
    ['downtime', x.downtimeMs, 'ms'],
    ['client gap', x.clientGapMs, 'ms'],
    ['client gap - downtime', x.gapMinusDowntimeMs, 'ms'],
    ['rtt (second before)', x.rttMs, 'ms'],
    ['restore', x.restoreMs, 'ms'],
    ['post-copy', x.postCopyMs, 'ms'],
    ['total', x.totalMs, 'ms'],
    ['sent', x.bytesSent, 'MB'],
  ];
}

const inUnit = (v: number, unit: 'ms' | 'MB') => (unit === 'MB' ? mb(v) : num(v));

/** The run's cells, in RUN_COLUMNS order. */
const RUN_COLUMNS = [
  'run',
  'direction',
  'restore',
  'downtime ms',
  'client gap ms',
  'gap - down ms',
  'rtt ms',
  'gap check',
  'post-copy ms',
  'total ms',
  'MB sent',
  'rounds',
];
function runCells(r: MigrateRun): string[] {
  return [
    String(r.run),
    `${r.from} -> ${r.to}`,
    r.restoreMode ?? '-',
    num(r.downtimeMs),
    num(r.clientGapMs),
    num(r.gapMinusDowntimeMs),
    num(r.rttMs),
    r.gapWithinRttOfDowntime ? 'met' : 'MISSED',
    num(r.postCopyMs),
    num(r.totalMs),
    mb(r.bytesSent),
    String(r.precopyRounds),
  ];
}

function floorMode(f: EngineFloor): string {
  return f.restoreMode ?? 'eager';
}

function targetMeasured(t: { value: number; met?: number; runs?: number }): string {
  return t.runs !== undefined ? `${t.value} (met by ${t.met}/${t.runs} runs)` : num(t.value);
}

function probeText(s: ScenarioResult): string {
  const p = s.probe;
  return `GET ${p.path} on ${p.address}:${p.port} every ${p.intervalMs} ms, ${p.connectionPerRequest ? 'a connection per request' : 'one kept-alive connection'}`;
}

function clientText(s: ScenarioResult): string {
  const h = s.client.sessions.http;
  if (!h) return 'no HTTP session';
  return `${h.answered}/${h.sent} answered, ${h.lost} lost, ${h.errors.length} errors, served ${h.served.continuous ? 'continuous' : 'NOT continuous'}, instances ${h.instances.length}`;
}

/** Plain aligned columns (the CLI's table style), as a string. */
function columns(head: readonly string[], rows: readonly (readonly string[])[], indent = ''): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    indent +
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}

/** `cloudlet bench migrate` without --json/--markdown: per workload its runs, their summaries, baselines, floor and targets. */
export function migrateBenchText(r: MigrateBenchResult): string {
  let out = `${r.engine ? `engine ${r.engine}; ` : ''}link ${r.link.bandwidth} / ${r.link.latency}; ${r.machine.cores} cores, kernel ${r.machine.kernel}; ${r.repeat} handoff(s) per workload under a client, alternating directions\n`;
  for (const x of r.skipped ?? []) out += `skipped: ${x.scenario}: ${x.reason}\n`;
  for (const s of r.scenarios) {
    out += `\n${s.name} (${s.network === 'holder' ? 'in a network namespace holder' : 'its own network namespace'}): client ${probeText(s)}\n`;
    out += columns(RUN_COLUMNS, s.runs.map(runCells), '  ');
    if (s.runs.length > 1) {
      out += columns(
        ['figure', 'median', 'p95', 'min', 'max'],
        figures(s).map(([label, x, unit]) => [`${label} ${unit}`, ...(x ? [x.median, x.p95, x.min, x.max].map((v) => inUnit(v, unit)) : ['-', '-', '-', '-'])]),
        '  ',
      );
    }
    out += `  client over the runs: ${clientText(s)}\n`;
    if (s.baseline)
      out += `  baseline ${s.baseline.name}: total ${num(s.baseline.totalMs)} ms, downtime ${num(s.baseline.downtimeMs)} ms, ${mb(s.baseline.bytesSent)} MB sent\n`;
    if (s.eagerRestore)
      out += `  eager restore: total ${num(s.eagerRestore.totalMs)} ms, downtime ${num(s.eagerRestore.downtimeMs)} ms, restore ${num(s.eagerRestore.restoreMs)} ms\n`;
    const f = s.engineFloor;
    out += `  engine floor on ${f.node} (${floorMode(f)}): checkpoint ${f.checkpointMs} ms + restore ${f.restoreMs} ms = ${f.floorMs} ms${f.postCopyMs != null ? `, then post-copy ${f.postCopyMs} ms` : ''}; added by the handoff (median downtime - floor): ${num(addedByHandoffMs(s.downtimeMs, f))} ms\n`;
  }
  if (r.pageCache) out += `\n${pageCacheText(r.pageCache)}`;
  const cacheTargets = (r.pageCache?.scenarios ?? []).flatMap((s) => s.targets.map((t) => [s.name, t.name, targetMeasured(t), t.ok ? 'yes' : 'NO']));
  out +=
    '\n' +
    columns(
      ['scenario', 'target', 'measured', 'met'],
      [...r.scenarios.flatMap((s) => s.targets.map((t) => [s.name, t.name, targetMeasured(t), t.ok ? 'yes' : 'NO'])), ...cacheTargets],
    );
  return out;
}

const PAGE_CACHE_COLUMNS = [
  'scenario',
  'service',
  'from -> to',
  'MB sent',
  'first handoff MB',
  'ratio',
  'round 1 MB (first)',
  'pages from cache',
  'downtime ms',
  'total ms',
  'state intact',
];

function pageCacheRows(c: PageCacheBench): string[][] {
  const b = c.baseline;
  return [
    [
      'first handoff (every page sent)',
      b.container,
      `${b.from} -> ${b.to}`,
      mb(b.bytesSent),
      mb(b.bytesSent),
      '1',
      `${mb(b.round1Bytes)} (-)`,
      '0',
      num(b.downtimeMs),
      num(b.totalMs),
      b.stateIntact ? 'yes' : 'NO',
    ],
    ...c.scenarios.map((s) => [
      s.name,
      s.container,
      `${s.from} -> ${s.to}`,
      mb(s.bytesSent),
      mb(s.baselineBytesSent),
      s.ratio.toFixed(3),
      `${mb(s.round1Bytes)} (${mb(s.baselineRound1Bytes)})`,
      String(s.pagesFromCache),
      num(s.downtimeMs),
      num(s.totalMs),
      s.stateIntact ? 'yes' : 'NO',
    ]),
  ];
}

function pageCacheText(c: PageCacheBench): string {
  return `page cache (${c.stateMb} MiB service, default policy, same run):\n` + columns(PAGE_CACHE_COLUMNS, pageCacheRows(c), '  ');
}

function roundsTable(r: MigrationReport): string {
  const head =
    '| round | capture ms | stall ms | hash ms | pages sent/scanned | MB raw | MB sent | codec | send ms | Mbit/s | dest. ms |\n|---|---|---|---|---|---|---|---|---|---|---|';
  const rows = r.rounds.map(
    (x) =>
      `| ${x.index}${x.final ? ' (final)' : ''} | ${x.dumpMs} | ${x.stallMs} | ${x.hashMs} | ${x.pagesChanged}/${x.pagesScanned} | ${mb(x.rawBytes)} | ${mb(x.sentBytes)} | ${x.codec} | ${x.sendMs} | ${(x.bandwidthBps / 1e6).toFixed(1)} | ${x.applyMs} |`,
  );
  return [head, ...rows].join('\n');
}

export function migrateBenchMarkdown(r: MigrateBenchResult, command: string): string {
  const out: string[] = [];
  out.push(
    `Measured ${r.date} on this project's machine kind (${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, kernel ${r.machine.kernel}), lab link ${r.link.bandwidth} / ${r.link.latency} one way per link${r.engine ? `, engine ${r.engine}` : ''}, with:`,
  );
  for (const x of r.skipped ?? []) out.push(`Skipped on this engine: ${x.scenario}: ${x.reason}.`);
  out.push('', '```', command, '```', '');
  out.push(
    `Each workload runs on the lab's service network and is handed off ${r.repeat} time(s), alternating directions, while a client in the lab's client namespace requests it; ` +
      "a run's client gap is the longest silence between the client's replies overlapping that handoff, its RTT the median request latency in the second before it. " +
      'Figures in the first table are medians over the runs; the baselines ran once, after the client.',
    '',
  );
  out.push(
    '| scenario | network namespace | client | total ms | downtime ms | client gap ms | MB sent | pre-copy rounds (1st run) | stopped by (1st run) |',
    '|---|---|---|---|---|---|---|---|---|',
  );
  const ns = (m: MigrationReport) => (m.netnsHolder ? `holder (${m.netnsHolderFrom === 'spare' ? "destination's spare" : 'started for it'})` : 'its own');
  for (const s of r.scenarios) {
    out.push(
      `| ${s.name} | ${ns(s.report)} | ${probeText(s)} | ${num(s.totalMs)} | ${num(s.downtimeMs)} | ${num(s.summary.clientGapMs?.median)} | ${mb(s.bytesSent)} | ${s.precopyRounds} | ${s.stopReason} |`,
    );
    if (s.baseline)
      out.push(
        `| ${s.name}: ${s.baseline.name} (baseline, same run) | ${ns(s.baseline.report)} | - | ${s.baseline.totalMs} | ${s.baseline.downtimeMs} | - | ${mb(s.baseline.bytesSent)} | 0 | - |`,
      );
    const e = s.eagerRestore;
    if (e)
      out.push(
        `| ${s.name}: eager restore (same run) | ${ns(e.report)} | - | ${e.totalMs} | ${e.downtimeMs} | - | ${mb(e.report.bytesSent)} | ${e.report.precopyRounds} | ${e.report.stopReason} |`,
      );
  }
  out.push('', '| scenario | figure | median | p95 | min | max | runs |', '|---|---|---|---|---|---|---|');
  for (const s of r.scenarios) {
    for (const [label, x, unit] of figures(s)) {
      out.push(
        x
          ? `| ${s.name} | ${label} ${unit} | ${inUnit(x.median, unit)} | ${inUnit(x.p95, unit)} | ${inUnit(x.min, unit)} | ${inUnit(x.max, unit)} | ${x.n} |`
          : `| ${s.name} | ${label} ${unit} | - | - | - | - | 0 |`,
      );
    }
  }
  for (const s of r.scenarios) {
    out.push('', `### ${s.name}: runs`, '', `Client: ${probeText(s)}; over the runs ${clientText(s)}.`, '');
    out.push(`| ${RUN_COLUMNS.join(' | ')} |`, `|${RUN_COLUMNS.map(() => '---').join('|')}|`);
    for (const run of s.runs) out.push(`| ${runCells(run).join(' | ')} |`);
  }
  out.push('', '| restore at the destination | restore ms (median) | post-copy ms (median; service already up) |', '|---|---|---|');
  for (const s of r.scenarios) {
    out.push(`| ${s.name}${s.summary.postCopyMs ? ' (lazy)' : ''} | ${num(s.summary.restoreMs?.median)} | ${num(s.summary.postCopyMs?.median)} |`);
    if (s.eagerRestore) out.push(`| ${s.name} (eager, same run) | ${s.eagerRestore.restoreMs} | - |`);
  }
  out.push(
    '',
    '| engine floor (same container, checkpoint + restore in place on one cloudlet, same run, restore mode of the runs) | restore mode | checkpoint ms | restore ms | floor ms | post-copy ms | handoff downtime ms (median) | added by the handoff ms |',
    '|---|---|---|---|---|---|---|---|',
  );
  for (const s of r.scenarios) {
    const f = s.engineFloor;
    out.push(
      `| ${s.name} (on ${f.node}) | ${floorMode(f)} | ${f.checkpointMs} | ${f.restoreMs} | ${f.floorMs} | ${f.postCopyMs ?? '-'} | ${num(s.downtimeMs)} | ${num(addedByHandoffMs(s.downtimeMs, f))} |`,
    );
  }
  if (r.pageCache) {
    out.push('', `### Page cache (${r.pageCache.stateMb} MiB service; each handoff against the first one of the same run)`, '');
    out.push(`| ${PAGE_CACHE_COLUMNS.join(' | ')} |`, `|${PAGE_CACHE_COLUMNS.map(() => '---').join('|')}|`);
    for (const row of pageCacheRows(r.pageCache)) out.push(`| ${row.join(' | ')} |`);
  }
  out.push('', '| target (issues 4, 16, 21) | measured | met |', '|---|---|---|');
  for (const s of r.scenarios) for (const t of s.targets) out.push(`| ${s.name}: ${t.name} | ${targetMeasured(t)} | ${t.ok ? 'yes' : 'no'} |`);
  for (const s of r.pageCache?.scenarios ?? []) for (const t of s.targets) out.push(`| ${s.name}: ${t.name} | ${targetMeasured(t)} | ${t.ok ? 'yes' : 'no'} |`);
  for (const s of r.scenarios) {
    out.push('', `### ${s.name}: rounds (first run)`, '', roundsTable(s.report));
    if (s.baseline) out.push('', `Baseline (${s.baseline.name}):`, '', roundsTable(s.baseline.report));
  }
  return out.join('\n') + '\n';
}
