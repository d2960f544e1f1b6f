// The measuring client against the real handoff service: the service script runs with node as
// a child process on 127.0.0.1 (free ports), the client uses real sockets. The server is
// killed or paused by PID to make the failures the client must see.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import http from 'node:http';
import net from 'node:net';
import { startLocalService, type LocalService } from '../helpers/handoff-service.js';
import { runClient, startClient, formatSummary, formatTimeline } from '../../src/client/index.js';
import type { SessionReport } from '../../src/client/types.js';

type Service = LocalService;

async function killService(s: Service): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGKILL');
  await once(s.child, 'exit');
}

function assertClean(r: SessionReport): void {
  assert.equal(r.lost, 0, `${r.kind} lost ${r.lostNumbers.join(',')}`);
  assert.deepEqual(r.errors, [], `${r.kind} errors`);
  assert.equal(r.reconnects, 0);
  assert.equal(r.connections.length, 1);
  assert.equal(r.answered, r.sent);
  assert.ok(r.served.continuous, `${r.kind} served jumps ${JSON.stringify(r.served)}`);
  assert.equal(r.served.last! - r.served.first! + 1, r.answered, 'served goes up by one per answered request');
  assert.deepEqual(r.sequence, { duplicates: [], outOfOrder: [], unexpected: [] });
  assert.equal(r.instances.length, 1);
  assert.ok(r.survived);
}

test('a 2 s run against the service: every request answered, one connection each, served continuous', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  try {
    let readyCalls = 0;
    const r = await runClient({
      target: '127.0.0.1',
      tcpPort: svc.tcpPort,
      httpPort: svc.httpPort,
      intervalMs: 20,
      durationMs: 2000,
      onReady: () => readyCalls++,
    });
    assert.equal(r.stoppedBy, 'duration');
    assert.equal(readyCalls, 1);
    assert.ok(r.readyAtMs !== null && r.readyAtMs < 1000, `ready at ${r.readyAtMs}`);
    assert.ok(r.ok, formatSummary(r));
    for (const s of [r.sessions.tcp!, r.sessions.http!]) {
      assertClean(s);
      // 100 ticks in 2 s; a tick is skipped while the previous reply is outstanding.
      assert.ok(s.sent >= 50 && s.sent <= 101, `${s.kind} sent ${s.sent}`);
      assert.ok(s.latencyMs!.p50 < 50, `${s.kind} p50 ${s.latencyMs!.p50}`);
      assert.ok(s.largestGap!.ms < 400, `${s.kind} largest gap ${s.largestGap!.ms}`);
    }
    // The service counted exactly what this client sent (nobody else talks to it).
    assert.equal(r.sessions.tcp!.served.first, 1);
    assert.equal(r.sessions.http!.served.first, 1);
  } finally {
    await killService(svc);
  }
});

test('--count bounds each session; a window of 4 keeps several TCP requests in flight without loss', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  try {
    const r = await runClient({ target: '127.0.0.1', tcpPort: svc.tcpPort, httpPort: svc.httpPort, intervalMs: 2, count: 40, window: 4, durationMs: 10_000 });
    assert.equal(r.stoppedBy, 'count');
    assert.equal(r.sessions.tcp!.sent, 40);
    assert.equal(r.sessions.http!.sent, 40);
    assertClean(r.sessions.tcp!);
    assertClean(r.sessions.http!);
  } finally {
    await killService(svc);
  }
});

test('the service killed mid-run: errors and lost requests are reported, no reconnect without --reconnect', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  const handle = startClient({ target: '127.0.0.1', tcpPort: svc.tcpPort, httpPort: svc.httpPort, intervalMs: 20, durationMs: 8000 });
  assert.equal(await handle.ready, true);
  await sleep(300);
  // Stopped first, so that a request of each session is surely in flight when it dies.
  process.kill(svc.child.pid!, 'SIGSTOP');
  await sleep(150);
  await killService(svc);
  // A service back on the same ports must not be reconnected to silently.
  const again = await startLocalService({ tcpPort: svc.tcpPort, httpPort: svc.httpPort });
  const r = await handle.done;
  await killService(again);
  assert.equal(r.stoppedBy, 'sessions-ended', 'both sessions end on their own, long before the 8 s');
  assert.ok(r.durationMs < 4000, `ended after ${r.durationMs} ms`);
  assert.equal(r.ok, false);
  for (const s of [r.sessions.tcp!, r.sessions.http!]) {
    assert.equal(s.survived, false);
    assert.equal(s.reconnects, 0, `${s.kind} reconnected`);
    assert.equal(s.connections.length, 1, `${s.kind} opened a second connection`);
    assert.ok(s.errors.length >= 1, `${s.kind} reported no error`);
    assert.ok(['ECONNRESET', 'closed', 'EPIPE'].includes(s.errors[0]!.code), `${s.kind} error ${JSON.stringify(s.errors[0])}`);
    assert.ok(s.lost >= 1, `${s.kind} reported no loss`);
    assert.equal(s.sent, s.answered + s.lost);
  }
  assert.match(formatSummary(r), /DID NOT SURVIVE/);
});

test('with reconnect, a restarted service is reconnected to and counted; served restarts and is reported', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  const handle = startClient({ target: '127.0.0.1', tcpPort: svc.tcpPort, httpPort: svc.httpPort, intervalMs: 20, durationMs: 2500, reconnect: true });
  assert.equal(await handle.ready, true);
  await sleep(300);
  await killService(svc);
  const again = await startLocalService({ tcpPort: svc.tcpPort, httpPort: svc.httpPort });
  try {
    const r = await handle.done;
    assert.equal(r.stoppedBy, 'duration');
    for (const s of [r.sessions.tcp!, r.sessions.http!]) {
      assert.ok(s.reconnects >= 1, `${s.kind} reconnects ${s.reconnects}`);
      assert.equal(s.connections.length, s.reconnects + 1);
      assert.ok(s.errors.length >= 1);
      assert.equal(s.survived, false);
      assert.equal(s.served.continuous, false);
      assert.ok(s.served.resets.length >= 1, `${s.kind}: the new process starts served again`);
      assert.equal(s.instances.length, 2);
      assert.ok(s.answered > 0 && s.served.last! >= 1);
    }
  } finally {
    await killService(again);
  }
});

test('the service paused 500 ms (SIGSTOP/SIGCONT): one gap >= 450 ms, no loss, no error, no reconnect', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  try {
    const handle = startClient({ target: '127.0.0.1', tcpPort: svc.tcpPort, httpPort: svc.httpPort, intervalMs: 20, durationMs: 2000, samples: true });
    assert.equal(await handle.ready, true);
    await sleep(300);
    process.kill(svc.child.pid!, 'SIGSTOP');
    await sleep(500);
    process.kill(svc.child.pid!, 'SIGCONT');
    const r = await handle.done;
    assert.ok(r.ok, formatSummary(r));
    for (const s of [r.sessions.tcp!, r.sessions.http!]) {
      assertClean(s);
      assert.ok(s.largestGap!.ms >= 450 && s.largestGap!.ms < 1500, `${s.kind} largest gap ${s.largestGap!.ms}`);
      assert.ok(s.topGaps[1]!.ms < 300, `${s.kind}: only one long gap (${s.topGaps[1]!.ms})`);
      assert.ok(s.latencyMs!.max >= 400, `${s.kind}: the request caught in the pause waited (${s.latencyMs!.max})`);
      assert.equal(s.samples!.length, s.sent);
    }
    // The timeline shows the pause as blank columns inside the row.
    assert.match(formatTimeline(r, 100), /^tcp  \|[^|]*- {5,}-[^|]*\|$/m);
  } finally {
    await killService(svc);
  }
});

test('stop() and an abort signal end the run early with a report; a refused connection is an error, not a hang', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  try {
    const ac = new AbortController();
    const handle = startClient({ target: '127.0.0.1', tcpPort: svc.tcpPort, httpPort: svc.httpPort, durationMs: 10_000, signal: ac.signal });
    await handle.ready;
    ac.abort();
    const r = await handle.done;
    assert.equal(r.stoppedBy, 'signal');
    assert.ok(r.durationMs < 2000);
    assertClean(r.sessions.tcp!);
  } finally {
    await killService(svc);
  }
  // A port nobody listens on: take a free one and close it again.
  const srv = net.createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  const handle = startClient({ target: '127.0.0.1', tcpPort: port, http: false, durationMs: 5000 });
  const r = await handle.done;
  assert.equal(await handle.ready, false);
  assert.equal(r.stoppedBy, 'sessions-ended');
  assert.equal(r.readyAtMs, null);
  assert.equal(r.sessions.tcp!.errors[0]!.code, 'ECONNREFUSED');
  assert.equal(r.sessions.http, undefined);
});

test('the service answers HTTP on a kept-alive connection and its healthz', { timeout: 10_000 }, async () => {
  const svc = await startLocalService();
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      new Promise<{ status: number; body: string; port: number }>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port: svc.httpPort, path, agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body, port: req.socket!.localPort! }));
        });
        req.on('error', reject);
      });
    const a = await get('/healthz');
    const b = await get('/req?n=7');
    const c = await get('/req?n=x');
    agent.destroy();
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(b.body), { n: 7, served: 1, instance: JSON.parse(b.body).instance });
    assert.equal(c.status, 400);
    assert.equal(a.port, b.port, 'same connection');
  } finally {
    await killService(svc);
  }
});

test('a TCP port that does not speak the protocol (the HTTP port): one bad_reply error, the session ends', { timeout: 10_000 }, async () => {
  const svc = await startLocalService();
  try {
    const r = await runClient({ target: '127.0.0.1', tcpPort: svc.httpPort, http: false, durationMs: 3000 });
    const s = r.sessions.tcp!;
    assert.equal(r.stoppedBy, 'sessions-ended');
    assert.equal(s.errors.length, 1, JSON.stringify(s.errors));
    assert.equal(s.errors[0]!.code, 'bad_reply');
    assert.match(s.errors[0]!.message, /HTTP\/1\.1 400/);
    assert.equal(s.answered, 0);
    assert.equal(s.lost, s.sent);
  } finally {
    await killService(svc);
  }
});

/** The most requests of one session that were in flight at the same time (from its samples). */
function maxInFlight(s: SessionReport): number {
  const events = s.samples!.flatMap((x) => [
    { at: x.sentAtMs, d: 1 },
    { at: x.repliedAtMs ?? Infinity, d: -1 },
  ]);
  events.sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let max = 0;
  for (const e of events) max = Math.max(max, (now += e.d));
  return max;
}

test('a window of 4 on both sessions: a paused service lets it fill and no further; nothing lost', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  try {
    const handle = startClient({
      target: '127.0.0.1',
      tcpPort: svc.tcpPort,
      httpPort: svc.httpPort,
      intervalMs: 10,
      durationMs: 1500,
      window: 4,
      samples: true,
    });
    assert.equal(await handle.ready, true);
    await sleep(300);
    process.kill(svc.child.pid!, 'SIGSTOP');
    await sleep(300);
    process.kill(svc.child.pid!, 'SIGCONT');
    const r = await handle.done;
    for (const s of [r.sessions.tcp!, r.sessions.http!]) {
      assertClean(s);
      assert.equal(maxInFlight(s), 4, `${s.kind}: the paused service lets the window fill, and no further`);
    }
  } finally {
    await killService(svc);
  }
});

test('pipelined HTTP: the service killed mid-run loses the requests in flight, reported; no silent reconnect', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  const handle = startClient({ target: '127.0.0.1', tcp: false, httpPort: svc.httpPort, intervalMs: 10, durationMs: 8000, window: 4 });
  assert.equal(await handle.ready, true);
  await sleep(200);
  process.kill(svc.child.pid!, 'SIGSTOP');
  await sleep(150);
  await killService(svc);
  const again = await startLocalService({ tcpPort: svc.tcpPort, httpPort: svc.httpPort });
  const r = await handle.done;
  await killService(again);
  const s = r.sessions.http!;
  assert.equal(r.stoppedBy, 'sessions-ended');
  assert.equal(s.survived, false);
  assert.equal(s.connections.length, 1, 'no second connection');
  assert.ok(s.errors.length >= 1 && ['ECONNRESET', 'closed', 'EPIPE'].includes(s.errors[0]!.code), JSON.stringify(s.errors));
  assert.equal(s.lost, 4, 'the 4 requests in flight at the kill');
  assert.equal(s.sent, s.answered + s.lost);
});

test('pipelined HTTP puts the whole window on the wire: a server that holds its answers sees 4 requests first', { timeout: 10_000 }, async () => {
  // A server of the test's own: it answers nothing until 300 ms after the first request, then
  // answers every request it has read, in order. Requests queued in the client (not pipelined)
  // would reach it one by one; pipelined, the whole window is there before the first answer.
  let seenBeforeFirstAnswer = 0;
  let served = 0;
  const server = net.createServer((sock) => {
    let buf = '';
    let holding = true;
    const pending: number[] = [];
    const answer = (n: number) => {
      const body = JSON.stringify({ n, served: ++served, instance: 'wire-test' });
      sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    };
    sock.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const n = Number(/[?&]n=(\d+)/.exec(buf.slice(0, i))![1]);
        buf = buf.slice(i + 4);
        if (holding) {
          if (pending.length === 0) {
            setTimeout(() => {
              seenBeforeFirstAnswer = pending.length;
              holding = false;
              for (const m of pending.splice(0)) answer(m);
            }, 300);
          }
          pending.push(n);
        } else answer(n);
      }
    });
    sock.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  try {
    const r = await runClient({ target: '127.0.0.1', tcp: false, httpPort: port, intervalMs: 10, count: 20, window: 4, durationMs: 5000 });
    assert.equal(seenBeforeFirstAnswer, 4, 'requests on the wire before the first answer');
    assertClean(r.sessions.http!);
  } finally {
    server.close();
  }
});

test('GET /probe answers like /req from a counter of its own: a watching client does not shift the load counter', { timeout: 10_000 }, async () => {
  const svc = await startLocalService();
  try {
    const get = async (path: string) => JSON.parse(await (await fetch(`http://127.0.0.1:${svc.httpPort}${path}`)).text()) as { n: number; served: number };
    assert.deepEqual([(await get('/probe?n=7')).served, (await get('/probe?n=8')).served], [1, 2]);
    const req = await get('/req?n=1');
    assert.equal(req.served, 1, '/req counts only its own requests');
    assert.equal((await get('/probe?n=9')).n, 9);
  } finally {
    await killService(svc);
  }
});
