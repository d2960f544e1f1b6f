// The only module that talks to the Docker Engine API. It wraps dockerode for one engine
// (one unix socket) and turns its untyped failures into CloudletErrors that name the socket,
// so that a caller can tell "engine down" (503, retry later) from "engine said no" (502).
import Docker from 'dockerode';
import { CloudletError, errorMessage } from '../util/errors.js';

/** The engine's socket is missing, refuses connections or does not answer in time. */
export class EngineUnavailableError extends CloudletError {
  constructor(readonly socketPath: string, cause: unknown) {
    super('engine_unavailable', `Docker engine at ${socketPath} is unreachable: ${errorMessage(cause)}`, {
      context: { socketPath },
      hint: 'is the engine running? (`cloudlet lab status` or `cloudlet doctor`)',
      httpStatus: 503,
      cause,
    });
  }
}

/** The engine answered, but with an error (bad request, missing container, conflict...). */
export class EngineError extends CloudletError {
  constructor(readonly socketPath: string, operation: string, readonly engineStatus: number | null, cause: unknown) {
    super('engine_error', `Docker engine at ${socketPath}: ${operation} failed: ${engineMessage(cause)}`, {
      context: { socketPath, operation, engineStatus },
      // A missing object stays a 404 for our clients; everything else is a bad gateway.
      httpStatus: engineStatus === 404 ? 404 : 502,
      cause,
    });
  }
}

export interface EngineVersion {
  version: string;
  apiVersion: string;
  minApiVersion: string | null;
  os: string;
  arch: string;
  kernelVersion: string | null;
}

export interface EngineInfo {
  name: string;
  experimental: boolean;
  storageDriver: string;
  cgroupVersion: string | null;
  dockerRootDir: string;
  containers: number;
  containersRunning: number;
  images: number;
}

export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  state: string;
  status: string;
  /** ISO 8601. */
  created: string;
}

// Errors that mean "nobody is answering on that socket" rather than "the engine refused".
const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTSOCK']);

export class DockerEngine {
  private readonly docker: Docker;

  constructor(
    readonly socketPath: string,
    opts: { timeoutMs?: number } = {},
  ) {
    // The timeout keeps a wedged engine from hanging API requests forever.
    this.docker = new Docker({ socketPath, timeout: opts.timeoutMs ?? 10_000 });
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

  /** Runs one API call and maps its failure to EngineUnavailableError or EngineError. */
  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.mapError(operation, err);
    }
  }

  private mapError(operation: string, err: unknown): CloudletError {
    const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
    if (typeof e.statusCode === 'number') return new EngineError(this.socketPath, operation, e.statusCode, err);
    if (typeof e.code === 'string' && UNREACHABLE_CODES.has(e.code)) return new EngineUnavailableError(this.socketPath, err);
    // docker-modem reports its own request timeout as a plain Error.
    if (/timeout/i.test(String(e.message ?? ''))) return new EngineUnavailableError(this.socketPath, err);
    return new EngineError(this.socketPath, operation, null, err);
  }
}

function engineMessage(err: unknown): string {
  // docker-modem puts the engine's JSON reply ({message}) in `json`.
  const json = (err as { json?: { message?: unknown } }).json;
  if (json && typeof json.message === 'string') return json.message;
  return errorMessage(err);
}
