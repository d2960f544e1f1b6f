// Destination, prepare: the image is here, the names are free; named volumes and a twin
// container (not started) with the source container's configuration are created. A service
// in a network namespace holder gets the holder's copy first (or the spare renamed to it).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isIPv4 } from 'node:net';
import { startHolderCopy } from '../../network/netns-holder.js';
import { ConflictError, CloudletError, UsageError } from '../../util/errors.js';
import { twinImageRef } from '../../engine/docker.js';
import { createOptionsFromSpec } from '../../engine/container-spec.js';
import { probeEngineAdapter } from '../../engine/engine-adapter.js';
import { tcpCloseUnsupported } from '../../engine/criu-config.js';
import { checkBindRealPaths, checkContainerPolicy, PolicyDeniedError, STRICT_CONTAINER_POLICY } from '../container-policy.js';
import { enterState, type DestinationDeps, type Incoming } from './incoming.js';
import type { PrepareRequest } from './wire.js';

/**
 * Refuses (403, every field named) a prepare whose twin or holder asks for more than this
 * cloudlet's container policy allows. Before anything is made here or frozen at the source.
 */
export async function checkPolicy(deps: Pick<DestinationDeps, 'containerPolicy' | 'node'>, req: PrepareRequest): Promise<void> {
  const policy = deps.containerPolicy ?? STRICT_CONTAINER_POLICY;
  const c = req.container;
  const holderName = c.netnsHolder?.name ?? null;
  const checks = [
    { spec: c.spec, prefix: 'container.spec', holderName },
    ...(c.netnsHolder ? [{ spec: c.netnsHolder.spec, prefix: 'container.netnsHolder.spec', holderName: null }] : []),
  ];
  const violations = checks.flatMap((x) => {
    try {
      checkContainerPolicy(x.spec, policy, { prefix: x.prefix, holderName: x.holderName });
      return [];
    } catch (err) {
      if (err instanceof PolicyDeniedError) return err.violations;
      throw err;
    }
  });
  if (violations.length > 0) throw new PolicyDeniedError(violations, deps.node ?? null);
  for (const x of checks) await checkBindRealPaths(x.spec, policy, { prefix: x.prefix, node: deps.node });
}

/** Refuses a prepare this cloudlet cannot take (image missing, name taken, no service network). */
export async function checkPrepare(deps: DestinationDeps, req: PrepareRequest): Promise<void> {
  const first = (await prepareProblems(deps, req)).problems[0];
  if (first) throw first;
}

/**
 * Everything that keeps this cloudlet from taking the prepare, in the order a prepare reports
 * them (a missing image first: the source ships it and asks again), and the engine it runs.
 */
export async function prepareProblems(deps: DestinationDeps, req: PrepareRequest): Promise<{ engineVersion: string; problems: CloudletError[] }> {
  const { engine } = deps;
  const c = req.container;
  // The engine is asked everything at once (each answer is a round trip to dockerd).
  const names = [c.name, ...(c.netnsHolder ? [c.netnsHolder.name] : [])];
  const [adapter, imageHere, holderImageHere, ...taken] = await Promise.all([
    probeEngineAdapter(engine),
    engine.imageExists(c.imageId),
    c.netnsHolder ? engine.imageExists(c.netnsHolder.imageId) : true,
    ...names.map((n) => engine.containerExists(n)),
  ]);
  const problems: CloudletError[] = [];
  // First: an image store unlike the source's makes every later answer (image missing) moot,
  // and the source ships layers only after an image_missing.
  const storeRefusal = c.sourceEngine ? adapter.handoffRefusalFrom(c.sourceEngine) : null;
  if (storeRefusal !== null) {
    problems.push(
      new CloudletError('engine_mismatch', storeRefusal, {
        kind: 'conflict',
        context: { source: c.sourceEngine, destination: adapter.asSource },
      }),
    );
  }
  if (!imageHere) {
    problems.push(
      new CloudletError('image_missing', `image ${c.imageName} (${c.imageId.slice(0, 19)}) is not on this cloudlet`, {
        kind: 'conflict',
        context: { imageId: c.imageId, imageName: c.imageName },
        hint: 'ship it first as an overlay (`cloudlet overlay push`) or load the image',
      }),
    );
  }
  if (!holderImageHere) {
    problems.push(
      new CloudletError('image_missing', `image ${c.netnsHolder!.imageName} of the network namespace holder ${c.netnsHolder!.name} is not on this cloudlet`, {
        kind: 'conflict',
        context: { imageId: c.netnsHolder!.imageId },
      }),
    );
  }
  // What this engine version cannot restore is known now, not after the freeze.
  const refusal = adapter.restoreRefusal({ networkMode: c.spec.network.mode, networkDisabled: c.spec.network.disabled });
  if (refusal !== null) {
    problems.push(
      new CloudletError('engine_cannot_restore', refusal, {
        kind: 'conflict',
        context: { engine: adapter.engineVersion, family: adapter.family, networkMode: c.spec.network.mode },
      }),
    );
  }
  const clash = names.find((_, i) => taken[i]);
  if (clash) {
    problems.push(new ConflictError(`a container named '${clash}' already exists on the destination`, { hint: 'remove or rename it there first' }));
  }
  const serviceAddress = c.serviceAddress ?? null;
  if (serviceAddress !== null && !deps.serviceNetwork) {
    problems.push(
      new ConflictError(`the container has service address ${serviceAddress}, but this cloudlet has no service network`, {
        hint: 'configure serviceNetwork (same name and subnet as the source) in cloudletd.json',
      }),
    );
  }
  if (serviceAddress !== null && !isIPv4(serviceAddress)) problems.push(new UsageError(`invalid service address '${serviceAddress}'`));
  if (req.tcpClose && deps.criuConfigFile === null) problems.push(tcpCloseUnsupported(deps.node ?? 'the destination'));
  return { engineVersion: adapter.engineVersion, problems };
}

/** A handoff just journalled as 'preparing', nothing made for it yet. */
export function newIncoming(deps: DestinationDeps, req: PrepareRequest): Incoming {
  return {
    id: req.id,
    from: req.from,
    name: req.container.name,
    imageId: req.container.imageId,
    state: 'preparing',
    twinId: '',
    holderId: null,
    holderFrom: null,
    serviceAddress: req.container.serviceAddress ?? null,
    tcpClose: req.tcpClose === true,
    upperDir: '',
    volumes: new Map(),
    createdVolumes: [],
    stageDir: join(deps.scratchDir, 'incoming', req.id),
    baseDir: null,
    lastRound: 0,
    lastIndex: null,
    busy: false,
    baseUpdate: Promise.resolve(),
    hold: null,
    cacheOffer: null,
  };
}

/** Makes the volumes, the holder's copy and the twin; what was made is in `inc` for an abort. */
export async function createTwin(deps: DestinationDeps, inc: Incoming, req: PrepareRequest): Promise<void> {
  const { engine } = deps;
  const c = req.container;
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
    const spare = (await deps.spareHolder?.take(c.netnsHolder)) ?? null;
    inc.holderId = spare ?? (await startHolderCopy(engine, c.netnsHolder));
    inc.holderFrom = spare ? 'spare' : 'started';
    enterState(deps, inc, 'preparing', { holderId: inc.holderId });
  }
  // Created by the name its source was created from, tagged here if the image came by id only.
  const image = await twinImageRef(engine, c.imageId, c.imageName);
  // Docker's options rebuilt from the checked spec, field by field (nothing of the peer's spread in).
  inc.twinId = await engine.createContainer(createOptionsFromSpec(c.spec, { name: c.name, image }));
  const [twin, adapter] = await Promise.all([engine.inspectContainer(inc.twinId), probeEngineAdapter(engine)]);
  // Where the R/W layer is depends on the image store: the adapter knows (engine-adapter.ts).
  const upperDir = await adapter.rwLayerDir({ containerId: twin.id, graphDriverUpperDir: twin.upperDir, execRoot: deps.execRoot ?? null });
  if (!upperDir) {
    throw new CloudletError(
      'no_upperdir',
      `Docker ${adapter.engineVersion} (${adapter.imageStore} image store) names no R/W layer of the twin: cannot sync it`,
      {
        kind: 'internal',
      },
    );
  }
  inc.upperDir = upperDir;
  // The base of the page images lives where containerd's unpacked checkpoint can reach it
  // through a relative `parent` link (see restore.ts).
  enterState(deps, inc, 'prepared', { twinId: inc.twinId, holderId: inc.holderId });
}
