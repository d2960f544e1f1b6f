// The OpenAPI 3 document of cloudletd's HTTP API, generated: the component schemas from the
// zod schemas of ./schemas (the ones the routes validate with and the types are inferred
// from), the paths from ./openapi-paths.ts, which names those schemas. The daemon serves it
// at GET /v1/openapi.json (src/daemon/openapi.ts); test/unit/api-drift.test.ts checks that
// what it serves is what this module generates.
import { OpenApiGeneratorV3 } from '@asteasolutions/zod-to-openapi';
import type { ZodTypeAny } from 'zod';
import { openApiPaths, type JsonSchemaOf } from './openapi-paths.js';
import { ApiErrorSchema, OkSchema } from './schemas/common.js';
import { CloudletViewSchema, ContainerSummarySchema, NodeInfoSchema, PeerStatusSchema } from './schemas/node.js';
import {
  MigrationPlanSchema,
  MigrationReportSchema,
  PrepareCheckSchema,
  PrepareRequestSchema,
  RefusalSchema,
  RoundReportSchema,
  RoundResponseSchema,
  StartMigrationSchema,
} from './schemas/migrations.js';
import {
  ImageLoadSchema,
  LayersAnswerSchema,
  LayersQuerySchema,
  OverlaySchema,
  ServiceReplySchema,
  ServiceRequestSchema,
  SynthesisSchema,
} from './schemas/overlays.js';

type Json = Record<string, unknown>;

/** The named schemas: each becomes components.schemas[its .openapi() name]. */
export const COMPONENT_SCHEMAS: readonly ZodTypeAny[] = [
  ApiErrorSchema,
  OkSchema,
  NodeInfoSchema,
  PeerStatusSchema,
  CloudletViewSchema,
  ContainerSummarySchema,
  StartMigrationSchema,
  RoundReportSchema,
  MigrationReportSchema,
  MigrationPlanSchema,
  RefusalSchema,
  PrepareRequestSchema,
  PrepareCheckSchema,
  RoundResponseSchema,
  OverlaySchema,
  SynthesisSchema,
  ServiceRequestSchema,
  ServiceReplySchema,
  LayersQuerySchema,
  LayersAnswerSchema,
  ImageLoadSchema,
];

/** The component name a schema was given with .openapi('Name'), if any. */
export function componentName(schema: ZodTypeAny): string | undefined {
  const meta = (schema._def as { openapi?: { _internal?: { refId?: string } } }).openapi;
  return meta?._internal?.refId;
}

/**
 * A zod schema as an OpenAPI schema: a $ref for a named one, else its JSON form (named
 * schemas inside it become $refs to the components).
 */
export const jsonSchemaOf: JsonSchemaOf = (schema) => {
  const name = componentName(schema);
  if (name) return { $ref: `#/components/schemas/${name}` };
  // The generator only emits components: give the inline schema a name of its own for the
  // moment, then take it out.
  const probe = '__inline';
  const generated = new OpenApiGeneratorV3([schema.openapi(probe)]).generateComponents();
  return (generated.components?.schemas?.[probe] ?? {}) as Json;
};

export function openApiComponentSchemas(): Record<string, Json> {
  const generated = new OpenApiGeneratorV3([...COMPONENT_SCHEMAS]).generateComponents();
  return (generated.components?.schemas ?? {}) as Record<string, Json>;
}

export function openApiDocument(version: string): Json {
  return {
    openapi: '3.0.3',
    info: {
      title: 'cloudletd',
      version,
      description:
        'HTTP API of a cloudlet: the node, its containers, overlays, live migrations (operators) and the ' +
        'incoming side of migrations (peers). Every route needs `Authorization: Bearer TOKEN` (the ' +
        'deployment token) except those marked `security: []`. The events route of a migration also ' +
        'accepts the token as `?token=` because a browser EventSource cannot send headers. Errors are ' +
        'JSON: `{error, message, hint?, context?}`.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    tags: [
      { name: 'node', description: 'this cloudlet and its peers' },
      { name: 'migrations', description: 'live migrations started here' },
      { name: 'peers', description: 'called by another cloudlet during a migration' },
      { name: 'overlays', description: 'overlays, services provisioned from them, image layers' },
      { name: 'dashboard', description: 'the web dashboard (static, public) and its views' },
    ],
    paths: openApiPaths(jsonSchemaOf),
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'the deployment token' },
        queryToken: {
          type: 'apiKey',
          in: 'query',
          name: 'token',
          description: 'the deployment token as a query parameter: ONLY on GET /v1/migrations/{id}/events',
        },
      },
      schemas: openApiComponentSchemas(),
      responses: {
        Error: { description: 'a typed error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
        Unauthorized: {
          description: 'missing or invalid token',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
    },
  };
}
