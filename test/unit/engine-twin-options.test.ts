// Create options for a container's twin, derived from `docker inspect`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { twinCreateOptions } from '../../src/engine/docker.js';

const ID = '0123456789ab' + 'c'.repeat(52);

function inspect(over: { HostConfig?: object; Mounts?: object[]; Networks?: object }): Docker.ContainerInspectInfo {
  return {
    Id: ID,
    Name: '/web',
    Image: 'sha256:abc',
    Config: { Hostname: '0123456789ab', Image: 'cloudlet/node:20', Cmd: ['node', 'server.js'], Env: ['A=1'], Labels: {} },
    HostConfig: { NetworkMode: 'none', ContainerIDFile: '/host/only/file', ...over.HostConfig },
    Mounts: over.Mounts ?? [],
    NetworkSettings: { Networks: over.Networks ?? {} },
  } as unknown as Docker.ContainerInspectInfo;
}

test('twin options keep name, hostname, command and host config; drop ContainerIDFile', () => {
  const o = twinCreateOptions(inspect({}));
  assert.equal(o.name, 'web');
  assert.equal(o.Hostname, '0123456789ab');
  assert.equal(o.Image, 'cloudlet/node:20');
  assert.deepEqual(o.Cmd, ['node', 'server.js']);
  assert.equal(o.HostConfig?.NetworkMode, 'none');
  assert.equal(o.HostConfig?.ContainerIDFile, undefined);
  assert.equal(o.NetworkingConfig, undefined);
});

test('anonymous volumes become named binds; declared binds stay as they are', () => {
  const o = twinCreateOptions(inspect({
    HostConfig: { Binds: ['data:/data'] },
    Mounts: [
      { Type: 'volume', Name: 'data', Source: '/v/data/_data', Destination: '/data', RW: true },
      { Type: 'volume', Name: 'f00d', Source: '/v/f00d/_data', Destination: '/cache', RW: false },
      { Type: 'bind', Source: '/etc/x', Destination: '/x', RW: true },
    ],
  }));
  assert.deepEqual(o.HostConfig?.Binds, ['data:/data', 'f00d:/cache:ro']);
});

test('user-defined networks: address pinned, own short-id alias dropped', () => {
  const o = twinCreateOptions(inspect({
    HostConfig: { NetworkMode: 'svc' },
    Networks: { svc: { IPAMConfig: null, IPAddress: '172.30.0.5', Aliases: ['0123456789ab', 'web'], NetworkID: 'n' } },
  }));
  assert.deepEqual(o.NetworkingConfig, { EndpointsConfig: { svc: { IPAMConfig: { IPv4Address: '172.30.0.5' }, Aliases: ['web'] } } });
  const b = twinCreateOptions(inspect({ HostConfig: { NetworkMode: 'default' }, Networks: { bridge: { IPAddress: '172.17.0.2' } } }));
  assert.equal(b.NetworkingConfig, undefined);
});

test("a twin in another container's network namespace drops the hostname Docker copied from it (Docker refuses one with container: mode)", () => {
  const o = twinCreateOptions(inspect({ HostConfig: { NetworkMode: `container:${'f'.repeat(64)}` } }));
  assert.equal(o.Hostname, undefined);
  assert.equal(o.HostConfig?.NetworkMode, `container:${'f'.repeat(64)}`);
  assert.equal(o.NetworkingConfig, undefined);
});
