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
// - Docker 28 with the containerd image store (`containerd-snapshotter`, Docker 29's default;
//   family docker28-containerd) restores as Docker 28 does (same runc root, checkpoint dir,
//   network rule), but keeps images and R/W layers in containerd: `docker inspect` names no
//   R/W layer (it is a snapshot of containerd's overlayfs snapshotter, containerd-snapshots.ts)
//   and an image's id is its manifest's digest, not its config's. The same image therefore
//   has different ids on the two stores, so a handoff between them is refused at prepare.
import { CloudletError } from '../util/errors.js';
import { checkpointPaths, readRestoreStats } from './checkpoint-install.js';
import type { RestoreStats } from './criu-stats.js';
import type { EngineInfo, EngineVersion } from './docker-types.js';
import { engineRuncRoot } from './runc.js';
import { snapshotUpperDir } from './containerd-snapshots.js';

export type EngineFamily = 'docker20' | 'docker28' | 'docker28-containerd';

/** Where the engine keeps images and containers' R/W layers. */
export type ImageStore = 'overlay2' | 'containerd';

/** The source's engine, as a handoff's prepare tells the destination. */
export interface SourceEngine {
  version: string;
  imageStore: ImageStore;
}

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
  /** The classic overlay2 graph driver, or containerd's image store. */
  readonly imageStore: ImageStore;
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
  /**
   * The directory of a container's R/W layer (overlay upper dir), which fssync reads and
   * writes. `graphDriverUpperDir`: what `docker inspect` said (GraphDriver.Data.UpperDir).
   */
  rwLayerDir(c: { containerId: string; graphDriverUpperDir: string | null; execRoot: string | null }): Promise<string | null>;
  /** Why a handoff from that engine cannot come here, or null when it can (asked at prepare). */
  handoffRefusalFrom(source: SourceEngine): string | null;
  /** This engine as a handoff's prepare names it to the destination. */
  readonly asSource: SourceEngine;
}

/** The engine is of a version or configuration no adapter has been measured for. */
export class UnsupportedEngineError extends CloudletError {
  constructor(
    readonly probe: EngineProbe,
    reason: string,
  ) {
    super('engine_unsupported', `Docker engine ${probe.version} (storage driver ${probe.storageDriver || 'unknown'}) is not supported: ${reason}`, {
      context: { version: probe.version, storageDriver: probe.storageDriver },
      hint: 'supported: Docker 20.10 with the overlay2 storage driver, Docker 28 with overlay2 or the containerd image store (docs/engines-docker28.md)',
      kind: 'conflict',
    });
  }
}

/** major.minor.patch of an engine version string (`28.5.2+dfsg4` -> [28, 5, 2]), or null. */
export function parseEngineVersion(version: string): [number, number, number] | null {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+~].*)?$/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

// Shared by every family: measured at the same places on 20.10 and 28.5, either image store.
const commonSteps = {
  runcRoot: engineRuncRoot,
  checkpointPaths,
  readRestoreStats,
};

const STORE_PHRASE: Record<ImageStore, string> = { overlay2: 'overlay2 image store', containerd: 'containerd image store' };

/** The image-store part of every adapter: where R/W layers are, and which sources can hand off here. */
function storeSteps(version: string, imageStore: ImageStore): Pick<EngineAdapter, 'imageStore' | 'rwLayerDir' | 'handoffRefusalFrom' | 'asSource'> {
  return {
    imageStore,
    asSource: { version, imageStore },
    async rwLayerDir(c) {
      if (imageStore === 'overlay2') return c.graphDriverUpperDir;
      if (c.execRoot === null) return null;
      return snapshotUpperDir({ execRoot: c.execRoot, containerId: c.containerId });
    },
    handoffRefusalFrom(source) {
      if (source.imageStore === imageStore) return null;
      return (
        `a handoff from Docker ${source.version} (${STORE_PHRASE[source.imageStore]}) to Docker ${version} (${STORE_PHRASE[imageStore]}) is not supported: ` +
        "the two stores give the same image different ids (the overlay2 store names an image by its config's digest, containerd's by its manifest's), " +
        "so the twin's image and the shipped layers cannot be matched; hand off between engines with the same image store"
      );
    },
  };
}

function docker20(version: string): EngineAdapter {
  // 20.10 forwards routed packets to any container address; DOCKER-USER admits them.
  return {
    family: 'docker20',
    engineVersion: version,
    ...commonSteps,
    ...storeSteps(version, 'overlay2'),
    restoreRefusal: () => null,
    routedBridgeOptions: () => ({}),
    restoreScope: 'checkpoint/restore in every network mode',
  };
}

function docker28(version: string, imageStore: ImageStore): EngineAdapter {
  return {
    family: imageStore === 'containerd' ? 'docker28-containerd' : 'docker28',
    engineVersion: version,
    ...commonSteps,
    ...storeSteps(version, imageStore),
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
  // 20.10 was measured with the classic store only; 28 with both: overlay2, and the
  // containerd image store, whose /info Driver is the snapshotter's name (`overlayfs`).
  const store: ImageStore | null = probe.storageDriver === 'overlay2' ? 'overlay2' : probe.storageDriver === 'overlayfs' ? 'containerd' : null;
  if (store === null) throw new UnsupportedEngineError(probe, 'only the overlay2 storage driver and the overlayfs snapshotter have been measured');
  if (major === 20 && minor === 10) {
    if (store !== 'overlay2') throw new UnsupportedEngineError(probe, 'Docker 20.10 was measured with the overlay2 storage driver only');
    return docker20(probe.version);
  }
  if (major === 28) return docker28(probe.version, store);
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
