// Migration routes of cloudletd.
//   Operators: POST /v1/migrations (start; ?wait=1 answers with the final report), POST
//              /v1/migrations/plan (a dry run),
//              GET /v1/migrations, GET /v1/migrations/:id.
//   Peers:     POST /v1/incoming (prepare), PUT /v1/incoming/:id/rounds/:k (a round's
//              framed stream), POST /v1/incoming/:id/address (hold the service address's
//              packets here and route it here, before the freeze), POST
//              /v1/incoming/:id/commit, DELETE /v1/incoming/:id (abort).
import { createPageCache } from '../migration/page-cache.js';
import { leftOverHolds, removeLeftOverHold } from '../network/packet-hold.js';
import { leftOverGateRoutes, removeLeftOverGateRoute } from '../network/syn-gate.js';
import { SpareHolder } from '../network/netns-holder.js';
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { engineRuncRoot } from '../engine/runc.js';
import { z } from 'zod';
import { UsageError, kindToHttpStatus } from '../util/errors.js';
import { MigrationDestination, type PrepareRequest } from '../migration/destination.js';
import { MigrationSource } from '../migration/source.js';
import { receiveRound } from '../migration/round-transport.js';
import { CheckpointRestores } from '../migration/checkpoint-restores.js';
import type { Policy } from '../migration/decision.js';
import { FAULT_POINTS, type FaultPoint, type MigrationRequest } from '../migration/types.js';
import { StartMigrationSchema, type StartMigration, type StartMigrationOptions } from '../api/schemas/migrations.js';
import type { DaemonContext } from './context.js';
import { migrationEvents } from './events.js';
import { peerConnector } from './peers.js';
import { consumeRequestBody, roundDrainBounds } from './drain-request.js';

export type StartMigrationBody = StartMigration;

/** Turns the API's options into one decision policy; contradictory options are refused. */
/** The model rule's downtime target when the request states no --max-downtime (a target, not a bound). */
export const DEFAULT_MAX_DOWNTIME_MS = 1000;

export function policyFromOptions(o: StartMigrationOptions): Policy {
  const rule = o.rule ?? (o.rounds !== undefined ? 'rounds' : o.alpha !== undefined ? 'alpha' : 'model');
  if (o.rounds !== undefined && rule !== 'rounds') throw new UsageError('--rounds cannot be combined with another stop rule');
  if (o.alpha !== undefined && rule !== 'alpha') throw new UsageError('--alpha cannot be combined with another stop rule');
  if (o.maxTotalMs !== undefined && rule !== 'model') throw new UsageError('--max-total applies to the model rule only');
  switch (rule) {
    case 'rounds':
      if (o.rounds === undefined) throw new UsageError('rule "rounds" needs --rounds N');
      return { kind: 'rounds', rounds: o.rounds };
    case 'alpha':
      return { kind: 'alpha', alphaSeconds: o.alpha ?? 1, maxRounds: o.maxRounds };
    case 'phaul':
      return { kind: 'phaul' };
    case 'lxd':
      return { kind: 'lxd' };
    case 'model':
      return {
        kind: 'model',
        maxDowntimeMs: o.maxDowntimeMs ?? DEFAULT_MAX_DOWNTIME_MS,
        ...(o.maxDowntimeMs !== undefined ? { downtimeIsBound: true } : {}),
        maxRounds: o.maxRounds,
        maxTimeMs: o.maxTimeMs,
        ...(o.maxTotalMs !== undefined ? { maxTotalMs: o.maxTotalMs } : {}),
        ...(o.force ? { force: true } : {}),
      };
  }
}

function parseBody<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, body: unknown, what: string): T {
  const r = schema.safeParse(body ?? {});
  if (!r.success) {
    throw new UsageError(`invalid ${what}: ${r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`);
  }
  return r.data;
}

/** Both sides of a handoff on this daemon, sharing its engine's restores. */
function handoffSides(
  app: FastifyInstance,
  ctx: DaemonContext,
): { source: MigrationSource; destination: MigrationDestination; spareHolder: SpareHolder | null } {
  const { config } = ctx;
  // One engine, two sides restoring on it: the twin here, a rolled-back source container.
  const restores = new CheckpointRestores();
  const scratchDir = config.scratchDir ?? join(config.dataDir, 'scratch');
  const criuConfigFile = config.criuConfigFile ?? config.lazyRestore?.criuConfigFile ?? null;
  const pageCache = config.pageCache ? createPageCache({ ...config.pageCache, dir: config.pageCache.dir ?? join(scratchDir, 'page-cache') }) : null;
  const source = new MigrationSource({
    node: config.node,
    engine: ctx.engine,
    db: ctx.db,
    events: migrationEvents,
    runcRoot: engineRuncRoot(config.dockerExecRoot),
    execRoot: config.dockerExecRoot,
    dataRoot: config.dockerDataRoot,
    xdgRuntimeDir: config.dockerXdgRuntimeDir,
    scratchDir,
    pageCache,
    peers: config.peers,
    connectPeer: peerConnector(config.token),
    serviceNetwork: ctx.serviceNetwork,
    lazyRestore: config.lazyRestore,
    criuConfigFile,
    restores,
  });
  const spareHolder = config.netnsSpare ? new SpareHolder(ctx.engine, config.netnsSpare) : null;
  const destination = new MigrationDestination({
    engine: ctx.engine,
    db: ctx.db,
    dataRoot: config.dockerDataRoot,
    execRoot: config.dockerExecRoot,
    xdgRuntimeDir: config.dockerXdgRuntimeDir,
    scratchDir,
    pageCache,
    serviceNetwork: ctx.serviceNetwork,
    lazyRestore: config.lazyRestore,
    criuConfigFile,
    restores,
    spareHolder,
    log: (msg) => app.log.warn(msg),
    containerPolicy: config.containerPolicy,
    node: config.node,
  });
  return { source, destination, spareHolder };
}

export function registerMigrationRoutes(app: FastifyInstance, ctx: DaemonContext): { source: MigrationSource; destination: MigrationDestination } {
  const { config } = ctx;
  const { source, destination, spareHolder } = handoffSides(app, ctx);

  // What a previous run of this daemon left in flight is settled before requests are served.
  app.addHook('onReady', async () => {
    // The route of a source's gate on new connections (network/syn-gate.ts), left by a daemon
    // that died mid-handoff, goes first: a recovery that routes the address back here would
    // otherwise send its packets in a loop to the default gateway.
    const gateNotes: string[] = [];
    if (config.serviceNetwork) {
      for (const dst of await leftOverGateRoutes()) {
        await removeLeftOverGateRoute(dst);
        gateNotes.push(`removed the left-over route of ${dst} to the default gateway (gate on new connections)`);
      }
    }
    // The destination side first: a source's recovery asks its peers about their twins.
    const notes = [...gateNotes, ...(await destination.recoverAfterRestart()), ...(await source.recoverAfterRestart())];
    // Holds of service addresses left by a daemon that died (a destination's, or a source's
    // SYN hold): their keeper died with it (the kernel drops the queue's packets) and the
    // handoffs they were kept for are settled now.
    if (config.serviceNetwork) {
      for (const h of await leftOverHolds()) {
        await removeLeftOverHold(h);
        notes.push(`removed the left-over hold of ${h.address} (queue ${h.queue})`);
      }
    }
    for (const n of notes) app.log.warn({ recovery: n }, 'recovered after restart');
    // In the background: the API serves meanwhile, and a handoff starts a holder itself without it.
    spareHolder?.refill((msg) => app.log.warn(msg));
  });

  // Round bodies are framed binary streams, consumed by the route itself (not buffered).
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  /** A start request as the source reads it (the same for a start and its dry run). */
  const migrationRequest = (body: unknown): MigrationRequest => {
    const o = parseBody(StartMigrationSchema, body, 'migration request');
    if (o.inject && !config.allowFaultInjection) throw new UsageError('fault injection is not enabled on this cloudlet');
    return {
      container: o.container,
      to: o.to,
      policy: policyFromOptions(o),
      codec: o.codec,
      precopy: o.precopy,
      ...(o.inject ? { inject: o.inject } : {}),
      ...(o.peerTimeoutMs ? { peerTimeoutMs: o.peerTimeoutMs } : {}),
      ...(o.strategy ? { strategy: o.strategy } : {}),
      ...(o.restore ? { restore: o.restore } : {}),
      pageCache: o.pageCache,
      ...(o.tcpClose ? { tcpClose: true } : {}),
    };
  };

  app.post<{ Querystring: { wait?: string } }>('/v1/migrations', async (req, reply) => {
    const started = await source.start(migrationRequest(req.body));
    if (req.query.wait === '1' || req.query.wait === 'true') return reply.status(200).send(await source.wait(started.id));
    return reply.status(202).send(started);
  });

  // A dry run: what the handoff would do and every reason it would be refused, nothing started.
  app.post('/v1/migrations/plan', async (req) => source.plan(migrationRequest(req.body)));

  app.get('/v1/migrations', async () => source.list());

  app.get<{ Params: { id: string } }>('/v1/migrations/:id', async (req, reply) => {
    const r = source.get(req.params.id);
    if (!r) return reply.status(kindToHttpStatus('not-found')).send({ error: 'not_found', message: `migration '${req.params.id}' not found` });
    return r;
  });

  registerIncomingRoutes(app, ctx, destination);
  return { source, destination };
}

/** The peers' side: what a source asks of this daemon as the destination of its handoff. */
function registerIncomingRoutes(app: FastifyInstance, ctx: DaemonContext, destination: MigrationDestination): void {
  const { config } = ctx;
  app.post('/v1/incoming', async (req) => destination.prepare(req.body as PrepareRequest));

  // A source's dry run: what a prepare would find here; nothing is made or journalled.
  app.post('/v1/incoming/check', async (req) => destination.check(req.body as PrepareRequest));

  app.get<{ Params: { id: string } }>('/v1/incoming/:id', async (req) => destination.status(req.params.id));

  app.put<{ Params: { id: string; k: string }; Querystring: { final?: string; inject?: string; restore?: string } }>(
    '/v1/incoming/:id/rounds/:k',
    async (req) => {
      const k = Number(req.params.k);
      if (!Number.isInteger(k) || k < 1) throw new UsageError(`invalid round number '${req.params.k}'`);
      const inject = req.query.inject as FaultPoint | undefined;
      if (inject !== undefined && (!config.allowFaultInjection || !FAULT_POINTS.includes(inject))) {
        throw new UsageError(`fault injection '${inject}' is not enabled on this cloudlet`);
      }
      if (req.query.restore !== undefined && req.query.restore !== 'eager' && req.query.restore !== 'lazy') {
        throw new UsageError(`invalid restore mode '${req.query.restore}' (lazy or eager)`);
      }
      // The source must read why its round failed, not a reset (drain-request.ts).
      return consumeRequestBody(req.body, roundDrainBounds(config.limits), (chunks) =>
        destination.round(req.params.id, {
          index: k,
          final: req.query.final === '1',
          artifacts: receiveRound(chunks, config.limits),
          inject,
          eagerRestore: req.query.restore === 'eager',
        }),
      );
    },
  );

  app.post<{ Params: { id: string } }>('/v1/incoming/:id/address', async (req) => destination.takeAddress(req.params.id));

  app.post<{ Params: { id: string } }>('/v1/incoming/:id/commit', async (req) => {
    await destination.commit(req.params.id);
    return { ok: true };
  });

  app.delete<{ Params: { id: string } }>('/v1/incoming/:id', async (req) => destination.abort(req.params.id, 'aborted by the source'));
}
