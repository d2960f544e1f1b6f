// Destination side of a handoff by re-creation (see migration/recreate.ts). Peers only:
//   POST   /v1/recreate               prepare: image here? name free? create the named volumes
//   PUT    /v1/recreate/:id/volumes   the volumes' rsync batches (a framed stream, as a round)
//   POST   /v1/recreate/:id/start     create + start the new instance (same name, config, labels,
//                                    pinned service address), wait for its own health check
//   POST   /v1/recreate/:id/switch    drain (connections opened at the source go back there, see
//                                    recreate-drain.ts), then announce the service address here:
//                                    the new instance serves
//   POST   /v1/recreate/:id/drained   the old instance is done: remove the drain
//   DELETE /v1/recreate/:id           abort: remove the new instance and the volumes made here
// The health check runs from this cloudletd, which lives in the cloudlet's network namespace
// and reaches the service network's bridge directly - before the address is routed here.
import type { FastifyInstance } from 'fastify';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import http from 'node:http';
import net, { isIPv4 } from 'node:net';
import { z } from 'zod';
import { CloudletError, ConflictError, NotFoundError, UsageError, errorMessage } from '../util/errors.js';
import { twinImageRef, type ContainerCreateOptions, type DockerEngine } from '../engine/docker.js';
import { applyBatch } from '../fssync/index.js';
import { receiveRound } from '../migration/round-transport.js';
import { handoffIdentityFields, incomingContainerSchema } from '../migration/destination.js';
import {
  formatHealth,
  healthSchema,
  type HealthCheck,
  type RecreatePrepareRequest,
  type RecreateStartResponse,
  type RecreateSwitchResponse,
} from '../migration/recreate.js';
import { openDestinationDrain, type Drain } from '../migration/recreate-drain.js';
import type { DaemonContext } from './context.js';

const prepareSchema = z
  .object({
    ...handoffIdentityFields,
    container: incomingContainerSchema
      .extend({ serviceAddress: z.string().refine((a) => isIPv4(a), 'an IPv4 address').nullable() })
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

const PROBE_TIMEOUT_MS = 1000;
const PROBE_INTERVAL_MS = 100;
/** A drain the source never ends (it died) is removed after this long. */
const DRAIN_LIMIT_MS = 60_000;

/** One health probe: an HTTP 2xx answer, or a TCP connect. Resolves with why it failed, or null. */
export function probeOnce(address: string, h: HealthCheck, timeoutMs = PROBE_TIMEOUT_MS): Promise<string | null> {
  return new Promise((resolve) => {
    if ('http' in h) {
      const req = http.get({ host: address, port: h.http.port, path: h.http.path, timeout: timeoutMs, agent: false }, (res) => {
        res.resume();
        const ok = (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300;
        resolve(ok ? null : `HTTP ${res.statusCode}`);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err) => resolve(errorMessage(err)));
    } else {
      const s = net.connect({ host: address, port: h.tcp.port, timeout: timeoutMs });
      s.once('connect', () => {
        s.destroy();
        resolve(null);
      });
      s.once('timeout', () => s.destroy(new Error(`no connection within ${timeoutMs} ms`)));
      s.once('error', (err) => resolve(errorMessage(err)));
    }
  });
}

/** Polls the health check until it passes; fails when the container stops or time runs out. */
export async function waitHealthy(
  engine: DockerEngine,
  containerId: string,
  address: string,
  h: HealthCheck,
  timeoutMs: number,
): Promise<{ ms: number; checks: number }> {
  const t0 = performance.now();
  let checks = 0;
  let last = 'not probed';
  for (;;) {
    checks++;
    const why = await probeOnce(address, h);
    if (why === null) return { ms: performance.now() - t0, checks };
    last = why;
    if (!(await engine.inspectContainer(containerId)).running) {
      throw new CloudletError('health_check_failed', `the new instance stopped before its health check ${formatHealth(h)} passed (last probe: ${last})`, {
        httpStatus: 502,
        context: { containerId, checks },
        hint: `see its logs: docker logs ${containerId.slice(0, 12)} on the destination`,
      });
    }
    if (performance.now() - t0 > timeoutMs) {
      throw new CloudletError('health_check_failed', `the new instance did not pass its health check ${formatHealth(h)} at ${address} within ${timeoutMs} ms (${checks} probes; last: ${last})`, {
        httpStatus: 504,
        context: { containerId, checks },
      });
    }
    await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS));
  }
}

export function registerRecreateRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const { config, engine, db } = ctx;
  const scratch = join(config.scratchDir ?? join(config.dataDir, 'scratch'), 'recreate-in');
  const held = new Map<string, Recreating>();
  // Switched handoffs stay known for a while: a source that never got the switch's answer
  // routes the address back to itself and aborts, and the new instance must go then.
  const switched = new Map<string, Recreating>();
  const drains = new Map<string, { drain: Drain; timer: NodeJS.Timeout }>();
  const endDrain = async (id: string): Promise<string[]> => {
    const d = drains.get(id);
    if (!d) return [];
    drains.delete(id);
    clearTimeout(d.timer);
    return d.drain.close();
  };

  /** The new instance is the service now: what was made here stays. */
  const finishSwitch = async (id: string, r: Recreating, announceMs: number, drained: boolean): Promise<RecreateSwitchResponse> => {
    await rm(r.stageDir, { recursive: true, force: true });
    held.delete(id);
    switched.set(id, r);
    setTimeout(() => switched.delete(id), DRAIN_LIMIT_MS).unref();
    db.updateMigration(id, 'destination', { state: 'done' });
    if (r.req.container.serviceAddress) db.clearMovedAddress(r.req.container.serviceAddress);
    db.recordEvent('service.recreated', { container: r.req.container.name, from: r.req.from, address: r.req.container.serviceAddress, containerId: r.containerId });
    return { announceMs, drained };
  };

  const get = (id: string): Recreating => {
    const r = held.get(id);
    if (!r) throw new NotFoundError('incoming recreate', id);
    if (r.busy) throw new ConflictError(`recreate ${id} is busy with another step`);
    return r;
  };
  // One step at a time per handoff; the flag is cleared whatever the step's outcome.
  const step = async <T>(id: string, fn: (r: Recreating) => Promise<T>): Promise<T> => {
    const r = get(id);
    r.busy = true;
    try {
      return await fn(r);
    } finally {
      r.busy = false;
    }
  };

  const abort = async (id: string, reason: string): Promise<string[]> => {
    const r = held.get(id) ?? switched.get(id);
    if (!r) return [];
    const removed: string[] = [];
    if (switched.delete(id)) {
      const failed = await endDrain(id);
      if (failed.length) removed.push(`drain (partly: ${failed.join('; ')})`);
      else removed.push('drain');
    }
    if (r.containerId && (await engine.removeContainer(r.containerId, { force: true }))) removed.push(`container ${r.containerId.slice(0, 12)}`);
    for (const v of r.createdVolumes) if (await engine.removeVolume(v)) removed.push(`volume ${v}`);
    await rm(r.stageDir, { recursive: true, force: true });
    held.delete(id);
    db.updateMigration(id, 'destination', { state: 'aborted', error: reason });
    return removed;
  };

  app.post('/v1/recreate', async (req) => {
    const parsed = prepareSchema.safeParse(req.body ?? {});
    if (!parsed.success) {
      throw new UsageError(`invalid recreate request: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`);
    }
    const body = parsed.data as RecreatePrepareRequest;
    const c = body.container;
    if (held.has(body.id)) throw new ConflictError(`recreate ${body.id} is already prepared here`);
    if (!(await engine.imageExists(c.imageId))) {
      throw new CloudletError('image_missing', `image ${c.imageName} (${c.imageId.slice(0, 19)}) is not on this cloudlet`, { httpStatus: 409 });
    }
    if (await engine.containerExists(c.name)) throw new ConflictError(`a container named '${c.name}' already exists on ${config.node}`);
    if (c.serviceAddress !== null && !ctx.serviceNetwork) {
      throw new ConflictError(`the service has address ${c.serviceAddress}, but ${config.node} has no service network`);
    }
    db.insertMigration({ id: body.id, role: 'destination', container: c.name, fromNode: body.from, toNode: '', state: 'preparing', options: { strategy: 'recreate' } });
    const r: Recreating = { req: body, stageDir: join(scratch, body.id), volumes: new Map(), createdVolumes: [], containerId: null, busy: false };
    held.set(body.id, r);
    try {
      await mkdir(r.stageDir, { recursive: true });
      for (const v of c.volumes) {
        if (await engine.volumeExists(v)) throw new ConflictError(`a volume named '${v}' already exists on ${config.node}`);
        await engine.createVolume(v);
        r.createdVolumes.push(v);
        r.volumes.set(v, await engine.volumeMountpoint(v));
      }
      db.updateMigration(body.id, 'destination', { state: 'prepared' });
      return { ok: true, volumes: c.volumes };
    } catch (err) {
      await abort(body.id, errorMessage(err));
      throw err;
    }
  });

  app.put<{ Params: { id: string } }>('/v1/recreate/:id/volumes', async (req) =>
    step(req.params.id, async (r) => {
      let ms = 0;
      for await (const a of receiveRound(req.body as NodeJS.ReadableStream as AsyncIterable<Buffer>, config.limits)) {
        const vol = a.name.startsWith('fs/vol/') ? a.name.slice('fs/vol/'.length) : '';
        const target = r.volumes.get(vol);
        if (!target) throw new UsageError(`volume batch for unknown volume '${a.name}'`);
        const batch = join(r.stageDir, `${vol}.batch`);
        await writeFile(batch, a.data);
        ms += (await applyBatch(batch, target)).ms;
        await rm(batch, { force: true });
      }
      return { ok: true, applyMs: ms };
    }),
  );

  app.post<{ Params: { id: string } }>('/v1/recreate/:id/start', async (req): Promise<RecreateStartResponse> =>
    step(req.params.id, async (r) => {
      if (r.containerId) throw new ConflictError(`recreate ${req.params.id}: the new instance is already started`);
      // As a migration's twin: by the source's image name, tagged here if the image came by id only.
      const Image = await twinImageRef(engine, r.req.container.imageId, r.req.container.imageName);
      const t0 = performance.now();
      r.containerId = await engine.createContainer({ ...(r.req.container.createOptions as ContainerCreateOptions), Image });
      db.updateMigration(req.params.id, 'destination', { state: 'restoring', report: { twinId: r.containerId } });
      const t1 = performance.now();
      await engine.startContainer(r.containerId);
      const t2 = performance.now();
      const address = r.req.container.serviceAddress ?? (await engine.containerNetwork(r.containerId)).ip;
      if (!address) throw new CloudletError('no_address', 'the new instance has no address to check its health at', { httpStatus: 409 });
      const healthy = await waitHealthy(engine, r.containerId, address, r.req.health, r.req.healthTimeoutMs);
      return { containerId: r.containerId, createMs: t1 - t0, startMs: t2 - t1, healthyMs: healthy.ms, healthChecks: healthy.checks };
    }),
  );

  app.post<{ Params: { id: string } }>('/v1/recreate/:id/switch', async (req): Promise<RecreateSwitchResponse> =>
    step(req.params.id, async (r) => {
      if (!r.containerId) throw new ConflictError(`recreate ${req.params.id}: no new instance started yet`);
      const address = r.req.container.serviceAddress;
      if (!address || !ctx.serviceNetwork) return finishSwitch(req.params.id, r, 0, false);
      const peer = config.peers.find((p) => p.name === r.req.from);
      if (!peer) throw new ConflictError(`${r.req.from} is not a peer of ${config.node}: no drain link to it`);
      const drain = await openDestinationDrain(req.params.id, address, new URL(peer.url).hostname);
      let announceMs: number;
      try {
        announceMs = await ctx.serviceNetwork.announce(address);
      } catch (err) {
        const failed = await drain.close();
        if (failed.length) req.log.warn({ failed }, 'drain clean-up after a failed announce');
        throw err;
      }
      const timer = setTimeout(() => {
        void endDrain(req.params.id).then((failed) => failed.length && app.log.warn({ failed }, 'drain clean-up'));
      }, DRAIN_LIMIT_MS);
      timer.unref();
      drains.set(req.params.id, { drain, timer });
      return finishSwitch(req.params.id, r, announceMs, true);
    }),
  );

  app.post<{ Params: { id: string } }>('/v1/recreate/:id/drained', async (req) => {
    const d = drains.get(req.params.id);
    if (!d) throw new NotFoundError('drain', req.params.id);
    const connections = await d.drain.connections();
    switched.delete(req.params.id); // committed: an abort can no longer take the service away
    const failed = await endDrain(req.params.id);
    if (failed.length) throw new CloudletError('drain_cleanup_failed', `removing the drain failed: ${failed.join('; ')}`);
    return { ok: true, connections };
  });

  app.delete<{ Params: { id: string } }>('/v1/recreate/:id', async (req) => ({ removed: await abort(req.params.id, 'aborted by the source') }));
}
