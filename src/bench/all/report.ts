// Everything `bench all` writes, rendered from a results.json alone (so that
// `cloudlet bench report --from DIR/results.json` regenerates it): REPORT.md, one CSV and
// one SVG chart per scenario.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CloudletError } from '../../util/errors.js';
import { CHARTS, distinct, pick } from './charts.js';
import { toCsv, type Cell } from './csv.js';
import { summarize, type Summary } from '../stats.js';
import { renderSvg } from './svg.js';
import { RESULTS_VERSION, type BenchAllResult, type MigrationRow } from './types.js';
import { CLIENT_NOTES } from './client-figures.js';
import { fmt, num, sec, table } from './report-format.js';
import { limitOf } from './wire-limit.js';
import { LIMIT_TEXT, limitTable } from './report-limits.js';

export { fmt };

const SCENARIOS = ['overlay', 'compression', 'rounds', 'alpha', 'bandwidth', 'decision'] as const;

const MIGRATION_SCENARIOS = ['rounds', 'alpha', 'bandwidth', 'decision'] as const;

export async function readResults(path: string): Promise<BenchAllResult> {
  const r = JSON.parse(await readFile(path, 'utf8')) as Partial<BenchAllResult>;
  if (r.bench !== 'all' || (r.version !== 1 && r.version !== RESULTS_VERSION)) {
    throw new CloudletError('bad_results', `${path} is not a results.json of \`bench all\` (version 1 to ${RESULTS_VERSION})`, { kind: 'invalid-data' });
  }
  for (const k of SCENARIOS) if (!Array.isArray(r[k])) throw new CloudletError('bad_results', `${path}: '${k}' is missing`, { kind: 'invalid-data' });
  const result = r as BenchAllResult;
  // Version 1 rows have no client fields: they are filled in as unknown, and the report
  // leaves the client columns out for such a file (hasClientFigures).
  if (result.version === 1) {
    for (const k of MIGRATION_SCENARIOS) {
      result[k] = result[k].map((x) => ({
        ...x,
        clientGapMs: x.clientGapMs ?? null,
        rttMs: x.rttMs ?? null,
        clientNote: x.clientNote ?? CLIENT_NOTES.noClient,
      }));
    }
  }
  return result;
}

/** Whether the file's migration rows carry the client's figures (version 2 on). */
export function hasClientFigures(r: Pick<BenchAllResult, 'version'>): boolean {
  return r.version >= 2;
}

function migrationCsvRows(rows: readonly MigrationRow[], withClient: boolean): { columns: string[]; rows: Record<string, Cell>[] } {
  const params = distinct(rows.flatMap((r) => Object.keys(r.params)));
  const client = withClient ? ['client_gap_ms', 'rtt_ms', 'client_note'] : [];
  const columns = [
    'rep',
    'workload',
    ...params,
    'policy',
    'codec',
    'from',
    'to',
    'total_ms',
    'downtime_ms',
    ...client,
    'bytes_sent',
    'image_shipped_bytes',
    'precopy_rounds',
    'stop_reason',
    'requests',
    'round_sent_bytes',
    'round_pages_changed',
  ];
  return {
    columns,
    rows: rows.map((r) => ({
      rep: r.rep,
      workload: r.workload,
      ...r.params,
      policy: r.policy,
      codec: r.codec,
      from: r.from,
      to: r.to,
      total_ms: r.totalMs,
      downtime_ms: r.downtimeMs,
      client_gap_ms: r.clientGapMs,
      rtt_ms: r.rttMs,
      client_note: r.clientNote,
      bytes_sent: r.bytesSent,
      image_shipped_bytes: r.imageShippedBytes,
      precopy_rounds: r.precopyRounds,
      stop_reason: r.stopReason,
      requests: r.requests,
      round_sent_bytes: r.rounds.map((x) => x.sentBytes).join(';'),
      round_pages_changed: r.rounds.map((x) => x.pagesChanged).join(';'),
    })),
  };
}

/** The link, the bytes that had to cross and their physical limit, beside total_ms (wire-limit.ts). */
function withLimitColumns(t: { columns: string[]; rows: Record<string, Cell>[] }, rows: readonly MigrationRow[], plan: BenchAllResult['plan']): void {
  t.columns.splice(t.columns.indexOf('total_ms') + 1, 0, 'link_mbit', 'bytes_to_cross', 'wire_limit_ms');
  rows.forEach((row, i) => {
    const l = limitOf(row, plan);
    Object.assign(t.rows[i]!, { link_mbit: l.mbit, bytes_to_cross: l.bytes, wire_limit_ms: l.limitMs === null ? null : Math.round(l.limitMs) });
  });
}

export function csvFiles(r: BenchAllResult): Record<string, string> {
  const out: Record<string, string> = {};
  out['overlay.csv'] = toCsv(
    [
      'rep',
      'workload',
      'codec',
      'overlay_bytes',
      'overlay_raw_bytes',
      'app_bytes',
      'create_ms',
      'push_ms',
      'synthesis_ms',
      'first_request_ms',
      'prototype_synthesis_ms',
      'full_image_bytes',
      'full_image_ms',
      'image_id_matches',
    ],
    r.overlay.map((o) => ({
      rep: o.rep,
      workload: o.workload,
      codec: o.codec,
      overlay_bytes: o.overlayBytes,
      overlay_raw_bytes: o.overlayRawBytes,
      app_bytes: o.appBytes,
      create_ms: o.createMs,
      push_ms: o.pushMs,
      synthesis_ms: o.synthesisMs,
      first_request_ms: o.firstRequestMs,
      prototype_synthesis_ms: o.prototypeSynthesisMs,
      full_image_bytes: o.fullImageBytes,
      full_image_ms: o.fullImageMs,
      image_id_matches: o.imageIdMatches,
    })),
  );
  const mbits = r.plan.compression.mbits.map(String);
  out['compression.csv'] = toCsv(
    ['rep', 'workload', 'sample_bytes', 'zero_pages_percent', 'codec', 'ratio', 'compress_mb_s', 'decompress_mb_s', ...mbits.map((m) => `transfer_s_${m}mbit`)],
    r.compression.map((c) => ({
      rep: c.rep,
      workload: c.workload,
      sample_bytes: c.sampleBytes,
      zero_pages_percent: c.zeroPagesPercent,
      codec: c.codec,
      ratio: c.ratio,
      compress_mb_s: c.compressMBps,
      decompress_mb_s: c.decompressMBps,
      ...Object.fromEntries(mbits.map((m) => [`transfer_s_${m}mbit`, c.transferS[m]])),
    })),
  );
  for (const k of ['rounds', 'alpha', 'bandwidth', 'decision'] as const) {
    const t = migrationCsvRows(r[k], hasClientFigures(r));
    if (k === 'bandwidth' || k === 'decision') withLimitColumns(t, r[k], r.plan);
    out[`${k}.csv`] = toCsv(t.columns, t.rows);
  }
  return out;
}

interface Comparison {
  what: string;
  ours: Summary | null;
  published: string;
  publishedValue: number;
  unit: string;
}

export function comparisons(r: BenchAllResult): Comparison[] {
  const out: Comparison[] = [];
  const p = r.published;
  for (const w of ['large', 'small'] as const) {
    const rows = r.overlay.filter((o) => o.workload === w);
    if (rows.length === 0) continue;
    const ref = p.overlay2016[w];
    out.push({
      what: `overlay size, ${w} workload (${rows[0]!.codec})`,
      ours: summarize(rows.map((o) => o.overlayBytes / 1e6)),
      published: `${ref.overlayMB} MB (2016)`,
      publishedValue: ref.overlayMB,
      unit: 'MB',
    });
    out.push({
      what: `overlay synthesis, ${w} workload`,
      ours: summarize(rows.map((o) => sec(o.synthesisMs))),
      published: `~${ref.synthesisS} s (2016)`,
      publishedValue: ref.synthesisS,
      unit: 's',
    });
  }
  const mbits = distinct(r.bandwidth.map((x) => Number(x.params.mbit))).sort((a, b) => a - b);
  const large = r.bandwidth.find((x) => !x.workload.startsWith('busybox'))?.workload;
  for (const [m, v] of Object.entries(p.maOpenFace.totalS)) {
    if (!large || !mbits.includes(Number(m))) continue;
    out.push({
      what: `large-memory total at ${m} Mbit/s (ours: ${large}; theirs: OpenFace)`,
      ours: pick(
        r.bandwidth,
        (x) => x.workload === large && x.params.mbit === Number(m),
        (x) => sec(x.totalMs),
      ),
      published: `${v} s (Ma et al.)`,
      publishedValue: v,
      unit: 's',
    });
  }
  const [t0, t1] = p.maBusybox.totalS;
  const [d0, d1] = p.maBusybox.downtimeS;
  for (const m of mbits) {
    const bb = (x: MigrationRow) => x.workload.startsWith('busybox') && x.params.mbit === m;
    if (!r.bandwidth.some(bb)) continue;
    out.push({
      what: `busybox total at ${m} Mbit/s`,
      ours: pick(r.bandwidth, bb, (x) => sec(x.totalMs)),
      published: `${t0}-${t1} s (Ma et al.)`,
      publishedValue: (t0 + t1) / 2,
      unit: 's',
    });
    out.push({
      what: `busybox downtime at ${m} Mbit/s`,
      ours: pick(r.bandwidth, bb, (x) => sec(x.downtimeMs)),
      published: `${d0}-${d1} s (Ma et al.)`,
      publishedValue: (d0 + d1) / 2,
      unit: 's',
    });
  }
  return out;
}

/** The client gap's median, "-" when no run of the group has one; "(k of n)" when only some have. */
function clientGapCell(xs: readonly MigrationRow[]): string {
  const known = xs.filter((x) => x.clientGapMs !== null);
  const s = summarize(known.map((x) => sec(x.clientGapMs!)));
  if (!s) return '-';
  return known.length < xs.length ? `${num(s.median)} (${known.length} of ${xs.length})` : num(s.median);
}

function migrationTable(rows: readonly MigrationRow[], keys: (r: MigrationRow) => string[], head: string[], withClient: boolean): string {
  const groups = new Map<string, MigrationRow[]>();
  for (const x of rows) {
    const k = JSON.stringify(keys(x));
    groups.set(k, [...(groups.get(k) ?? []), x]);
  }
  const body = [...groups].map(([k, xs]) => [
    ...(JSON.parse(k) as string[]),
    String(xs.length),
    fmt(summarize(xs.map((x) => sec(x.totalMs)))),
    fmt(summarize(xs.map((x) => sec(x.downtimeMs)))),
    ...(withClient ? [clientGapCell(xs), fmt(summarize(xs.map((x) => x.rttMs ?? Number.NaN)), 1)] : []),
    fmt(summarize(xs.map((x) => x.bytesSent / 1e6)), 1),
    fmt(summarize(xs.map((x) => x.precopyRounds)), 0),
    distinct(xs.map((x) => x.stopReason ?? '-')).join(', '),
    xs.some((x) => x.requests !== null) ? fmt(summarize(xs.map((x) => x.requests ?? Number.NaN)), 0) : '-',
  ]);
  return table(
    [
      ...head,
      'reps',
      'total s',
      'downtime s',
      ...(withClient ? ['client gap s (median)', 'client RTT ms'] : []),
      'MB sent',
      'pre-copy rounds',
      'stopped by',
      'client requests',
    ],
    body,
  );
}

/** The title and what was run where and when (and what a quick run drops). */
function reportHead(r: BenchAllResult): string[] {
  const m = r.machine;
  const o: string[] = [];
  o.push(`# Evaluation: \`cloudlet bench all\`${r.plan.quick ? ' (--quick)' : ''}`, '');
  o.push(
    'Generated by `cloudlet bench all` (re-render with `cloudlet bench report --from results.json --out DIR`). Every figure below was measured in this run, except the rows marked "published".',
    '',
  );
  o.push(`- Date: ${r.startedAt} to ${r.finishedAt} (wall time ${(r.wallMs / 60000).toFixed(1)} min)`);
  o.push(
    `- Machine: ${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, kernel ${m.kernel}; load average ${m.loadAverageStart.join(' / ')} at the start, ${m.loadAverageEnd.join(' / ')} at the end (the machine is shared: treat times as upper bounds)`,
  );
  o.push(
    `- Lab: ${r.lab.cloudlets.length} cloudlets (${r.lab.cloudlets.join(', ')}), links ${r.lab.link.bandwidth} / ${r.lab.link.latency} one way per link unless a scenario says otherwise`,
  );
  o.push(`- Command: \`${r.command}\``);
  o.push(
    `- Scenario wall times: ${Object.entries(r.scenarioMs)
      .map(([k, v]) => `${k} ${(v / 1000).toFixed(0)} s`)
      .join(', ')}`,
  );
  if (r.plan.quick) {
    o.push('', "**Quick run.** It keeps every scenario and the issue's grids of rounds and client activity, and drops:", '');
    for (const d of r.plan.quickDrops) o.push(`- ${d}`);
  }
  o.push('', 'Figures are "median (min-max)" over the repetitions; a single figure means one repetition or no spread.', '');
  return o;
}

/** How the client figures were measured, and the migrations that have none (results with client figures only). */
function clientNote(r: BenchAllResult): string[] {
  const o: string[] = [];
  o.push(
    "Every migration runs under a client in the lab's client namespace (an HTTP probe every 20 ms, from a second before the migration to a second after it: `GET /probe` beside the activity service's own load in scenarios 3, 4 and 6, which dirties nothing; the counter's CGI and the random-state service's `/touch` in scenarios 5 and 6): \"client gap\" is the longest silence between two consecutive replies it got that overlaps the migration (start to end), from its per-request timeline, beside the daemons' downtime; \"client RTT\" is its median request latency in the second before the migration.",
    '',
  );
  const missing = MIGRATION_SCENARIOS.flatMap((k) => r[k].filter((x) => x.clientGapMs === null).map((x) => ({ k, note: x.clientNote ?? '-' })));
  for (const note of distinct(missing.map((m) => m.note))) {
    const of = missing.filter((m) => m.note === note);
    o.push(`- No client gap for ${of.length} migration(s) (${distinct(of.map((m) => m.k)).join(', ')}): ${note}.`);
  }
  if (missing.length) o.push('');
  return o;
}

/** Our figures against the published ones. */
function publishedSection(r: BenchAllResult): string[] {
  const o: string[] = [];
  o.push('## Against the published figures', '');
  o.push(
    'Ratio = ours / published (below 1: smaller or faster than published). Ranges are compared at their midpoint. The published setups differ from ours (other hardware, other workloads: our large-memory workload is not OpenFace), so the ratios place our figures, they do not rank the systems.',
    '',
  );
  const cmp = comparisons(r);
  o.push(
    cmp.length === 0
      ? 'No scenario of this run has a published counterpart.'
      : table(
          ['figure', 'ours', 'published', 'ratio'],
          cmp.map((c) => [c.what, `${fmt(c.ours)} ${c.unit}`, c.published, c.ours ? num(c.ours.median / c.publishedValue) : '-']),
        ),
  );
  return o;
}

/** Scenario 1: overlay size and synthesis time, with the two baselines. */
function overlaySection(r: BenchAllResult): string[] {
  const o: string[] = [];
  o.push('', '## 1. Overlay: size and synthesis time', '');
  o.push(
    `\`bench overlay\` per repetition (codec ${r.plan.overlay.codec}): the overlay is created on a, pushed to b over the lab link, synthesized (decompress + load) and started by a first request; baselines in the same repetition on b: the 2016 prototype's synthesis method (untar base, lay layers, re-tar, load) and shipping the whole image (save | gzip, push, load).`,
    '',
  );
  const ow = distinct(r.overlay.map((x) => x.workload));
  o.push(
    table(
      [
        'workload',
        'reps',
        'overlay MB',
        'synthesis s',
        '2016 method s (same run)',
        'first request s',
        'whole image MB',
        'whole image s',
        'image ids equal',
        '2016 published',
      ],
      ow.map((w) => {
        const xs = r.overlay.filter((x) => x.workload === w);
        const s = (f: (x: (typeof xs)[number]) => number, d = 2) => fmt(summarize(xs.map(f)), d);
        const ref = r.published.overlay2016[w];
        return [
          w,
          String(xs.length),
          s((x) => x.overlayBytes / 1e6),
          s((x) => sec(x.synthesisMs)),
          s((x) => sec(x.prototypeSynthesisMs)),
          s((x) => sec(x.firstRequestMs)),
          s((x) => x.fullImageBytes / 1e6, 1),
          s((x) => sec(x.fullImageMs), 1),
          xs.every((x) => x.imageIdMatches) ? 'yes' : 'NO',
          `${ref.overlayMB} MB / ~${ref.synthesisS} s`,
        ];
      }),
    ),
  );
  o.push('', '![overlay](charts/overlay.svg)', '', 'Data: [overlay.csv](overlay.csv)');
  return o;
}

/** Scenario 2: the codecs on the workloads' memory. */
function compressionSection(r: BenchAllResult): string[] {
  const o: string[] = [];
  o.push('', "## 2. Compression: codecs on the workloads' memory", '');
  o.push(
    `The codec micro-benchmark (\`src/transfer/bench-codecs.ts\`) on each running workload's private writable memory (read through /proc/PID/mem, up to ${r.plan.compression.maxMiB} MiB), in 1 MiB blocks as migrations send them (zero pages included: a migration skips them, so ratios of samples with many zero pages flatter the codecs); ratio = wire / raw bytes, speeds in raw MB/s on one core. Transfer time = the codec-choice model's prediction (compress, send and decompress pipelined, \`src/transfer/codec-choice.ts\`) for the sample at each link rate, from the rates measured here; it is computed, not timed on the link.`,
    '',
  );
  const cw = distinct(r.compression.map((x) => x.workload));
  const mbits = r.plan.compression.mbits.map(String);
  const crow: string[][] = [];
  for (const w of cw) {
    for (const c of distinct(r.compression.filter((x) => x.workload === w).map((x) => x.codec))) {
      const xs = r.compression.filter((x) => x.workload === w && x.codec === c);
      crow.push([
        w,
        num(xs[0]!.sampleBytes / 2 ** 20, 1),
        fmt(summarize(xs.map((x) => x.zeroPagesPercent)), 1),
        c,
        String(xs.length),
        fmt(summarize(xs.map((x) => x.ratio)), 3),
        c === 'none' ? '-' : fmt(summarize(xs.map((x) => x.compressMBps ?? Number.NaN)), 0),
        c === 'none' ? '-' : fmt(summarize(xs.map((x) => x.decompressMBps ?? Number.NaN)), 0),
        ...mbits.map((mb) => fmt(summarize(xs.map((x) => x.transferS[mb] ?? Number.NaN)), 3)),
      ]);
    }
  }
  o.push(
    table(
      [
        'workload',
        'sample MiB',
        'zero pages %',
        'codec',
        'reps',
        'ratio',
        'compress MB/s',
        'decompress MB/s',
        ...mbits.map((mb) => `transfer s @${mb} Mbit/s`),
      ],
      crow,
    ),
  );
  o.push('', '![compression](charts/compression.svg)', '', 'Data: [compression.csv](compression.csv)');
  return o;
}

/** Scenario 3: pre-copy rounds x client activity. */
function roundsSection(r: BenchAllResult, opts: { withClient: boolean }): string[] {
  const o: string[] = [];
  const a = r.plan.activity;
  const activityText = `The activity service (\`src/workloads/handoff-service.ts\`, ${a.stateMb} MiB of state) on the service network; the lab client sends about n requests (half on a TCP session, half on an HTTP keep-alive session), spread over ${a.windowMs / 1000} s from the migration's start, each request dirtying ${a.dirtyKbPerRequest} KiB (one word in each of ${a.dirtyKbPerRequest / 4} random pages). Links at ${a.mbit} Mbit/s, codec ${a.codec} (the classic setting: every dirty page costs wire bytes). The service moves back and forth between a and b (a first, unrecorded migration ships its image, so no measured one includes image shipping). "client requests" is what the client got sent in the window: a frozen service takes none, so stop-and-copy runs, frozen for most of the window, see fewer.`;
  o.push('', '## 3. Pre-copy rounds x client activity', '', activityText, '');
  o.push(migrationTable(r.rounds, (x) => [String(x.params.n), String(x.params.rounds)], ['n', 'forced rounds'], opts.withClient));
  o.push('', '![rounds](charts/rounds.svg)', '', 'Data: [rounds.csv](rounds.csv)');
  return o;
}

/** Scenario 4: the alpha rule. */
function alphaSection(r: BenchAllResult, opts: { withClient: boolean }): string[] {
  const o: string[] = [];
  o.push(
    '',
    '## 4. Alpha rule',
    '',
    `Same service, client and link as scenario 3; the alpha rule stops pre-copy when a round's send took less than alpha seconds (max 8 rounds).`,
    '',
  );
  o.push(migrationTable(r.alpha, (x) => [String(x.params.n), String(x.params.alpha)], ['n', 'alpha s'], opts.withClient));
  o.push('', '![alpha](charts/alpha.svg)', '', 'Data: [alpha.csv](alpha.csv)');
  return o;
}

/** Scenario 5: the bandwidth sweep. */
function bandwidthSection(r: BenchAllResult, opts: { withClient: boolean }): string[] {
  const o: string[] = [];
  const b = r.plan.bandwidth;
  const bandwidthRows = [...r.bandwidth].sort((x, y) => x.workload.localeCompare(y.workload) || Number(x.params.mbit) - Number(y.params.mbit));
  o.push(
    '',
    '## 5. Bandwidth sweep',
    '',
    `Both cloudlets' links set to each bandwidth (latency unchanged). Workloads: the busybox counter, and a Node.js service with ${b.stateMb} MiB of pseudo-random (incompressible) state dirtying ${b.dirtyPagesPerSec} pages/s. Our default decision model and codec choice. Published (Ma et al.): OpenFace 48.9 s at 5 Mbit/s, 10.7 s at 100 Mbit/s; busybox 3.1-3.2 s total, 2.7-2.8 s down at every bandwidth.`,
    '',
  );
  o.push(migrationTable(bandwidthRows, (x) => [x.workload, String(x.params.mbit)], ['workload', 'Mbit/s'], opts.withClient));
  o.push('', LIMIT_TEXT, '');
  o.push(limitTable(bandwidthRows, r.plan, (x) => [x.workload, String(x.params.mbit)], ['workload', 'Mbit/s']));
  o.push('', '![bandwidth](charts/bandwidth.svg)', '', 'Data: [bandwidth.csv](bandwidth.csv)');
  return o;
}

/** Scenario 6: the decision models side by side. */
function decisionSection(r: BenchAllResult, opts: { withClient: boolean }): string[] {
  const o: string[] = [];
  const d = r.plan.decision;
  const decisionRows = [...r.decision].sort((x, y) => x.workload.localeCompare(y.workload));
  o.push(
    '',
    '## 6. Decision models side by side',
    '',
    `Stop rules (\`src/migration/decision.ts\`): model = our default (predicted downtime <= 1 s, convergence, another round only while it saves at least the total time it adds, 8 rounds, 300 s); alpha = the alpha rule with alpha = 1 s; phaul = P.Haul's (stop at <= 64 pages written, > 10 % growth, or 8 rounds); lxd = LXD's (>= 70 % of pages unchanged, or 10 rounds). Same workloads for every rule: the busybox counter, the random-state service (${d.stateMb} MiB, ${d.dirtyPagesPerSec} pages/s) and the activity service with n = ${d.n}; links at ${d.mbit} Mbit/s, codec ${d.codec}.`,
    '',
  );
  o.push(migrationTable(decisionRows, (x) => [x.workload, x.policy], ['workload', 'rule'], opts.withClient));
  o.push('', LIMIT_TEXT, '');
  o.push(limitTable(decisionRows, r.plan, (x) => [x.workload, x.policy], ['workload', 'rule']));
  o.push('', '![decision](charts/decision.svg)', '', 'Data: [decision.csv](decision.csv)');
  return o;
}

export function reportMarkdown(r: BenchAllResult): string {
  const wc = hasClientFigures(r);
  const o: string[] = [
    ...reportHead(r),
    ...(wc ? clientNote(r) : []),
    ...publishedSection(r),
    ...overlaySection(r),
    ...compressionSection(r),
    ...roundsSection(r, { withClient: wc }),
    ...alphaSection(r, { withClient: wc }),
    ...bandwidthSection(r, { withClient: wc }),
    ...decisionSection(r, { withClient: wc }),
  ];
  o.push('', 'Raw figures of every repetition (per-round bytes and pages too): [results.json](results.json).', '');
  return o.join('\n');
}

/** Writes REPORT.md, the CSVs and charts/*.svg for a result into dir (results.json is the caller's). */
export async function writeReport(r: BenchAllResult, dir: string): Promise<string[]> {
  await mkdir(join(dir, 'charts'), { recursive: true });
  const written: string[] = [];
  for (const [name, text] of Object.entries(csvFiles(r))) {
    await writeFile(join(dir, name), text);
    written.push(name);
  }
  for (const c of CHARTS) {
    await writeFile(join(dir, 'charts', c.file), renderSvg(c.build(r)));
    written.push(`charts/${c.file}`);
  }
  await writeFile(join(dir, 'REPORT.md'), reportMarkdown(r));
  written.push('REPORT.md');
  return written;
}
