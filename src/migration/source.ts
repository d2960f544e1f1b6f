// The source side of a handoff: starts handoffs, answers where they stand, and settles the ones
// a restarted daemon left in flight. The handoff itself is a state machine (source/run.ts),
// one module per phase: source/prepare.ts, precopy.ts, announce.ts, final.ts, commit.ts,
// rollback.ts, and source/recovery.ts after a restart. A handoff by re-creation runs apart
// (recreate.ts).
import { probeEngineAdapter } from '../engine/engine-adapter.js';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CloudletError, ConflictError, NotFoundError, UsageError, errorMessage } from '../util/errors.js';
import { describeHolder } from '../network/netns-holder.js';
import { describePolicy, validatePolicy } from './decision.js';
import { newObjective } from './source/objective.js';
import { PEER_SILENCE_MS } from './peer-transport.js';
import { newReport, type MigrationReport, type MigrationRequest } from './types.js';
import { chooseStrategy } from './recreate.js';
import { startRecreate } from './recreate-source.js';
import type { SourceDeps, SourceHandoff } from './source/handoff.js';
import { runHandoff } from './source/run.js';
import { twinSpecOf } from './twin-spec.js';
import { recoverSourceMigrations } from './source/recovery.js';
import { planHandoff, type MigrationPlan, type PlanInput } from './source/plan.js';

export type { SourceDeps } from './source/handoff.js';
export type { MigrationPlan } from './source/plan.js';
export { hasherFor, fsBatchNice, restoreFor, LAZY_RESTORE_MIN_BYTES } from './source/tuning.js';

interface Running {
  report: MigrationReport;
  done: Promise<MigrationReport>;
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
    const checked = await this.checkRequest(req);
    const { details, choice, peer } = checked;
    if (choice.strategy === 'recreate') {
      const r = startRecreate(this.deps, req, details, choice, peer);
      this.running.set(r.report.id, r);
      void r.done.then(() => this.running.delete(r.report.id));
      return { ...r.report };
    }
    return this.startMigration({ ...checked, t0 });
  }

  /** What a handoff of `req` would do and every reason it would be refused; nothing is started. */
  async plan(req: MigrationRequest): Promise<MigrationPlan> {
    return planHandoff(this.deps, await this.checkRequest(req));
  }

  /** The checks of a request that need no peer: refused here (thrown) before anything starts. */
  private async checkRequest(req: MigrationRequest): Promise<PlanInput> {
    validatePolicy(req.policy);
    const peer = this.deps.peers.find((p) => p.name === req.to);
    if (!peer) {
      throw new NotFoundError('peer', req.to, { hint: `peers of ${this.deps.node}: ${this.deps.peers.map((p) => p.name).join(', ') || 'none'}` });
    }
    if (req.to === this.deps.node) throw new UsageError('source and destination are the same cloudlet');
    const client = this.deps.connectPeer({ url: peer.url, silenceMs: req.peerTimeoutMs ?? PEER_SILENCE_MS });
    const [inspected, adapter] = await Promise.all([this.deps.engine.inspectContainer(req.container), probeEngineAdapter(this.deps.engine)]);
    if (!inspected.running) throw new UsageError(`container '${inspected.name}' is not running: nothing to migrate live`);
    // Where the R/W layer is depends on the image store: the adapter knows (engine-adapter.ts).
    const upperDir = await adapter.rwLayerDir({ containerId: inspected.id, graphDriverUpperDir: inspected.upperDir, execRoot: this.deps.execRoot ?? null });
    if (!upperDir) {
      throw new CloudletError(
        'no_upperdir',
        `Docker ${adapter.engineVersion} (${adapter.imageStore} image store) names no R/W layer of the container: cannot sync it`,
        {
          kind: 'conflict',
        },
      );
    }
    const details = { ...inspected, upperDir };
    for (const r of this.running.values()) {
      if (r.report.container === details.name && !r.report.finishedAt) {
        throw new ConflictError(`container '${details.name}' is already being migrated (${r.report.id})`);
      }
    }
    // Handoff strategy (issue 9): the request's, else the container's labels; recreate runs apart.
    const choice = chooseStrategy(req.strategy, details.createOptions.Labels);
    // Before anything starts: a shared or stopped holder is refused here.
    const holder = await describeHolder(this.deps.engine, details);
    // What the destination will be asked to create, checked here first (settings a spec
    // cannot carry, values it refuses): the destination's policy check is the authority.
    const spec = twinSpecOf(details, { holderName: choice.strategy === 'recreate' ? null : (holder?.spec.name ?? null) });
    if (choice.strategy === 'recreate' && holder) {
      throw new UsageError(`'${details.name}' joins the network namespace holder ${holder.spec.name}: re-creation of such a service is not supported`, {
        hint: 'migrate it (--strategy migrate)',
      });
    }
    // A service in a holder has its address there.
    const serviceAddress = this.deps.serviceNetwork?.addressOf(holder?.details ?? details) ?? null;
    return { req, details, holder, spec, choice, peer: client, serviceAddress, sourceEngine: adapter.asSource };
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

  /** Migrations this daemon was running when it stopped are settled (source/recovery.ts). */
  async recoverAfterRestart(): Promise<string[]> {
    return recoverSourceMigrations(this.deps, (report) => this.journal(report));
  }

  /** A live migration: journalled as 'preparing', then run in the background (source/run.ts). */
  private startMigration(o: PlanInput & { t0: number }): MigrationReport {
    const { req, details, holder } = o;
    const id = newMigrationId();
    const report = newReport({
      id,
      container: details.name,
      from: this.deps.node,
      to: req.to,
      policy: describePolicy(req.policy),
      codec: req.codec,
      serviceAddress: o.serviceAddress,
      strategy: 'migrate',
      strategyReason: o.choice.reason,
    });
    report.netnsHolder = holder?.spec.name ?? null;
    report.objective = newObjective(req.policy);
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
    const h: SourceHandoff = {
      deps: this.deps,
      report,
      req,
      details,
      holder: holder?.spec ?? null,
      spec: o.spec,
      sourceEngine: o.sourceEngine,
      t0: o.t0,
      peer: o.peer,
      stage: join(this.deps.scratchDir, 'migrations', id),
      fsSources: [],
      progress: { prepared: false, addressMoved: false, frozen: false, finalSent: false, restartPolicy: null },
      plan: null,
      index: 0,
      prevIndex: null,
      destinationPages: null,
      journal: () => this.journal(report),
    };
    // runHandoff settles its own failures; anything escaping it is a bug, but must not take
    // the daemon down with an unhandled rejection.
    entry.done = runHandoff(h, { onFinished: () => this.running.delete(id) }).then(
      () => report,
      (err: unknown) => {
        report.state = 'failed';
        report.error = { code: 'internal', message: errorMessage(err) };
        report.finishedAt = new Date().toISOString();
        this.running.delete(id);
        return report;
      },
    );
    return { ...report };
  }

  /** Writes the report to the journal at every state change (GET /v1/migrations/:id reads it). */
  private journal(report: MigrationReport): void {
    this.deps.db.updateMigration(report.id, 'source', {
      state: report.state,
      report: report as unknown as Record<string, unknown>,
      error: report.error?.message ?? null,
    });
    this.deps.events.publish(report);
  }
}
