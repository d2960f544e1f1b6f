// The engine-version-specific steps of a handoff behind one interface (issue #18), with one
// adapter per engine family, chosen by probing the engine (its version and image store).
// No version checks elsewhere: a caller asks its adapter.
//
// What differs between the families (measured, docs/engines-docker28.md):
// - Docker 20.10 sets a restored container's network up from libnetwork's OCI prestart hook,
//   which runc runs inside `runc restore` with the real PID: every network mode restores.
// - Docker 28 dropped that hook (moby 933fcc9814, v28.0.0) and sets the sandbox key from the
//   task's PID right after the task is created (daemon/start_linux.go initializeCreatedTask);
//   containerd's shim runs `runc restore` only at start, so a restored task has PID 0 there
//   and `docker start --checkpoint` fails ("bind-mount /proc/0/ns/net"). The step is skipped
//   when the container joins another one's namespace (a netns holder), uses the host's, or
//   has NetworkDisabled: only those restore on 28.
// - Everything else Cloudlet relies on is where it was on 20.10 (runc state root, checkpoint
//   directory, containerd's unpack directory, CRIU's restore work dir), so both adapters use
//   the 20.10 code for it.
import { CloudletError } from '../util/errors.js';
import { checkpointPaths, readRestoreStats } from './checkpoint-install.js';
import type { RestoreStats } from './criu-stats.js';
import type { EngineInfo, EngineVersion } from './docker-types.js';
import { engineRuncRoot } from './runc.js';

export type EngineFamily = 'docker20' | 'docker28';

/** What the adapter is chosen by: the engine's /version and /info. */
export interface EngineProbe {
  /** Server version as the engine reports it, e.g. `20.10.24+dfsg1`, `28.5.2+dfsg4`. */
  version: string;
  /** /info Driver: `overlay2` for the classic store, `overlayfs` etc. with the containerd image store. */
  storageDriver: string;
}

/** How a container gets its network namespace, as far as a restore cares. */
export interface RestoreNetwork {
  /** HostConfig.NetworkMode: `container:<holder>`, `host`, `none`, `bridge`, a network name... */
  networkMode: string;
  /** Config.NetworkDisabled (API only): an empty namespace of its own, no libnetwork sandbox. */
  networkDisabled?: boolean;
}

export interface EngineAdapter {
  readonly family: EngineFamily;
  /** The version the adapter was chosen for. */
  readonly engineVersion: string;
  /** runc's state root of the engine's containers. */
  runcRoot(execRoot: string): string;
  /** Where a checkpoint installed for `docker start --checkpoint` goes, and its staged pages. */
  checkpointPaths(opts: { dataRoot: string; containerId: string; name: string; xdgRuntimeDir: string | null }): {
    checkpointDir: string;
    stageDir: string | null;
  };
  /** CRIU's stats of a container's last restore (null when CRIU wrote none). */
  readRestoreStats(dataRoot: string, containerId: string, criuWorkDir?: string): Promise<RestoreStats | null>;
  /**
   * Why this engine cannot restore a container with that network set-up, or null when it can.
   * Known before the freeze: a handoff must ask it at prepare.
   */
  restoreRefusal(net: RestoreNetwork): string | null;
  /**
   * Bridge driver options a network needs for its containers' addresses to be reached by
   * routing (the service network: a router sends a service's packets to the cloudlet).
   */
  routedBridgeOptions(): Record<string, string>;
  /** What this engine can restore, in a phrase (cloudlet doctor). */
  readonly restoreScope: string;
}

/** The engine is of a version or configuration no adapter has been measured for. */
export class UnsupportedEngineError extends CloudletError {
  constructor(
    readonly probe: EngineProbe,
    reason: string,
  ) {
    super('engine_unsupported', `Docker engine ${probe.version} (storage driver ${probe.storageDriver || 'unknown'}) is not supported: ${reason}`, {
      context: { version: probe.version, storageDriver: probe.storageDriver },
      hint: 'supported: Docker 20.10 and Docker 28 with the overlay2 storage driver (docs/engines-docker28.md)',
      kind: 'conflict',
    });
  }
}

/** major.minor.patch of an engine version string (`28.5.2+dfsg4` -> [28, 5, 2]), or null. */
export function parseEngineVersion(version: string): [number, number, number] | null {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+~].*)?$/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

// Shared by both families: measured at the same places on 20.10 and 28.5.
const commonSteps = {
  runcRoot: engineRuncRoot,
  checkpointPaths,
  readRestoreStats,
};

function docker20(version: string): EngineAdapter {
  // 20.10 forwards routed packets to any container address; DOCKER-USER admits them.
  return {
    family: 'docker20',
    engineVersion: version,
    ...commonSteps,
    restoreRefusal: () => null,
    routedBridgeOptions: () => ({}),
    restoreScope: 'checkpoint/restore in every network mode',
  };
}

function docker28(version: string): EngineAdapter {
  return {
    family: 'docker28',
    engineVersion: version,
    ...commonSteps,
    restoreScope: 'checkpoint/restore of services in a netns holder (cloudlet run --netns-holder), host network or NetworkDisabled only',
    // Since 28.0 the engine drops, in the raw table, packets for a container's address that
    // come from outside its bridge unless the port is published (gateway mode `nat`, the
    // default; `routed` filters the same way). `nat-unprotected` is the mode without that
    // filter: the service network's addresses are routed here on purpose, and DOCKER-USER
    // still decides what is forwarded (network/service-network.ts).
    routedBridgeOptions: () => ({ 'com.docker.network.bridge.gateway_mode_ipv4': 'nat-unprotected' }),
    restoreRefusal(net: RestoreNetwork): string | null {
      if (net.networkDisabled || net.networkMode === 'host' || /^container:.+/.test(net.networkMode)) return null;
      return (
        `Docker ${version} cannot restore a container with a network namespace of its own (network mode '${net.networkMode || 'default'}'): ` +
        'since Docker 28 the engine sets the network up from the restored task before runc has restored it (/proc/0/ns/net); ' +
        'run the service in a netns holder (cloudlet run --netns-holder)'
      );
    },
  };
}

/** The adapter for an engine of that version and image store; UnsupportedEngineError otherwise. */
export function selectEngineAdapter(probe: EngineProbe): EngineAdapter {
  const v = parseEngineVersion(probe.version);
  if (v === null) throw new UnsupportedEngineError(probe, `cannot read the version '${probe.version}'`);
  const [major, minor] = v;
  // Both families were measured with the classic store only; the containerd image store
  // (Docker 29's default) keeps images and R/W layers elsewhere.
  if (probe.storageDriver !== 'overlay2') throw new UnsupportedEngineError(probe, 'only the overlay2 storage driver has been measured');
  if (major === 20 && minor === 10) return docker20(probe.version);
  if (major === 28) return docker28(probe.version);
  // 26.1-27.x still run the prestart hook (restored in moby fde80fe2e7) and 29 changes the
  // image store's default: neither has been measured, so neither is guessed.
  throw new UnsupportedEngineError(probe, 'no adapter for this version');
}

/** Probes an engine (its /version and /info) and returns its adapter. */
export async function probeEngineAdapter(engine: {
  version(): Promise<Pick<EngineVersion, 'version'>>;
  info(): Promise<Pick<EngineInfo, 'storageDriver'>>;
}): Promise<EngineAdapter> {
  const [v, i] = await Promise.all([engine.version(), engine.info()]);
  return selectEngineAdapter({ version: v.version, storageDriver: i.storageDriver });
}
