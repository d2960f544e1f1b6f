// The measuring client's new-connection-per-request HTTP mode (what a stream of short-lived
// clients sees through a handoff by re-creation), against the real handoff service run with
// node on 127.0.0.1; and the health probe a destination uses on a recreated instance.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import http from 'node:http';
import net from 'node:net';
import { startLocalService } from '../helpers/handoff-service.js';
import { runClient, startClient } from '../../src/client/index.js';
import { clientOptions } from '../../src/cli/commands/client.js';
import { probeOnce } from '../../src/migration/recreate-health.js';

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'exit');
}

test('new connection per request: every request answered on a connection of its own; survived', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  try {
    const r = await runClient({ target: '127.0.0.1', tcp: false, httpPort: svc.httpPort, intervalMs: 20, durationMs: 1500, newConnectionPerRequest: true });
    const h = r.sessions.http!;
    assert.ok(h.sent >= 20, `sent ${h.sent}`);
    assert.equal(h.lost, 0);
    assert.deepEqual(h.errors, []);
    assert.equal(h.answered, h.sent);
    // One connection per answered request, each with its own local port, all closed at the end.
    assert.equal(h.connections.length, h.answered, 'a connection per request');
    assert.equal(new Set(h.connections.map((c) => c.localPort)).size, h.connections.length, 'distinct local ports');
    assert.equal(h.reconnects, 0);
    assert.ok(h.survived, 'survived: all answered, no error');
    assert.ok(h.served.continuous, 'one process answered them all');
    assert.ok(r.ok);
  } finally {
    await kill(svc.child);
  }
});

test('the keep-alive mode (default) still uses one connection for the whole run', { timeout: 20_000 }, async () => {
  const svc = await startLocalService();
  try {
    const r = await runClient({ target: '127.0.0.1', tcp: false, httpPort: svc.httpPort, intervalMs: 20, durationMs: 800 });
    assert.equal(r.sessions.http!.connections.length, 1);
    assert.ok(r.sessions.http!.survived);
  } finally {
    await kill(svc.child);
  }
});

test(
  'new connection per request through a restart of the service: failures counted, the session goes on, the new instance answers',
  { timeout: 30_000 },
  async () => {
    const svc = await startLocalService();
    const client = startClient({
      target: '127.0.0.1',
      tcp: false,
      httpPort: svc.httpPort,
      intervalMs: 20,
      durationMs: 20_000,
      newConnectionPerRequest: true,
      connectTimeoutMs: 1000,
    });
    try {
      assert.equal(await client.ready, true);
      await sleep(400);
      await kill(svc.child);
      await sleep(300); // refused connections meanwhile
      const again = await startLocalService({ httpPort: svc.httpPort });
      try {
        await sleep(600);
      } finally {
        client.stop();
        const r = await client.done;
        await kill(again.child);
        const h = r.sessions.http!;
        assert.ok(h.errors.length > 0, 'requests during the outage failed and were counted');
        assert.ok(
          h.errors.some((e) => e.code === 'ECONNREFUSED'),
          `errors: ${h.errors.map((e) => e.code).join(',')}`,
        );
        assert.equal(h.survived, false, 'not survived: requests failed');
        assert.equal(h.instances.length, 2, 'answered by the old and the new instance');
        assert.equal(h.served.continuous, false, 'the new instance counts from 1 again');
        const lastReply = Math.max(...h.connections.map((c) => c.openedAtMs));
        assert.ok(lastReply > h.errors[h.errors.length - 1]!.atMs, 'requests answered after the outage: the session did not end');
      }
    } finally {
      client.stop();
    }
  },
);

test('new connection per request: a silent request times out (recorded) and the next one goes on', { timeout: 30_000 }, async () => {
  const svc = await startLocalService();
  const client = startClient({
    target: '127.0.0.1',
    tcp: false,
    httpPort: svc.httpPort,
    intervalMs: 20,
    durationMs: 20_000,
    newConnectionPerRequest: true,
    requestTimeoutMs: 400,
  });
  try {
    assert.equal(await client.ready, true);
    svc.child.kill('SIGSTOP'); // the kernel still accepts connections; nobody answers
    await sleep(1000);
    svc.child.kill('SIGCONT');
    await sleep(800);
  } finally {
    client.stop();
  }
  const r = await client.done;
  await kill(svc.child);
  const h = r.sessions.http!;
  const timeouts = h.errors.filter((e) => e.code === 'request_timeout');
  assert.ok(timeouts.length >= 1 && timeouts.length <= 3, `request timeouts: ${h.errors.map((e) => e.code).join(',')}`);
  const lastTimeout = timeouts[timeouts.length - 1]!.atMs;
  assert.ok(
    h.connections.some((c) => c.openedAtMs > lastTimeout + 100),
    'requests went on after the pause',
  );
  assert.ok(h.answered >= 20, `answered ${h.answered}`);
});

test('cloudlet client --new-connection-per-request maps to the option', () => {
  const base = { target: 'x', tcpPort: '7000', httpPort: '8080', interval: '20ms', tcp: true, http: true, window: '1', grace: '1s' };
  assert.equal(clientOptions({ ...base, newConnectionPerRequest: true }).newConnectionPerRequest, true);
  assert.equal(clientOptions(base).newConnectionPerRequest, undefined);
});

test('health probe: HTTP 2xx passes, other statuses and refused connections fail with the reason; TCP connect', { timeout: 10_000 }, async () => {
  const server = http.createServer((req, res) => {
    res.statusCode = req.url === '/healthz' ? 200 : 503;
    res.end('x');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  try {
    assert.equal(await probeOnce('127.0.0.1', { http: { port, path: '/healthz' } }), null);
    assert.equal(await probeOnce('127.0.0.1', { http: { port, path: '/not-ready' } }), 'HTTP 503');
    assert.equal(await probeOnce('127.0.0.1', { tcp: { port } }), null);
  } finally {
    server.close();
  }
  await once(server, 'close');
  assert.match((await probeOnce('127.0.0.1', { http: { port, path: '/healthz' } })) ?? '', /ECONNREFUSED/);
  assert.match((await probeOnce('127.0.0.1', { tcp: { port } })) ?? '', /ECONNREFUSED/);
});
