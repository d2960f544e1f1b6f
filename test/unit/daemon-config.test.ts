import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadDaemonConfig, parseDaemonConfig } from '../../src/daemon/config.js';
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
