import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildServer } from '../../src/daemon/server.js';
import { makeFixture } from './daemon-fixtures.js';

function setup(t: { after(fn: () => unknown): void }) {
  const fx = makeFixture({ peers: [{ name: 'beta', url: 'http://127.0.0.1:1' }] });
  const app = buildServer({ config: fx.config, logger: false });
  t.after(async () => {
    await app.close();
    fx.cleanup();
  });
  const auth = { authorization: `Bearer ${fx.config.token}` };
  return { fx, app, auth };
}

test('/healthz needs no token', async (t) => {
  const { app } = setup(t);
  const res = await app.inject({ method: 'GET', url: '/healthz' });
  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.json(), { ok: true, node: 'alpha' });
});

test('protected routes answer 401 JSON without a token and with a wrong one', async (t) => {
  const { app, fx } = setup(t);
  const none = await app.inject({ method: 'GET', url: '/v1/info' });
  assert.equal(none.statusCode, 401);
  assert.equal(none.json().error, 'unauthorized');
  assert.match(none.json().message, /missing bearer token/);

  const wrongSameLength = 'x'.repeat(fx.config.token.length);
  for (const token of [wrongSameLength, 'short', fx.config.token + 'x']) {
    const res = await app.inject({ method: 'GET', url: '/v1/info', headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.statusCode, 401, `token ${token}`);
    assert.equal(res.json().error, 'unauthorized');
    assert.match(res.json().message, /invalid bearer token/);
  }
  // A non-Bearer scheme carrying the right secret is still refused.
  const basic = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Basic ${fx.config.token}` } });
  assert.equal(basic.statusCode, 401);
});

test('/v1/info reports an unreachable engine instead of failing', async (t) => {
  const { app, auth, fx } = setup(t);
  const res = await app.inject({ method: 'GET', url: '/v1/info', headers: auth });
  assert.equal(res.statusCode, 200);
  const body = res.json();
  assert.equal(body.node, 'alpha');
  assert.match(body.version, /^\d+\.\d+\.\d+/);
  assert.equal(body.engine.reachable, false);
  assert.equal(body.engine.socket, fx.config.dockerSocket);
  assert.ok(body.engine.error.includes(fx.config.dockerSocket), body.engine.error);
  assert.equal(body.capabilities.checkpoint, false);
  assert.ok(body.capabilities.checkpointBlockers.includes('engine unreachable'));
  assert.ok('version' in body.criu);
  assert.deepEqual(body.peers, ['beta']);
});

test('/v1/containers answers 503 with a message naming the socket', async (t) => {
  const { app, auth, fx } = setup(t);
  const res = await app.inject({ method: 'GET', url: '/v1/containers', headers: auth });
  assert.equal(res.statusCode, 503);
  const body = res.json();
  assert.equal(body.error, 'engine_unavailable');
  assert.ok(body.message.includes(fx.config.dockerSocket), body.message);
  assert.equal(body.context.socketPath, fx.config.dockerSocket);
});

test('query parameters are validated by schema', async (t) => {
  const { app, auth } = setup(t);
  const bad = await app.inject({ method: 'GET', url: '/v1/containers?all=maybe', headers: auth });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error, 'usage');
  assert.match(bad.json().message, /all/);
  const extra = await app.inject({ method: 'GET', url: '/v1/containers?bogus=1', headers: auth });
  assert.equal(extra.statusCode, 400);
});

test('unknown routes answer 404 JSON (after authentication)', async (t) => {
  const { app, auth } = setup(t);
  const res = await app.inject({ method: 'GET', url: '/v1/nope?x=1', headers: auth });
  assert.equal(res.statusCode, 404);
  assert.deepEqual(res.json(), { error: 'not_found', message: 'no route GET /v1/nope' });
  const anon = await app.inject({ method: 'GET', url: '/v1/nope' });
  assert.equal(anon.statusCode, 401);
});

test('/metrics exposes cloudlet_up and counts requests by route and status', async (t) => {
  const { app, auth } = setup(t);
  for (let i = 0; i < 3; i++) await app.inject({ method: 'GET', url: '/healthz' });
  await app.inject({ method: 'GET', url: '/v1/info' }); // 401
  await app.inject({ method: 'GET', url: '/v1/containers', headers: auth }); // 503
  const res = await app.inject({ method: 'GET', url: '/metrics', headers: auth });
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'] as string, /^text\/plain/);
  const text = res.body;
  assert.match(text, /^cloudlet_up\{node="alpha"\} 1$/m);
  assert.match(text, /^cloudlet_http_requests_total\{method="GET",route="\/healthz",status="200"\} 3$/m);
  assert.match(text, /^cloudlet_http_requests_total\{method="GET",route="\/v1\/info",status="401"\} 1$/m);
  assert.match(text, /^cloudlet_http_requests_total\{method="GET",route="\/v1\/containers",status="503"\} 1$/m);
  assert.match(text, /^cloudlet_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} 3$/m);
  assert.match(text, /^process_cpu_user_seconds_total /m, 'default metrics are registered');
});

test('two servers in one process keep separate metrics', async (t) => {
  const a = setup(t);
  const b = setup(t);
  await a.app.inject({ method: 'GET', url: '/healthz' });
  const res = await b.app.inject({ method: 'GET', url: '/metrics', headers: b.auth });
  assert.doesNotMatch(res.body, /route="\/healthz"/);
});
