// Handoff by re-creation (issue 9) on a real lab of its own: a stateless HTTP service declared
// `recreate` is handed off a -> b while a client in the lab's client namespace makes a new
// connection per request; every request is answered, the old instance is gone, the new one
// has the same address and labels. `auto` migrates a stateful service and recreates a
// stateless one. A new instance that never gets healthy is removed; the old one kept serving.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execIn, useLab } from '../helpers/lab.js';
import { LAB_SERVICE_NETWORK } from '../../src/lab/lab.js';
import { provisionHandoffService, removeService, routedTo, startLabClient } from '../../src/bench/handoff.js';
import { ApiClient } from '../../src/api/client/client.js';
import type { MigrationReport } from '../../src/migration/types.js';
import type { ClientReport } from '../../src/client/types.js';
import type { ServiceReply } from '../../src/daemon/routes-overlays.js';
import { nsRun } from '../../src/lab/netns.js';
import { DRAIN_MS } from '../../src/migration/recreate-drain.js';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HEALTH = { http: { port: 8080, path: '/healthz' } };

/** Drain links (cldr*) and their mangle chains left in a cloudlet's namespace. */
async function drainLeftovers(namespace: string): Promise<string[]> {
  const links = (await nsRun(namespace, 'ip', ['-o', 'link', 'show'])).stdout.split('\n').filter((l) => /: cldr[0-9a-f]{8}[@:]/.test(l));
  const chains = (await nsRun(namespace, 'iptables', ['-w', '-t', 'mangle', '-S'])).stdout.split('\n').filter((l) => l.includes('CLDRAIN-'));
  return [...links, ...chains];
}

describe('handoff by re-creation on the lab', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('recr');
  const apiA = () => new ApiClient({ baseUrl: lab.state().cloudlets[0]!.daemon.apiUrl, token: lab.state().token, timeoutMs: 300_000 });

  test('recreate: a client making new connections through the handoff gets every request answered; the old instance is gone', async (t) => {
    const state = lab.state();
    const svc = await provisionHandoffService(state, 'a', 'recr-svc', { handoff: { handoff: 'recreate', stateless: true, health: HEALTH } });
    t.after(() => removeService(state, 'recr-svc'));
    const labelsAtA = (await lab.docker('a').getContainer('recr-svc').inspect()).Config.Labels;
    assert.equal(labelsAtA['cloudlet.handoff'], 'recreate');
    assert.equal(labelsAtA['cloudlet.health'], 'http:8080/healthz');
    const client = await startLabClient(svc.address, { durationMs: 120_000, intervalMs: 20, env: lab.env, httpOnly: true, newConnectionPerRequest: true });
    let report: MigrationReport;
    let c: ClientReport;
    try {
      await client.ready;
      await sleep(1500);
      // No strategy in the request: the service's label decides.
      report = await apiA().post<MigrationReport>('/v1/migrations?wait=1', { container: 'recr-svc', to: 'b' });
      await sleep(1500);
    } finally {
      c = await client.stop();
    }
    const h = c.sessions.http!;
    t.diagnostic(
      `recreate: total ${report.totalMs} ms, ${JSON.stringify(report.recreate)}; client ${h.answered}/${h.sent} answered, ${h.errors.length} errors, ${h.connections.length} connections, largest gap ${h.largestGap?.ms} ms`,
    );
    if (h.errors.length) t.diagnostic(`client errors: ${JSON.stringify(h.errors.slice(0, 5))}`);
    assert.equal(report.state, 'done', report.error?.message);
    assert.equal(report.strategy, 'recreate');
    assert.match(report.strategyReason!, /label cloudlet\.handoff/);
    assert.equal(report.rounds.length, 0, 'no memory rounds');
    assert.equal(report.downtimeMs, 0);
    assert.equal(report.serviceAddress, svc.address);
    assert.ok(report.recreate && report.recreate.healthChecks >= 1, 'the new instance was health-checked');
    assert.equal(report.recreate.drainMs, DRAIN_MS, "the old instance's connections were drained to it");
    for (const cl of state.cloudlets) assert.deepEqual(await drainLeftovers(cl.namespace), [], `no drain left on ${cl.name}`);

    assert.ok(h.sent > 50, `enough requests (${h.sent})`);
    assert.equal(h.connections.length, h.answered, 'a new connection per request');
    assert.equal(h.lost, 0, `nothing failed or lost: ${h.lostNumbers.join(',')}`);
    assert.equal(h.errors.length, 0, 'no connection refused or reset');
    assert.equal(h.instances.length, 2, 'answered by the old instance, then by the new one');

    assert.equal(await routedTo(state, svc.address), 'b');
    await assert.rejects(lab.docker('a').getContainer('recr-svc').inspect(), 'the old instance is gone from a');
    const atB = await lab.docker('b').getContainer('recr-svc').inspect();
    assert.equal(atB.State.Running, true);
    assert.equal(atB.Id, report.destinationContainerId);
    assert.equal(atB.Config.Labels['cloudlet.handoff'], 'recreate', 'labels travel with the service');
    assert.equal(Object.values(atB.NetworkSettings.Networks)[0]!.IPAddress, svc.address, 'same service address');
  });

  test('auto: a stateful service is migrated, a stateless one recreated; each report says why', async (t) => {
    const state = lab.state();
    t.after(async () => {
      await removeService(state, 'auto-stateful');
      await removeService(state, 'auto-stateless');
    });
    const first = await provisionHandoffService(state, 'a', 'auto-stateful', { handoff: { handoff: 'auto', stateless: false, health: HEALTH } });
    // The second from the same overlay while the first runs at a: both have their own address
    // (an address freed at a by a move would be handed out again and clash at b).
    const second = await apiA().post<ServiceReply>('/v1/services', {
      overlay: first.overlay,
      name: 'auto-stateless',
      handoff: 'auto',
      stateless: true,
      health: HEALTH,
    });
    assert.notEqual(second.address, first.address);
    const stateful = await apiA().post<MigrationReport>('/v1/migrations?wait=1', { container: 'auto-stateful', to: 'b' });
    const stateless = await apiA().post<MigrationReport>('/v1/migrations?wait=1', { container: 'auto-stateless', to: 'b' });
    t.diagnostic(`stateful: ${stateful.strategyReason}; stateless: ${stateless.strategyReason}`);
    assert.equal(stateful.state, 'done', stateful.error?.message);
    assert.equal(stateful.strategy, 'migrate');
    assert.match(stateful.strategyReason!, /^auto .*not declared stateless/);
    assert.ok(stateful.rounds.length >= 1, 'live migration: memory rounds');
    assert.equal(stateless.state, 'done', stateless.error?.message);
    assert.equal(stateless.strategy, 'recreate');
    assert.match(stateless.strategyReason!, /^auto .*declared stateless/);
    assert.equal(stateless.rounds.length, 0);
    // The live-migrated twin keeps its labels, so its next handoff decides the same way.
    assert.equal((await lab.docker('b').getContainer('auto-stateful').inspect()).Config.Labels['cloudlet.handoff'], 'auto');
    // An explicit strategy in the request overrides the label: back to a by re-creation.
    const apiB = new ApiClient({ baseUrl: state.cloudlets[1]!.daemon.apiUrl, token: state.token, timeoutMs: 300_000 });
    const back = await apiB.post<MigrationReport>('/v1/migrations?wait=1', { container: 'auto-stateful', to: 'a', strategy: 'recreate' });
    assert.equal(back.state, 'done', back.error?.message);
    assert.equal(back.strategy, 'recreate');
    assert.match(back.strategyReason!, /request/);
  });

  test('a new instance that never passes its health check is removed; the old one kept serving at a', async (t) => {
    const state = lab.state();
    t.after(() => removeService(state, 'sick-svc'));
    const svc = await provisionHandoffService(state, 'a', 'sick-svc', {
      handoff: { handoff: 'recreate', stateless: true, health: { http: { port: 8080, path: '/not-here' } } },
    });
    const report = await apiA().post<MigrationReport>('/v1/migrations?wait=1', { container: 'sick-svc', to: 'b' });
    assert.equal(report.state, 'rolled-back');
    assert.equal(report.error?.code, 'health_check_failed');
    assert.match(report.error!.message, /HTTP 404/);
    assert.match(report.error!.message, /new instance removed at the destination; the old instance kept serving/);
    assert.equal((await lab.docker('a').getContainer('sick-svc').inspect()).State.Running, true, 'still running at a');
    await assert.rejects(lab.docker('b').getContainer('sick-svc').inspect(), 'nothing left at b');
    assert.equal(await routedTo(state, svc.address), 'a', 'the address was never moved');
  });

  test('recreate carries named volumes: synced before the new instance starts', async (t) => {
    const state = lab.state();
    t.after(async () => {
      await removeService(state, 'vol-base');
      await removeService(state, 'vol-svc');
      for (const node of ['a', 'b'])
        await lab
          .docker(node)
          .getVolume('recr-data')
          .remove()
          .catch(() => undefined);
    });
    // The image from a provisioned service; the container made directly, with a named volume.
    const base = await provisionHandoffService(state, 'a', 'vol-base');
    const c = await lab.docker('a').createContainer({
      name: 'vol-svc',
      Image: base.reply.imageId,
      Env: ['HOST=0.0.0.0'],
      Labels: { 'cloudlet.handoff': 'recreate', 'cloudlet.stateless': 'true', 'cloudlet.health': 'http:8080/healthz' },
      HostConfig: { NetworkMode: LAB_SERVICE_NETWORK.name, Binds: ['recr-data:/data'] },
    });
    await c.start();
    const write = "require('fs').mkdirSync('/data/sub',{recursive:true}); require('fs').writeFileSync('/data/sub/hello','kept '+process.pid)";
    await execIn(lab.docker('a'), 'vol-svc', ['node', '-e', write]);
    const before = await execIn(lab.docker('a'), 'vol-svc', ['node', '-e', "process.stdout.write(require('fs').readFileSync('/data/sub/hello','utf8'))"]);
    const report = await apiA().post<MigrationReport>('/v1/migrations?wait=1', { container: 'vol-svc', to: 'b' });
    assert.equal(report.state, 'done', report.error?.message);
    assert.equal(report.strategy, 'recreate');
    assert.deepEqual(report.recreate!.volumes, ['recr-data']);
    assert.ok(report.recreate!.volumeBytes > 0 && report.bytesSent === report.recreate!.volumeBytes);
    const after = await execIn(lab.docker('b'), 'vol-svc', ['node', '-e', "process.stdout.write(require('fs').readFileSync('/data/sub/hello','utf8'))"]);
    assert.equal(after, before, 'the volume content arrived before the new instance started');
    await assert.rejects(lab.docker('a').getContainer('vol-svc').inspect(), 'old instance gone');
  });
});
