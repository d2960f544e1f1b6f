// Between Docker's create options and the container spec that crosses the wire
// (src/api/schemas/container-spec.ts). The source turns an inspected container's options into
// a spec (specFromCreateOptions: every setting is either carried, left to the destination's
// engine, or refused by name); the destination builds Docker's options from a spec field by
// field (createOptionsFromSpec), never spreading what a peer sent.
import type Docker from 'dockerode';
import type { ContainerSpec } from '../api/schemas/container-spec.js';
import type { ContainerCreateOptions } from './docker-types.js';

export type { ContainerSpec } from '../api/schemas/container-spec.js';

type Obj = Record<string, unknown>;

/**
 * Settings the destination's engine decides for itself: they are not carried, whatever the
 * source had (its own log driver and runtime, Docker's default masked paths...).
 */
const LEFT_TO_DESTINATION = new Set([
  'name',
  'Image',
  'ArgsEscaped',
  'OnBuild',
  'Shell',
  'ContainerIDFile',
  'LogConfig',
  'ConsoleSize',
  'Isolation',
  'MaskedPaths',
  'ReadonlyPaths',
  'Runtime',
  'CgroupnsMode',
]);

/** The keys of HostConfig.Mounts entries a spec carries (Consistency is for Docker Desktop only). */
const MOUNT_KEYS = new Set(['Type', 'Source', 'Target', 'ReadOnly', 'TmpfsOptions', 'Consistency']);

/** A setting at its default (`docker inspect` lists nearly every key, most of them empty). */
function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === 0 || v === false) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.values(v as Obj).every(isEmpty);
  return false;
}

/** Copies `obj[key]`, mapped, to `out[as]` when set (undefined and null stay out); marks `key` used. */
function take(out: Obj, obj: Obj, used: Set<string>, key: string, as: string, map: (v: never) => unknown = (v) => v): void {
  used.add(key);
  const v = obj[key];
  if (v === undefined || v === null) return;
  out[as] = map(v as never);
}

function parseBind(b: string): ContainerSpec['binds'] extends (infer T)[] | undefined ? T : never {
  const [source = '', target = '', ...rest] = b.split(':');
  return { source, target, ...(rest.length > 0 ? { options: rest.join(':') } : {}) };
}

function configFields(o: Obj, used: Set<string>): Obj {
  const s: Obj = {};
  const pairs: Array<[string, string]> = [
    ['Hostname', 'hostname'],
    ['Domainname', 'domainname'],
    ['User', 'user'],
    ['WorkingDir', 'workingDir'],
    ['Entrypoint', 'entrypoint'],
    ['Cmd', 'cmd'],
    ['Env', 'env'],
    ['Labels', 'labels'],
    ['Tty', 'tty'],
    ['OpenStdin', 'openStdin'],
    ['StdinOnce', 'stdinOnce'],
    ['AttachStdin', 'attachStdin'],
    ['AttachStdout', 'attachStdout'],
    ['AttachStderr', 'attachStderr'],
    ['StopSignal', 'stopSignal'],
    ['StopTimeout', 'stopTimeout'],
  ];
  for (const [k, as] of pairs) take(s, o, used, k, as);
  // Docker's `Entrypoint`/`Cmd` may be a string in old API versions.
  for (const k of ['entrypoint', 'cmd']) if (typeof s[k] === 'string') s[k] = [s[k]];
  take(s, o, used, 'ExposedPorts', 'exposedPorts', (v: Obj) => Object.keys(v));
  take(s, o, used, 'Volumes', 'volumes', (v: Obj) => Object.keys(v));
  take(s, o, used, 'Healthcheck', 'healthcheck', (h: Obj) => ({
    test: h.Test ?? [],
    ...(h.Interval ? { interval: h.Interval } : {}),
    ...(h.Timeout ? { timeout: h.Timeout } : {}),
    ...(h.Retries ? { retries: h.Retries } : {}),
    ...(h.StartPeriod ? { startPeriod: h.StartPeriod } : {}),
  }));
  return s;
}

function hostFields(h: Obj, used: Set<string>): Obj {
  const s: Obj = {};
  const pairs: Array<[string, string]> = [
    ['AutoRemove', 'autoRemove'],
    ['Init', 'init'],
    ['ReadonlyRootfs', 'readonlyRootfs'],
    ['GroupAdd', 'groupAdd'],
    ['OomScoreAdj', 'oomScoreAdj'],
    ['Sysctls', 'sysctls'],
    ['Tmpfs', 'tmpfs'],
    ['Privileged', 'privileged'],
    ['CapAdd', 'capAdd'],
    ['CapDrop', 'capDrop'],
    ['PidMode', 'pidMode'],
    ['IpcMode', 'ipcMode'],
    ['UTSMode', 'utsMode'],
    ['UsernsMode', 'usernsMode'],
    ['SecurityOpt', 'securityOpt'],
  ];
  for (const [k, as] of pairs) take(s, h, used, k, as);
  take(s, h, used, 'RestartPolicy', 'restartPolicy', (r: Obj) => ({
    name: r.Name ?? '',
    ...(r.MaximumRetryCount ? { maximumRetryCount: r.MaximumRetryCount } : {}),
  }));
  take(s, h, used, 'Binds', 'binds', (b: string[]) => b.map(parseBind));
  take(s, h, used, 'Mounts', 'mounts', (ms: Obj[]) =>
    ms.map((m) => {
      const tmpfs = (m.TmpfsOptions ?? {}) as Obj;
      // Driver, bind and volume options cannot travel: such a mount refuses the handoff.
      if (Object.entries(m).some(([k, v]) => !MOUNT_KEYS.has(k) && !isEmpty(v))) used.delete('Mounts');
      return {
        type: m.Type,
        ...(m.Source !== undefined ? { source: m.Source } : {}),
        target: m.Target,
        ...(m.ReadOnly ? { readOnly: true } : {}),
        ...(tmpfs.SizeBytes ? { tmpfsSizeBytes: tmpfs.SizeBytes } : {}),
        ...(tmpfs.Mode ? { tmpfsMode: tmpfs.Mode } : {}),
      };
    }),
  );
  take(s, h, used, 'Devices', 'devices', (ds: Obj[]) =>
    ds.map((d) => ({
      pathOnHost: d.PathOnHost,
      pathInContainer: d.PathInContainer,
      ...(d.CgroupPermissions ? { cgroupPermissions: d.CgroupPermissions } : {}),
    })),
  );
  const r: Obj = {};
  const resources: Array<[string, string]> = [
    ['Memory', 'memory'],
    ['MemorySwap', 'memorySwap'],
    ['MemoryReservation', 'memoryReservation'],
    ['NanoCpus', 'nanoCpus'],
    ['CpuShares', 'cpuShares'],
    ['CpuQuota', 'cpuQuota'],
    ['CpuPeriod', 'cpuPeriod'],
    ['CpusetCpus', 'cpusetCpus'],
    ['CpusetMems', 'cpusetMems'],
    ['PidsLimit', 'pidsLimit'],
    ['ShmSize', 'shmSize'],
  ];
  for (const [k, as] of resources) take(r, h, used, k, as);
  take(r, h, used, 'Ulimits', 'ulimits', (us: Obj[]) => us.map((u) => ({ name: u.Name, soft: u.Soft, hard: u.Hard })));
  if (Object.keys(r).length > 0) s.resources = r;
  return s;
}

function networkFields(o: Obj, h: Obj, usedTop: Set<string>, usedHost: Set<string>): Obj {
  const n: Obj = { mode: (h.NetworkMode as string | undefined) || 'default' };
  usedHost.add('NetworkMode');
  take(n, o, usedTop, 'MacAddress', 'macAddress');
  take(n, o, usedTop, 'NetworkDisabled', 'disabled');
  for (const [k, as] of [
    ['Dns', 'dns'],
    ['DnsOptions', 'dnsOptions'],
    ['DnsSearch', 'dnsSearch'],
    ['ExtraHosts', 'extraHosts'],
    ['PublishAllPorts', 'publishAllPorts'],
  ] as const) {
    take(n, h, usedHost, k, as);
  }
  take(n, h, usedHost, 'PortBindings', 'portBindings', (pb: Record<string, Obj[] | null>) =>
    Object.fromEntries(
      Object.entries(pb).map(([port, list]) => [
        port,
        list === null ? null : list.map((b) => ({ ...(b.HostIp ? { hostIp: b.HostIp } : {}), hostPort: b.HostPort ?? '' })),
      ]),
    ),
  );
  take(n, o, usedTop, 'NetworkingConfig', 'endpoints', (nc: Docker.ContainerCreateOptions['NetworkingConfig']) =>
    Object.fromEntries(
      Object.entries(nc?.EndpointsConfig ?? {}).map(([net, ep]) => {
        const ipam = (ep.IPAMConfig ?? {}) as Obj;
        return [
          net,
          {
            ...(ipam.IPv4Address ? { ipv4Address: ipam.IPv4Address } : {}),
            ...(ipam.IPv6Address ? { ipv6Address: ipam.IPv6Address } : {}),
            ...(ep.Aliases?.length ? { aliases: ep.Aliases } : {}),
            ...(ep.Links?.length ? { links: ep.Links } : {}),
          },
        ];
      }),
    ),
  );
  return n;
}

/**
 * The spec of a container from its create options (as twinCreateOptions makes them from an
 * inspection), and the settings it has that a spec cannot carry (`HostConfig.CgroupParent`,
 * `HostConfig.VolumesFrom`...): a handoff would silently drop them, so the caller refuses it.
 * What the spec holds is not yet checked against any policy, only typed.
 */
export function specFromCreateOptions(options: ContainerCreateOptions): { spec: ContainerSpec; unsupported: string[] } {
  const o = options as unknown as Obj;
  const h = (o.HostConfig ?? {}) as Obj;
  const usedTop = new Set(['HostConfig']);
  const usedHost = new Set<string>();
  const spec = { ...configFields(o, usedTop), ...hostFields(h, usedHost), network: networkFields(o, h, usedTop, usedHost) } as ContainerSpec;
  const unsupported = [
    ...Object.keys(o)
      .filter((k) => !usedTop.has(k) && !LEFT_TO_DESTINATION.has(k) && !isEmpty(o[k]))
      .map((k) => k),
    ...Object.keys(h)
      .filter((k) => !usedHost.has(k) && !LEFT_TO_DESTINATION.has(k) && !isEmpty(h[k]))
      .map((k) => `HostConfig.${k}`),
  ];
  return { spec, unsupported };
}

/** `{ [key]: v }`, or nothing when v is undefined (null is kept). */
function def<T>(key: string, v: T | undefined | null): Obj {
  return v === undefined ? {} : { [key]: v };
}

/** HostConfig: the network mode, DNS, extra hosts and published ports. */
function hostNetworkFields(n: ContainerSpec['network']): Obj {
  return {
    NetworkMode: n.mode,
    ...def('Dns', n.dns),
    ...def('DnsOptions', n.dnsOptions),
    ...def('DnsSearch', n.dnsSearch),
    ...def('ExtraHosts', n.extraHosts),
    ...def('PublishAllPorts', n.publishAllPorts),
    ...def(
      'PortBindings',
      n.portBindings &&
        Object.fromEntries(
          Object.entries(n.portBindings).map(([p, list]) => [
            p,
            list && list.map((b) => ({ ...(b.hostIp ? { HostIp: b.hostIp } : {}), HostPort: b.hostPort })),
          ]),
        ),
    ),
  };
}

/** HostConfig: restart, init, root file system, groups, sysctls, tmpfs, binds and mounts. */
function hostRuntimeFields(spec: ContainerSpec): Obj {
  return {
    ...def('RestartPolicy', spec.restartPolicy && { Name: spec.restartPolicy.name, MaximumRetryCount: spec.restartPolicy.maximumRetryCount ?? 0 }),
    ...def('AutoRemove', spec.autoRemove),
    ...def('Init', spec.init),
    ...def('ReadonlyRootfs', spec.readonlyRootfs),
    ...def('GroupAdd', spec.groupAdd),
    ...def('OomScoreAdj', spec.oomScoreAdj),
    ...def('Sysctls', spec.sysctls),
    ...def('Tmpfs', spec.tmpfs),
    ...def(
      'Binds',
      spec.binds?.map((b) => `${b.source}:${b.target}${b.options ? `:${b.options}` : ''}`),
    ),
    ...def(
      'Mounts',
      spec.mounts?.map((m) => ({
        Type: m.type,
        ...(m.source !== undefined ? { Source: m.source } : {}),
        Target: m.target,
        ...(m.readOnly ? { ReadOnly: true } : {}),
        ...(m.tmpfsSizeBytes || m.tmpfsMode ? { TmpfsOptions: { ...def('SizeBytes', m.tmpfsSizeBytes), ...def('Mode', m.tmpfsMode) } } : {}),
      })),
    ),
  };
}

/** HostConfig: memory, CPU, pids, shm and ulimits. */
function hostResourceFields(r: NonNullable<ContainerSpec['resources']>): Obj {
  return {
    ...def('Memory', r.memory),
    ...def('MemorySwap', r.memorySwap),
    ...def('MemoryReservation', r.memoryReservation),
    ...def('NanoCpus', r.nanoCpus),
    ...def('CpuShares', r.cpuShares),
    ...def('CpuQuota', r.cpuQuota),
    ...def('CpuPeriod', r.cpuPeriod),
    ...def('CpusetCpus', r.cpusetCpus),
    ...def('CpusetMems', r.cpusetMems),
    ...def('PidsLimit', r.pidsLimit),
    ...def('ShmSize', r.shmSize),
    ...def(
      'Ulimits',
      r.ulimits?.map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })),
    ),
  };
}

/** HostConfig: privileges, capabilities, devices, namespaces and security options. */
function hostSecurityFields(spec: ContainerSpec): Obj {
  return {
    ...def('Privileged', spec.privileged),
    ...def('CapAdd', spec.capAdd),
    ...def('CapDrop', spec.capDrop),
    ...def(
      'Devices',
      spec.devices?.map((d) => ({ PathOnHost: d.pathOnHost, PathInContainer: d.pathInContainer, CgroupPermissions: d.cgroupPermissions ?? 'rwm' })),
    ),
    ...def('PidMode', spec.pidMode),
    ...def('IpcMode', spec.ipcMode),
    ...def('UTSMode', spec.utsMode),
    ...def('UsernsMode', spec.usernsMode),
    ...def('SecurityOpt', spec.securityOpt),
  };
}

/** Docker's create options of a container named `name`, from `image`, as the spec says. */
export function createOptionsFromSpec(spec: ContainerSpec, o: { name: string; image: string }): ContainerCreateOptions {
  const n = spec.network;
  const r = spec.resources ?? {};
  const host: Obj = { ...hostNetworkFields(n), ...hostRuntimeFields(spec), ...hostResourceFields(r), ...hostSecurityFields(spec) };
  const endpoints = Object.entries(n.endpoints ?? {}).map(([net, ep]) => [
    net,
    {
      ...(ep.ipv4Address || ep.ipv6Address ? { IPAMConfig: { ...def('IPv4Address', ep.ipv4Address), ...def('IPv6Address', ep.ipv6Address) } } : {}),
      ...def('Aliases', ep.aliases),
      ...def('Links', ep.links),
    },
  ]);
  const hc = spec.healthcheck;
  return {
    name: o.name,
    Image: o.image,
    ...def('Hostname', spec.hostname),
    ...def('Domainname', spec.domainname),
    ...def('User', spec.user),
    ...def('WorkingDir', spec.workingDir),
    ...def('Entrypoint', spec.entrypoint),
    ...def('Cmd', spec.cmd),
    ...def('Env', spec.env),
    ...def('Labels', spec.labels),
    ...def('Tty', spec.tty),
    ...def('OpenStdin', spec.openStdin),
    ...def('StdinOnce', spec.stdinOnce),
    ...def('AttachStdin', spec.attachStdin),
    ...def('AttachStdout', spec.attachStdout),
    ...def('AttachStderr', spec.attachStderr),
    ...def('StopSignal', spec.stopSignal),
    ...def('StopTimeout', spec.stopTimeout),
    ...def('MacAddress', n.macAddress),
    ...def('NetworkDisabled', n.disabled),
    ...def('ExposedPorts', spec.exposedPorts && Object.fromEntries(spec.exposedPorts.map((p) => [p, {}]))),
    ...def('Volumes', spec.volumes && Object.fromEntries(spec.volumes.map((p) => [p, {}]))),
    ...def(
      'Healthcheck',
      hc && {
        Test: hc.test,
        ...def('Interval', hc.interval),
        ...def('Timeout', hc.timeout),
        ...def('Retries', hc.retries),
        ...def('StartPeriod', hc.startPeriod),
      },
    ),
    HostConfig: host as Docker.HostConfig,
    ...(endpoints.length > 0 ? { NetworkingConfig: { EndpointsConfig: Object.fromEntries(endpoints) } } : {}),
  } as ContainerCreateOptions;
}
