// The destination side of a handoff. The source drives; the destination:
//   prepare  - checks the image is here, creates the named volumes and a twin container (not
//              started) with the source container's configuration;
//   round k  - applies the filesystem batches to the twin's R/W layer and volumes, and keeps
//              a base image directory of the pages received so far (updated in place);
//   final    - the same, then builds the final image directory on top of the base (CRIU
//              parent images: only changed pages are written), installs it as a checkpoint
//              of the twin and starts the twin from it, and checks that it runs;
//   commit   - removes its staging data; abort - removes the twin, volumes and staging.
// Every step is journalled, so a restarted daemon knows which migrations it held.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isIPv4 } from 'node:net';
import { z } from 'zod';
import type { ServiceNetwork } from '../network/service-network.js';
import { PacketHold, type PacketHoldStats } from '../network/packet-hold.js';
import { startHolderCopy, type HolderSpec, type SpareHolder } from '../network/netns-holder.js';
import { ConflictError, CloudletError, NotFoundError, UsageError, errorMessage } from '../util/errors.js';
import { twinImageRef, type DockerEngine, type ContainerCreateOptions } from '../engine/docker.js';
import {
  checkpointPaths,
  pruneContainerdCheckpointCopies,
  removeInstalledCheckpoint,
  installCheckpoint,
  STAGE_DIR,
} from '../engine/checkpoint-install.js';
import {
  clearLeftLazyPagesOption,
  LazyPagesError,
  linkImagesForDaemon,
  serializedWithLazyRestores,
  startLazyPagesDaemon,
  withLazyPagesOption,
  type LazyPagesDaemon,
  type LazyRestoreConfig,
} from '../engine/lazy-pages.js';
import { applyDeltaInPlace } from '../checkpoint/delta-apply.js';
import { rebuildImageDir } from '../checkpoint/delta-rebuild.js';
import type { Delta } from '../checkpoint/delta-types.js';
import { decodeDelta } from '../checkpoint/delta-wire.js';
import type { PageIndex } from '../checkpoint/page-index.js';
import { applyBatch } from '../fssync/apply.js';
import type { MigrationJournal } from './journal.js';
import { NODE_NAME } from '../util/names.js';
import type { ReceivedArtifact } from './round-transport.js';
import { FAULT_STALL_MS, type FaultPoint } from './types.js';

export interface PrepareRequest {
  id: string;
  from: string;
  container: {
    name: string;
    imageId: string;
    imageName: string;
    createOptions: ContainerCreateOptions;
    volumes: string[];
    /**
     * The container's address on the service network: the twin gets it too, its established
     * TCP connections are restored, and the destination announces it when it restores.
     */
    serviceAddress?: string | null;
    /**
     * The network namespace holder the container joins: started here at prepare (same name,
     * image, network and address), so that the restore finds its namespace ready.
     */
    netnsHolder?: HolderSpec | null;
  };
}

export interface PrepareResponse {
  twinId: string;
  /** Where the twin's network namespace holder came from: the spare, a copy started now, or none. */
  holder: 'spare' | 'started' | null;
}

/** GET /v1/incoming/:id: what a restarted source asks before it commits or rolls back. */
/** POST /v1/incoming/:id/address: the service address is held and routed here. */
export interface AddressTaken {
  /** Starting the hold (queue bound, rule in place) and running the announce command. */
  holdSetupMs: number;
  announceMs: number;
}

export interface IncomingStatus {
  id: string;
  /** The destination's journal state (prepared, precopy, final, restoring, done, aborted). */
  state: string;
  twinId: string | null;
  twinRunning: boolean;
}

export interface RoundResponse {
  applyMs: number;
  rebuildMs: number;
  fsMs: number;
  /** Final round only: engine start from the checkpoint, and the container's state after it. */
  restoreMs: number | null;
  /**
   * Routing the service address here after the restore: only when the source did not move it
   * before its freeze (POST /v1/incoming/:id/address); null otherwise and without an address.
   */
  announceMs: number | null;
  /**
   * Final round: ms from the round's first byte to the moment the restored service was
   * reachable (the packets held for its address let through, or the address routed here).
   * The source ends the downtime there: what follows (closing the hold, a lazy restore's
   * post-copy) is not downtime.
   */
  reachableMs: number | null;
  /** What the hold of the service address kept while the service was away (null: no hold). */
  hold: PacketHoldStats | null;
  /**
   * Lazy restore only: from the service's address being routed here (the service runs and
   * answers) to the last page copied in by CRIU's lazy-pages daemon. The round is answered
   * after it; it is not downtime. Null for an eager restore.
   */
  postCopyMs: number | null;
  running: boolean | null;
  /** Milestones from the round's first byte: everything received, filesystem applied, base ready. */
  receivedMs: number;
  fsDoneMs: number;
  baseReadyMs: number | null;
}

interface Incoming {
  id: string;
  from: string;
  name: string;
  twinId: string;
  /** The copy of the container's network namespace holder made here (null: none). */
  holderId: string | null;
  holderFrom: PrepareResponse['holder'];
  serviceAddress: string | null;
  upperDir: string;
  volumes: Map<string, string>;
  createdVolumes: string[];
  stageDir: string;
  /** Complete image directory of the pages received so far (null before the first round). */
  baseDir: string | null;
  lastRound: number;
  /** The page layout of the last round received: the index the source sends deltas against (v2). */
  lastIndex: PageIndex | null;
  busy: boolean;
  /** Base update of the last pre-copy round, still running in the background (or done). */
  baseUpdate: Promise<void>;
  /**
   * Packets for the service address, held here from the moment the source moved the address
   * (before its freeze) until the restored sockets are there (see takeAddress).
   */
  hold: PacketHold | null;
  /** Lazy restore: the daemon's view of the final images, and the daemon while it copies. */
  lazyImagesDir?: string;
  lazyDaemon?: LazyPagesDaemon;
}

const ID_RE = /^[a-z0-9][a-z0-9-]{7,63}$/;

/**
 * Restores from a checkpoint running on this daemon's engine. containerd's unpacked copy of a
 * checkpoint ($XDG_RUNTIME_DIR/ctrd-checkpoint*) is read by CRIU until its restore ends:
 * pruning the copies while another restore runs made that restore fail ("criu failed: type
 * RESTORE"; two migrations into one cloudlet at once, found by the load test). So restores
 * are counted, and the copies are pruned only when none is in flight (the last one prunes).
 */
let restoresInFlight = 0;

export async function duringRestore<T>(fn: () => Promise<T>): Promise<T> {
  restoresInFlight++;
  try {
    return await fn();
  } finally {
    restoresInFlight--;
  }
}

export async function pruneCheckpointCopiesIfIdle(xdgRuntimeDir: string): Promise<void> {
  if (restoresInFlight === 0) await pruneContainerdCheckpointCopies(xdgRuntimeDir);
}

export interface DestinationDeps {
  engine: DockerEngine;
  db: MigrationJournal;
  dataRoot: string;
  xdgRuntimeDir: string | null;
  /** Scratch space for staging (see DaemonConfig.scratchDir). */
  scratchDir: string;
  serviceNetwork: ServiceNetwork | null;
  /** Restore with CRIU's local lazy pages (post-copy from this machine's images); null: eager. */
  lazyRestore: LazyRestoreConfig | null;
  /** The spare network namespace holder kept on this cloudlet (null: none configured). */
  spareHolder?: SpareHolder | null;
  /** Where problems that fail no handoff are told. */
  log?: (msg: string) => void;
}

/** Directly in $XDG_RUNTIME_DIR like containerd's copies, so that the images' relative links resolve. */
const LAZY_IMAGES_PREFIX = 'cloudlet-lazy-';
/** Post-copy of 256 MiB on this machine takes ~0.2 s; a daemon still busy after this has hung. */
const POST_COPY_TIMEOUT_MS = 60_000;

async function waitPostCopy(lazy: LazyPagesDaemon, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LazyPagesError(`CRIU's lazy-pages daemon (pid ${lazy.pid}) did not finish within ${timeoutMs / 1000} s`, { pid: lazy.pid })), timeoutMs);
  });
  try {
    await Promise.race([lazy.done, timeout]);
  } catch (err) {
    await lazy.stop();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

// What a peer may ask for: names as Docker and our own id scheme allow them, a digest for
// the image. createOptions is the source container's own configuration (an authenticated
// peer's, passed to the engine's API as data, never to a shell).
// Shared by both handoff strategies' prepare requests (routes-recreate.ts too).
const DOCKER_NAME = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
export const handoffIdentityFields = {
  id: z.string().regex(ID_RE, 'a migration id: lower-case letters, digits and dashes, 8..64'),
  from: z.string().regex(NODE_NAME, 'a node name'),
};
export const incomingContainerSchema = z.object({
  name: z.string().regex(DOCKER_NAME, 'a container name'),
  imageId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256 digest'),
  imageName: z.string().min(1).max(512),
  createOptions: z.record(z.unknown()),
  volumes: z.array(z.string().regex(DOCKER_NAME, 'a volume name')).max(256),
});
const holderSpecSchema = z.object({
  name: z.string().regex(DOCKER_NAME, 'a container name'),
  imageId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256 digest'),
  imageName: z.string().min(1).max(512),
  createOptions: z.record(z.unknown()),
});
const prepareSchema = z
  .object({ ...handoffIdentityFields, container: incomingContainerSchema.extend({ netnsHolder: holderSpecSchema.nullable().optional() }).passthrough() })
  .passthrough();

function parsePrepare(body: unknown): PrepareRequest {
  const r = prepareSchema.safeParse(body);
  if (!r.success) {
    throw new UsageError(`invalid prepare request: ${r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`);
  }
  return r.data as unknown as PrepareRequest;
}

export class MigrationDestination {
  private readonly incoming = new Map<string, Incoming>();

  constructor(private readonly deps: DestinationDeps) {}

  checkpointName(id: string): string {
    return `cl-${id}`;
  }

  async prepare(body: PrepareRequest): Promise<PrepareResponse> {
    const req = parsePrepare(body);
    if (this.incoming.has(req.id)) throw new ConflictError(`migration ${req.id} is already prepared here`);
    const { engine, db } = this.deps;
    const c = req.container;
    // The engine is asked everything at once (each answer is a round trip to dockerd).
    const names = [c.name, ...(c.netnsHolder ? [c.netnsHolder.name] : [])];
    const [imageHere, holderImageHere, ...taken] = await Promise.all([
      engine.imageExists(c.imageId),
      c.netnsHolder ? engine.imageExists(c.netnsHolder.imageId) : true,
      ...names.map((n) => engine.containerExists(n)),
    ]);
    if (!imageHere) {
      throw new CloudletError('image_missing', `image ${c.imageName} (${c.imageId.slice(0, 19)}) is not on this cloudlet`, {
        httpStatus: 409,
        context: { imageId: c.imageId, imageName: c.imageName },
        hint: 'ship it first as an overlay (`cloudlet overlay push`) or load the image',
      });
    }
    if (!holderImageHere) {
      throw new CloudletError('image_missing', `image ${c.netnsHolder!.imageName} of the network namespace holder ${c.netnsHolder!.name} is not on this cloudlet`, {
        httpStatus: 409,
        context: { imageId: c.netnsHolder!.imageId },
      });
    }
    const clash = names.find((_, i) => taken[i]);
    if (clash) {
      throw new ConflictError(`a container named '${clash}' already exists on the destination`, { hint: 'remove or rename it there first' });
    }
    const serviceAddress = c.serviceAddress ?? null;
    if (serviceAddress !== null) {
      if (!this.deps.serviceNetwork) {
        throw new ConflictError(`the container has service address ${serviceAddress}, but this cloudlet has no service network`, {
          hint: 'configure serviceNetwork (same name and subnet as the source) in cloudletd.json',
        });
      }
      if (!isIPv4(serviceAddress)) throw new UsageError(`invalid service address '${serviceAddress}'`);
    }
    db.insertMigration({ id: req.id, role: 'destination', container: c.name, fromNode: req.from, toNode: '', state: 'preparing', options: {} });
    const inc: Incoming = {
      id: req.id,
      from: req.from,
      name: c.name,
      twinId: '',
      holderId: null,
      holderFrom: null,
      serviceAddress,
      upperDir: '',
      volumes: new Map(),
      createdVolumes: [],
      stageDir: join(this.deps.scratchDir, 'incoming', req.id),
      baseDir: null,
      lastRound: 0,
      lastIndex: null,
      busy: false,
      baseUpdate: Promise.resolve(),
      hold: null,
    };
    this.incoming.set(req.id, inc);
    try {
      await mkdir(inc.stageDir, { recursive: true });
      for (const v of c.volumes) {
        if (await engine.volumeExists(v)) {
          throw new ConflictError(`a volume named '${v}' already exists on the destination`);
        }
        await engine.createVolume(v);
        inc.createdVolumes.push(v);
        inc.volumes.set(v, await engine.volumeMountpoint(v));
      }
      if (c.netnsHolder) {
        // Started before the source freezes (Docker's set-up of its namespace: ~0.3 s on the
        // lab), unless the spare stands for it. Started beside the final dump instead, it made
        // the dump slower on the lab's shared cores (downtime 830-914 ms against 627-821).
        const spare = (await this.deps.spareHolder?.take(c.netnsHolder)) ?? null;
        inc.holderId = spare ?? (await startHolderCopy(engine, c.netnsHolder));
        inc.holderFrom = spare ? 'spare' : 'started';
        db.updateMigration(req.id, 'destination', { state: 'preparing', report: { holderId: inc.holderId } });
      }
      // Created by the name its source was created from, tagged here if the image came by id only.
      const image = await twinImageRef(engine, c.imageId, c.imageName);
      inc.twinId = await engine.createContainer({ ...c.createOptions, Image: image });
      const twin = await engine.inspectContainer(inc.twinId);
      if (!twin.upperDir) throw new CloudletError('no_upperdir', 'the destination engine does not use overlay2: cannot sync the R/W layer');
      inc.upperDir = twin.upperDir;
      // The base of the page images lives where containerd's unpacked checkpoint can reach it
      // through a relative `parent` link (see finalRound).
      db.updateMigration(req.id, 'destination', { state: 'prepared', report: { twinId: inc.twinId, holderId: inc.holderId } });
      return { twinId: inc.twinId, holder: inc.holderFrom };
    } catch (err) {
      await this.abort(req.id, String((err as Error).message));
      throw err;
    }
  }

  /**
   * Before the source freezes: packets for the service address are held here (PacketHold)
   * and the address is routed here. From then on a client's segments wait in the hold instead
   * of being dropped at the frozen source, and reach the restored socket as soon as it exists
   * (finalRestore lets them through): the client's gap ends one round trip after the
   * restore, not at its next retransmission timer. If the handoff fails, the source routes
   * the address back and abort drops what was held.
   */
  async takeAddress(id: string): Promise<AddressTaken> {
    const inc = this.get(id);
    const svc = this.deps.serviceNetwork;
    if (inc.serviceAddress === null || !svc) throw new UsageError(`migration ${id} has no service address to route here`);
    if (inc.hold) throw new ConflictError(`the address of migration ${id} is already held here`);
    const t0 = performance.now();
    inc.hold = await PacketHold.start(inc.serviceAddress);
    const holdSetupMs = performance.now() - t0;
    this.deps.db.updateMigration(id, 'destination', { state: 'address' });
    // A failed announce leaves the hold in place until the source's abort.
    return { holdSetupMs, announceMs: await svc.announce(inc.serviceAddress) };
  }

  private get(id: string): Incoming {
    const inc = this.incoming.get(id);
    if (!inc) throw new NotFoundError('incoming migration', id);
    return inc;
  }

  /** Where the base of the page images lives: next to containerd's unpack dirs when we can. */
  private baseDirFor(inc: Incoming): string {
    const { stageDir } = checkpointPaths({
      dataRoot: this.deps.dataRoot,
      containerId: inc.twinId,
      name: this.checkpointName(inc.id),
      xdgRuntimeDir: this.deps.xdgRuntimeDir,
    });
    return join(stageDir ?? inc.stageDir, 'base');
  }

  async round(
    id: string,
    index: number,
    final: boolean,
    artifacts: AsyncIterable<ReceivedArtifact>,
    inject?: FaultPoint,
    /** The source asks for an eager restore even where this cloudlet restores lazily. */
    eagerRestore = false,
  ): Promise<RoundResponse> {
    const inc = this.get(id);
    if (inc.busy) throw new ConflictError(`migration ${id} is already applying a round`);
    if (index !== inc.lastRound + 1) throw new UsageError(`round ${index} of migration ${id} arrived after round ${inc.lastRound}`);
    inc.busy = true;
    const t0 = performance.now();
    try {
      this.deps.db.updateMigration(id, 'destination', { state: final ? 'final' : 'precopy' });
      const roundDir = join(inc.stageDir, `round-${index}`);
      const smallDir = join(roundDir, 'images');
      await mkdir(smallDir, { recursive: true });
      let delta: Delta | null = null;
      let fsMs = 0;
      let receivedMs = 0;
      const fsApplies: Promise<void>[] = [];
      try {
        for await (const a of artifacts) {
          if (a.name === 'delta') {
            // The artifact's sha256 was checked by the frame reader; re-hashing every page here
            // would only repeat that check on the path the source waits on.
            delta = decodeDelta(a.data, `round ${index} delta`, { verify: false, against: inc.lastIndex });
          } else if (a.name.startsWith('img/')) {
            const file = a.name.slice(4);
            if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(file) || /^pages-\d+\.img$/.test(file)) {
              throw new UsageError(`round ${index}: refusing image file name '${file}'`);
            }
            await writeFile(join(smallDir, file), a.data);
          } else if (a.name.startsWith('fs/')) {
            // Applied in the background (rsync) while the rest of the round arrives.
            const target = this.fsTarget(inc, a.name);
            const batch = join(roundDir, `${a.name.replace(/\//g, '_')}.batch`);
            await writeFile(batch, a.data);
            fsApplies.push(applyBatch(batch, target).then((r) => void (fsMs += r.ms)));
          } else {
            throw new UsageError(`round ${index}: unknown artifact '${a.name}'`);
          }
        }
      } finally {
        receivedMs = performance.now() - t0;
        // Every started rsync finishes (or fails) before the round is answered.
        const settled = await Promise.allSettled(fsApplies);
        const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      }
      const fsDoneMs = performance.now() - t0;
      if (!delta) throw new UsageError(`round ${index} of migration ${id} carried no page delta`);
      let baseReadyMs: number | null = null;

      let restoreMs: number | null = null;
      let announceMs: number | null = null;
      let reachableMs: number | null = null;
      let hold: PacketHoldStats | null = null;
      let postCopyMs: number | null = null;
      let running: boolean | null = null;
      let rebuildMs = 0;
      if (!final) {
        // The base is brought up to date in the background: the source is told the round
        // arrived and goes on with its next dump; the next round waits for this update.
        const d = delta;
        const update = inc.baseUpdate.then(() => this.updateBase(inc, d));
        // Marked as handled here; its failure surfaces when the next round awaits it.
        update.catch(() => undefined);
        inc.baseUpdate = update;
      } else {
        const tWait = performance.now();
        await inc.baseUpdate;
        baseReadyMs = performance.now() - t0;
        const r = await this.finalRestore(inc, delta, smallDir, inject, eagerRestore);
        // Waiting for the last base update counts as rebuilding: both are on the downtime path.
        rebuildMs = r.reachableAt - tWait - r.restoreMs - (r.announceMs ?? 0);
        restoreMs = r.restoreMs;
        announceMs = r.announceMs;
        reachableMs = r.reachableAt - t0;
        hold = r.hold;
        postCopyMs = r.postCopyMs;
        running = true;
      }
      await rm(roundDir, { recursive: true, force: true });
      inc.lastRound = index;
      inc.lastIndex = delta.index;
      return { applyMs: performance.now() - t0, rebuildMs, fsMs, restoreMs, announceMs, reachableMs, hold, postCopyMs, running, receivedMs, fsDoneMs, baseReadyMs };
    } finally {
      inc.busy = false;
    }
  }

  private async updateBase(inc: Incoming, delta: Delta): Promise<void> {
    if (inc.baseDir === null) {
      const base = this.baseDirFor(inc);
      await rm(base, { recursive: true, force: true });
      await rebuildImageDir({ baseDir: null, delta, smallImagesDir: null, outDir: base });
      inc.baseDir = base;
    } else {
      await applyDeltaInPlace(inc.baseDir, delta);
    }
  }

  private fsTarget(inc: Incoming, name: string): string {
    if (name === 'fs/rw') return inc.upperDir;
    const vol = name.startsWith('fs/vol/') ? name.slice('fs/vol/'.length) : '';
    const mp = inc.volumes.get(vol);
    if (!mp) throw new UsageError(`filesystem batch for unknown volume '${vol}'`);
    return mp;
  }

  /**
   * Builds the final image directory and starts the twin from it. With a base from pre-copy
   * and a known XDG_RUNTIME_DIR, the directory holds only the pages that changed and a
   * relative `parent` link to the base (CRIU parent images): containerd copies a few MB,
   * not the whole memory. Without a base (stop-and-copy), the full directory is installed
   * with its page files staged outside containerd's copy (installCheckpoint).
   */
  private async finalRestore(
    inc: Incoming,
    delta: Delta,
    smallDir: string,
    inject: FaultPoint | undefined,
    eagerRestore: boolean,
  ): Promise<{ restoreMs: number; announceMs: number | null; reachableAt: number; hold: PacketHoldStats | null; postCopyMs: number | null }> {
    const { engine, dataRoot, xdgRuntimeDir } = this.deps;
    const name = this.checkpointName(inc.id);
    const { checkpointDir } = checkpointPaths({ dataRoot, containerId: inc.twinId, name, xdgRuntimeDir });
    const lazyCfg = xdgRuntimeDir !== null && !eagerRestore ? this.deps.lazyRestore : null;
    // Lazy restore: CRIU's lazy-pages daemon reads the images from a view of its own, beside
    // containerd's copy (see linkImagesForDaemon and RebuildOptions.lazyView).
    const lazyDir = lazyCfg ? join(xdgRuntimeDir!, `${LAZY_IMAGES_PREFIX}${inc.twinId}-${name}`) : null;
    if (lazyDir !== null) {
      await rm(lazyDir, { recursive: true, force: true });
      inc.lazyImagesDir = lazyDir;
    }
    if (inc.baseDir !== null && xdgRuntimeDir !== null) {
      const link = `../${STAGE_DIR}/${inc.twinId}-${name}/base`;
      await rebuildImageDir({
        baseDir: inc.baseDir,
        delta,
        smallImagesDir: smallDir,
        outDir: checkpointDir,
        parent: { dir: inc.baseDir, link },
        ...(lazyDir !== null ? { lazyView: lazyDir } : {}),
      });
    } else {
      const full = join(inc.stageDir, 'final');
      await rm(full, { recursive: true, force: true });
      await rebuildImageDir({ baseDir: inc.baseDir, delta, smallImagesDir: smallDir, outDir: full });
      if (inc.baseDir !== null) await rm(inc.baseDir, { recursive: true, force: true });
      await installCheckpoint({ dataRoot, containerId: inc.twinId, name, imageDir: full, xdgRuntimeDir });
    }
    this.deps.db.updateMigration(inc.id, 'destination', { state: 'restoring' });
    if (inject === 'before-restore') {
      throw new CloudletError('injected_fault', 'injected fault: the destination fails before the restore', { httpStatus: 500 });
    }
    // Fault injection (lab only): a window in which a test kills this cloudlet's engine.
    if (inject === 'stall-before-restore') await new Promise((r) => setTimeout(r, FAULT_STALL_MS));
    const t1 = performance.now();
    if (lazyCfg && lazyDir !== null) {
      await linkImagesForDaemon(checkpointDir, lazyDir);
      await withLazyPagesOption(lazyCfg.criuConfigFile, async () => {
        inc.lazyDaemon = await startLazyPagesDaemon({ criu: lazyCfg.criu, imagesDir: lazyDir, workDir: lazyCfg.workDir, logFile: join(inc.stageDir, 'lazy-pages.log') });
        await duringRestore(() => engine.startFromCheckpoint(inc.twinId, name));
      });
    } else {
      await serializedWithLazyRestores(this.deps.lazyRestore, () => duringRestore(() => engine.startFromCheckpoint(inc.twinId, name)));
    }
    const after = await engine.inspectContainer(inc.twinId);
    if (!after.running) {
      throw new CloudletError('restore_failed', `the restored container ${inc.name} is not running after the start`, {
        context: { twinId: inc.twinId },
      });
    }
    const restoreMs = performance.now() - t1;
    // The packets held since the source moved the address (takeAddress) go on now that the
    // sockets are restored: not before, or a segment reaching the twin's network namespace
    // after Docker gave it the address but before CRIU restored the connection would be
    // answered with a reset (seen in the lab).
    let announceMs: number | null = null;
    let hold: PacketHoldStats | null = null;
    const svc = this.deps.serviceNetwork;
    if (inc.hold) inc.hold.release();
    // A source that did not move the address before its freeze: routed here only now.
    else if (inc.serviceAddress !== null && svc) announceMs = await svc.announce(inc.serviceAddress);
    const reachableAt = performance.now();
    if (inc.hold) {
      // The service runs here: a hold that cannot report its figures fails nothing.
      hold = await inc.hold.close().catch((err: unknown) => {
        this.deps.log?.(`migration ${inc.id}: ${errorMessage(err)}`);
        return null;
      });
      inc.hold = null;
    }
    // Lazy restore: the service runs and answers; the round is answered (and the source may
    // remove its copy) only once every page is in. A daemon failure fails the handoff.
    let postCopyMs: number | null = null;
    if (inc.lazyDaemon) {
      const t2 = performance.now();
      await waitPostCopy(inc.lazyDaemon, POST_COPY_TIMEOUT_MS);
      postCopyMs = performance.now() - t2;
    }
    return { restoreMs, announceMs, reachableAt, hold, postCopyMs };
  }

  /** Where a migration stands here, from the journal and the engine (also after a restart). */
  async status(id: string): Promise<IncomingStatus> {
    const row = this.deps.db.migration(id, 'destination');
    if (!row) throw new NotFoundError('incoming migration', id);
    const twinId = (row.report as { twinId?: string } | null)?.twinId ?? null;
    const twinRunning = twinId !== null && (await this.deps.engine.containerExists(twinId)) && (await this.deps.engine.inspectContainer(twinId)).running;
    return { id, state: row.state, twinId, twinRunning };
  }

  /** The source removed its copy: the twin is now the service. Drop staging data. */
  async commit(id: string): Promise<void> {
    const inc = this.get(id);
    // The service holds its address here now (it may have left from here once before).
    if (inc.serviceAddress) this.deps.db.clearMovedAddress(inc.serviceAddress);
    await this.cleanupStaging(inc);
    this.incoming.delete(id);
    this.deps.db.updateMigration(id, 'destination', { state: 'done' });
    this.refillSpare(inc);
  }

  /** After a handoff that took the spare holder: a new one, made outside any handoff's timing. */
  private refillSpare(inc: Incoming): void {
    if (inc.holderFrom === 'spare') this.deps.spareHolder?.refill(this.deps.log ?? (() => undefined));
  }

  /** Removes everything this migration made here: twin, created volumes, staging data. */
  async abort(id: string, reason: string): Promise<{ removed: string[] }> {
    const inc = this.incoming.get(id);
    const removed: string[] = [];
    if (!inc) return { removed };
    const { engine } = this.deps;
    // A background base update must be over before its directory is removed.
    await inc.baseUpdate.catch(() => undefined);
    if (inc.twinId) {
      if (await engine.removeContainer(inc.twinId, { force: true })) removed.push(`container ${inc.twinId.slice(0, 12)}`);
    }
    if (inc.holderId) {
      if (await engine.removeContainer(inc.holderId, { force: true })) removed.push(`network namespace holder ${inc.holderId.slice(0, 12)}`);
    }
    // Only now that no namespace here has the address without its sockets: what was held for
    // it is dropped (its senders retransmit to wherever the source routes the address).
    if (inc.hold) {
      inc.hold.discard();
      const h = await inc.hold.close();
      inc.hold = null;
      if (h && h.held > 0) removed.push(`${h.held} packets held for ${inc.serviceAddress} (dropped)`);
    }
    for (const v of inc.createdVolumes) {
      if (await engine.removeVolume(v)) removed.push(`volume ${v}`);
    }
    await this.cleanupStaging(inc);
    this.incoming.delete(id);
    this.refillSpare(inc);
    if (this.deps.db.migration(id, 'destination')) {
      this.deps.db.updateMigration(id, 'destination', { state: 'aborted', error: reason });
    }
    return { removed };
  }

  private async cleanupStaging(inc: Incoming): Promise<void> {
    const { dataRoot, xdgRuntimeDir } = this.deps;
    await inc.lazyDaemon?.stop();
    if (inc.lazyImagesDir) await rm(inc.lazyImagesDir, { recursive: true, force: true });
    if (inc.twinId) {
      await removeInstalledCheckpoint({ dataRoot, containerId: inc.twinId, name: this.checkpointName(inc.id), xdgRuntimeDir });
    }
    await rm(inc.stageDir, { recursive: true, force: true });
    if (xdgRuntimeDir !== null) await pruneCheckpointCopiesIfIdle(xdgRuntimeDir);
  }

  /** Migrations held when the daemon stopped: their twins were never started; remove them. */
  async recoverAfterRestart(): Promise<string[]> {
    const notes: string[] = [];
    const lazy = this.deps.lazyRestore;
    if (lazy && (await clearLeftLazyPagesOption(lazy.criuConfigFile))) {
      notes.push(`took the lazy-pages option left by an interrupted restore out of ${lazy.criuConfigFile}`);
    }
    for (const m of this.deps.db.activeMigrations('destination')) {
      const { twinId, holderId } = (m.report as { twinId?: string; holderId?: string | null } | null) ?? {};
      let twinRunning = false;
      if (twinId && (await this.deps.engine.containerExists(twinId))) {
        const d = await this.deps.engine.inspectContainer(twinId);
        twinRunning = d.running;
        if (!d.running) {
          await this.deps.engine.removeContainer(twinId, { force: true });
          notes.push(`removed the unstarted twin of migration ${m.id}`);
        }
      }
      // A running twin stays (its source commits it, asking GET /v1/incoming/:id); so does its holder.
      if (holderId && !twinRunning && (await this.deps.engine.removeContainer(holderId, { force: true }))) {
        notes.push(`removed the network namespace holder started for migration ${m.id}`);
      }
      if (twinId) {
        const { dataRoot, xdgRuntimeDir } = this.deps;
        await removeInstalledCheckpoint({ dataRoot, containerId: twinId, name: this.checkpointName(m.id), xdgRuntimeDir });
      }
      this.deps.db.updateMigration(m.id, 'destination', { state: 'aborted', error: 'daemon restarted during the migration' });
    }
    const stage = join(this.deps.scratchDir, 'incoming');
    await rm(stage, { recursive: true, force: true });
    return notes;
  }
}
