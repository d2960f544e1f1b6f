// Network handoff on a real lab: a client in the lab's client namespace keeps one raw TCP
// session and one HTTP keep-alive session to a service provisioned from an overlay on the
// service network. The service is live-migrated a -> b under it (same socket, no reset, every
// message answered, the service's in-memory counter continuous), follows a walking user once
// (not back and forth), and a failed handoff leaves the service - and the connections - at a.
// On the lab engine of test/helpers/lab-engine.ts: on Docker 28 every service runs in a netns
// holder (`cloudlet run --netns-holder`), as users on 28 run them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useLab } from '../helpers/lab.js';
import { expectedHolder, IN_HOLDERS, LAB_ENGINE, LAB_ENGINE_LABEL } from '../helpers/lab-engine.js';
import { provisionHandoffService, removeService, routedTo, startLabClient, summarize, GAP_SLACK_MS } from '../../src/bench/handoff.js';
import { ApiClient } from '../../src/api/client/client.js';
import type { HandoffBenchResult } from '../../src/bench/handoff.js';
import type { MigrationReport } from '../../src/migration/types.js';
import type { ClientReport } from '../../src/client/types.js';

const isRoot = process.getuid?.() === 0;

/** Per session: counts, lost requests with their send time, errors, connections, grace. */
function sessionDetail(client: ClientReport, migration: MigrationReport | null): string {
  const start = Date.parse(client.startedAt);
  const at = (ms: number | null) => (ms === null ? null : new Date(start + ms).toISOString().slice(11, 23));
  const parts = Object.entries(client.sessions).map(([kind, r]) => {
    const lost = r.lostNumbers.map((n) => {
      const sample = r.samples?.find((x) => x.n === n);
      return { n, sentAt: sample ? at(sample.sentAtMs) : null };
    });
    return `${kind} ${JSON.stringify({ sent: r.sent, answered: r.answered, lost, errors: r.errors, connections: r.connections.map((c) => ({ opened: at(c.openedAtMs), closed: at(c.closedAtMs) })), grace: r.answeredInGrace, gap: r.largestGap })}`;
  });
  const m = migration ? `migration ${migration.startedAt.slice(11, 23)}-${migration.finishedAt?.slice(11, 23)} ${migration.state}` : 'no migration report';
  return `${parts.join('; ')}; ${m}; client stopped by ${client.stoppedBy} at ${client.endedAt.slice(11, 23)}`;
}

describe(`network handoff on the lab ${LAB_ENGINE_LABEL}`, { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('hoff', { engine: LAB_ENGINE });
  const netnsHolder = IN_HOLDERS;

  test('bench handoff: TCP and HTTP keep-alive survive a live migration; the service follows the user once', async (t) => {
    const r = await lab.cliJson<HandoffBenchResult>(['bench', 'handoff', ...(netnsHolder ? ['--netns-holder'] : [])], 600_000);
    const d = r.direct!;
    t.diagnostic(`direct: total ${d.migration.totalMs} ms, downtime ${d.migration.downtimeMs} ms, client gap ${d.summary.clientGapMs} ms`);
    assert.equal(d.migration.state, 'done');
    assert.equal(d.migration.serviceAddress, d.service.address, 'the service kept its address');
    assert.equal(d.migration.netnsHolder ?? null, expectedHolder(d.service.container), `with its namespace, ${LAB_ENGINE_LABEL}`);
    assert.equal(d.routedTo, 'b', 'the router sends the address to b');
    for (const [kind, s] of [
      ['tcp', d.summary.tcp],
      ['http', d.summary.http],
    ] as const) {
      assert.ok(s, `${kind} session ran`);
      assert.ok(s.sent > 50, `${kind}: enough requests (${s.sent})`);
      assert.equal(s.lost, 0, `${kind}: nothing lost`);
      assert.equal(s.reconnects, 0, `${kind}: no reconnect`);
      assert.equal(s.errors, 0, `${kind}: no error (no RST)`);
      assert.equal(s.servedContinuous, true, `${kind}: the in-memory counter went on where it was`);
      assert.equal(s.survived, true, `${kind}: same socket from first to last`);
    }
    const conns = d.client.sessions.tcp!.connections;
    assert.equal(conns.length, 1, 'one TCP connection for the whole run');
    assert.ok(d.summary.clientGapMs! >= 1, 'the client saw the freeze');
    assert.ok(
      d.summary.clientGapMs! <= d.migration.downtimeMs! + GAP_SLACK_MS,
      `client gap ${d.summary.clientGapMs} ms <= downtime ${d.migration.downtimeMs} + ${GAP_SLACK_MS} ms`,
    );
    assert.equal(r.tcpConnectionSurvived, true);
    assert.equal(r.httpKeepAliveSurvived, true);
    assert.equal(r.messagesLost, 0);

    const m = r.mobility!;
    t.diagnostic(`mobility: ${m.events.map((e) => `${e.atMs} ${e.what}`).join(' | ')}`);
    for (const [kind, s] of Object.entries(m.client.sessions)) {
      t.diagnostic(
        `mobility ${kind}: ${JSON.stringify({ sent: s.sent, answered: s.answered, lost: s.lostNumbers, errors: s.errors, reconnects: s.reconnects, gap: s.largestGap, grace: s.answeredInGrace, stoppedBy: m.client.stoppedBy })}`,
      );
    }
    t.diagnostic(`mobility RTT: near a ${m.rttNearStartMs} ms, before the move ${m.rttBeforeMoveMs} ms, near b ${m.rttNearEndMs} ms`);
    assert.equal(m.migrations.length, 1, 'exactly one move (none while the user is between the cells, none back)');
    assert.equal(m.migrations[0]!.to, 'b');
    assert.equal(m.migrations[0]!.state, 'done');
    assert.equal(m.finalNode, 'b');
    assert.equal(m.routedTo, 'b');
    assert.equal(m.summary.messagesLost, 0);
    assert.equal(m.summary.tcpConnectionSurvived, true);
    assert.equal(m.summary.httpKeepAliveSurvived, true);
    assert.ok(m.rttBeforeMoveMs! > m.rttNearStartMs! + 20, 'far from the service before the move');
    assert.ok(m.rttNearEndMs! <= m.rttNearStartMs! + 5, `RTT back to the near value (${m.rttNearEndMs} vs ${m.rttNearStartMs} ms)`);
  });

  test('a moved service keeps its address: the cloudlet it left never hands that address to a new service', async () => {
    const state = lab.state();
    const api = (node: string) =>
      new ApiClient({ baseUrl: state.cloudlets.find((c) => c.name === node)!.daemon.apiUrl, token: state.token, timeoutMs: 300_000 });
    const first = await provisionHandoffService(state, 'a', 'addr-one', { netnsHolder });
    const moved = await api('a').post<MigrationReport>('/v1/migrations?wait=1', { container: 'addr-one', to: 'b' });
    assert.equal(moved.state, 'done', moved.error?.message);
    assert.equal(moved.serviceAddress, first.address);
    assert.equal(moved.netnsHolder ?? null, expectedHolder('addr-one'), `with its namespace, ${LAB_ENGINE_LABEL}`);
    // A second service on a: the engine would reuse the freed address; cloudletd must not.
    const second = await provisionHandoffService(state, 'a', 'addr-two', { netnsHolder });
    assert.notEqual(second.address, first.address, 'a new service on a does not take the address of the one that moved to b');
    assert.equal(await routedTo(state, first.address), 'b', 'the moved service keeps its route');
    assert.equal(await routedTo(state, second.address), 'a');
    // And the moved one can come home.
    const back = await api('b').post<MigrationReport>('/v1/migrations?wait=1', { container: 'addr-one', to: 'a' });
    assert.equal(back.state, 'done', back.error?.message);
    assert.equal(await routedTo(state, first.address), 'a');
    await removeService(state, 'addr-one');
    await removeService(state, 'addr-two');
  });

  test('a service in a network namespace holder keeps its connections across a handoff and across a failed one', async (t) => {
    const state = lab.state();
    const name = 'holder-svc';
    const svc = await provisionHandoffService(state, 'a', name, { netnsHolder: true });
    const holder = `${name}-netns`;
    const mode = (await lab.docker('a').getContainer(name).inspect()).HostConfig.NetworkMode;
    const holderIdA = (await lab.docker('a').getContainer(holder).inspect()).Id;
    assert.equal(mode, `container:${holderIdA}`, 'the service joins its holder');
    const client = await startLabClient(svc.address, { durationMs: 90_000, intervalMs: 20, env: lab.env });
    const reports: MigrationReport[] = [];
    try {
      await client.ready;
      await new Promise((r) => setTimeout(r, 1000));
      const apiA = new ApiClient({ baseUrl: state.cloudlets[0]!.daemon.apiUrl, token: state.token, timeoutMs: 300_000 });
      const apiB = new ApiClient({ baseUrl: state.cloudlets[1]!.daemon.apiUrl, token: state.token, timeoutMs: 300_000 });
      reports.push(await apiA.post<MigrationReport>('/v1/migrations?wait=1', { container: name, to: 'b' }));
      await new Promise((r) => setTimeout(r, 1000));
      reports.push(await apiB.post<MigrationReport>('/v1/migrations?wait=1', { container: name, to: 'a', inject: 'before-restore' }));
      await new Promise((r) => setTimeout(r, 2000));
    } finally {
      const clientReport = await client.stop();
      const s = summarize(clientReport, reports);
      const detail = sessionDetail(clientReport, reports.at(-1) ?? null);
      t.diagnostic(
        `holder: downtime ${reports[0]?.downtimeMs} ms (restore ${reports[0]?.restoreMs} ms, holder ${reports[0]?.netnsHolderFrom}); client gap ${s.clientGapMs} ms; ${detail}`,
      );
      assert.equal(s.messagesLost, 0, `nothing lost: ${detail}`);
      assert.equal(s.tcpConnectionSurvived, true, `TCP session survived both: ${detail}`);
      assert.equal(s.httpKeepAliveSurvived, true, `HTTP keep-alive session survived both: ${detail}`);
    }
    const [moved, failed] = reports as [MigrationReport, MigrationReport];
    assert.equal(moved.state, 'done', moved.error?.message);
    assert.equal(moved.netnsHolder, holder);
    assert.equal(moved.netnsHolderFrom, 'started', 'a holder on the service network has a pinned address: no spare stands for it');
    assert.equal(moved.serviceAddress, svc.address, "the address is the holder's, and it moved");
    await assert.rejects(lab.docker('a').getContainer(holder).inspect(), 'the holder left a with the service');
    const holderB = await lab.docker('b').getContainer(holder).inspect();
    assert.equal(holderB.NetworkSettings.Networks['cloudlet-svc']?.IPAddress, svc.address, "b's holder has the address");
    assert.equal(failed.state, 'rolled-back', failed.error?.message);
    assert.equal(await routedTo(state, svc.address), 'b');
    assert.equal((await lab.docker('b').getContainer(name).inspect()).State.Running, true, 'still running at b');
    await assert.rejects(lab.docker('a').getContainer(holder).inspect(), 'the holder made at a for the failed handoff is gone');
    await removeService(state, name);
  });

  test('a handoff that fails at the destination leaves the service and its connections at a', async (t) => {
    const state = lab.state();
    const svc = await provisionHandoffService(state, 'a', 'rollback-svc', { netnsHolder });
    const client = await startLabClient(svc.address, { durationMs: 60_000, intervalMs: 20, env: lab.env });
    let report: MigrationReport | undefined;
    try {
      await client.ready;
      await new Promise((r) => setTimeout(r, 1000));
      const api = new ApiClient({ baseUrl: state.cloudlets[0]!.daemon.apiUrl, token: state.token, timeoutMs: 300_000 });
      report = await api.post<MigrationReport>('/v1/migrations?wait=1', { container: 'rollback-svc', to: 'b', inject: 'before-restore' });
      await new Promise((r) => setTimeout(r, 2000));
    } finally {
      const clientReport = await client.stop();
      const s = summarize(clientReport, []);
      // Everything a failure here needs to be understood: which requests went unanswered,
      // when they were sent (wall clock) against the migration's start and end, and errors.
      const detail = sessionDetail(clientReport, report ?? null);
      t.diagnostic(`rollback: client gap ${s.clientGapMs} ms; ${detail}`);
      assert.equal(s.messagesLost, 0, `nothing lost: ${detail}`);
      assert.equal(s.tcpConnectionSurvived, true, `TCP session survived the rollback (restored at a from its final dump): ${detail}`);
      assert.equal(s.httpKeepAliveSurvived, true, `HTTP keep-alive session survived the rollback: ${detail}`);
    }
    assert.ok(report);
    assert.equal(report.state, 'rolled-back', report.error?.message);
    assert.equal(report.netnsHolder ?? null, expectedHolder('rollback-svc'), `with its namespace, ${LAB_ENGINE_LABEL}`);
    assert.match(report.error!.message, /routed back here/);
    assert.equal(await routedTo(state, svc.address), 'a');
    assert.equal((await lab.docker('a').getContainer('rollback-svc').inspect()).State.Running, true, 'running at a');
    await assert.rejects(lab.docker('b').getContainer('rollback-svc').inspect(), 'nothing left at b');
    await assert.rejects(lab.docker('b').getContainer('rollback-svc-netns').inspect(), 'nor a holder');
    await removeService(state, 'rollback-svc');
  });
});
