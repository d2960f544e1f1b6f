// New connections across live handoffs on a real lab: clients in the lab's client namespace
// open a connection per request, one after the other every few ms (a stream of short-lived
// clients), while the service moves a -> b -> a ... No connection may be reset or refused:
// a client whose handshake meets the move may wait, never fail. Before the source closed
// itself to new SYNs ahead of the address's move (network/syn-gate.ts), a handshake answered
// by the source in the last round trip before the move had its ACK and request held at the
// destination and then answered with a reset there (tcpdump: ~1 reset per client per handoff).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useLab, type TestLab } from '../helpers/lab.js';
import { provisionHandoffService, removeService, startLabClient } from '../../src/bench/handoff.js';
import { migrate } from '../../src/bench/handoff-provision.js';
import type { MigrationReport } from '../../src/migration/types.js';
import type { ClientReport } from '../../src/client/types.js';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Concurrent clients, each a connection per request, a new one this often (ms) after the last answer. */
const CLIENTS = 3;
const INTERVAL_MS = 3;

interface Outcome {
  reports: MigrationReport[];
  clients: ClientReport[];
}

/** `handoffs` handoffs of `name` back and forth under CLIENTS connection-per-request clients. */
async function handoffsUnderNewConnections(lab: TestLab, name: string, o: { holder: boolean; handoffs: number }): Promise<Outcome> {
  const state = lab.state();
  const svc = await provisionHandoffService(state, 'a', name, { netnsHolder: o.holder });
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) {
    clients.push(
      await startLabClient(svc.address, {
        durationMs: 30_000 * o.handoffs + 20_000,
        intervalMs: INTERVAL_MS,
        httpOnly: true,
        newConnectionPerRequest: true,
        env: lab.env,
      }),
    );
  }
  const reports: MigrationReport[] = [];
  let clientReports: ClientReport[] = [];
  try {
    await Promise.all(clients.map((c) => c.ready));
    await sleep(1000);
    let at = 'a';
    for (let k = 0; k < o.handoffs; k++) {
      const to = at === 'a' ? 'b' : 'a';
      const r = await migrate(state, at, to, name);
      reports.push(r);
      if (r.state !== 'done') break;
      at = to;
      await sleep(1000);
    }
  } finally {
    clientReports = await Promise.all(clients.map((c) => c.stop()));
    await removeService(state, name);
  }
  return { reports, clients: clientReports };
}

/** Per handoff and per client: what the test prints (and what a failure needs to be understood). */
function describeOutcome(out: Outcome): string[] {
  const lines = out.reports.map(
    (r, k) =>
      `handoff ${k} ${r.from}->${r.to} ${r.state}: downtime ${r.downtimeMs} ms, gate ${JSON.stringify((r as unknown as Record<string, unknown>).synGate ?? null)}, hold ${JSON.stringify(r.hold ?? null)}, ${r.startedAt.slice(11, 23)}-${r.finishedAt?.slice(11, 23)}${r.error ? `, error ${r.error.message}` : ''}`,
  );
  for (const [i, c] of out.clients.entries()) {
    const s = c.sessions.http!;
    lines.push(
      `client ${i}: sent ${s.sent}, answered ${s.answered}, lost ${s.lost}, latency ${JSON.stringify(s.latencyMs)}, largest gap ${s.largestGap?.ms.toFixed(0)} ms, errors ${JSON.stringify(s.errors.map((e) => `${e.at.slice(11, 23)} ${e.code}`))}`,
    );
  }
  return lines;
}

function assertNoResetOrRefusal(out: Outcome, handoffs: number): void {
  const detail = describeOutcome(out).join('\n');
  assert.equal(out.reports.length, handoffs, detail);
  for (const r of out.reports) assert.equal(r.state, 'done', `handoff ${r.from}->${r.to}: ${r.error?.message}\n${detail}`);
  const errors = out.clients.flatMap((c) => c.sessions.http!.errors);
  const resets = errors.filter((e) => e.code === 'ECONNRESET' || e.code === 'ECONNREFUSED');
  assert.equal(resets.length, 0, `connections reset or refused:\n${detail}`);
  assert.equal(errors.length, 0, `no request failed in any other way (timeouts included):\n${detail}`);
  for (const c of out.clients) {
    const s = c.sessions.http!;
    assert.ok(s.sent >= 100, `a stream of connections, not a few (${s.sent})`);
    assert.equal(s.lost, 0, `nothing lost:\n${detail}`);
    assert.equal(s.answered, s.sent, detail);
  }
}

describe('new connections across live handoffs', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('nconn');

  test('a service in a netns holder: no connection opened around four handoffs is reset or refused', async (t) => {
    const out = await handoffsUnderNewConnections(lab, 'nconn-holder', { holder: true, handoffs: 4 });
    for (const l of describeOutcome(out)) t.diagnostic(l);
    assertNoResetOrRefusal(out, 4);
  });

  test('a service with a network namespace of its own on the service network: the same over four handoffs', async (t) => {
    const out = await handoffsUnderNewConnections(lab, 'nconn-own', { holder: false, handoffs: 4 });
    for (const l of describeOutcome(out)) t.diagnostic(l);
    assertNoResetOrRefusal(out, 4);
  });
});
