// One handoff held by the destination, its states, and what the destination's phases share.
//
// The source drives the handoff; each of its requests moves the destination's handoff on:
//
//   prepare ──> preparing ──> prepared ──(round k, not final)──> precopy (k = 1, 2, ...)
//   address (before the freeze) ──> address
//   final round ──> final ──(images built)──> restoring ──(twin runs)──> answered
//   commit ──> done            abort (any time before the commit) ──> aborted
//
// Every state is written to the journal, so a restarted daemon knows which handoffs it held.
import { join } from 'node:path';
import type { ServiceNetwork } from '../../network/service-network.js';
import type { PacketHold } from '../../network/packet-hold.js';
import type { SpareHolder } from '../../network/netns-holder.js';
import type { DockerEngine } from '../../engine/docker.js';
import { checkpointPaths } from '../../engine/checkpoint-install.js';
import type { LazyPagesDaemon, LazyRestoreConfig } from '../../engine/lazy-pages.js';
import type { PageIndex } from '../../checkpoint/page-index.js';
import type { PageCache, PageCacheOffer } from '../../checkpoint/page-cache.js';
import { UsageError } from '../../util/errors.js';
import type { MigrationJournal } from '../journal.js';
import type { CheckpointRestores } from '../checkpoint-restores.js';
import type { PrepareResponse } from './wire.js';
import type { ContainerPolicy } from '../container-policy.js';

export interface DestinationDeps {
  engine: DockerEngine;
  db: MigrationJournal;
  dataRoot: string;
  /** The engine's exec root (containerd's socket below it: R/W layers on the containerd image store). */
  execRoot?: string;
  xdgRuntimeDir: string | null;
  /** Scratch space for staging (see DaemonConfig.scratchDir). */
  scratchDir: string;
  serviceNetwork: ServiceNetwork | null;
  /** Restore with CRIU's local lazy pages (post-copy from this machine's images); null: eager. */
  lazyRestore: LazyRestoreConfig | null;
  /** The engine's own CRIU configuration (restores take turns on it; tcp-close restores extend it); null: none known. */
  criuConfigFile: string | null;
  /** The restores running on this engine (shared with the source side, whose rollback restores too). */
  restores: CheckpointRestores;
  /** The spare network namespace holder kept on this cloudlet (null: none configured). */
  spareHolder?: SpareHolder | null;
  /** Where problems that fail no handoff are told. */
  log?: (msg: string) => void;
  /** What a peer's twin may be created with beyond the spec's plain fields (default: strict). */
  containerPolicy?: ContainerPolicy;
  /** This cloudlet's name (in refusals). */
  node?: string;
  /** Pages of earlier handoffs kept here (null or absent: none kept, none offered). */
  pageCache?: PageCache | null;
}

/** The destination's journal states of a handoff by migration. */
export type DestinationState = 'preparing' | 'prepared' | 'address' | 'precopy' | 'final' | 'restoring' | 'done' | 'aborted';

/**
 * The transitions the source's requests make. A request the source does not make in this
 * order (a bug) is told in the log, not refused: the checks of each request (busy, round
 * numbers, a hold already taken) are what refuses.
 */
const TRANSITIONS: Record<DestinationState, readonly DestinationState[]> = {
  preparing: ['preparing', 'prepared', 'aborted'],
  prepared: ['precopy', 'address', 'final', 'done', 'aborted'],
  precopy: ['precopy', 'address', 'final', 'done', 'aborted'],
  address: ['final', 'done', 'aborted'],
  final: ['restoring', 'done', 'aborted'],
  restoring: ['done', 'aborted'],
  done: [],
  aborted: [],
};

export interface Incoming {
  id: string;
  from: string;
  name: string;
  /** The container's image: the page cache is offered and filled per image. */
  imageId: string;
  state: DestinationState;
  twinId: string;
  /** The copy of the container's network namespace holder made here (null: none). */
  holderId: string | null;
  holderFrom: PrepareResponse['holder'];
  serviceAddress: string | null;
  /** The final dump closed the container's connections: the restore adds CRIU's tcp-close. */
  tcpClose: boolean;
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
  /** The page cache's pages offered to the source at prepare (null: none offered). */
  cacheOffer: PageCacheOffer | null;
}

/** Moves the handoff to `to` and writes it to the journal (with what else the row records). */
export function enterState(deps: DestinationDeps, inc: Incoming, to: DestinationState, report?: Record<string, unknown>): void {
  if (!TRANSITIONS[inc.state].includes(to)) deps.log?.(`migration ${inc.id}: unexpected step from '${inc.state}' to '${to}' at the destination`);
  inc.state = to;
  deps.db.updateMigration(inc.id, 'destination', report === undefined ? { state: to } : { state: to, report });
}

export function checkpointName(id: string): string {
  return `cl-${id}`;
}

/** Where the base of the page images lives: next to containerd's unpack dirs when we can. */
export function baseDirFor(deps: DestinationDeps, inc: Incoming): string {
  const { stageDir } = checkpointPaths({
    dataRoot: deps.dataRoot,
    containerId: inc.twinId,
    name: checkpointName(inc.id),
    xdgRuntimeDir: deps.xdgRuntimeDir,
  });
  return join(stageDir ?? inc.stageDir, 'base');
}

/** The directory a filesystem batch of the round applies to: the twin's R/W layer or a volume. */
export function fsTarget(inc: Incoming, name: string): string {
  if (name === 'fs/rw') return inc.upperDir;
  const vol = name.startsWith('fs/vol/') ? name.slice('fs/vol/'.length) : '';
  const mp = inc.volumes.get(vol);
  if (!mp) throw new UsageError(`filesystem batch for unknown volume '${vol}'`);
  return mp;
}
