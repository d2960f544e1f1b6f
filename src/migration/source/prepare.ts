// Source, prepare: the destination creates the twin (its image shipped first if it lacks it);
// meanwhile the service's memory size is read, which sizes the rest of the handoff (plan).
import type { SourceEngine } from '../../engine/engine-adapter.js';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiError } from '../../util/errors.js';
import { FsSyncSource } from '../../fssync/index.js';
import { anonymousMemoryBytes } from '../../engine/cgroups.js';
import { decideInitial, DEFAULT_COSTS } from '../decision.js';
import { shipImageIfMissing, type ImageShipped } from '../image-ship.js';
import type { PrepareRequest, PrepareResponse } from '../destination/wire.js';
import { ASSUMED_LINK_BPS, fsBatchNice, hasherFor, restoreFor } from './tuning.js';
import type { SourceHandoff } from './handoff.js';
import { checkDumpPermitted, dumpSubjectOf } from './dump-permits.js';
import { establishedTcpConnections, unkeptConnectionsError } from './connections.js';
import { tcpCloseUnsupported } from '../../engine/criu-config.js';
import type { ContainerDetails } from '../../engine/docker.js';
import type { ContainerSpec } from '../../engine/container-spec.js';
import type { HolderSpec } from '../../network/netns-holder.js';
import { recordDecision } from './objective.js';
import { offeredHashes } from './page-cache.js';

export async function runPrepare(h: SourceHandoff): Promise<void> {
  const { report, details, holder, peer, stage, req } = h;
  // Known before the freeze: refused here rather than rolled back after it.
  if (details.pid) await checkDumpPermitted(details.pid, dumpSubjectOf(details));
  if (details.pid && report.serviceAddress === null) {
    const established = await establishedTcpConnections(details.pid);
    if (req.tcpClose) {
      // The source's rollback restores from a tcp-close dump too: it needs the option as much as the destination.
      if (h.deps.criuConfigFile === null) throw tcpCloseUnsupported(h.deps.node);
      report.tcpClose = { atPrepare: established, reset: 0, ms: 0 };
    } else if (established > 0) throw unkeptConnectionsError(details.name, established);
  }
  await mkdir(stage, { recursive: true });
  const volumes = volumesOf(details);
  const prepareReq: PrepareRequest = {
    ...prepareRequestOf({
      id: report.id,
      node: h.deps.node,
      details,
      spec: h.spec,
      serviceAddress: report.serviceAddress,
      holder,
      sourceEngine: h.sourceEngine,
    }),
    ...(req.pageCache !== false ? { pageCache: true } : {}),
    ...(report.tcpClose ? { tcpClose: true } : {}),
  };
  // The destination refuses a prepare for an image it lacks: it then gets the image's
  // missing layers (overlay) and the prepare is asked again. Asked first, the common case
  // (image there) costs no extra round trip.
  const prepare = () => peer.post<PrepareResponse>('/v1/incoming', prepareReq);
  // Memory size (for the decision) read while the destination prepares.
  const memory = anonymousMemoryBytes(details.pid);
  memory.catch(() => undefined); // awaited below
  const prepared = await prepare().catch(async (err: unknown) => {
    if (!(err instanceof ApiError && err.code === 'image_missing')) throw err;
    await shipImages(h);
    h.journal();
    return prepare();
  });
  h.progress.prepared = true;
  report.destinationContainerId = prepared.twinId;
  if (holder) report.netnsHolderFrom = prepared.holder;
  if (req.pageCache !== false) {
    h.destinationPages = offeredHashes(prepared.cachedPages);
    report.pageCache = { offeredPages: h.destinationPages?.length ?? null, pagesFromCache: 0, keptPages: null, keepMs: null };
  }

  // Before any link measurement the model assumes the lab's default link speed.
  const memoryBytes = await memory;
  const initial = decideInitial(req.policy, memoryBytes, ASSUMED_LINK_BPS, DEFAULT_COSTS, performance.now() - h.t0);
  // A refusal (neither bound can be met) is thrown here, before the plan: nothing frozen.
  if (initial.stop) recordDecision(h, initial, null);
  h.plan = { initial, hasher: hasherFor(memoryBytes), restore: restoreFor(req.restore, memoryBytes) };
  const nice = fsBatchNice(memoryBytes);
  h.fsSources.push({ name: 'fs/rw', source: new FsSyncSource({ sourceDir: details.upperDir!, stateDir: join(stage, 'fs-rw'), nice }) });
  for (const v of volumes) {
    h.fsSources.push({ name: `fs/vol/${v.name}`, source: new FsSyncSource({ sourceDir: v.dir, stateDir: join(stage, `fs-vol-${v.name}`), nice }) });
  }
}

/** The named volumes of a container and where they are on this engine. */
export function volumesOf(details: ContainerDetails): { name: string; dir: string }[] {
  return details.mounts.filter((m) => m.type === 'volume' && m.name).map((m) => ({ name: m.name!, dir: m.source }));
}

/** What the destination is asked to prepare (and, by a dry run, to check). */
export function prepareRequestOf(o: {
  id: string;
  node: string;
  details: ContainerDetails;
  spec: ContainerSpec;
  serviceAddress: string | null;
  holder: HolderSpec | null;
  sourceEngine: SourceEngine;
}): PrepareRequest {
  return {
    id: o.id,
    from: o.node,
    container: {
      name: o.details.name,
      imageId: o.details.imageId,
      imageName: o.details.imageName,
      // The twin joins the destination's copy of the holder, which has the same name.
      spec: o.spec,
      volumes: volumesOf(o.details).map((v) => v.name),
      serviceAddress: o.serviceAddress,
      netnsHolder: o.holder,
      sourceEngine: o.sourceEngine,
    },
  };
}

/** The image's layers the destination lacks (and its holder's image's), as overlays. */
async function shipImages(h: SourceHandoff): Promise<void> {
  const { report, details, holder, stage, req } = h;
  report.imageShipped = await shipImage(h, details.imageId, details.imageName, join(stage, 'image'), req.codec);
  if (holder && holder.imageId !== details.imageId) {
    const shipped = await shipImage(h, holder.imageId, holder.imageName, join(stage, 'holder-image'), req.codec);
    if (shipped) report.warnings.push(`the network namespace holder's image ${holder.imageName} was shipped too (${shipped.bytes} bytes)`);
  }
}

/** The image's layers the destination lacks, as an overlay (or the whole image); null if it had it. */
function shipImage(h: SourceHandoff, imageId: string, imageName: string, stageDir: string, codec: string): Promise<ImageShipped | null> {
  return shipImageIfMissing({ engine: h.deps.engine, peer: h.peer, imageId, imageName, stageDir, codec });
}
