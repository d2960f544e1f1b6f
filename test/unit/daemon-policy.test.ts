// A hostile peer's prepare, through the real routes of a real cloudletd (buildServer): a
// privileged twin with /etc bind-mounted, CAP_SYS_ADMIN, the host's pid namespace and a host
// device. Refused with 403 naming every field and the policy key, before the engine is asked
// anything (its socket does not exist here: a request that reached it would fail with 503).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildServer } from '../../src/daemon/server.js';
import { makeFixture } from './daemon-fixtures.js';

const digest = `sha256:${'a'.repeat(64)}`;
const hostileSpec = {
  cmd: ['sh'],
  privileged: true,
  binds: [{ source: '/etc', target: '/host-etc' }],
  capAdd: ['SYS_ADMIN'],
  pidMode: 'host',
  devices: [{ pathOnHost: '/dev/sda', pathInContainer: '/dev/sda' }],
  network: { mode: 'none' },
};

function setup(t: { after(fn: () => unknown): void }, overrides = {}) {
  // The prepares below come from 'beta', which must be a configured peer to be heard at all.
  const fx = makeFixture({ peers: [{ name: 'beta', url: 'http://127.0.0.1:9' }], ...overrides });
  const app = buildServer({ config: fx.config, logger: false });
  t.after(async () => {
    await app.close();
    fx.cleanup();
  });
  const headers = { authorization: `Bearer ${fx.config.token}` };
  return { app, headers };
}

const EXPECTED: Array<[string, string]> = [
  ['container.spec.privileged', 'containerPolicy.privileged: true'],
  ['container.spec.capAdd', 'containerPolicy.capabilities containing "SYS_ADMIN"'],
  ['container.spec.devices[0].pathOnHost', 'containerPolicy.devices containing "/dev/sda"'],
  ['container.spec.pidMode', 'containerPolicy.hostNamespaces containing "pid"'],
  ['container.spec.binds[0].source', 'containerPolicy.bindMountRoots containing /etc or a parent of it'],
];

test('a hostile prepare (migration) is refused with 403 naming each field and the policy key', async (t) => {
  const { app, headers } = setup(t);
  const res = await app.inject({
    method: 'POST',
    url: '/v1/incoming',
    headers,
    payload: { id: 'm-hostile-0001', from: 'beta', container: { name: 'evil', imageId: digest, imageName: 'evil:1', spec: hostileSpec, volumes: [] } },
  });
  assert.equal(res.statusCode, 403, res.body);
  const body = res.json() as { error: string; message: string; context: { violations: Array<{ field: string; allowWith: string }> } };
  assert.equal(body.error, 'policy_denied');
  assert.match(body.message, /alpha's container policy/);
  assert.deepEqual(
    body.context.violations.map((v) => [v.field, v.allowWith]),
    EXPECTED,
  );
  for (const [field] of EXPECTED) assert.ok(body.message.includes(field), field);
  // Nothing was journalled for it: the refusal came before the handoff was recorded.
  const incoming = await app.inject({ method: 'GET', url: '/v1/incoming/m-hostile-0001', headers });
  assert.equal(incoming.statusCode, 404, incoming.body);
});

test("a hostile holder is refused too, and a twin may join only the handoff's own holder", async (t) => {
  const { app, headers } = setup(t);
  const holder = { name: 'evil-netns', imageId: digest, imageName: 'busybox', spec: { cmd: ['sleep', '1'], network: { mode: 'host' } } };
  const res = await app.inject({
    method: 'POST',
    url: '/v1/incoming',
    headers,
    payload: {
      id: 'm-hostile-0002',
      from: 'beta',
      container: { name: 'evil', imageId: digest, imageName: 'evil:1', spec: { network: { mode: 'container:victim' } }, volumes: [], netnsHolder: holder },
    },
  });
  assert.equal(res.statusCode, 403, res.body);
  const fields = (res.json() as { context: { violations: Array<{ field: string }> } }).context.violations.map((v) => v.field);
  assert.deepEqual(fields, ['container.spec.network.mode', 'container.netnsHolder.spec.network.mode']);
});

test('a hostile prepare (re-creation) is refused the same way', async (t) => {
  const { app, headers } = setup(t);
  const res = await app.inject({
    method: 'POST',
    url: '/v1/recreate',
    headers,
    payload: {
      id: 'm-hostile-0003',
      from: 'beta',
      container: { name: 'evil', imageId: digest, imageName: 'evil:1', spec: hostileSpec, volumes: [], serviceAddress: null },
      health: { tcp: { port: 80 } },
      healthTimeoutMs: 1000,
    },
  });
  assert.equal(res.statusCode, 403, res.body);
  assert.deepEqual(
    (res.json() as { context: { violations: Array<{ field: string; allowWith: string }> } }).context.violations.map((v) => [v.field, v.allowWith]),
    EXPECTED,
  );
});

test('raw create options, or an unknown field, are refused by name (400)', async (t) => {
  const { app, headers } = setup(t);
  const raw = await app.inject({
    method: 'POST',
    url: '/v1/incoming',
    headers,
    payload: {
      id: 'm-hostile-0004',
      from: 'beta',
      container: { name: 'evil', imageId: digest, imageName: 'evil:1', createOptions: { HostConfig: { Privileged: true } }, volumes: [] },
    },
  });
  assert.equal(raw.statusCode, 400, raw.body);
  assert.match(raw.json().message, /createOptions/);
  const sneaky = await app.inject({
    method: 'POST',
    url: '/v1/incoming',
    headers,
    payload: {
      id: 'm-hostile-0005',
      from: 'beta',
      container: { name: 'evil', imageId: digest, imageName: 'evil:1', spec: { network: { mode: 'none' }, CgroupParent: '/' }, volumes: [] },
    },
  });
  assert.equal(sneaky.statusCode, 400, sneaky.body);
  assert.match(sneaky.json().message, /container\.spec.*CgroupParent/);
});

test('a policy that allows it lets the request through to the engine (here: unreachable, 503)', async (t) => {
  const { app, headers } = setup(t, {
    containerPolicy: { privileged: true, capabilities: ['SYS_ADMIN'], hostNamespaces: ['pid'], devices: ['/dev/sda'], bindMountRoots: ['/etc'] },
  });
  const res = await app.inject({
    method: 'POST',
    url: '/v1/incoming',
    headers,
    payload: { id: 'm-allowed-0001', from: 'beta', container: { name: 'trusted', imageId: digest, imageName: 'x:1', spec: hostileSpec, volumes: [] } },
  });
  assert.equal(res.statusCode, 503, res.body);
  assert.equal(res.json().error, 'engine_unavailable');
});
