// cloudletd over TLS, with a throwaway CA and server certificate made by the openssl binary
// at test time (no key is ever committed). Real servers on 127.0.0.1, real clients: the CLI's
// CloudletClient, the daemon's peer transport (peerConnector), peer health checks and overlay uploads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../../src/daemon/server.js';
import { CloudletClient } from '../../src/cli/client.js';
import { peerConnector } from '../../src/daemon/peers.js';
import { uploadFile } from '../../src/images/overlay-upload.js';
import { ApiError, UsageError } from '../../src/util/errors.js';
import { makeFixture } from './daemon-fixtures.js';

interface Pki {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  /** A second CA that signed nothing here: trusting it must not be enough. */
  otherCa: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** CA + server certificate for 127.0.0.1 (SAN), valid one day, in a fresh temp dir. */
function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'cloudlet-pki-'));
  for (const name of ['ca', 'other']) {
    openssl(
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '1', '-subj', `/CN=cloudlet test ${name} CA`],
      dir,
    );
  }
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1'], dir);
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '1', '-extfile', 'ext.cnf'],
    dir,
  );
  return { dir, ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), otherCa: join(dir, 'other.pem') };
}

// The CLI's fallback CA must not leak in from the environment of whoever runs the tests.
delete process.env.CLOUDLET_CA;

test('cloudletd serves HTTPS with its certificate; clients verify it against the CA', async (t) => {
  const pki = makePki();
  const socket = join(pki.dir, 'api.sock');
  const fx = makeFixture({ tls: { cert: pki.cert, key: pki.key }, listen: [{ host: '127.0.0.1', port: 0 }, { socket }] });
  t.after(() => {
    fx.cleanup();
    rmSync(pki.dir, { recursive: true, force: true });
  });
  const d = await startDaemon({ config: fx.config, logger: false });
  t.after(() => d.close());
  const url = d.addresses[0]!;
  assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);

  // With the CA: works, and the token is still required.
  const info = await new CloudletClient(url, fx.config.token, { ca: pki.ca }).get<{ node: string }>('/v1/info');
  assert.equal(info.node, 'alpha');
  await assert.rejects(new CloudletClient(url, undefined, { ca: pki.ca }).get('/v1/info'), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 401);
    return true;
  });
  await assert.rejects(new CloudletClient(url, 'wrong-token-wrong-token', { ca: pki.ca }).get('/v1/info'), /invalid bearer token/);

  // $CLOUDLET_CA is the CLI's way to name the CA.
  process.env.CLOUDLET_CA = pki.ca;
  try {
    assert.equal((await new CloudletClient(url, fx.config.token).get<{ node: string }>('/v1/info')).node, 'alpha');
  } finally {
    delete process.env.CLOUDLET_CA;
  }

  // Without the CA, or with the wrong one: refused with a clear error, never silently accepted.
  for (const ca of [undefined, pki.otherCa]) {
    await assert.rejects(new CloudletClient(url, fx.config.token, ca ? { ca } : {}).get('/v1/info'), (err: unknown) => {
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.code, 'tls_untrusted');
      assert.match(err.message, /certificate not verified/);
      assert.match(err.hint ?? '', /CLOUDLET_CA/);
      return true;
    });
  }

  // Plain http to the TLS port gets no answer.
  await assert.rejects(fetch(url.replace('https:', 'http:') + '/healthz', { signal: AbortSignal.timeout(5000) }));

  // The unix socket stays plain HTTP.
  const viaUnix = await new Promise<number>((resolve, reject) => {
    const req = http.request({ socketPath: socket, path: '/healthz' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(viaUnix, 200);

  // A CA file that is not PEM is refused by name.
  const bogus = join(pki.dir, 'bogus.pem');
  writeFileSync(bogus, 'not a certificate');
  assert.throws(
    () => new CloudletClient(url, fx.config.token, { ca: bogus }),
    (err: unknown) => err instanceof UsageError && /is not a PEM file/.test(err.message),
  );
});

test('peer calls go over https and verify the peer against peerCa', async (t) => {
  const pki = makePki();
  const fxB = makeFixture({ node: 'beta', tls: { cert: pki.cert, key: pki.key } });
  t.after(() => {
    fxB.cleanup();
    rmSync(pki.dir, { recursive: true, force: true });
  });
  const b = await startDaemon({ config: fxB.config, logger: false });
  t.after(() => b.close());
  const bUrl = b.addresses[0]!;

  // A peer of B that does not trust B's CA: health check fails, naming the certificate.
  {
    const fxA = makeFixture({ token: fxB.config.token, peers: [{ name: 'beta', url: bUrl }] });
    t.after(() => fxA.cleanup());
    const a = await startDaemon({ config: fxA.config, logger: false });
    const peers = await new CloudletClient(a.addresses[0]!, fxA.config.token).get<{ name: string; ok: boolean; error?: string }[]>('/v1/peers');
    assert.equal(peers[0]!.ok, false);
    assert.match(peers[0]!.error ?? '', /certificate/);
    await assert.rejects(peerConnector(fxB.config.token)({ url: bUrl, silenceMs: 5000 }).get('/v1/info'), (err: unknown) => {
      assert.ok(err instanceof ApiError);
      assert.equal(err.code, 'peer_unreachable');
      assert.match(err.hint ?? '', /peerCa/);
      return true;
    });
    await a.close();
  }

  // With peerCa: health check, peer JSON calls and streamed uploads all work.
  const fxA = makeFixture({ token: fxB.config.token, peers: [{ name: 'beta', url: bUrl }], peerCa: pki.ca });
  t.after(() => fxA.cleanup());
  const a = await startDaemon({ config: fxA.config, logger: false });
  t.after(() => a.close());
  const peers = await new CloudletClient(a.addresses[0]!, fxA.config.token).get<{ name: string; ok: boolean; error?: string }[]>('/v1/peers');
  assert.deepEqual(
    peers.map((p) => [p.name, p.ok, p.error]),
    [['beta', true, undefined]],
  );
  const info = await peerConnector(fxB.config.token)({ url: bUrl, silenceMs: 5000 }).get<{ node: string }>('/v1/info');
  assert.equal(info.node, 'beta');
  // An overlay upload over https reaches B's verifier (which refuses these bytes as no overlay).
  const junk = join(fxA.dir, 'junk.ovl');
  writeFileSync(junk, Buffer.alloc(64, 7));
  await assert.rejects(
    uploadFile({ url: bUrl, token: fxB.config.token, file: junk, path: '/v1/overlays', contentType: 'application/vnd.cloudlet.overlay' }),
    (err: unknown) => {
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.status, 422, err.message);
      return true;
    },
  );
});

test('an unreadable TLS file stops the start with the field named', async (t) => {
  const fx = makeFixture({ tls: { cert: '/nonexistent/cert.pem', key: '/nonexistent/key.pem' } });
  t.after(() => fx.cleanup());
  await assert.rejects(startDaemon({ config: fx.config, logger: false }), /cannot read tls\.cert \/nonexistent\/cert\.pem/);
});
