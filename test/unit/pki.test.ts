// `cloudlet ca init|issue` with the machine's real openssl: the files, their modes, what the
// certificates say, that openssl itself verifies them for both TLS roles, and the refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { caPaths, certPaths, initCa, issueCert, subjectAltName } from '../../src/util/pki.js';
import { ConflictError, NotFoundError, UsageError } from '../../src/util/errors.js';

function verify(ca: string, cert: string, purpose: 'sslclient' | 'sslserver'): string {
  return execFileSync('openssl', ['verify', '-CAfile', ca, '-purpose', purpose, cert], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

test('ca init and ca issue make a CA and a cloudlet certificate usable as TLS server and client', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'cloudlet-pki-')), 'pki');
  t.after(() => rmSync(join(dir, '..'), { recursive: true, force: true }));

  await assert.rejects(issueCert({ dir, name: 'a' }), (err: unknown) => err instanceof NotFoundError && /cloudlet ca init/.test(err.hint ?? ''));

  const ca = await initCa({ dir });
  assert.equal(ca.cert, caPaths(dir).cert);
  assert.equal(statSync(ca.key).mode & 0o777, 0o600);
  const caX = new X509Certificate(readFileSync(ca.cert));
  assert.equal(caX.ca, true);
  assert.equal(caX.subject, 'CN=cloudlet deployment CA');

  const a = await issueCert({ dir, name: 'a', ips: ['10.250.1.2'], dns: ['a.edge.example'] });
  assert.equal(a.cert, certPaths(dir, 'a').cert);
  assert.equal(statSync(a.key).mode & 0o777, 0o600);
  const x = new X509Certificate(readFileSync(a.cert));
  assert.equal(x.subject, 'CN=a');
  assert.equal(x.ca, false);
  assert.equal(x.subjectAltName, 'DNS:a, DNS:a.edge.example, IP Address:10.250.1.2');
  assert.ok(x.checkIssued(caX) && x.verify(caX.publicKey), 'signed by the CA');
  assert.match(x.toLegacyObject().ext_key_usage?.join(',') ?? '', /1\.3\.6\.1\.5\.5\.7\.3\.1.*1\.3\.6\.1\.5\.5\.7\.3\.2/);
  assert.equal(x.checkIP('10.250.1.2'), '10.250.1.2');
  // openssl verifies it for both roles.
  assert.match(verify(ca.cert, a.cert, 'sslserver'), /: OK$/);
  assert.match(verify(ca.cert, a.cert, 'sslclient'), /: OK$/);

  // Existing files are kept unless --force.
  await assert.rejects(initCa({ dir }), (err: unknown) => err instanceof ConflictError && /--force/.test(err.hint ?? ''));
  await assert.rejects(issueCert({ dir, name: 'a' }), ConflictError);
  const again = await issueCert({ dir, name: 'a', force: true });
  assert.notEqual(again.serial, a.serial);

  // A certificate of another CA does not verify against this one.
  const other = join(dir, '..', 'other');
  await initCa({ dir: other, name: 'another CA' });
  const foreign = await issueCert({ dir: other, name: 'a' });
  assert.throws(() => verify(ca.cert, foreign.cert, 'sslclient'));
});

test('ca issue refuses bad names and addresses before running openssl', async () => {
  await assert.rejects(
    issueCert({ dir: '/nonexistent', name: 'Bad_Name' }),
    (err: unknown) => err instanceof UsageError && /invalid cloudlet name/.test(err.message),
  );
  await assert.rejects(issueCert({ dir: '/nonexistent', name: 'ca' }), UsageError);
  assert.throws(() => subjectAltName('a', ['10.0.0.300']), /--ip 10\.0\.0\.300 is not an IP address/);
  assert.throws(() => subjectAltName('a', [], ['bad host']), /--dns bad host is not a DNS name/);
  assert.equal(subjectAltName('a', ['::1'], ['a', 'b.example']), 'DNS:a,DNS:b.example,IP:::1');
});
