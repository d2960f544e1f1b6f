// Repeated handoffs under one client: each migration gets the silence that overlaps its own
// time window (not a neighbour's, not one between migrations), the round trip of the second
// before it, and the check "gap - downtime <= RTT + margin"; runs that miss the check are
// counted, not dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GAP_RTT_MARGIN_MS,
  gapWithinRttOfDowntime,
  handoffRuns,
  largestGapIn,
  migrationWindow,
  rttBefore,
  summarizeHandoffRuns,
} from '../../src/bench/handoff-runs.js';
import { newReport, type MigrationReport } from '../../src/migration/types.js';
import type { ClientReport, RequestSample, SessionReport } from '../../src/client/types.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(T0 + ms).toISOString();

/**
 * A request every 20 ms from 0 to endMs, answered after `rtt` ms, except those sent inside a
 * silence [from, to): they are all answered at `to` + rtt (held, then let through).
 */
function samples(opts: { endMs: number; rtt: number; silences: { from: number; to: number }[] }): RequestSample[] {
  const out: RequestSample[] = [];
  let n = 0;
  for (let t = 0; t < opts.endMs; t += 20) {
    const s = opts.silences.find((x) => t >= x.from && t < x.to);
    const replied = s ? s.to + opts.rtt : t + opts.rtt;
    n++;
    out.push({ n, sentAtMs: t, repliedAtMs: replied, latencyMs: replied - t, served: n, instance: 'x' });
  }
  return out;
}

function session(kind: 'tcp' | 'http', s: RequestSample[], lost = 0): SessionReport {
  return {
    kind,
    target: '10.240.1.2',
    port: kind === 'tcp' ? 7000 : 8080,
    sent: s.length,
    answered: s.length - lost,
    lost,
    lostNumbers: [],
    answeredInGrace: 0,
    errors: [],
    reconnects: 0,
    connections: [],
    latencyMs: null,
    largestGap: null,
    topGaps: [],
    served: { first: 1, last: s.length, continuous: true, jumps: [], resets: [] },
    instances: ['x'],
    sequence: { duplicates: [], outOfOrder: [], unexpected: [] },
    survived: true,
    samples: s,
  };
}

function client(sessions: { tcp?: SessionReport; http?: SessionReport }, durationMs: number): ClientReport {
  return {
    target: '10.240.1.2',
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

function migration(o: { from: string; to: string; startMs: number; endMs: number; downtimeMs: number }): MigrationReport {
  const r = newReport({
    id: `m-${o.startMs}`,
    container: 'svc',
    from: o.from,
    to: o.to,
    policy: 'adaptive',
    codec: 'lz4',
    serviceAddress: '10.240.1.2',
    strategy: 'migrate',
    strategyReason: 'test',
  });
  return {
    ...r,
    state: 'done',
    startedAt: iso(o.startMs),
    finishedAt: iso(o.endMs),
    downtimeMs: o.downtimeMs,
    restoreMs: 100,
    totalMs: o.endMs - o.startMs - 50,
    bytesSent: 1e6,
    precopyRounds: 2,
  };
}

test('migrationWindow puts the report wall clock on the client clock', () => {
  assert.deepEqual(migrationWindow(iso(0), { startedAt: iso(2500), finishedAt: iso(4100) }), { startMs: 2500, endMs: 4100 });
  assert.equal(migrationWindow(iso(1000), { startedAt: iso(2500), finishedAt: null }).endMs, Number.POSITIVE_INFINITY);
});

test('largestGapIn: the longest silence overlapping the window, not a longer one outside it', () => {
  // Replies every 20 ms except: a 500 ms silence at 1000 (outside) and a 300 ms one at 3000 (inside).
  const s = samples({
    endMs: 6000,
    rtt: 10,
    silences: [
      { from: 1000, to: 1500 },
      { from: 3000, to: 3300 },
    ],
  });
  assert.equal(largestGapIn(s, { startMs: 2500, endMs: 4000 }, 6000), 320);
  assert.equal(largestGapIn(s, { startMs: 800, endMs: 2000 }, 6000), 520);
  // A silence that starts before the window and ends inside it still belongs to it.
  assert.equal(largestGapIn(s, { startMs: 3100, endMs: 3200 }, 6000), 320);
  // Nothing answered: no gap.
  assert.equal(largestGapIn([{ n: 1, sentAtMs: 0, repliedAtMs: null, latencyMs: null, served: null, instance: null }], { startMs: 0, endMs: 10 }, 100), null);
});

test('largestGapIn: a session that falls silent for good is silent until the client stopped', () => {
  const s = samples({ endMs: 3000, rtt: 10, silences: [] }).filter((x) => x.sentAtMs < 2000);
  assert.equal(largestGapIn(s, { startMs: 2500, endMs: 2600 }, 5000), 5000 - (1980 + 10));
});

test('rttBefore: median latency of the requests sent in the second before, over both sessions', () => {
  const tcp = samples({ endMs: 3000, rtt: 10, silences: [] });
  const http = samples({ endMs: 3000, rtt: 30, silences: [] });
  assert.equal(rttBefore([tcp], 2000), 10);
  // 50 requests at 10 ms and 50 at 30 ms: the median is between them.
  assert.equal(rttBefore([tcp, http], 2000), 20);
  assert.equal(rttBefore([tcp], 0), null);
  // Requests sent after the start or before the second do not count.
  const slowBefore = tcp.map((x) => (x.sentAtMs < 1000 || x.sentAtMs >= 2000 ? { ...x, latencyMs: 500 } : x));
  assert.equal(rttBefore([slowBefore], 2000), 10);
});

test('gapWithinRttOfDowntime: the gap may exceed the downtime by the RTT plus the margin, no more', () => {
  assert.equal(gapWithinRttOfDowntime({ clientGapMs: 400 + 20 + GAP_RTT_MARGIN_MS, downtimeMs: 400, rttMs: 20 }), true);
  assert.equal(gapWithinRttOfDowntime({ clientGapMs: 400 + 20 + GAP_RTT_MARGIN_MS + 1, downtimeMs: 400, rttMs: 20 }), false);
  assert.equal(gapWithinRttOfDowntime({ clientGapMs: 300, downtimeMs: 400, rttMs: 20 }), true);
  assert.equal(gapWithinRttOfDowntime({ clientGapMs: null, downtimeMs: 400, rttMs: 20 }), false);
  assert.equal(gapWithinRttOfDowntime({ clientGapMs: 420, downtimeMs: 400, rttMs: null }), false);
});

test('handoffRuns: each migration gets its own gap and RTT; a miss is kept and counted', () => {
  // Three migrations; the client's silences: 330 ms in the first (downtime 300), 900 ms in the
  // second (downtime 400: a retransmission, a miss), none in the third, a long one between
  // the second and the third (outside every migration, must not be attributed).
  const silences = [
    { from: 3000, to: 3320 },
    { from: 8000, to: 8900 },
    { from: 11000, to: 12000 },
  ];
  const tcp = samples({ endMs: 18000, rtt: 10, silences });
  const http = samples({ endMs: 18000, rtt: 10, silences: silences.slice(0, 1) });
  const migrations = [
    migration({ from: 'a', to: 'b', startMs: 2000, endMs: 4000, downtimeMs: 300 }),
    migration({ from: 'b', to: 'a', startMs: 6000, endMs: 10000, downtimeMs: 400 }),
    migration({ from: 'a', to: 'b', startMs: 14000, endMs: 15000, downtimeMs: 5 }),
  ];
  const c = client({ tcp: session('tcp', tcp), http: session('http', http, 2) }, 18000);
  const runs = handoffRuns(c, migrations);
  assert.deepEqual(
    runs.map((r) => [r.run, r.from, r.to]),
    [
      [1, 'a', 'b'],
      [2, 'b', 'a'],
      [3, 'a', 'b'],
    ],
  );
  assert.deepEqual(
    runs.map((r) => r.tcpGapMs),
    [340, 920, 20],
  );
  assert.deepEqual(
    runs.map((r) => r.httpGapMs),
    [340, 20, 20],
  );
  assert.deepEqual(
    runs.map((r) => r.clientGapMs),
    [340, 920, 20],
  );
  assert.deepEqual(
    runs.map((r) => r.gapMinusDowntimeMs),
    [40, 520, 15],
  );
  assert.deepEqual(
    runs.map((r) => r.rttMs),
    [10, 10, 10],
  );
  assert.deepEqual(
    runs.map((r) => r.gapWithinRttOfDowntime),
    [true, false, true],
  );
  assert.equal(runs[0]!.restoreMs, 100);
  assert.equal(runs[0]!.precopyRounds, 2);

  const s = summarizeHandoffRuns(runs, c);
  assert.equal(s.runs, 3);
  assert.equal(s.metCheck, 2);
  assert.equal(s.missedCheck, 1);
  assert.equal(s.messagesLost, 2);
  assert.deepEqual(s.clientGapMs, { n: 3, median: 340, p95: 920, min: 20, max: 920 });
  assert.deepEqual(s.downtimeMs, { n: 3, median: 300, p95: 400, min: 5, max: 400 });
  assert.equal(s.gapMinusDowntimeMs!.median, 40);
});
