// `cloudlet bench security` in-process: two real cloudletd on 127.0.0.1 with mutual TLS and a
// fresh CA (real openssl), real fssync batches applied as root. Every attack of the list must be
// refused by its own defence, no host stand-in may change, the victim must still answer. Then
// the bench itself must be able to fail: a request no defence stops, and an "attack" that does
// write to a stand-in, are reported as not refused and as a host change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { ATTACKS, runSecurityBench } from '../../src/bench/security/run.js';
import type { Attack } from '../../src/bench/security/attack.js';
import { call } from '../../src/bench/security/http.js';

const isRoot = process.getuid?.() === 0;
const skip = isRoot ? false : 'needs root (security.capability xattrs, rsync -D)';

test('every attack is refused by its defence and nothing outside the target changes', { skip, timeout: 120_000 }, async () => {
  const r = await runSecurityBench();
  const names = r.attacks.map((a) => a.name);
  for (const n of [
    'privileged-twin',
    'privileged-recreate',
    'host-bind-mount',
    'cap-sys-admin',
    'pid-host',
    'host-device',
    'xattr-absolute-path',
    'xattr-dotdot-path',
    'xattr-symlink-path',
    'no-client-cert',
    'other-ca-cert',
    'unknown-peer-cert',
    'from-mismatch',
    'token-on-peer-route',
    'peer-cert-on-operator-route',
    'plain-http-to-tls',
    'oversized-body',
    'malformed-json',
  ]) {
    assert.ok(names.includes(n), `attack ${n} in the list`);
  }
  assert.equal(r.attacks.length, ATTACKS.length);
  for (const a of r.attacks) {
    assert.equal(a.refused, true, `${a.name}: ${a.status} ${a.error} ${a.note}`);
    assert.equal(a.hostChanged, false, a.name);
  }
  // The policy refusals name the field (the note carries the message).
  assert.match(r.attacks.find((a) => a.name === 'host-bind-mount')!.note, /container\.spec\.binds\[0\]\.source/);
  assert.match(r.attacks.find((a) => a.name === 'xattr-symlink-path')!.note, /symlink/);
  assert.equal(r.victimUp, true);
  assert.equal(r.ok, true);
});

test('the bench fails on a request no defence stops and on a changed host file', { skip, timeout: 60_000 }, async () => {
  // A twin the policy allows: it passes every defence and fails later, at the absent engine (503).
  const allowed: Attack = {
    name: 'allowed-twin',
    tried: 'a twin within policy',
    expect: { status: 403, error: 'policy_denied' },
    run: (s) =>
      call(s, {
        method: 'POST',
        path: '/v1/incoming',
        cert: s.pki.beta,
        body: {
          id: 'm20261206-5ecc0001',
          from: 'beta',
          container: { name: 'ok', imageId: `sha256:${'a'.repeat(64)}`, imageName: 'ok:1', spec: { network: { mode: 'none' } }, volumes: [] },
        },
      }),
  };
  const writes: Attack = {
    name: 'writes-passwd',
    tried: 'appends to the passwd stand-in',
    expect: { status: null, error: 'none' },
    run: async (s) => {
      appendFileSync(s.host.passwd, 'evil::0:0::/:/bin/sh\n');
      return { status: null, error: 'none', message: 'written' };
    },
  };
  const r = await runSecurityBench({ attacks: [allowed, writes] });
  const [a, w] = r.attacks;
  assert.equal(a!.refused, false, a!.note);
  assert.equal(a!.status, 503, a!.note);
  assert.equal(a!.error, 'engine_unavailable');
  assert.match(a!.note, /expected 403 policy_denied/);
  assert.equal(w!.refused, true);
  assert.equal(w!.hostChanged, true);
  assert.equal(r.ok, false);
});
