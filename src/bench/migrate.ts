// `cloudlet bench migrate`: handoff figures on the lab, with their baselines measured in the
// same run.
//   busybox counter  - the classic workload (Ma et al.: 3.1-3.2 s total, 2.7-2.8 s down);
//   256 MiB service  - a Node.js service with a low dirty rate, migrated with the default
//                      decision model, then back with stop-and-copy (the baseline its
//                      downtime is compared with).
// Every figure comes from the migration reports of the daemons; nothing is estimated here.
import { CloudletError } from '../util/errors.js';
import { DockerEngine, type ContainerCreateOptions } from '../engine/docker.js';
import { holderCreateOptions, holderNameFor, joiningHolder, SPARE_HOLDER_NAME } from '../network/netns-holder.js';
import { CloudletClient } from '../cli/client.js';
import { parseBandwidth } from '../lab/link-shaping.js';
import type { LabState } from '../lab/state.js';
import { onLab } from './lab-session.js';
import { BUSYBOX_IMAGE } from '../images/base-images.js';
import { removeService } from './handoff.js';
import { measureEngineFloor, type EngineFloor } from './engine-floor.js';
import { BUSYBOX_COUNTER_SCRIPT, STATEFUL_SERVICE_SCRIPT } from '../workloads/stateful-service.js';
import type { MigrationReport } from '../migration/types.js';
import type { StartMigrationBody } from '../daemon/routes-migrations.js';

export interface Target {
  name: string;
  value: number;
  limit: number;
  ok: boolean;
}

export interface ScenarioResult {
  name: string;
  /** Where the workload's network namespace lives: a holder it joins (how Cloudlet runs services), or its own. */
  network: 'holder' | 'own';
  totalMs: number | null;
  downtimeMs: number | null;
  bytesSent: number;
  precopyRounds: number;
  stopReason: string | null;
  report: MigrationReport;
  baseline?: { name: string; totalMs: number | null; downtimeMs: number | null; bytesSent: number; report: MigrationReport };
  /**
   * The same handoff with an eager restore (every page in before the service runs), when
   * the lab restores lazily: what the lazy restore saves, measured in the same run.
   */
  eagerRestore?: { totalMs: number | null; downtimeMs: number | null; restoreMs: number | null; report: MigrationReport };
  /**
   * The same container checkpointed and restored in place on the destination, same run
   * (engine-floor.ts): the part of the downtime that the engine, runc and CRIU cost.
   */
  engineFloor: EngineFloor;
  targets: Target[];
}

export interface MigrateBenchResult {
  bench: 'migrate';
  date: string;
  machine: { cores: number; memoryGiB: number; kernel: string };
  link: { bandwidth: string; latency: string; bps: number };
  scenarios: ScenarioResult[];
  /** Convenience copies of the headline figures (issue 4's names). */
  busybox: { totalMs: number | null; downtimeMs: number | null };
  service256: { totalMs: number | null; downtimeMs: number | null; bytesSent: number; stopAndCopyDowntimeMs: number | null };
  allTargetsMet: boolean;
}

export interface MigrateBenchOptions {
  stateMb: number;
  dirtyPagesPerSec: number;
  progress: (msg: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function target(name: string, value: number | null, limit: number): Target {
  return { name, value: value ?? Number.NaN, limit, ok: value !== null && value <= limit };
}

export async function migrate(lab: LabState, from: string, body: StartMigrationBody): Promise<MigrationReport> {
  const cl = lab.cloudlets.find((c) => c.name === from)!;
  const client = new CloudletClient(cl.daemon.apiUrl, lab.token, { timeoutMs: 30 * 60_000 });
  const r = await client.post<MigrationReport>('/v1/migrations?wait=1', body);
  if (r.state !== 'done') {
    throw new CloudletError('bench_failed', `migration of ${body.container} ${from} -> ${body.to} ended ${r.state}: ${r.error?.message ?? ''}`);
  }
  return r;
}

export function engineOf(lab: LabState, name: string): DockerEngine {
  return new DockerEngine(lab.cloudlets.find((c) => c.name === name)!.engine.socket, { timeoutMs: 60_000 });
}

export async function removeIfPresent(engine: DockerEngine, name: string): Promise<void> {
  if (await engine.containerExists(name)) await engine.removeContainer(name, { force: true });
}

/**
 * Starts a workload without network (the lab's workloads need none): joining a network
 * namespace holder of its own (network 'holder', how Cloudlet runs services; see
 * netns-holder.ts), or in a namespace of its own (--network none).
 */
async function startWorkload(engine: DockerEngine, options: ContainerCreateOptions & { name: string }, network: 'holder' | 'own'): Promise<void> {
  if (network === 'holder') {
    const holder = holderCreateOptions({ name: holderNameFor(options.name), image: BUSYBOX_IMAGE, network: 'none' });
    await engine.createContainer(holder);
    await engine.startContainer(holder.name!);
    await engine.createContainer(joiningHolder(options, holder.name!));
  } else {
    await engine.createContainer({ ...options, HostConfig: { ...options.HostConfig, NetworkMode: 'none' } });
  }
  await engine.startContainer(options.name);
}

/**
 * Waits (10 s at most) until the engine's spare holder runs again: the destination replaces
 * a spare that a handoff took after it, and that start must not fall into what is measured next.
 */
async function spareReady(engine: DockerEngine): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await engine.inspectContainerIfAny(SPARE_HOLDER_NAME))?.running) return;
    await sleep(100);
  }
}

/** Waits until the service in the container answers (HTTP through busybox wget inside it). */
export async function waitForService(engine: DockerEngine, name: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const r = await engine.exec(name, ['wget', '-qO-', 'http://127.0.0.1:8080/health']);
    if (r.exitCode === 0) return;
    await sleep(200);
  }
  throw new CloudletError('bench_failed', `the service in ${name} did not answer within 30 s`);
}

export async function runMigrateBench(opts: MigrateBenchOptions): Promise<MigrateBenchResult> {
  return onLab(opts.progress, (lab) => runOnLab(lab, opts));
}

async function runOnLab(lab: LabState, opts: MigrateBenchOptions): Promise<MigrateBenchResult> {
  if (lab.cloudlets.length < 2) throw new CloudletError('bench_failed', 'the lab needs at least 2 cloudlets');
  const [a, b] = [lab.cloudlets[0]!.name, lab.cloudlets[1]!.name];
  const link = lab.cloudlets[1]!.link;
  const bps = Math.min(parseBandwidth(lab.cloudlets[0]!.link.bandwidth), parseBandwidth(link.bandwidth));
  const ea = engineOf(lab, a);
  const eb = engineOf(lab, b);
  const scenarios: ScenarioResult[] = [];

  // --- busybox counter: in a holder (the targets), and with a namespace of its own (for comparison)
  const counter = { Image: BUSYBOX_IMAGE, Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT] };
  let bb: MigrationReport | null = null;
  for (const network of ['holder', 'own'] as const) {
    const name = network === 'holder' ? 'bench-counter' : 'bench-counter-own';
    const label = network === 'holder' ? 'busybox counter' : 'busybox counter, own network namespace';
    opts.progress(`${label}: start on a, migrate a -> b (default decision model)`);
    await removeService(lab, name);
    await startWorkload(ea, { name, ...counter }, network);
    await sleep(1000);
    const r = await migrate(lab, a, { container: name, to: b });
    await spareReady(eb);
    opts.progress(`${label}: checkpoint and restore in place on b (the engine floor)`);
    const floor = await measureEngineFloor(lab.cloudlets[1]!, name);
    await removeService(lab, name);
    scenarios.push({
      name: label,
      network,
      totalMs: r.totalMs,
      downtimeMs: r.downtimeMs,
      bytesSent: r.bytesSent,
      precopyRounds: r.precopyRounds,
      stopReason: r.stopReason,
      report: r,
      engineFloor: floor,
      targets: network === 'holder' ? [target('totalMs <= 1000', r.totalMs, 1000), target('downtimeMs <= 800', r.downtimeMs, 800)] : [],
    });
    bb ??= r;
  }

  // --- 256 MiB service, low dirty rate
  const svc = 'bench-svc';
  opts.progress(`${opts.stateMb} MiB service (${opts.dirtyPagesPerSec} pages/s dirtied): migrate a -> b (default model)`);
  await removeService(lab, svc);
  await startWorkload(
    ea,
    {
      name: svc,
      Image: 'cloudlet/node:20',
      Cmd: ['node', '-e', STATEFUL_SERVICE_SCRIPT],
      Env: [`STATE_MB=${opts.stateMb}`, 'PORT=8080', `DIRTY_PAGES_PER_SEC=${opts.dirtyPagesPerSec}`],
    },
    'holder',
  );
  await waitForService(ea, svc);
  const pre = await migrate(lab, a, { container: svc, to: b });
  await spareReady(eb);
  await waitForService(eb, svc);
  opts.progress('same service: back b -> a with stop-and-copy (the baseline)');
  const sc = await migrate(lab, b, { container: svc, to: a, rounds: 0 });
  await spareReady(ea);
  await waitForService(ea, svc);
  let eager: MigrationReport | null = null;
  let home = lab.cloudlets[0]!;
  if (pre.postCopyMs !== null) {
    opts.progress('same service: a -> b again, eager restore (what the lazy restore saves)');
    eager = await migrate(lab, a, { container: svc, to: b, restore: 'eager' });
    await spareReady(eb);
    await waitForService(eb, svc);
    home = lab.cloudlets[1]!;
  }
  opts.progress(`${opts.stateMb} MiB service: checkpoint and restore in place on ${home.name} (the engine floor)`);
  const svcFloor = await measureEngineFloor(home, svc);
  await removeService(lab, svc);
  const transferBound = 1.25 * ((pre.bytesSent * 8) / bps) * 1000 + 2000;
  scenarios.push({
    name: `${opts.stateMb} MiB service`,
    network: 'holder',
    totalMs: pre.totalMs,
    downtimeMs: pre.downtimeMs,
    bytesSent: pre.bytesSent,
    precopyRounds: pre.precopyRounds,
    stopReason: pre.stopReason,
    report: pre,
    baseline: { name: 'stop-and-copy', totalMs: sc.totalMs, downtimeMs: sc.downtimeMs, bytesSent: sc.bytesSent, report: sc },
    ...(eager ? { eagerRestore: { totalMs: eager.totalMs, downtimeMs: eager.downtimeMs, restoreMs: eager.restoreMs, report: eager } } : {}),
    engineFloor: svcFloor,
    targets: [
      target('downtimeMs <= 1500', pre.downtimeMs, 1500),
      target(`totalMs <= 1.25 x bytesSent/bandwidth + 2000 (= ${Math.round(transferBound)})`, pre.totalMs, transferBound),
      target(`downtimeMs <= stopAndCopyDowntimeMs / 5 (= ${Math.round((sc.downtimeMs ?? 0) / 5)})`, pre.downtimeMs, (sc.downtimeMs ?? 0) / 5),
    ],
  });

  const os = await import('node:os');
  return {
    bench: 'migrate',
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
    link: { bandwidth: link.bandwidth, latency: link.latency, bps },
    scenarios,
    busybox: { totalMs: bb!.totalMs, downtimeMs: bb!.downtimeMs },
    service256: { totalMs: pre.totalMs, downtimeMs: pre.downtimeMs, bytesSent: pre.bytesSent, stopAndCopyDowntimeMs: sc.downtimeMs },
    allTargetsMet: scenarios.every((s) => s.targets.every((t) => t.ok)),
  };
}
