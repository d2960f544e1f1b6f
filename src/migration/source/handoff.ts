// What the source's phases share about one handoff: its inputs, what it has done so far (which
// decides what a rollback undoes), and where its files are.
import type { PageCache } from '../../checkpoint/page-cache.js';
import type { SourceEngine } from '../../engine/engine-adapter.js';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { DockerEngine, ContainerDetails, RestartPolicy } from '../../engine/docker.js';
import type { ServiceNetwork } from '../../network/service-network.js';
import type { HolderSpec } from '../../network/netns-holder.js';
import type { SynGate } from '../../network/syn-gate.js';
import type { ContainerSpec } from '../../engine/container-spec.js';
import type { LazyRestoreConfig } from '../../engine/lazy-pages.js';
import type { PageIndex } from '../../checkpoint/page-index.js';
import type { FsSyncSource } from '../../fssync/index.js';
import type { MigrationEventSink, MigrationJournal } from '../journal.js';
import type { Decision } from '../decision.js';
import type { PeerConnector, PeerTransport } from '../peer-transport.js';
import type { CheckpointRestores } from '../checkpoint-restores.js';
import type { MigrationReport, MigrationRequest } from '../types.js';

export interface SourceDeps {
  node: string;
  engine: DockerEngine;
  db: MigrationJournal;
  /** Live progress: every journal write of a report is published here too. */
  events: MigrationEventSink;
  /** EXEC_ROOT/runtime-runc/moby: runc's state of the engine's containers. */
  runcRoot: string;
  /** The engine's exec root (containerd's socket below it: R/W layers on the containerd image store). */
  execRoot?: string;
  dataRoot: string;
  xdgRuntimeDir: string | null;
  /** Scratch space for staging (see DaemonConfig.scratchDir). */
  scratchDir: string;
  peers: { name: string; url: string }[];
  /** Calls to a peer (the daemon's API client, with the deployment's token and TLS). */
  connectPeer: PeerConnector;
  /** Containers on it keep their address and established TCP connections (see ServiceNetwork). */
  serviceNetwork: ServiceNetwork | null;
  /** Set when the engine also restores lazily: then this engine's restores take turns. */
  lazyRestore: LazyRestoreConfig | null;
  /** The engine's own CRIU configuration (restores take turns on it; a rollback after a tcp-close dump extends it); null: none known. */
  criuConfigFile: string | null;
  /** The restores running on this engine (shared with the destination side): a rollback restores too. */
  restores: CheckpointRestores;
  /** Pages of earlier handoffs kept on this cloudlet (null or absent: none kept). */
  pageCache?: PageCache | null;
}

/** A filesystem tree synced with the service's memory: its R/W layer or a named volume. */
export interface FsSource {
  name: string;
  source: FsSyncSource;
}

/** What the handoff has done so far: what a rollback has to undo. */
export interface HandoffProgress {
  /** The destination answered the prepare: it holds a twin (and volumes, staging). */
  prepared: boolean;
  /** The address was routed to the destination before the freeze. */
  addressMoved: boolean;
  /** The final dump was started: the container may be stopped here. */
  frozen: boolean;
  /** The final round started on its way: the destination may have restored the twin. */
  finalSent: boolean;
  /** The container's restart policy, turned off for the final round (null: untouched). */
  restartPolicy: RestartPolicy | null;
  /** New SYNs to the service address dropped here (from before the address moved): opened at commit or rollback. */
  gate?: SynGate | null;
}

/** Sizes and choices made once the memory size is known (prepare). */
export interface HandoffPlan {
  /** The decision before any round: stop at once (stop-and-copy) or pre-copy. */
  initial: Decision;
  hasher: 'worker' | 'main';
  restore: 'lazy' | 'eager';
}

export interface SourceHandoff {
  readonly deps: SourceDeps;
  readonly report: MigrationReport;
  readonly req: MigrationRequest;
  readonly details: ContainerDetails;
  readonly holder: HolderSpec | null;
  /** The twin's spec (joining the holder's copy when there is a holder), checked at the request. */
  readonly spec: ContainerSpec;
  /** This cloudlet's engine (version, image store), named in the prepare. */
  readonly sourceEngine: SourceEngine;
  /** performance.now() at the request: totalMs counts from here. */
  readonly t0: number;
  readonly peer: PeerTransport;
  /** This handoff's staging directory (round dumps, filesystem sync state). */
  readonly stage: string;
  readonly fsSources: FsSource[];
  readonly progress: HandoffProgress;
  /** Set by prepare. */
  plan: HandoffPlan | null;
  /** The round last started (the final one, from the announce on). */
  index: number;
  /** The page layout of the last round sent: the next delta is against it. */
  prevIndex: PageIndex | null;
  /** The hashes of the pages the destination's page cache offered at prepare (sorted), or null. */
  destinationPages: BigUint64Array | null;
  /** Writes the report to the journal and publishes it (at every state change). */
  journal(): void;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function dumpDirOf(stage: string, round: number): string {
  return join(stage, `round-${round}`, 'img');
}

/** Highest round-N directory of a migration's staging that holds a CRIU dump (the final one). */
export async function lastDumpDir(stage: string): Promise<string | null> {
  const rounds = (await readdir(stage).catch(() => [] as string[]))
    .map((n) => /^round-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((x, y) => y - x);
  for (const k of rounds) {
    const dir = dumpDirOf(stage, k);
    if ((await readdir(dir).catch(() => [] as string[])).includes('inventory.img')) return dir;
  }
  return null;
}
