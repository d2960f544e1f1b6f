import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { DaemonDb, DB_FILE, MIGRATIONS } from '../../src/daemon/db.js';
import { makeFixture } from './daemon-fixtures.js';

test('migrations bring a new database to the latest schema, in WAL mode, idempotently', (t) => {
  const fx = makeFixture();
  t.after(() => fx.cleanup());
  const db = DaemonDb.open(fx.config.dataDir);
  assert.equal(db.schemaVersion(), MIGRATIONS.length);
  const id = db.recordEvent('test.kind', { a: 1 });
  db.close();

  const again = DaemonDb.open(fx.config.dataDir);
  assert.equal(again.schemaVersion(), MIGRATIONS.length);
  assert.deepEqual(again.events(), [{ id, ts: again.events()[0]!.ts, kind: 'test.kind', data: { a: 1 } }]);
  again.close();

  const raw = new Database(join(fx.config.dataDir, DB_FILE), { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
});

test('a database from a newer cloudletd is refused', (t) => {
  const fx = makeFixture();
  t.after(() => fx.cleanup());
  DaemonDb.open(fx.config.dataDir).close();
  const raw = new Database(join(fx.config.dataDir, DB_FILE));
  raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
  raw.close();
  assert.throws(() => DaemonDb.open(fx.config.dataDir), /has schema version \d+, this cloudletd knows/);
});

test('peer checks keep last_seen across later failures', (t) => {
  const fx = makeFixture();
  t.after(() => fx.cleanup());
  const db = DaemonDb.open(fx.config.dataDir);
  t.after(() => db.close());
  db.recordPeerCheck('beta', 'http://127.0.0.1:1', { ok: true });
  const seen = db.peer('beta')!.lastSeen;
  assert.ok(seen);
  db.recordPeerCheck('beta', 'http://127.0.0.1:2', { ok: false, error: 'boom' });
  assert.deepEqual(db.peer('beta'), { name: 'beta', url: 'http://127.0.0.1:2', lastSeen: seen, lastError: 'boom' });
});

test('addresses of services that moved away are kept until one comes back', (t) => {
  const fx = makeFixture();
  t.after(() => fx.cleanup());
  const db = DaemonDb.open(fx.config.dataDir);
  t.after(() => db.close());
  assert.deepEqual([...db.movedAddresses()], []);
  db.markAddressMoved('10.240.1.1', 'web', 'b');
  db.markAddressMoved('10.240.1.2', 'api', 'c');
  db.markAddressMoved('10.240.1.1', 'web', 'c');
  assert.deepEqual([...db.movedAddresses()].sort(), ['10.240.1.1', '10.240.1.2']);
  db.clearMovedAddress('10.240.1.1');
  assert.deepEqual([...db.movedAddresses()], ['10.240.1.2']);
});
