// GET /v1/openapi.json: the OpenAPI 3 description of cloudletd's HTTP API, and the list of
// routes the server actually registered (collected with Fastify's onRoute hook), so that a
// test can check that the two agree: every route described, no description of a route that
// is gone. The document is public, like /healthz: it describes the API, it grants nothing.
//
// The document is written out here rather than generated from route schemas because most
// routes validate their bodies with zod (typed errors with the field names), not with
// Fastify's JSON schemas.
import type { FastifyInstance } from 'fastify';
import { openApiPaths } from './openapi-paths.js';
import { openApiSchemas } from './openapi-schemas.js';

export interface RegisteredRoute {
  method: string;
  /** Fastify's form: /v1/migrations/:id */
  url: string;
}

const registered = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/**
 * Registers GET /v1/openapi.json and starts collecting the routes registered after this call
 * (call it before any other route). HEAD routes are left out: Fastify adds one for every GET.
 */
export function registerOpenApiRoute(app: FastifyInstance): void {
  const routes: RegisteredRoute[] = [];
  registered.set(app, routes);
  app.addHook('onRoute', (opts) => {
    const methods = Array.isArray(opts.method) ? opts.method : [opts.method];
    for (const m of methods) if (m !== 'HEAD') routes.push({ method: m, url: opts.url });
  });
  app.get('/v1/openapi.json', { config: { public: true } }, async () => openApiDocument(app.cloudlet.version));
}

/** The routes this app registered since registerOpenApiRoute (empty if it was never called). */
export function registeredRoutes(app: FastifyInstance): RegisteredRoute[] {
  return [...(registered.get(app) ?? [])];
}

/** Fastify's "/v1/migrations/:id" -> OpenAPI's "/v1/migrations/{id}". */
export function openApiPath(fastifyUrl: string): string {
  return fastifyUrl.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

export function openApiDocument(version: string): Record<string, unknown> {
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
    paths: openApiPaths(),
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
      schemas: openApiSchemas(),
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
