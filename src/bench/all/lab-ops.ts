// Lab operations shared by the scenarios of `bench all`: link bandwidth, one migration
// condensed into a result row, and a migration while the lab client talks to the service.
import { CloudletError, errorMessage } from '../../util/errors.js';
import { setLink } from '../../lab/lab.js';
import type { LabState, LinkSpec } from '../../lab/state.js';
import { migrate } from '../migrate.js';
import { startLabClient } from '../handoff.js';
import type { StartMigrationBody } from '../../daemon/routes-migrations.js';
import type { MigrationReport } from '../../migration/types.js';
import type { MigrationRow } from './types.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  meta: Pick<MigrationRow, 'scenario' | 'rep' | 'workload' | 'params' | 'policy'> & { requests?: number | null },
): MigrationRow {
  return {
    ...meta,
    requests: meta.requests ?? null,
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
    const r = await migrate(this.lab, this.at, { ...body, container: this.container, to });
    this.at = to;
    return r;
  }

  /**
   * Migrates while the lab client sends about n requests (half on its TCP session, half on
   * its HTTP session, each dirtying memory in the service) spread over windowMs from the
   * migration's start; waits for the window to end, so every run sees the same n.
   */
  async migrateUnderLoad(address: string, n: number, windowMs: number, body: Partial<StartMigrationBody>): Promise<{ report: MigrationReport; requests: number }> {
    const perSession = Math.max(1, Math.round(n / 2));
    const intervalMs = Math.max(5, Math.round(windowMs / perSession));
    const client = await startLabClient(address, { durationMs: windowMs, intervalMs });
    const t0 = performance.now();
    let report: MigrationReport;
    try {
      await client.ready;
      report = await this.migrate(body);
      const left = windowMs - (performance.now() - t0);
      if (left > 0) await sleep(left + 200);
    } catch (err) {
      // The client is our child: stop it before the migration's error goes up.
      await client.stop().catch((stopErr: unknown) => {
        throw new CloudletError('bench_failed', `${errorMessage(err)} (and stopping the client failed: ${errorMessage(stopErr)})`, { kind: 'internal' });
      });
      throw err;
    }
    const c = await client.stop();
    return { report, requests: (c.sessions.tcp?.sent ?? 0) + (c.sessions.http?.sent ?? 0) };
  }
}
