// Handoff by re-creation (issue 9): for a service that keeps no state in memory, a fresh
// instance is started at the destination instead of moving the running one. Make-before-break:
//
//   source cloudletd (A)                                  destination cloudletd (B)
//   image layers B lacks ──> (image-ship.ts, as for a migration)
//   POST /v1/recreate ────────────────────────────────────> image here? name free? create the
//                                                           named volumes (empty)
//   named volumes: one rsync batch each (fssync)
//     ──PUT /v1/recreate/ID/volumes (framed stream) ─────> apply the batches
//   POST /v1/recreate/ID/start ───────────────────────────> create the instance with the same name,
//                                                           config, labels and pinned service
//                                                           address; start; poll its own health
//                                                           check until it passes
//   open the drain link's end here (recreate-drain.ts)
//   POST /v1/recreate/ID/switch ──────────────────────────> drain: packets of connections opened at A
//                                                           go back to A; announce the address here
//                                                           (route switch)
//   DRAIN_MS: the old instance finishes the connections it had
//   stop + remove the old instance; POST /v1/recreate/ID/drained; drain link removed here
//   any failure before the switch: DELETE /v1/recreate/ID (new instance and volumes removed),
//   the old instance never stopped serving.
//
// This module also holds what a service declares about its handoff (the cloudlet.* labels,
// set at provisioning so that they travel with the container) and the choice of strategy.
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { CloudletError, UsageError, errorMessage } from '../util/errors.js';
import type { DockerEngine, ContainerDetails } from '../engine/docker.js';
import type { ServiceNetwork } from '../network/service-network.js';
import type { MigrationEventSink, MigrationJournal } from './journal.js';
import { FsSyncSource } from '../fssync/index.js';
import { shipImageIfMissing } from './image-ship.js';
import type { PeerClient } from './peer-client.js';
import { sendRound, type OutgoingArtifact } from './round-transport.js';
import { DRAIN_MS, openSourceDrain, type Drain } from './recreate-drain.js';
import { HANDOFF_STRATEGIES, newReport, type HandoffStrategy, type MigrationReport, type MigrationRequest } from './types.js';

// ---------------------------------------------------------------- what a service declares

export const HANDOFF_LABELS = {
  handoff: 'cloudlet.handoff',
  stateless: 'cloudlet.stateless',
  health: 'cloudlet.health',
} as const;

export type HealthCheck = { http: { port: number; path: string } } | { tcp: { port: number } };

const port = z.number().int().min(1).max(65535);
export const healthSchema: z.ZodType<HealthCheck> = z.union([
  z.object({ http: z.object({ port, path: z.string().regex(/^\/[\x21-\x7e]{0,255}$/, 'an absolute path without spaces') }).strict() }).strict(),
  z.object({ tcp: z.object({ port }).strict() }).strict(),
]);

/** The label (and CLI) form: `http:8080/healthz` or `tcp:7000`. */
export function formatHealth(h: HealthCheck): string {
  return 'http' in h ? `http:${h.http.port}${h.http.path}` : `tcp:${h.tcp.port}`;
}

export function parseHealth(text: string): HealthCheck {
  const m = /^(http):(\d{1,5})(\/[\x21-\x7e]{0,255})?$|^(tcp):(\d{1,5})$/.exec(text.trim());
  const h: unknown = !m ? null : m[1] ? { http: { port: Number(m[2]), path: m[3] ?? '/' } } : { tcp: { port: Number(m[5]) } };
  const r = healthSchema.safeParse(h);
  if (!r.success) throw new UsageError(`invalid health check '${text}'`, { hint: 'use http:PORT/PATH (an HTTP 2xx answer) or tcp:PORT (a TCP connect)' });
  return r.data;
}

/** The labels a service carries for its handoff (stored at provisioning). */
export function handoffLabels(o: { handoff: HandoffStrategy; stateless: boolean; health?: HealthCheck | undefined }): Record<string, string> {
  // recreate needs to know when the new instance serves: the service's own check says so.
  if (o.handoff === 'recreate' && !o.health) {
    throw new UsageError('handoff "recreate" needs a health check', { hint: 'add --health http:PORT/PATH or tcp:PORT' });
  }
  return {
    [HANDOFF_LABELS.handoff]: o.handoff,
    [HANDOFF_LABELS.stateless]: String(o.stateless),
    ...(o.health ? { [HANDOFF_LABELS.health]: formatHealth(o.health) } : {}),
  };
}

export interface StrategyChoice {
  strategy: 'migrate' | 'recreate';
  reason: string;
  /** The service's health check (null when it declared none). */
  health: HealthCheck | null;
}

/**
 * Which handoff runs: the request's strategy, else the container's cloudlet.handoff label,
 * else migrate. `auto` recreates a service declared stateless that has a health check, and
 * migrates anything else (its memory may hold state). Explicit recreate without a health
 * check is refused: nothing would tell when the new instance serves.
 */
export function chooseStrategy(requested: HandoffStrategy | undefined, labels: Record<string, string> | null | undefined): StrategyChoice {
  const l = labels ?? {};
  const declared = l[HANDOFF_LABELS.handoff];
  if (declared !== undefined && !(HANDOFF_STRATEGIES as readonly string[]).includes(declared)) {
    throw new UsageError(`the container's label ${HANDOFF_LABELS.handoff}=${declared} is not one of ${HANDOFF_STRATEGIES.join(', ')}`);
  }
  const healthText = l[HANDOFF_LABELS.health];
  const health = healthText ? parseHealth(healthText) : null;
  const stateless = l[HANDOFF_LABELS.stateless] === 'true';
  const wanted = requested ?? (declared as HandoffStrategy | undefined) ?? 'migrate';
  const by = requested ? 'the request' : declared ? `the service's label ${HANDOFF_LABELS.handoff}` : 'default (no strategy declared)';
  switch (wanted) {
    case 'migrate':
      return { strategy: 'migrate', reason: `migrate: ${by}`, health };
    case 'recreate':
      if (!health) {
        throw new UsageError('strategy "recreate" needs the service\'s health check, and this container declares none', {
          hint: `provision it with --health (label ${HANDOFF_LABELS.health}), or migrate it`,
        });
      }
      return { strategy: 'recreate', reason: `recreate: ${by}; ready when ${formatHealth(health)} passes`, health };
    case 'auto':
      if (!stateless) return { strategy: 'migrate', reason: `auto (${by}): not declared stateless, its memory may hold state: live migration`, health };
      if (!health) return { strategy: 'migrate', reason: `auto (${by}): declared stateless but has no health check to tell when a new instance serves: live migration`, health };
      return { strategy: 'recreate', reason: `auto (${by}): declared stateless, a fresh instance is started and switched to when ${formatHealth(health)} passes`, health };
  }
}

// ---------------------------------------------------------------- the wire between the two sides

export interface RecreatePrepareRequest {
  id: string;
  from: string;
  container: {
    name: string;
    imageId: string;
    imageName: string;
    createOptions: Record<string, unknown>;
    volumes: string[];
    serviceAddress: string | null;
  };
  health: HealthCheck;
  /** How long the new instance may take to pass its health check. */
  healthTimeoutMs: number;
}

export interface RecreateStartResponse {
  containerId: string;
  createMs: number;
  startMs: number;
  healthyMs: number;
  healthChecks: number;
}

export interface RecreateSwitchResponse {
  announceMs: number;
  /** The destination drains the old instance's connections back to the source until told otherwise. */
  drained: boolean;
}

export const RECREATE_HEALTH_TIMEOUT_MS = 60_000;

// ---------------------------------------------------------------- the source side

export interface RecreateDeps {
  node: string;
  engine: DockerEngine;
  db: MigrationJournal;
  events: MigrationEventSink;
  scratchDir: string;
  token: string;
  serviceNetwork: ServiceNetwork | null;
}

export interface RecreateRun {
  report: MigrationReport;
  done: Promise<MigrationReport>;
}

function newRecreateId(): string {
  return `r-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/**
 * Starts a handoff by re-creation in the background; the report has the shape of a
 * migration's (journalled in the same table, served by the same routes) with no rounds.
 */
export function startRecreate(deps: RecreateDeps, req: MigrationRequest, details: ContainerDetails, choice: StrategyChoice, peer: PeerClient): RecreateRun {
  const id = newRecreateId();
  const report: MigrationReport = {
    ...newReport({
      id,
      container: details.name,
      from: deps.node,
      to: req.to,
      policy: 'recreate (no memory rounds)',
      codec: req.codec,
      serviceAddress: deps.serviceNetwork?.addressOf(details) ?? null,
      strategy: 'recreate',
      strategyReason: choice.reason,
    }),
    recreate: null,
  };
  deps.db.insertMigration({
    id,
    role: 'source',
    container: details.name,
    fromNode: deps.node,
    toNode: req.to,
    state: 'preparing',
    options: { strategy: 'recreate', codec: req.codec },
  });
  const journal = () => {
    deps.db.updateMigration(id, 'source', { state: report.state, report: report as unknown as Record<string, unknown>, error: report.error?.message ?? null });
    deps.events.publish(report);
  };
  journal();
  const done = runRecreate(deps, report, details, choice.health!, peer, journal).catch((err: unknown) => {
    // runRecreate settles its own failures; this is a bug's last line of defence.
    report.state = 'failed';
    report.error = { code: 'internal', message: errorMessage(err) };
    report.finishedAt = new Date().toISOString();
    journal();
    return report;
  });
  return { report, done };
}

async function runRecreate(
  deps: RecreateDeps,
  report: MigrationReport,
  details: ContainerDetails,
  health: HealthCheck,
  peer: PeerClient,
  journal: () => void,
): Promise<MigrationReport> {
  const t0 = performance.now();
  const stage = join(deps.scratchDir, 'recreate', report.id);
  const volumes = details.mounts.filter((m) => m.type === 'volume' && m.name).map((m) => ({ name: m.name!, dir: m.source }));
  const sources: { name: string; source: FsSyncSource }[] = [];
  let prepared = false;
  let switching = false;
  let drain: Drain | null = null;
  const closeDrain = async () => {
    const d = drain;
    drain = null;
    for (const f of (await d?.close()) ?? []) report.warnings.push(`drain clean-up here: ${f}`);
  };
  try {
    await mkdir(stage, { recursive: true });
    report.imageShipped = await shipImageIfMissing({
      engine: deps.engine,
      peer,
      token: deps.token,
      imageId: details.imageId,
      imageName: details.imageName,
      stageDir: join(stage, 'image'),
      codec: report.codec,
    });
    journal();
    const prepare: RecreatePrepareRequest = {
      id: report.id,
      from: deps.node,
      container: {
        name: details.name,
        imageId: details.imageId,
        imageName: details.imageName,
        createOptions: details.createOptions as unknown as Record<string, unknown>,
        volumes: volumes.map((v) => v.name),
        serviceAddress: report.serviceAddress,
      },
      health,
      healthTimeoutMs: RECREATE_HEALTH_TIMEOUT_MS,
    };
    await peer.post('/v1/recreate', prepare);
    prepared = true;

    // Named volumes first: the new instance starts on their content (one rsync batch each).
    const tVol = performance.now();
    let volumeBytes = 0;
    if (volumes.length > 0) {
      const artifacts: OutgoingArtifact[] = [];
      for (const v of volumes) {
        const source = new FsSyncSource({ sourceDir: v.dir, stateDir: join(stage, `vol-${v.name}`) });
        sources.push({ name: v.name, source });
        const batch = join(stage, `vol-${v.name}.batch`);
        await source.nextBatch(batch, { final: true });
        const data = await readFile(batch);
        artifacts.push({ name: `fs/vol/${v.name}`, chunks: () => [data] });
      }
      const sent = await sendRound(peer, `/v1/recreate/${report.id}/volumes`, artifacts, 'zstd');
      volumeBytes = sent.sentBytes;
    }
    const volumeSyncMs = Math.round(performance.now() - tVol);
    report.bytesSent = volumeBytes;

    report.state = 'restoring';
    journal();
    const started = await peer.post<RecreateStartResponse>(`/v1/recreate/${report.id}/start`, {});
    report.destinationContainerId = started.containerId;
    report.recreate = {
      volumes: volumes.map((v) => v.name),
      volumeSyncMs,
      volumeBytes,
      createMs: Math.round(started.createMs),
      startMs: Math.round(started.startMs),
      healthyMs: Math.round(started.healthyMs),
      healthChecks: started.healthChecks,
      health: formatHealth(health),
      drainMs: null,
      drainedConnections: null,
      removeOldMs: null,
    };
    journal();

    // The switch: from here new connections reach the new instance. The old one never stopped,
    // and the connections it has are drained back to it (recreate-drain.ts).
    if (report.serviceAddress) drain = await openSourceDrain(report.id, new URL(peer.baseUrl).hostname);
    switching = true;
    const sw = await peer.post<RecreateSwitchResponse>(`/v1/recreate/${report.id}/switch`, {});
    switching = false;
    report.announceMs = Math.round(sw.announceMs);
    report.downtimeMs = 0; // nothing was frozen: the old instance served until the route switch
    report.totalMs = Math.round(performance.now() - t0);

    // Now, and only now, the old instance goes (once its connections are drained). Nothing
    // rolls back from here.
    report.state = 'committing';
    journal();
    const tCommit = performance.now();
    if (sw.drained) {
      await new Promise((r) => setTimeout(r, DRAIN_MS));
      report.recreate.drainMs = DRAIN_MS;
      const ended = await peer.post<{ connections: number | null }>(`/v1/recreate/${report.id}/drained`, {}).catch((e: unknown) => {
        report.warnings.push(`the destination could not remove its drain: ${errorMessage(e)}`);
        return null;
      });
      report.recreate.drainedConnections = ended?.connections ?? null;
      await closeDrain();
    }
    const tOld = performance.now();
    // The address went with the service: this cloudlet must not hand it to a new one.
    if (report.serviceAddress) deps.db.markAddressMoved(report.serviceAddress, details.name, report.to);
    try {
      await deps.engine.stopContainer(details.id, { timeoutS: 2 });
      await deps.engine.removeContainer(details.id, { force: true });
    } catch (err) {
      report.warnings.push(`the old instance ${details.name} could not be removed here: ${errorMessage(err)}`);
    }
    report.recreate.removeOldMs = Math.round(performance.now() - tOld);
    report.commitMs = Math.round(performance.now() - tCommit);
    report.state = 'done';
  } catch (err) {
    report.error = { code: err instanceof CloudletError ? err.code : 'internal', message: errorMessage(err) };
    report.state = 'rolling-back';
    journal();
    const notes: string[] = [];
    if (prepared) {
      try {
        await peer.delete(`/v1/recreate/${report.id}`);
        notes.push('new instance removed at the destination');
      } catch (e) {
        notes.push(`FAILED to clean up the destination: ${errorMessage(e)}`);
      }
    }
    // A switch that failed half-way may have moved the route: take the address back.
    if (switching && report.serviceAddress && deps.serviceNetwork) {
      try {
        await deps.serviceNetwork.announce(report.serviceAddress);
        notes.push(`service address ${report.serviceAddress} routed back here`);
      } catch (e) {
        notes.push(`FAILED to route ${report.serviceAddress} back here: ${errorMessage(e)}`);
      }
    }
    notes.push('the old instance kept serving');
    report.error.message += ` (rollback: ${notes.join('; ')})`;
    report.state = notes.some((n) => n.startsWith('FAILED')) ? 'failed' : 'rolled-back';
    report.totalMs = Math.round(performance.now() - t0);
  } finally {
    await closeDrain();
    for (const s of sources) {
      await s.source.dispose().catch((e: unknown) => report.warnings.push(`volume sync clean-up (${s.name}): ${errorMessage(e)}`));
    }
    await rm(stage, { recursive: true, force: true });
    report.finishedAt = new Date().toISOString();
    journal();
  }
  return report;
}
