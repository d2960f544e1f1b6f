// The shapes a migration is described and reported in: the API's request, the per-round
// figures, the final report (what `cloudlet migrate --json` prints) and progress events.
import type { Policy, StopReason, Unmet } from './decision.js';
import type { PacketHoldStats } from '../network/packet-hold.js';
import { FAULT_POINTS, HANDOFF_STRATEGIES } from '../api/schemas/migrations.js';

// The lists live with the API's schemas (they are part of its contract); re-exported for the
// migration code that names them here.
export { FAULT_POINTS, HANDOFF_STRATEGIES };

export type CodecChoice = 'none' | 'lz4' | 'zstd' | 'gzip' | 'auto';

export interface MigrationRequest {
  /** Container name or id on the source. */
  container: string;
  /** Destination cloudlet (a configured peer). */
  to: string;
  policy: Policy;
  codec: CodecChoice;
  /**
   * How pre-copy rounds capture memory: 'scan' reads it from /proc while the service runs
   * (no freeze; default), 'dump' takes a CRIU dump with --leave-running (freezes it).
   */
  precopy?: 'scan' | 'dump';
  /** Test hook (daemons with allowFaultInjection only): make the destination fail there. */
  inject?: FaultPoint;
  /**
   * How long a call to the destination may stay silent before it is given up (ms; default
   * 120 s). A cut link is only noticed by this timeout: the fault tests shorten it.
   */
  peerTimeoutMs?: number;
  /** Handoff strategy override (issue 9); without it the container's cloudlet.handoff label decides. */
  strategy?: HandoffStrategy;
  /**
   * The destination's restore: lazy (post-copy from the received images, where the destination
   * is configured for it), eager (every page in before the service runs: baselines,
   * experiments), auto (the default: lazy for large memory, see restoreFor in source/tuning.ts).
   */
  restore?: RestoreChoice;
  /** Leave out of pre-copy the pages the destination's page cache holds (default true). */
  pageCache?: boolean;
  /**
   * A container without a service address whose established TCP connections cannot be kept:
   * reset them just before the freeze and restore their sockets closed (CRIU tcp-close),
   * instead of refusing the handoff. Their clients get a reset and must reconnect.
   */
  tcpClose?: boolean;
}

export type RestoreChoice = 'lazy' | 'eager' | 'auto';

/**
 * How a service is handed off (issue 9): `migrate` (live migration), `recreate` (a fresh
 * instance at the destination, switched to once healthy; see recreate.ts), `auto` (recreate
 * when the service is declared stateless, migrate otherwise).
 */
export type HandoffStrategy = (typeof HANDOFF_STRATEGIES)[number];

/** The phases of a handoff by re-creation (ms), in MigrationReport.recreate. */
export interface RecreatePhases {
  /** Named volumes synced to the destination before the new instance starts. */
  volumes: string[];
  volumeSyncMs: number;
  volumeBytes: number;
  createMs: number;
  startMs: number;
  /** From the start to the first passing health check (run at the destination). */
  healthyMs: number;
  healthChecks: number;
  health: string;
  /** After the switch, how long the old instance finished its connections (drained to it) before it was stopped. */
  drainMs: number | null;
  /** Connections the old instance had at the switch, whose packets the destination sent back to it. */
  drainedConnections: number | null;
  /** Stopping and removing the old instance at the source, after the switch and the drain. */
  removeOldMs: number | null;
}

/**
 * Test hooks (daemons with allowFaultInjection only), all on the final round:
 *   before-restore         the destination fails before its restore;
 *   stall-before-restore   the destination waits FAULT_STALL_MS before its restore (a test
 *                          kills its engine meanwhile);
 *   stall-after-final-dump the source waits FAULT_STALL_MS between its final dump and the
 *                          send (a test kills the source's daemon while the service is frozen);
 *   stall-before-commit    the source waits FAULT_STALL_MS after the twin runs, before it
 *                          removes its copy (a test kills the source's daemon meanwhile);
 *   corrupt-frame          the source flips one byte of the final round's stream in transit.
 */
export type FaultPoint = (typeof FAULT_POINTS)[number];
/** How long the stall-* fault points wait: a window for a test to act in, on a slow machine. */
export const FAULT_STALL_MS = 12_000;

export interface SynGateReport {
  settleMs: number;
  unsettled: number;
  gateMs: number | null;
  /** The SYNs held were sent on to the destination (true) or dropped (false: no default route); null before the address moved. */
  forwarded: boolean | null;
  /** SYNs the gate held or sent on until the commit; null before it. */
  held: number | null;
}

export interface RoundReport {
  index: number;
  final: boolean;
  /** runc/CRIU dump wall time. */
  dumpMs: number;
  /** Time the service was frozen by this round's dump (CRIU's frozen_time). */
  stallMs: number;
  hashMs: number;
  pagesScanned: number;
  pagesChanged: number;
  pagesZero: number;
  /** Uncompressed bytes of everything the round carried (page data, images, filesystem). */
  rawBytes: number;
  /** Bytes on the wire. */
  sentBytes: number;
  fsBytes: number;
  codec: string;
  sendMs: number;
  /** Measured throughput of this round's send, bits per second. */
  bandwidthBps: number;
  /** Destination side: from its first byte received to its answer (receive, apply, restore). */
  applyMs: number;
  /** Source: writing the filesystem batches (overlaps hashing). */
  fsBatchMs: number;
  /** Destination: applying the filesystem batches; rebuilding the final image directory. */
  fsApplyMs: number;
  rebuildMs: number;
  /** Destination milestones, ms after the round's first byte arrived. */
  destination: { receivedMs: number; fsDoneMs: number; baseReadyMs: number | null } | null;
  /** Why the decision model stopped or continued after this round. */
  decision: string | null;
  predictedDowntimeMs: number | null;
  /** The model rule's predicted total (request to service running) had pre-copy stopped after this round. Absent in older reports. */
  predictedTotalMs?: number | null;
  /** Changed pages left out because the destination's page cache holds them (pre-copy rounds). Absent in older reports. */
  pagesFromCache?: number;
  /**
   * Final round: milestones on the downtime path, ms after the round started (source: the
   * freeze) or, for `destination.*`, after the destination's first byte. Absent in older reports.
   */
  spans?: Record<string, number>;
}

/** What the page caches did for one handoff (see checkpoint/page-cache.ts). */
export interface PageCacheReport {
  /** Pages the destination offered at prepare (null: it keeps no page cache). */
  offeredPages: number | null;
  /** Pages the rounds left out because the destination had them. */
  pagesFromCache: number;
  /** After the commit: pages of the final dump kept in this cloudlet's cache, and the time it took. */
  keptPages: number | null;
  keepMs: number | null;
}

/**
 * The model rule's bounds (issue 21) and its last prediction before the freeze: what the
 * final round was predicted to cost, and whether the bounds could be met (see decision.ts).
 */
export interface ObjectiveReport {
  maxDowntimeMs: number;
  maxTotalMs: number | null;
  force: boolean;
  predictedDowntimeMs: number | null;
  predictedTotalMs: number | null;
  /** Neither bound could be met: refused before the freeze, or gone on with --force. */
  unmet: Unmet | null;
}

export type MigrationState = 'preparing' | 'precopy' | 'final' | 'restoring' | 'committing' | 'done' | 'rolling-back' | 'rolled-back' | 'failed';

export interface MigrationReport {
  id: string;
  container: string;
  from: string;
  to: string;
  state: MigrationState;
  policy: string;
  codec: CodecChoice;
  rounds: RoundReport[];
  /** Number of pre-copy rounds (the final round not counted). */
  precopyRounds: number;
  stopReason: StopReason | 'stop-and-copy' | null;
  /** The decision model's explanation of the last decision. */
  decision: string | null;
  /** The model rule's bounds and last prediction; null for the other rules. Absent in older reports. */
  objective?: ObjectiveReport | null;
  /** From the request to the service running (verified) at the destination. */
  totalMs: number | null;
  /** After the handoff: removing the source container and the staging data. */
  commitMs: number | null;
  /**
   * From the freeze at the source to the restored service being reachable at the
   * destination: running, its sockets restored, the packets held for its address let
   * through. A lazy restore may still be copying pages in then (postCopyMs): what that costs
   * a client shows in the client's own gap, which the benchmarks measure beside this.
   */
  downtimeMs: number | null;
  /** Restore at the destination (engine start from checkpoint), part of the downtime. */
  restoreMs: number | null;
  /** The container's address on the service network (kept by the handoff), or null. */
  serviceAddress: string | null;
  /** The network namespace holder the service joins (moved with it; see netns-holder.ts), or null. Absent in older reports. */
  netnsHolder?: string | null;
  /** How the destination got its copy of the holder: the spare it kept ready, or one started for this handoff. */
  netnsHolderFrom?: 'spare' | 'started' | null;
  /** Routing the service address to the destination (before the freeze; not downtime). */
  announceMs: number | null;
  /**
   * Starting the destination's hold of the address's packets, before the freeze (see
   * network/packet-hold.ts). Absent in older reports.
   */
  holdSetupMs?: number | null;
  /** What the destination's hold kept while the service was away: packets, bytes, for how long. Absent in older reports. */
  hold?: PacketHoldStats | null;
  /**
   * The source's gate on new connections (network/syn-gate.ts): from closing it, how long the
   * handshakes under way took to finish (settleMs), how many were left at the limit
   * (unsettled), how long SYNs were held before they went on to the destination (gateMs),
   * whether they went on (forwarded) and how many there were (held). Absent in older reports.
   */
  synGate?: SynGateReport | null;
  /** Lazy restore: from the service answering at the destination to its last page copied in (not downtime). */
  postCopyMs: number | null;
  /** How the destination restored: lazy (it answered with a post-copy time) or eager; null before the final round. Absent in older reports. */
  restoreMode?: 'lazy' | 'eager' | null;
  /**
   * The container's image, when the destination lacked it: only the layers it was missing
   * (an overlay on its best base; the whole image when it had none), its time part of totalMs.
   * null when the destination had the image.
   */
  imageShipped: { bytes: number; layers: number; ms: number } | null;
  bytesSent: number;
  destinationContainerId: string | null;
  /** Problems after the handoff that did not affect the service (e.g. a failed clean-up). */
  warnings: string[];
  startedAt: string;
  finishedAt: string | null;
  error: { code: string; message: string } | null;
  /** Which handoff ran (issue 9) and why (request, label, or auto's reasoning). Absent in older reports. */
  strategy?: 'migrate' | 'recreate';
  strategyReason?: string;
  /** Recreate only: its phases (no memory rounds). */
  recreate?: RecreatePhases | null;
  /** Migrate with the page cache asked for: what it offered and saved. Absent otherwise. */
  pageCache?: PageCacheReport | null;
  /** Asked with tcpClose (and no service address): the connections reset before the freeze. Absent otherwise. */
  tcpClose?: TcpCloseReport | null;
}

/** What --tcp-close did just before the freeze (network/tcp-reset.ts). */
export interface TcpCloseReport {
  /** Established connections counted at prepare. */
  atPrepare: number;
  /** Connections reset (SOCK_DESTROY) just before the freeze. */
  reset: number;
  /** How long the reset took (before the freeze: not downtime). */
  ms: number;
}

/** A handoff's report as it starts (both strategies): nothing measured yet. */
export function newReport(init: {
  id: string;
  container: string;
  from: string;
  to: string;
  policy: string;
  codec: CodecChoice;
  serviceAddress: string | null;
  strategy: 'migrate' | 'recreate';
  strategyReason: string;
}): MigrationReport {
  return {
    ...init,
    state: 'preparing',
    decision: null,
    rounds: [],
    precopyRounds: 0,
    stopReason: null,
    totalMs: null,
    commitMs: null,
    downtimeMs: null,
    restoreMs: null,
    announceMs: null,
    holdSetupMs: null,
    hold: null,
    synGate: null,
    postCopyMs: null,
    restoreMode: null,
    imageShipped: null,
    bytesSent: 0,
    destinationContainerId: null,
    warnings: [],
    startedAt: new Date().toISOString(),
    finishedAt: null,
    error: null,
  };
}
