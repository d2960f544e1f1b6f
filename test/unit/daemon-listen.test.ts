import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from '../../src/daemon/server.js';
import { DaemonDb } from '../../src/daemon/db.js';
import { ConflictError } from '../../src/util/errors.js';
import { makeFixture } from './daemon-fixtures.js';

/** A real HTTP GET over a unix socket. */
function getUnix(socketPath: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('one app serves a TCP port and a unix socket at once; close stops both', async (t) => {
  const fx0 = makeFixture();
  const socket = join(fx0.dir, 'run', 'api.sock');
  const fx = makeFixture({ listen: [{ host: '127.0.0.1', port: 0 }, { socket }] });
  t.after(() => {
    fx0.cleanup();
    fx.cleanup();
  });
  const d = await startDaemon({ config: fx.config, logger: false });
  let closed = false;
  t.after(async () => {
    if (!closed) await d.close();
  });

  assert.equal(d.addresses.length, 2);
  const tcp = d.addresses[0]!;
  assert.match(tcp, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(tcp, 'http://127.0.0.1:0');
  assert.equal(d.addresses[1], `unix:${socket}`);
  assert.equal(statSync(socket).mode & 0o777, 0o600);

  const viaTcp = await fetch(`${tcp}/healthz`);
  assert.equal(viaTcp.status, 200);
  assert.deepEqual(await viaTcp.json(), { ok: true, node: 'alpha' });
  const viaUnix = await getUnix(socket, '/v1/info', { authorization: `Bearer ${fx.config.token}` });
  assert.equal(viaUnix.status, 200);
  assert.equal(JSON.parse(viaUnix.body).engine.reachable, false);
  const unauth = await getUnix(socket, '/v1/info');
  assert.equal(unauth.status, 401);

  // The start is on record, readable by another connection while the daemon runs (WAL).
  const reader = DaemonDb.open(fx.config.dataDir, { readonly: true });
  const starts = reader.events({ kind: 'daemon.start' });
  assert.equal(starts.length, 1);
  assert.deepEqual(starts[0]!.data.addresses, d.addresses);
  reader.close();

  await d.close();
  closed = true;
  await assert.rejects(fetch(`${tcp}/healthz`));
  await assert.rejects(getUnix(socket, '/healthz'));
  assert.equal(existsSync(socket), false, 'socket file removed on close');

  const after = DaemonDb.open(fx.config.dataDir, { readonly: true });
  assert.deepEqual(
    after.events().map((e) => e.kind),
    ['daemon.stop', 'daemon.start'],
  );
  after.close();
});

test('a stale socket left by a killed process is replaced', async (t) => {
  const fx0 = makeFixture();
  const socket = join(fx0.dir, 'stale.sock');
  const fx = makeFixture({ listen: [{ socket }] });
  t.after(() => {
    fx0.cleanup();
    fx.cleanup();
  });
  // A process that listens and dies by SIGKILL leaves its socket file behind.
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => console.log('ready'))`]);
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('error', reject);
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(statSync(socket).isSocket(), 'stale socket exists');

  const d = await startDaemon({ config: fx.config, logger: false });
  t.after(() => d.close());
  const res = await getUnix(socket, '/healthz');
  assert.equal(res.status, 200);
});

test('a live socket or a regular file at the socket path is refused', async (t) => {
  const fx0 = makeFixture();
  const live = join(fx0.dir, 'live.sock');
  const plain = join(fx0.dir, 'plain.sock');
  writeFileSync(plain, 'not a socket');
  const other = net.createServer();
  await new Promise<void>((r) => other.listen(live, r));
  t.after(async () => {
    await new Promise((r) => other.close(r));
    fx0.cleanup();
  });
  for (const [socket, pattern] of [
    [live, /another process is listening/],
    [plain, /is not a unix socket/],
  ] as const) {
    const fx = makeFixture({ listen: [{ host: '127.0.0.1', port: 0 }, { socket }] });
    t.after(() => fx.cleanup());
    await assert.rejects(startDaemon({ config: fx.config, logger: false }), (err: unknown) => {
      assert.ok(err instanceof ConflictError);
      assert.match(err.message, pattern);
      return true;
    });
  }
  assert.ok(existsSync(plain), 'the regular file was not deleted');
});

test('/v1/peers reports each peer without failing and records it', async (t) => {
  const fxB = makeFixture({ node: 'beta' });
  const b = await startDaemon({ config: fxB.config, logger: false });
  t.after(async () => {
    await b.close();
    fxB.cleanup();
  });
  // A closed port for gamma; delta points at beta's URL (answers with the wrong name).
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
  const fxA = makeFixture({
    token: fxB.config.token,
    peers: [
      { name: 'beta', url: b.addresses[0]! },
      { name: 'gamma', url: `http://127.0.0.1:${closedPort}` },
      { name: 'delta', url: b.addresses[0]! + '/' },
    ],
  });
  const a = await startDaemon({ config: fxA.config, logger: false });
  t.after(async () => {
    await a.close();
    fxA.cleanup();
  });
  const res = await fetch(`${a.addresses[0]}/v1/peers`, { headers: { authorization: `Bearer ${fxA.config.token}` } });
  assert.equal(res.status, 200);
  const peers = (await res.json()) as { name: string; ok: boolean; error?: string; node?: string; lastSeen: string | null }[];
  const by = Object.fromEntries(peers.map((p) => [p.name, p]));
  assert.equal(by.beta!.ok, true, by.beta!.error);
  assert.equal(by.beta!.node, 'beta');
  assert.ok(by.beta!.lastSeen);
  assert.equal(by.gamma!.ok, false);
  assert.match(by.gamma!.error!, /ECONNREFUSED/);
  assert.equal(by.gamma!.lastSeen, null);
  assert.equal(by.delta!.ok, false);
  assert.match(by.delta!.error!, /answers as node 'beta'/);

  const db = DaemonDb.open(fxA.config.dataDir, { readonly: true });
  t.after(() => db.close());
  const rows = Object.fromEntries(db.peers().map((p) => [p.name, p]));
  assert.ok(rows.beta!.lastSeen);
  assert.equal(rows.beta!.lastError, null);
  assert.match(rows.gamma!.lastError!, /ECONNREFUSED/);
});

test('a peer with a different token is reported as unauthorized', async (t) => {
  const fxB = makeFixture({ node: 'beta' });
  const b = await startDaemon({ config: fxB.config, logger: false });
  t.after(async () => {
    await b.close();
    fxB.cleanup();
  });
  const fxA = makeFixture({ peers: [{ name: 'beta', url: b.addresses[0]! }] });
  const a = await startDaemon({ config: fxA.config, logger: false });
  t.after(async () => {
    await a.close();
    fxA.cleanup();
  });
  const res = await a.app.inject({ method: 'GET', url: '/v1/peers', headers: { authorization: `Bearer ${fxA.config.token}` } });
  const [beta] = res.json() as { ok: boolean; error: string }[];
  assert.equal(beta!.ok, false);
  assert.match(beta!.error, /HTTP 401: invalid bearer token/);
});
