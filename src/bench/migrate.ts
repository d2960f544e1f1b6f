// `cloudlet bench migrate`: handoff figures on the lab, with their baselines measured in the
// same run.
//   busybox counter  - the classic workload (Ma et al.: 3.1-3.2 s total, 2.7-2.8 s down);
//   256 MiB service  - a Node.js service with a low dirty rate, migrated with the default
//                      decision model, then back with stop-and-copy (the baseline its
//                      downtime is compared with).
// Every workload runs on the lab's service network (its holder, or itself, holds a pinned
// service address routed to where it runs) with a client in the lab's client namespace
// requesting it every CLIENT_INTERVAL_MS through `repeat` handoffs, alternating a -> b, b -> a:
// each run has the daemons' downtime beside the largest silence the client saw around it
// (migrate-runs.ts). The 256 MiB service's requests read pages spread over its whole state
// (GET /touch), so that a lazy restore's post-copy stalls reach the client. The baselines
// (stop-and-copy, eager restore, engine floor) run once per workload, after the client.
// Every figure comes from the migration reports of the daemons and the client's report;
// nothing is estimated here.
import { readFile } from 'node:fs/promises';
import { CloudletError, UsageError, errorMessage } from '../util/errors.js';
import { DockerEngine, type ContainerCreateOptions } from '../engine/docker.js';
import { probeEngineAdapter } from '../engine/engine-adapter.js';
import { holderCreateOptions, holderNameFor, joiningHolder, SPARE_HOLDER_NAME } from '../network/netns-holder.js';
import { announceArgv, hostAddresses } from '../network/service-network.js';
import { parseBandwidth } from '../lab/link-shaping.js';
import { LAB_SERVICE_NETWORK } from '../lab/lab.js';
import { DEFAULT_ENGINE_KIND, type EngineKind } from '../lab/engines.js';
import { nsRun } from '../lab/netns.js';
import type { LabCloudlet, LabState } from '../lab/state.js';
import { run as runProgram } from '../util/exec.js';
import { onLab } from './lab-session.js';
import { BUSYBOX_IMAGE } from '../images/base-images.js';
import { removeService } from './handoff.js';
import { engineOf, migrate, waitForService } from './lab-migrate.js';
import { pageCacheScenarios, type PageCacheBench } from './migrate-cache.js';
import { startLabHttpProbe } from './lab-client.js';
import { measureEngineFloor, type EngineFloor } from './engine-floor.js';
import { BUSYBOX_COUNTER_HTTP_SCRIPT, STATEFUL_SERVICE_SCRIPT } from '../workloads/stateful-service.js';
import {
  gapCheckTarget,
  migrateRuns,
  pickFreeAddress,
  prevailingRestoreMode,
  summarizeMigrateRuns,
  target,
  type MigrateRun,
  type MigrateRunsSummary,
  type Target,
} from './migrate-runs.js';
import type { ClientReport, SessionReport } from '../client/types.js';
import type { MigrationReport } from '../migration/types.js';

export type { Target } from './migrate-runs.js';

/** A client request every (ms), per workload. */
export const CLIENT_INTERVAL_MS = 20;
/** Requests in flight per kept-alive probe (pipelined): a request lost in a handoff leaves a hole. */
export const PROBE_WINDOW = 8;
/** Pages of the 256 MiB service's state each client request reads (GET /touch). */
export const TOUCH_PAGES = 64;
/** What the client requests of the busybox counter's httpd (BUSYBOX_COUNTER_HTTP_SCRIPT). */
export const COUNTER_HTTP_PATH = '/cgi-bin/req';
/** What the client requests of the stateful service: TOUCH_PAGES pages read over its whole state. */
export const TOUCH_PATH = `/touch?pages=${TOUCH_PAGES}`;
/** Before the first handoff, between two, after the last: the client talks to a settled service (and has its RTT second). */
export const PAUSE_MS = 2000;

/** How the client reaches a workload. */
export interface WorkloadProbe {
  address: string;
  port: number;
  path: string;
  connectionPerRequest: boolean;
  intervalMs: number;
  /** Requests in flight at most (1 with a connection per request). */
  window: number;
}

export interface ScenarioResult {
  name: string;
  /** Where the workload's network namespace lives: a holder it joins (how Cloudlet runs services), or its own. */
  network: 'holder' | 'own';
  probe: WorkloadProbe;
  /** Medians over the runs (the run itself with one run); report is the first run's. */
  totalMs: number | null;
  downtimeMs: number | null;
  bytesSent: number;
  precopyRounds: number;
  stopReason: string | null;
  report: MigrationReport;
  /** Every handoff under the client, in order (a -> b, b -> a...). */
  runs: MigrateRun[];
  /** Median, p95, min, max of each figure over the runs. */
  summary: MigrateRunsSummary;
  /** Every run's migration report, in order. */
  reports: MigrationReport[];
  /** The client's report over all the runs (without its per-request samples). */
  client: ClientReport;
  baseline?: { name: string; totalMs: number | null; downtimeMs: number | null; bytesSent: number; report: MigrationReport };
  /**
   * The same handoff with an eager restore (every page in before the service runs), when
   * the runs restored lazily: what the lazy restore saves, measured in the same run.
   */
  eagerRestore?: { totalMs: number | null; downtimeMs: number | null; restoreMs: number | null; report: MigrationReport };
  /**
   * The same container checkpointed and restored in place on one cloudlet, same run, in the
   * restore mode the runs had (engine-floor.ts): the part of the downtime that the engine,
   * runc and CRIU cost.
   */
  engineFloor: EngineFloor;
  targets: Target[];
}

export interface MigrateBenchResult {
  bench: 'migrate';
  /** The command line that ran it. */
  command: string;
  date: string;
  machine: { cores: number; memoryGiB: number; kernel: string };
  link: { bandwidth: string; latency: string; bps: number };
  /** Handoffs per workload under the client. */
  repeat: number;
  /** The lab's engine kind (both cloudlets run the same); absent in results from before engines. */
  engine?: EngineKind;
  scenarios: ScenarioResult[];
  /** Scenarios this engine cannot run, and why (known before any handoff). */
  skipped?: { scenario: string; reason: string }[];
  /** Convenience copies of the headline figures (issue 4's names; medians over the runs). */
  busybox: { totalMs: number | null; downtimeMs: number | null };
  service256: {
    totalMs: number | null;
    downtimeMs: number | null;
    bytesSent: number;
    stopAndCopyDowntimeMs: number | null;
    clientGapMs: number | null;
    clientGapP95Ms: number | null;
  };
  /** The page cache's scenarios (issue 21), against a first handoff that sends every page. Absent in older results. */
  pageCache?: PageCacheBench;
  allTargetsMet: boolean;
}

export interface MigrateBenchOptions {
  stateMb: number;
  dirtyPagesPerSec: number;
  /** Handoffs per workload (alternating a -> b, b -> a); default 1. */
  repeat?: number;
  command?: string;
  /** Run the page cache's scenarios (default true). */
  pageCacheScenarios?: boolean;
  progress: (msg: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts a workload on the lab's service network at `address`: joining a network namespace
 * holder of its own that holds the address (network 'holder', how Cloudlet runs services; see
 * netns-holder.ts), or holding it itself (a namespace of its own). Either way a handoff keeps
 * the address and the client's TCP connections.
 */
export async function startWorkload(
  engine: DockerEngine,
  options: ContainerCreateOptions & { name: string },
  network: 'holder' | 'own',
  address: string,
): Promise<void> {
  const net = LAB_SERVICE_NETWORK.name;
  if (network === 'holder') {
    const holder = holderCreateOptions({ name: holderNameFor(options.name), image: BUSYBOX_IMAGE, network: net, address });
    await engine.createContainer(holder);
    await engine.startContainer(holder.name!);
    await engine.createContainer(joiningHolder(options, holder.name!));
  } else {
    await engine.createContainer({
      ...options,
      HostConfig: { ...options.HostConfig, NetworkMode: net },
      NetworkingConfig: { EndpointsConfig: { [net]: { IPAMConfig: { IPv4Address: address } } } },
    });
  }
  await engine.startContainer(options.name);
}

/**
 * Waits (10 s at most) until the engine's spare holder runs again: the destination replaces
 * a spare that a handoff took after it, and that start must not fall into what is measured next.
 */
export async function spareReady(engine: DockerEngine): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await engine.inspectContainerIfAny(SPARE_HOLDER_NAME))?.running) return;
    await sleep(100);
  }
}

/** The engine kind of the lab's first two cloudlets; a mixed pair is refused (figures would mix engines). */
function labEngineKind(lab: LabState): EngineKind {
  const [a, b] = lab.cloudlets.map((c) => c.engine.kind ?? DEFAULT_ENGINE_KIND);
  if (a !== b)
    throw new UsageError(`bench migrate needs one engine kind on a and b (a=${a}, b=${b})`, {
      hint: 'cloudlet lab up --engine KIND, or bench migrate --engine',
    });
  return a!;
}

export async function runMigrateBench(opts: MigrateBenchOptions): Promise<MigrateBenchResult> {
  return onLab(opts.progress, (lab) => runOnLab(lab, opts));
}

/** The service network part of a lab cloudlet's daemon configuration (its range, its announce command). */
async function serviceNetworkOf(cl: LabCloudlet): Promise<{ ipRange: string; announce: string[] }> {
  const config = JSON.parse(await readFile(cl.daemon.configPath, 'utf8')) as { serviceNetwork?: { ipRange?: string | null; announce?: string[] | null } };
  const sn = config.serviceNetwork;
  if (!sn?.ipRange || !sn.announce)
    throw new CloudletError('bench_failed', `cloudlet ${cl.name} has no service network range or announce command in ${cl.daemon.configPath}`, {
      kind: 'internal',
    });
  return { ipRange: sn.ipRange, announce: sn.announce };
}

/**
 * A service address in `cl`'s range that no container of the lab holds and the router routes
 * nowhere (pickFreeAddress: from the top of the range, clear of cloudletd's own choices).
 */
export async function pickBenchAddress(lab: LabState, cl: LabCloudlet): Promise<string> {
  const used = new Set<string>();
  for (const c of lab.cloudlets) {
    for (const address of await engineOf(lab, c.name).networkAddresses(LAB_SERVICE_NETWORK.name)) used.add(address);
  }
  const { stdout } = await nsRun(lab.router.namespace, 'ip', ['-json', 'route', 'show']);
  for (const r of JSON.parse(stdout || '[]') as { dst?: string }[]) if (r.dst) used.add(r.dst.replace(/\/32$/, ''));
  const address = pickFreeAddress(hostAddresses((await serviceNetworkOf(cl)).ipRange), used);
  if (!address) throw new CloudletError('bench_failed', `no free service address left in ${cl.name}'s range`, { kind: 'internal' });
  return address;
}

/** Routes `address` to `cl` with the cloudlet's own announce command, as cloudletd does for a service it starts. */
export async function announceOn(cl: LabCloudlet, address: string): Promise<void> {
  const argv = announceArgv((await serviceNetworkOf(cl)).announce, address);
  await runProgram(argv[0]!, argv.slice(1), { timeoutMs: 10_000 });
}

/** Removes a workload and the router's route to its address (nothing else uses it once the workload is gone). */
export async function removeWorkload(lab: LabState, name: string, address: string | null, progress: (m: string) => void): Promise<void> {
  await removeService(lab, name).catch((err: unknown) => progress(`could not remove ${name}: ${errorMessage(err)}`));
  if (address) await nsRun(lab.router.namespace, 'ip', ['route', 'del', `${address}/32`]).catch(() => undefined);
}

/** The samples gave the runs; the JSON keeps the client's summary of its sessions, not every request. */
function withoutSamples(r: ClientReport): ClientReport {
  const strip = (x: SessionReport | undefined) => {
    if (!x) return undefined;
    const { samples: _, ...rest } = x;
    return rest;
  };
  const tcp = strip(r.sessions.tcp);
  const http = strip(r.sessions.http);
  return { ...r, sessions: { ...(tcp ? { tcp } : {}), ...(http ? { http } : {}) } };
}

interface Workload {
  name: string;
  label: string;
  network: 'holder' | 'own';
  options: ContainerCreateOptions;
  path: string;
  connectionPerRequest: boolean;
}

interface UnderClient {
  probe: WorkloadProbe;
  reports: MigrationReport[];
  client: ClientReport;
  runs: MigrateRun[];
  /** Where the workload runs after the runs. */
  home: LabCloudlet;
}

/**
 * Starts the workload on the first cloudlet, then `repeat` handoffs alternating between the
 * first two with the client requesting it throughout, PAUSE_MS apart. The workload is left
 * running (for the baselines); on failure it is removed.
 */
async function handoffsUnderClient(lab: LabState, w: Workload, repeat: number, progress: (m: string) => void): Promise<UnderClient> {
  const [ca, cb] = [lab.cloudlets[0]!, lab.cloudlets[1]!];
  const ea = engineOf(lab, ca.name);
  await removeService(lab, w.name);
  const address = await pickBenchAddress(lab, ca);
  const probe: WorkloadProbe = {
    address,
    port: 8080,
    path: w.path,
    connectionPerRequest: w.connectionPerRequest,
    intervalMs: CLIENT_INTERVAL_MS,
    window: w.connectionPerRequest ? 1 : PROBE_WINDOW,
  };
  try {
    await startWorkload(ea, { name: w.name, ...w.options }, w.network, address);
    await announceOn(ca, address);
    await waitForService(ea, w.name);
    // Bounded: the client is stopped as soon as the runs are done.
    const client = await startLabHttpProbe(address, {
      durationMs: 60_000 + repeat * 180_000,
      intervalMs: CLIENT_INTERVAL_MS,
      httpPath: w.path,
      newConnectionPerRequest: w.connectionPerRequest,
      window: probe.window,
    });
    const reports: MigrationReport[] = [];
    let report: ClientReport;
    try {
      await client.ready;
      progress(
        `${w.label}: client in the lab's client namespace, GET ${w.path} on ${address}:8080 every ${CLIENT_INTERVAL_MS} ms${w.connectionPerRequest ? ' (a connection per request)' : ` (one kept-alive connection, ${probe.window} pipelined)`}`,
      );
      await sleep(PAUSE_MS);
      for (let i = 0; i < repeat; i++) {
        const [from, to] = i % 2 === 0 ? [ca, cb] : [cb, ca];
        const r = await migrate(lab, from.name, { container: w.name, to: to.name });
        reports.push(r);
        progress(
          `${w.label}: run ${i + 1}/${repeat} ${from.name} -> ${to.name}: total ${r.totalMs} ms, downtime ${r.downtimeMs} ms, ${r.restoreMode ?? '-'} restore${r.postCopyMs !== null ? `, post-copy ${r.postCopyMs} ms` : ''}`,
        );
        await spareReady(engineOf(lab, to.name));
        await sleep(PAUSE_MS);
      }
    } finally {
      report = await client.stop();
    }
    return { probe, reports, client: withoutSamples(report), runs: migrateRuns(report, reports), home: repeat % 2 === 0 ? ca : cb };
  } catch (err) {
    await removeWorkload(lab, w.name, address, progress);
    throw err;
  }
}

function scenario(
  w: Workload,
  u: UnderClient,
  floor: EngineFloor,
  targets: Target[],
  extra: Pick<ScenarioResult, 'baseline' | 'eagerRestore'> = {},
): ScenarioResult {
  const summary = summarizeMigrateRuns(u.runs);
  const first = u.reports[0]!;
  return {
    name: w.label,
    network: w.network,
    probe: u.probe,
    totalMs: summary.totalMs?.median ?? null,
    downtimeMs: summary.downtimeMs?.median ?? null,
    bytesSent: summary.bytesSent?.median ?? first.bytesSent,
    precopyRounds: first.precopyRounds,
    stopReason: first.stopReason,
    report: first,
    runs: u.runs,
    summary,
    reports: u.reports,
    client: u.client,
    ...extra,
    engineFloor: floor,
    targets: [...targets, gapCheckTarget(u.runs)],
  };
}

/** The other of the lab's first two cloudlets (the pair the handoffs alternate between). */
function otherOf(lab: LabState, cl: LabCloudlet): string {
  const [a, b] = [lab.cloudlets[0]!.name, lab.cloudlets[1]!.name];
  return cl.name === a ? b : a;
}

/** The busybox counter (httpd beside it): in a holder (the targets), and with a namespace of its own (for comparison). */
async function counterScenarios(
  lab: LabState,
  opts: { repeat: number; networks: readonly ('holder' | 'own')[]; progress: (msg: string) => void },
): Promise<ScenarioResult[]> {
  const { repeat } = opts;
  const a = lab.cloudlets[0]!.name;
  const scenarios: ScenarioResult[] = [];
  const counter: ContainerCreateOptions = { Image: BUSYBOX_IMAGE, Cmd: ['sh', '-c', BUSYBOX_COUNTER_HTTP_SCRIPT] };
  for (const network of opts.networks) {
    const w: Workload = {
      name: network === 'holder' ? 'bench-counter' : 'bench-counter-own',
      label: network === 'holder' ? 'busybox counter' : 'busybox counter, own network namespace',
      network,
      options: counter,
      // busybox httpd closes every connection after its answer.
      path: COUNTER_HTTP_PATH,
      connectionPerRequest: true,
    };
    opts.progress(`${w.label}: start on ${a}, ${repeat} handoff(s) under the client (default decision model)`);
    const u = await handoffsUnderClient(lab, w, repeat, opts.progress);
    try {
      const mode = prevailingRestoreMode(u.runs) ?? 'eager';
      opts.progress(`${w.label}: checkpoint and restore in place on ${u.home.name}, ${mode} (the engine floor)`);
      const floor = await measureEngineFloor(u.home, w.name, { restore: mode });
      const s = summarizeMigrateRuns(u.runs);
      const targets =
        network === 'holder'
          ? [target('totalMs <= 1000 (median)', s.totalMs?.median ?? null, 1000), target('downtimeMs <= 800 (median)', s.downtimeMs?.median ?? null, 800)]
          : [];
      scenarios.push(scenario(w, u, floor, targets));
    } finally {
      await removeWorkload(lab, w.name, u.probe.address, opts.progress);
    }
  }
  return scenarios;
}

/**
 * The service's baselines, after the runs under the client: a handoff with stop-and-copy,
 * then (when the runs restored lazily) one with an eager restore; `home` is where it ends.
 */
async function serviceBaselines(
  lab: LabState,
  opts: { svc: string; home: LabCloudlet; runs: MigrateRun[]; progress: (msg: string) => void },
): Promise<{ sc: MigrationReport; eager: MigrationReport | null; home: LabCloudlet }> {
  const { svc } = opts;
  const other = (cl: LabCloudlet) => otherOf(lab, cl);
  let home = opts.home;
  opts.progress(`same service: ${home.name} -> ${other(home)} with stop-and-copy (the baseline)`);
  const sc = await migrate(lab, home.name, { container: svc, to: other(home), rounds: 0 });
  home = lab.cloudlets.find((c) => c.name === other(home))!;
  await spareReady(engineOf(lab, home.name));
  await waitForService(engineOf(lab, home.name), svc);
  let eager: MigrationReport | null = null;
  if (opts.runs.some((r) => r.restoreMode === 'lazy')) {
    opts.progress(`same service: ${home.name} -> ${other(home)} again, eager restore (what the lazy restore saves)`);
    eager = await migrate(lab, home.name, { container: svc, to: other(home), restore: 'eager' });
    home = lab.cloudlets.find((c) => c.name === other(home))!;
    await spareReady(engineOf(lab, home.name));
    await waitForService(engineOf(lab, home.name), svc);
  }
  return { sc, eager, home };
}

/** The stateful service (low dirty rate), its client reading pages over its whole state, with its baselines. */
async function serviceScenario(lab: LabState, opts: MigrateBenchOptions & { repeat: number; bps: number }): Promise<ScenarioResult> {
  const { repeat, bps } = opts;
  const a = lab.cloudlets[0]!.name;
  const w: Workload = {
    name: 'bench-svc',
    label: `${opts.stateMb} MiB service`,
    network: 'holder',
    options: {
      Image: 'cloudlet/node:20',
      Cmd: ['node', '-e', STATEFUL_SERVICE_SCRIPT],
      Env: [`STATE_MB=${opts.stateMb}`, 'PORT=8080', `DIRTY_PAGES_PER_SEC=${opts.dirtyPagesPerSec}`],
    },
    path: TOUCH_PATH,
    connectionPerRequest: false,
  };
  opts.progress(`${w.label} (${opts.dirtyPagesPerSec} pages/s dirtied): start on ${a}, ${repeat} handoff(s) under the client (default model)`);
  const u = await handoffsUnderClient(lab, w, repeat, opts.progress);
  try {
    const svc = w.name;
    const { sc, eager, home } = await serviceBaselines(lab, { svc, home: u.home, runs: u.runs, progress: opts.progress });
    const mode = prevailingRestoreMode(u.runs) ?? 'eager';
    opts.progress(`${w.label}: checkpoint and restore in place on ${home.name}, ${mode} (the engine floor)`);
    const floor = await measureEngineFloor(home, svc, { restore: mode });
    const s = summarizeMigrateRuns(u.runs);
    const down = s.downtimeMs?.median ?? null;
    const transferBound = 1.25 * (((s.bytesSent?.median ?? 0) * 8) / bps) * 1000 + 2000;
    return scenario(
      w,
      u,
      floor,
      [
        target('downtimeMs <= 1500 (median)', down, 1500),
        target(`totalMs <= 1.25 x bytesSent/bandwidth + 2000 (= ${Math.round(transferBound)}; medians)`, s.totalMs?.median ?? null, transferBound),
        target(`downtimeMs <= stopAndCopyDowntimeMs / 5 (= ${Math.round((sc.downtimeMs ?? 0) / 5)}; median)`, down, (sc.downtimeMs ?? 0) / 5),
        target('clientGapMs <= 1200 (median)', s.clientGapMs?.median ?? null, 1200),
        target('clientGapMs <= 1500 (p95)', s.clientGapMs?.p95 ?? null, 1500),
      ],
      {
        baseline: { name: 'stop-and-copy', totalMs: sc.totalMs, downtimeMs: sc.downtimeMs, bytesSent: sc.bytesSent, report: sc },
        ...(eager ? { eagerRestore: { totalMs: eager.totalMs, downtimeMs: eager.downtimeMs, restoreMs: eager.restoreMs, report: eager } } : {}),
      },
    );
  } finally {
    await removeWorkload(lab, w.name, u.probe.address, opts.progress);
  }
}

/** The bench on a lab that is up (its first two cloudlets). */
export async function runOnLab(lab: LabState, opts: MigrateBenchOptions): Promise<MigrateBenchResult> {
  if (lab.cloudlets.length < 2) throw new CloudletError('bench_failed', 'the lab needs at least 2 cloudlets', { kind: 'internal' });
  const repeat = opts.repeat ?? 1;
  const link = lab.cloudlets[1]!.link;
  const bps = Math.min(parseBandwidth(lab.cloudlets[0]!.link.bandwidth), parseBandwidth(link.bandwidth));
  const engine = labEngineKind(lab);
  // What b's engine cannot restore its prepare refuses; the adapter says so before (Docker 28
  // cannot restore a container with a namespace of its own, docs/engines-docker28.md).
  const adapter = await probeEngineAdapter(new DockerEngine(lab.cloudlets[1]!.engine.socket));
  const ownRefused = adapter.restoreRefusal({ networkMode: LAB_SERVICE_NETWORK.name });
  const skipped = ownRefused ? [{ scenario: 'busybox counter, own network namespace', reason: `refused at prepare: ${ownRefused}` }] : [];
  const networks = ownRefused ? (['holder'] as const) : (['holder', 'own'] as const);
  const scenarios = await counterScenarios(lab, { repeat, networks, progress: opts.progress });
  const result = await serviceScenario(lab, { ...opts, repeat, bps });
  scenarios.push(result);
  const pageCache = opts.pageCacheScenarios === false ? null : await pageCacheScenarios(lab, { stateMb: opts.stateMb, progress: opts.progress });

  const os = await import('node:os');
  const bb = scenarios[0]!;
  return {
    bench: 'migrate',
    command: opts.command ?? 'cloudlet bench migrate',
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
    link: { bandwidth: link.bandwidth, latency: link.latency, bps },
    repeat,
    engine,
    scenarios,
    skipped,
    busybox: { totalMs: bb.totalMs, downtimeMs: bb.downtimeMs },
    service256: {
      totalMs: result.totalMs,
      downtimeMs: result.downtimeMs,
      bytesSent: result.bytesSent,
      stopAndCopyDowntimeMs: result.baseline?.downtimeMs ?? null,
      clientGapMs: result.summary.clientGapMs?.median ?? null,
      clientGapP95Ms: result.summary.clientGapMs?.p95 ?? null,
    },
    ...(pageCache ? { pageCache } : {}),
    allTargetsMet: scenarios.every((s) => s.targets.every((t) => t.ok)) && (pageCache?.scenarios ?? []).every((s) => s.targets.every((t) => t.ok)),
  };
}
