// What a service declares about its handoff (labels, health check forms) and which strategy
// runs for it: the request's, the label's, auto's reasoning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseStrategy, formatHealth, handoffLabels, parseHealth, HANDOFF_LABELS } from '../../src/migration/recreate.js';
import { handoffOptions } from '../../src/cli/commands/overlay.js';
import { migrationBody } from '../../src/cli/commands/migrate.js';
import { UsageError } from '../../src/util/errors.js';

test('health checks: the label/CLI form parses and formats back; bad forms are usage errors', () => {
  assert.deepEqual(parseHealth('http:8080/healthz'), { http: { port: 8080, path: '/healthz' } });
  assert.deepEqual(parseHealth('http:80'), { http: { port: 80, path: '/' } });
  assert.deepEqual(parseHealth('tcp:7000'), { tcp: { port: 7000 } });
  for (const t of ['http:8080/healthz', 'tcp:7000', 'http:1/a/b?c=d']) assert.equal(formatHealth(parseHealth(t)), t);
  for (const bad of ['', 'http', 'udp:53', 'tcp:0', 'tcp:70000', 'http:8080healthz', 'http:8080/a b', 'tcp:7000/x']) {
    assert.throws(() => parseHealth(bad), UsageError, bad);
  }
});

test('labels: always the strategy and stateless flag, the health check when declared; recreate needs one', () => {
  assert.deepEqual(handoffLabels({ handoff: 'migrate', stateless: false }), { 'cloudlet.handoff': 'migrate', 'cloudlet.stateless': 'false' });
  assert.deepEqual(handoffLabels({ handoff: 'recreate', stateless: true, health: { tcp: { port: 7000 } } }), {
    'cloudlet.handoff': 'recreate',
    'cloudlet.stateless': 'true',
    'cloudlet.health': 'tcp:7000',
  });
  assert.throws(() => handoffLabels({ handoff: 'recreate', stateless: true }), /needs a health check/);
});

const labels = (handoff: string | null, stateless: boolean, health: string | null): Record<string, string> => ({
  ...(handoff ? { [HANDOFF_LABELS.handoff]: handoff } : {}),
  [HANDOFF_LABELS.stateless]: String(stateless),
  ...(health ? { [HANDOFF_LABELS.health]: health } : {}),
});

test('strategy: the request overrides the label; no label means migrate', () => {
  assert.equal(chooseStrategy(undefined, undefined).strategy, 'migrate');
  assert.match(chooseStrategy(undefined, {}).reason, /default/);
  const recreateLabel = labels('recreate', true, 'http:8080/healthz');
  assert.equal(chooseStrategy(undefined, recreateLabel).strategy, 'recreate');
  assert.match(chooseStrategy(undefined, recreateLabel).reason, /label cloudlet\.handoff/);
  const forced = chooseStrategy('migrate', recreateLabel);
  assert.equal(forced.strategy, 'migrate');
  assert.match(forced.reason, /request/);
  assert.equal(chooseStrategy('recreate', labels('migrate', false, 'tcp:7000')).strategy, 'recreate');
});

test('strategy auto: recreate only for a service declared stateless with a health check; the reason says why', () => {
  const stateless = chooseStrategy(undefined, labels('auto', true, 'http:8080/healthz'));
  assert.equal(stateless.strategy, 'recreate');
  assert.match(stateless.reason, /declared stateless/);
  assert.deepEqual(stateless.health, { http: { port: 8080, path: '/healthz' } });
  const stateful = chooseStrategy(undefined, labels('auto', false, 'http:8080/healthz'));
  assert.equal(stateful.strategy, 'migrate');
  assert.match(stateful.reason, /not declared stateless/);
  const noHealth = chooseStrategy('auto', labels('migrate', true, null));
  assert.equal(noHealth.strategy, 'migrate');
  assert.match(noHealth.reason, /no health check/);
});

test('strategy: recreate without a health check and unknown label values are refused', () => {
  assert.throws(() => chooseStrategy('recreate', labels(null, true, null)), UsageError);
  assert.throws(() => chooseStrategy(undefined, labels('teleport', true, null)), /not one of/);
});

test('cloudlet run flags: --handoff, --stateless, --health as API fields', () => {
  assert.deepEqual(handoffOptions({ handoff: 'migrate' }), { handoff: 'migrate', stateless: false });
  assert.deepEqual(handoffOptions({ handoff: 'auto', stateless: true, health: 'http:8080/healthz' }), {
    handoff: 'auto',
    stateless: true,
    health: { http: { port: 8080, path: '/healthz' } },
  });
  assert.throws(() => handoffOptions({ handoff: 'recreate' }), /--health/);
  assert.throws(() => handoffOptions({ handoff: 'sometimes' }), /--handoff must be/);
});

test('cloudlet migrate --strategy: passed to the API, checked first', () => {
  const base = { from: 'a', to: 'b' };
  assert.equal(migrationBody('svc', { ...base, strategy: 'recreate' }).strategy, 'recreate');
  assert.equal(migrationBody('svc', base).strategy, undefined, 'no flag: the service label decides');
  assert.throws(() => migrationBody('svc', { ...base, strategy: 'teleport' }), /--strategy must be/);
});
