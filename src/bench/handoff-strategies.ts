// `bench handoff --scenario strategies` (issue 9): the same stateless service handed off by
// live migration and by re-creation, under a client making a connection per request.
import { CloudletError, errorMessage } from '../util/errors.js';
import { DockerEngine } from '../engine/docker.js';
import type { ClientReport } from '../client/types.js';
import type { MigrationReport } from '../migration/types.js';
import type { LabState } from '../lab/state.js';
import { cloudlet, migrate, provisionHandoffService, removeService, routedTo } from './handoff-provision.js';
import { startLabClient } from './lab-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
      throw new CloudletError('handoff_failed', `${strategy} ${opts.from} -> ${opts.to} ended ${report.state}: ${report.error?.message ?? ''}`, {
        kind: 'upstream',
      });
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
