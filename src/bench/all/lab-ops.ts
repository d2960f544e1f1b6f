// Lab operations shared by the scenarios of `bench all`: link bandwidth, one migration
// condensed into a result row with what the client saw of it, a migration while the lab
// client loads the service, and a migration under an HTTP probe (the client of the workloads
// that take no load, as `bench migrate` probes them).
import { CloudletError, errorMessage } from '../../util/errors.js';
import { setLink } from '../../lab/lab.js';
import type { LabState, LinkSpec } from '../../lab/state.js';
import { CLIENT_INTERVAL_MS, PROBE_WINDOW, spareReady } from '../migrate.js';
import { engineOf, migrate } from '../lab-migrate.js';
import { startLabClient, type RunningClient } from '../handoff.js';
import { startLabHttpProbe } from '../lab-client.js';
import { RTT_SPAN_MS } from '../handoff-runs.js';
import { clientFigures, type ClientFigures } from './client-figures.js';
import type { StartMigrationBody } from '../../daemon/routes-migrations.js';
import type { MigrationReport } from '../../migration/types.js';
import type { ClientReport } from '../../client/types.js';
import type { MigrationRow } from './types.js';
import { bytesToCross, wireLimitMs } from './wire-limit.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Before a probed migration: the client's round trip (handoff-runs.ts takes the second before the start). */
const PROBE_LEAD_MS = RTT_SPAN_MS + 200;
/** After a probed migration: the client hears the service again, so its silence is closed. */
const PROBE_TAIL_MS = 1000;
/** Upper bound of a probe's run (the slowest sweep point is a few minutes); it is stopped when its migration is done. */
const PROBE_MAX_MS = 15 * 60_000;
/** The activity service's path that answers like /req but dirties nothing (handoff-service.ts). */
const ACTIVITY_PROBE_PATH = '/probe';

/** How the client reaches a workload on the service network. */
export interface HttpProbe {
  address: string;
  path: string;
  /** For servers that close every connection after their answer (busybox httpd). */
  connectionPerRequest: boolean;
  /** Requests in flight at most (1 with a connection per request; pipelined on the kept-alive one). */
  window: number;
}

/** Sets the bandwidth of both cloudlets' links (a -> router -> b is bounded by both). */
export async function setBandwidth(lab: LabState, mbit: number): Promise<void> {
  for (const cl of lab.cloudlets.slice(0, 2)) {
    await setLink(lab, cl.name, { bandwidth: `${mbit}mbit`, latency: cl.link.latency });
  }
}

export async function restoreLinks(lab: LabState, links: Map<string, LinkSpec>): Promise<void> {
  for (const [name, spec] of links) await setLink(lab, name, spec);
}

export function linksOf(lab: LabState): Map<string, LinkSpec> {
  return new Map(lab.cloudlets.slice(0, 2).map((c) => [c.name, { ...c.link }]));
}

/** The request body of a named stop rule (as `cloudlet migrate` would send it). */
export function policyBody(policy: string): Partial<StartMigrationBody> {
  const m = /^(rounds|alpha)=(\d+(?:\.\d+)?)$/.exec(policy);
  if (m) return m[1] === 'rounds' ? { rounds: Number(m[2]) } : { alpha: Number(m[2]) };
  if (policy === 'model') return {};
  if (policy === 'alpha') return { alpha: 1 };
  if (policy === 'phaul' || policy === 'lxd') return { rule: policy };
  throw new RangeError(`unknown policy '${policy}'`);
}

export function rowOf(
  r: MigrationReport,
  meta: Pick<MigrationRow, 'scenario' | 'rep' | 'workload' | 'params' | 'policy'> & { requests?: number | null; linkMbit?: number },
  client: ClientFigures,
): MigrationRow {
  const { linkMbit, ...rest } = meta;
  const row: MigrationRow = {
    ...rest,
    requests: meta.requests ?? null,
    clientGapMs: client.clientGapMs,
    rttMs: client.rttMs,
    clientNote: client.clientNote,
    from: r.from,
    to: r.to,
    codec: r.codec,
    totalMs: r.totalMs ?? Number.NaN,
    downtimeMs: r.downtimeMs ?? Number.NaN,
    bytesSent: r.bytesSent,
    imageShippedBytes: r.imageShipped?.bytes ?? 0,
    precopyRounds: r.precopyRounds,
    stopReason: r.stopReason,
    rounds: r.rounds.map((x) => ({
      index: x.index,
      final: x.final,
      pagesChanged: x.pagesChanged,
      pagesScanned: x.pagesScanned,
      sentBytes: x.sentBytes,
      sendMs: x.sendMs,
      stallMs: x.stallMs,
    })),
  };
  if (linkMbit === undefined) return row;
  const bytes = bytesToCross(row);
  return { ...row, linkMbit, bytesToCross: bytes, wireLimitMs: Math.round(wireLimitMs(bytes, linkMbit)) };
}

/**
 * Runs `during` once the client is ready, then stops the client (our child, by its PID) and
 * returns its report; on failure the client is stopped before the error goes up.
 */
async function whileClientRuns<T>(client: RunningClient, during: () => Promise<T>): Promise<{ value: T; report: ClientReport }> {
  let value: T;
  try {
    await client.ready;
    value = await during();
  } catch (err) {
    await client.stop().catch((stopErr: unknown) => {
      throw new CloudletError('bench_failed', `${errorMessage(err)} (and stopping the client failed: ${errorMessage(stopErr)})`, { kind: 'internal' });
    });
    throw err;
  }
  return { value, report: await client.stop() };
}

/**
 * A container that moves back and forth between the first two cloudlets: each migration
 * starts where the previous one left it, so a workload is started once per scenario.
 */
export class Shuttle {
  constructor(
    private readonly lab: LabState,
    readonly container: string,
    private at: string,
    /** How migrateProbed's client reaches the workload (workloads that take no load). */
    readonly probe: HttpProbe | null = null,
  ) {}

  get where(): string {
    return this.at;
  }

  private other(): string {
    const [a, b] = this.lab.cloudlets;
    return this.at === a!.name ? b!.name : a!.name;
  }

  async migrate(body: Partial<StartMigrationBody>): Promise<MigrationReport> {
    const to = this.other();
    // The classic evaluation's handoffs start cold: a shuttle going back and forth would
    // otherwise find its own pages in the destination's page cache from the second handoff on
    // (bench migrate measures the page cache on its own scenarios).
    const r = await migrate(this.lab, this.at, { pageCache: false, ...body, container: this.container, to });
    this.at = to;
    return r;
  }

  /**
   * Migrates while the lab client sends about n requests (half on its TCP session, half on
   * its HTTP session, each dirtying memory in the service) spread over windowMs from the
   * migration's start; waits for the window to end, so every run sees the same n. The load
   * may end before the freeze: what a user sees is measured by a probe of its own beside it
   * (GET /probe, which dirties nothing), from before the migration to after it.
   */
  async migrateUnderLoad(
    address: string,
    n: number,
    windowMs: number,
    body: Partial<StartMigrationBody>,
  ): Promise<{ report: MigrationReport; requests: number; client: ClientFigures }> {
    const perSession = Math.max(1, Math.round(n / 2));
    const intervalMs = Math.max(5, Math.round(windowMs / perSession));
    const probe = await startLabHttpProbe(address, {
      durationMs: PROBE_MAX_MS,
      intervalMs: CLIENT_INTERVAL_MS,
      httpPath: ACTIVITY_PROBE_PATH,
      window: PROBE_WINDOW,
    });
    const { value, report: probed } = await whileClientRuns(probe, async () => {
      await sleep(PROBE_LEAD_MS);
      const client = await startLabClient(address, { durationMs: windowMs, intervalMs });
      const t0 = performance.now();
      const run = await whileClientRuns(client, async () => {
        const r = await this.migrate(body);
        const left = windowMs - (performance.now() - t0);
        if (left > 0) await sleep(left + 200);
        return r;
      });
      await sleep(PROBE_TAIL_MS);
      return run;
    });
    const c = value.report;
    return { report: value.value, requests: (c.sessions.tcp?.sent ?? 0) + (c.sessions.http?.sent ?? 0), client: clientFigures(probed, value.value) };
  }

  /**
   * Migrates while an HTTP probe in the lab's client namespace requests the workload every
   * CLIENT_INTERVAL_MS, from PROBE_LEAD_MS before the migration to PROBE_TAIL_MS after it
   * (bounded by PROBE_MAX_MS); the probe is stopped (by its PID) whatever happens.
   */
  async migrateProbed(body: Partial<StartMigrationBody>): Promise<{ report: MigrationReport; requests: null; client: ClientFigures }> {
    const p = this.probe;
    if (!p) throw new CloudletError('bench_failed', `${this.container} has no probe: it is not on the service network`, { kind: 'internal' });
    const client = await startLabHttpProbe(p.address, {
      durationMs: PROBE_MAX_MS,
      intervalMs: CLIENT_INTERVAL_MS,
      httpPath: p.path,
      newConnectionPerRequest: p.connectionPerRequest,
      window: p.window,
    });
    const { value: report, report: c } = await whileClientRuns(client, async () => {
      await sleep(PROBE_LEAD_MS);
      const r = await this.migrate(body);
      await sleep(PROBE_TAIL_MS);
      return r;
    });
    // A handoff takes the destination's spare holder; its replacement must not fall into the next migration.
    await spareReady(engineOf(this.lab, this.at));
    return { report, requests: null, client: clientFigures(c, report) };
  }
}
