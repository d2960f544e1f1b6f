// The dashboard's routes on a real server (no engine): the public page and its scripts, the
// token in the query accepted on the events route only, live progress as server-sent
// events driven by the same emitter the migration source publishes to, and the views
// across cloudlets with a dead peer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildServer } from '../../src/daemon/server.js';
import { migrationEvents } from '../../src/daemon/events.js';
import { redactUrlToken } from '../../src/daemon/auth.js';
import { newReport, type MigrationReport } from '../../src/migration/types.js';
import { makeFixture } from './daemon-fixtures.js';

function setup(t: { after(fn: () => unknown): void }) {
  const fx = makeFixture({ peers: [{ name: 'beta', url: 'http://127.0.0.1:1' }] });
  const app = buildServer({ config: fx.config, logger: false });
  t.after(async () => {
    await app.close();
    fx.cleanup();
  });
  return { fx, app, auth: { authorization: `Bearer ${fx.config.token}` } };
}

function report(id: string, patch: Partial<MigrationReport> = {}): MigrationReport {
  const base = newReport({
    id,
    container: 'web',
    from: 'alpha',
    to: 'beta',
    policy: 'model',
    codec: 'auto',
    serviceAddress: null,
    strategy: 'migrate',
    strategyReason: 'test',
  });
  return { ...base, state: 'precopy', ...patch };
}

test('the page and its scripts are public, with a strict content security policy', async (t) => {
  const { app } = setup(t);
  const root = await app.inject({ method: 'GET', url: '/' });
  assert.equal(root.statusCode, 302);
  assert.equal(root.headers.location, '/dashboard/');
  const page = await app.inject({ method: 'GET', url: '/dashboard/' });
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-type']), /text\/html/);
  assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
  assert.match(page.body, /<script type="module" src="app.js"><\/script>/);
  assert.doesNotMatch(page.body, /https?:\/\/(?!www\.w3\.org)/, 'no external resource');
  const js = await app.inject({ method: 'GET', url: '/dashboard/app.js' });
  assert.equal(js.statusCode, 200, 'dist/web/app.js is built by `npm run build` / tsconfig.web.json');
  assert.match(String(js.headers['content-type']), /text\/javascript/);
  const css = await app.inject({ method: 'GET', url: '/dashboard/style.css' });
  assert.equal(css.statusCode, 200);
  for (const bad of ['/dashboard/..%2Fpackage.json', '/dashboard/index.html', '/dashboard/nope.js']) {
    assert.equal((await app.inject({ method: 'GET', url: bad })).statusCode, 404, bad);
  }
});

test('the token as a query parameter counts on the events route only', async (t) => {
  const { app, fx } = setup(t);
  const tok = encodeURIComponent(fx.config.token);
  assert.equal((await app.inject({ method: 'GET', url: `/v1/info?token=${tok}` })).statusCode, 401);
  assert.equal((await app.inject({ method: 'GET', url: `/v1/migrations?token=${tok}` })).statusCode, 401);
  assert.equal((await app.inject({ method: 'GET', url: '/v1/migrations/m-x/events' })).statusCode, 401);
  const wrong = await app.inject({ method: 'GET', url: `/v1/migrations/m-x/events?token=${'x'.repeat(fx.config.token.length)}` });
  assert.equal(wrong.statusCode, 401);
  assert.match(wrong.json().message, /invalid token/);
  // Right token, unknown migration: past authentication.
  assert.equal((await app.inject({ method: 'GET', url: `/v1/migrations/m-x/events?token=${tok}` })).statusCode, 404);
  assert.equal(redactUrlToken(`/v1/migrations/m-x/events?a=1&token=${tok}&b=2`), '/v1/migrations/m-x/events?a=1&token=REDACTED&b=2');
});

/** Reads server-sent events from a fetch body until `until` says stop or the stream ends. */
async function readEvents(body: ReadableStream<Uint8Array>, onEvent: (ev: { event: string; data: unknown }) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let cut: number;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7);
      const data = lines.find((l) => l.startsWith('data: '))?.slice(6);
      if (event && data) onEvent({ event, data: JSON.parse(data) });
    }
  }
}

test('live progress: the current report first, every published update, then the end', async (t) => {
  const { app, fx } = setup(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const id = 'm-test-events';
  const db = app.cloudlet.db;
  db.insertMigration({ id, role: 'source', container: 'web', fromNode: 'alpha', toNode: 'beta', state: 'precopy', options: {} });
  db.updateMigration(id, 'source', { report: report(id) as unknown as Record<string, unknown> });

  const address = app.server.address() as { port: number };
  const res = await fetch(`http://127.0.0.1:${address.port}/v1/migrations/${id}/events?token=${encodeURIComponent(fx.config.token)}`, {
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 200);
  assert.match(String(res.headers.get('content-type')), /text\/event-stream/);
  const seen: { event: string; state: string; rounds: number }[] = [];
  const round = { index: 1, final: false, dumpMs: 5, stallMs: 0, hashMs: 1, sentBytes: 10 } as never;
  await readEvents(res.body!, ({ event, data }) => {
    const d = data as MigrationReport;
    seen.push({ event, state: d.state, rounds: d.rounds?.length ?? 0 });
    if (seen.length === 1) {
      assert.equal(migrationEvents.subscribers(), 1);
      migrationEvents.publish(report(id, { rounds: [round] }));
      migrationEvents.publish(report('m-someone-else', { state: 'final' }));
      migrationEvents.publish(report(id, { state: 'done', rounds: [round, round], finishedAt: new Date().toISOString() }));
    }
  });
  assert.deepEqual(seen, [
    { event: 'report', state: 'precopy', rounds: 0 },
    { event: 'report', state: 'precopy', rounds: 1 },
    { event: 'report', state: 'done', rounds: 2 },
    { event: 'end', state: 'done', rounds: 0 },
  ]);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(migrationEvents.subscribers(), 0, 'the stream unsubscribed when it ended');
});

test('cloudlet views: this one and a dead peer; proxied lists name the failing peer with 502', async (t) => {
  const { app, auth } = setup(t);
  const res = await app.inject({ method: 'GET', url: '/v1/cloudlets', headers: auth });
  assert.equal(res.statusCode, 200);
  const [self, beta] = res.json();
  assert.equal(self.name, 'alpha');
  assert.equal(self.self, true);
  assert.equal(self.info.node, 'alpha');
  assert.equal(self.info.engine.reachable, false);
  assert.equal(beta.name, 'beta');
  assert.equal(beta.ok, false);
  assert.equal(beta.info, null);
  assert.match(beta.error, /unreachable/);

  const overlays = await app.inject({ method: 'GET', url: '/v1/cloudlets/alpha/overlays', headers: auth });
  assert.equal(overlays.statusCode, 200);
  assert.deepEqual(overlays.json(), []);
  const peer = await app.inject({ method: 'GET', url: '/v1/cloudlets/beta/containers', headers: auth });
  assert.equal(peer.statusCode, 502);
  assert.match(peer.json().message, /cloudlet 'beta'/);
  const unknown = await app.inject({ method: 'GET', url: '/v1/cloudlets/nope/containers', headers: auth });
  assert.equal(unknown.statusCode, 404);
});
