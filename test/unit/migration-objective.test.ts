// The source side of the objective (issue 21): a decision that refuses the handoff is
// recorded with its figures and thrown before the freeze; the rollback that follows aborts
// the destination's prepared twin and never touches the service's container.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ObjectiveUnmetError, type Decision, type ModelPolicy } from '../../src/migration/decision.js';
import { newObjective, recordDecision } from '../../src/migration/source/objective.js';
import { settleFailure } from '../../src/migration/source/rollback.js';
import type { SourceDeps, SourceHandoff } from '../../src/migration/source/handoff.js';
import { newReport, type RoundReport } from '../../src/migration/types.js';
import type { PeerTransport } from '../../src/migration/peer-transport.js';

const policy: ModelPolicy = { kind: 'model', maxDowntimeMs: 1, maxRounds: 8, maxTimeMs: 300_000, maxTotalMs: 2000 };

const refusal: Decision = {
  stop: true,
  reason: 'small-memory',
  predictedDowntimeMs: 1000.4,
  predictedTotalMs: 1480.6,
  unmet: 'refuse',
  explanation: 'all 0.2 MiB send in ~16 ms: pre-copy cannot shorten the downtime; --max-downtime cannot be met within --max-total: refused before the freeze',
};

/** An engine that fails the test on any call: a refusal before the freeze never touches the container. */
const untouchable = new Proxy({}, { get: (_t, name) => () => assert.fail(`engine.${String(name)} called`) });

function handoff(p: ModelPolicy, deletes: string[]): SourceHandoff {
  const report = newReport({
    id: 'm-obj',
    container: 'counter',
    from: 'a',
    to: 'b',
    policy: 'model',
    codec: 'auto',
    serviceAddress: null,
    strategy: 'migrate',
    strategyReason: 'test',
  });
  report.objective = newObjective(p);
  const peer = { baseUrl: 'http://b.invalid' } as PeerTransport;
  const connectPeer = () => ({ baseUrl: peer.baseUrl, delete: async (path: string) => void deletes.push(path) }) as unknown as PeerTransport;
  const deps = { engine: untouchable, connectPeer, serviceNetwork: null } as unknown as SourceDeps;
  return {
    deps,
    report,
    req: { container: 'counter', to: 'b', policy: p, codec: 'auto' },
    details: { id: 'c1', name: 'counter' },
    peer,
    stage: '/nonexistent/stage',
    index: 0,
    t0: performance.now(),
    progress: { prepared: true, addressMoved: false, frozen: false, finalSent: false, restartPolicy: null },
    journal: () => undefined,
  } as unknown as SourceHandoff;
}

test('a refusing decision is recorded with its figures and thrown; the rollback only aborts the destination', async () => {
  const deletes: string[] = [];
  const h = handoff(policy, deletes);
  let thrown: unknown;
  try {
    recordDecision(h, refusal, null);
  } catch (err) {
    thrown = err;
  }
  assert.ok(thrown instanceof ObjectiveUnmetError);
  assert.equal(thrown.errorKind, 'conflict');
  assert.deepEqual(h.report.objective, {
    maxDowntimeMs: 1,
    maxTotalMs: 2000,
    force: false,
    predictedDowntimeMs: 1000,
    predictedTotalMs: 1481,
    unmet: 'refuse',
  });
  assert.equal(h.report.stopReason, 'small-memory');
  const { keepStage } = await settleFailure(h, thrown);
  assert.equal(keepStage, false);
  assert.equal(h.report.state, 'rolled-back');
  assert.deepEqual(deletes, ['/v1/incoming/m-obj']);
  assert.equal(h.report.error?.code, 'objective_unreachable');
  assert.match(h.report.error?.message ?? '', /^refused before the freeze: predicted downtime 1000 ms > --max-downtime 1 ms, .* --max-total 2\.0 s/);
  assert.match(h.report.error?.message ?? '', /rollback: destination cleaned up/);
});

test('a forced decision is recorded and warned about, not thrown; the round carries the predictions', () => {
  const h = handoff({ ...policy, force: true }, []);
  const round = { decision: null, predictedDowntimeMs: null } as unknown as RoundReport;
  recordDecision(h, { ...refusal, reason: 'total-time', unmet: 'forced' }, round);
  assert.equal(h.report.objective?.unmet, 'forced');
  assert.equal(h.report.objective?.force, true);
  assert.deepEqual([round.predictedDowntimeMs, round.predictedTotalMs], [1000, 1481]);
  assert.equal(h.report.stopReason, 'total-time');
  assert.match(h.report.warnings[0] ?? '', /^going on with --force: /);
  assert.equal(newObjective({ kind: 'rounds', rounds: 2 }), null);
});
