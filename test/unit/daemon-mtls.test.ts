// Mutual TLS between cloudlets: real HTTPS listeners on 127.0.0.1 with certificates issued by
// `cloudlet ca` (real openssl), and real TLS clients (undici) presenting them. Peer routes take
// only a configured peer's certificate; operator routes the token; `from` must be the peer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, fetch } from 'undici';
import { startDaemon } from '../../src/daemon/server.js';
import { insecureWarnings, parseDaemonConfig } from '../../src/daemon/config.js';
import { routeAccess } from '../../src/daemon/peer-auth.js';
import { peerConnector } from '../../src/daemon/peers.js';
import { initCa, issueCert, type CertInfo } from '../../src/util/pki.js';
import { UsageError } from '../../src/util/errors.js';
import { trustOrigins } from '../../src/util/tls.js';
import { makeFixture } from './daemon-fixtures.js';

delete process.env.CLOUDLET_CA;

const base = { node: 'alpha', token: 'a'.repeat(32), dataDir: '/tmp/x' };

test('a non-loopback listener or an http peer without TLS is refused unless insecure: true, which warns', () => {
  assert.throws(
    () => parseDaemonConfig({ ...base, listen: [{ host: '0.0.0.0', port: 7070 }] }, 'c.json'),
    (err: unknown) =>
      err instanceof UsageError && /listen\.0\.host: listening on 0\.0\.0\.0 without TLS/.test(err.message) && /insecure: true/.test(err.message),
  );
  assert.throws(() => parseDaemonConfig({ ...base, listen: [{ host: '10.1.2.3', port: 7070 }] }), /listen\.0\.host/);
  assert.throws(() => parseDaemonConfig({ ...base, peers: [{ name: 'beta', url: 'http://10.1.2.4:7070' }] }), /peers\.0\.url: peer beta .* plain http/);
  // Loopback, unix sockets, TLS, https peers: fine, and no warning.
  for (const ok of [
    { listen: [{ host: '127.0.0.1', port: 7070 }, { host: '::1', port: 7070 }, { host: 'localhost', port: 7070 }, { socket: '/run/x.sock' }] },
    { listen: [{ host: '10.1.2.3', port: 7070 }], tls: { cert: '/c.pem', key: '/k.pem' } },
    {
      peers: [
        { name: 'beta', url: 'https://10.1.2.4:7070' },
        { name: 'gamma', url: 'http://127.0.0.1:7071' },
      ],
    },
  ]) {
    assert.deepEqual(insecureWarnings(parseDaemonConfig({ ...base, ...ok })), []);
  }
  const insecure = parseDaemonConfig({
    ...base,
    insecure: true,
    listen: [{ host: '10.1.2.3', port: 7070 }],
    peers: [{ name: 'beta', url: 'http://10.1.2.4:7070' }],
  });
  const w = insecureWarnings(insecure);
  assert.equal(w.length, 2);
  assert.match(w[0]!, /^INSECURE .*10\.1\.2\.3 without TLS/);
  assert.match(w[1]!, /^INSECURE .*peer beta/);
  // The certificate name of a peer defaults to its name.
  assert.equal(parseDaemonConfig({ ...base, peers: [{ name: 'beta', url: 'https://b:1', cert: 'beta-2027' }] }).peers[0]!.cert, 'beta-2027');
});

test('cloudletd logs the insecure warning at start', async (t) => {
  const fx = makeFixture({ insecure: true, peers: [{ name: 'beta', url: 'http://10.1.2.4:7070' }] });
  t.after(() => fx.cleanup());
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const d = await startDaemon({ config: fx.config, logger: { level: 'warn', stream } });
  await d.close();
  const warn = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => /INSECURE/.test(l.msg));
  assert.ok(warn, lines.join(''));
  assert.equal(warn.level, 40);
  assert.match(warn.msg, /peer beta at http:\/\/10\.1\.2\.4:7070 would be called over plain http/);
});

interface Pki {
  root: string;
  ca: CertInfo;
  alpha: CertInfo;
  beta: CertInfo;
  gamma: CertInfo;
  /** beta's name, but issued by another CA. */
  forgedBeta: CertInfo;
}

async function makePki(): Promise<Pki> {
  const root = mkdtempSync(join(tmpdir(), 'cloudlet-mtls-'));
  const dir = join(root, 'pki');
  const ca = await initCa({ dir });
  const alpha = await issueCert({ dir, name: 'alpha', ips: ['127.0.0.1'] });
  const beta = await issueCert({ dir, name: 'beta', ips: ['127.0.0.1'] });
  const gamma = await issueCert({ dir, name: 'gamma' });
  await initCa({ dir: join(root, 'other'), name: 'another CA' });
  const forgedBeta = await issueCert({ dir: join(root, 'other'), name: 'beta' });
  return { root, ca, alpha, beta, gamma, forgedBeta };
}

interface Answer {
  status: number;
  body: { error?: string; message?: string; node?: string };
}

/** One request with a TLS client of its own: the CA to verify alpha, optionally a client certificate, optionally the token. */
async function call(url: string, pki: Pki, o: { method?: string; path: string; cert?: CertInfo; token?: string; body?: unknown }): Promise<Answer> {
  const agent = new Agent({
    connect: {
      ca: readFileSync(pki.ca.cert),
      ...(o.cert ? { cert: readFileSync(o.cert.cert), key: readFileSync(o.cert.key) } : {}),
      rejectUnauthorized: true,
    },
  });
  try {
    const res = await fetch(url + o.path, {
      method: o.method ?? 'GET',
      dispatcher: agent,
      headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(o.body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Answer['body'] };
  } finally {
    await agent.close();
  }
}

function unixCall(socket: string, method: string, path: string, token: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, method, path, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Answer['body'] }));
    });
    req.on('error', reject);
    req.end();
  });
}

const prepare = (from: string) => ({ id: 'm20261206-0a1b2c3d', from });

test('under mutual TLS, peer routes take only a configured peer certificate; operator routes the token', async (t) => {
  const pki = await makePki();
  const socket = join(pki.root, 'api.sock');
  const fx = makeFixture({
    tls: { cert: pki.alpha.cert, key: pki.alpha.key, ca: pki.ca.cert },
    listen: [{ host: '127.0.0.1', port: 0 }, { socket }],
    peers: [{ name: 'beta', url: 'https://127.0.0.1:1' }],
  });
  t.after(() => {
    fx.cleanup();
    rmSync(pki.root, { recursive: true, force: true });
  });
  const d = await startDaemon({ config: fx.config, logger: false });
  t.after(() => d.close());
  const url = d.addresses[0]!;
  const token = fx.config.token;
  const refused = (a: Answer, status: number, error: string, message: RegExp) => {
    assert.equal(a.status, status, JSON.stringify(a.body));
    assert.equal(a.body.error, error);
    assert.match(a.body.message ?? '', message);
  };

  assert.equal(routeAccess('POST', '/v1/incoming'), 'peer');
  assert.equal(routeAccess('POST', '/v1/migrations'), 'operator');

  // The configured peer's certificate opens peer routes, without any token: the handlers answer
  // (a prepare without its container fails validation; an abort of an unknown migration
  // removes nothing; an unknown re-creation is not found).
  const ok1 = await call(url, pki, { method: 'POST', path: '/v1/incoming', cert: pki.beta, body: prepare('beta') });
  refused(ok1, 400, 'usage', /container: Required/);
  const ok2 = await call(url, pki, { method: 'DELETE', path: '/v1/incoming/m20261206-0a1b2c3d', cert: pki.beta });
  assert.equal(ok2.status, 200, JSON.stringify(ok2.body));
  assert.deepEqual(ok2.body, { removed: [] });
  const ok3 = await call(url, pki, { method: 'POST', path: '/v1/recreate/m20261206-0a1b2c3d/start', cert: pki.beta });
  assert.equal(ok3.status, 404, JSON.stringify(ok3.body));
  // ...and the routes peers share with operators (health, dashboard views, image shipping).
  const info = await call(url, pki, { path: '/v1/info', cert: pki.beta });
  assert.equal(info.status, 200);
  assert.equal(info.body.node, 'alpha');

  // No certificate, one of another CA, one of a name not in peers: refused.
  refused(await call(url, pki, { method: 'POST', path: '/v1/incoming', body: prepare('beta') }), 401, 'peer_unauthenticated', /no client certificate/);
  refused(
    await call(url, pki, { method: 'POST', path: '/v1/incoming', cert: pki.forgedBeta, body: prepare('beta') }),
    401,
    'peer_unauthenticated',
    /certificate 'beta' is not from the deployment's CA/,
  );
  refused(
    await call(url, pki, { method: 'POST', path: '/v1/incoming', cert: pki.gamma, body: prepare('gamma') }),
    403,
    'peer_unknown',
    /certificate 'gamma' is not the certificate of a configured peer/,
  );
  // The operator's token does not open a peer route, over TLS or the unix socket.
  refused(await call(url, pki, { method: 'DELETE', path: '/v1/incoming/m20261206-0a1b2c3d', token }), 401, 'peer_unauthenticated', /peer route/);
  refused(await unixCall(socket, 'DELETE', '/v1/incoming/m20261206-0a1b2c3d', token), 401, 'peer_unauthenticated', /not TLS/);
  // A peer cannot prepare in another cloudlet's name.
  refused(
    await call(url, pki, { method: 'POST', path: '/v1/incoming', cert: pki.beta, body: prepare('gamma') }),
    403,
    'peer_mismatch',
    /from 'gamma' came with the certificate of peer 'beta'/,
  );
  refused(await call(url, pki, { method: 'POST', path: '/v1/recreate', cert: pki.beta, body: prepare('alpha') }), 403, 'peer_mismatch', /peer 'beta'/);

  // Operator routes: the token, not a peer's certificate.
  refused(await call(url, pki, { path: '/v1/migrations' }), 401, 'unauthorized', /missing bearer token/);
  refused(await call(url, pki, { path: '/v1/migrations', cert: pki.beta }), 403, 'operator_route', /operator route: peer beta's certificate does not open it/);
  refused(await call(url, pki, { path: '/v1/migrations', token: 'b'.repeat(48) }), 401, 'unauthorized', /invalid bearer token/);
  assert.equal((await call(url, pki, { path: '/v1/migrations', token })).status, 200);
  assert.equal((await call(url, pki, { path: '/v1/migrations', cert: pki.beta, token })).status, 200);
  assert.equal((await unixCall(socket, 'GET', '/v1/migrations', token)).status, 200);
});

test('a cloudlet presents its certificate to its peers and does not send them its token', async (t) => {
  const pki = await makePki();
  const fxB = makeFixture({
    node: 'beta',
    tls: { cert: pki.beta.cert, key: pki.beta.key, ca: pki.ca.cert },
    peers: [{ name: 'alpha', url: 'https://127.0.0.1:1' }],
  });
  t.after(() => {
    fxB.cleanup();
    rmSync(pki.root, { recursive: true, force: true });
  });
  const b = await startDaemon({ config: fxB.config, logger: false });
  t.after(() => b.close());
  const bUrl = b.addresses[0]!;
  // alpha, with its own (different) operator token: beta knows it by its certificate only.
  const fxA = makeFixture({ tls: { cert: pki.alpha.cert, key: pki.alpha.key, ca: pki.ca.cert }, peers: [{ name: 'beta', url: bUrl }] });
  t.after(() => fxA.cleanup());
  assert.notEqual(fxA.config.token, fxB.config.token);
  const a = await startDaemon({ config: fxA.config, logger: false });
  t.after(() => a.close()); // closed below already when all goes well (close is idempotent)
  const peers = await call(a.addresses[0]!, pki, { path: '/v1/peers', token: fxA.config.token });
  assert.deepEqual(peers.body, [{ ...(peers.body as unknown as Record<string, unknown>[])[0], name: 'beta', ok: true }]);
  // The migration core's peer transport (the daemon's peerConnector) reaches a peer-only route with alpha's certificate.
  assert.deepEqual(await peerConnector(fxA.config.token)({ url: bUrl, silenceMs: 5000 }).delete('/v1/incoming/m20261206-0a1b2c3d'), { removed: [] });
  // Once alpha is closed it no longer presents the certificate: the same call (the CA still
  // trusted) is refused, the token being no substitute.
  await a.close();
  const untrust = trustOrigins([bUrl], readFileSync(pki.ca.cert));
  t.after(untrust);
  await assert.rejects(peerConnector(fxA.config.token)({ url: bUrl, silenceMs: 5000 }).delete('/v1/incoming/m20261206-0a1b2c3d'), (err: unknown) => {
    assert.equal((err as { status?: number }).status, 401, String(err));
    return true;
  });
});
