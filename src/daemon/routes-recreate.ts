// Destination side of a handoff by re-creation: HTTP glue over migration/recreate-destination.ts.
// Peers only:
//   POST   /v1/recreate               prepare: image here? name free? create the named volumes
//   PUT    /v1/recreate/:id/volumes   the volumes' rsync batches (a framed stream, as a round)
//   POST   /v1/recreate/:id/start     create + start the new instance, wait for its health check
//   POST   /v1/recreate/:id/switch    drain, then announce the service address here
//   POST   /v1/recreate/:id/drained   the old instance is done: remove the drain
//   DELETE /v1/recreate/:id           abort: remove the new instance and the volumes made here
import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { receiveRound } from '../migration/round-transport.js';
import { RecreateDestination } from '../migration/recreate-destination.js';
import type { RecreateStartResponse, RecreateSwitchResponse } from '../migration/recreate.js';
import type { DaemonContext } from './context.js';
import { consumeRequestBody, roundDrainBounds } from './drain-request.js';

export function registerRecreateRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const { config } = ctx;
  const recreate = new RecreateDestination({
    node: config.node,
    engine: ctx.engine,
    db: ctx.db,
    stageRoot: join(config.scratchDir ?? join(config.dataDir, 'scratch'), 'recreate-in'),
    serviceNetwork: ctx.serviceNetwork,
    peers: config.peers,
    warn: (data, msg) => app.log.warn(data, msg),
    containerPolicy: config.containerPolicy,
  });

  app.post('/v1/recreate', async (req) => recreate.prepare(req.body));

  app.put<{ Params: { id: string } }>('/v1/recreate/:id/volumes', async (req) =>
    consumeRequestBody(req.body, roundDrainBounds(config.limits), (chunks) => recreate.receiveVolumes(req.params.id, receiveRound(chunks, config.limits))),
  );

  app.post<{ Params: { id: string } }>('/v1/recreate/:id/start', async (req): Promise<RecreateStartResponse> => recreate.start(req.params.id));

  app.post<{ Params: { id: string } }>('/v1/recreate/:id/switch', async (req): Promise<RecreateSwitchResponse> => recreate.switch(req.params.id));

  app.post<{ Params: { id: string } }>('/v1/recreate/:id/drained', async (req) => recreate.drained(req.params.id));

  app.delete<{ Params: { id: string } }>('/v1/recreate/:id', async (req) => ({ removed: await recreate.abort(req.params.id, 'aborted by the source') }));
}
