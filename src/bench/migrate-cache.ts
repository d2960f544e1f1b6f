// bench migrate's page-cache scenarios (issue 21; src/checkpoint/page-cache.ts), measured in
// the same run against the first handoff of the same service, which sends every page:
//   same-image-at-destination  a second service of the same image and data, handed to the
//                              cloudlet that restored the first one
//   return-handoff             the first service handed back to the cloudlet it left
//   same-image-other-state     a service of the same image whose state was made from another
//                              seed: what the cache gives when only the image is shared
// Every service's state is checked after its handoff (its own sha256 of its memory).
import type { MigrationReport } from '../migration/types.js';
import type { LabState } from '../lab/state.js';
import { CloudletError } from '../util/errors.js';
import { STATEFUL_SERVICE_SCRIPT } from '../workloads/stateful-service.js';
import { engineOf, migrate, removeIfPresent, waitForService } from './lab-migrate.js';
import { target, type Target } from './migrate-runs.js';

export type PageCacheScenarioName = 'same-image-at-destination' | 'return-handoff' | 'same-image-other-state';

export interface PageCacheScenario {
  name: PageCacheScenarioName;
  container: string;
  from: string;
  to: string;
  bytesSent: number;
  /** The first handoff's bytes (every page sent, measured in this run). */
  baselineBytesSent: number;
  round1Bytes: number | null;
  baselineRound1Bytes: number | null;
  /** bytesSent / baselineBytesSent. */
  ratio: number;
  offeredPages: number | null;
  pagesFromCache: number;
  downtimeMs: number | null;
  totalMs: number | null;
  /** The service's checksum of its state after the handoff equals the one before. */
  stateIntact: boolean;
  /** Seconds from the end of the first handoff to the start of this one. */
  secondsAfterBaseline: number;
  targets: Target[];
  report: MigrationReport;
}

export interface PageCacheBench {
  stateMb: number;
  baseline: {
    container: string;
    from: string;
    to: string;
    bytesSent: number;
    round1Bytes: number | null;
    downtimeMs: number | null;
    totalMs: number | null;
    stateIntact: boolean;
    report: MigrationReport;
  };
  scenarios: PageCacheScenario[];
}

const round1 = (r: MigrationReport): number | null => r.rounds.find((x) => x.index === 1 && !x.final)?.sentBytes ?? null;

async function checksum(lab: LabState, node: string, name: string): Promise<string> {
  const r = await engineOf(lab, node).exec(name, ['wget', '-qO-', 'http://127.0.0.1:8080/checksum']);
  if (r.exitCode !== 0) throw new CloudletError('bench_failed', `checksum of ${name} on ${node}: ${r.stderr || r.stdout}`, { kind: 'internal' });
  return (JSON.parse(r.stdout) as { checksum: string }).checksum;
}

async function startService(lab: LabState, node: string, name: string, stateMb: number, seed: number | null): Promise<void> {
  const engine = engineOf(lab, node);
  for (const cl of lab.cloudlets) await removeIfPresent(engineOf(lab, cl.name), name);
  const env = [`STATE_MB=${stateMb}`, 'PORT=8080', 'DIRTY_PAGES_PER_SEC=0', ...(seed === null ? [] : [`STATE_SEED=${seed}`])];
  await engine.createContainer({
    name,
    Image: 'cloudlet/node:20',
    Cmd: ['node', '-e', STATEFUL_SERVICE_SCRIPT],
    Env: env,
    HostConfig: { NetworkMode: 'none' },
  });
  await engine.startContainer(name);
  await waitForService(engine, name);
}

/** One handoff with its state checked: the report and whether the checksum came through. */
async function handOff(
  lab: LabState,
  o: { name: string; from: string; to: string; pageCache: boolean },
): Promise<{ report: MigrationReport; stateIntact: boolean }> {
  const before = await checksum(lab, o.from, o.name);
  const report = await migrate(lab, o.from, { container: o.name, to: o.to, pageCache: o.pageCache });
  await waitForService(engineOf(lab, o.to), o.name);
  return { report, stateIntact: (await checksum(lab, o.to, o.name)) === before };
}

export async function pageCacheScenarios(lab: LabState, o: { stateMb: number; progress: (msg: string) => void }): Promise<PageCacheBench> {
  const [a, b] = lab.cloudlets.map((c) => c.name) as [string, string];
  const names = ['bench-pc1', 'bench-pc2', 'bench-pc3'];
  try {
    o.progress(`page cache: ${o.stateMb} MiB service ${a} -> ${b}, every page sent (the baseline)`);
    await startService(lab, a, names[0]!, o.stateMb, null);
    const first = await handOff(lab, { name: names[0]!, from: a, to: b, pageCache: false });
    const tBaseline = Date.now();
    const base = first.report;
    const scenario = (
      name: PageCacheScenarioName,
      container: string,
      from: string,
      to: string,
      x: { report: MigrationReport; stateIntact: boolean },
      t0: number,
    ): PageCacheScenario => {
      const r = x.report;
      const ratio = r.bytesSent / base.bytesSent;
      const targets =
        name === 'same-image-at-destination'
          ? [target('round-1 bytes <= 50 % of the first handoff', round1(r), 0.5 * (round1(base) ?? 0))]
          : name === 'return-handoff'
            ? [target('bytesSent <= 10 % of the first handoff', r.bytesSent, 0.1 * base.bytesSent)]
            : [];
      return {
        name,
        container,
        from,
        to,
        bytesSent: r.bytesSent,
        baselineBytesSent: base.bytesSent,
        round1Bytes: round1(r),
        baselineRound1Bytes: round1(base),
        ratio: Math.round(ratio * 10000) / 10000,
        offeredPages: r.pageCache?.offeredPages ?? null,
        pagesFromCache: r.pageCache?.pagesFromCache ?? 0,
        downtimeMs: r.downtimeMs,
        totalMs: r.totalMs,
        stateIntact: x.stateIntact,
        secondsAfterBaseline: Math.round((t0 - tBaseline) / 100) / 10,
        targets: [...targets, target('stateIntact (1 = no)', x.stateIntact ? 0 : 1, 0)],
        report: r,
      };
    };
    const scenarios: PageCacheScenario[] = [];
    o.progress(`page cache: a second service of the same image and data ${a} -> ${b}`);
    await startService(lab, a, names[1]!, o.stateMb, null);
    let t0 = Date.now();
    scenarios.push(scenario('same-image-at-destination', names[1]!, a, b, await handOff(lab, { name: names[1]!, from: a, to: b, pageCache: true }), t0));
    o.progress(`page cache: the first service back ${b} -> ${a}`);
    t0 = Date.now();
    scenarios.push(scenario('return-handoff', names[0]!, b, a, await handOff(lab, { name: names[0]!, from: b, to: a, pageCache: true }), t0));
    o.progress(`page cache: a service of the same image with other state ${a} -> ${b}`);
    await startService(lab, a, names[2]!, o.stateMb, 0x5eed1234);
    t0 = Date.now();
    scenarios.push(scenario('same-image-other-state', names[2]!, a, b, await handOff(lab, { name: names[2]!, from: a, to: b, pageCache: true }), t0));
    return {
      stateMb: o.stateMb,
      baseline: {
        container: names[0]!,
        from: a,
        to: b,
        bytesSent: base.bytesSent,
        round1Bytes: round1(base),
        downtimeMs: base.downtimeMs,
        totalMs: base.totalMs,
        stateIntact: first.stateIntact,
        report: base,
      },
      scenarios,
    };
  } finally {
    for (const cl of lab.cloudlets) for (const n of names) await removeIfPresent(engineOf(lab, cl.name), n).catch(() => undefined);
  }
}
