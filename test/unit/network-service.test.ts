import { test } from 'node:test';
import assert from 'node:assert/strict';
import { announceArgv, serviceNetworkSchema, ServiceNetwork } from '../../src/network/service-network.js';
import { parseDaemonConfig } from '../../src/daemon/config.js';
import type { ContainerDetails, DockerEngine } from '../../src/engine/docker.js';

test('announce: {address} is replaced in each argument, nothing is joined into a command line', () => {
  assert.deepEqual(announceArgv(['ip', '-n', 'r', 'route', 'replace', '{address}/32', 'via', '10.0.0.2'], '10.240.1.7'), [
    'ip', '-n', 'r', 'route', 'replace', '10.240.1.7/32', 'via', '10.0.0.2',
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
  assert.throws(() => parseDaemonConfig({ ...base, serviceNetwork: { name: 'n', subnet: '10.240.0.0/16', gateway: '10.240.0.1', announce: [] } }), /serviceNetwork\.announce/);
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
