// `bench handoff --scenario mobility`: the user walks from cloudlet a's cell to b's (the lab
// changes link latencies along a scripted path) and the handoff policy decides when the
// service follows.
import { errorMessage, UsageError } from '../util/errors.js';
import { setLink } from '../lab/lab.js';
import { nsRun } from '../lab/netns.js';
import type { LabCloudlet, LabState, LinkSpec } from '../lab/state.js';
import { HandoffPolicy, type HandoffPolicyOptions } from '../mobility/policy.js';
import type { ClientReport } from '../client/types.js';
import type { MigrationReport } from '../migration/types.js';
import { cloudlet, migrate, provisionHandoffService, removeService, routedTo, type ProvisionedService } from './handoff-provision.js';
import { summarize, type HandoffSummary } from './handoff-summary.js';
import { startLabClient } from './lab-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface PathStep {
  /** How long the user stays at this point of the path. */
  holdMs: number;
  /** One-way latency of each cloudlet's link while there (the user's distance to its cell). */
  latency: Record<string, string>;
  label: string;
}

/** The user starts in a's cell, wanders between the cells (no move wanted), ends in b's. */
export function defaultPath(near = '1ms', far = '20ms'): PathStep[] {
  return [
    { label: `near a`, holdMs: 4000, latency: { a: near, b: far } },
    { label: 'between cells, a slightly closer', holdMs: 1500, latency: { a: '9ms', b: '11ms' } },
    { label: 'between cells, b slightly closer', holdMs: 1500, latency: { a: '11ms', b: '9ms' } },
    { label: 'between cells, a slightly closer', holdMs: 1500, latency: { a: '9ms', b: '11ms' } },
    { label: `near b`, holdMs: 8000, latency: { a: far, b: near } },
  ];
}

/** How long the user stays at the path's end once the service has settled. */
const SETTLE_MS = 3000;

export interface MobilityEvent {
  atMs: number;
  what: string;
}

export interface MobilityResult {
  scenario: 'mobility';
  policy: HandoffPolicyOptions;
  path: PathStep[];
  service: Omit<ProvisionedService, 'reply'> & { firstRequestMs: number };
  migrations: MigrationReport[];
  /** Where the service ran after the path: the cloudlet it moved to, the router's route. */
  finalNode: string;
  routedTo: string | null;
  /** Client request latency (median, ms): near a at the start, in the second before the move, near b once settled. */
  rttNearStartMs: number | null;
  rttBeforeMoveMs: number | null;
  rttNearEndMs: number | null;
  events: MobilityEvent[];
  summary: HandoffSummary;
  client: ClientReport;
}

/** RTT from the client's namespace to a cloudlet (one ICMP echo), or null without an answer. */
async function probeRtt(lab: LabState, cl: LabCloudlet): Promise<number | null> {
  const r = await nsRun(lab.client.namespace, 'ping', ['-n', '-c', '1', '-W', '1', cl.address]).catch(() => null);
  const m = r ? /time=([\d.]+) ms/.exec(r.stdout) : null;
  return m ? Number(m[1]) : null;
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** What the walk changes as it goes: where the service runs, the moves made, when the first was decided. */
interface Walk {
  current: string;
  migrations: MigrationReport[];
  /** ms since the path's start when the policy first decided to move; null: it never did. */
  decidedAt: number | null;
}

interface WalkContext {
  lab: LabState;
  name: string;
  opts: MobilityOptions;
  /** Start of the scenario (events' time base) and of the path (decidedAt's). */
  t0: number;
  pathStart: number;
  log: (what: string) => void;
  setLatencies: (latency: Record<string, string>) => Promise<void>;
}

export interface MobilityOptions {
  path: PathStep[];
  policy: HandoffPolicyOptions;
  intervalMs: number;
  probeMs: number;
  progress: (m: string) => void;
  netnsHolder?: boolean;
}

/**
 * The user walks along `path`; every `probeMs` the client's RTT to each cloudlet is measured
 * and fed to the handoff policy, which decides when the service follows. The links are put
 * back as they were afterwards.
 */
export async function runMobility(lab: LabState, opts: MobilityOptions): Promise<MobilityResult> {
  const [a] = lab.cloudlets;
  if (!a || lab.cloudlets.length < 2) throw new UsageError('the mobility scenario needs a lab of at least two cloudlets');
  const name = 'mobile-svc';
  const original = new Map<string, LinkSpec>(lab.cloudlets.map((c) => [c.name, { ...c.link }]));
  const events: MobilityEvent[] = [];
  const t0 = performance.now();
  const log = (what: string) => {
    const atMs = Math.round(performance.now() - t0);
    events.push({ atMs, what });
    opts.progress(`[${(atMs / 1000).toFixed(1)} s] ${what}`);
  };
  const setLatencies = async (latency: Record<string, string>) => {
    for (const [node, l] of Object.entries(latency)) {
      const cl = cloudlet(lab, node);
      await setLink(lab, node, { bandwidth: cl.link.bandwidth, latency: l });
    }
  };

  await setLatencies(opts.path[0]!.latency);
  const svc = await provisionHandoffService(lab, a.name, name, { progress: opts.progress, netnsHolder: opts.netnsHolder === true });
  const walk: Walk = { current: a.name, migrations: [], decidedAt: null };
  const totalMs = opts.path.reduce((s, p) => s + p.holdMs, 0);
  const client = await startLabClient(svc.address, { durationMs: totalMs + 120_000, intervalMs: opts.intervalMs });
  let report: ClientReport;
  let clientStart = 0;
  let pathStart = 0;
  let settleStart = 0;
  try {
    await client.ready;
    clientStart = performance.now();
    log(`client connected to ${svc.address} on ${walk.current}`);
    pathStart = performance.now();
    await walkPath({ lab, name, opts, t0, pathStart, log, setLatencies }, walk);
    settleStart = performance.now() - pathStart;
    log(`user stays: ${SETTLE_MS / 1000} s with the service on ${walk.current}`);
    await sleep(SETTLE_MS);
  } finally {
    report = await client.stop();
    await setLatencies(Object.fromEntries([...original].map(([n, l]) => [n, l.latency]))).catch((err: unknown) =>
      opts.progress(`could not put the links back: ${errorMessage(err)}`),
    );
    await removeService(lab, name).catch((err: unknown) => opts.progress(`could not remove ${name}: ${errorMessage(err)}`));
  }
  // RTT the user saw: the client's request latencies in the first step (near a) and in the
  // last seconds of the path (near b, after the move). Sample times are the client's (ms
  // since its start); its readyAtMs is when we saw it ready (clientStart).
  const samples = report.sessions.tcp?.samples ?? [];
  const offset = clientStart - pathStart - (report.readyAtMs ?? 0);
  const firstStepEnd = opts.path[0]!.holdMs;
  const lat = (from: number, to: number) =>
    median(samples.filter((s) => s.latencyMs !== null && s.sentAtMs + offset >= from && s.sentAtMs + offset < to).map((s) => s.latencyMs!));
  const { reply, ...service } = svc;
  return {
    scenario: 'mobility',
    policy: opts.policy,
    path: opts.path,
    service: { ...service, firstRequestMs: reply.timings.totalMs },
    migrations: walk.migrations,
    finalNode: walk.current,
    routedTo: await routedTo(lab, svc.address),
    rttNearStartMs: lat(0, firstStepEnd),
    rttBeforeMoveMs: walk.decidedAt === null ? null : lat(walk.decidedAt - 1000, walk.decidedAt),
    rttNearEndMs: lat(settleStart, settleStart + SETTLE_MS),
    events,
    summary: summarize(report, walk.migrations),
    client: report,
  };
}

/**
 * Every step of the path in turn, probing and asking the policy every probeMs; a move runs in
 * the background while the walk goes on. Returns once the path is done and a move under way
 * has ended: the user stays where the path ended until then.
 */
async function walkPath(ctx: WalkContext, walk: Walk): Promise<void> {
  const { lab, name, opts, log } = ctx;
  const policy = new HandoffPolicy(opts.policy);
  let pending: Promise<void> | null = null;
  let failure: unknown = null;
  for (const step of opts.path) {
    await ctx.setLatencies(step.latency);
    log(
      `user ${step.label}: ${Object.entries(step.latency)
        .map(([n, l]) => `${n} ${l}`)
        .join(', ')}`,
    );
    const until = performance.now() + step.holdMs;
    while (performance.now() < until) {
      const probeStart = performance.now();
      const rtts: Record<string, number> = {};
      for (const cl of lab.cloudlets) {
        const rtt = await probeRtt(lab, cl);
        if (rtt !== null) rtts[cl.name] = rtt;
      }
      if (!pending) {
        const d = policy.observe({ atMs: performance.now() - ctx.t0, rttMs: rtts }, walk.current);
        if (d.move) {
          const from = walk.current;
          walk.decidedAt ??= performance.now() - ctx.pathStart;
          log(`policy: hand off ${from} -> ${d.to} (${d.reason})`);
          pending = migrate(lab, from, d.to, name).then(
            (m) => {
              walk.migrations.push(m);
              if (m.state === 'done') walk.current = d.to;
              log(`${m.strategy ?? 'migrate'} ${from} -> ${d.to} ${m.state}: total ${m.totalMs} ms, downtime ${m.downtimeMs} ms`);
              pending = null;
            },
            (err: unknown) => {
              failure = err;
              pending = null;
            },
          );
        }
      }
      if (failure) throw failure;
      await sleep(Math.max(0, opts.probeMs - (performance.now() - probeStart)));
    }
  }
  if (pending) await pending;
  if (failure) throw failure;
}
