// A restarted daemon settles the migrations its previous run left in flight.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonDb } from '../../src/daemon/db.js';
import { DockerEngine } from '../../src/engine/docker.js';
import { MigrationSource } from '../../src/migration/source.js';
import { CheckpointRestores } from '../../src/migration/checkpoint-restores.js';

test('in-flight source migrations are marked failed; finished ones are left alone', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cloudlet-recovery-'));
  const db = DaemonDb.open(dir);
  try {
    const base = { role: 'source' as const, fromNode: 'a', toNode: 'b', options: {} };
    db.insertMigration({ ...base, id: 'm-running', container: 'web', state: 'precopy' });
    db.insertMigration({ ...base, id: 'm-done', container: 'db', state: 'done' });
    const source = new MigrationSource({
      node: 'a',
      engine: new DockerEngine(join(dir, 'no-engine.sock')),
      db,
      events: { publish: () => undefined },
      runcRoot: dir,
      dataRoot: dir,
      xdgRuntimeDir: null,
      scratchDir: dir,
      peers: [],
      connectPeer: () => assert.fail('no peer is called: none is configured'),
      serviceNetwork: null,
      lazyRestore: null,
      criuConfigFile: null,
      restores: new CheckpointRestores(),
    });
    const notes = await source.recoverAfterRestart();
    assert.equal(notes.length, 1);
    assert.equal(db.migration('m-running', 'source')?.state, 'failed');
    assert.match(db.migration('m-running', 'source')?.error ?? '', /restarted during the migration \(state 'precopy'\)/);
    assert.equal(db.migration('m-done', 'source')?.state, 'done');
    assert.deepEqual(await source.recoverAfterRestart(), [], 'nothing left after the first recovery');
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
