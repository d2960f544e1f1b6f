// A cloudlet's container policy: what a peer's twin may ask for beyond the spec's plain fields.
// Every forbidden field is refused and named with the policy key that would allow it; what the
// policy allows passes; bind sources are checked as written and as they resolve (symlinks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ContainerSpec } from '../../src/api/schemas/container-spec.js';
import {
  checkBindRealPaths,
  checkContainerPolicy,
  policyViolations,
  PolicyDeniedError,
  STRICT_CONTAINER_POLICY,
  type ContainerPolicy,
} from '../../src/migration/container-policy.js';
import { kindToHttpStatus } from '../../src/util/error-kinds.js';
import { parseDaemonConfig } from '../../src/daemon/config.js';

const plain: ContainerSpec = {
  user: 'app',
  cmd: ['node', 'server.js'],
  env: ['PORT=8080'],
  labels: { a: 'b' },
  resources: { memory: 1 << 28, nanoCpus: 5e8, pidsLimit: 100 },
  binds: [{ source: 'web-data', target: '/data' }],
  mounts: [{ type: 'tmpfs', target: '/run' }],
  tmpfs: { '/tmp': '' },
  capDrop: ['NET_RAW'],
  securityOpt: ['no-new-privileges'],
  ipcMode: 'private',
  network: { mode: 'cloudlet-svc', endpoints: { 'cloudlet-svc': { ipv4Address: '10.240.1.7' } } },
};
const check = (spec: ContainerSpec, policy: ContainerPolicy = STRICT_CONTAINER_POLICY, holderName: string | null = null) =>
  policyViolations(spec, policy, { prefix: 'container.spec', holderName });

test('a plain service passes the strict defaults', () => {
  assert.deepEqual(check(plain), []);
  assert.doesNotThrow(() => checkContainerPolicy(plain, STRICT_CONTAINER_POLICY, { prefix: 'container.spec' }));
});

test('each forbidden field is refused, named, with the key that would allow it', () => {
  const cases: Array<[Partial<ContainerSpec>, string, string, RegExp]> = [
    [{ privileged: true }, 'container.spec.privileged', 'HostConfig.Privileged', /containerPolicy\.privileged: true/],
    [{ capAdd: ['SYS_ADMIN'] }, 'container.spec.capAdd', 'HostConfig.CapAdd', /containerPolicy\.capabilities containing "SYS_ADMIN"/],
    [{ capAdd: ['CAP_NET_ADMIN'] }, 'container.spec.capAdd', 'HostConfig.CapAdd', /"NET_ADMIN"/],
    [
      { devices: [{ pathOnHost: '/dev/sda', pathInContainer: '/dev/sda' }] },
      'container.spec.devices[0].pathOnHost',
      'HostConfig.Devices[0].PathOnHost',
      /containerPolicy\.devices containing "\/dev\/sda"/,
    ],
    [{ pidMode: 'host' }, 'container.spec.pidMode', 'HostConfig.PidMode', /hostNamespaces containing "pid"/],
    [{ ipcMode: 'host' }, 'container.spec.ipcMode', 'HostConfig.IpcMode', /"ipc"/],
    [{ utsMode: 'host' }, 'container.spec.utsMode', 'HostConfig.UTSMode', /"uts"/],
    [{ usernsMode: 'host' }, 'container.spec.usernsMode', 'HostConfig.UsernsMode', /"user"/],
    [{ network: { mode: 'host' } }, 'container.spec.network.mode', 'HostConfig.NetworkMode', /"network"/],
    [{ binds: [{ source: '/etc', target: '/host-etc' }] }, 'container.spec.binds[0].source', 'HostConfig.Binds[0]', /bindMountRoots containing \/etc/],
    [{ mounts: [{ type: 'bind', source: '/', target: '/host' }] }, 'container.spec.mounts[0].source', 'HostConfig.Mounts[0].Source', /bindMountRoots/],
    [{ securityOpt: ['seccomp=unconfined'] }, 'container.spec.securityOpt', 'HostConfig.SecurityOpt', /securityOptions containing "seccomp=unconfined"/],
  ];
  for (const [over, field, docker, allow] of cases) {
    const v = check({ ...plain, ...over });
    assert.equal(v.length, 1, `${field}: ${JSON.stringify(v)}`);
    assert.equal(v[0]!.field, field);
    assert.equal(v[0]!.docker, docker);
    assert.match(v[0]!.allowWith ?? '', allow);
  }
});

test('no policy lets a twin join a container other than its own holder, or a path with ..', () => {
  const wide: ContainerPolicy = { ...STRICT_CONTAINER_POLICY, hostNamespaces: ['network', 'pid', 'ipc', 'uts', 'user'], bindMountRoots: ['/srv'] };
  const other = check({ ...plain, network: { mode: 'container:someone-else' } }, wide, 'web-netns');
  assert.equal(other.length, 1);
  assert.equal(other[0]!.allowWith, null);
  assert.deepEqual(check({ ...plain, network: { mode: 'container:web-netns' } }, wide, 'web-netns'), []);
  const dotdot = check({ ...plain, binds: [{ source: '/srv/../etc', target: '/x' }] }, wide);
  assert.equal(dotdot.length, 1);
  assert.equal(dotdot[0]!.allowWith, null);
  assert.equal(check({ ...plain, binds: [{ source: '/srvx/data', target: '/x' }] }, wide).length, 1, 'a sibling of a root is not under it');
});

test('a policy that allows them lets them through', () => {
  const wide: ContainerPolicy = {
    privileged: true,
    hostNamespaces: ['network', 'pid'],
    capabilities: ['SYS_ADMIN', 'NET_ADMIN'],
    devices: ['/dev/fuse'],
    bindMountRoots: ['/srv/data'],
    namedVolumes: true,
    securityOptions: ['seccomp=unconfined'],
  };
  const spec: ContainerSpec = {
    ...plain,
    privileged: true,
    capAdd: ['CAP_SYS_ADMIN', 'net_admin'],
    devices: [{ pathOnHost: '/dev/fuse', pathInContainer: '/dev/fuse' }],
    pidMode: 'host',
    binds: [
      { source: '/srv/data/web', target: '/data' },
      { source: '/srv/data', target: '/all', options: 'ro' },
    ],
    securityOpt: ['seccomp=unconfined'],
    network: { mode: 'host' },
  };
  assert.deepEqual(check(spec, wide), []);
  assert.deepEqual(check({ ...plain, capAdd: ['SYS_PTRACE'] }, { ...STRICT_CONTAINER_POLICY, capabilities: ['ALL'] }), []);
});

test('named volumes can be refused too', () => {
  const v = check(plain, { ...STRICT_CONTAINER_POLICY, namedVolumes: false });
  assert.deepEqual(
    v.map((x) => [x.field, x.allowWith]),
    [['container.spec.binds[0].source', 'containerPolicy.namedVolumes: true']],
  );
});

test('the refusal is one 403 naming every field', () => {
  const hostile: ContainerSpec = { ...plain, privileged: true, capAdd: ['SYS_ADMIN'], pidMode: 'host', binds: [{ source: '/etc', target: '/host-etc' }] };
  try {
    checkContainerPolicy(hostile, STRICT_CONTAINER_POLICY, { prefix: 'container.spec', node: 'beta' });
    assert.fail('not refused');
  } catch (err) {
    assert.ok(err instanceof PolicyDeniedError);
    assert.equal(err.code, 'policy_denied');
    assert.equal(err.errorKind, 'permission-denied');
    assert.equal(kindToHttpStatus(err.errorKind), 403);
    for (const f of ['container.spec.privileged', 'container.spec.capAdd', 'container.spec.pidMode', 'container.spec.binds[0].source'])
      assert.ok(err.message.includes(f), f);
    assert.match(err.message, /beta's container policy/);
  }
});

test('a bind source that resolves outside its root (symlink) is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'policy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  mkdirSync(join(root, 'real'), { recursive: true });
  symlinkSync('/etc', join(root, 'escape'));
  const policy: ContainerPolicy = { ...STRICT_CONTAINER_POLICY, bindMountRoots: [root] };
  const spec = (source: string): ContainerSpec => ({ network: { mode: 'none' }, binds: [{ source, target: '/x' }] });
  for (const ok of [join(root, 'real'), join(root, 'real', 'not-yet', 'made'), root]) {
    assert.deepEqual(check(spec(ok), policy), [], ok);
    await checkBindRealPaths(spec(ok), policy, { prefix: 'container.spec' });
  }
  const escape = join(root, 'escape', 'shadow');
  assert.deepEqual(check(spec(escape), policy), [], 'lexically under the root');
  await assert.rejects(checkBindRealPaths(spec(escape), policy, { prefix: 'container.spec' }), (err: Error) => {
    assert.ok(err instanceof PolicyDeniedError);
    assert.match(err.message, /container\.spec\.binds\[0\]\.source .*resolves to \/etc\/shadow/);
    return true;
  });
});

test("cloudletd's configuration: strict defaults; bad keys and paths refused by name", () => {
  const base = { node: 'alpha', token: 'a'.repeat(32), dataDir: '/tmp/x' };
  assert.deepEqual(parseDaemonConfig(base).containerPolicy, STRICT_CONTAINER_POLICY);
  const c = parseDaemonConfig({ ...base, containerPolicy: { capabilities: ['NET_ADMIN'], bindMountRoots: ['/srv/data'] } });
  assert.deepEqual(c.containerPolicy.capabilities, ['NET_ADMIN']);
  assert.equal(c.containerPolicy.privileged, false);
  assert.throws(() => parseDaemonConfig({ ...base, containerPolicy: { bindMountRoots: ['srv'] } }), /containerPolicy\.bindMountRoots\.0/);
  assert.throws(() => parseDaemonConfig({ ...base, containerPolicy: { bindMountRoots: ['/srv/../etc'] } }), /containerPolicy\.bindMountRoots\.0/);
  assert.throws(() => parseDaemonConfig({ ...base, containerPolicy: { hostNamespaces: ['mount'] } }), /containerPolicy\.hostNamespaces\.0/);
  assert.throws(() => parseDaemonConfig({ ...base, containerPolicy: { allowEverything: true } }), /allowEverything/);
});
