import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeLabState, type LabCloudlet, type LabState } from '../../src/lab/state.js';
import { resolveNode, resolveNodes, resolveToken } from '../../src/cli/nodes.js';
import { CloudletClient } from '../../src/cli/client.js';
import { collectNodeStatus, nodesExitCode } from '../../src/cli/commands/nodes.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { ApiError, NotFoundError, UsageError } from '../../src/util/errors.js';
import { makeFixture } from './daemon-fixtures.js';

// The lab's state format is still growing (other modules own it); the resolver reads only
// cloudlets[].name, cloudlets[].daemon.apiUrl and token, so the fixture fills just those.
function cloudlet(name: string, apiUrl: string): LabCloudlet {
  return { name, daemon: { apiUrl } } as unknown as LabCloudlet;
}

function writeLab(dir: string, token: string, cloudlets: LabCloudlet[]): void {
  const state = { version: 1, createdAt: new Date().toISOString(), dir, token, cloudlets, forwarder: null };
  writeLabState(state as unknown as LabState, dir);
}

/** A loopback port with nobody listening. */
async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function withLabDir(t: { after(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cloudlet-lab-'));
  const saved = { lab: process.env.CLOUDLET_LAB_DIR, token: process.env.CLOUDLET_TOKEN };
  process.env.CLOUDLET_LAB_DIR = dir;
  delete process.env.CLOUDLET_TOKEN;
  t.after(() => {
    if (saved.lab === undefined) delete process.env.CLOUDLET_LAB_DIR;
    else process.env.CLOUDLET_LAB_DIR = saved.lab;
    if (saved.token === undefined) delete process.env.CLOUDLET_TOKEN;
    else process.env.CLOUDLET_TOKEN = saved.token;
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

test('nodes come from the lab state; an unknown node lists the known ones', async (t) => {
  const dir = withLabDir(t);
  writeLab(dir, 'lab-token-0123456789', [cloudlet('alpha', 'http://127.0.0.1:17001'), cloudlet('beta', 'http://127.0.0.1:17002')]);

  const nodes = await resolveNodes({});
  assert.deepEqual(
    nodes.map((n) => [n.name, n.url, n.client.token]),
    [
      ['alpha', 'http://127.0.0.1:17001', 'lab-token-0123456789'],
      ['beta', 'http://127.0.0.1:17002', 'lab-token-0123456789'],
    ],
  );
  assert.equal((await resolveNode('beta', {})).url, 'http://127.0.0.1:17002');

  await assert.rejects(resolveNode('gamma', {}), (err: unknown) => {
    assert.ok(err instanceof NotFoundError);
    assert.equal(err.message, "node 'gamma' not found");
    assert.equal(err.hint, 'known nodes: alpha, beta');
    return true;
  });
  // Several nodes and no --node: the user must choose.
  await assert.rejects(resolveNode(undefined, {}), (err: unknown) => err instanceof UsageError && /alpha, beta/.test(err.hint ?? ''));
});

test('token precedence: --token, then $CLOUDLET_TOKEN, then the lab token', async (t) => {
  const dir = withLabDir(t);
  writeLab(dir, 'lab-token-0123456789', [cloudlet('alpha', 'http://127.0.0.1:17001')]);
  assert.equal((await resolveNode(undefined, {})).client.token, 'lab-token-0123456789');
  process.env.CLOUDLET_TOKEN = 'env-token';
  assert.equal((await resolveNode(undefined, {})).client.token, 'env-token');
  assert.equal((await resolveNode('alpha', { token: 'flag-token' })).client.token, 'flag-token');
  assert.equal(resolveToken({}, 'lab', { CLOUDLET_TOKEN: '' }), 'lab', 'an empty variable does not count');
});

test('no lab and no --url is a usage error with a hint', async (t) => {
  withLabDir(t);
  await assert.rejects(resolveNodes({}), (err: unknown) => {
    assert.ok(err instanceof UsageError);
    assert.equal(err.hint, 'run `cloudlet lab up` or pass --url');
    return true;
  });
});

test('--url names its node from /v1/info, or "default" when it does not answer', async (t) => {
  withLabDir(t);
  const fx = makeFixture({ node: 'gamma' });
  const d = await startDaemon({ config: fx.config, logger: false });
  t.after(async () => {
    await d.close();
    fx.cleanup();
  });
  const [n] = await resolveNodes({ url: d.addresses[0]!, token: fx.config.token });
  assert.equal(n!.name, 'gamma');
  assert.equal(n!.source, 'url');
  await assert.rejects(resolveNode('alpha', { url: d.addresses[0]!, token: fx.config.token }), /node 'alpha' not found/);

  const port = await closedPort();
  const [down] = await resolveNodes({ url: `http://127.0.0.1:${port}` });
  assert.equal(down!.name, 'default');
});

test('the client carries the server message, and a hint when nobody answers', async (t) => {
  const fx = makeFixture();
  const d = await startDaemon({ config: fx.config, logger: false });
  t.after(async () => {
    await d.close();
    fx.cleanup();
  });
  const ok = new CloudletClient(d.addresses[0]! + '/', fx.config.token);
  assert.equal((await ok.get<{ node: string }>('/v1/info')).node, 'alpha');

  await assert.rejects(new CloudletClient(d.addresses[0]!, 'wrong-token').get('/v1/info'), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthorized');
    assert.equal(err.message, 'invalid bearer token');
    return true;
  });
  await assert.rejects(ok.get('/v1/containers'), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 503);
    assert.ok(err.message.includes(fx.config.dockerSocket));
    return true;
  });

  const port = await closedPort();
  await assert.rejects(new CloudletClient(`http://127.0.0.1:${port}`, 't').get('/v1/info'), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, 'unreachable');
    assert.match(err.message, /ECONNREFUSED/);
    assert.equal(err.hint, 'is the daemon running? `cloudlet lab status`');
    return true;
  });
});

test('`nodes` status: a live daemon with a dead engine is degraded, a dead daemon is down', async (t) => {
  const dir = withLabDir(t);
  const fx = makeFixture();
  let d: RunningDaemon | null = await startDaemon({ config: fx.config, logger: false });
  t.after(async () => {
    await d?.close();
    fx.cleanup();
  });
  const port = await closedPort();
  writeLab(dir, fx.config.token, [cloudlet('alpha', d.addresses[0]!), cloudlet('beta', `http://127.0.0.1:${port}`)]);

  const rows = await collectNodeStatus(await resolveNodes({}));
  const [alpha, beta] = rows;
  assert.equal(alpha!.status, 'degraded');
  assert.equal(alpha!.containers, null);
  assert.ok(alpha!.error?.includes(fx.config.dockerSocket));
  assert.equal(alpha!.info?.node, 'alpha');
  assert.equal(beta!.status, 'down');
  assert.match(beta!.error!, /cannot reach cloudletd .*ECONNREFUSED/);
  assert.equal(nodesExitCode(rows), 0, 'one node answering is enough');

  await d.close();
  d = null;
  const allDown = await collectNodeStatus(await resolveNodes({}));
  assert.deepEqual(
    allDown.map((r) => r.status),
    ['down', 'down'],
  );
  assert.equal(nodesExitCode(allDown), 1);
});
