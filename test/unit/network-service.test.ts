import { test } from 'node:test';
import assert from 'node:assert/strict';
import { announceArgv, hostAddresses, serviceNetworkSchema, ServiceNetwork } from '../../src/network/service-network.js';
import { parseDaemonConfig } from '../../src/daemon/config.js';
import type { ContainerDetails, DockerEngine } from '../../src/engine/docker.js';

test('announce: {address} is replaced in each argument, nothing is joined into a command line', () => {
  assert.deepEqual(announceArgv(['ip', '-n', 'r', 'route', 'replace', '{address}/32', 'via', '10.0.0.2'], '10.240.1.7'), [
    'ip',
    '-n',
    'r',
    'route',
    'replace',
    '10.240.1.7/32',
    'via',
    '10.0.0.2',
  ]);
  assert.throws(() => announceArgv(['echo', '{address}'], '10.240.1.7; reboot'), /not an IPv4 service address/);
  assert.throws(() => announceArgv(['echo', '{address}'], '::1'), /not an IPv4/);
});

test('service network config: bad subnets, gateways and names are refused by field', () => {
  const base = { node: 'a', token: 'x'.repeat(16), dataDir: '/tmp/x' };
  const ok = parseDaemonConfig({ ...base, serviceNetwork: { name: 'cloudlet-svc', subnet: '10.240.0.0/16', gateway: '10.240.0.1' } });
  assert.equal(ok.serviceNetwork?.ipRange, null);
  assert.equal(ok.serviceNetwork?.announce, null);
  assert.equal(parseDaemonConfig(base).serviceNetwork, null, 'off by default');
  assert.throws(() => parseDaemonConfig({ ...base, serviceNetwork: { name: 'n', subnet: '10.240.0.0/33', gateway: '10.240.0.1' } }), /serviceNetwork\.subnet/);
  assert.throws(() => parseDaemonConfig({ ...base, serviceNetwork: { name: 'n', subnet: '10.240.0.0/16', gateway: 'gw' } }), /serviceNetwork\.gateway/);
  assert.throws(() => parseDaemonConfig({ ...base, serviceNetwork: { name: '-x', subnet: '10.240.0.0/16', gateway: '10.240.0.1' } }), /serviceNetwork\.name/);
  assert.throws(
    () => parseDaemonConfig({ ...base, serviceNetwork: { name: 'n', subnet: '10.240.0.0/16', gateway: '10.240.0.1', announce: [] } }),
    /serviceNetwork\.announce/,
  );
});

test('addressOf: the live address, else the pinned one of a stopped container, else none', () => {
  const net = new ServiceNetwork({} as DockerEngine, serviceNetworkSchema.parse({ name: 'svc', subnet: '10.240.0.0/16', gateway: '10.240.0.1' }));
  const details = (networks: Record<string, string | null>, pinned?: string) =>
    ({
      networks,
      createOptions: pinned ? { NetworkingConfig: { EndpointsConfig: { svc: { IPAMConfig: { IPv4Address: pinned } } } } } : {},
    }) as unknown as ContainerDetails;
  assert.equal(net.addressOf(details({ svc: '10.240.1.3' })), '10.240.1.3');
  assert.equal(net.addressOf(details({ svc: null }, '10.240.1.4')), '10.240.1.4');
  assert.equal(net.addressOf(details({ bridge: '172.17.0.2' })), null, 'not on the service network');
});

test('hostAddresses: the usable addresses of a range, in order', () => {
  const a = hostAddresses('10.240.3.0/24');
  assert.equal(a.length, 254);
  assert.equal(a[0], '10.240.3.1');
  assert.equal(a.at(-1), '10.240.3.254');
  assert.deepEqual(hostAddresses('10.240.3.8/30'), ['10.240.3.9', '10.240.3.10']);
});

test('allocate: skips addresses in use, pending and held by services that moved away; refuses when full', async () => {
  let inUse = ['10.240.3.1'];
  const engine = { networkAddresses: async () => inUse } as unknown as DockerEngine;
  const net = new ServiceNetwork(engine, serviceNetworkSchema.parse({ name: 'svc', subnet: '10.240.0.0/16', gateway: '10.240.0.1', ipRange: '10.240.3.0/29' }));
  const moved = new Set(['10.240.3.2']);
  const first = await net.allocate(moved);
  assert.equal(first, '10.240.3.3', 'in use and moved-away addresses are skipped');
  assert.equal(await net.allocate(moved), '10.240.3.4', 'a pending address is not handed out twice');
  net.release('10.240.3.3');
  inUse = ['10.240.3.1', '10.240.3.3'];
  assert.equal(await net.allocate(moved), '10.240.3.5');
  assert.equal(await net.allocate(moved), '10.240.3.6');
  await assert.rejects(net.allocate(moved), /no free service address left in 10\.240\.3\.0\/29/);
  const none = new ServiceNetwork(engine, serviceNetworkSchema.parse({ name: 'svc', subnet: '10.240.0.0/16', gateway: '10.240.0.1' }));
  assert.equal(await none.allocate(moved), null, 'without a range the engine chooses');
});
