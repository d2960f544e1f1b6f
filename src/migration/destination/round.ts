// Destination, a round (pre-copy or final): the filesystem batches are applied to the twin's
// R/W layer and volumes while the rest arrives; a pre-copy round's pages update the base
// image directory in the background; the final round waits for that update and restores
// (restore.ts).
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError, UsageError } from '../../util/errors.js';
import { applyDeltaInPlace } from '../../checkpoint/delta-apply.js';
import { rebuildImageDir } from '../../checkpoint/delta-rebuild.js';
import type { Delta } from '../../checkpoint/delta-types.js';
import { decodeDelta } from '../../checkpoint/delta-wire.js';
import { applyBatch } from '../../fssync/apply.js';
import type { ReceivedArtifact } from '../round-transport.js';
import type { FaultPoint } from '../types.js';
import { baseDirFor, enterState, fsTarget, type DestinationDeps, type Incoming } from './incoming.js';
import { finalRestore } from './restore.js';
import { fillCachedPages } from './page-cache.js';
import type { RoundResponse } from './wire.js';

export interface IncomingRound {
  index: number;
  final: boolean;
  artifacts: AsyncIterable<ReceivedArtifact>;
  /** Fault injection (lab only) on the final round. */
  inject?: FaultPoint | undefined;
  /** The source asks for an eager restore even where this cloudlet restores lazily. */
  eagerRestore?: boolean;
}

interface Received {
  delta: Delta;
  /** The round's small image files (final round). */
  smallDir: string;
  roundDir: string;
  fsMs: number;
  receivedMs: number;
  fsDoneMs: number;
}

/** Applies one round; the final one restores the twin. One round at a time, in order. */
export async function applyRound(deps: DestinationDeps, inc: Incoming, r: IncomingRound): Promise<RoundResponse> {
  const { index, final } = r;
  if (inc.busy) throw new ConflictError(`migration ${inc.id} is already applying a round`);
  if (index !== inc.lastRound + 1) throw new UsageError(`round ${index} of migration ${inc.id} arrived after round ${inc.lastRound}`);
  inc.busy = true;
  const t0 = performance.now();
  try {
    enterState(deps, inc, final ? 'final' : 'precopy');
    const got = await receive(inc, r, t0);
    const { delta } = got;
    let response: RoundResponse = {
      applyMs: 0,
      rebuildMs: 0,
      fsMs: got.fsMs,
      restoreMs: null,
      announceMs: null,
      reachableMs: null,
      hold: null,
      postCopyMs: null,
      running: null,
      receivedMs: got.receivedMs,
      fsDoneMs: got.fsDoneMs,
      baseReadyMs: null,
    };
    if (!final) {
      // The base is brought up to date in the background: the source is told the round
      // arrived and goes on with its next dump; the next round waits for this update.
      const update = inc.baseUpdate.then(() => updateBase(deps, inc, delta));
      // Marked as handled here; its failure surfaces when the next round awaits it.
      update.catch(() => undefined);
      inc.baseUpdate = update;
    } else {
      const tWait = performance.now();
      await inc.baseUpdate;
      const baseReadyMs = performance.now() - t0;
      const spans: Record<string, number> = { received: got.receivedMs, fsDone: got.fsDoneMs, baseReady: baseReadyMs };
      const mark = (name: string) => void (spans[name] = performance.now() - t0);
      const x = await finalRestore(deps, inc, { delta, smallDir: got.smallDir, inject: r.inject, eagerRestore: r.eagerRestore ?? false, mark });
      response = {
        ...response,
        // Waiting for the last base update counts as rebuilding: both are on the downtime path.
        rebuildMs: x.reachableAt - tWait - x.restoreMs - (x.announceMs ?? 0),
        restoreMs: x.restoreMs,
        announceMs: x.announceMs,
        reachableMs: x.reachableAt - t0,
        hold: x.hold,
        postCopyMs: x.postCopyMs,
        running: true,
        baseReadyMs,
        spans,
      };
    }
    await rm(got.roundDir, { recursive: true, force: true });
    inc.lastRound = index;
    inc.lastIndex = delta.index;
    response.applyMs = performance.now() - t0;
    return response;
  } finally {
    inc.busy = false;
  }
}

/** Reads the round's artifacts: the delta decoded, small images written, filesystem batches applied. */
async function receive(inc: Incoming, r: IncomingRound, t0: number): Promise<Received> {
  const { index } = r;
  const roundDir = join(inc.stageDir, `round-${index}`);
  const smallDir = join(roundDir, 'images');
  await mkdir(smallDir, { recursive: true });
  let delta: Delta | null = null;
  let cacheRefs: Buffer | null = null;
  let fsMs = 0;
  let receivedMs = 0;
  const fsApplies: Promise<void>[] = [];
  // Small images are written while the stream goes on: awaiting each write would hold the
  // reader (and the source's send) for a thread-pool round trip per file.
  const imageWrites: Promise<void>[] = [];
  try {
    for await (const a of r.artifacts) {
      if (a.name === 'delta') {
        // The artifact's sha256 was checked by the frame reader; re-hashing every page here
        // would only repeat that check on the path the source waits on.
        delta = decodeDelta(a.data, `round ${index} delta`, { verify: false, against: inc.lastIndex });
      } else if (a.name === 'cache-refs') {
        cacheRefs = a.data;
      } else if (a.name.startsWith('img/')) {
        const file = a.name.slice(4);
        if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(file) || /^pages-\d+\.img$/.test(file)) {
          throw new UsageError(`round ${index}: refusing image file name '${file}'`);
        }
        const write = writeFile(join(smallDir, file), a.data);
        write.catch(() => undefined); // observed below (allSettled); never an unhandled rejection meanwhile
        imageWrites.push(write);
      } else if (a.name.startsWith('fs/')) {
        // Applied in the background (rsync) while the rest of the round arrives.
        const target = fsTarget(inc, a.name);
        const batch = join(roundDir, `${a.name.replace(/\//g, '_')}.batch`);
        await writeFile(batch, a.data);
        fsApplies.push(applyBatch(batch, target).then((r) => void (fsMs += r.ms)));
      } else {
        throw new UsageError(`round ${index}: unknown artifact '${a.name}'`);
      }
    }
  } finally {
    receivedMs = performance.now() - t0;
    // Every started rsync and write finishes (or fails) before the round is answered.
    const settled = await Promise.allSettled([...imageWrites, ...fsApplies]);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    // A failed rsync fails the round even when receiving it failed too: it names the cause.
    // eslint-disable-next-line no-unsafe-finally
    if (failed) throw failed.reason;
  }
  const fsDoneMs = performance.now() - t0;
  if (!delta) throw new UsageError(`round ${index} of migration ${inc.id} carried no page delta`);
  if (cacheRefs) await fillCachedPages(inc, { delta, refs: cacheRefs, round: index, final: r.final });
  return { delta, smallDir, roundDir, fsMs, receivedMs, fsDoneMs };
}

async function updateBase(deps: DestinationDeps, inc: Incoming, delta: Delta): Promise<void> {
  if (inc.baseDir === null) {
    const base = baseDirFor(deps, inc);
    await rm(base, { recursive: true, force: true });
    await rebuildImageDir({ baseDir: null, delta, smallImagesDir: null, outDir: base });
    inc.baseDir = base;
  } else {
    await applyDeltaInPlace(inc.baseDir, delta);
  }
}
