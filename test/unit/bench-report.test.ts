// The `bench all` report generator, on a recorded results.json (the real output of a
// `cloudlet bench all --quick` run on the lab, committed under test/fixtures/bench-all/):
// the report, CSVs and charts are rendered from it, the comparison table matches the raw
// figures, and every chart is well-formed SVG with axes, text and data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { comparisons, csvFiles, readResults, reportMarkdown, writeReport } from '../../src/bench/all/report.js';
import { bytesToCross, limitOf, linkMbitOf, wireLimitMs } from '../../src/bench/all/wire-limit.js';
import { rowOf } from '../../src/bench/all/lab-ops.js';
import { newReport, type MigrationReport } from '../../src/migration/types.js';
import { renderSvg, niceScale, escapeXml } from '../../src/bench/all/svg.js';
import { summarize } from '../../src/bench/stats.js';
import { parseBenchCodecs } from '../../src/bench/all/scenario-compression.js';
import { CHARTS } from '../../src/bench/all/charts.js';

// dist/test/unit -> repository root
const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'bench-all', 'results.json');

type Node = Record<string, unknown>;

/** Every element of a parsed document (preserveOrder form), with its name and attributes. */
function elements(doc: unknown[]): { name: string; attrs: Record<string, string>; children: unknown[] }[] {
  const out: { name: string; attrs: Record<string, string>; children: unknown[] }[] = [];
  const walk = (nodes: unknown[]) => {
    for (const n of nodes as Node[]) {
      for (const [k, v] of Object.entries(n)) {
        if (k === ':@' || k === '#text' || !Array.isArray(v)) continue;
        out.push({ name: k, attrs: (n[':@'] ?? {}) as Record<string, string>, children: v });
        walk(v);
      }
    }
  };
  walk(doc);
  return out;
}

function checkSvg(file: string, xml: string): void {
  const valid = XMLValidator.validate(xml);
  assert.equal(valid, true, `${file}: ${JSON.stringify(valid)}`);
  const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', preserveOrder: true }).parse(xml) as unknown[];
  const els = elements(doc);
  const root = els.find((e) => e.name === 'svg');
  assert.ok(root, `${file}: no <svg> root`);
  assert.equal(root.attrs.xmlns, 'http://www.w3.org/2000/svg', `${file}: svg namespace`);
  const group = (cls: string) => els.find((e) => e.name === 'g' && (e.attrs.class ?? '').split(' ').includes(cls));
  for (const cls of ['x-axis', 'y-axis', 'legend', 'data']) assert.ok(group(cls), `${file}: no <g class="${cls}">`);
  const data = elements(group('data')!.children);
  assert.ok(
    data.some((e) => e.name === 'rect' || e.name === 'circle'),
    `${file}: no data marks`,
  );
  const texts = els.filter((e) => e.name === 'text');
  assert.ok(texts.length >= 5, `${file}: too few text elements (${texts.length})`);
  // The y axis says its unit: "(s)", "(%...)" and so on.
  assert.match(JSON.stringify(elements(group('y-axis')!.children).filter((e) => e.name === 'text')), /\(.+\)/, `${file}: the y label has no unit`);
}

test('the recorded run re-renders: REPORT.md, one CSV and one valid SVG chart per scenario', async () => {
  const r = await readResults(FIXTURE);
  assert.equal(r.plan.quick, true, 'the fixture is a --quick run');
  const dir = await mkdtemp(join(os.tmpdir(), 'bench-report-'));
  try {
    const written = await writeReport(r, dir);
    const charts = (await readdir(join(dir, 'charts'))).sort();
    assert.deepEqual(charts, CHARTS.map((c) => c.file).sort());
    for (const c of charts) checkSvg(c, await readFile(join(dir, 'charts', c), 'utf8'));

    const md = await readFile(join(dir, 'REPORT.md'), 'utf8');
    assert.ok(md.includes(r.command), 'the command');
    assert.ok(md.includes(r.startedAt), 'the date');
    assert.ok(md.includes(`kernel ${r.machine.kernel}`), 'the machine');
    assert.match(md, /\| figure \| ours \| published \| ratio \|/);
    for (const c of charts) assert.ok(md.includes(`(charts/${c})`), `REPORT.md links ${c}`);
    for (const h of ['## 1. Overlay', '## 2. Compression', '## 3. Pre-copy rounds', '## 4. Alpha', '## 5. Bandwidth', '## 6. Decision'])
      assert.ok(md.includes(h), h);
    for (const d of r.plan.quickDrops) assert.ok(md.includes(d), `the quick drop "${d}" is listed`);

    // One CSV per scenario, one line per raw row (+ header).
    for (const k of ['overlay', 'compression', 'rounds', 'alpha', 'bandwidth', 'decision'] as const) {
      assert.ok(written.includes(`${k}.csv`));
      const lines = (await readFile(join(dir, `${k}.csv`), 'utf8')).trimEnd().split('\r\n');
      assert.equal(lines.length, r[k].length + 1, `${k}.csv rows`);
      assert.ok(r[k].length > 0, `the recorded run has ${k} rows`);
    }
    // Rendering is a pure function of the results.
    assert.equal(reportMarkdown(r), md);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the comparison table has a row for every published figure the run measured, with ours / published', async () => {
  const r = await readResults(FIXTURE);
  const cmp = comparisons(r);
  const md = reportMarkdown(r);
  const what = cmp.map((c) => c.what);
  for (const w of new Set(r.overlay.map((o) => o.workload))) {
    assert.ok(what.some((x) => x.startsWith(`overlay size, ${w}`)));
    assert.ok(what.some((x) => x.startsWith(`overlay synthesis, ${w}`)));
  }
  const mbits = new Set(r.bandwidth.map((x) => Number(x.params.mbit)));
  for (const m of mbits) {
    assert.ok(what.includes(`busybox total at ${m} Mbit/s`));
    assert.ok(what.includes(`busybox downtime at ${m} Mbit/s`));
  }
  for (const m of [5, 100])
    assert.equal(
      what.some((x) => x.startsWith(`large-memory total at ${m} Mbit/s`)),
      mbits.has(m),
    );
  // The large overlay row: ours is the median of the raw overlay sizes, the ratio ours / 69.
  const large = cmp.find((c) => c.what.startsWith('overlay size, large'))!;
  const sizes = summarize(r.overlay.filter((o) => o.workload === 'large').map((o) => o.overlayBytes / 1e6))!;
  assert.equal(large.ours!.median, sizes.median);
  assert.equal(large.publishedValue, 69);
  assert.ok(md.includes(`| ${large.what} |`));
  assert.ok(md.includes(`| ${(sizes.median / 69).toFixed(2)} |`));
});

test('summaries: median of odd and even counts, NaN left out, nothing -> null', () => {
  assert.deepEqual(summarize([3, 1, 2]), { n: 3, median: 2, p95: 3, min: 1, max: 3 });
  assert.deepEqual(summarize([4, 1, 3, 2]), { n: 4, median: 2.5, p95: 4, min: 1, max: 4 });
  // Nearest rank: of 20 values the 19th, of 40 the 38th.
  assert.equal(summarize(Array.from({ length: 20 }, (_, i) => i + 1))!.p95, 19);
  assert.equal(summarize(Array.from({ length: 40 }, (_, i) => i + 1))!.p95, 38);
  assert.deepEqual(summarize([Number.NaN, 5]), { n: 1, median: 5, p95: 5, min: 5, max: 5 });
  assert.equal(summarize([]), null);
});

test('charts: round axis scales, escaped text, valid SVG even without data', () => {
  assert.deepEqual(niceScale(7.3), { max: 8, step: 2 });
  assert.deepEqual(niceScale(0), { max: 1, step: 0.2 });
  assert.equal(escapeXml('a<b & "c">'), 'a&lt;b &amp; &quot;c&quot;&gt;');
  const svg = renderSvg({
    kind: 'bars',
    title: 'x < y & z',
    xLabel: 'k',
    yLabel: 'time (s)',
    groups: ['a'],
    series: [{ name: 's', values: [{ n: 1, median: 1, p95: 1, min: 1, max: 1 }] }],
  });
  checkSvg('inline', svg);
  const empty = renderSvg({ kind: 'lines', title: 'empty', xLabel: 'x', yLabel: 'y (s)', series: [] });
  assert.equal(XMLValidator.validate(empty), true);
});

test('bench-codecs output is parsed: sample size, zero pages, one row per codec; garbage is refused', () => {
  const text = [
    'sample: memory of pid 42, 16.0 MiB, 3.5% zero pages',
    'codec              ratio  comp MB/s   dec MB/s',
    'none             1.000          -          -',
    'lz4              0.113        576        485',
    '(zstd level 3)   0.070        300        900',
  ].join('\n');
  const s = parseBenchCodecs(text);
  assert.equal(s.sampleBytes, 16 * 2 ** 20);
  assert.equal(s.zeroPagesPercent, 3.5);
  assert.deepEqual(s.codecs, [
    { codec: 'none', ratio: 1, compressMBps: null, decompressMBps: null },
    { codec: 'lz4', ratio: 0.113, compressMBps: 576, decompressMBps: 485 },
  ]);
  assert.throws(() => parseBenchCodecs('nothing'), /no sample line/);
});

test('bandwidth and decision: the bytes that had to cross and their physical limit beside the measured total', async () => {
  const r = await readResults(FIXTURE);
  // The recorded run predates the fields: the report derives them from the rows and the plan.
  const slow = r.bandwidth.find((x) => x.params.mbit === 5 && !x.workload.startsWith('busybox'))!;
  assert.equal(slow.wireLimitMs, undefined);
  assert.equal(bytesToCross(slow), 52_629_880);
  const l = limitOf(slow, r.plan);
  assert.equal(l.mbit, 5);
  assert.ok(Math.abs(l.limitMs! - 84_207.8) < 0.1, `${l.limitMs}`);
  assert.equal(linkMbitOf(r.decision[0]!, r.plan), r.plan.decision.mbit);
  assert.equal(linkMbitOf(r.rounds[0]!, r.plan), null, 'other scenarios: not recorded');
  // A row that records its link wins over the plan.
  assert.equal(linkMbitOf({ ...r.decision[0]!, linkMbit: 20 }, r.plan), 20);
  assert.equal(wireLimitMs(1e6, 8), 1000);

  const md = reportMarkdown(r);
  const head = /\| workload \| Mbit\/s \| link Mbit\/s \| MB to cross \| limit s \(bytes\*8\/bandwidth\) \| measured total s \| total \/ limit \|/;
  assert.match(md, head);
  assert.match(md, /\| random-state service 16 MiB \| 5 \| 5 \| 52\.6 \| 84\.21 \| 102\.67 \| 1\.22 \|/);
  assert.match(md, /\| workload \| rule \| link Mbit\/s \| MB to cross \|/);
  const csv = csvFiles(r);
  const [header, ...lines] = csv['bandwidth.csv']!.trim().split('\n');
  const cols = header!.split(',');
  assert.deepEqual(cols.slice(cols.indexOf('total_ms'), cols.indexOf('total_ms') + 4), ['total_ms', 'link_mbit', 'bytes_to_cross', 'wire_limit_ms']);
  const row = lines.map((x) => x.split(',')).find((c) => c[cols.indexOf('bytes_to_cross')] === '52629880')!;
  assert.equal(row[cols.indexOf('wire_limit_ms')], '84208');
  assert.ok(csv['decision.csv']!.split('\n')[0]!.includes('wire_limit_ms'));
  assert.ok(!csv['rounds.csv']!.split('\n')[0]!.includes('wire_limit_ms'));
});

test('a migration row records its link, the bytes to cross and their limit (results.json)', () => {
  const report = {
    ...newReport({
      id: 'm',
      container: 'c',
      from: 'a',
      to: 'b',
      policy: 'model',
      codec: 'auto',
      serviceAddress: null,
      strategy: 'migrate',
      strategyReason: '',
    }),
    totalMs: 3000,
    downtimeMs: 900,
    bytesSent: 2_500_000,
    rounds: [1_000_000, 1_500_000].map((sentBytes, i) => ({
      index: i + 1,
      final: i === 1,
      sentBytes,
      pagesChanged: 1,
      pagesScanned: 2,
      sendMs: 1,
      stallMs: 0,
    })),
  } as unknown as MigrationReport;
  const client = { clientGapMs: null, rttMs: null, clientNote: null };
  const row = rowOf(report, { scenario: 'bandwidth', rep: 1, workload: 'w', params: { mbit: 10 }, policy: 'model', linkMbit: 10 }, client);
  assert.deepEqual([row.linkMbit, row.bytesToCross, row.wireLimitMs], [10, 2_500_000, 2000]);
  const without = rowOf(report, { scenario: 'rounds', rep: 1, workload: 'w', params: { rounds: 1 }, policy: 'rounds' }, client);
  assert.equal('wireLimitMs' in without, false);
});
