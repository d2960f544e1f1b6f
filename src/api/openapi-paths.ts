// The paths of the OpenAPI document (see openapi.ts). One entry per route of the daemon's
// server.ts and routes-*.ts; test/unit/openapi.test.ts fails when a route is missing here or
// an entry names a route that no longer exists. Bodies are the zod schemas of ./schemas.
import type { ZodTypeAny } from 'zod';
import { OkSchema, OpenObjectSchema } from './schemas/common.js';
import { CloudletViewSchema, ContainerSummarySchema, HealthzSchema, NodeInfoSchema, PeerStatusSchema } from './schemas/node.js';
import {
  AddressTakenSchema,
  IncomingStatusSchema,
  MigrationPlanSchema,
  MigrationReportSchema,
  PrepareCheckSchema,
  PrepareAnswerSchema,
  PrepareRequestSchema,
  RoundResponseSchema,
  StartMigrationSchema,
} from './schemas/migrations.js';
import {
  ImageLoadSchema,
  LayersAnswerSchema,
  LayersQuerySchema,
  OverlayDeletedSchema,
  OverlaySchema,
  ServiceReplySchema,
  ServiceRequestSchema,
  SynthesisSchema,
} from './schemas/overlays.js';

type Op = Record<string, unknown>;
/** A zod schema as an OpenAPI schema object (a $ref for a named one). */
export type JsonSchemaOf = (schema: ZodTypeAny) => Record<string, unknown>;

const json = (schema: unknown) => ({ 'application/json': { schema } });
const ok = (description: string, schema: unknown, status = '200') => ({ [status]: { description, content: json(schema) } });
const errors = (...codes: string[]) =>
  Object.fromEntries(codes.map((c) => [c, c === '401' ? { $ref: '#/components/responses/Unauthorized' } : { $ref: '#/components/responses/Error' }]));
const pathParam = (name: string, description: string) => ({ name, in: 'path', required: true, description, schema: { type: 'string' } });
const queryParam = (name: string, description: string, schema: unknown = { type: 'string' }) => ({ name, in: 'query', required: false, description, schema });
const binaryBody = (type: string, description: string) => ({
  required: true,
  description,
  content: { [type]: { schema: { type: 'string', format: 'binary' } } },
});
const PUBLIC = { security: [] as unknown[] };

function op(tag: string, summary: string, responses: Record<string, unknown>, extra: Op = {}): Op {
  return { tags: [tag], summary, ...extra, responses: { ...responses, ...errors('401') } };
}

type Paths = Record<string, Record<string, Op>>;

/** What the sections share: the schemas as OpenAPI schema objects, and the path parameters used more than once. */
interface PathContext {
  ref: (schema: ZodTypeAny) => Record<string, unknown>;
  arrayOf: (schema: ZodTypeAny) => Record<string, unknown>;
  migrationId: Op;
  overlayId: Op;
  cloudletName: Op;
}

export function openApiPaths(schemaOf: JsonSchemaOf): Record<string, Record<string, Op>> {
  const c: PathContext = {
    ref: (schema: ZodTypeAny) => schemaOf(schema),
    arrayOf: (schema: ZodTypeAny) => ({ type: 'array', items: schemaOf(schema) }),
    migrationId: pathParam('id', 'migration id (m-...)'),
    overlayId: pathParam('id', 'overlay id: 12 hex digits'),
    cloudletName: pathParam('name', 'this cloudlet or one of its peers'),
  };
  return {
    ...nodePaths(c),
    ...migrationPaths(c),
    ...peerPaths(c),
    ...recreatePaths(c),
    ...overlayPaths(c),
    ...dashboardPaths(c),
  };
}

/** The node's own routes (server.ts). */
function nodePaths(c: PathContext): Paths {
  const { ref, arrayOf } = c;
  return {
    '/healthz': {
      get: {
        tags: ['node'],
        summary: 'liveness (public)',
        ...PUBLIC,
        responses: ok('alive', ref(HealthzSchema)),
      },
    },
    '/metrics': {
      get: op('node', 'Prometheus metrics', { '200': { description: 'text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } }),
    },
    '/v1/info': { get: op('node', 'this cloudlet: versions of the engine and CRIU, checkpoint capability, peers', ok('node info', ref(NodeInfoSchema))) },
    '/v1/containers': {
      get: op(
        'node',
        'containers of this cloudlet',
        { ...ok('containers', arrayOf(ContainerSummarySchema)), ...errors('400', '503') },
        {
          parameters: [queryParam('all', 'include stopped containers', { type: 'boolean', default: false })],
        },
      ),
    },
    '/v1/peers': { get: op('node', 'health of the peers (their /v1/info, timed)', ok('peers', arrayOf(PeerStatusSchema))) },
    '/v1/openapi.json': {
      get: {
        tags: ['node'],
        summary: 'this document (public)',
        ...PUBLIC,
        responses: ok('OpenAPI 3 document', ref(OpenObjectSchema)),
      },
    },
  };
}

/** Migrations started on this cloudlet (routes-migrations.ts). */
function migrationPaths(c: PathContext): Paths {
  const { ref, arrayOf, migrationId } = c;
  return {
    '/v1/migrations': {
      post: op(
        'migrations',
        'start a live migration of a container of this cloudlet to a peer',
        {
          ...ok('finished (with ?wait=1): the final report', ref(MigrationReportSchema)),
          ...ok('started: the initial report, with the id', ref(MigrationReportSchema), '202'),
          ...errors('400', '404', '409'),
        },
        {
          parameters: [queryParam('wait', '1 or true: answer with the final report when the migration ends')],
          requestBody: { required: true, content: json(ref(StartMigrationSchema)) },
        },
      ),
      get: op('migrations', 'migrations started on this cloudlet', ok('reports', arrayOf(MigrationReportSchema))),
    },
    '/v1/migrations/plan': {
      post: op(
        'migrations',
        'a dry run: what a migration of the container would do and every reason it would be refused before the freeze; nothing is started',
        { ...ok('the plan', ref(MigrationPlanSchema)), ...errors('400', '404', '409') },
        { requestBody: { required: true, content: json(ref(StartMigrationSchema)) } },
      ),
    },
    '/v1/migrations/{id}': {
      get: op(
        'migrations',
        'one migration: its report (live while it runs)',
        { ...ok('report', ref(MigrationReportSchema)), ...errors('404') },
        { parameters: [migrationId] },
      ),
    },
    '/v1/migrations/{id}/events': {
      get: {
        tags: ['migrations'],
        summary: 'live progress as server-sent events: `event: report` with the report at every update, `event: end` after the last',
        description:
          'The token may be passed as `?token=` on this route only (EventSource sends no headers). The first ' +
          'event is the current report; the stream ends after the report of a finished migration.',
        security: [{ bearer: [] }, { queryToken: [] }],
        parameters: [migrationId],
        responses: {
          '200': { description: 'event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
          ...errors('401', '404', '503'),
        },
      },
    },
  };
}

/** A migration's destination side, called by its source (routes-migrations.ts). */
function peerPaths(c: PathContext): Paths {
  const { ref, migrationId } = c;
  return {
    '/v1/incoming': {
      post: op(
        'peers',
        'prepare an incoming migration: container policy, image, volumes, twin container (not started)',
        { ...ok('twin', ref(PrepareAnswerSchema)), ...errors('400', '403', '409') },
        {
          requestBody: { required: true, content: json(ref(PrepareRequestSchema)) },
        },
      ),
    },
    '/v1/incoming/check': {
      post: op(
        'peers',
        "a source's dry run: what a prepare would find here (policy, engine, image, names); nothing is made",
        { ...ok('the check', ref(PrepareCheckSchema)), ...errors('400') },
        { requestBody: { required: true, content: json(ref(PrepareRequestSchema)) } },
      ),
    },
    '/v1/incoming/{id}/rounds/{k}': {
      put: op(
        'peers',
        "one round's framed stream (memory delta, images, filesystem batches); the final one restores",
        { ...ok('applied', ref(RoundResponseSchema)), ...errors('400', '404') },
        {
          parameters: [
            migrationId,
            pathParam('k', 'round number, from 1'),
            queryParam('final', '1: the final round (restore the twin)'),
            queryParam('inject', 'test hook (allowFaultInjection only)'),
            queryParam('restore', 'eager: no lazy restore for this final round'),
          ],
          requestBody: binaryBody('application/octet-stream', 'framed stream (src/transfer/frames.ts)'),
        },
      ),
    },
    '/v1/incoming/{id}/address': {
      post: op(
        'peers',
        "before the source's freeze: hold the service address's packets here (until the restore) and route the address here",
        { ...ok('held and routed', ref(AddressTakenSchema)), ...errors('400', '404', '409') },
        { parameters: [migrationId] },
      ),
    },
    '/v1/incoming/{id}/commit': {
      post: op(
        'peers',
        'the source removed its copy: drop the staging data',
        { ...ok('committed', ref(OkSchema)), ...errors('404') },
        { parameters: [migrationId] },
      ),
    },
    '/v1/incoming/{id}': {
      get: op(
        'peers',
        'where an incoming migration stands here (journal state, twin running): a restarted source asks before it commits or rolls back',
        { ...ok('status', ref(IncomingStatusSchema)), ...errors('404') },
        { parameters: [migrationId] },
      ),
      delete: op(
        'peers',
        'abort: remove the twin, its volumes and the staging data',
        { ...ok('aborted', ref(OpenObjectSchema)), ...errors('404') },
        {
          parameters: [migrationId],
        },
      ),
    },
  };
}

/** A recreate handoff's destination side (routes-recreate.ts). */
function recreatePaths(c: PathContext): Paths {
  const { ref, migrationId } = c;
  return {
    '/v1/recreate': {
      post: op(
        'peers',
        'prepare a handoff by re-creation: image here, name free, named volumes created',
        { ...ok('prepared', ref(OpenObjectSchema)), ...errors('400', '403', '409') },
        {
          requestBody: { required: true, content: json(ref(OpenObjectSchema)) },
        },
      ),
    },
    '/v1/recreate/{id}/volumes': {
      put: op(
        'peers',
        "the named volumes' rsync batches (framed stream)",
        { ...ok('applied', ref(OpenObjectSchema)), ...errors('400', '404') },
        {
          parameters: [migrationId],
          requestBody: binaryBody('application/octet-stream', 'framed stream of fs/vol/NAME artifacts'),
        },
      ),
    },
    '/v1/recreate/{id}/start': {
      post: op(
        'peers',
        'create and start the new instance, wait until its health check passes',
        { ...ok('healthy', ref(OpenObjectSchema)), ...errors('404', '409', '502', '504') },
        {
          parameters: [migrationId],
        },
      ),
    },
    '/v1/recreate/{id}/switch': {
      post: op(
        'peers',
        "drain the old instance's connections back to the source, route the service address here: the new instance serves",
        { ...ok('switched', ref(OpenObjectSchema)), ...errors('404', '409') },
        {
          parameters: [migrationId],
        },
      ),
    },
    '/v1/recreate/{id}/drained': {
      post: op(
        'peers',
        'the old instance is done: remove the drain of its connections',
        { ...ok('removed', ref(OkSchema)), ...errors('404') },
        {
          parameters: [migrationId],
        },
      ),
    },
    '/v1/recreate/{id}': {
      delete: op(
        'peers',
        'abort: remove the new instance and the volumes made here',
        { ...ok('aborted', ref(OpenObjectSchema)), ...errors('404') },
        {
          parameters: [migrationId],
        },
      ),
    },
  };
}

/** Overlays, first-request provisioning and images (routes-overlays.ts). */
function overlayPaths(c: PathContext): Paths {
  const { ref, arrayOf, overlayId } = c;
  return {
    '/v1/overlays': {
      put: op(
        'overlays',
        'upload an overlay file (verified whole before it is kept)',
        { ...ok('kept', ref(OverlaySchema), '201'), ...errors('400', '409', '413') },
        {
          requestBody: binaryBody('application/vnd.cloudlet.overlay', 'an overlay file (cloudlet overlay create)'),
        },
      ),
      post: op(
        'overlays',
        'upload an overlay file (same as PUT)',
        { ...ok('kept', ref(OverlaySchema), '201'), ...errors('400', '409', '413') },
        {
          requestBody: binaryBody('application/vnd.cloudlet.overlay', 'an overlay file (cloudlet overlay create)'),
        },
      ),
      get: op('overlays', 'the overlays this cloudlet holds', ok('catalog', arrayOf(OverlaySchema))),
    },
    '/v1/overlays/{id}': {
      get: op('overlays', 'one overlay with its header', { ...ok('overlay', ref(OverlaySchema)), ...errors('404') }, { parameters: [overlayId] }),
      delete: op(
        'overlays',
        'forget an overlay (file and catalog row)',
        { ...ok('deleted', ref(OverlayDeletedSchema)), ...errors('404', '409') },
        {
          parameters: [overlayId],
        },
      ),
    },
    '/v1/overlays/{id}/synthesize': {
      post: op(
        'overlays',
        'make the app image now (no-op when present)',
        { ...ok('synthesis', ref(SynthesisSchema)), ...errors('404') },
        { parameters: [overlayId] },
      ),
    },
    '/v1/services': {
      post: op(
        'overlays',
        'first-request provisioning: synthesize if needed, create and start the container',
        { ...ok('running', ref(ServiceReplySchema), '201'), ...errors('400', '404', '409') },
        {
          requestBody: { required: true, content: json(ref(ServiceRequestSchema)) },
        },
      ),
    },
    '/v1/images/layers': {
      post: op(
        'overlays',
        'which layers of an image this cloudlet holds (and its best base)',
        { ...ok('layers', ref(LayersAnswerSchema)), ...errors('400') },
        {
          requestBody: { required: true, content: json(ref(LayersQuerySchema)) },
        },
      ),
    },
    '/v1/images': {
      put: op(
        'overlays',
        'load a whole `docker save` archive (gzip allowed)',
        { ...ok('loaded', ref(ImageLoadSchema)), ...errors('400', '413') },
        {
          requestBody: binaryBody('application/x-tar', 'docker save archive (application/gzip also accepted)'),
        },
      ),
    },
  };
}

/** The dashboard and its views across cloudlets (routes-dashboard.ts). */
function dashboardPaths(c: PathContext): Paths {
  const { arrayOf, cloudletName } = c;
  return {
    '/': { get: { tags: ['dashboard'], summary: 'redirects to the dashboard (public)', ...PUBLIC, responses: { '302': { description: 'to /dashboard/' } } } },
    '/dashboard': {
      get: { tags: ['dashboard'], summary: 'redirects to /dashboard/ (public)', ...PUBLIC, responses: { '302': { description: 'to /dashboard/' } } },
    },
    '/dashboard/': {
      get: {
        tags: ['dashboard'],
        summary: 'the dashboard page (public; its API calls need the token)',
        ...PUBLIC,
        responses: { '200': { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } }, ...errors('503') },
      },
    },
    '/dashboard/{file}': {
      get: {
        tags: ['dashboard'],
        summary: "the dashboard's script modules and style sheet (public)",
        ...PUBLIC,
        parameters: [pathParam('file', 'e.g. app.js, style.css')],
        responses: {
          '200': { description: 'asset', content: { 'text/javascript': { schema: { type: 'string' } }, 'text/css': { schema: { type: 'string' } } } },
          ...errors('404', '503'),
        },
      },
    },
    '/v1/cloudlets': {
      get: op(
        'dashboard',
        'every cloudlet of the deployment with its own /v1/info (peers asked by this cloudlet)',
        ok('cloudlets', arrayOf(CloudletViewSchema)),
      ),
    },
    '/v1/cloudlets/{name}/containers': {
      get: op(
        'dashboard',
        "a cloudlet's containers (a peer's are fetched by this cloudlet)",
        { ...ok('containers', arrayOf(ContainerSummarySchema)), ...errors('404', '502', '503') },
        {
          parameters: [cloudletName, queryParam('all', 'include stopped containers', { type: 'boolean', default: false })],
        },
      ),
    },
    '/v1/cloudlets/{name}/overlays': {
      get: op(
        'dashboard',
        "a cloudlet's overlays (a peer's are fetched by this cloudlet)",
        { ...ok('catalog', arrayOf(OverlaySchema)), ...errors('404', '502') },
        {
          parameters: [cloudletName],
        },
      ),
    },
  };
}
