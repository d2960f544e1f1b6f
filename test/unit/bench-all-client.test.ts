// `bench all` under a client (issue 16): the figures a migration row takes from the client's
// report (clientFigures, on synthetic per-request samples) and how the report renders them;
// a results.json of version 1 (no client) still renders, without the client columns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLIENT_NOTES, clientFigures } from '../../src/bench/all/client-figures.js';
import { csvFiles, hasClientFigures, readResults, reportMarkdown } from '../../src/bench/all/report.js';
import { RESULTS_VERSION, type BenchAllResult, type MigrationRow } from '../../src/bench/all/types.js';
import { newReport, type MigrationReport } from '../../src/migration/types.js';
import type { ClientReport, RequestSample, SessionReport } from '../../src/client/types.js';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'bench-all', 'results.json');
const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(T0 + ms).toISOString();

/** A request every 20 ms until endMs, answered after rtt ms; one sent in the silence is answered at its end + rtt. */
function samples(endMs: number, rtt: number, silence: { from: number; to: number } | null): RequestSample[] {
  const out: RequestSample[] = [];
  let n = 0;
  for (let t = 0; t < endMs; t += 20) {
    const held = silence !== null && t >= silence.from && t < silence.to;
    const replied = held ? silence.to + rtt : t + rtt;
    out.push({ n: ++n, sentAtMs: t, repliedAtMs: replied, latencyMs: replied - t, served: n, instance: 'x' });
  }
  return out;
}

function session(kind: 'tcp' | 'http', s: RequestSample[] | undefined): SessionReport {
  return {
    kind,
    target: '10.240.1.254',
    port: 8080,
    sent: s?.length ?? 0,
    answered: s?.length ?? 0,
    lost: 0,
    lostNumbers: [],
    answeredInGrace: 0,
    errors: [],
    reconnects: 0,
    connections: [],
    latencyMs: null,
    largestGap: null,
    topGaps: [],
    served: { first: 1, last: s?.length ?? 0, continuous: true, jumps: [], resets: [] },
    instances: ['x'],
    sequence: { duplicates: [], outOfOrder: [], unexpected: [] },
    survived: true,
    ...(s ? { samples: s } : {}),
  };
}

function client(durationMs: number, sessions: ClientReport['sessions']): ClientReport {
  return {
    target: '10.240.1.254',
    startedAt: iso(0),
    endedAt: iso(durationMs),
    durationMs,
    intervalMs: 20,
    stoppedBy: 'signal',
    readyAtMs: 10,
    sessions,
    ok: true,
  };
}

function migration(startMs: number, endMs: number, downtimeMs: number): MigrationReport {
  const r = newReport({
    id: 'm',
    container: 'svc',
    from: 'a',
    to: 'b',
    policy: 'adaptive',
    codec: 'none',
    serviceAddress: '10.240.1.254',
    strategy: 'migrate',
    strategyReason: 'test',
  });
  return { ...r, state: 'done', startedAt: iso(startMs), finishedAt: iso(endMs), downtimeMs, totalMs: endMs - startMs };
}

test('clientFigures: the silence around the migration and the round trip of the second before it', () => {
  // Probe from 0 to 6 s; migration 1.2 s to 4 s, frozen from 3 s to 3.8 s; replies after 4 ms.
  const c = client(6000, { http: session('http', samples(6000, 4, { from: 3000, to: 3800 })) });
  const f = clientFigures(c, migration(1200, 4000, 800));
  // The last reply before the freeze came at 2984 ms, the first after it at 3804 ms.
  assert.deepEqual(f, { clientGapMs: 820, rttMs: 4, clientNote: null });
});

test('clientFigures: the longer silence of the TCP and HTTP sessions counts', () => {
  const c = client(6000, {
    tcp: session('tcp', samples(6000, 2, { from: 3000, to: 3900 })),
    http: session('http', samples(6000, 4, { from: 3000, to: 3800 })),
  });
  const f = clientFigures(c, migration(1200, 4000, 800));
  assert.equal(f.clientGapMs, 920);
  assert.equal(f.rttMs, 3);
  assert.equal(f.clientNote, null);
});

test('clientFigures: no reply after the migration ended (load window over before the freeze) gives no gap, with the reason', () => {
  // The client's requests stop at 5 s; the migration ends at 9 s.
  const c = client(5000, { http: session('http', samples(5000, 4, null)) });
  const f = clientFigures(c, migration(500, 9000, 2500));
  assert.equal(f.clientGapMs, null);
  assert.equal(f.clientNote, CLIENT_NOTES.notAfter);
  // The round trip before the migration is still known.
  assert.equal(f.rttMs, 4);
});

test('clientFigures: a report without per-request samples gives nothing', () => {
  const f = clientFigures(client(6000, { http: session('http', undefined) }), migration(1200, 4000, 800));
  assert.deepEqual(f, { clientGapMs: null, rttMs: null, clientNote: CLIENT_NOTES.noSamples });
});

test('a results.json of version 1 renders as before: rows without client figures, no client columns', async () => {
  const r = await readResults(FIXTURE);
  assert.equal(r.version, 1);
  assert.equal(hasClientFigures(r), false);
  for (const x of [...r.rounds, ...r.bandwidth]) {
    assert.equal(x.clientGapMs, null);
    assert.equal(x.clientNote, CLIENT_NOTES.noClient);
  }
  const md = reportMarkdown(r);
  assert.ok(!md.includes('client gap'));
  assert.ok(!csvFiles(r)['bandwidth.csv']!.includes('client_gap_ms'));
});

test('version 2 rows: the client gap (median) beside the downtime, its RTT, how it is measured, and why some are missing', async () => {
  const v1 = await readResults(FIXTURE);
  const withClient = (rows: MigrationRow[], gapOf: (x: MigrationRow, i: number) => number | null): MigrationRow[] =>
    rows.map((x, i) => {
      const gap = gapOf(x, i);
      return { ...x, clientGapMs: gap, rttMs: 1.5, clientNote: gap === null ? CLIENT_NOTES.notAfter : null };
    });
  const r: BenchAllResult = {
    ...v1,
    version: RESULTS_VERSION,
    rounds: withClient(v1.rounds, (x) => x.downtimeMs + 100),
    alpha: withClient(v1.alpha, (_, i) => (i === 0 ? null : 2000)),
    bandwidth: withClient(v1.bandwidth, (x) => x.downtimeMs + 50),
    decision: withClient(v1.decision, (x) => x.downtimeMs + 20),
  };
  assert.equal(hasClientFigures(r), true);
  const md = reportMarkdown(r);
  assert.match(md, /\| downtime s \| client gap s \(median\) \| client RTT ms \|/);
  assert.match(md, /"client gap" is the longest silence between two consecutive replies/);
  // The counter at 5 Mbit/s: one run, its gap = its downtime + 50 ms, in seconds.
  const bb = v1.bandwidth.find((x) => x.workload === 'busybox counter' && x.params.mbit === 5)!;
  const row = md.split('\n').find((l) => l.startsWith('| busybox counter | 5 |'))!;
  const cells = row.split('|').map((c) => c.trim());
  // | workload | Mbit/s | reps | total s | downtime s | client gap s | client RTT ms |
  assert.equal(cells[5], (bb.downtimeMs / 1000).toFixed(2));
  assert.equal(cells[6], ((bb.downtimeMs + 50) / 1000).toFixed(2));
  assert.equal(cells[7], '1.5');
  // A group where only some runs have a gap says how many; the missing one's reason is listed.
  assert.match(md, /\| 2\.00 \(1 of 2\) \|/);
  assert.ok(md.includes(`- No client gap for 1 migration(s) (alpha): ${CLIENT_NOTES.notAfter}.`));
  const csv = csvFiles(r)['bandwidth.csv']!.split('\r\n');
  const head = csv[0]!.split(',');
  const i = head.indexOf('client_gap_ms');
  assert.equal(head[i - 1], 'downtime_ms');
  assert.equal(head[i + 1], 'rtt_ms');
  assert.equal(csv.length - 2, r.bandwidth.length);
});
