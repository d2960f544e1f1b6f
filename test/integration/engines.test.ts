// Docker 28.5 (containerd 2.1) beside Docker 20.10 on a real lab: a cloudlet of each kind.
// A service in a netns holder moves 20.10 -> 28 and back with its state, its address and its
// established connections; a service with a network namespace of its own, which Docker 28
// cannot restore, is refused at b's prepare, before anything is frozen, and keeps running at a.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useLab } from '../helpers/lab.js';
import { provisionHandoffService, removeService, routedTo, GAP_SLACK_MS } from '../../src/bench/handoff.js';
import type { HandoffBenchResult } from '../../src/bench/handoff.js';
import { ApiClient } from '../../src/api/client/client.js';
import type { MigrationReport } from '../../src/migration/types.js';

const isRoot = process.getuid?.() === 0;

describe('Docker 20.10 and Docker 28 cloudlets in one lab', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('eng', { engines: 'a=docker20,b=docker28' });

  test('the lab runs the engine asked for on each cloudlet', async () => {
    const [a, b] = lab.state().cloudlets;
    assert.equal(a!.engine.kind, 'docker20');
    assert.equal(b!.engine.kind, 'docker28');
    assert.match((await lab.docker('a').version()).Version, /^20\.10\./);
    assert.match((await lab.docker('b').version()).Version, /^28\./);
  });

  test('a service in a holder moves 20.10 -> 28 -> 20.10 with its connections', async (t) => {
    const r = await lab.cliJson<HandoffBenchResult>(['bench', 'handoff', '--scenario', 'direct', '--netns-holder', '--repeat', '2'], 600_000);
    const d = r.direct!;
    const runs = d.runs ?? [];
    t.diagnostic(`runs: ${JSON.stringify(runs.map((x) => ({ downtimeMs: x.downtimeMs, clientGapMs: x.clientGapMs, restoreMs: x.restoreMs })))}`);
    assert.equal(runs.length, 2);
    for (const m of d.migrations ?? []) assert.equal(m.state, 'done', m.error?.message);
    assert.deepEqual(
      (d.migrations ?? []).map((m) => `${m.from}->${m.to}`),
      ['a->b', 'b->a'],
    );
    for (const run of runs) {
      assert.ok(run.clientGapMs! <= run.downtimeMs! + GAP_SLACK_MS, `client gap ${run.clientGapMs} ms <= downtime ${run.downtimeMs} + ${GAP_SLACK_MS} ms`);
    }
    assert.equal(r.tcpConnectionSurvived, true, 'one TCP connection through both handoffs');
    assert.equal(r.httpKeepAliveSurvived, true, 'one HTTP keep-alive connection through both handoffs');
    assert.equal(r.messagesLost, 0);
  });

  test('a service with a network namespace of its own is refused at the Docker 28 prepare, before the freeze', async () => {
    const state = lab.state();
    const name = 'own-netns-svc';
    const svc = await provisionHandoffService(state, 'a', name);
    try {
      const api = new ApiClient({ baseUrl: state.cloudlets[0]!.daemon.apiUrl, token: state.token, timeoutMs: 300_000 });
      const report = await api.post<MigrationReport>('/v1/migrations?wait=1', { container: name, to: 'b' });
      assert.equal(report.state, 'rolled-back');
      assert.match(report.error!.message, /Docker 28\.\S+ cannot restore a container with a network namespace of its own/);
      assert.match(report.error!.message, /--netns-holder/);
      assert.equal(report.downtimeMs, null, 'never frozen');
      assert.equal(report.rounds.length, 0, 'no round sent');
      assert.equal((await lab.docker('a').getContainer(name).inspect()).State.Running, true, 'still running at a');
      await assert.rejects(lab.docker('b').getContainer(name).inspect(), 'nothing left at b');
      assert.equal(await routedTo(state, svc.address), 'a');
    } finally {
      await removeService(state, name);
    }
  });
});
