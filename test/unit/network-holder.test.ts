// Network namespace holders: which containers join one, the twin's options, and when the
// spare holder may stand for a holder (the engine parts run on the lab: migration.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { holderCreateOptions, joinedHolderRef, joiningHolder, SpareHolder, type HolderSpec } from '../../src/network/netns-holder.js';
import { DockerEngine } from '../../src/engine/docker.js';
import { specFromCreateOptions } from '../../src/engine/container-spec.js';

const ID = 'a'.repeat(64);

test('joinedHolderRef: the holder of a container in container: mode, null for a namespace of its own', () => {
  assert.equal(joinedHolderRef({ createOptions: { HostConfig: { NetworkMode: `container:${ID}` } } }), ID);
  for (const mode of ['none', 'bridge', 'cloudlet-svc', 'host', 'container:', undefined]) {
    assert.equal(joinedHolderRef({ createOptions: { HostConfig: mode === undefined ? {} : { NetworkMode: mode } } }), null, String(mode));
  }
});

test('joiningHolder: only the network mode changes, the rest of the options is kept', () => {
  const o = joiningHolder({ name: 'svc', Image: 'x', Cmd: ['a'], HostConfig: { NetworkMode: `container:${ID}`, Binds: ['v:/v'] } }, 'svc-netns');
  assert.deepEqual(o, { name: 'svc', Image: 'x', Cmd: ['a'], HostConfig: { NetworkMode: 'container:svc-netns', Binds: ['v:/v'] } });
});

// Issue 17 (4): the twin of a service from an image with EXPOSE, in a holder, was refused by
// the engine ("conflicting options: port exposing and the container type network mode"): the
// inspected Config carries the image's ports, which Docker refuses with container: mode.
test("joiningHolder drops what Docker refuses in a holder's namespace: exposed ports, hostname, MAC, published ports, DNS servers, extra hosts, links, endpoints", () => {
  const inspected = {
    name: 'web',
    Image: 'shop/web:2',
    Hostname: 'f00df00df00d',
    Domainname: 'example.org',
    MacAddress: '02:42:ac:11:00:09',
    ExposedPorts: { '8080/tcp': {} },
    Env: ['A=1'],
    HostConfig: {
      NetworkMode: 'cloudlet-svc',
      PortBindings: { '8080/tcp': [{ HostPort: '' }] },
      PublishAllPorts: true,
      Dns: ['10.0.0.53'],
      DnsOptions: ['ndots:2'],
      DnsSearch: ['example.org'],
      ExtraHosts: ['db:10.0.0.7'],
      Links: ['db:db'],
      Binds: ['v:/v'],
    },
    NetworkingConfig: { EndpointsConfig: { 'cloudlet-svc': { IPAMConfig: { IPv4Address: '10.240.1.9' } } } },
  };
  assert.deepEqual(joiningHolder(inspected, 'web-netns'), {
    name: 'web',
    Image: 'shop/web:2',
    // Accepted by the engine with container: mode (Docker 20.10), so kept.
    Domainname: 'example.org',
    Env: ['A=1'],
    HostConfig: { NetworkMode: 'container:web-netns', DnsOptions: ['ndots:2'], DnsSearch: ['example.org'], Binds: ['v:/v'] },
  });
  assert.deepEqual(inspected.ExposedPorts, { '8080/tcp': {} }, 'the options given are not changed');
});

test('holderCreateOptions pins the address only when given', () => {
  const none = holderCreateOptions({ name: 'h', image: 'img', network: 'none' });
  assert.equal(none.HostConfig?.NetworkMode, 'none');
  assert.equal(none.NetworkingConfig, undefined);
  const pinned = holderCreateOptions({ name: 'h', image: 'img', network: 'svc', address: '10.240.1.9' });
  assert.deepEqual(pinned.NetworkingConfig, { EndpointsConfig: { svc: { IPAMConfig: { IPv4Address: '10.240.1.9' } } } });
});

test('the spare stands only for a holder of its network mode and command, without a pinned address', () => {
  // fits() looks at the spec only: the engine is never called.
  const spare = new SpareHolder(new DockerEngine('/nonexistent.sock'), { image: 'cloudlet/busybox:1', network: 'none' });
  const spec = (o: Parameters<typeof holderCreateOptions>[0]): HolderSpec => ({
    name: o.name,
    imageId: `sha256:${ID}`,
    imageName: o.image,
    spec: specFromCreateOptions(holderCreateOptions(o)).spec,
  });
  assert.equal(spare.fits(spec({ name: 'h', image: 'cloudlet/busybox:1', network: 'none' })), true);
  assert.equal(spare.fits(spec({ name: 'h', image: 'cloudlet/busybox:1', network: 'svc' })), false, 'other network');
  assert.equal(spare.fits(spec({ name: 'h', image: 'cloudlet/busybox:1', network: 'none', address: '10.0.0.2' })), false, 'pinned address');
  const other = spec({ name: 'h', image: 'cloudlet/busybox:1', network: 'none' });
  other.spec = { ...other.spec, cmd: ['/pause'] };
  assert.equal(spare.fits(other), false, 'other command');
});
