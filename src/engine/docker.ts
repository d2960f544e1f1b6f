// The only module that talks to the Docker Engine API. It wraps dockerode for one engine
// (one unix socket) and turns its untyped failures into CloudletErrors that name the socket
// (docker-errors.ts). The data it answers with is in docker-types.ts, a twin's create
// options in twin-options.ts; both are re-exported here for the engine's callers.
import Docker from 'dockerode';
import { PassThrough } from 'node:stream';
import { CloudletError, ConflictError } from '../util/errors.js';
import { EngineError, mapEngineError } from './docker-errors.js';
import { twinCreateOptions } from './twin-options.js';
import type {
  BridgeNetworkSpec,
  ContainerCreateOptions,
  ContainerDetails,
  ContainerSummary,
  EngineInfo,
  EngineVersion,
  ExecResult,
  ImageDetails,
  RestartPolicy,
} from './docker-types.js';

export { EngineError, EngineUnavailableError } from './docker-errors.js';
export type * from './docker-types.js';
export { tagOf, twinCreateOptions, twinImageRef } from './twin-options.js';

export class DockerEngine {
  private readonly docker: Docker;

  constructor(
    readonly socketPath: string,
    opts: { timeoutMs?: number } = {},
  ) {
    // The timeout keeps a wedged engine from hanging API requests forever.
    this.docker = new Docker({ socketPath, timeout: opts.timeoutMs ?? 10_000 });
  }

  /** A client with another request timeout (docker-modem has one per client, not per request). */
  private client(timeoutMs: number): Docker {
    return new Docker({ socketPath: this.socketPath, timeout: timeoutMs });
  }

  async ping(): Promise<void> {
    await this.call('ping', () => this.docker.ping());
  }

  async version(): Promise<EngineVersion> {
    const v = await this.call('version', () => this.docker.version());
    return {
      version: v.Version,
      apiVersion: v.ApiVersion,
      minApiVersion: v.MinAPIVersion ?? null,
      os: v.Os,
      arch: v.Arch,
      kernelVersion: v.KernelVersion ?? null,
    };
  }

  async info(): Promise<EngineInfo> {
    // dockerode types /info loosely; read the fields we rely on defensively.
    const i = (await this.call('info', () => this.docker.info())) as Record<string, unknown>;
    return {
      name: String(i.Name ?? ''),
      experimental: i.ExperimentalBuild === true,
      storageDriver: String(i.Driver ?? ''),
      cgroupVersion: typeof i.CgroupVersion === 'string' ? i.CgroupVersion : null,
      dockerRootDir: String(i.DockerRootDir ?? ''),
      containers: Number(i.Containers ?? 0),
      containersRunning: Number(i.ContainersRunning ?? 0),
      images: Number(i.Images ?? 0),
    };
  }

  async listContainers(all: boolean): Promise<ContainerSummary[]> {
    const list = await this.call('list containers', () => this.docker.listContainers({ all }));
    return list.map((c) => ({
      id: c.Id,
      // The API reports names with a leading slash ("/web"); the first one is the real name.
      name: (c.Names[0] ?? '').replace(/^\//, ''),
      image: c.Image,
      state: c.State,
      status: c.Status,
      created: new Date(c.Created * 1000).toISOString(),
      networkMode: c.HostConfig?.NetworkMode ?? '',
    }));
  }

  /**
   * SIGKILLs every running container and returns how many were killed. Used before stopping
   * an engine: a container that ignores SIGTERM would hold dockerd's shutdown for its grace time.
   */
  async killAllContainers(): Promise<number> {
    const running = await this.call('list containers', () => this.docker.listContainers({ all: false }));
    let killed = 0;
    for (const c of running) {
      try {
        await this.call(`kill ${c.Id.slice(0, 12)}`, () => this.docker.getContainer(c.Id).kill({ signal: 'SIGKILL' }));
        killed++;
      } catch (err) {
        // 409 (not running) / 404 (gone): it exited between list and kill - the goal is met.
        if (err instanceof EngineError && (err.engineStatus === 409 || err.engineStatus === 404)) continue;
        throw err;
      }
    }
    return killed;
  }

  /** Details of one container, including what is needed to create its twin elsewhere. */
  async inspectContainer(idOrName: string): Promise<ContainerDetails> {
    const i = await this.call(`inspect ${idOrName}`, () => this.docker.getContainer(idOrName).inspect());
    const data = (i.GraphDriver?.Data ?? {}) as unknown as Record<string, unknown>;
    return {
      id: i.Id,
      name: i.Name.replace(/^\//, ''),
      imageId: i.Image,
      imageName: i.Config.Image,
      running: i.State.Running,
      pid: i.State.Pid,
      upperDir: typeof data.UpperDir === 'string' ? data.UpperDir : null,
      mounts: (i.Mounts ?? []).map((m) => ({
        type: m.Type,
        ...(m.Name ? { name: m.Name } : {}),
        source: m.Source,
        destination: m.Destination,
        rw: m.RW,
      })),
      networks: Object.fromEntries(Object.entries(i.NetworkSettings?.Networks ?? {}).map(([n, ep]) => [n, ep.IPAddress || null])),
      createOptions: twinCreateOptions(i),
    };
  }

  /**
   * Creates a container and returns its full id. Endpoints of networks other than the one
   * HostConfig.NetworkMode names are connected after the create (API 1.41 takes one at create).
   */
  async createContainer(options: ContainerCreateOptions): Promise<string> {
    const { NetworkingConfig, ...rest } = options;
    const endpoints = { ...(NetworkingConfig?.EndpointsConfig ?? {}) };
    const mode = options.HostConfig?.NetworkMode;
    const first: Docker.EndpointsConfig = {};
    if (mode !== undefined && endpoints[mode] !== undefined) {
      first[mode] = endpoints[mode]!;
      delete endpoints[mode];
    }
    const create: Docker.ContainerCreateOptions = { ...rest };
    if (Object.keys(first).length > 0) create.NetworkingConfig = { EndpointsConfig: first };
    const c = await this.call(`create ${options.name ?? options.Image ?? 'container'}`, () => this.docker.createContainer(create));
    for (const [net, endpoint] of Object.entries(endpoints)) {
      await this.call(`connect ${c.id.slice(0, 12)} to ${net}`, () => this.docker.getNetwork(net).connect({ Container: c.id, EndpointConfig: endpoint }));
    }
    return c.id;
  }

  async renameContainer(id: string, name: string): Promise<void> {
    await this.call(`rename ${id.slice(0, 12)} to ${name}`, () => this.docker.getContainer(id).rename({ name }));
  }

  async startContainer(id: string): Promise<void> {
    await this.call(`start ${id}`, () => this.docker.getContainer(id).start());
  }

  /**
   * Starts a created container from the checkpoint DATA_ROOT/containers/ID/checkpoints/NAME
   * (POST /containers/{id}/start?checkpoint=NAME). The body must stay empty: API >= 1.24
   * refuses a start with a JSON body, and docker-modem would send the options as body too.
   * Takes as long as containerd needs to copy the images (see checkpoint-install.ts), hence
   * its own timeout.
   */
  async startFromCheckpoint(id: string, checkpointName: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const modem = this.client(opts.timeoutMs ?? 300_000).modem as unknown as {
      dial(o: Record<string, unknown>, cb: (err: unknown, data: unknown) => void): void;
    };
    await this.call(
      `start ${id.slice(0, 12)} from checkpoint ${checkpointName}`,
      () =>
        new Promise<void>((resolve, reject) => {
          modem.dial(
            {
              path: `/containers/${encodeURIComponent(id)}/start?`,
              method: 'POST',
              options: { _query: { checkpoint: checkpointName }, _body: {} },
              statusCodes: { 200: true, 204: true, 304: 'container already started', 404: 'no such container', 500: 'server error' },
            },
            (err) => (err ? reject(err) : resolve()),
          );
        }),
    );
  }

  /** Stops a container (SIGTERM, SIGKILL after timeoutS); a container already stopped is fine. */
  async stopContainer(id: string, opts: { timeoutS?: number } = {}): Promise<void> {
    try {
      const t = opts.timeoutS ?? 10;
      // The engine answers after the grace time (and the kill): the request may take longer than t.
      await this.call(`stop ${id}`, () =>
        this.client((t + 30) * 1000)
          .getContainer(id)
          .stop({ t }),
      );
    } catch (err) {
      if (err instanceof EngineError && err.engineStatus === 304) return;
      throw err;
    }
  }

  /** Removes a container; returns false when it did not exist. */
  async removeContainer(id: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<boolean> {
    try {
      await this.call(`remove ${id}`, () => this.docker.getContainer(id).remove({ force: opts.force ?? false, v: opts.volumes ?? false }));
      return true;
    } catch (err) {
      if (err instanceof EngineError && err.engineStatus === 404) return false;
      throw err;
    }
  }

  /** Polls until the container is not running (after a final runc checkpoint dockerd notices the exit a little later). */
  async waitNotRunning(id: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    for (;;) {
      const i = await this.call(`inspect ${id}`, () => this.docker.getContainer(id).inspect());
      if (!i.State.Running) return;
      if (Date.now() > deadline) {
        throw new CloudletError('engine_timeout', `container ${id.slice(0, 12)} still running after ${opts.timeoutMs ?? 10_000} ms`, {
          context: { socketPath: this.socketPath, id },
          kind: 'deadline-exceeded',
        });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async imageExists(ref: string): Promise<boolean> {
    return this.exists(`inspect image ${ref}`, () => this.docker.getImage(ref).inspect());
  }

  /** Ids of the engine's tagged and untagged top-level images. */
  async listImageIds(): Promise<string[]> {
    const list = await this.call('list images', () => this.docker.listImages({ all: false }));
    return [...new Set(list.map((i) => i.Id))];
  }

  /** Id, tags and layer diff ids of an image; null when the engine does not have it. */
  async inspectImage(ref: string): Promise<ImageDetails | null> {
    try {
      const i = await this.call(`inspect image ${ref}`, () => this.docker.getImage(ref).inspect());
      return {
        id: i.Id,
        repoTags: i.RepoTags ?? [],
        diffIds: (i.RootFS?.Layers ?? []) as string[],
        size: i.Size,
      };
    } catch (err) {
      if (err instanceof EngineError && err.engineStatus === 404) return null;
      throw err;
    }
  }

  /**
   * `docker save REF` as a stream of the archive's bytes. The engine builds the archive
   * while it is read (slow for large layers: it reassembles each layer tar), hence the long
   * timeout.
   */
  async saveImage(ref: string, opts: { timeoutMs?: number } = {}): Promise<NodeJS.ReadableStream> {
    const client = this.client(opts.timeoutMs ?? 600_000);
    return this.call(`save ${ref}`, () => client.getImage(ref).get());
  }

  /**
   * `docker load`: uploads a `docker save` archive (a stream) and reads the engine's whole
   * reply. The engine reports failures inside the reply (HTTP 200 already sent), so the load
   * succeeded only when no line carries an error; returns the "Loaded image" lines.
   */
  async loadImage(archive: NodeJS.ReadableStream, opts: { timeoutMs?: number } = {}): Promise<string[]> {
    const client = this.client(opts.timeoutMs ?? 600_000);
    const reply = await this.call('load image', () => client.loadImage(archive, { quiet: true }));
    let text = '';
    for await (const chunk of reply) text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    const loaded: string[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let msg: { stream?: string; error?: string; errorDetail?: { message?: string } };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch (err) {
        throw new EngineError(this.socketPath, 'load image', null, new Error(`reply line is not JSON: ${line.slice(0, 200)}`, { cause: err }));
      }
      if (msg.error || msg.errorDetail) {
        throw new EngineError(this.socketPath, 'load image', null, new Error(msg.errorDetail?.message ?? msg.error));
      }
      if (msg.stream?.startsWith('Loaded image')) loaded.push(msg.stream.trim());
    }
    if (loaded.length === 0) {
      throw new EngineError(this.socketPath, 'load image', null, new Error(`the engine did not confirm the load: ${text.slice(0, 500)}`));
    }
    return loaded;
  }

  /** `docker tag`: `repo:tag` names image `ref` from now on (moved here if it named another). */
  async tagImage(ref: string, target: { repo: string; tag: string }): Promise<void> {
    await this.call(`tag ${ref} as ${target.repo}:${target.tag}`, () => this.docker.getImage(ref).tag({ repo: target.repo, tag: target.tag }));
  }

  /** Removes an image (by id or reference); returns false when it did not exist. */
  async removeImage(ref: string, opts: { force?: boolean } = {}): Promise<boolean> {
    try {
      await this.call(`remove image ${ref}`, () => this.docker.getImage(ref).remove({ force: opts.force ?? false }));
      return true;
    } catch (err) {
      if (err instanceof EngineError && err.engineStatus === 404) return false;
      throw err;
    }
  }

  /** Address on the engine's bridge and published host ports ("8080/tcp" -> host port) of a container. */
  /** The container's address (on `network` if given, else the default bridge) and published ports. */
  async containerNetwork(id: string, network?: string): Promise<{ ip: string | null; ports: Record<string, number> }> {
    const i = await this.call(`inspect ${id}`, () => this.docker.getContainer(id).inspect());
    const ports: Record<string, number> = {};
    for (const [k, v] of Object.entries(i.NetworkSettings?.Ports ?? {})) {
      const hp = (v as { HostPort?: string }[] | null)?.[0]?.HostPort;
      if (hp) ports[k] = Number(hp);
    }
    const ip = network ? i.NetworkSettings?.Networks?.[network]?.IPAddress : i.NetworkSettings?.IPAddress;
    return { ip: ip || null, ports };
  }

  /** IPv4 addresses of the endpoints on a network (containers attached to it here). */
  async networkAddresses(name: string): Promise<string[]> {
    const n = await this.call(`inspect network ${name}`, () => this.docker.getNetwork(name).inspect());
    const containers = (n.Containers ?? {}) as Record<string, { IPv4Address?: string }>;
    return Object.values(containers)
      .map((c) => (c.IPv4Address ?? '').split('/')[0]!)
      .filter((a) => a !== '');
  }

  /**
   * Creates a bridge network unless one of that name exists; an existing one must have the
   * same subnet (a service address means the same thing on every cloudlet).
   */
  async ensureBridgeNetwork(spec: BridgeNetworkSpec): Promise<'created' | 'exists'> {
    const existing = await this.call(`list networks`, () => this.docker.listNetworks({ filters: { name: [spec.name] } }));
    const same = existing.find((n) => n.Name === spec.name);
    if (same) {
      const subnets = (same.IPAM?.Config ?? []).map((c) => c.Subnet);
      if (!subnets.includes(spec.subnet)) {
        throw new ConflictError(`network '${spec.name}' exists on the engine with subnet ${subnets.join(', ') || 'none'}, not ${spec.subnet}`, {
          context: { network: spec.name, subnets, wanted: spec.subnet },
          hint: `remove it (docker network rm ${spec.name}) or configure that subnet`,
        });
      }
      const options = (same as { Options?: Record<string, string> }).Options ?? {};
      const missing = Object.entries(spec.driverOptions ?? {}).filter(([k, v]) => options[k] !== v);
      if (missing.length > 0) {
        throw new ConflictError(`network '${spec.name}' exists on the engine without ${missing.map(([k, v]) => `${k}=${v}`).join(', ')}`, {
          context: { network: spec.name, missing: Object.fromEntries(missing) },
          hint: `remove it (docker network rm ${spec.name}); cloudletd creates it again with the options this engine needs`,
        });
      }
      return 'exists';
    }
    await this.call(`create network ${spec.name}`, () =>
      this.docker.createNetwork({
        Name: spec.name,
        Driver: 'bridge',
        CheckDuplicate: true,
        IPAM: { Driver: 'default', Config: [{ Subnet: spec.subnet, Gateway: spec.gateway, ...(spec.ipRange ? { IPRange: spec.ipRange } : {}) }] },
        Options: { 'com.docker.network.bridge.enable_ip_masquerade': String(spec.masquerade), ...spec.driverOptions },
        Labels: { 'cloudlet.service-network': 'true' },
      }),
    );
    return 'created';
  }

  /** inspectContainer, or null when there is no such container (one API call, not two). */
  async inspectContainerIfAny(idOrName: string): Promise<ContainerDetails | null> {
    try {
      return await this.inspectContainer(idOrName);
    } catch (err) {
      if (err instanceof EngineError && err.engineStatus === 404) return null;
      throw err;
    }
  }

  async containerExists(nameOrId: string): Promise<boolean> {
    return this.exists(`inspect ${nameOrId}`, () => this.docker.getContainer(nameOrId).inspect());
  }

  /** Runs a command in a running container (no TTY) and collects its output and exit code. */
  async exec(id: string, cmd: readonly string[], opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const container = this.docker.getContainer(id);
    const ex = await this.call(`exec in ${id}`, () => container.exec({ Cmd: [...cmd], AttachStdout: true, AttachStderr: true }));
    const stream = await this.call(`exec start in ${id}`, () => ex.start({ hijack: true, stdin: false }));
    const out = new PassThrough();
    const err = new PassThrough();
    const outChunks: Buffer[] = [];
    const errChunks: Buffer[] = [];
    out.on('data', (d: Buffer) => outChunks.push(d));
    err.on('data', (d: Buffer) => errChunks.push(d));
    this.docker.modem.demuxStream(stream, out, err);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        stream.destroy();
        reject(
          new CloudletError('engine_timeout', `exec ${cmd.join(' ')} in ${id} did not finish in time`, {
            context: { socketPath: this.socketPath, id, cmd },
            kind: 'deadline-exceeded',
          }),
        );
      }, opts.timeoutMs ?? 60_000);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      stream.on('end', done);
      stream.on('close', done);
      stream.on('error', (e) => {
        clearTimeout(timer);
        reject(mapEngineError(this.socketPath, `exec in ${id}`, e));
      });
    });
    // The exit code is set once the process has gone; it can lag the end of the stream.
    for (let i = 0; ; i++) {
      const info = await this.call(`exec inspect in ${id}`, () => ex.inspect());
      if (!info.Running && info.ExitCode !== null) {
        return { exitCode: info.ExitCode, stdout: Buffer.concat(outChunks).toString('utf8'), stderr: Buffer.concat(errChunks).toString('utf8') };
      }
      if (i > 200) throw new CloudletError('engine_timeout', `exec ${cmd.join(' ')} in ${id}: no exit code`, { kind: 'deadline-exceeded' });
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Creates a local volume (idempotent: an existing volume of that name is reused). */
  async createVolume(name: string): Promise<void> {
    await this.call(`create volume ${name}`, () => this.docker.createVolume({ Name: name }));
  }

  /** Host path of a local volume's data (where to copy its files). */
  async volumeMountpoint(name: string): Promise<string> {
    const v = await this.call(`inspect volume ${name}`, () => this.docker.getVolume(name).inspect());
    return v.Mountpoint;
  }

  async volumeExists(name: string): Promise<boolean> {
    return this.exists(`inspect volume ${name}`, () => this.docker.getVolume(name).inspect());
  }

  async removeVolume(name: string): Promise<boolean> {
    try {
      await this.call(`remove volume ${name}`, () => this.docker.getVolume(name).remove());
      return true;
    } catch (err) {
      if (err instanceof EngineError && err.engineStatus === 404) return false;
      throw err;
    }
  }

  /**
   * Sets a container's restart policy and returns the previous one. A migration sets 'no'
   * before the final dump: the dump ends the process, and an engine restarting it at the
   * source would run the service in two places.
   */
  async setRestartPolicy(id: string, policy: RestartPolicy): Promise<RestartPolicy> {
    const before = await this.call(`inspect ${id}`, () => this.docker.getContainer(id).inspect());
    const previous: RestartPolicy = {
      Name: (before.HostConfig.RestartPolicy?.Name ?? 'no') || 'no',
      MaximumRetryCount: before.HostConfig.RestartPolicy?.MaximumRetryCount ?? 0,
    };
    await this.call(`update ${id.slice(0, 12)} restart policy`, () => this.docker.getContainer(id).update({ RestartPolicy: policy }));
    return previous;
  }

  private async exists(operation: string, fn: () => Promise<unknown>): Promise<boolean> {
    try {
      await this.call(operation, fn);
      return true;
    } catch (err) {
      if (err instanceof EngineError && err.engineStatus === 404) return false;
      throw err;
    }
  }

  /** Runs one API call and maps its failure to EngineUnavailableError or EngineError. */
  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapEngineError(this.socketPath, operation, err);
    }
  }
}
