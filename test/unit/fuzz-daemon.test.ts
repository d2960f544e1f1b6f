// Fuzz of cloudletd's request parsing: 10,000 generated and mutated requests injected into
// the real Fastify app from server.ts (all routes registered, the real DockerEngine on a
// socket that does not exist). Seeds are the bodies the real clients send: the CLI's
// migration start (StartMigrationBody), the source's prepare (PrepareRequest), the CLI's
// service start (ServiceRequest) and the source's layer query (LayersQuery); ids and names
// in URLs are mutated too. Every request must be answered with JSON: a 2xx, or an error
// with its code - never 'internal' (an exception that is not a typed CloudletError).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildServer } from '../../src/daemon/server.js';
import type { StartMigrationBody } from '../../src/daemon/routes-migrations.js';
import type { ServiceRequest } from '../../src/daemon/routes-overlays.js';
import type { PrepareRequest } from '../../src/migration/destination.js';
import type { LayersQuery } from '../../src/migration/image-ship.js';
import { FUZZ_CASES, FUZZ_SEED, describe, mutate, mutateJson, prng, runFuzz, type Rnd } from './fuzz-kit.js';
import { makeFixture } from './daemon-fixtures.js';

const digest = (c: string) => `sha256:${c.repeat(64)}`;

const start: StartMigrationBody[] = [
  { container: 'web', to: 'beta' },
  { container: 'counter', to: 'beta', rounds: 2, codec: 'zstd', maxDowntimeMs: 500 },
  { container: 'web', to: 'beta', rule: 'phaul', precopy: 'dump', maxRounds: 4, maxTimeMs: 60_000 },
  { container: 'web', to: 'beta', alpha: 1.5 },
];
const prepare: PrepareRequest[] = [
  {
    id: 'm20261128-0a1b2c3d',
    from: 'beta',
    container: {
      name: 'web',
      imageId: digest('a'),
      imageName: 'cloudlet/node:20',
      spec: { env: ['PORT=8080'], binds: [{ source: 'web-data', target: '/data' }], network: { mode: 'none' } },
      volumes: ['web-data'],
    } as PrepareRequest['container'],
  },
];
const service: ServiceRequest[] = [
  { overlay: '0123456789ab', name: 'web', env: ['K=V'], port: 8080 },
  { overlay: 'abcdef012345', cmd: ['node', 'server.js'] },
];
const layers: LayersQuery[] = [{ imageId: digest('b'), diffIds: [digest('c'), digest('d')] }];

const bodies: { method: 'POST'; url: string; seeds: unknown[] }[] = [
  { method: 'POST', url: '/v1/migrations', seeds: start },
  { method: 'POST', url: '/v1/incoming', seeds: prepare },
  { method: 'POST', url: '/v1/services', seeds: service },
  { method: 'POST', url: '/v1/images/layers', seeds: layers },
];

/** Routes with an id or name in the URL, and the ids as the real system makes them. */
const paths: { method: 'GET' | 'POST' | 'DELETE' | 'PUT'; url: (id: string) => string; id: string }[] = [
  { method: 'GET', url: (id) => `/v1/migrations/${id}`, id: 'm20261128-0a1b2c3d' },
  { method: 'GET', url: (id) => `/v1/overlays/${id}`, id: '0123456789ab' },
  { method: 'DELETE', url: (id) => `/v1/overlays/${id}`, id: '0123456789ab' },
  { method: 'POST', url: (id) => `/v1/overlays/${id}/synthesize`, id: '0123456789ab' },
  { method: 'POST', url: (id) => `/v1/incoming/${id}/commit`, id: 'm20261128-0a1b2c3d' },
  { method: 'DELETE', url: (id) => `/v1/incoming/${id}`, id: 'm20261128-0a1b2c3d' },
  { method: 'GET', url: (id) => `/v1/incoming/${id}`, id: 'm20261128-0a1b2c3d' },
  { method: 'PUT', url: (id) => `/v1/incoming/${id}/rounds/1?final=0`, id: 'm20261128-0a1b2c3d' },
  { method: 'GET', url: (id) => `/v1/containers?all=${id}`, id: 'true' },
  { method: 'GET', url: (id) => `/v1/cloudlets/${id}/containers`, id: 'alpha' },
];

function mutateId(id: string, rnd: Rnd): string {
  const pool = ['..', '../../etc/passwd', '%2e%2e%2f', '%00', '\u00e9', 'A'.repeat(300), ' ', '%', '?x=1', '#', '0', '-1', 'x'.repeat(5000)];
  switch (rnd(4)) {
    case 0:
      return id.slice(0, rnd(id.length + 1));
    case 1:
      return id + pool[rnd(pool.length)]!;
    case 2:
      return encodeURIComponent(pool[rnd(pool.length)]!);
    default: {
      const b = Buffer.from(id);
      b[rnd(b.length)] = 0x20 + rnd(0x5f);
      return encodeURIComponent(b.toString('latin1'));
    }
  }
}

interface Req {
  method: 'GET' | 'POST' | 'DELETE' | 'PUT';
  url: string;
  type: string;
  payload?: Buffer;
}

test(`daemon requests: ${FUZZ_CASES} generated and mutated requests -> JSON answers, never 'internal'`, { timeout: 180_000 }, async (t) => {
  const fx = makeFixture({ peers: [{ name: 'beta', url: 'http://127.0.0.1:1' }] });
  const app = buildServer({ config: fx.config, logger: false });
  t.after(async () => {
    await app.close();
    fx.cleanup();
  });
  await app.ready();
  const auth = `Bearer ${fx.config.token}`;
  const rnd = prng(FUZZ_SEED + 6);
  let req: Req = { method: 'GET', url: '/healthz', type: 'application/json' };
  const statuses: Record<string, number> = {};
  const stats = await runFuzz({
    name: 'daemon requests',
    cases: FUZZ_CASES,
    seed: FUZZ_SEED + 6,
    gen: () => {
      const kind = rnd(10);
      if (kind < 7) {
        const route = bodies[rnd(bodies.length)]!;
        const seed = route.seeds[rnd(route.seeds.length)];
        let payload: Buffer;
        let what: string;
        if (kind < 4) {
          // Structural: a few JSON mutations in a row.
          let v = seed;
          const steps: string[] = [];
          for (let n = 1 + rnd(3); n > 0; n--) {
            const m = mutateJson(v, rnd);
            v = m.value;
            steps.push(m.what);
          }
          payload = Buffer.from(JSON.stringify(v) ?? 'null');
          what = `json ${steps.join(', ')}`;
        } else {
          const m = mutate(Buffer.from(JSON.stringify(seed)), rnd);
          payload = m.buf;
          what = `bytes ${m.what}`;
        }
        const type = rnd(20) === 0 ? ['text/plain', 'application/json; charset=latin1', 'application/x-www-form-urlencoded'][rnd(3)]! : 'application/json';
        req = { method: route.method, url: route.url, type, payload };
        return { input: payload, what: `${route.method} ${route.url} (${type}) ${what}` };
      }
      const p = paths[rnd(paths.length)]!;
      const id = mutateId(p.id, rnd);
      req = { method: p.method, url: p.url(id), type: 'application/json', ...(p.method === 'POST' ? { payload: Buffer.from('{}') } : {}) };
      return { input: Buffer.from(req.url), what: `${p.method} ${req.url}` };
    },
    parse: async () => {
      const res = await app.inject({
        method: req.method,
        url: req.url,
        headers: { authorization: auth, ...(req.payload ? { 'content-type': req.type } : {}) },
        ...(req.payload ? { payload: req.payload } : {}),
      });
      let body: { error?: unknown };
      try {
        body = res.json();
      } catch {
        throw new Error(`answer ${res.statusCode} is not JSON: ${res.body.slice(0, 200)}`);
      }
      const code = res.statusCode >= 400 ? String(body.error) : 'ok';
      if (code === 'internal' || code === 'undefined') throw new Error(`untyped failure ${res.statusCode}: ${res.body.slice(0, 500)}`);
      const key = `${res.statusCode} ${code}`;
      statuses[key] = (statuses[key] ?? 0) + 1;
    },
  });
  // Typed refusals are answers, not exceptions here: the outcomes are the status and error code.
  t.diagnostic(describe('daemon requests', { ...stats, outcomes: statuses }, FUZZ_SEED + 6));
  assert.ok(stats.maxCaseMs < 2000, `slowest case ${stats.maxCaseMs} ms`);
  // The health check still answers: nothing above broke the app.
  assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  assert.ok((statuses['400 usage'] ?? 0) > FUZZ_CASES / 10, JSON.stringify(statuses));
});

test('ids and names from requests are validated before use (cases the fuzz found or the audit named)', async (t) => {
  const fx = makeFixture({ peers: [{ name: 'beta', url: 'http://127.0.0.1:1' }] });
  const app = buildServer({ config: fx.config, logger: false });
  t.after(async () => {
    await app.close();
    fx.cleanup();
  });
  const post = (url: string, body: unknown) =>
    app.inject({
      method: 'POST',
      url,
      headers: { authorization: `Bearer ${fx.config.token}`, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
  // A prepare without its container was a TypeError (500 'internal') before it was validated.
  const cases: [string, unknown, RegExp][] = [
    ['/v1/incoming', { id: 'm20261128-0a1b2c3d', from: 'beta' }, /container: Required/],
    ['/v1/incoming', [], /\(body\)/],
    ['/v1/incoming', { ...prepare[0], id: '../../x' }, /id: a migration id/],
    ['/v1/incoming', { ...prepare[0], container: { ...prepare[0]!.container, name: 'web/../kill?signal=9' } }, /container\.name: a container name/],
    ['/v1/incoming', { ...prepare[0], container: { ...prepare[0]!.container, volumes: ['ok', '../etc'] } }, /container\.volumes\.1: a volume name/],
    // dockerode puts the container into API paths unescaped: '/' and '?' must not pass.
    ['/v1/migrations', { container: '../images/x?force=1', to: 'beta' }, /container: a container name or id/],
  ];
  for (const [url, body, re] of cases) {
    const res = await post(url, body);
    assert.equal(res.statusCode, 400, `${url} ${JSON.stringify(body)}: ${res.body}`);
    assert.equal(res.json().error, 'usage');
    assert.match(res.json().message, re);
  }
});
