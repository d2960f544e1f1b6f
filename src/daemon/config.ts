// cloudletd's configuration file (JSON), validated with zod so that a bad file is refused
// with the exact field at fault instead of failing later.
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { isIP } from 'node:net';
import { z } from 'zod';
import { UsageError } from '../util/errors.js';
import { serviceNetworkSchema } from '../network/service-network.js';
import { NODE_NAME } from '../util/names.js';
import { HOST_NAMESPACES, STRICT_CONTAINER_POLICY } from '../migration/container-policy.js';

export { NODE_NAME };

const listenSchema = z.union([
  z.object({ host: z.string().min(1), port: z.number().int().min(0).max(65535) }).strict(),
  z.object({ socket: z.string().min(1) }).strict(),
]);

/** An absolute, normal host path (no `.`, `..`, `//` or trailing `/`): compared as written. */
const hostRoot = z
  .string()
  .regex(/^\/[^\0]*$/, 'an absolute path')
  .refine((p) => p === '/' || (posix.normalize(p) === p && !p.endsWith('/')), 'a normal path (no ., .., // or trailing /)');

const containerPolicySchema = z
  .object({
    privileged: z.boolean().default(STRICT_CONTAINER_POLICY.privileged),
    hostNamespaces: z.array(z.enum(HOST_NAMESPACES)).default([]),
    capabilities: z.array(z.string().regex(/^(CAP_)?[A-Za-z_]+$/, 'a capability name (SYS_ADMIN, NET_ADMIN..., or ALL)')).default([]),
    devices: z.array(hostRoot).default([]),
    bindMountRoots: z.array(hostRoot).default([]),
    namedVolumes: z.boolean().default(STRICT_CONTAINER_POLICY.namedVolumes),
    securityOptions: z.array(z.string().min(1)).default([]),
  })
  .strict();

export const daemonConfigSchema = z
  .object({
    /** This cloudlet's name, unique within the deployment. */
    node: z.string().regex(NODE_NAME, 'lower-case letters, digits and dashes, starting with a letter'),
    /** Where the HTTP API listens: TCP addresses and/or unix sockets. Default: 127.0.0.1:7070. */
    listen: z
      .array(listenSchema)
      .min(1)
      .default([{ host: '127.0.0.1', port: 7070 }]),
    /** Bearer token shared by the cloudlets of one deployment. */
    token: z.string().min(16, 'token must be at least 16 characters'),
    /** The Docker engine this cloudlet drives. */
    dockerSocket: z.string().min(1).default('/var/run/docker.sock'),
    /** Docker's exec-root: runc's state for the engine's containers lives below it. */
    dockerExecRoot: z.string().min(1).default('/var/run/docker'),
    /** Docker's data-root. */
    dockerDataRoot: z.string().min(1).default('/var/lib/docker'),
    /**
     * XDG_RUNTIME_DIR of the engine (containerd unpacks checkpoints below it). Known, it lets
     * restores link the big page files instead of copying them through containerd; null
     * makes restores copy everything (slower, always works).
     */
    dockerXdgRuntimeDir: z.string().min(1).nullable().default(null),
    /**
     * Restore with CRIU's local lazy pages: the migrated service runs before its memory is
     * all in, and `criu lazy-pages` fills it from this machine (src/engine/lazy-pages.ts).
     * Needs the engine's own CRIU configuration file (the one its runc passes to CRIU; the
     * lab gives each engine one), the `work-dir` that file sets, and the CRIU to run the
     * daemon with. Null: eager restores (every page copied before the service runs).
     */
    lazyRestore: z
      .object({ criuConfigFile: z.string().min(1), workDir: z.string().min(1), criu: z.string().min(1).default('criu') })
      .strict()
      .nullable()
      .default(null),
    /**
     * The engine's own CRIU configuration file (the one its runc passes to CRIU), extended for
     * one restore at a time with what only that restore needs (src/engine/criu-config.ts).
     * Handoffs with `tcpClose` need it on both sides. Default: lazyRestore's, when set.
     */
    criuConfigFile: z.string().min(1).nullable().default(null),
    /** Directory for cloudletd's own state (SQLite database). */
    dataDir: z.string().min(1),
    /**
     * Scratch space for migration staging (dumps, received rounds): hundreds of MB written and
     * dropped per handoff. Best on tmpfs: on a disk, their writeback competes with the
     * downtime-critical work. Default: DATA_DIR/scratch.
     */
    scratchDir: z.string().min(1).nullable().default(null),
    /**
     * Pages of earlier handoffs kept per container image (src/checkpoint/page-cache.ts): a
     * handoff of that image to this cloudlet, or back to it, sends only the pages it lacks.
     * `dir` defaults to SCRATCH/page-cache; oldest entries go first beyond `maxMB` or after
     * `maxAgeSeconds`. Null: no pages kept, none offered.
     */
    pageCache: z
      .object({
        dir: z.string().min(1).optional(),
        maxMB: z.number().int().min(1).default(1024),
        maxAgeSeconds: z.number().int().min(1).default(900),
      })
      .strict()
      .nullable()
      .default({}),
    /**
     * Other cloudlets of the deployment. `cert`: the name (CN) of the client certificate the
     * peer presents under mutual TLS (default: its name), see `tls.ca`.
     */
    peers: z.array(z.object({ name: z.string().regex(NODE_NAME), url: z.string().url(), cert: z.string().min(1).max(64).optional() }).strict()).default([]),
    /**
     * HTTPS on the TCP listeners (unix sockets stay plain: their file mode guards them). PEM
     * files: this cloudlet's certificate (chain) and key; `ca`, the deployment's CA, is also
     * what peers are verified against when `peerCa` is not set. With `ca`, TLS is mutual:
     * the listeners ask for a client certificate of that CA, peer routes accept only the
     * certificate of a configured peer (src/daemon/peer-auth.ts), and this cloudlet presents
     * `cert` and `key` when it calls its peers.
     */
    tls: z
      .object({ cert: z.string().min(1), key: z.string().min(1), ca: z.string().min(1).optional() })
      .strict()
      .optional(),
    /** PEM file of the CA that https peer certificates must chain to (default: tls.ca, else the system's CAs). */
    peerCa: z.string().min(1).optional(),
    /** Size limits of what clients and peers may send; exceeding one is refused with 413. */
    limits: z
      .object({
        /** JSON request bodies. */
        requestBodyBytes: z
          .number()
          .int()
          .positive()
          .default(1 << 20),
        /** One overlay file or image archive upload, as sent. */
        overlayBytes: z
          .number()
          .int()
          .positive()
          .default(8 * 2 ** 30),
        /** One migration round upload, as sent (framed, compressed). */
        roundBytes: z
          .number()
          .int()
          .positive()
          .default(4 * 2 ** 30),
        /** One artifact of a round once decoded (rounds are held in memory artifact by artifact). */
        roundArtifactBytes: z
          .number()
          .int()
          .positive()
          .max(2 ** 32)
          .default(2 ** 32),
      })
      .strict()
      .default({}),
    /**
     * The network services live on: same name and subnet on every cloudlet, so that a moved
     * service keeps its address (see src/network/service-network.ts). Null: services get the
     * engine's default bridge and a migration cannot keep their connections.
     */
    serviceNetwork: serviceNetworkSchema.nullable().default(null),
    /**
     * A started network namespace holder kept ready for incoming handoffs of services that
     * join one (src/network/netns-holder.ts): \`image\` (it needs a \`sleep\`) and the network
     * mode it stands for. Null: each such handoff starts its holder itself (~0.3 s more).
     */
    netnsSpare: z
      .object({ image: z.string().min(1), network: z.string().min(1) })
      .strict()
      .nullable()
      .default(null),
    /**
     * What a peer's handoff may create here beyond the container spec's plain fields (image,
     * command, env, labels, user, resources, named volumes, the service address...): checked
     * at prepare, before the source freezes anything; a request outside it is refused (403)
     * with the field and the key below that would allow it. Defaults: nothing host-reaching.
     */
    containerPolicy: containerPolicySchema.default({}),
    /**
     * Lets migration requests inject faults (tests, the lab); never on in production. cloudletd
     * also needs CLOUDLET_LAB_FAULTS=1 in its environment to start with it (checkFaultInjection).
     */
    allowFaultInjection: z.boolean().default(false),
    /**
     * Lets cloudletd listen on a non-loopback TCP address without TLS, or call peers over plain
     * http at non-loopback addresses: anyone on the network can then read the token and the
     * migrated memory. Refused unless set; logged as a warning at every start when used.
     */
    insecure: z.boolean().default(false),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.insecure) return;
    for (const w of plainTextExposures(c)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: w.path, message: w.message });
  });

export type DaemonConfig = z.infer<typeof daemonConfigSchema>;
export type DaemonConfigInput = z.input<typeof daemonConfigSchema>;

export function parseDaemonConfig(raw: unknown, source = 'config'): DaemonConfig {
  const r = daemonConfigSchema.safeParse(raw);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new UsageError(`invalid cloudletd configuration in ${source}: ${issues.join('; ')}`, {
      context: { source, issues },
    });
  }
  return r.data;
}

export function loadDaemonConfig(path: string): DaemonConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read cloudletd configuration ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`cloudletd configuration ${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseDaemonConfig(raw, path);
}

/** The environment variable that, with allowFaultInjection, lets cloudletd start with fault injection on. */
export const LAB_FAULTS_ENV = 'CLOUDLET_LAB_FAULTS';

/**
 * Refuses `allowFaultInjection: true` unless CLOUDLET_LAB_FAULTS=1 is in the environment too.
 * A fault point makes a migration fail on purpose when a request asks for it: one key in a
 * configuration file (copied from a lab's, or edited) must not be enough to arm that on a
 * production cloudlet. The lab sets the variable for the daemons it starts (src/lab/lab.ts).
 */
export function checkFaultInjection(config: DaemonConfig, source = 'config', env: NodeJS.ProcessEnv = process.env): void {
  if (config.allowFaultInjection && env[LAB_FAULTS_ENV] !== '1') {
    throw new UsageError(
      `${source} sets allowFaultInjection: true, but ${LAB_FAULTS_ENV}=1 is not in cloudletd's environment: ` +
        'fault injection is for the lab only (the lab sets both)',
      {
        context: { source, allowFaultInjection: true, [LAB_FAULTS_ENV]: env[LAB_FAULTS_ENV] ?? null },
        hint: `remove allowFaultInjection from ${source}; on a lab or test machine, start cloudletd with ${LAB_FAULTS_ENV}=1`,
      },
    );
  }
}

/** 127.0.0.0/8, ::1, localhost: addresses no other machine reaches. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h.startsWith('::ffff:127.');
}

interface Exposure {
  path: (string | number)[];
  message: string;
}

/**
 * Where this configuration would carry the API in clear text over a network: a non-loopback
 * TCP listener without `tls`, a peer called over plain http at a non-loopback host. Refused
 * unless `insecure: true` (then each is a warning at start: insecureWarnings).
 */
function plainTextExposures(c: { listen: DaemonConfig['listen']; tls?: unknown; peers: DaemonConfig['peers'] }): Exposure[] {
  const out: Exposure[] = [];
  const fix = 'configure tls (cloudlet ca init / ca issue), listen on 127.0.0.1 or a unix socket, or set insecure: true';
  c.listen.forEach((l, i) => {
    if ('host' in l && !c.tls && !isLoopbackHost(l.host)) {
      out.push({ path: ['listen', i, 'host'], message: `listening on ${l.host} without TLS exposes the token and migrated memory: ${fix}` });
    }
  });
  c.peers.forEach((p, i) => {
    let u: URL;
    try {
      u = new URL(p.url);
    } catch {
      return; // the url's own check names it
    }
    if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
      out.push({ path: ['peers', i, 'url'], message: `peer ${p.name} at ${p.url} would be called over plain http: use https, or set insecure: true` });
    }
  });
  return out;
}

/** The warnings cloudletd logs at start for what `insecure: true` lets through (none without it). */
export function insecureWarnings(config: DaemonConfig): string[] {
  if (!config.insecure) return [];
  return plainTextExposures(config).map((e) => `INSECURE (insecure: true): ${e.message}`);
}

/** Whether TLS is mutual: listeners ask for client certificates of the deployment CA (tls.ca). */
export function mutualTls(config: DaemonConfig): boolean {
  return config.tls?.ca !== undefined;
}

/** The certificate name (CN) a peer presents: its `cert`, default its name. */
export function peerCertName(peer: DaemonConfig['peers'][number]): string {
  return peer.cert ?? peer.name;
}
