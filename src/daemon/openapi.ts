// GET /v1/openapi.json: the OpenAPI 3 description of cloudletd's HTTP API, and the list of
// routes the server actually registered (collected with Fastify's onRoute hook), so that a
// test can check that the two agree: every route described, no description of a route that
// is gone. The document is public, like /healthz: it describes the API, it grants nothing.
//
// The document itself is generated from the API's zod schemas (src/api/openapi.ts); the
// routes validate their bodies with the same schemas (typed errors with the field names).
import type { FastifyInstance } from 'fastify';
import { openApiDocument } from '../api/openapi.js';

export { openApiDocument };

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
