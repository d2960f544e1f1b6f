// The destination side of a handoff by re-creation (see recreate.ts for the source side and
// the whole sequence). The daemon's routes (routes-recreate.ts) only carry its requests:
//   prepare  - spec within this cloudlet's container policy? image here? name free? create
//              the named volumes (empty);
//   volumes  - apply the volumes' rsync batches (a framed stream, as a round);
//   start    - create + start the new instance (same name, config, labels, pinned service
//              address), wait for its own health check (recreate-health.ts);
//   switch   - drain (connections opened at the source go back there, see recreate-drain.ts),
//              then announce the service address here: the new instance serves;
//   drained  - the old instance is done: remove the drain;
//   abort    - remove the new instance and the volumes made here.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import { CloudletError, ConflictError, NotFoundError, UsageError, errorMessage } from '../util/errors.js';
import { twinImageRef, type DockerEngine } from '../engine/docker.js';
import { createOptionsFromSpec } from '../engine/container-spec.js';
import { checkBindRealPaths, checkContainerPolicy, STRICT_CONTAINER_POLICY, type ContainerPolicy } from './container-policy.js';
import type { ServiceNetwork } from '../network/service-network.js';
import { applyBatch } from '../fssync/apply.js';
import type { MigrationJournal } from './journal.js';
import type { ReceivedArtifact } from './round-transport.js';
import { handoffIdentityFields, incomingContainerSchema } from './destination/wire.js';
import { healthSchema, type RecreatePrepareRequest, type RecreateStartResponse, type RecreateSwitchResponse } from './recreate.js';
import { waitHealthy } from './recreate-health.js';
import { openDestinationDrain, type Drain } from './recreate-drain.js';

const prepareSchema = z
  .object({
    ...handoffIdentityFields,
    container: incomingContainerSchema
      .extend({
        serviceAddress: z
          .string()
          .refine((a) => isIPv4(a), 'an IPv4 address')
          .nullable(),
      })
      .strict(),
    health: healthSchema,
    healthTimeoutMs: z.number().int().min(100).max(600_000),
  })
  .strict();

interface Recreating {
  req: RecreatePrepareRequest;
  stageDir: string;
  volumes: Map<string, string>;
  createdVolumes: string[];
  containerId: string | null;
  busy: boolean;
}

/** A drain the source never ends (it died) is removed after this long. */
const DRAIN_LIMIT_MS = 60_000;

export interface RecreateDestinationDeps {
  /** This cloudlet's name (in messages). */
  node: string;
  engine: DockerEngine;
  db: MigrationJournal;
  /** Where staging data of incoming re-creations lives. */
  stageRoot: string;
  serviceNetwork: ServiceNetwork | null;
  /** The peers: the drain link goes to the source's address. */
  peers: { name: string; url: string }[];
  /** Where problems that fail no handoff are told (structured data, message). */
  warn: (data: Record<string, unknown>, msg: string) => void;
  /** What a peer's new instance may be created with beyond the spec's plain fields (default: strict). */
  containerPolicy?: ContainerPolicy;
}

export class RecreateDestination {
  private readonly held = new Map<string, Recreating>();
  // Switched handoffs stay known for a while: a source that never got the switch's answer
  // routes the address back to itself and aborts, and the new instance must go then.
  private readonly switched = new Map<string, Recreating>();
  private readonly drains = new Map<string, { drain: Drain; timer: NodeJS.Timeout }>();

  constructor(private readonly deps: RecreateDestinationDeps) {}

  async prepare(rawBody: unknown): Promise<{ ok: true; volumes: string[] }> {
    const parsed = prepareSchema.safeParse(rawBody ?? {});
    if (!parsed.success) {
      throw new UsageError(`invalid recreate request: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`);
    }
    const body = parsed.data as RecreatePrepareRequest;
    const c = body.container;
    const { engine, db, node } = this.deps;
    if (this.held.has(body.id)) throw new ConflictError(`recreate ${body.id} is already prepared here`);
    // The policy first: a refused handoff is refused before anything is looked at or made.
    const policy = this.deps.containerPolicy ?? STRICT_CONTAINER_POLICY;
    checkContainerPolicy(c.spec, policy, { prefix: 'container.spec', node });
    await checkBindRealPaths(c.spec, policy, { prefix: 'container.spec', node });
    if (!(await engine.imageExists(c.imageId))) {
      throw new CloudletError('image_missing', `image ${c.imageName} (${c.imageId.slice(0, 19)}) is not on this cloudlet`, { kind: 'conflict' });
    }
    if (await engine.containerExists(c.name)) throw new ConflictError(`a container named '${c.name}' already exists on ${node}`);
    if (c.serviceAddress !== null && !this.deps.serviceNetwork) {
      throw new ConflictError(`the service has address ${c.serviceAddress}, but ${node} has no service network`);
    }
    db.insertMigration({
      id: body.id,
      role: 'destination',
      container: c.name,
      fromNode: body.from,
      toNode: '',
      state: 'preparing',
      options: { strategy: 'recreate' },
    });
    const r: Recreating = { req: body, stageDir: join(this.deps.stageRoot, body.id), volumes: new Map(), createdVolumes: [], containerId: null, busy: false };
    this.held.set(body.id, r);
    try {
      await mkdir(r.stageDir, { recursive: true });
      for (const v of c.volumes) {
        if (await engine.volumeExists(v)) throw new ConflictError(`a volume named '${v}' already exists on ${node}`);
        await engine.createVolume(v);
        r.createdVolumes.push(v);
        r.volumes.set(v, await engine.volumeMountpoint(v));
      }
      db.updateMigration(body.id, 'destination', { state: 'prepared' });
      return { ok: true, volumes: c.volumes };
    } catch (err) {
      await this.abort(body.id, errorMessage(err));
      throw err;
    }
  }

  /** The volumes' rsync batches, applied one by one as they arrive. */
  receiveVolumes(id: string, artifacts: AsyncIterable<ReceivedArtifact>): Promise<{ ok: true; applyMs: number }> {
    return this.step(id, async (r) => {
      let ms = 0;
      for await (const a of artifacts) {
        const vol = a.name.startsWith('fs/vol/') ? a.name.slice('fs/vol/'.length) : '';
        const target = r.volumes.get(vol);
        if (!target) throw new UsageError(`volume batch for unknown volume '${a.name}'`);
        const batch = join(r.stageDir, `${vol}.batch`);
        await writeFile(batch, a.data);
        ms += (await applyBatch(batch, target)).ms;
        await rm(batch, { force: true });
      }
      return { ok: true, applyMs: ms };
    });
  }

  start(id: string): Promise<RecreateStartResponse> {
    return this.step(id, async (r) => {
      const { engine, db } = this.deps;
      if (r.containerId) throw new ConflictError(`recreate ${id}: the new instance is already started`);
      // As a migration's twin: by the source's image name, tagged here if the image came by id only.
      const Image = await twinImageRef(engine, r.req.container.imageId, r.req.container.imageName);
      const t0 = performance.now();
      r.containerId = await engine.createContainer(createOptionsFromSpec(r.req.container.spec, { name: r.req.container.name, image: Image }));
      db.updateMigration(id, 'destination', { state: 'restoring', report: { twinId: r.containerId } });
      const t1 = performance.now();
      await engine.startContainer(r.containerId);
      const t2 = performance.now();
      const address = r.req.container.serviceAddress ?? (await engine.containerNetwork(r.containerId)).ip;
      if (!address) throw new CloudletError('no_address', 'the new instance has no address to check its health at', { kind: 'conflict' });
      const healthy = await waitHealthy({ engine, containerId: r.containerId, address, health: r.req.health, timeoutMs: r.req.healthTimeoutMs });
      return { containerId: r.containerId, createMs: t1 - t0, startMs: t2 - t1, healthyMs: healthy.ms, healthChecks: healthy.checks };
    });
  }

  switch(id: string): Promise<RecreateSwitchResponse> {
    return this.step(id, async (r) => {
      if (!r.containerId) throw new ConflictError(`recreate ${id}: no new instance started yet`);
      const address = r.req.container.serviceAddress;
      const svc = this.deps.serviceNetwork;
      if (!address || !svc) return this.finishSwitch(id, r, { announceMs: 0, drained: false });
      const peer = this.deps.peers.find((p) => p.name === r.req.from);
      if (!peer) throw new ConflictError(`${r.req.from} is not a peer of ${this.deps.node}: no drain link to it`);
      const drain = await openDestinationDrain(id, address, new URL(peer.url).hostname);
      let announceMs: number;
      try {
        announceMs = await svc.announce(address);
      } catch (err) {
        const failed = await drain.close();
        if (failed.length) this.deps.warn({ failed }, 'drain clean-up after a failed announce');
        throw err;
      }
      const timer = setTimeout(() => {
        void this.endDrain(id).then((failed) => failed.length && this.deps.warn({ failed }, 'drain clean-up'));
      }, DRAIN_LIMIT_MS);
      timer.unref();
      this.drains.set(id, { drain, timer });
      return this.finishSwitch(id, r, { announceMs, drained: true });
    });
  }

  /** The old instance at the source is done with its connections: the drain goes. */
  async drained(id: string): Promise<{ ok: true; connections: number | null }> {
    const d = this.drains.get(id);
    if (!d) throw new NotFoundError('drain', id);
    const connections = await d.drain.connections();
    this.switched.delete(id); // committed: an abort can no longer take the service away
    const failed = await this.endDrain(id);
    if (failed.length) throw new CloudletError('drain_cleanup_failed', `removing the drain failed: ${failed.join('; ')}`, { kind: 'internal' });
    return { ok: true, connections };
  }

  /** Removes what this handoff made here; what was removed, in words. */
  async abort(id: string, reason: string): Promise<string[]> {
    const r = this.held.get(id) ?? this.switched.get(id);
    if (!r) return [];
    const { engine, db } = this.deps;
    const removed: string[] = [];
    if (this.switched.delete(id)) {
      const failed = await this.endDrain(id);
      if (failed.length) removed.push(`drain (partly: ${failed.join('; ')})`);
      else removed.push('drain');
    }
    if (r.containerId && (await engine.removeContainer(r.containerId, { force: true }))) removed.push(`container ${r.containerId.slice(0, 12)}`);
    for (const v of r.createdVolumes) if (await engine.removeVolume(v)) removed.push(`volume ${v}`);
    await rm(r.stageDir, { recursive: true, force: true });
    this.held.delete(id);
    db.updateMigration(id, 'destination', { state: 'aborted', error: reason });
    return removed;
  }

  private async endDrain(id: string): Promise<string[]> {
    const d = this.drains.get(id);
    if (!d) return [];
    this.drains.delete(id);
    clearTimeout(d.timer);
    return d.drain.close();
  }

  /** The new instance is the service now: what was made here stays. */
  private async finishSwitch(id: string, r: Recreating, answer: RecreateSwitchResponse): Promise<RecreateSwitchResponse> {
    const { db } = this.deps;
    await rm(r.stageDir, { recursive: true, force: true });
    this.held.delete(id);
    this.switched.set(id, r);
    setTimeout(() => this.switched.delete(id), DRAIN_LIMIT_MS).unref();
    db.updateMigration(id, 'destination', { state: 'done' });
    if (r.req.container.serviceAddress) db.clearMovedAddress(r.req.container.serviceAddress);
    db.recordEvent('service.recreated', {
      container: r.req.container.name,
      from: r.req.from,
      address: r.req.container.serviceAddress,
      containerId: r.containerId,
    });
    return answer;
  }

  // One step at a time per handoff; the flag is cleared whatever the step's outcome.
  private async step<T>(id: string, fn: (r: Recreating) => Promise<T>): Promise<T> {
    const r = this.held.get(id);
    if (!r) throw new NotFoundError('incoming recreate', id);
    if (r.busy) throw new ConflictError(`recreate ${id} is busy with another step`);
    r.busy = true;
    try {
      return await fn(r);
    } finally {
      r.busy = false;
    }
  }
}
