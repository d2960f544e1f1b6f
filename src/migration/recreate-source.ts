// The source side of a handoff by re-creation (see recreate.ts for the whole sequence and
// recreate-destination.ts for the other side). Its phases, in order:
//   prepare (image shipped if missing, destination makes the volumes) -> volumes (one rsync
//   batch each) -> start (the new instance, healthy) -> switch (drain opened, address
//   announced at the destination) -> commit (old instance drained, stopped, removed) -> done;
//   any failure before the switch's answer -> rollback (the old instance never stopped).
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CloudletError, errorMessage } from '../util/errors.js';
import type { DockerEngine, ContainerDetails } from '../engine/docker.js';
import type { ServiceNetwork } from '../network/service-network.js';
import type { MigrationEventSink, MigrationJournal } from './journal.js';
import { FsSyncSource } from '../fssync/index.js';
import { shipImageIfMissing } from './image-ship.js';
import type { PeerTransport } from './peer-transport.js';
import { sendRound, type OutgoingArtifact } from './round-transport.js';
import { DRAIN_MS, openSourceDrain, type Drain } from './recreate-drain.js';
import { RollbackLog } from './rollback-log.js';
import { twinSpecOf } from './twin-spec.js';
import { newReport, type MigrationReport, type MigrationRequest } from './types.js';
import {
  formatHealth,
  RECREATE_HEALTH_TIMEOUT_MS,
  type HealthCheck,
  type RecreatePrepareRequest,
  type RecreateStartResponse,
  type RecreateSwitchResponse,
  type StrategyChoice,
} from './recreate.js';

export interface RecreateDeps {
  node: string;
  engine: DockerEngine;
  db: MigrationJournal;
  events: MigrationEventSink;
  scratchDir: string;
  serviceNetwork: ServiceNetwork | null;
}

export interface RecreateRun {
  report: MigrationReport;
  done: Promise<MigrationReport>;
}

/** What the phases of one handoff by re-creation share. */
interface RecreateHandoff {
  deps: RecreateDeps;
  report: MigrationReport & { recreate: NonNullable<MigrationReport['recreate']> | null };
  details: ContainerDetails;
  health: HealthCheck;
  peer: PeerTransport;
  journal: () => void;
  t0: number;
  stage: string;
  volumes: { name: string; dir: string }[];
  sources: { name: string; source: FsSyncSource }[];
  /** The destination made the volumes: an abort there removes what it made. */
  prepared: boolean;
  /** The switch was asked: the route may have moved, the rollback takes the address back. */
  switching: boolean;
  drain: Drain | null;
  volumeSyncMs: number;
  volumeBytes: number;
  /** The destination drains the old instance's connections back here (the switch's answer). */
  drainedAtDestination: boolean;
}

function newRecreateId(): string {
  return `r-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/**
 * Starts a handoff by re-creation in the background; the report has the shape of a
 * migration's (journalled in the same table, served by the same routes) with no rounds.
 */
export function startRecreate(deps: RecreateDeps, req: MigrationRequest, details: ContainerDetails, choice: StrategyChoice, peer: PeerTransport): RecreateRun {
  const id = newRecreateId();
  const report: RecreateHandoff['report'] = {
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
  const h: RecreateHandoff = {
    deps,
    report,
    details,
    health: choice.health!,
    peer,
    journal,
    t0: performance.now(),
    stage: join(deps.scratchDir, 'recreate', report.id),
    volumes: details.mounts.filter((m) => m.type === 'volume' && m.name).map((m) => ({ name: m.name!, dir: m.source })),
    sources: [],
    prepared: false,
    switching: false,
    drain: null,
    volumeSyncMs: 0,
    volumeBytes: 0,
    drainedAtDestination: false,
  };
  const done = runRecreate(h).catch((err: unknown) => {
    // runRecreate settles its own failures; this is a bug's last line of defence.
    report.state = 'failed';
    report.error = { code: 'internal', message: errorMessage(err) };
    report.finishedAt = new Date().toISOString();
    journal();
    return report;
  });
  return { report, done };
}

/** The phases in order; a failure before the commit rolls back. */
async function runRecreate(h: RecreateHandoff): Promise<MigrationReport> {
  const { report } = h;
  try {
    await prepare(h);
    await syncVolumes(h);
    await startNewInstance(h);
    await switchOver(h);
    await commit(h);
  } catch (err) {
    await rollback(h, err);
  } finally {
    await closeDrain(h);
    for (const s of h.sources) {
      await s.source.dispose().catch((e: unknown) => report.warnings.push(`volume sync clean-up (${s.name}): ${errorMessage(e)}`));
    }
    await rm(h.stage, { recursive: true, force: true });
    report.finishedAt = new Date().toISOString();
    h.journal();
  }
  return report;
}

async function closeDrain(h: RecreateHandoff): Promise<void> {
  const d = h.drain;
  h.drain = null;
  for (const f of (await d?.close()) ?? []) h.report.warnings.push(`drain clean-up here: ${f}`);
}

/** The image where the destination lacks it; the destination makes the named volumes. */
async function prepare(h: RecreateHandoff): Promise<void> {
  const { deps, report, details, peer } = h;
  await mkdir(h.stage, { recursive: true });
  report.imageShipped = await shipImageIfMissing({
    engine: deps.engine,
    peer,
    imageId: details.imageId,
    imageName: details.imageName,
    stageDir: join(h.stage, 'image'),
    codec: report.codec,
  });
  h.journal();
  const body: RecreatePrepareRequest = {
    id: report.id,
    from: deps.node,
    container: {
      name: details.name,
      imageId: details.imageId,
      imageName: details.imageName,
      spec: twinSpecOf(details),
      volumes: h.volumes.map((v) => v.name),
      serviceAddress: report.serviceAddress,
    },
    health: h.health,
    healthTimeoutMs: RECREATE_HEALTH_TIMEOUT_MS,
  };
  await peer.post('/v1/recreate', body);
  h.prepared = true;
}

/** Named volumes first: the new instance starts on their content (one rsync batch each). */
async function syncVolumes(h: RecreateHandoff): Promise<void> {
  const tVol = performance.now();
  let volumeBytes = 0;
  if (h.volumes.length > 0) {
    const artifacts: OutgoingArtifact[] = [];
    for (const v of h.volumes) {
      const source = new FsSyncSource({ sourceDir: v.dir, stateDir: join(h.stage, `vol-${v.name}`) });
      h.sources.push({ name: v.name, source });
      const batch = join(h.stage, `vol-${v.name}.batch`);
      await source.nextBatch(batch, { final: true });
      const data = await readFile(batch);
      artifacts.push({ name: `fs/vol/${v.name}`, chunks: () => [data] });
    }
    const sent = await sendRound(h.peer, `/v1/recreate/${h.report.id}/volumes`, artifacts, 'zstd');
    volumeBytes = sent.sentBytes;
  }
  h.volumeSyncMs = Math.round(performance.now() - tVol);
  h.volumeBytes = volumeBytes;
  h.report.bytesSent = volumeBytes;
}

/** The new instance, created and started at the destination, passes its health check there. */
async function startNewInstance(h: RecreateHandoff): Promise<void> {
  const { report } = h;
  report.state = 'restoring';
  h.journal();
  const started = await h.peer.post<RecreateStartResponse>(`/v1/recreate/${report.id}/start`, {});
  report.destinationContainerId = started.containerId;
  report.recreate = {
    volumes: h.volumes.map((v) => v.name),
    volumeSyncMs: h.volumeSyncMs,
    volumeBytes: h.volumeBytes,
    createMs: Math.round(started.createMs),
    startMs: Math.round(started.startMs),
    healthyMs: Math.round(started.healthyMs),
    healthChecks: started.healthChecks,
    health: formatHealth(h.health),
    drainMs: null,
    drainedConnections: null,
    removeOldMs: null,
  };
  h.journal();
}

/**
 * The switch: from here new connections reach the new instance. The old one never stopped,
 * and the connections it has are drained back to it (recreate-drain.ts).
 */
async function switchOver(h: RecreateHandoff): Promise<void> {
  const { report } = h;
  if (report.serviceAddress) h.drain = await openSourceDrain(report.id, new URL(h.peer.baseUrl).hostname);
  h.switching = true;
  const sw = await h.peer.post<RecreateSwitchResponse>(`/v1/recreate/${report.id}/switch`, {});
  h.switching = false;
  report.announceMs = Math.round(sw.announceMs);
  report.downtimeMs = 0; // nothing was frozen: the old instance served until the route switch
  report.totalMs = Math.round(performance.now() - h.t0);
  h.drainedAtDestination = sw.drained;
}

/** Now, and only now, the old instance goes (once its connections are drained). Nothing rolls back from here. */
async function commit(h: RecreateHandoff): Promise<void> {
  const { deps, report, details } = h;
  const phases = report.recreate!;
  report.state = 'committing';
  h.journal();
  const tCommit = performance.now();
  if (h.drainedAtDestination) {
    await new Promise((r) => setTimeout(r, DRAIN_MS));
    phases.drainMs = DRAIN_MS;
    const ended = await h.peer.post<{ connections: number | null }>(`/v1/recreate/${report.id}/drained`, {}).catch((e: unknown) => {
      report.warnings.push(`the destination could not remove its drain: ${errorMessage(e)}`);
      return null;
    });
    phases.drainedConnections = ended?.connections ?? null;
    await closeDrain(h);
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
  phases.removeOldMs = Math.round(performance.now() - tOld);
  report.commitMs = Math.round(performance.now() - tCommit);
  report.state = 'done';
}

/** Before the switch's answer: the destination drops what it made; the old instance kept serving. */
async function rollback(h: RecreateHandoff, err: unknown): Promise<void> {
  const { deps, report } = h;
  report.error = { code: err instanceof CloudletError ? err.code : 'internal', message: errorMessage(err) };
  report.state = 'rolling-back';
  h.journal();
  const log = new RollbackLog();
  if (h.prepared) {
    try {
      await h.peer.delete(`/v1/recreate/${report.id}`);
      log.done('new instance removed at the destination');
    } catch (e) {
      log.failed(`FAILED to clean up the destination: ${errorMessage(e)}`);
    }
  }
  // A switch that failed half-way may have moved the route: take the address back.
  if (h.switching && report.serviceAddress && deps.serviceNetwork) {
    try {
      await deps.serviceNetwork.announce(report.serviceAddress);
      log.done(`service address ${report.serviceAddress} routed back here`);
    } catch (e) {
      log.failed(`FAILED to route ${report.serviceAddress} back here: ${errorMessage(e)}`);
    }
  }
  log.done('the old instance kept serving');
  report.error.message += ` (rollback: ${log.toString()})`;
  report.state = log.outcome;
  report.totalMs = Math.round(performance.now() - h.t0);
}
