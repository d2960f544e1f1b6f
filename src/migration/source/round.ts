// Source, one round (pre-copy or final): capture the memory, hash its pages into a delta
// against what the destination holds, write the filesystem batches beside it, send it all as
// one framed stream, and record the round's figures.
import { readdirSync, readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runcCheckpoint } from '../../engine/runc.js';
import { freezeCgroup } from '../../engine/cgroups.js';
import type { Delta } from '../../checkpoint/delta-types.js';
import { encodeDeltaChunks } from '../../checkpoint/delta-wire.js';
import { startDumpAndDelta } from '../../checkpoint/stream-delta.js';
import type { PageIndex } from '../../checkpoint/page-index.js';
import { scanContainerMemory } from '../../checkpoint/proc-scan.js';
import { sendRound, pickCodec, type OutgoingArtifact } from '../round-transport.js';
import { FAULT_STALL_MS, type RoundReport, type TcpCloseReport } from '../types.js';
import { resetTcpConnections } from '../../network/tcp-reset.js';
import type { RoundResponse } from '../destination/wire.js';
import { dumpDirOf, sleep, type SourceHandoff } from './handoff.js';
import { leaveOutOffered } from './page-cache.js';

export interface RoundOptions {
  index: number;
  final: boolean;
  /** Called just before the final round's stream starts (the destination may restore from then on). */
  onFinalSend?: () => void;
}

export interface RoundResult {
  round: RoundReport;
  /** The page layout sent: the next round's delta is against it. */
  index: PageIndex;
  response: RoundResponse;
}

interface FsBatch {
  name: string;
  bytes: number;
  ms: number;
  data: Buffer;
}

/** Milestones of a final round on the downtime path, ms after the round started. */
type Spans = Record<string, number>;

interface SpanMarker {
  /** Records `name` now. */
  at(name: string): void;
  /** Records a duration measured elsewhere (CRIU's own figures). */
  set(name: string, ms: number): void;
}

function spanMarker(spans: Spans | null): SpanMarker {
  const t0 = performance.now();
  return {
    at: (name) => void (spans && (spans[name] = Math.round(performance.now() - t0))),
    set: (name, ms) => void (spans && (spans[name] = Math.round(ms))),
  };
}

interface Captured {
  dumpMs: number;
  stallMs: number;
  deltaWork: Promise<Delta>;
  fsWork: Promise<FsBatch[]>;
}

/** One round: dump, delta, filesystem batches, send; returns the round's figures. */
export async function runRound(h: SourceHandoff, o: RoundOptions): Promise<RoundResult> {
  const { report, req } = h;
  const { index, final } = o;
  const dumpDir = dumpDirOf(h.stage, index);
  const spans: Spans | null = final ? {} : null;
  const mark = spanMarker(spans);
  const { dumpMs, stallMs, deltaWork, fsWork } = await capture(h, o, mark);
  const tHash = performance.now();
  let fullDelta: Delta;
  try {
    fullDelta = await deltaWork;
    mark.at('deltaDone');
  } finally {
    // Never leave the batch promise unobserved, even when hashing failed.
    await fsWork.catch(() => undefined);
  }
  const hashMs = performance.now() - tHash;
  // Pages the destination's page cache holds are named, not sent (pre-copy rounds only).
  const { delta, refs, pages: pagesFromCache } = leaveOutOffered(h, fullDelta, final);
  // The codec is measured on this round's pages while the last filesystem batch is written.
  const [fsBatches, codec] = await Promise.all([fsWork, pickCodec(req.codec, delta, report.rounds, final)]);
  mark.at('fsBatchesDone');

  // Filesystem batches first: the destination applies them while the pages arrive.
  const artifacts: OutgoingArtifact[] = fsBatches.map((b) => ({ name: b.name, chunks: () => [b.data] }));
  const fsBytes = fsBatches.reduce((n, b) => n + b.bytes, 0);
  // Against the previous round's layout, which the destination holds: unchanged pages'
  // hashes are not sent again (delta wire format v2).
  const against = h.prevIndex;
  artifacts.push({ name: 'delta', chunks: () => encodeDeltaChunks(delta, { against }) });
  if (refs) artifacts.push({ name: 'cache-refs', chunks: () => [refs] });
  const smallImages = final ? readSmallImages(dumpDir) : [];
  for (const { name, data } of smallImages) artifacts.push({ name: `img/${name}`, chunks: () => [data] });
  // Final-round options for the destination: a fault to inject (lab), an eager restore.
  const finalOptions = (final && req.inject ? `&inject=${req.inject}` : '') + (final && h.plan!.restore === 'eager' ? '&restore=eager' : '');
  if (final) o.onFinalSend?.();
  mark.at('sendStart');
  // Fault injection (lab only): one byte of the final round damaged on its way.
  const corrupt = final && req.inject === 'corrupt-frame' ? { corruptByteAt: 4096 } : {};
  const sent = await sendRound(h.peer, `/v1/incoming/${report.id}/rounds/${index}?final=${final ? 1 : 0}${finalOptions}`, artifacts, codec, corrupt);
  const response = sent.response as RoundResponse;
  mark.at('answered');
  if (spans) spans.uploaded = Math.round((spans.sendStart ?? 0) + sent.sendMs);
  if (spans && response.spans) for (const [k, v] of Object.entries(response.spans)) spans[`destination.${k}`] = Math.round(v);
  const round: RoundReport = {
    index,
    final,
    dumpMs: Math.round(dumpMs),
    stallMs: Math.round(stallMs),
    hashMs: Math.round(hashMs),
    pagesScanned: delta.counts.scanned,
    pagesChanged: delta.counts.changed + delta.counts.new,
    pagesZero: delta.counts.zero,
    rawBytes: sent.rawBytes,
    sentBytes: sent.sentBytes,
    fsBytes,
    codec,
    sendMs: Math.round(sent.sendMs),
    bandwidthBps: Math.round(sent.sendMs > 0 ? (sent.sentBytes * 8) / (sent.sendMs / 1000) : 0),
    applyMs: Math.round(response.applyMs),
    fsBatchMs: Math.round(Math.max(0, ...fsBatches.map((b) => b.ms))),
    fsApplyMs: Math.round(response.fsMs),
    rebuildMs: Math.round(response.rebuildMs),
    destination: {
      receivedMs: Math.round(response.receivedMs),
      fsDoneMs: Math.round(response.fsDoneMs),
      baseReadyMs: response.baseReadyMs === null ? null : Math.round(response.baseReadyMs),
    },
    decision: null,
    predictedDowntimeMs: null,
    ...(pagesFromCache > 0 ? { pagesFromCache } : {}),
    ...(spans ? { spans } : {}),
  };
  report.rounds.push(round);
  // Pre-copy dumps are not needed once sent; the final dump is kept for a rollback.
  if (!final) await rm(dumpDir, { recursive: true, force: true });
  return { round, index: fullDelta.index, response };
}

/**
 * The dump's files other than pages and pagemaps (the delta carries those). Read
 * synchronously, on purpose: ~30 files of ~100 KiB in all on the staging tmpfs take about a
 * millisecond this way, while awaited reads cost 4 thread-pool hops each (3-100 ms on the lab
 * at load 5), and reads in parallel with the hashing delayed the hash's own reads as much.
 */
function readSmallImages(dumpDir: string): { name: string; data: Buffer }[] {
  const names = readdirSync(dumpDir).filter((f) => !/^pages-\d+\.img$/.test(f) && !/^pagemap-.*\.img$/.test(f));
  return names.sort().map((name) => ({ name, data: readFileSync(join(dumpDir, name)) }));
}

/**
 * The memory capture, with the filesystem batches (rsync, other processes) running beside
 * the page work: a CRIU dump (final round, or `precopy: dump`) or a /proc scan (pre-copy).
 */
async function capture(h: SourceHandoff, o: RoundOptions, mark: SpanMarker): Promise<Captured> {
  const { details, req, report } = h;
  const { index, final } = o;
  const roundDir = join(h.stage, `round-${index}`);
  const dumpDir = dumpDirOf(h.stage, index);
  const writeBatches = (): Promise<FsBatch[]> =>
    Promise.all(
      h.fsSources.map(async (f) => {
        const batch = join(roundDir, `${f.name.replace(/\//g, '_')}.batch`);
        const st = await f.source.nextBatch(batch, { final });
        return { name: f.name, bytes: st.bytes, ms: st.ms, data: await readFile(batch) };
      }),
    );
  const hasher = h.plan!.hasher;
  let fsWork: Promise<FsBatch[]> | null = null;
  try {
    if (final || req.precopy === 'dump') {
      // The final dump starts on a cgroup we froze ourselves (see freezeCgroup): the freeze
      // is the exact start of the downtime, and a frozen container cannot change its files,
      // so the last filesystem batch is written while CRIU dumps. If the dump fails, CRIU
      // leaves the cgroup as it found it: thawed here, the service carries on.
      if (final && report.tcpClose) await resetBeforeFreeze(report.tcpClose, details.pid);
      const frozen = final ? await freezeCgroup(details.pid) : null;
      mark.at('frozen');
      if (frozen) fsWork = writeBatches();
      // The pages are hashed while runc/CRIU writes them: hashMs is what is left after.
      const streamed = startDumpAndDelta({
        dir: dumpDir,
        prev: h.prevIndex,
        hasher,
        dump: async () => {
          try {
            return await runcCheckpoint({
              runcRoot: h.deps.runcRoot,
              containerId: details.id,
              imageDir: dumpDir,
              workDir: join(roundDir, 'work'),
              leaveRunning: !final,
              // A service-network container keeps its address: its connections move with it.
              // Connections not yet accepted cannot be dumped: their clients reconnect.
              tcpEstablished: report.serviceAddress !== null,
              skipInFlight: report.serviceAddress !== null,
              // Asked with --tcp-close (no service address): what is still connected is dumped closed.
              tcpClose: report.tcpClose != null,
            });
          } catch (err) {
            await frozen?.thaw();
            throw err;
          }
        },
      });
      const dump = await streamed.dumped;
      mark.at('dumped');
      if (dump.stats) {
        mark.set('criuFreezingMs', dump.stats.freezingTimeUs / 1000);
        mark.set('criuFrozenMs', dump.stats.frozenTimeUs / 1000);
        mark.set('criuMemdumpMs', dump.stats.memdumpTimeUs / 1000);
      }
      // Fault injection (lab only): a window in which the service is frozen and nothing is sent.
      if (final && req.inject === 'stall-after-final-dump') await sleep(FAULT_STALL_MS);
      const dumpMs = dump.wallMs + (frozen?.ms ?? 0);
      const stallMs = (dump.stats?.frozenTimeUs ?? dump.wallMs * 1000) / 1000 + (frozen?.ms ?? 0);
      return { dumpMs, stallMs, deltaWork: streamed.result.then((r) => r.delta), fsWork: fsWork ?? writeBatches() };
    }
    // Pre-copy: the memory is read from /proc while the service runs - no freeze at all.
    // A page torn by a concurrent write has a hash the final dump will not match, so it
    // is sent again then. Pages are hashed while the scan writes them, and the filesystem
    // batches are written meanwhile (the service runs anyway: no reason to wait).
    fsWork = writeBatches();
    const streamed = startDumpAndDelta({
      dir: dumpDir,
      prev: h.prevIndex,
      hasher,
      dump: () => scanContainerMemory({ initPid: details.pid, outDir: dumpDir }),
    });
    const dumpMs = (await streamed.dumped).ms;
    return { dumpMs, stallMs: 0, deltaWork: streamed.result.then((r) => r.delta), fsWork };
  } catch (err) {
    await fsWork?.catch(() => undefined); // settled before the error goes up
    throw err;
  }
}

/** --tcp-close: the container's connections reset just before the freeze (network/tcp-reset.ts). */
async function resetBeforeFreeze(tcpClose: TcpCloseReport, pid: number): Promise<void> {
  const r = await resetTcpConnections(pid);
  tcpClose.reset = r.reset;
  tcpClose.ms = Math.round(r.ms);
}
