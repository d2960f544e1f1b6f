// The source side of a handoff: the migration state machine.
//
//   preparing -> precopy (rounds while the service runs) -> final (freeze, last delta)
//             -> restoring (destination starts the twin) -> committing -> done
//   any failure before the destination runs the twin -> rolling-back -> rolled-back
//
// Invariant: the service runs in exactly one place. The source container is removed only
// after the destination has reported its twin running; if anything fails before that, the
// destination is told to abort (twin, volumes, staging removed) and, if the source was
// already frozen by the final dump, the source container is restored from that same dump.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ApiError, CloudletError, ConflictError, NotFoundError, UsageError, errorMessage } from '../util/errors.js';
import type { DockerEngine, ContainerDetails, RestartPolicy } from '../engine/docker.js';
import { runcCheckpoint } from '../engine/runc.js';
import type { ServiceNetwork } from '../network/service-network.js';
import { describeHolder, joiningHolder, type HolderSpec } from '../network/netns-holder.js';
import { PacketHold } from '../network/packet-hold.js';
import { installCheckpoint, removeInstalledCheckpoint } from '../engine/checkpoint-install.js';
import { serializedWithLazyRestores, type LazyRestoreConfig } from '../engine/lazy-pages.js';
import type { Delta } from '../checkpoint/delta-types.js';
import { encodeDeltaChunks } from '../checkpoint/delta-wire.js';
import { startDumpAndDelta } from '../checkpoint/stream-delta.js';
import type { PageIndex } from '../checkpoint/page-index.js';
import { FsSyncSource } from '../fssync/index.js';
import { scanContainerMemory } from '../checkpoint/proc-scan.js';
import type { MigrationEventSink, MigrationJournal } from './journal.js';
import { decide, decideInitial, describePolicy, validatePolicy, DEFAULT_COSTS, type RoundObservation } from './decision.js';
import { anonymousMemoryBytes, freezeCgroup } from '../engine/cgroups.js';
import { PeerClient } from './peer-client.js';
import { sendRound, pickCodec, type OutgoingArtifact } from './round-transport.js';
import { FAULT_STALL_MS, newReport, type MigrationReport, type MigrationRequest, type RestoreChoice, type RoundReport } from './types.js';
import { shipImageIfMissing, type ImageShipped } from './image-ship.js';
import { chooseStrategy, startRecreate } from './recreate.js';
import { duringRestore, pruneCheckpointCopiesIfIdle, type AddressTaken, type IncomingStatus, type PrepareRequest, type PrepareResponse, type RoundResponse } from './destination.js';

export interface SourceDeps {
  node: string;
  engine: DockerEngine;
  db: MigrationJournal;
  /** Live progress: every journal write of a report is published here too. */
  events: MigrationEventSink;
  /** EXEC_ROOT/runtime-runc/moby: runc's state of the engine's containers. */
  runcRoot: string;
  dataRoot: string;
  xdgRuntimeDir: string | null;
  /** Scratch space for staging (see DaemonConfig.scratchDir). */
  scratchDir: string;
  peers: { name: string; url: string }[];
  token: string;
  /** Containers on it keep their address and established TCP connections (see ServiceNetwork). */
  serviceNetwork: ServiceNetwork | null;
  /** Set when the engine also restores lazily: then this engine's restores take turns. */
  lazyRestore: LazyRestoreConfig | null;
}

interface Running {
  report: MigrationReport;
  done: Promise<MigrationReport>;
}

/** Link speed the first decision assumes, before a round has measured the real one. */
const ASSUMED_LINK_BPS = 100e6;
/** Nice value of the filesystem batch writers (rsync, getfattr) during a handoff. */
const FS_BATCH_NICE = 19;
/** Below this much anonymous memory the pages are hashed on the main thread (see hasherFor). */
const MAIN_HASHER_MAX_BYTES = 16 * 2 ** 20;

/**
 * Where a round's pages are hashed. A worker thread keeps the hashing of a large dump off
 * the event loop and, niced, out of CRIU's way; for a small one its start-up costs more than
 * the hashing (busybox counter, 6 migrations each way on the lab: final capture 215-269 ms
 * hashing on the main thread against 247-349 ms with the worker).
 */
export function hasherFor(memoryBytes: number): 'worker' | 'main' {
  return memoryBytes < MAIN_HASHER_MAX_BYTES ? 'main' : 'worker';
}

/**
 * Nice value of the filesystem batches, written beside the memory dump. For a large dump,
 * niced batches leave it the CPU (lab: final dumps ~50 ms shorter on average, batches no
 * longer). For a small one the dump is over in ~120 ms and the niced final batch was what
 * the round waited for (94-248 ms, busybox counter in bench migrate): not niced there.
 */
export function fsBatchNice(memoryBytes: number): number | null {
  return memoryBytes < MAIN_HASHER_MAX_BYTES ? null : FS_BATCH_NICE;
}

/** From this much anonymous memory on, `restore: auto` asks for a lazy restore (see restoreFor). */
export const LAZY_RESTORE_MIN_BYTES = 128 * 2 ** 20;

/**
 * The restore the final round asks of the destination. A lazy restore (where the destination
 * is configured for it) lets the service run before CRIU has copied its memory in; that copy
 * is what a large service's restore waits for (256 MiB service in bench migrate on the lab:
 * downtime 1474 / 1324 ms lazy against 1839 / 1464 ms eager, same runs). Below ~128 MiB the
 * copy is short and no gain was measured (32 and 64 MiB services: lazy and eager within
 * ~60 ms of each other, either way), so `auto` restores those eagerly: no daemon, no
 * post-copy to wait for before the commit.
 */
export function restoreFor(requested: RestoreChoice | undefined, memoryBytes: number): 'lazy' | 'eager' {
  if (requested === 'lazy' || requested === 'eager') return requested;
  return memoryBytes >= LAZY_RESTORE_MIN_BYTES ? 'lazy' : 'eager';
}

/**
 * The destination's clean-up in a rollback is retried: after a cut link or a restarted
 * destination daemon, the first attempts fail, and the source must not restore its copy
 * while the destination's twin may run (see rollback). Bounded: ~2 min at most.
 */
const ABORT_ATTEMPTS = 8;
const ABORT_RETRY_MS = 3000;
const ABORT_TIMEOUT_MS = 12_000;
/** A restarted daemon asks the destination where the service runs; it must not wait long. */
const RECOVERY_PEER_TIMEOUT_MS = 10_000;
const RECOVERY_ABORT_ATTEMPTS = 2;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A daemon killed between its freeze and the dump leaves the cgroup frozen: freezing it
 * again (a no-op when frozen) gives the handle that thaws it.
 */
async function thawIfFrozen(pid: number): Promise<void> {
  const f = await freezeCgroup(pid);
  await f.thaw();
}

/** Highest round-N directory of a migration's staging that holds a CRIU dump (the final one). */
async function lastDumpDir(stage: string): Promise<string | null> {
  const rounds = (await readdir(stage).catch(() => [] as string[]))
    .map((n) => /^round-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((x, y) => y - x);
  for (const k of rounds) {
    const dir = dumpDirOf(stage, k);
    if ((await readdir(dir).catch(() => [] as string[])).includes('inventory.img')) return dir;
  }
  return null;
}

function dumpDirOf(stage: string, round: number): string {
  return join(stage, `round-${round}`, 'img');
}

export function newMigrationId(): string {
  return `m-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

export class MigrationSource {
  private readonly running = new Map<string, Running>();

  constructor(private readonly deps: SourceDeps) {}

  /** Starts a migration in the background; returns its initial report (with the id). */
  async start(req: MigrationRequest): Promise<MigrationReport> {
    // totalMs counts from here: the checks below (inspect, holder) are part of the handoff.
    const t0 = performance.now();
    validatePolicy(req.policy);
    const peer = this.deps.peers.find((p) => p.name === req.to);
    if (!peer) {
      throw new NotFoundError('peer', req.to, { hint: `peers of ${this.deps.node}: ${this.deps.peers.map((p) => p.name).join(', ') || 'none'}` });
    }
    if (req.to === this.deps.node) throw new UsageError('source and destination are the same cloudlet');
    const client = new PeerClient(peer.url, this.deps.token, req.peerTimeoutMs);
    const details = await this.deps.engine.inspectContainer(req.container);
    if (!details.running) throw new UsageError(`container '${details.name}' is not running: nothing to migrate live`);
    if (!details.upperDir) throw new CloudletError('no_upperdir', 'the engine does not use overlay2: cannot sync the R/W layer', { httpStatus: 409 });
    for (const r of this.running.values()) {
      if (r.report.container === details.name && !r.report.finishedAt) {
        throw new ConflictError(`container '${details.name}' is already being migrated (${r.report.id})`);
      }
    }
    // Handoff strategy (issue 9): the request's, else the container's labels; recreate runs apart.
    const choice = chooseStrategy(req.strategy, details.createOptions.Labels);
    // Before anything starts: a shared or stopped holder is refused here.
    const holder = await describeHolder(this.deps.engine, details);
    if (choice.strategy === 'recreate') {
      if (holder) {
        throw new UsageError(`'${details.name}' joins the network namespace holder ${holder.spec.name}: re-creation of such a service is not supported`, {
          hint: 'migrate it (--strategy migrate)',
        });
      }
      const r = startRecreate(this.deps, req, details, choice, client);
      this.running.set(r.report.id, r);
      void r.done.then(() => this.running.delete(r.report.id));
      return { ...r.report };
    }
    const id = newMigrationId();
    const report = newReport({
      id,
      container: details.name,
      from: this.deps.node,
      to: req.to,
      policy: describePolicy(req.policy),
      codec: req.codec,
      // A service in a holder has its address there.
      serviceAddress: this.deps.serviceNetwork?.addressOf(holder?.details ?? details) ?? null,
      strategy: 'migrate',
      strategyReason: choice.reason,
    });
    report.netnsHolder = holder?.spec.name ?? null;
    this.deps.db.insertMigration({
      id,
      role: 'source',
      container: details.name,
      fromNode: this.deps.node,
      toNode: req.to,
      state: 'preparing',
      options: { policy: req.policy, codec: req.codec },
    });
    const entry: Running = { report, done: Promise.resolve(report) };
    this.running.set(id, entry);
    // run() handles its own failures; anything escaping it is a bug, but must not take the
    // daemon down with an unhandled rejection.
    entry.done = this.run(entry, req, details, holder?.spec ?? null, t0, client).catch((err: unknown) => {
      report.state = 'failed';
      report.error = { code: 'internal', message: errorMessage(err) };
      report.finishedAt = new Date().toISOString();
      this.running.delete(id);
      return report;
    });
    return { ...report };
  }

  get(id: string): MigrationReport | null {
    const r = this.running.get(id);
    if (r) return { ...r.report, rounds: [...r.report.rounds] };
    const row = this.deps.db.migration(id, 'source');
    return row?.report ? (row.report as unknown as MigrationReport) : null;
  }

  list(): MigrationReport[] {
    return this.deps.db
      .migrations({ role: 'source' })
      .map((row) => this.get(row.id))
      .filter((r): r is MigrationReport => r !== null);
  }

  async wait(id: string): Promise<MigrationReport> {
    const r = this.running.get(id);
    if (!r) {
      const done = this.get(id);
      if (!done) throw new NotFoundError('migration', id);
      return done;
    }
    return r.done;
  }

  /**
   * Migrations this daemon was running when it stopped cannot go on (their state lived in
   * the process); they are settled so that the service runs in exactly one place:
   *  - before the freeze (preparing, precopy) the service still runs here: the destination
   *    drops its twin, the migration is rolled back;
   *  - after it, the destination is asked whether its twin runs: if it does, the handoff is
   *    committed (the stopped copy here is removed); if it does not, its twin is dropped and
   *    the service restored here from the final dump the staging directory still holds;
   *  - a destination that cannot be reached leaves the migration failed, the final dump kept:
   *    restoring here could run the service twice.
   * (Before: every such migration was only marked failed, leaving a frozen service stopped.)
   */
  async recoverAfterRestart(): Promise<string[]> {
    const notes: string[] = [];
    for (const m of this.deps.db.activeMigrations('source')) {
      const report = (m.report as unknown as MigrationReport | null) ?? null;
      const what = `cloudletd restarted during the migration (state '${m.state}')`;
      const peer = this.deps.peers.find((p) => p.name === m.toNode);
      if (!report || !peer) {
        this.deps.db.updateMigration(m.id, 'source', { state: 'failed', error: `${what}; check where ${m.container} runs` });
        notes.push(`migration ${m.id} of ${m.container} marked failed`);
        continue;
      }
      const entry: Running = { report, done: Promise.resolve(report) };
      const client = new PeerClient(peer.url, this.deps.token, RECOVERY_PEER_TIMEOUT_MS);
      const stage = join(this.deps.scratchDir, 'migrations', m.id);
      let keepStage = false;
      try {
        const frozen = !['preparing', 'precopy'].includes(m.state);
        const twin = frozen ? await client.get<IncomingStatus>(`/v1/incoming/${m.id}`).catch((err: unknown) => err as Error) : null;
        const details = (await this.deps.engine.containerExists(m.container)) ? await this.deps.engine.inspectContainer(m.container) : null;
        if (twin instanceof Error) {
          keepStage = true;
          report.state = 'failed';
          report.error = { code: 'recovery_failed', message: `${what}; the destination could not be asked whether it runs the service (${twin.message}): check where ${m.container} runs; its final dump is kept in ${stage}` };
        } else if (twin?.twinRunning) {
          if (details) await this.commit(report, details, client);
          else report.warnings.push(`source container ${m.container} was already gone`);
          report.warnings.push(`${what}: the destination runs the service, the handoff was committed by the restarted daemon`);
          report.state = 'done';
        } else {
          // Killed between its freeze and the dump: the service is 'running' but frozen.
          if (frozen && details?.running) await thawIfFrozen(details.pid);
          const dump = frozen ? await lastDumpDir(stage) : null;
          // Two attempts only at the destination: the daemon serves no request until its
          // recovery is over.
          const rb = details
            ? await this.rollback({
                report,
                details,
                destinationPrepared: true,
                frozen: frozen && dump !== null && !details.running,
                // From the final state on, the address may have been routed to the destination.
                addressMoved: frozen,
                finalDumpDir: dump ?? '',
                peer: client,
                finalSent: false,
                abortAttempts: RECOVERY_ABORT_ATTEMPTS,
              })
            : [`FAILED to find the source container ${m.container}`];
          if (details && !details.running && frozen && dump === null) rb.push(`FAILED: ${m.container} is stopped and no final dump is in ${stage}`);
          report.error = { code: 'daemon_restarted', message: `${what}; rolled back (${rb.join('; ')})` };
          report.state = rb.some((n) => n.startsWith('FAILED')) ? 'failed' : 'rolled-back';
          keepStage = report.state === 'failed';
        }
      } catch (err) {
        keepStage = true;
        report.state = 'failed';
        report.error = { code: 'recovery_failed', message: `${what}; recovery failed: ${errorMessage(err)}; check where ${m.container} runs` };
      }
      if (!keepStage) await rm(stage, { recursive: true, force: true });
      report.finishedAt = new Date().toISOString();
      this.journal(entry);
      notes.push(`migration ${m.id} of ${m.container}: ${report.state}${report.error ? ` (${report.error.message})` : ''}`);
    }
    return notes;
  }

  /** Writes the report to the journal at every state change (GET /v1/migrations/:id reads it). */
  private journal(entry: Running): void {
    this.deps.db.updateMigration(entry.report.id, 'source', {
      state: entry.report.state,
      report: entry.report as unknown as Record<string, unknown>,
      error: entry.report.error?.message ?? null,
    });
    this.deps.events.publish(entry.report);
  }

  private async run(entry: Running, req: MigrationRequest, details: ContainerDetails, holder: HolderSpec | null, t0: number, peer: PeerClient): Promise<MigrationReport> {
    const report = entry.report;
    const { engine } = this.deps;
    const stage = join(this.deps.scratchDir, 'migrations', report.id);
    const fsSources: { name: string; source: FsSyncSource }[] = [];
    let prepared: PrepareResponse | null = null;
    let frozen = false;
    let addressMoved = false;
    let finalSent = false;
    let keepStage = false;
    let restartPolicy: RestartPolicy | null = null;
    let index = 0;
    try {
      await mkdir(stage, { recursive: true });
      const volumes = details.mounts.filter((m) => m.type === 'volume' && m.name).map((m) => ({ name: m.name!, dir: m.source }));
      const prepareReq: PrepareRequest = {
        id: report.id,
        from: this.deps.node,
        container: {
          name: details.name,
          imageId: details.imageId,
          imageName: details.imageName,
          // The twin joins the destination's copy of the holder, which has the same name.
          createOptions: holder ? joiningHolder(details.createOptions, holder.name) : details.createOptions,
          volumes: volumes.map((v) => v.name),
          serviceAddress: report.serviceAddress,
          netnsHolder: holder,
        },
      };
      // The destination refuses a prepare for an image it lacks: it then gets the image's
      // missing layers (overlay) and the prepare is asked again. Asked first, the common case
      // (image there) costs no extra round trip.
      const prepare = () => peer.post<PrepareResponse>('/v1/incoming', prepareReq);
      // Memory size (for the decision) read while the destination prepares.
      const memory = anonymousMemoryBytes(details.pid);
      memory.catch(() => undefined); // awaited below
      prepared = await prepare().catch(async (err: unknown) => {
        if (!(err instanceof ApiError && err.code === 'image_missing')) throw err;
        report.imageShipped = await this.shipImage(details.imageId, details.imageName, peer, join(stage, 'image'), req.codec);
        if (holder && holder.imageId !== details.imageId) {
          const shipped = await this.shipImage(holder.imageId, holder.imageName, peer, join(stage, 'holder-image'), req.codec);
          if (shipped) report.warnings.push(`the network namespace holder's image ${holder.imageName} was shipped too (${shipped.bytes} bytes)`);
        }
        this.journal(entry);
        return prepare();
      });
      report.destinationContainerId = prepared.twinId;
      if (holder) report.netnsHolderFrom = prepared.holder;

      let prevIndex: PageIndex | null = null;
      const observations: RoundObservation[] = [];
      let lastDumpStart: number | null = null;
      // Before any link measurement the model assumes the lab's default link speed.
      const memoryBytes = await memory;
      const initial = decideInitial(req.policy, memoryBytes, ASSUMED_LINK_BPS, DEFAULT_COSTS);
      const hasher = hasherFor(memoryBytes);
      const restore = restoreFor(req.restore, memoryBytes);
      const nice = fsBatchNice(memoryBytes);
      fsSources.push({ name: 'fs/rw', source: new FsSyncSource({ sourceDir: details.upperDir!, stateDir: join(stage, 'fs-rw'), nice }) });
      for (const v of volumes) {
        fsSources.push({ name: `fs/vol/${v.name}`, source: new FsSyncSource({ sourceDir: v.dir, stateDir: join(stage, `fs-vol-${v.name}`), nice }) });
      }
      if (!initial.stop) {
        report.state = 'precopy';
        this.journal(entry);
        for (;;) {
          index++;
          const dumpStart = performance.now();
          const r = await this.round(report, index, false, details, stage, prevIndex, fsSources, peer, req, hasher, restore);
          prevIndex = r.index;
          const obs: RoundObservation = {
            index,
            durationMs: performance.now() - dumpStart,
            intervalMs: lastDumpStart === null ? null : dumpStart - lastDumpStart,
            stallMs: r.round.stallMs,
            hashMs: r.round.hashMs,
            pagesScanned: r.round.pagesScanned,
            pagesChanged: r.round.pagesChanged,
            rawBytes: r.round.rawBytes,
            sentBytes: r.round.sentBytes,
            sendMs: r.round.sendMs,
            bandwidthBps: r.round.bandwidthBps,
          };
          lastDumpStart = dumpStart;
          observations.push(obs);
          const d = decide(req.policy, observations, performance.now() - t0, DEFAULT_COSTS);
          r.round.decision = d.explanation;
          report.decision = d.explanation;
          r.round.predictedDowntimeMs = d.predictedDowntimeMs === null ? null : Math.round(d.predictedDowntimeMs);
          report.precopyRounds = index;
          this.journal(entry);
          if (d.stop) {
            report.stopReason = d.reason;
            break;
          }
        }
      } else {
        report.stopReason = initial.reason === 'forced-rounds' ? 'stop-and-copy' : initial.reason;
        report.decision = initial.explanation;
      }

      // Final round: the dump stops the container (downtime starts here). The engine must not
      // restart it behind our back: its restart policy is off until the handoff is decided.
      report.state = 'final';
      this.journal(entry);
      restartPolicy = await engine.setRestartPolicy(details.id, { Name: 'no' });
      index++;
      // The address moves before the freeze: the destination holds its packets until the
      // restored sockets are there, so a client's segment sent meanwhile is answered one round
      // trip after the restore instead of at its next retransmission (see takeAddress).
      if (report.serviceAddress !== null) {
        addressMoved = true;
        const taken = await peer.post<AddressTaken>(`/v1/incoming/${report.id}/address`, {});
        report.announceMs = Math.round(taken.announceMs);
        report.holdSetupMs = Math.round(taken.holdSetupMs);
      }
      const freezeAt = performance.now();
      frozen = true;
      const fin = await this.round(report, index, true, details, stage, prevIndex, fsSources, peer, req, hasher, restore, () => (finalSent = true));
      // The downtime ends when the restored service was reachable at the destination; what
      // the destination did after it (closing the hold; a lazy restore's post-copy) is not.
      const r = fin.response;
      const afterReachableMs = r.reachableMs === null ? (r.postCopyMs ?? 0) : r.applyMs - r.reachableMs;
      report.downtimeMs = Math.round(performance.now() - freezeAt - afterReachableMs);
      report.restoreMs = r.restoreMs === null ? null : Math.round(r.restoreMs);
      if (r.announceMs !== null) report.announceMs = Math.round(r.announceMs);
      report.hold = r.hold;
      const postCopyMs = r.postCopyMs ?? null;
      report.postCopyMs = postCopyMs === null ? null : Math.round(postCopyMs);
      // A lazy restore is the one that answers with a post-copy time.
      report.restoreMode = postCopyMs === null ? 'eager' : 'lazy';
      // The handoff is complete when the twin runs: the total stops here; removing the
      // source copy and the staging data (commit) is reported apart.
      report.totalMs = Math.round(performance.now() - t0);
      const tCommit = performance.now();

      // The twin runs at the destination: now, and only now, the source copy goes. From here
      // on nothing rolls back: a failing clean-up is reported, the service stays at B.
      report.state = 'committing';
      this.journal(entry);
      frozen = false;
      // Fault injection (lab only): the twin runs, the stopped copy is still here.
      if (req.inject === 'stall-before-commit') await sleep(FAULT_STALL_MS);
      await this.commit(report, details, peer);
      report.commitMs = Math.round(performance.now() - tCommit);
      report.state = 'done';
    } catch (err) {

      report.error = { code: err instanceof CloudletError ? err.code : 'internal', message: errorMessage(err) };
      report.state = 'rolling-back';
      this.journal(entry);
      const notes = await this.rollback({
        report,
        details,
        destinationPrepared: prepared !== null,
        frozen,
        addressMoved,
        finalDumpDir: dumpDirOf(stage, index),
        peer,
        finalSent,
      });
      if (restartPolicy) {
        await engine.setRestartPolicy(details.id, restartPolicy).then(
          () => undefined,
          (e: unknown) => notes.push(`FAILED to restore the restart policy: ${errorMessage(e)}`),
        );
      }
      // A frozen service that could not be restored here keeps its final dump (the only copy
      // of its state; it was deleted with the staging before).
      keepStage = frozen && notes.some((n) => n.startsWith('FAILED') && n.includes('source container'));
      if (keepStage) notes.push(`the final dump is kept in ${dumpDirOf(stage, index)}`);
      report.error.message += notes.length ? ` (rollback: ${notes.join('; ')})` : '';
      report.state = notes.some((n) => n.startsWith('FAILED')) ? 'failed' : 'rolled-back';
      report.totalMs = Math.round(performance.now() - t0);
    } finally {
      for (const f of fsSources) {
        await f.source.dispose().catch((e: unknown) => report.warnings.push(`fs sync clean-up: ${errorMessage(e)}`));
      }
      if (!keepStage) await rm(stage, { recursive: true, force: true });
      report.bytesSent = report.rounds.reduce((s, r) => s + r.sentBytes, 0);
      report.finishedAt = new Date().toISOString();
      this.journal(entry);
      this.running.delete(report.id);
    }
    return report;
  }

  /** One round: dump, delta, filesystem batches, send; returns the round's figures. */
  private async round(
    report: MigrationReport,
    index: number,
    final: boolean,
    details: ContainerDetails,
    stage: string,
    prevIndex: PageIndex | null,
    fsSources: { name: string; source: FsSyncSource }[],
    peer: PeerClient,
    req: MigrationRequest,
    hasher: 'worker' | 'main',
    restore: 'lazy' | 'eager',
    onFinalSend?: () => void,
  ): Promise<{ round: RoundReport; index: PageIndex; response: RoundResponse }> {
    const roundDir = join(stage, `round-${index}`);
    const dumpDir = dumpDirOf(stage, index);
    // The filesystem batches (rsync, other processes) run beside the page work.
    const writeBatches = () =>
      Promise.all(
        fsSources.map(async (f) => {
          const batch = join(roundDir, `${f.name.replace(/\//g, '_')}.batch`);
          const st = await f.source.nextBatch(batch, { final });
          return { name: f.name, bytes: st.bytes, ms: st.ms, data: await readFile(batch) };
        }),
      );
    let fsWork: ReturnType<typeof writeBatches> | null = null;
    let dumpMs: number;
    let stallMs: number;
    let deltaWork: Promise<Delta>;
    try {
      if (final || req.precopy === 'dump') {
        // The final dump starts on a cgroup we froze ourselves (see freezeCgroup): the freeze
        // is the exact start of the downtime, and a frozen container cannot change its files,
        // so the last filesystem batch is written while CRIU dumps. If the dump fails, CRIU
        // leaves the cgroup as it found it: thawed here, the service carries on.
        const frozen = final ? await freezeCgroup(details.pid) : null;
        if (frozen) fsWork = writeBatches();
        // The pages are hashed while runc/CRIU writes them: hashMs below is what is left.
        const streamed = startDumpAndDelta({
          dir: dumpDir,
          prev: prevIndex,
          hasher,
          dump: async () => {
            try {
              return await runcCheckpoint({
                runcRoot: this.deps.runcRoot,
                containerId: details.id,
                imageDir: dumpDir,
                workDir: join(roundDir, 'work'),
                leaveRunning: !final,
                // A service-network container keeps its address: its connections move with it.
                // Connections not yet accepted cannot be dumped: their clients reconnect.
                tcpEstablished: report.serviceAddress !== null,
                skipInFlight: report.serviceAddress !== null,
              });
            } catch (err) {
              await frozen?.thaw();
              throw err;
            }
          },
        });
        const dump = await streamed.dumped;
        // Fault injection (lab only): a window in which the service is frozen and nothing is sent.
        if (final && req.inject === 'stall-after-final-dump') await sleep(FAULT_STALL_MS);
        dumpMs = dump.wallMs + (frozen?.ms ?? 0);
        stallMs = (dump.stats?.frozenTimeUs ?? dump.wallMs * 1000) / 1000 + (frozen?.ms ?? 0);
        deltaWork = streamed.result.then((r) => r.delta);
      } else {
        // Pre-copy: the memory is read from /proc while the service runs - no freeze at all.
        // A page torn by a concurrent write has a hash the final dump will not match, so it
        // is sent again then. Pages are hashed while the scan writes them, and the filesystem
        // batches are written meanwhile (the service runs anyway: no reason to wait).
        fsWork = writeBatches();
        const streamed = startDumpAndDelta({
          dir: dumpDir,
          prev: prevIndex,
          hasher,
          dump: () => scanContainerMemory({ initPid: details.pid, outDir: dumpDir }),
        });
        dumpMs = (await streamed.dumped).ms;
        stallMs = 0;
        deltaWork = streamed.result.then((r) => r.delta);
      }
    } catch (err) {
      await fsWork?.catch(() => undefined); // settled before the error goes up
      throw err;
    }
    if (!fsWork) fsWork = writeBatches();
    const tHash = performance.now();
    let delta: Delta;
    try {
      delta = await deltaWork;
    } finally {
      // Never leave the batch promise unobserved, even when hashing failed.
      await fsWork.catch(() => undefined);
    }
    const hashMs = performance.now() - tHash;
    // The codec is measured on this round's pages while the last filesystem batch is written.
    const [fsBatches, codec] = await Promise.all([fsWork, pickCodec(req.codec, delta, report.rounds, final)]);

    // Filesystem batches first: the destination applies them while the pages arrive.
    const artifacts: OutgoingArtifact[] = fsBatches.map((b) => ({ name: b.name, chunks: () => [b.data] }));
    const fsBytes = fsBatches.reduce((n, b) => n + b.bytes, 0);
    // Against the previous round's layout, which the destination holds: unchanged pages'
    // hashes are not sent again (delta wire format v2).
    artifacts.push({ name: 'delta', chunks: () => encodeDeltaChunks(delta, { against: prevIndex }) });
    if (final) {
      for (const f of await readdir(dumpDir)) {
        if (/^pages-\d+\.img$/.test(f) || /^pagemap-.*\.img$/.test(f)) continue;
        const data = await readFile(join(dumpDir, f));
        artifacts.push({ name: `img/${f}`, chunks: () => [data] });
      }
    }
    // Final-round options for the destination: a fault to inject (lab), an eager restore.
    const finalOptions = (final && req.inject ? `&inject=${req.inject}` : '') + (final && restore === 'eager' ? '&restore=eager' : '');
    if (final) onFinalSend?.();
    // Fault injection (lab only): one byte of the final round damaged on its way.
    const corrupt = final && req.inject === 'corrupt-frame' ? { corruptByteAt: 4096 } : {};
    const sent = await sendRound(peer, `/v1/incoming/${report.id}/rounds/${index}?final=${final ? 1 : 0}${finalOptions}`, artifacts, codec, corrupt);
    const response = sent.response as RoundResponse;
    const round: RoundReport = {
      index,
      final,
      dumpMs: Math.round(dumpMs),
      stallMs: Math.round(stallMs),
      hashMs: Math.round(hashMs),
      pagesScanned: delta.counts.scanned,
      pagesChanged: delta.counts.changed + delta.counts.new,
      pagesZero: delta.counts.zero,
      rawBytes: sent.rawBytes,
      sentBytes: sent.sentBytes,
      fsBytes,
      codec,
      sendMs: Math.round(sent.sendMs),
      bandwidthBps: Math.round(sent.sendMs > 0 ? (sent.sentBytes * 8) / (sent.sendMs / 1000) : 0),
      applyMs: Math.round(response.applyMs),
      fsBatchMs: Math.round(Math.max(0, ...fsBatches.map((b) => b.ms))),
      fsApplyMs: Math.round(response.fsMs),
      rebuildMs: Math.round(response.rebuildMs),
      destination: {
        receivedMs: Math.round(response.receivedMs),
        fsDoneMs: Math.round(response.fsDoneMs),
        baseReadyMs: response.baseReadyMs === null ? null : Math.round(response.baseReadyMs),
      },
      decision: null,
      predictedDowntimeMs: null,
    };
    report.rounds.push(round);
    // Pre-copy dumps are not needed once sent; the final dump is kept for a rollback.
    if (!final) await rm(dumpDir, { recursive: true, force: true });
    return { round, index: delta.index, response };
  }

  /** After the handoff: remove the source copy, let the destination drop its staging data. */
  private async commit(report: MigrationReport, details: ContainerDetails, peer: PeerClient): Promise<void> {
    // The address went with the service: this cloudlet must not hand it to a new one.
    if (report.serviceAddress) this.deps.db.markAddressMoved(report.serviceAddress, details.name, report.to);
    try {
      await this.deps.engine.removeContainer(details.id, { force: true });
    } catch (err) {
      report.warnings.push(`the stopped source container ${details.name} could not be removed: ${errorMessage(err)}`);
    }
    // The destination runs its own copy of the holder; this one would only keep the address.
    if (report.netnsHolder) {
      try {
        await this.deps.engine.removeContainer(report.netnsHolder, { force: true });
      } catch (err) {
        report.warnings.push(`the source's network namespace holder ${report.netnsHolder} could not be removed: ${errorMessage(err)}`);
      }
    }
    try {
      await peer.post(`/v1/incoming/${report.id}/commit`, {});
    } catch (err) {
      report.warnings.push(`the destination could not drop its staging data: ${errorMessage(err)}`);
    }
  }

  /** The image's layers the destination lacks, as an overlay (or the whole image); null if it had it. */
  private shipImage(imageId: string, imageName: string, peer: PeerClient, stageDir: string, codec: string): Promise<ImageShipped | null> {
    return shipImageIfMissing({ engine: this.deps.engine, peer, token: this.deps.token, imageId, imageName, stageDir, codec });
  }

  /** DELETE /v1/incoming/:id, retried a bounded number of times (see ABORT_ATTEMPTS). */
  private async abortDestination(id: string, peer: PeerClient, attempts: number): Promise<void> {
    const client = new PeerClient(peer.baseUrl, this.deps.token, ABORT_TIMEOUT_MS);
    for (let attempt = 1; ; attempt++) {
      try {
        await client.delete(`/v1/incoming/${id}`);
        return;
      } catch (err) {
        if (attempt >= attempts) throw new CloudletError('abort_failed', `the destination did not confirm the clean-up after ${attempt} attempts: ${errorMessage(err)}`, { cause: err });
        await sleep(ABORT_RETRY_MS);
      }
    }
  }

  /**
   * Puts everything back as it was: the destination drops its twin (and what it held for the
   * address); a source container already stopped by the final dump is restored from that
   * dump on this engine; the address is routed back here.
   */
  private async rollback(o: {
    report: MigrationReport;
    details: ContainerDetails;
    destinationPrepared: boolean;
    /** The final dump was started: the container may be stopped here. */
    frozen: boolean;
    /** The address was routed to the destination before the freeze. */
    addressMoved: boolean;
    finalDumpDir: string;
    peer: PeerClient;
    finalSent: boolean;
    abortAttempts?: number;
  }): Promise<string[]> {
    const { report, details, frozen, peer } = o;
    const notes: string[] = [];
    let destinationClean = !o.destinationPrepared;
    if (o.destinationPrepared) {
      try {
        await this.abortDestination(report.id, peer, o.abortAttempts ?? ABORT_ATTEMPTS);
        destinationClean = true;
        notes.push('destination cleaned up');
      } catch (err) {
        notes.push(`FAILED to clean up the destination: ${errorMessage(err)}`);
      }
    }
    // Once the final round may have reached the destination, its twin may be running there
    // (e.g. the link was cut after the restore, before the answer): restoring here as well
    // would run the service twice. Before this check, the source was restored regardless.
    if (frozen && o.finalSent && !destinationClean) {
      notes.push(`FAILED: the source container is not restored here, the destination may run it: check ${report.to}; the final dump is in ${o.finalDumpDir}`);
      return notes;
    }
    const svc = this.deps.serviceNetwork;
    const address = report.serviceAddress;
    let routedBack = !(o.addressMoved || frozen) || address === null || svc === null;
    const routeBack = async (): Promise<void> => {
      if (routedBack) return;
      routedBack = true;
      try {
        await svc!.announce(address!);
        notes.push(`service address ${address} routed back here`);
      } catch (err) {
        notes.push(`FAILED to route ${address} back here: ${errorMessage(err)}`);
      }
    };
    if (frozen) {
      try {
        const d = await this.deps.engine.inspectContainer(details.id);
        if (d.running) {
          notes.push('source container still running');
        } else {
          await this.restoreHere(report, details, o.finalDumpDir, routeBack, notes);
          notes.push('source container restored from its final dump');
        }
      } catch (err) {
        notes.push(`FAILED to restore the source container: ${errorMessage(err)}`);
      }
    }
    await routeBack();
    return notes;
  }

  /**
   * Restores the stopped source container from its final dump. Its address's packets are
   * held here from before the address is routed back until its sockets are restored (see
   * PacketHold): Docker gives the new namespace the address before CRIU restores the
   * connections, and a segment arriving in between would be answered with a reset.
   */
  private async restoreHere(report: MigrationReport, details: ContainerDetails, finalDumpDir: string, routeBack: () => Promise<void>, notes: string[]): Promise<void> {
    await this.deps.engine.waitNotRunning(details.id);
    const name = `rb-${report.id}`;
    await installCheckpoint({
      dataRoot: this.deps.dataRoot,
      containerId: details.id,
      name,
      imageDir: finalDumpDir,
      xdgRuntimeDir: this.deps.xdgRuntimeDir,
    });
    const hold = report.serviceAddress && this.deps.serviceNetwork ? await PacketHold.start(report.serviceAddress) : null;
    let restored = false;
    try {
      await routeBack();
      // A rollback restores eagerly: every page in before the service runs here again.
      await serializedWithLazyRestores(this.deps.lazyRestore, () => duringRestore(() => this.deps.engine.startFromCheckpoint(details.id, name)));
      restored = true;
    } finally {
      if (restored) hold?.release();
      else hold?.discard();
      await hold?.close().catch((err: unknown) => notes.push(`FAILED to lift the hold on ${report.serviceAddress} (iptables raw PREROUTING): ${errorMessage(err)}`));
    }
    await removeInstalledCheckpoint({ dataRoot: this.deps.dataRoot, containerId: details.id, name, xdgRuntimeDir: this.deps.xdgRuntimeDir });
    if (this.deps.xdgRuntimeDir) await pruneCheckpointCopiesIfIdle(this.deps.xdgRuntimeDir);
  }
}
