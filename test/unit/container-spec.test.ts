// The container spec a handoff sends instead of Docker's create options: its schema (strict,
// typed), the source's conversion from inspected options (what it cannot carry is named), and
// the destination's rebuild of Docker's options from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { ContainerSpecSchema, type ContainerSpec } from '../../src/api/schemas/container-spec.js';
import { createOptionsFromSpec, specFromCreateOptions } from '../../src/engine/container-spec.js';
import { twinCreateOptions } from '../../src/engine/twin-options.js';
import { holderCreateOptions, joiningHolder } from '../../src/network/netns-holder.js';
import { twinSpecOf } from '../../src/migration/twin-spec.js';

/** `docker inspect` of a plain service on the service network, with most keys at their defaults as Docker lists them. */
function inspected(host: Record<string, unknown> = {}, config: Record<string, unknown> = {}): Docker.ContainerInspectInfo {
  return {
    Id: 'ab'.repeat(32),
    Name: '/web',
    Image: `sha256:${'c'.repeat(64)}`,
    Config: {
      Hostname: 'abababababab',
      Domainname: '',
      User: 'app',
      AttachStdin: false,
      AttachStdout: true,
      AttachStderr: true,
      ExposedPorts: { '8080/tcp': {} },
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: ['PATH=/usr/bin', 'PORT=8080'],
      Cmd: ['node', 'server.js'],
      Image: 'shop/web:1',
      Volumes: { '/data': {} },
      WorkingDir: '/app',
      Entrypoint: null,
      OnBuild: null,
      Labels: { 'cloudlet.handoff': 'recreate' },
      StopSignal: 'SIGTERM',
      Healthcheck: { Test: ['CMD', 'true'], Interval: 1e9 },
      ...config,
    },
    HostConfig: {
      Binds: ['web-data:/data'],
      ContainerIDFile: '',
      LogConfig: { Type: 'json-file', Config: {} },
      NetworkMode: 'cloudlet-svc',
      PortBindings: {},
      RestartPolicy: { Name: 'unless-stopped', MaximumRetryCount: 0 },
      AutoRemove: false,
      VolumeDriver: '',
      VolumesFrom: null,
      CapAdd: null,
      CapDrop: ['NET_RAW'],
      CgroupnsMode: 'private',
      Dns: [],
      DnsOptions: [],
      DnsSearch: [],
      ExtraHosts: null,
      GroupAdd: null,
      IpcMode: 'private',
      Cgroup: '',
      Links: null,
      OomScoreAdj: 0,
      PidMode: '',
      Privileged: false,
      PublishAllPorts: false,
      ReadonlyRootfs: false,
      SecurityOpt: null,
      Tmpfs: { '/run': 'rw,size=16m' },
      UTSMode: '',
      UsernsMode: '',
      ShmSize: 67108864,
      Runtime: 'runc',
      ConsoleSize: [0, 0],
      Isolation: '',
      CpuShares: 0,
      Memory: 268435456,
      NanoCpus: 500000000,
      CgroupParent: '',
      BlkioWeight: 0,
      BlkioWeightDevice: [],
      CpuPeriod: 0,
      CpuQuota: 0,
      CpusetCpus: '',
      Devices: [],
      DeviceCgroupRules: null,
      DeviceRequests: null,
      KernelMemory: 0,
      MemoryReservation: 0,
      MemorySwap: 536870912,
      MemorySwappiness: null,
      OomKillDisable: false,
      PidsLimit: 100,
      Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 4096 }],
      MaskedPaths: ['/proc/kcore'],
      ReadonlyPaths: ['/proc/sys'],
      ...host,
    },
    Mounts: [{ Type: 'volume', Name: 'web-data', Source: '/var/lib/docker/volumes/web-data/_data', Destination: '/data', RW: true }],
    NetworkSettings: { Networks: { 'cloudlet-svc': { IPAMConfig: { IPv4Address: '10.240.1.7' }, IPAddress: '10.240.1.7', Aliases: ['abababababab', 'web'] } } },
  } as unknown as Docker.ContainerInspectInfo;
}

test('an inspected service becomes a spec that the schema accepts; settings left to the destination are not carried', () => {
  const { spec, unsupported } = specFromCreateOptions(twinCreateOptions(inspected()));
  assert.deepEqual(unsupported, []);
  const parsed = ContainerSpecSchema.parse(spec);
  assert.equal(parsed.user, 'app');
  assert.deepEqual(parsed.cmd, ['node', 'server.js']);
  assert.deepEqual(parsed.exposedPorts, ['8080/tcp']);
  assert.deepEqual(parsed.binds, [{ source: 'web-data', target: '/data' }]);
  assert.deepEqual(parsed.resources, {
    memory: 268435456,
    nanoCpus: 500000000,
    cpuShares: 0,
    cpuQuota: 0,
    cpuPeriod: 0,
    cpusetCpus: '',
    memoryReservation: 0,
    memorySwap: 536870912,
    pidsLimit: 100,
    shmSize: 67108864,
    ulimits: [{ name: 'nofile', soft: 1024, hard: 4096 }],
  });
  assert.deepEqual(parsed.network.endpoints, { 'cloudlet-svc': { ipv4Address: '10.240.1.7', aliases: ['web'] } });
  assert.deepEqual(parsed.restartPolicy, { name: 'unless-stopped' });
  assert.deepEqual(parsed.tmpfs, { '/run': 'rw,size=16m' });
  assert.deepEqual(parsed.capDrop, ['NET_RAW']);
  const s = JSON.stringify(parsed);
  for (const gone of ['json-file', 'runc', 'kcore', 'ContainerIDFile', 'CgroupnsMode']) assert.ok(!s.includes(gone), gone);
});

test('the rebuilt create options are the ones the twin was created with before (round trip)', () => {
  const before = twinCreateOptions(inspected());
  const after = createOptionsFromSpec(ContainerSpecSchema.parse(specFromCreateOptions(before).spec), { name: 'web', image: 'shop/web:1' });
  assert.equal(after.name, 'web');
  assert.equal(after.Image, 'shop/web:1');
  for (const k of ['Hostname', 'User', 'Env', 'Cmd', 'WorkingDir', 'Labels', 'ExposedPorts', 'Volumes', 'StopSignal', 'Healthcheck'] as const) {
    assert.deepEqual(after[k], before[k], k);
  }
  const h = after.HostConfig!;
  const b = before.HostConfig!;
  for (const k of [
    'Binds',
    'NetworkMode',
    'Memory',
    'NanoCpus',
    'MemorySwap',
    'PidsLimit',
    'ShmSize',
    'Ulimits',
    'Tmpfs',
    'CapDrop',
    'RestartPolicy',
  ] as const) {
    assert.deepEqual(h[k], b[k], `HostConfig.${k}`);
  }
  assert.deepEqual(after.NetworkingConfig, before.NetworkingConfig);
  for (const k of ['LogConfig', 'Runtime', 'MaskedPaths', 'ReadonlyPaths', 'ContainerIDFile', 'CapAdd', 'CgroupnsMode']) {
    assert.equal((h as Record<string, unknown>)[k], undefined, `HostConfig.${k} is not set`);
  }
  assert.equal(h.Privileged, false);
  assert.deepEqual(h.Devices, []);
});

test('a holder and a service joining it convert both ways', () => {
  const holder = specFromCreateOptions(holderCreateOptions({ name: 'web-netns', image: 'cloudlet/busybox:1', network: 'svc', address: '10.240.1.9' }));
  assert.deepEqual(holder.unsupported, []);
  ContainerSpecSchema.parse(holder.spec);
  const o = createOptionsFromSpec(holder.spec, { name: 'web-netns', image: 'cloudlet/busybox:1' });
  assert.deepEqual(o.NetworkingConfig, { EndpointsConfig: { svc: { IPAMConfig: { IPv4Address: '10.240.1.9' } } } });
  const joined = joiningHolder({ name: 'web', Image: 'x', Cmd: ['a'], HostConfig: { NetworkMode: 'container:abc', Binds: ['v:/v'] } }, 'web-netns');
  const spec = ContainerSpecSchema.parse(specFromCreateOptions(joined).spec);
  assert.equal(spec.network.mode, 'container:web-netns');
  assert.deepEqual(createOptionsFromSpec(spec, { name: 'web', image: 'x' }).HostConfig, { NetworkMode: 'container:web-netns', Binds: ['v:/v'] });
});

test('settings a spec cannot carry are named (the source refuses them before anything starts)', () => {
  const { unsupported } = specFromCreateOptions(
    twinCreateOptions(inspected({ CgroupParent: '/host.slice', VolumesFrom: ['other'], OomKillDisable: true, DeviceRequests: [{ Driver: 'nvidia' }] })),
  );
  assert.deepEqual(unsupported.sort(), ['HostConfig.CgroupParent', 'HostConfig.DeviceRequests', 'HostConfig.OomKillDisable', 'HostConfig.VolumesFrom']);
  const mountOpts = specFromCreateOptions({
    HostConfig: { Mounts: [{ Type: 'volume', Source: 'v', Target: '/v', VolumeOptions: { DriverConfig: { Name: 'nfs' } } }] },
  } as never);
  assert.deepEqual(mountOpts.unsupported, ['HostConfig.Mounts']);
  const details = { name: 'web', createOptions: twinCreateOptions(inspected({ CgroupParent: '/host.slice' })) };
  assert.throws(() => twinSpecOf(details), /container 'web' has settings a handoff cannot carry: HostConfig\.CgroupParent/);
  const negative = { name: 'web', createOptions: twinCreateOptions(inspected({ OomScoreAdj: -500 })) };
  assert.throws(() => twinSpecOf(negative), /spec\.oomScoreAdj/);
});

test('the schema refuses unknown fields by name, at every level', () => {
  const ok: ContainerSpec = { network: { mode: 'none' } };
  assert.equal(ContainerSpecSchema.safeParse(ok).success, true);
  const cases: Array<[unknown, RegExp]> = [
    [{ ...ok, HostConfig: { Privileged: true } }, /HostConfig/],
    [{ ...ok, cgroupParent: '/x' }, /cgroupParent/],
    [{ network: { mode: 'none', Privileged: true } }, /Privileged/],
    [{ ...ok, resources: { memory: 1, kernelMemory: 5 } }, /kernelMemory/],
    [{ ...ok, binds: [{ source: 'v', target: '/v', propagation: 'rshared' }] }, /propagation/],
    [{ ...ok, devices: [{ pathOnHost: '/dev/sda', pathInContainer: '/dev/sda', extra: 1 }] }, /extra/],
  ];
  for (const [body, name] of cases) {
    const r = ContainerSpecSchema.safeParse(body);
    assert.equal(r.success, false, JSON.stringify(body));
    const text = r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    assert.match(text, /Unrecognized key/, text);
    assert.match(text, name, text);
  }
});

test('the schema refuses malformed values, naming the field', () => {
  const bad: Array<[unknown, string]> = [
    [{ network: { mode: 'container:../x' } }, 'network.mode'],
    [{ network: { mode: 'none' }, binds: [{ source: 'relative/path', target: '/x' }] }, 'binds.0.source'],
    [{ network: { mode: 'none' }, binds: [{ source: 'v', target: '/x', options: 'ro,bind-propagation' }] }, 'binds.0.options'],
    [{ network: { mode: 'none' }, oomScoreAdj: -1000 }, 'oomScoreAdj'],
    [{ network: { mode: 'none' }, pidMode: 'container:other' }, 'pidMode'],
    [{ network: { mode: 'none' }, ipcMode: 'container:other' }, 'ipcMode'],
    [{ network: { mode: 'svc', endpoints: { svc: { ipv4Address: '10.240.1' } } } }, 'network.endpoints.svc.ipv4Address'],
    [{}, 'network'],
  ];
  for (const [body, path] of bad) {
    const r = ContainerSpecSchema.safeParse(body);
    assert.equal(r.success, false, JSON.stringify(body));
    assert.ok(
      r.error!.issues.some((i) => i.path.join('.') === path),
      `${path} in ${JSON.stringify(r.error!.issues)}`,
    );
  }
});
