// `cloudlet bench handoff`: the network handoff as the user sees it. A service provisioned
// from an overlay on the service network, a client in the lab's client namespace holding one
// raw TCP session and one HTTP keep-alive session to it, then either
//   direct   - one live migration a -> b while the client talks, or
//   mobility - the user walks from cloudlet a's cell to b's (the lab changes link latencies
//              along a scripted path), the handoff policy decides when the service follows.
// Everything reported comes from the client's own report and the daemons' migration reports.
import { holderNameFor } from '../network/netns-holder.js';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError, UsageError, errorMessage } from '../util/errors.js';
import { DockerEngine } from '../engine/docker.js';
import { CloudletClient } from '../cli/client.js';
import { IMAGE_CACHE_DIR, setLink } from '../lab/lab.js';
import { nsRun } from '../lab/netns.js';
import { labDir, readLabState, type LabCloudlet, type LabState, type LinkSpec } from '../lab/state.js';
import { createOverlay } from '../images/overlay-create.js';
import { uploadFile } from '../images/overlay-upload.js';
import { NODE_IMAGE, loadImageArchive } from '../images/base-images.js';
import { buildAppArchive, HANDOFF_APP } from '../workloads/overlay-apps.js';
import { HandoffPolicy, DEFAULT_HANDOFF_POLICY, type HandoffPolicyOptions } from '../mobility/policy.js';
import type { ClientReport, SessionReport } from '../client/types.js';
import { handoffRuns, summarizeHandoffRuns, type HandoffRun, type HandoffRunsSummary } from './handoff-runs.js';
import type { MigrationReport } from '../migration/types.js';
import { OVERLAY_CONTENT_TYPE, type ServiceReply, type ServiceRequest } from '../daemon/routes-overlays.js';

const CLI_MAIN = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'cli', 'main.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The client may see the service silent for the downtime plus one retransmission's slack. */
export const GAP_SLACK_MS = 300;

export interface ProvisionedService {
  node: string;
  container: string;
  address: string;
  overlay: string;
  overlayBytes: number;
  reply: ServiceReply;
}

function cloudlet(lab: LabState, name: string): LabCloudlet {
  const cl = lab.cloudlets.find((c) => c.name === name);
  if (!cl) throw new UsageError(`no cloudlet '${name}' in the lab`, { hint: `cloudlets: ${lab.cloudlets.map((c) => c.name).join(', ')}` });
  return cl;
}

function api(lab: LabState, name: string, timeoutMs = 10 * 60_000): CloudletClient {
  return new CloudletClient(cloudlet(lab, name).daemon.apiUrl, lab.token, { timeoutMs });
}

function labOrThrow(): LabState {
  const lab = readLabState(labDir());
  if (!lab) throw new UsageError('the lab is not up', { hint: 'run `cloudlet lab up` first' });
  return lab;
}

/**
 * The handoff service as a user would get it: its app image is made into an overlay on the
 * node base (on `node`'s engine, where the app was built), pushed to `node` and started there
 * by a first request, on the service network.
 */
export async function provisionHandoffService(
  lab: LabState,
  node: string,
  name: string,
  opts: { env?: string[]; progress?: (m: string) => void; handoff?: Pick<ServiceRequest, 'handoff' | 'stateless' | 'health'>; netnsHolder?: boolean } = {},
): Promise<ProvisionedService> {
  const progress = opts.progress ?? (() => undefined);
  const cl = cloudlet(lab, node);
  const engine = new DockerEngine(cl.engine.socket, { timeoutMs: 120_000 });
  await removeService(lab, name);
  const app = await buildAppArchive(IMAGE_CACHE_DIR, HANDOFF_APP);
  if (!(await engine.imageExists(app.imageId))) await loadImageArchive(cl.engine.socket, app.archivePath);
  const dir = await mkdtemp(join(os.tmpdir(), 'cloudlet-handoff-'));
  try {
    const file = join(dir, 'handoff-service.ovl');
    const created = await createOverlay({ engine, base: NODE_IMAGE, app: HANDOFF_APP.name, out: file, codec: 'zstd' });
    const bytes = (await stat(file)).size;
    progress(`overlay ${created.id}: ${(bytes / 1e3).toFixed(1)} kB (app ${HANDOFF_APP.name} on ${NODE_IMAGE})`);
    const pushed = await uploadFile<{ id: string }>({
      url: cl.daemon.apiUrl,
      token: lab.token,
      file,
      path: '/v1/overlays',
      method: 'PUT',
      contentType: OVERLAY_CONTENT_TYPE,
    });
    // The app image was built on this engine: remove it so the first request synthesizes it.
    await engine.removeImage(app.imageId, { force: true });
    const reply = await api(lab, node).post<ServiceReply>('/v1/services', { overlay: pushed.body.id, name, env: opts.env ?? [], ...opts.handoff, ...(opts.netnsHolder ? { netnsHolder: true } : {}) });
    if (!reply.address) throw new CloudletError('no_service_address', `service ${name} on ${node} got no address on the service network`, { kind: 'internal' });
    progress(`service ${name} on ${node} at ${reply.address} (first request ${reply.timings.totalMs} ms: synthesis ${reply.timings.decompressMs + reply.timings.loadMs} ms)`);
    return { node, container: name, address: reply.address, overlay: pushed.body.id, overlayBytes: bytes, reply };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Removes the service's container and its holder (if any) from every cloudlet of the lab (it may have moved). */
export async function removeService(lab: LabState, name: string): Promise<void> {
  for (const cl of lab.cloudlets) {
    const engine = new DockerEngine(cl.engine.socket, { timeoutMs: 60_000 });
    for (const c of [name, holderNameFor(name)]) {
      if (await engine.containerExists(c)) await engine.removeContainer(c, { force: true });
    }
  }
}

export interface RunningClient {
  pid: number;
  ready: Promise<void>;
  /** Stops the client (SIGINT: it finishes its report) and returns the report. */
  stop: () => Promise<ClientReport>;
}

/** `cloudlet client` in the lab's client namespace, as a child process we own. */
export async function startLabClient(
  target: string,
  opts: { durationMs: number; intervalMs: number; env?: NodeJS.ProcessEnv; httpOnly?: boolean; newConnectionPerRequest?: boolean; window?: number },
): Promise<RunningClient> {
  const dir = await mkdtemp(join(os.tmpdir(), 'cloudlet-client-'));
  const readyFile = join(dir, 'ready');
  const args = [
    CLI_MAIN, 'client', '--target', target, '--in-lab', '--json', '--timeline',
    '--duration', `${opts.durationMs}ms`, '--interval', `${opts.intervalMs}ms`, '--ready-file', readyFile,
    // The request in flight when we stop the client is not lost by the handoff: on a busy
    // machine its answer may take more than the default 1 s grace.
    '--grace', '3000ms',
    ...(opts.httpOnly ? ['--no-tcp'] : []), ...(opts.newConnectionPerRequest ? ['--new-connection-per-request'] : []),
    ...(opts.window !== undefined ? ['--window', String(opts.window)] : []),
  ];
  // The lab's environment (CLOUDLET_LAB_DIR...) tells the client which lab's namespace to enter.
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  const ready = (async () => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (await stat(readyFile).then(() => true, () => false)) return;
      if (done) throw new CloudletError('client_failed', `the client exited before it was ready: ${stderr.trim().slice(-500)}`, { kind: 'internal' });
      if (Date.now() > deadline) throw new CloudletError('client_failed', `the client was not ready within 20 s: ${stderr.trim().slice(-500)}`, { kind: 'internal' });
      await sleep(50);
    }
  })();
  const stop = async (): Promise<ClientReport> => {
    if (!done && child.pid) process.kill(child.pid, 'SIGINT');
    const timer = setTimeout(() => child.pid && !done && process.kill(child.pid, 'SIGKILL'), 15_000);
    const code = await exited;
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
    try {
      return JSON.parse(stdout) as ClientReport;
    } catch {
      throw new CloudletError('client_failed', `the client exited ${code} without a report: ${stderr.trim().slice(-500)}`, { kind: 'internal' });
    }
  };
  if (!child.pid) throw new CloudletError('client_failed', 'could not start the client', { kind: 'internal' });
  return { pid: child.pid, ready, stop };
}

// No strategy in the request: the service's declared handoff (its labels) decides (issue 9).
async function migrate(lab: LabState, from: string, to: string, container: string): Promise<MigrationReport> {
  return api(lab, from).post<MigrationReport>('/v1/migrations?wait=1', { container, to });
}

/** Which cloudlet the router sends the service address to (lab router's /32 route). */
export async function routedTo(lab: LabState, address: string): Promise<string | null> {
  const { stdout } = await nsRun(lab.router.namespace, 'ip', ['-json', 'route', 'show', `${address}/32`]);
  const via = (JSON.parse(stdout || '[]') as { gateway?: string }[])[0]?.gateway;
  return lab.cloudlets.find((c) => c.address === via)?.name ?? null;
}

export interface SessionOutcome {
  survived: boolean;
  sent: number;
  answered: number;
  lost: number;
  reconnects: number;
  errors: number;
  largestGapMs: number | null;
  servedContinuous: boolean;
}

function outcome(s: SessionReport | undefined): SessionOutcome | null {
  if (!s) return null;
  return {
    survived: s.survived && s.served.continuous,
    sent: s.sent,
    answered: s.answered,
    lost: s.lost,
    reconnects: s.reconnects,
    errors: s.errors.length,
    largestGapMs: s.largestGap?.ms ?? null,
    servedContinuous: s.served.continuous,
  };
}

export interface HandoffSummary {
  tcpConnectionSurvived: boolean;
  httpKeepAliveSurvived: boolean;
  /** The longest silence either session saw. */
  clientGapMs: number | null;
  downtimeMs: number | null;
  /** clientGapMs <= downtimeMs + GAP_SLACK_MS. */
  gapWithinDowntimePlusSlack: boolean;
  messagesLost: number;
  tcp: SessionOutcome | null;
  http: SessionOutcome | null;
}

export function summarize(client: ClientReport, migrations: MigrationReport[]): HandoffSummary {
  const tcp = outcome(client.sessions.tcp);
  const http = outcome(client.sessions.http);
  const gaps = [tcp?.largestGapMs, http?.largestGapMs].filter((g): g is number => typeof g === 'number');
  const clientGapMs = gaps.length ? Math.max(...gaps) : null;
  const downs = migrations.map((m) => m.downtimeMs).filter((d): d is number => d !== null);
  const downtimeMs = downs.length ? Math.max(...downs) : null;
  return {
    tcpConnectionSurvived: tcp?.survived ?? false,
    httpKeepAliveSurvived: http?.survived ?? false,
    clientGapMs,
    downtimeMs,
    gapWithinDowntimePlusSlack: clientGapMs !== null && downtimeMs !== null && clientGapMs <= downtimeMs + GAP_SLACK_MS,
    messagesLost: (tcp?.lost ?? 0) + (http?.lost ?? 0),
    tcp,
    http,
  };
}

/** The direct scenario's TCP window: requests keep going out (and are held) through the freeze. */
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
  /** The client's TCP window (requests in flight at most). */
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
    opts.progress(`client connected to ${svc.address} (tcp :7000 window ${window}, http :8080), a request every ${opts.intervalMs} ms per session`);
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
    throw new CloudletError('handoff_failed', `migration ${m?.from ?? opts.from} -> ${m?.to ?? opts.to} ended ${m?.state ?? 'without a report'}: ${m?.error?.message ?? ''}`, { kind: 'upstream' });
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

/**
 * The user walks along `path`; every `probeMs` the client's RTT to each cloudlet is measured
 * and fed to the handoff policy, which decides when the service follows. The links are put
 * back as they were afterwards.
 */
export async function runMobility(
  lab: LabState,
  opts: { path: PathStep[]; policy: HandoffPolicyOptions; intervalMs: number; probeMs: number; progress: (m: string) => void; netnsHolder?: boolean },
): Promise<MobilityResult> {
  const [a] = lab.cloudlets;
  if (!a || lab.cloudlets.length < 2) throw new UsageError('the mobility scenario needs a lab of at least two cloudlets');
  const name = 'mobile-svc';
  const original = new Map<string, LinkSpec>(lab.cloudlets.map((c) => [c.name, { ...c.link }]));
  const events: MobilityEvent[] = [];
  const migrations: MigrationReport[] = [];
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
  let current = a.name;
  const totalMs = opts.path.reduce((s, p) => s + p.holdMs, 0);
  const client = await startLabClient(svc.address, { durationMs: totalMs + 120_000, intervalMs: opts.intervalMs });
  let report: ClientReport;
  let clientStart = 0;
  let pathStart = 0;
  let decidedAt: number | null = null;
  let settleStart = 0;
  try {
    await client.ready;
    clientStart = performance.now();
    log(`client connected to ${svc.address} on ${current}`);
    pathStart = performance.now();
    const policy = new HandoffPolicy(opts.policy);
    let pending: Promise<void> | null = null;
    let failure: unknown = null;
    for (const step of opts.path) {
      await setLatencies(step.latency);
      log(`user ${step.label}: ${Object.entries(step.latency).map(([n, l]) => `${n} ${l}`).join(', ')}`);
      const until = performance.now() + step.holdMs;
      while (performance.now() < until) {
        const probeStart = performance.now();
        const rtts: Record<string, number> = {};
        for (const cl of lab.cloudlets) {
          const rtt = await probeRtt(lab, cl);
          if (rtt !== null) rtts[cl.name] = rtt;
        }
        if (!pending) {
          const d = policy.observe({ atMs: performance.now() - t0, rttMs: rtts }, current);
          if (d.move) {
            const from = current;
            decidedAt ??= performance.now() - pathStart;
            log(`policy: hand off ${from} -> ${d.to} (${d.reason})`);
            pending = migrate(lab, from, d.to, name).then(
              (m) => {
                migrations.push(m);
                if (m.state === 'done') current = d.to;
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
    // The user stays where the path ended until a move under way is done, then a while
    // longer: the RTT at the end is measured with the service settled where it went.
    if (pending) await pending;
    if (failure) throw failure;
    settleStart = performance.now() - pathStart;
    log(`user stays: ${SETTLE_MS / 1000} s with the service on ${current}`);
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
    migrations,
    finalNode: current,
    routedTo: await routedTo(lab, svc.address),
    rttNearStartMs: lat(0, firstStepEnd),
    rttBeforeMoveMs: decidedAt === null ? null : lat(decidedAt - 1000, decidedAt),
    rttNearEndMs: lat(settleStart, settleStart + SETTLE_MS),
    events,
    summary: summarize(report, migrations),
    client: report,
  };
}

// ---------------------------------------------------------------- strategies (issue 9)

export interface StrategyRun {
  strategy: 'migrate' | 'recreate';
  container: string;
  report: MigrationReport;
  routedTo: string | null;
  /** No container of the service's name left at the source. */
  oldInstanceGone: boolean;
  /** The HTTP session (a new connection per request). */
  sent: number;
  answered: number;
  /** Requests that failed (connection refused or reset, HTTP error) or were never answered. */
  failed: number;
  errors: number;
  connections: number;
  largestGapMs: number | null;
  /** Instances that answered (recreate: the old, then the new one). */
  instances: number;
  client: ClientReport;
}

export interface StrategiesResult {
  scenario: 'strategies';
  /** The image was put on the destination beforehand (cached base + overlay): neither run ships it. */
  imagePreloaded: boolean;
  health: string;
  runs: StrategyRun[];
}

/**
 * A stateless HTTP service (the handoff service, declared stateless with its /healthz) handed
 * off from -> to once by live migration and once by re-creation, each time a fresh service with
 * the strategy declared at provisioning; the client makes a new connection per request (a
 * stream of short-lived clients) and runs through the handoff. The image is on the destination
 * beforehand in both runs, so that they compare handoffs, not image shipping.
 */
export async function runStrategiesHandoff(
  lab: LabState,
  opts: { from: string; to: string; intervalMs: number; progress: (m: string) => void },
): Promise<StrategiesResult> {
  const health = { http: { port: 8080, path: '/healthz' } };
  const runs: StrategyRun[] = [];
  let imagePreloaded = false;
  for (const strategy of ['migrate', 'recreate'] as const) {
    const name = `${strategy}-svc`;
    const svc = await provisionHandoffService(lab, opts.from, name, { progress: opts.progress, handoff: { handoff: strategy, stateless: true, health } });
    const src = new DockerEngine(cloudlet(lab, opts.from).engine.socket, { timeoutMs: 120_000 });
    const dst = new DockerEngine(cloudlet(lab, opts.to).engine.socket, { timeoutMs: 120_000 });
    const imageId = svc.reply.imageId;
    if (!(await dst.imageExists(imageId))) {
      await dst.loadImage(await src.saveImage(imageId));
      opts.progress(`image ${imageId.slice(7, 19)} put on ${opts.to} beforehand`);
    }
    imagePreloaded = true;
    const client = await startLabClient(svc.address, { durationMs: 120_000, intervalMs: opts.intervalMs, httpOnly: true, newConnectionPerRequest: true });
    let report: MigrationReport | null = null;
    let clientReport: ClientReport;
    try {
      await client.ready;
      opts.progress(`${strategy}: client making a new HTTP connection per request to ${svc.address}:8080, one every ${opts.intervalMs} ms`);
      await sleep(2000);
      report = await migrate(lab, opts.from, opts.to, name);
      opts.progress(`${strategy}: ${report.state} (${report.strategyReason ?? '-'}): total ${report.totalMs} ms, downtime ${report.downtimeMs} ms`);
      // Longer than the client's request timeout (3 s): a request left hanging by the handoff
      // fails within the run, and the replies after it close the gap it made.
      await sleep(4000);
    } finally {
      clientReport = await client.stop();
    }
    const oldInstanceGone = !(await src.containerExists(name));
    const routed = await routedTo(lab, svc.address);
    await removeService(lab, name).catch((err: unknown) => opts.progress(`could not remove ${name}: ${errorMessage(err)}`));
    if (report.state !== 'done') {
      throw new CloudletError('handoff_failed', `${strategy} ${opts.from} -> ${opts.to} ended ${report.state}: ${report.error?.message ?? ''}`, { kind: 'upstream' });
    }
    const h = clientReport.sessions.http!;
    runs.push({
      strategy,
      container: name,
      report,
      routedTo: routed,
      oldInstanceGone,
      sent: h.sent,
      answered: h.answered,
      failed: h.sent - h.answered,
      errors: h.errors.length,
      connections: h.connections.length,
      largestGapMs: h.largestGap?.ms ?? null,
      instances: h.instances.length,
      client: clientReport,
    });
  }
  return { scenario: 'strategies', imagePreloaded, health: 'http:8080/healthz', runs };
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
  /** Direct scenario: migrations under one client (alternating directions), and its TCP window. */
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
