// The container a handoff asks the destination to create: an allow-listed, typed subset of
// Docker's create options. It crosses the wire instead of the raw options (which a peer, or
// anyone holding the token, could fill with Privileged, host binds or host namespaces); the
// destination rebuilds Docker's options from it field by field (src/engine/container-spec.ts)
// and checks what only its policy may allow (src/migration/container-policy.ts) first.
// Strict at every level: a field not listed here is refused by its name.
import { z } from './zod.js';

const DOCKER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
const text = (max = 4096) => z.string().max(max);
/** An absolute path without NUL bytes (container or host side). */
const absPath = z
  .string()
  .min(1)
  .max(4096)
  .regex(/^\/[^\0]*$/, 'an absolute path');
const strings = (max = 4096, len = 4096) => z.array(text(len)).max(max);
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
/** A port as Docker keys it: `8080/tcp`. */
const portKey = z.string().regex(/^\d{1,5}(\/(tcp|udp|sctp))?$/, 'a port: NUMBER/tcp|udp|sctp');

/** HostConfig.Binds: `SOURCE:TARGET[:OPTIONS]`, SOURCE a named volume or an absolute host path. */
export const BindSchema = z
  .object({
    source: z.union([z.string().regex(DOCKER_NAME, 'a volume name'), absPath]).describe('a named volume, or an absolute host path (the policy decides)'),
    target: absPath,
    options: z
      .string()
      .regex(
        /^(ro|rw|z|Z|nocopy|shared|rshared|slave|rslave|private|rprivate)(,(ro|rw|z|Z|nocopy|shared|rshared|slave|rslave|private|rprivate))*$/,
        'bind options',
      )
      .optional(),
  })
  .strict()
  .openapi('ContainerBind');

/** HostConfig.Mounts (the mount API): volumes, host binds and tmpfs, without driver options. */
export const MountSchema = z
  .object({
    type: z.enum(['volume', 'bind', 'tmpfs']),
    source: z.union([z.literal(''), z.string().regex(DOCKER_NAME, 'a volume name'), absPath]).optional(),
    target: absPath,
    readOnly: z.boolean().optional(),
    tmpfsSizeBytes: int(0).optional(),
    tmpfsMode: int(0, 0o7777).optional(),
  })
  .strict()
  .openapi('ContainerMount');

export const DeviceSchema = z
  .object({
    pathOnHost: absPath,
    pathInContainer: absPath,
    cgroupPermissions: z
      .string()
      .regex(/^[rwm]{0,3}$/, 'r, w and/or m')
      .optional(),
  })
  .strict();

const endpointSchema = z
  .object({
    ipv4Address: z.string().ip({ version: 'v4' }).optional(),
    ipv6Address: z.string().ip({ version: 'v6' }).optional(),
    aliases: strings(64, 255).optional(),
    links: strings(64, 255).optional(),
  })
  .strict();

export const NetworkSpecSchema = z
  .object({
    mode: z
      .string()
      .regex(/^(none|default|bridge|host|container:[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}|[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})$/, 'a network mode')
      .describe("none, default, bridge, host (policy), container:<the handoff's holder>, or a network name"),
    /** Per network: the pinned address (the service network's address travels here). */
    endpoints: z.record(z.string().regex(DOCKER_NAME, 'a network name'), endpointSchema).optional(),
    macAddress: z
      .string()
      .regex(/^(([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2})?$/, 'a MAC address (or empty)')
      .optional(),
    disabled: z.boolean().optional(),
    dns: strings(16, 64).optional(),
    dnsOptions: strings(16, 255).optional(),
    dnsSearch: strings(16, 255).optional(),
    extraHosts: strings(256, 512).optional(),
    portBindings: z
      .record(
        portKey,
        z
          .array(z.object({ hostIp: text(64).optional(), hostPort: z.string().regex(/^(\d{1,5}(-\d{1,5})?)?$/, 'a host port') }).strict())
          .max(16)
          .nullable(),
      )
      .optional(),
    publishAllPorts: z.boolean().optional(),
  })
  .strict()
  .openapi('ContainerNetwork');

export const ResourcesSchema = z
  .object({
    memory: int(0).optional(),
    memorySwap: int(-1).optional(),
    memoryReservation: int(0).optional(),
    nanoCpus: int(0).optional(),
    cpuShares: int(0).optional(),
    cpuQuota: int(-1).optional(),
    cpuPeriod: int(0).optional(),
    cpusetCpus: z
      .string()
      .regex(/^[0-9,-]*$/, 'a CPU list')
      .optional(),
    cpusetMems: z
      .string()
      .regex(/^[0-9,-]*$/, 'a memory node list')
      .optional(),
    pidsLimit: int(-1).nullable().optional(),
    shmSize: int(0).optional(),
    ulimits: z
      .array(z.object({ name: z.string().regex(/^[a-z]+$/), soft: int(-1), hard: int(-1) }).strict())
      .max(32)
      .optional(),
  })
  .strict()
  .openapi('ContainerResources');

const healthcheckSchema = z
  .object({
    test: strings(64),
    interval: int(0).optional(),
    timeout: int(0).optional(),
    retries: int(0).optional(),
    startPeriod: int(0).optional(),
  })
  .strict();

/** Namespace modes a container may ask for; `host` (and `hostNamespaces` in the policy) shares the host's. */
export const NAMESPACE_MODE = z.enum(['', 'host']);

export const ContainerSpecSchema = z
  .object({
    hostname: text(255).optional(),
    domainname: text(255).optional(),
    user: text(255).optional(),
    workingDir: text().optional(),
    entrypoint: strings(4096, 65536).nullable().optional(),
    cmd: strings(4096, 65536).nullable().optional(),
    env: strings(4096, 65536).optional(),
    labels: z.record(text(255), text(65536)).optional(),
    tty: z.boolean().optional(),
    openStdin: z.boolean().optional(),
    stdinOnce: z.boolean().optional(),
    attachStdin: z.boolean().optional(),
    attachStdout: z.boolean().optional(),
    attachStderr: z.boolean().optional(),
    exposedPorts: z.array(portKey).max(256).optional(),
    /** Config.Volumes: the paths the image declares (each is covered by a named bind). */
    volumes: z.array(absPath).max(256).optional(),
    stopSignal: text(32).optional(),
    stopTimeout: int(0).nullable().optional(),
    healthcheck: healthcheckSchema.optional(),
    restartPolicy: z
      .object({ name: z.enum(['', 'no', 'always', 'unless-stopped', 'on-failure']), maximumRetryCount: int(0).optional() })
      .strict()
      .optional(),
    autoRemove: z.boolean().optional(),
    init: z.boolean().nullable().optional(),
    readonlyRootfs: z.boolean().optional(),
    groupAdd: strings(64, 64).optional(),
    /** Only 0..1000: a negative score would shield the container from the host's OOM killer. */
    oomScoreAdj: int(0, 1000).optional(),
    sysctls: z.record(z.string().regex(/^[a-z0-9_.]+$/, 'a sysctl name'), text(255)).optional(),
    tmpfs: z.record(absPath, text(255)).optional(),
    binds: z.array(BindSchema).max(256).optional(),
    mounts: z.array(MountSchema).max(256).optional(),
    resources: ResourcesSchema.optional(),
    network: NetworkSpecSchema,
    // What only the destination's policy allows (src/migration/container-policy.ts).
    privileged: z.boolean().optional(),
    capAdd: z
      .array(z.string().regex(/^(CAP_)?[A-Za-z_]+$/, 'a capability name'))
      .max(64)
      .optional(),
    capDrop: z
      .array(z.string().regex(/^(CAP_)?[A-Za-z_]+$/, 'a capability name'))
      .max(64)
      .optional(),
    devices: z.array(DeviceSchema).max(64).optional(),
    pidMode: NAMESPACE_MODE.optional(),
    ipcMode: z.enum(['', 'none', 'private', 'shareable', 'host']).optional(),
    utsMode: NAMESPACE_MODE.optional(),
    usernsMode: NAMESPACE_MODE.optional(),
    securityOpt: strings(16, 255).optional(),
  })
  .strict()
  .openapi('ContainerSpec');
export type ContainerSpec = z.infer<typeof ContainerSpecSchema>;
export type ContainerBind = z.infer<typeof BindSchema>;
export type ContainerSpecMount = z.infer<typeof MountSchema>;
