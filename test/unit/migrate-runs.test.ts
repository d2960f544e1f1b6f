// `bench migrate --repeat N` (issue 16): the pages the stateful service's GET /touch reads,
// the client's --http-path (against the real service script on 127.0.0.1), each handoff's
// run as the client saw it, the targets counted over runs, the bench's address choice and
// its text and Markdown reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { STATEFUL_SERVICE_SCRIPT, touchPages } from '../../src/workloads/stateful-service.js';
import { runClient, startClient } from '../../src/client/index.js';
import { requestPath } from '../../src/client/http-session.js';
import { UsageError } from '../../src/util/errors.js';
import {
  gapCheckTarget,
  migrateRuns,
  pickFreeAddress,
  prevailingRestoreMode,
  summarizeMigrateRuns,
  target,
  type MigrateRun,
} from '../../src/bench/migrate-runs.js';
import { migrateBenchMarkdown, migrateBenchText } from '../../src/bench/migrate-report.js';
import type { MigrateBenchResult, ScenarioResult } from '../../src/bench/migrate.js';
import { newReport, type MigrationReport } from '../../src/migration/types.js';
import type { ClientReport, RequestSample, SessionReport } from '../../src/client/types.js';
import { hostAddresses } from '../../src/network/service-network.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(T0 + ms).toISOString();

test('touchPages: k pages a stride apart over the whole state, shifted by a per-request offset', () => {
  const total = 65536; // 256 MiB of 4 KiB pages
  const p0 = touchPages(total, 64, 0);
  assert.equal(p0.length, 64);
  const stride = total / 64;
  assert.deepEqual(p0.slice(0, 3), [0, stride, 2 * stride]);
  // The last page read lies in the last stride: the whole state is spanned.
  assert.ok(p0[63]! >= total - stride && p0[63]! < total);
  for (let seq = 0; seq < 50; seq++) {
    const p = touchPages(total, 64, seq);
    assert.ok(
      p.every((x) => Number.isInteger(x) && x >= 0 && x < total),
      `seq ${seq}: a page outside the state`,
    );
    for (let i = 1; i < p.length; i++) assert.equal(p[i]! - p[i - 1]!, stride);
  }
  // Successive requests read other pages, and `stride` requests read every page once.
  assert.notDeepEqual(touchPages(total, 64, 1), p0);
  const offsets = new Set<number>();
  for (let seq = 0; seq < stride; seq++) offsets.add(touchPages(total, 64, seq)[0]!);
  assert.equal(offsets.size, stride);
  // Successive requests land far apart inside the stride, not on neighbouring pages.
  assert.ok(Math.abs(touchPages(total, 64, 1)[0]! - p0[0]!) > 1);
  // k is bounded by the state; an uneven state still stays inside it.
  assert.deepEqual(touchPages(4, 64, 3), [0, 1, 2, 3]);
  assert.ok(touchPages(1000, 7, 123).every((x) => x < 1000));
  assert.equal(touchPages(1000, 0, 0).length, 1);
});

test('requestPath adds n=N to the query, whatever the path', () => {
  assert.equal(requestPath('/req', 7), '/req?n=7');
  assert.equal(requestPath('/touch?pages=64', 7), '/touch?pages=64&n=7');
  assert.equal(requestPath('/cgi-bin/req', 1), '/cgi-bin/req?n=1');
});

test('the client refuses an HTTP path that is not one', () => {
  for (const httpPath of ['touch', '/a b', '/x#y']) {
    assert.throws(() => startClient({ target: '127.0.0.1', tcp: false, count: 1, httpPath }), UsageError);
  }
});

async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

test('the stateful service answers GET /touch as the client expects (served +1 per request, one instance), read-only', { timeout: 30_000 }, async () => {
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', STATEFUL_SERVICE_SCRIPT], {
    env: { ...process.env, STATE_MB: '2', PORT: String(port), DIRTY_PER_REQUEST: '16' },
    stdio: 'ignore',
  });
  try {
    const get = async (path: string) => (await fetch(`http://127.0.0.1:${port}${path}`)).json() as Promise<Record<string, unknown>>;
    for (let i = 0; ; i++) {
      const up = await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      assert.ok(i < 100, 'the service did not start');
      await sleep(50);
    }
    const before = await get('/checksum');
    const report = await runClient({ target: '127.0.0.1', httpPort: port, tcp: false, count: 30, intervalMs: 5, httpPath: '/touch?pages=16' });
    const h = report.sessions.http!;
    assert.equal(h.answered, 30);
    assert.deepEqual(h.errors, []);
    assert.ok(h.served.continuous);
    assert.equal(h.served.first, 1);
    assert.equal(h.served.last, 30);
    assert.equal(h.instances.length, 1);
    assert.ok(h.survived);
    const one = await get('/touch?pages=16&n=99');
    assert.equal(one.n, 99);
    assert.equal(one.pages, 16);
    assert.equal(typeof one.checksum, 'number');
    // Touching reads: the state and the request counter of GET / are as they were.
    assert.deepEqual(await get('/checksum'), before);
  } finally {
    child.kill('SIGKILL');
  }
});

/** A request every 20 ms answered after `rtt` ms, except those sent in a silence: answered at its end + rtt. */
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

function httpSession(s: RequestSample[]): SessionReport {
  return {
    kind: 'http',
    target: '10.240.1.254',
    port: 8080,
    sent: s.length,
    answered: s.length,
    lost: 0,
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

function clientReport(s: RequestSample[], durationMs: number): ClientReport {
  return {
    target: '10.240.1.254',
    startedAt: iso(0),
    endedAt: iso(durationMs),
    durationMs,
    intervalMs: 20,
    stoppedBy: 'signal',
    readyAtMs: 10,
    sessions: { http: httpSession(s) },
    ok: true,
  };
}

function migration(o: {
  from: string;
  to: string;
  startMs: number;
  endMs: number;
  downtimeMs: number;
  postCopyMs?: number | null;
  mode?: 'lazy' | 'eager' | null;
}): MigrationReport {
  const r = newReport({
    id: `m-${o.startMs}`,
    container: 'svc',
    from: o.from,
    to: o.to,
    policy: 'adaptive',
    codec: 'lz4',
    serviceAddress: '10.240.1.254',
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
    totalMs: o.endMs - o.startMs,
    bytesSent: 3e8,
    precopyRounds: 2,
    postCopyMs: o.postCopyMs ?? null,
    restoreMode: o.mode === undefined ? 'eager' : o.mode,
  };
}

test('migrateRuns: each handoff gets the silence overlapping it and the RTT of the second before it', () => {
  // Silences: 1000 ms in the first handoff (downtime 950: met), 1500 ms in the second (downtime
  // 1000: a post-copy stall after it, missed), and a 3 s one between them that is nobody's.
  const rtt = 20;
  const s = samples({
    endMs: 40_000,
    rtt,
    silences: [
      { from: 5000, to: 6000 },
      { from: 12_000, to: 15_000 },
      { from: 22_000, to: 23_500 },
    ],
  });
  const ms = [
    migration({ from: 'a', to: 'b', startMs: 3000, endMs: 7000, downtimeMs: 950, postCopyMs: 80, mode: 'lazy' }),
    migration({ from: 'b', to: 'a', startMs: 20_000, endMs: 25_000, downtimeMs: 1000, postCopyMs: 400, mode: null }),
  ];
  const runs = migrateRuns(clientReport(s, 40_000), ms);
  assert.equal(runs.length, 2);
  const [r1, r2] = runs as [MigrateRun, MigrateRun];
  assert.deepEqual([r1.run, r1.from, r1.to, r2.from, r2.to], [1, 'a', 'b', 'b', 'a']);
  assert.equal(r1.clientGapMs, 1020);
  assert.equal(r1.rttMs, rtt);
  assert.equal(r1.gapMinusDowntimeMs, 70);
  assert.equal(r1.gapWithinRttOfDowntime, true);
  assert.equal(r1.restoreMode, 'lazy');
  assert.equal(r1.postCopyMs, 80);
  assert.equal(r2.clientGapMs, 1520, 'the 3 s silence between the handoffs is not attributed');
  assert.equal(r2.gapWithinRttOfDowntime, false);
  // An older report without restoreMode: a post-copy time says lazy.
  assert.equal(r2.restoreMode, 'lazy');
  assert.equal(r2.bytesSent, 3e8);

  const sum = summarizeMigrateRuns(runs);
  assert.equal(sum.runs, 2);
  assert.equal(sum.clientGapMs!.median, 1270);
  assert.equal(sum.clientGapMs!.max, 1520);
  assert.equal(sum.downtimeMs!.min, 950);
  assert.equal(sum.postCopyMs!.n, 2);

  // The miss is kept and counted, not dropped.
  const t = gapCheckTarget(runs);
  assert.deepEqual([t.value, t.met, t.runs, t.ok], [1, 1, 2, false]);
  assert.equal(gapCheckTarget([r1]).ok, true);
  assert.equal(gapCheckTarget([]).ok, false, 'no run measured is no target met');
});

test('migrateRuns: a client without an HTTP session measures no gap, and that run misses the check', () => {
  const report: ClientReport = { ...clientReport([], 10_000), sessions: {} };
  const [r] = migrateRuns(report, [migration({ from: 'a', to: 'b', startMs: 1000, endMs: 2000, downtimeMs: 500 })]);
  assert.equal(r!.clientGapMs, null);
  assert.equal(r!.rttMs, null);
  assert.equal(r!.gapWithinRttOfDowntime, false);
});

test('target, prevailingRestoreMode, pickFreeAddress', () => {
  assert.equal(target('x <= 1200', 1200, 1200).ok, true);
  assert.equal(target('x <= 1200', 1200.5, 1200).ok, false);
  assert.equal(target('x <= 1200', null, 1200).ok, false);
  assert.equal(prevailingRestoreMode([{ restoreMode: 'lazy' }, { restoreMode: 'lazy' }, { restoreMode: 'eager' }]), 'lazy');
  assert.equal(prevailingRestoreMode([{ restoreMode: 'eager' }, { restoreMode: null }]), 'eager');
  assert.equal(prevailingRestoreMode([{ restoreMode: null }]), null);
  const range = hostAddresses('10.240.1.0/24');
  assert.equal(pickFreeAddress(range, new Set()), '10.240.1.254');
  assert.equal(pickFreeAddress(range, new Set(['10.240.1.254', '10.240.1.253'])), '10.240.1.252');
  assert.equal(pickFreeAddress(['10.240.1.1'], new Set(['10.240.1.1'])), null);
});

test('the text and Markdown reports show every run, the summaries, the floor mode and the counted targets', () => {
  const s = samples({
    endMs: 20_000,
    rtt: 20,
    silences: [
      { from: 5000, to: 6000 },
      { from: 12_000, to: 13_800 },
    ],
  });
  const ms = [
    migration({ from: 'a', to: 'b', startMs: 4000, endMs: 7000, downtimeMs: 950, postCopyMs: 80, mode: 'lazy' }),
    migration({ from: 'b', to: 'a', startMs: 11_000, endMs: 14_000, downtimeMs: 1000, postCopyMs: 90, mode: 'lazy' }),
  ];
  const runs = migrateRuns(clientReport(s, 20_000), ms);
  const summary = summarizeMigrateRuns(runs);
  const sc: ScenarioResult = {
    name: '256 MiB service',
    network: 'holder',
    probe: { address: '10.240.1.254', port: 8080, path: '/touch?pages=64', connectionPerRequest: false, intervalMs: 20, window: 8 },
    totalMs: summary.totalMs!.median,
    downtimeMs: summary.downtimeMs!.median,
    bytesSent: 3e8,
    precopyRounds: 2,
    stopReason: 'converged',
    report: ms[0]!,
    runs,
    summary,
    reports: ms,
    client: clientReport(s, 20_000),
    engineFloor: { node: 'a', checkpointMs: 500, installMs: 20, restoreMs: 400, floorMs: 900, restoreMode: 'lazy', postCopyMs: 120 },
    targets: [target('clientGapMs <= 1200 (median)', summary.clientGapMs!.median, 1200), gapCheckTarget(runs)],
  };
  const r: MigrateBenchResult = {
    bench: 'migrate',
    command: 'cloudlet bench migrate --repeat 2',
    date: iso(0),
    machine: { cores: 4, memoryGiB: 8, kernel: 'test' },
    link: { bandwidth: '100mbit', latency: '5ms', bps: 1e8 },
    repeat: 2,
    scenarios: [sc],
    busybox: { totalMs: null, downtimeMs: null },
    service256: {
      totalMs: sc.totalMs,
      downtimeMs: sc.downtimeMs,
      bytesSent: 3e8,
      stopAndCopyDowntimeMs: null,
      clientGapMs: summary.clientGapMs!.median,
      clientGapP95Ms: summary.clientGapMs!.p95,
    },
    allTargetsMet: false,
  };
  const text = migrateBenchText(r);
  assert.match(text, /a -> b\s+lazy\s+950\s+1020/);
  assert.match(text, /b -> a\s+lazy\s+1000\s+1820\s+820\s+20\s+MISSED/);
  assert.match(text, /client gap ms\s+1420\s+1820\s+1020\s+1820/);
  assert.match(text, /engine floor on a \(lazy\)/);
  assert.match(text, /runs missing clientGapMs - downtimeMs <= rttMs \+ 100\s+1 \(met by 1\/2 runs\)\s+NO/);
  const md = migrateBenchMarkdown(r, 'sudo cloudlet bench migrate --repeat 2');
  assert.match(md, /\| 2 \| b -> a \| lazy \| 1000 \| 1820 \| 820 \| 20 \| MISSED \|/);
  assert.match(md, /\| 256 MiB service \| client gap ms \| 1420 \| 1820 \| 1020 \| 1820 \| 2 \|/);
  assert.match(md, /\| 256 MiB service \(on a\) \| lazy \| 500 \| 400 \| 900 \| 120 \|/);
});
