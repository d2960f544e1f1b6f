// cloudletd's configuration file (JSON), validated with zod so that a bad file is refused
// with the exact field at fault instead of failing later.
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
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
    /** Directory for cloudletd's own state (SQLite database). */
    dataDir: z.string().min(1),
    /**
     * Scratch space for migration staging (dumps, received rounds): hundreds of MB written and
     * dropped per handoff. Best on tmpfs: on a disk, their writeback competes with the
     * downtime-critical work. Default: DATA_DIR/scratch.
     */
    scratchDir: z.string().min(1).nullable().default(null),
    /** Other cloudlets of the deployment. */
    peers: z.array(z.object({ name: z.string().regex(NODE_NAME), url: z.string().url() }).strict()).default([]),
    /**
     * HTTPS on the TCP listeners (unix sockets stay plain: their file mode guards them). PEM
     * files: this cloudlet's certificate (chain) and key; `ca`, the deployment's CA, is also
     * what peers are verified against when `peerCa` is not set.
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
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  })
  .strict();

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
