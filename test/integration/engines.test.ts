// Docker 28.5 (containerd 2.1) beside Docker 20.10 on a real lab: a cloudlet of each kind.
// A service in a netns holder moves 20.10 -> 28 and back with its state, its address and its
// established connections; a service with a network namespace of its own, which Docker 28
// cannot restore, is refused at b's prepare, before anything is frozen, and keeps running at a.
// A dry run (`cloudlet migrate --dry-run`) says the same before anything starts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertRoundTripHandoff, readCounter, useLab } from '../helpers/lab.js';
import { BUSYBOX_COUNTER_SCRIPT } from '../../src/workloads/stateful-service.js';
import type { MigrationPlan } from '../../src/migration/source.js';
import { provisionHandoffService, removeService, routedTo } from '../../src/bench/handoff.js';
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
    assertRoundTripHandoff(t, r, 'runs');
  });

  test('a service with a network namespace of its own is refused at the Docker 28 prepare, before the freeze', async () => {
    const state = lab.state();
    const name = 'own-netns-svc';
    const svc = await provisionHandoffService(state, 'a', name);
    try {
      // The dry run names the refusal and starts nothing.
      const dry = await lab.cli(['migrate', name, '--from', 'a', '--to', 'b', '--dry-run', '--json']);
      const plan = JSON.parse(dry.stdout) as MigrationPlan;
      assert.equal(dry.code, 1, 'a refused plan exits 1');
      assert.equal(plan.ok, false);
      assert.deepEqual(
        plan.refusals.map((r) => r.code),
        ['engine_cannot_restore'],
      );
      assert.match(plan.destinationEngine ?? '', /^28\./);
      assert.equal(plan.network.serviceAddress, svc.address);
      const api = new ApiClient({ baseUrl: state.cloudlets[0]!.daemon.apiUrl, token: state.token, timeoutMs: 300_000 });
      assert.equal((await api.get<MigrationReport[]>('/v1/migrations')).filter((m) => m.container === name).length, 0, 'the dry run journalled nothing');

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

  test('dry run of a service in a holder: it would start, keeping its address and connections', async () => {
    const state = lab.state();
    const name = 'holder-plan-svc';
    const svc = await provisionHandoffService(state, 'a', name, { netnsHolder: true });
    try {
      const dry = await lab.cli(['migrate', name, '--from', 'a', '--to', 'b', '--dry-run', '--json']);
      const plan = JSON.parse(dry.stdout) as MigrationPlan;
      assert.equal(dry.code, 0, dry.stderr);
      assert.equal(plan.ok, true, JSON.stringify(plan.refusals));
      assert.equal(plan.strategy, 'migrate');
      assert.equal(plan.network.netnsHolder, `${name}-netns`);
      assert.equal(plan.network.serviceAddress, svc.address);
      assert.equal(plan.network.connectionsKept, true);
      assert.ok((plan.memoryBytes ?? 0) > 1e6, `memory read (${plan.memoryBytes})`);
      // b may hold the image from the handoffs before: either way the plan says which.
      assert.equal(typeof plan.image.atDestination, 'boolean');
      await assert.rejects(lab.docker('b').getContainer(name).inspect(), 'the dry run made nothing at b');
      await assert.rejects(lab.docker('b').getContainer(`${name}-netns`).inspect(), 'nor a holder');
    } finally {
      await removeService(state, name);
    }
  });

  test('established connections without a service address are refused before the freeze, not after', async () => {
    const a = lab.docker('a');
    const name = 'loopback-conn';
    // A user's `docker run --network none`: a listener and a client connected to it on loopback,
    // beside the busybox counter.
    // The listener's stdin stays open (sleep), or busybox nc would close at its end-of-file.
    const script = `sleep 2147483647 | nc -l -p 9000 >/dev/null & sleep 0.5; (while true; do echo x; sleep 1; done) | nc 127.0.0.1 9000 & ${BUSYBOX_COUNTER_SCRIPT}`;
    await (await a.createContainer({ name, Image: 'cloudlet/busybox:1', Cmd: ['sh', '-c', script], HostConfig: { NetworkMode: 'none' } })).start();
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const dry = await lab.cli(['migrate', name, '--from', 'a', '--to', 'b', '--dry-run', '--json']);
      const plan = JSON.parse(dry.stdout) as MigrationPlan;
      assert.equal(plan.network.establishedTcp, 2, 'both ends of the loopback connection');
      assert.equal(plan.network.connectionsKept, false);
      assert.ok(
        plan.refusals.some((r) => /2 established TCP connection\(s\) and no service address/.test(r.message)),
        JSON.stringify(plan.refusals),
      );
      // --network none is a namespace of its own: b (Docker 28) could not restore it either.
      assert.ok(
        plan.refusals.some((r) => r.code === 'engine_cannot_restore'),
        JSON.stringify(plan.refusals),
      );
      const before = await readCounter(a, name);
      const r = await lab.cli(['migrate', name, '--from', 'a', '--to', 'b', '--json'], 300_000);
      const report = JSON.parse(r.stdout) as MigrationReport;
      assert.equal(report.state, 'rolled-back');
      assert.match(report.error!.message, /2 established TCP connection\(s\) and no service address/);
      assert.equal(report.downtimeMs, null, 'never frozen');
      assert.equal(report.rounds.length, 0);
      await new Promise((r) => setTimeout(r, 500));
      assert.ok((await readCounter(a, name)) > before, 'the counter kept going at a');
      await assert.rejects(lab.docker('b').getContainer(name).inspect(), 'nothing made at b');
    } finally {
      await a.getContainer(name).remove({ force: true });
    }
  });
});
