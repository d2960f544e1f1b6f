// The OpenAPI document against the real server: every route that buildServer registers is
// described (and nothing else), the routes marked public in the document are exactly those
// that answer without a token, and the document validates (swagger-parser).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import SwaggerParser from '@apidevtools/swagger-parser';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/daemon/server.js';
import { openApiPath, registeredRoutes, type RegisteredRoute } from '../../src/daemon/openapi.js';
import type { MigrationReport, RoundReport } from '../../src/migration/types.js';
import type { NodeInfo } from '../../src/daemon/context.js';
import type { CloudletView } from '../../src/daemon/routes-dashboard.js';
import type * as Web from '../../web/src/types.js';
import { makeFixture } from './daemon-fixtures.js';

// Compile-time: the dashboard's own copies of the API's shapes still fit the daemon's types.
export const webTypesFit = {
  report: (r: MigrationReport): Web.MigrationReport => r,
  round: (r: RoundReport): Web.RoundReport => r,
  info: (i: NodeInfo): Web.NodeInfo => i,
  cloudlet: (c: CloudletView): Web.CloudletView => c,
};

type Doc = { paths: Record<string, Record<string, { security?: unknown[] }>> } & Record<string, unknown>;
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'];

async function setup(t: { after(fn: () => unknown): void }) {
  const fx = makeFixture({ peers: [{ name: 'beta', url: 'http://127.0.0.1:1' }] });
  const app = buildServer({ config: fx.config, logger: false });
  t.after(async () => {
    await app.close();
    fx.cleanup();
  });
  await app.ready();
  const res = await app.inject({ method: 'GET', url: '/v1/openapi.json' });
  assert.equal(res.statusCode, 200, 'the document is public');
  return { app, doc: res.json() as Doc, routes: registeredRoutes(app) };
}

/** Routes of the server the document does not describe. */
function undescribed(routes: RegisteredRoute[], doc: Doc): string[] {
  return routes.filter((r) => !doc.paths[openApiPath(r.url)]?.[r.method.toLowerCase()]).map((r) => `${r.method} ${r.url}`);
}

/** Operations of the document that no route serves. */
function stale(routes: RegisteredRoute[], doc: Doc): string[] {
  const served = new Set(routes.map((r) => `${r.method.toLowerCase()} ${openApiPath(r.url)}`));
  return Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.keys(ops)
      .filter((m) => METHODS.includes(m) && !served.has(`${m} ${path}`))
      .map((m) => `${m.toUpperCase()} ${path}`),
  );
}

test('every registered route is described and every described route exists', async (t) => {
  const { doc, routes } = await setup(t);
  // The collection itself works (an empty list would make the comparison vacuous).
  for (const expected of ['GET /healthz', 'POST /v1/migrations', 'GET /v1/migrations/:id/events', 'PUT /v1/incoming/:id/rounds/:k', 'GET /dashboard/']) {
    assert.ok(
      routes.some((r) => `${r.method} ${r.url}` === expected),
      `route ${expected} collected`,
    );
  }
  assert.deepEqual(undescribed(routes, doc), [], 'routes missing from the OpenAPI document');
  assert.deepEqual(stale(routes, doc), [], 'documented operations that no route serves');

  // The check does catch a missing description and a stale one.
  const broken = structuredClone(doc);
  delete broken.paths['/v1/migrations/{id}'];
  broken.paths['/v1/gone'] = { get: {} };
  assert.deepEqual(undescribed(routes, broken), ['GET /v1/migrations/:id']);
  assert.deepEqual(stale(routes, broken), ['GET /v1/gone']);
});

test('the document validates as OpenAPI 3 (swagger-parser), and a broken one does not', async (t) => {
  const { doc } = await setup(t);
  assert.match(String(doc.openapi), /^3\./);
  // validate() dereferences in place: give it copies.
  await SwaggerParser.validate(structuredClone(doc) as never);

  const noResponses = structuredClone(doc);
  delete (noResponses.paths['/v1/info']!.get as Record<string, unknown>).responses;
  await assert.rejects(SwaggerParser.validate(noResponses as never), /responses/);
  const danglingRef = structuredClone(doc) as unknown as { components: { schemas: Record<string, unknown> } };
  delete danglingRef.components.schemas.RoundReport;
  await assert.rejects(SwaggerParser.validate(danglingRef as never), /RoundReport/);
});

/** A concrete URL for a route template (path parameters filled in). */
const concrete = (url: string) => url.replace(/:[A-Za-z0-9_]+/g, 'x');

async function answersWithoutToken(app: FastifyInstance, r: RegisteredRoute): Promise<number> {
  const res = await app.inject({ method: r.method as 'GET', url: concrete(r.url) });
  return res.statusCode;
}

test('operations marked public (security: []) are exactly the routes that need no token', async (t) => {
  const { app, doc, routes } = await setup(t);
  const publicRoutes: string[] = [];
  for (const r of routes) {
    const op = doc.paths[openApiPath(r.url)]![r.method.toLowerCase()]!;
    const isPublic = Array.isArray(op.security) && op.security.length === 0;
    const status = await answersWithoutToken(app, r);
    if (isPublic) {
      publicRoutes.push(`${r.method} ${r.url}`);
      assert.notEqual(status, 401, `${r.method} ${r.url} is documented public but answered 401`);
    } else {
      assert.equal(status, 401, `${r.method} ${r.url} is documented as needing the token but answered ${status} without it`);
    }
  }
  assert.deepEqual(publicRoutes.sort(), ['GET /', 'GET /dashboard', 'GET /dashboard/', 'GET /dashboard/:file', 'GET /healthz', 'GET /v1/openapi.json']);
});
