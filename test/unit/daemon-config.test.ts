import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkFaultInjection, LAB_FAULTS_ENV, loadDaemonConfig, parseDaemonConfig } from '../../src/daemon/config.js';
import { labDaemonEnv } from '../../src/lab/lab.js';
import { UsageError } from '../../src/util/errors.js';

test('config validation names every field at fault', () => {
  assert.throws(
    () => parseDaemonConfig({ node: 'Bad Name', token: 'short', dataDir: '/tmp/x' }, 'test.json'),
    (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, /test\.json/);
      assert.match(err.message, /node: lower-case letters/);
      assert.match(err.message, /token: token must be at least 16 characters/);
      return true;
    },
  );
});

test('config validation reports nested fields and unknown keys', () => {
  const base = { node: 'alpha', token: 'a'.repeat(32), dataDir: '/tmp/x' };
  assert.throws(() => parseDaemonConfig({ ...base, peers: [{ name: 'beta', url: 'not a url' }] }), /peers\.0\.url/);
  assert.throws(() => parseDaemonConfig({ ...base, listen: [] }), /listen: /);
  assert.throws(() => parseDaemonConfig({ ...base, colour: 'blue' }), /colour/);
  assert.throws(() => parseDaemonConfig({ token: 'a'.repeat(32), dataDir: '/tmp/x' }), /node: Required/);
});

test('loadDaemonConfig refuses unreadable and malformed files with the path', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloudletd-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.throws(() => loadDaemonConfig(join(dir, 'missing.json')), /cannot read cloudletd configuration .*missing\.json/);
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{ "node": ');
  assert.throws(() => loadDaemonConfig(bad), /bad\.json is not valid JSON/);
  const good = join(dir, 'good.json');
  writeFileSync(good, JSON.stringify({ node: 'alpha', token: 'a'.repeat(32), dataDir: dir }));
  const c = loadDaemonConfig(good);
  assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 7070 }]);
  assert.deepEqual(c.peers, []);
});

test('allowFaultInjection needs CLOUDLET_LAB_FAULTS=1 in the environment too (issue 19)', () => {
  const base = { node: 'alpha', token: 'a'.repeat(32), dataDir: '/tmp/x' };
  const on = parseDaemonConfig({ ...base, allowFaultInjection: true });
  assert.equal(LAB_FAULTS_ENV, 'CLOUDLET_LAB_FAULTS');
  for (const env of [{}, { CLOUDLET_LAB_FAULTS: '0' }, { CLOUDLET_LAB_FAULTS: 'yes' }, { CLOUDLET_LAB_FAULTS: '' }]) {
    assert.throws(
      () => checkFaultInjection(on, '/etc/cloudlet/cloudletd.json', env),
      (err: unknown) => {
        assert.ok(err instanceof UsageError, String(err));
        // The message names the file, the key and the variable, and says why.
        assert.match(err.message, /\/etc\/cloudlet\/cloudletd\.json/);
        assert.match(err.message, /allowFaultInjection: true/);
        assert.match(err.message, /CLOUDLET_LAB_FAULTS=1/);
        assert.match(err.message, /lab only/);
        assert.match(err.hint ?? '', /remove allowFaultInjection/);
        return true;
      },
      JSON.stringify(env),
    );
  }
  checkFaultInjection(on, 'cfg', { CLOUDLET_LAB_FAULTS: '1' });
  // Off (the default) needs nothing, whatever the environment says.
  const off = parseDaemonConfig(base);
  assert.equal(off.allowFaultInjection, false);
  checkFaultInjection(off, 'cfg', {});
  checkFaultInjection(off, 'cfg', { CLOUDLET_LAB_FAULTS: '1' });
});

test("the lab's daemons get CLOUDLET_LAB_FAULTS=1 (the lab turns fault injection on), not the shell's value", () => {
  const env = labDaemonEnv({ HOME: '/root', CLOUDLET_LAB_FAULTS: 'inherited', PATH: '/somewhere' });
  assert.equal(env.CLOUDLET_LAB_FAULTS, '1');
  assert.equal(env.HOME, '/root');
  assert.match(env.PATH ?? '', /^\/usr\/local\/sbin:/);
});
