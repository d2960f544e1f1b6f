// Network-namespace holders. A service may run in the network namespace of a holder: a
// container that does nothing but keep that namespace (and the service address in it)
// alive, the service joining it with HostConfig.NetworkMode = container:<holder>, as a pod's
// pause container does.
//
// Why it matters for a handoff: a container with a namespace of its own gets it set up by
// Docker inside the restore, while it is frozen (runc runs libnetwork's prestart hook, which
// re-executes dockerd to create the veth and assign the address, even for --network none).
// A container joining a holder has no such hook, and the destination's holder is made during
// pre-copy, before the freeze. On the lab (`bench migrate` reports it as the engine floor),
// `docker start --checkpoint` of the busybox counter took 389-452 ms joined to a holder
// against 483-589 ms with --network none and 684-729 ms on the service network.
//
// A holder keeps no state worth moving: the destination starts a copy of it (same name,
// image, command, network and pinned address) and the source removes its own once the
// service has left. runc marks a joined namespace external in the dump, so CRIU neither
// dumps nor restores it: the restore lands in the destination's holder, where the service
// address already is.
import { isDeepStrictEqual } from 'node:util';
import { twinImageRef, type ContainerCreateOptions, type ContainerDetails, type DockerEngine } from '../engine/docker.js';
import { createOptionsFromSpec, specFromCreateOptions, type ContainerSpec } from '../engine/container-spec.js';
import { ConflictError, UsageError, errorMessage } from '../util/errors.js';

/** What the destination needs to start a copy of a holder. */
export interface HolderSpec {
  name: string;
  imageId: string;
  imageName: string;
  /** The holder's container, as it crosses the wire (see src/api/schemas/container-spec.ts). */
  spec: ContainerSpec;
}

/** The holder a container joins (`container:<id or name>`), or null for a namespace of its own. */
export function joinedHolderRef(details: Pick<ContainerDetails, 'createOptions'>): string | null {
  const mode = details.createOptions.HostConfig?.NetworkMode ?? '';
  return mode.startsWith('container:') ? mode.slice('container:'.length) || null : null;
}

/**
 * createOptions joining the holder named `holderName` (names are the same on every cloudlet),
 * without the network settings Docker refuses with NetworkMode container:X (20.10 on the lab:
 * "conflicting options: ... and the network mode"): Hostname, ExposedPorts, MacAddress,
 * PortBindings, PublishAllPorts, Dns, ExtraHosts, Links. Empty ones are accepted, but dropped
 * too. Those that reach here come from `docker inspect` of a container that is already in a
 * holder: Docker merges the image's EXPOSE into Config.ExposedPorts (after it checked the
 * create request) and copies the holder's hostname, so the twin of nearly any server image
 * was refused. Dropped, the twin gets the same again at create (the image's ports merged, the
 * holder's hostname). NetworkingConfig goes too: the network is the holder's, and
 * createContainer would try to connect the twin to the endpoints named there.
 * Dns* options and search domains, and Domainname, are accepted by the engine and kept.
 */
export function joiningHolder(options: ContainerCreateOptions, holderName: string): ContainerCreateOptions {
  const { Hostname: _h, ExposedPorts: _e, MacAddress: _m, NetworkingConfig: _n, ...config } = options;
  const { PortBindings: _pb, PublishAllPorts: _pa, Dns: _d, ExtraHosts: _x, Links: _l, ...host } = options.HostConfig ?? {};
  return { ...config, HostConfig: { ...host, NetworkMode: `container:${holderName}` } };
}

/**
 * The holder of `details` as the destination needs it, or null when the container has a
 * namespace of its own. Refused when the holder is shared: the other containers in it would
 * lose their network when the holder leaves with this one.
 */
export async function describeHolder(engine: DockerEngine, details: ContainerDetails): Promise<{ spec: HolderSpec; details: ContainerDetails } | null> {
  const ref = joinedHolderRef(details);
  if (ref === null) return null;
  const holder = await engine.inspectContainer(ref);
  if (!holder.running) {
    throw new ConflictError(`the network namespace holder ${holder.name} of ${details.name} is not running`);
  }
  if (joinedHolderRef(holder) !== null) {
    throw new UsageError(`the network namespace holder ${holder.name} itself joins another container's namespace: not supported`);
  }
  // Docker records the holder by id in the mode of containers joining it.
  const sharing = (await engine.listContainers(true)).filter((c) => c.id !== details.id && c.networkMode === `container:${holder.id}`).map((c) => c.name);
  if (sharing.length > 0) {
    throw new ConflictError(`${details.name} shares the network namespace of ${holder.name} with ${sharing.join(', ')}: moving it would cut them off`, {
      context: { holder: holder.name, sharing },
      hint: 'give each migrated service a holder of its own',
    });
  }
  const { spec, unsupported } = specFromCreateOptions(holder.createOptions);
  if (unsupported.length > 0) {
    throw new UsageError(`the network namespace holder ${holder.name} has settings a handoff cannot carry: ${unsupported.join(', ')}`, {
      context: { holder: holder.name, unsupported },
    });
  }
  return { spec: { name: holder.name, imageId: holder.imageId, imageName: holder.imageName, spec }, details: holder };
}

/** Creates and starts a copy of a holder; returns its id. */
export async function startHolderCopy(engine: DockerEngine, spec: HolderSpec): Promise<string> {
  // By its name where it can be (see twinImageRef): the holder's image may be here by id only.
  const Image = await twinImageRef(engine, spec.imageId, spec.imageName);
  const id = await engine.createContainer(createOptionsFromSpec(spec.spec, { name: spec.name, image: Image }));
  await engine.startContainer(id);
  return id;
}

/** The name Cloudlet gives the holder of a service. */
export function holderNameFor(service: string): string {
  return `${service}-netns`;
}

/** A holder's process: sleeps for good (the largest interval every `sleep` accepts). */
const HOLDER_CMD = ['sleep', '2147483647'];

/**
 * Create options of a new holder named `name`: HOLDER_CMD in `image` (which must have a
 * `sleep`), on `network`, with `address` pinned when given.
 */
export function holderCreateOptions(o: { name: string; image: string; network: string; address?: string | null }): ContainerCreateOptions {
  return {
    name: o.name,
    Image: o.image,
    Cmd: HOLDER_CMD,
    HostConfig: { NetworkMode: o.network, RestartPolicy: { Name: 'unless-stopped' } },
    ...(o.address ? { NetworkingConfig: { EndpointsConfig: { [o.network]: { IPAMConfig: { IPv4Address: o.address } } } } } : {}),
  };
}

/** The name of a cloudlet's spare holder. */
export const SPARE_HOLDER_NAME = 'cloudlet-netns-spare';

export interface SpareHolderTemplate {
  image: string;
  network: string;
}

/**
 * One started holder kept ready on a cloudlet (cloudletd's `netnsSpare`). A handoff whose
 * holder it can stand for (same image, command and network mode, no pinned address) renames
 * it instead of creating and starting a copy: Docker's ~0.3 s of namespace set-up then lies
 * before the handoff, not in it. It is replaced after the handoff (fill), not during it.
 * The restored processes keep the hostname they had (CRIU restores their UTS namespace);
 * only Docker's view of it (/etc/hostname, inspect) is the spare's.
 */
export class SpareHolder {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly engine: DockerEngine,
    readonly template: SpareHolderTemplate,
  ) {}

  /** Whether the spare can stand for `spec` (before looking at the engine). */
  fits(spec: HolderSpec): boolean {
    const s = spec.spec;
    const pinned = Object.keys(s.network.endpoints ?? {}).length > 0;
    return !pinned && s.network.mode === this.template.network && isDeepStrictEqual(s.cmd, HOLDER_CMD);
  }

  /**
   * Takes the spare for `spec`: renamed to spec.name, it is that holder from now on. Null
   * when it does not fit or is not there (the caller then starts a copy).
   */
  take(spec: HolderSpec): Promise<string | null> {
    return this.serialized(async () => {
      if (!this.fits(spec)) return null;
      const d = await this.engine.inspectContainerIfAny(SPARE_HOLDER_NAME);
      if (!d?.running || d.imageId !== spec.imageId) return null;
      await this.engine.renameContainer(d.id, spec.name);
      return d.id;
    });
  }

  /** Makes a started spare unless one is there; returns what it did. */
  fill(): Promise<string> {
    return this.serialized(async () => {
      const present = await this.engine.inspectContainerIfAny(SPARE_HOLDER_NAME);
      if (present?.running) return 'spare holder ready';
      if (present) await this.engine.removeContainer(SPARE_HOLDER_NAME, { force: true });
      const id = await this.engine.createContainer(holderCreateOptions({ name: SPARE_HOLDER_NAME, ...this.template }));
      await this.engine.startContainer(id);
      return `spare holder started (${this.template.image}, network ${this.template.network})`;
    });
  }

  /** fill() in the background: a failure is logged, never thrown (handoffs work without). */
  refill(log: (msg: string) => void): void {
    this.fill().catch((err: unknown) => log(`the spare network namespace holder could not be made: ${errorMessage(err)}`));
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
