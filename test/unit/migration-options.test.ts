// Bad or contradictory migration options are refused with the option named, before any
// container is touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { migrationBody, parseDuration } from '../../src/cli/commands/migrate.js';
import { policyFromOptions } from '../../src/daemon/routes-migrations.js';
import { hasherFor, LAZY_RESTORE_MIN_BYTES, restoreFor } from '../../src/migration/source.js';

const defaults = { container: 'web', to: 'b', maxRounds: 8, maxTimeMs: 300_000, codec: 'auto', precopy: 'scan', pageCache: true } as const;

test('durations: seconds, milliseconds, minutes; bad ones name the option', () => {
  assert.equal(parseDuration('1.5', '--alpha'), 1500);
  assert.equal(parseDuration('800ms', '--max-downtime'), 800);
  assert.equal(parseDuration('2m', '--max-time'), 120_000);
  assert.throws(() => parseDuration('soon', '--max-time'), /--max-time: invalid duration 'soon'/);
});

test('CLI options become the API body', () => {
  const b = migrationBody('web', { from: 'a', to: 'b', rounds: '2', codec: 'zstd', maxDowntime: '500ms' });
  assert.deepEqual(b, { container: 'web', to: 'b', rounds: 2, codec: 'zstd', maxDowntimeMs: 500 });
  assert.throws(() => migrationBody('web', { from: 'a', to: 'b', rounds: '-1' }), /--rounds must be a non-negative integer/);
  assert.throws(() => migrationBody('web', { from: 'a', to: 'b', maxRounds: 'x' }), /--max-rounds/);
  assert.equal(migrationBody('web', { from: 'a', to: 'b', restore: 'auto' }).restore, 'auto');
  assert.throws(() => migrationBody('web', { from: 'a', to: 'b', restore: 'later' }), /--restore must be lazy, eager or auto \(got 'later'\)/);
  assert.equal(migrationBody('web', { from: 'a', to: 'b', tcpClose: true }).tcpClose, true);
  assert.equal(migrationBody('web', { from: 'a', to: 'b' }).tcpClose, undefined, 'no flag: connections that cannot be kept refuse the handoff');
});

test('restoreFor: auto restores large memory lazily, small eagerly; an explicit choice wins', () => {
  assert.equal(LAZY_RESTORE_MIN_BYTES, 128 * 2 ** 20);
  assert.equal(restoreFor(undefined, 256 * 2 ** 20), 'lazy', '256 MiB service, no choice made');
  assert.equal(restoreFor('auto', LAZY_RESTORE_MIN_BYTES), 'lazy');
  assert.equal(restoreFor('auto', LAZY_RESTORE_MIN_BYTES - 1), 'eager');
  assert.equal(restoreFor(undefined, 200 * 1024), 'eager', 'busybox counter');
  assert.equal(restoreFor('eager', 256 * 2 ** 20), 'eager');
  assert.equal(restoreFor('lazy', 200 * 1024), 'lazy');
});

test('one stop rule per migration', () => {
  assert.deepEqual(policyFromOptions({ ...defaults, rounds: 0 }), { kind: 'rounds', rounds: 0 });
  assert.deepEqual(policyFromOptions({ ...defaults, alpha: 1.5 }), { kind: 'alpha', alphaSeconds: 1.5, maxRounds: 8 });
  assert.deepEqual(
    policyFromOptions({ ...defaults }),
    { kind: 'model', maxDowntimeMs: 1000, maxRounds: 8, maxTimeMs: 300_000 },
    'the default downtime: a target',
  );
  assert.deepEqual(
    policyFromOptions({ ...defaults, maxDowntimeMs: 800 }),
    { kind: 'model', maxDowntimeMs: 800, downtimeIsBound: true, maxRounds: 8, maxTimeMs: 300_000 },
    'a stated downtime: a bound',
  );
  assert.equal(policyFromOptions({ ...defaults, rule: 'phaul' }).kind, 'phaul');
  assert.throws(() => policyFromOptions({ ...defaults, rounds: 1, alpha: 1 }), /--alpha cannot be combined/);
  assert.throws(() => policyFromOptions({ ...defaults, rule: 'lxd', rounds: 2 }), /--rounds cannot be combined/);
  assert.throws(() => policyFromOptions({ ...defaults, rule: 'rounds' }), /needs --rounds/);
});

test('hasherFor: small containers hash on the main thread, large ones in the worker', () => {
  assert.equal(hasherFor(200 * 1024), 'main', 'busybox counter');
  assert.equal(hasherFor(16 * 2 ** 20 - 1), 'main');
  assert.equal(hasherFor(16 * 2 ** 20), 'worker');
  assert.equal(hasherFor(256 * 2 ** 20), 'worker', '256 MiB service');
});

test('the objective: --max-total and --force reach the model policy; --max-total needs the model rule', () => {
  const b = migrationBody('web', { from: 'a', to: 'b', maxDowntime: '1ms', maxTotal: '2s', force: true });
  assert.deepEqual(b, { container: 'web', to: 'b', maxDowntimeMs: 1, maxTotalMs: 2000, force: true });
  assert.throws(() => migrationBody('web', { from: 'a', to: 'b', maxTotal: 'never' }), /--max-total: invalid duration/);
  assert.deepEqual(policyFromOptions({ ...defaults, maxTotalMs: 2000, force: true }), {
    kind: 'model',
    maxDowntimeMs: 1000,
    maxRounds: 8,
    maxTimeMs: 300_000,
    maxTotalMs: 2000,
    force: true,
  });
  assert.throws(() => policyFromOptions({ ...defaults, rounds: 2, maxTotalMs: 2000 }), /--max-total applies to the model rule only/);
});
