// The API's contract has one source, the zod schemas of src/api/schemas: what is derived from
// them must not drift. The committed web/src/types.ts is what `npm run gen:api` writes, and the
// OpenAPI document the daemon serves is what src/api/openapi.ts generates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { renderWebTypes } from '../../src/api/web-types.js';
import { openApiDocument } from '../../src/api/openapi.js';
import type { MigrationReportBody, RoundReportBody } from '../../src/api/schemas/migrations.js';
import type { NodeInfo as NodeInfoBody, PeerStatus as PeerStatusBody } from '../../src/api/schemas/node.js';
import type { MigrationReport, RoundReport } from '../../src/migration/types.js';
import type { NodeInfo, PeerStatus } from '../../src/daemon/context.js';
import { buildServer } from '../../src/daemon/server.js';
import { makeFixture } from './daemon-fixtures.js';

// Compile-time: the reports the code fills in fit the schemas that describe them on the wire.
export const reportsFitSchemas = {
  report: (r: MigrationReport): MigrationReportBody => r,
  round: (r: RoundReport): RoundReportBody => r,
  info: (i: NodeInfo): NodeInfoBody => i,
  peer: (p: PeerStatus): PeerStatusBody => p,
};

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

test('web/src/types.ts is what the generator writes (run `npm run gen:api` after changing src/api/schemas)', () => {
  const committed = readFileSync(`${repoRoot}web/src/types.ts`, 'utf8');
  assert.equal(committed, renderWebTypes());
});

test('the OpenAPI document the daemon serves is the generated one', async (t) => {
  const fx = makeFixture({ peers: [] });
  const app = buildServer({ config: fx.config, logger: false });
  t.after(async () => {
    await app.close();
    fx.cleanup();
  });
  await app.ready();
  const res = await app.inject({ method: 'GET', url: '/v1/openapi.json' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), openApiDocument(app.cloudlet.version));
});

test('the generated document names the schemas the routes validate with', () => {
  const doc = openApiDocument('test') as { components: { schemas: Record<string, { properties?: Record<string, unknown> }> } };
  const start = doc.components.schemas.StartMigration!;
  assert.ok(start.properties?.container && start.properties.strategy, "StartMigration has the route schema's fields");
  assert.ok(doc.components.schemas.MigrationReport?.properties?.rounds, 'MigrationReport is generated');
});
