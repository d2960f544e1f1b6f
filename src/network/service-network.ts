// The service network: a Docker bridge network with the same name and subnet on every
// cloudlet, so that a service keeps its address when it moves (the twin of a migrated
// container is created with the same address). Addresses are routed to the cloudlet that
// hosts the service, not NATed: the bridge does not masquerade, and forwarding to the subnet
// is allowed in the engine's DOCKER-USER chain. Which cloudlet a service address is routed to
// is the deployment's business: cloudletd runs the configured `announce` command (argument
// list, `{address}` replaced) whenever a service address starts being served here - the lab
// points it at its router; a real deployment would update its router, SDN controller or BGP
// speaker the same way.
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import type { ContainerDetails, DockerEngine } from '../engine/docker.js';
import { probeEngineAdapter } from '../engine/engine-adapter.js';
import { CloudletError, ConflictError, UsageError } from '../util/errors.js';
import { run, tryRun } from '../util/exec.js';

const CIDR4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

function isCidr4(v: string): boolean {
  const m = CIDR4.exec(v);
  return m !== null && isIPv4(v.split('/')[0]!) && Number(m[5]) <= 32;
}

export const serviceNetworkSchema = z
  .object({
    /** Docker network name, the same on every cloudlet. */
    name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, 'letters, digits, _ . - (starting with a letter or digit)'),
    subnet: z.string().refine(isCidr4, 'an IPv4 CIDR such as 10.240.0.0/16'),
    gateway: z.string().refine((v) => isIPv4(v), 'an IPv4 address'),
    /** Where this cloudlet's engine picks new addresses (disjoint per cloudlet: no clashes after moves). */
    ipRange: z.string().refine(isCidr4, 'an IPv4 CIDR inside the subnet').nullable().default(null),
    /** Command (argument list; `{address}` is replaced) that routes a service address to this cloudlet. */
    announce: z.array(z.string().min(1)).min(1).nullable().default(null),
  })
  .strict();

export type ServiceNetworkConfig = z.infer<typeof serviceNetworkSchema>;
export type ServiceNetworkConfigInput = z.input<typeof serviceNetworkSchema>;

export class AnnounceError extends CloudletError {
  constructor(address: string, argv: readonly string[], cause: unknown) {
    super('announce_failed', `routing service address ${address} to this cloudlet failed: ${(cause as Error).message}`, {
      kind: 'internal',
      context: { address, argv },
      hint: 'check the serviceNetwork.announce command in the cloudletd configuration',
      cause,
    });
  }
}

/** The argument list of the announce command for one address. */
export function announceArgv(template: readonly string[], address: string): string[] {
  if (!isIPv4(address)) throw new UsageError(`'${address}' is not an IPv4 service address`);
  return template.map((arg) => arg.replaceAll('{address}', address));
}

/** The usable host addresses of an IPv4 CIDR (not its first and last address), in order. */
export function hostAddresses(cidr: string): string[] {
  const [ip, bits] = cidr.split('/') as [string, string];
  const prefix = Number(bits);
  const base = ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const size = 2 ** (32 - prefix);
  const start = base - (base % size);
  const out: string[] = [];
  for (let n = start + 1; n < start + size - 1 && out.length < 65_536; n++) {
    out.push([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.'));
  }
  return out;
}

export class ServiceNetwork {
  private readonly pending = new Set<string>();

  constructor(
    private readonly engine: DockerEngine,
    readonly config: ServiceNetworkConfig,
  ) {}

  get name(): string {
    return this.config.name;
  }

  /** Creates the network if missing and lets routed traffic reach it; returns what it did. */
  async ensure(): Promise<string[]> {
    const { name, subnet, gateway, ipRange } = this.config;
    const adapter = await probeEngineAdapter(this.engine);
    const made = await this.engine.ensureBridgeNetwork({ name, subnet, gateway, ipRange, masquerade: false, driverOptions: adapter.routedBridgeOptions() });
    const notes = [`network ${name} ${made}`];
    // Docker's FORWARD rules admit new connections to a bridge only for published ports;
    // service addresses are routed here, so new connections to the subnet are accepted.
    const rule = ['DOCKER-USER', '-d', subnet, '-j', 'ACCEPT'];
    const present = await tryRun('iptables', ['-w', '-C', ...rule]);
    if (present.exitCode !== 0) {
      await run('iptables', ['-w', '-I', ...rule]);
      notes.push(`forwarding to ${subnet} accepted`);
    }
    return notes;
  }

  /** The container's address on the service network (also when it is not running: the pinned one). */
  addressOf(details: ContainerDetails): string | null {
    if (!(this.name in details.networks)) return null;
    const live = details.networks[this.name];
    if (live) return live;
    const pinned = details.createOptions.NetworkingConfig?.EndpointsConfig?.[this.name]?.IPAMConfig?.IPv4Address;
    return pinned || null;
  }

  /**
   * An address for a new service: the first of this cloudlet's range that no container here
   * uses and that no service which moved away from here still holds (`movedAway`). The
   * engine's own IPAM would reuse a moved service's address as soon as it left, and then two
   * services would claim one route. Null without an ipRange (the engine then chooses).
   */
  async allocate(movedAway: ReadonlySet<string>): Promise<string | null> {
    if (!this.config.ipRange) return null;
    const inUse = await this.engine.networkAddresses(this.name);
    const used = new Set([...inUse, this.config.gateway, ...movedAway, ...this.pending]);
    for (const a of hostAddresses(this.config.ipRange)) {
      if (!used.has(a)) {
        this.pending.add(a);
        return a;
      }
    }
    throw new ConflictError(`no free service address left in ${this.config.ipRange} on this cloudlet`, {
      context: { ipRange: this.config.ipRange, inUse: used.size },
      hint: 'remove services that are gone, or give this cloudlet a larger serviceNetwork.ipRange',
    });
  }

  /**
   * The allocated address is now held by a started container (or was not used): the engine
   * knows it from here on. Until then it is pending, so concurrent provisionings never get
   * the same address (the engine reserves it only when the container starts).
   */
  release(address: string): void {
    this.pending.delete(address);
  }

  /** Routes `address` to this cloudlet; resolves with the time it took (0 when nothing is configured). */
  async announce(address: string): Promise<number> {
    if (!this.config.announce) return 0;
    const argv = announceArgv(this.config.announce, address);
    const t0 = performance.now();
    try {
      await run(argv[0]!, argv.slice(1), { timeoutMs: 10_000 });
    } catch (err) {
      throw new AnnounceError(address, argv, err);
    }
    return performance.now() - t0;
  }
}
