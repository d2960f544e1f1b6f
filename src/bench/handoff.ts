// `cloudlet bench handoff`: the network handoff as the user sees it. A service provisioned
// from an overlay on the service network, a client in the lab's client namespace holding one
// raw TCP session and one HTTP keep-alive session to it, then either
//   direct   - one live migration a -> b while the client talks, or
//   mobility - the user walks from cloudlet a's cell to b's (the lab changes link latencies
//              along a scripted path), the handoff policy decides when the service follows.
// Everything reported comes from the client's own report and the daemons' migration reports.
// The direct scenario and the bench's result are here; the other parts have modules of
// their own: handoff-provision.ts (the service in the lab), handoff-mobility.ts,
// handoff-strategies.ts, handoff-summary.ts, lab-client.ts (the client process).
import os from 'node:os';
import { CloudletError, UsageError, errorMessage } from '../util/errors.js';
import { labDir, readLabState, type LabState } from '../lab/state.js';
import { DEFAULT_HANDOFF_POLICY, type HandoffPolicyOptions } from '../mobility/policy.js';
import type { ClientReport } from '../client/types.js';
import type { MigrationReport } from '../migration/types.js';
import { handoffRuns, summarizeHandoffRuns, type HandoffRun, type HandoffRunsSummary } from './handoff-runs.js';
import { labOrThrow, migrate, provisionHandoffService, removeService, routedTo, type ProvisionedService } from './handoff-provision.js';
import { defaultPath, runMobility, type MobilityResult } from './handoff-mobility.js';
import { runStrategiesHandoff, type StrategiesResult } from './handoff-strategies.js';
import { summarize, type HandoffSummary } from './handoff-summary.js';
import { startLabClient } from './lab-client.js';

// The scenarios' parts, named here as before for the benches' callers and tests.
export { provisionHandoffService, removeService, routedTo, type ProvisionedService } from './handoff-provision.js';
export { defaultPath, runMobility, type MobilityEvent, type MobilityOptions, type MobilityResult, type PathStep } from './handoff-mobility.js';
export { runStrategiesHandoff, type StrategiesResult, type StrategyRun } from './handoff-strategies.js';
export { GAP_SLACK_MS, summarize, type HandoffSummary, type SessionOutcome } from './handoff-summary.js';
export { startLabClient, type RunningClient } from './lab-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The direct scenario's window (TCP and pipelined HTTP): requests keep going out (and are held) through the freeze. */
export const DIRECT_WINDOW = 8;

/** Between two migrations of a repeated handoff (and before the first, after the last): the client talks to a settled service. */
const PAUSE_MS = 2000;

export interface DirectHandoffResult {
  scenario: 'direct';
  service: Omit<ProvisionedService, 'reply'> & { firstRequestMs: number };
  /** The first migration (from -> to). */
  migration: MigrationReport;
  /** Every migration in the order they ran, alternating from -> to, to -> from... (one without --repeat). */
  migrations: MigrationReport[];
  /** The client's window per session (requests in flight at most; HTTP pipelined). */
  window: number;
  pauseMs: number;
  /** Where the router sends the service address after the last migration. */
  routedTo: string | null;
  /** One per migration: its downtime against the client's gap around it. */
  runs: HandoffRun[];
  runSummary: HandoffRunsSummary;
  summary: HandoffSummary;
  client: ClientReport;
}

/**
 * `repeat` live migrations (one by default), alternating from -> to and back, under one client
 * that talks to the service throughout, with a pause before, between and after them.
 */
export async function runDirectHandoff(
  lab: LabState,
  opts: { from: string; to: string; intervalMs: number; progress: (m: string) => void; netnsHolder?: boolean; repeat?: number; window?: number },
): Promise<DirectHandoffResult> {
  const name = 'handoff-svc';
  const repeat = opts.repeat ?? 1;
  const window = opts.window ?? DIRECT_WINDOW;
  const svc = await provisionHandoffService(lab, opts.from, name, { progress: opts.progress, netnsHolder: opts.netnsHolder === true });
  // An upper bound only: the client is stopped once the migrations are done.
  const client = await startLabClient(svc.address, { durationMs: 120_000 + repeat * 60_000, intervalMs: opts.intervalMs, window });
  const migrations: MigrationReport[] = [];
  let report: ClientReport;
  try {
    await client.ready;
    opts.progress(`client connected to ${svc.address} (tcp :7000, http :8080, window ${window} each), a request every ${opts.intervalMs} ms per session`);
    await sleep(PAUSE_MS);
    for (let i = 0; i < repeat; i++) {
      const [from, to] = i % 2 === 0 ? [opts.from, opts.to] : [opts.to, opts.from];
      opts.progress(`${repeat > 1 ? `run ${i + 1}/${repeat}: ` : ''}migrating ${name} ${from} -> ${to} while the client talks`);
      const m = await migrate(lab, from, to, name);
      migrations.push(m);
      opts.progress(`migration ${m.state}: total ${m.totalMs} ms, downtime ${m.downtimeMs} ms`);
      if (m.state !== 'done') break;
      await sleep(PAUSE_MS);
    }
  } finally {
    report = await client.stop();
    await removeService(lab, name).catch((err: unknown) => opts.progress(`could not remove ${name}: ${errorMessage(err)}`));
  }
  const failed = migrations.find((m) => m.state !== 'done');
  if (failed || migrations.length === 0) {
    const m = failed ?? null;
    throw new CloudletError(
      'handoff_failed',
      `migration ${m?.from ?? opts.from} -> ${m?.to ?? opts.to} ended ${m?.state ?? 'without a report'}: ${m?.error?.message ?? ''}`,
      { kind: 'upstream' },
    );
  }
  const runs = handoffRuns(report, migrations);
  const { reply, ...service } = svc;
  return {
    scenario: 'direct',
    service: { ...service, firstRequestMs: reply.timings.totalMs },
    migration: migrations[0]!,
    migrations,
    window,
    pauseMs: PAUSE_MS,
    routedTo: await routedTo(lab, svc.address),
    runs,
    runSummary: summarizeHandoffRuns(runs, report),
    summary: summarize(report, migrations),
    client: report,
  };
}

export interface HandoffBenchResult {
  bench: 'handoff';
  /** The command line that ran it. */
  command: string;
  date: string;
  machine: { cores: number; memoryGiB: number; kernel: string };
  links: Record<string, string>;
  direct: DirectHandoffResult | null;
  mobility: MobilityResult | null;
  strategies?: StrategiesResult | null;
  /** Issue 5's headline fields, from the direct handoff (or the mobility run alone). */
  tcpConnectionSurvived: boolean;
  httpKeepAliveSurvived: boolean;
  clientGapMs: number | null;
  downtimeMs: number | null;
  messagesLost: number;
}

export async function runHandoffBench(opts: {
  scenarios: ('direct' | 'mobility' | 'strategies')[];
  intervalMs: number;
  policy?: HandoffPolicyOptions;
  progress: (m: string) => void;
  /** Provision the direct and mobility scenarios' service in a network namespace holder. */
  netnsHolder?: boolean;
  /** Direct scenario: migrations under one client (alternating directions), and its window per session. */
  repeat?: number;
  window?: number;
  command?: string;
}): Promise<HandoffBenchResult> {
  const lab = labOrThrow();
  const links = Object.fromEntries([lab.client, ...lab.cloudlets].map((h) => [h.name, `${h.link.bandwidth}/${h.link.latency}`]));
  const [a, b] = lab.cloudlets;
  if (!a || !b) throw new UsageError('the handoff bench needs a lab of at least two cloudlets');
  const direct = opts.scenarios.includes('direct')
    ? await runDirectHandoff(lab, {
        from: a.name,
        to: b.name,
        intervalMs: opts.intervalMs,
        progress: opts.progress,
        netnsHolder: opts.netnsHolder === true,
        ...(opts.repeat !== undefined ? { repeat: opts.repeat } : {}),
        ...(opts.window !== undefined ? { window: opts.window } : {}),
      })
    : null;
  const mobility = opts.scenarios.includes('mobility')
    ? await runMobility(readLabState(labDir()) ?? lab, {
        path: defaultPath(),
        policy: opts.policy ?? DEFAULT_HANDOFF_POLICY,
        intervalMs: opts.intervalMs,
        probeMs: 250,
        progress: opts.progress,
        netnsHolder: opts.netnsHolder === true,
      })
    : null;
  const strategies = opts.scenarios.includes('strategies')
    ? await runStrategiesHandoff(readLabState(labDir()) ?? lab, { from: a.name, to: b.name, intervalMs: opts.intervalMs, progress: opts.progress })
    : null;
  const head = (direct ?? mobility)?.summary;
  return {
    bench: 'handoff',
    command: opts.command ?? `cloudlet ${process.argv.slice(2).join(' ')}`,
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
    links,
    direct,
    mobility,
    strategies,
    tcpConnectionSurvived: head?.tcpConnectionSurvived ?? false,
    httpKeepAliveSurvived: head?.httpKeepAliveSurvived ?? false,
    clientGapMs: head?.clientGapMs ?? null,
    downtimeMs: head?.downtimeMs ?? null,
    messagesLost: head?.messagesLost ?? 0,
  };
}
