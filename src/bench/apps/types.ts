// What `cloudlet bench apps` knows of an application, and what it reports for one.
import type { DockerEngine } from '../../engine/docker.js';
import type { HostImageSpec } from '../../images/host-image.js';
import type { LabState } from '../../lab/state.js';
import type { MigrationReport } from '../../migration/types.js';

export interface AppContext {
  lab: LabState;
  /** The container's name (its holder, where it has one, is holderNameFor(name)). */
  name: string;
  /** Its address on the service network (kept across the handoff). */
  address: string;
  /** The engine it runs on now. */
  engine: () => DockerEngine;
  progress: (m: string) => void;
}

/** What a client reports when it is stopped (or ends by itself). */
export interface ClientOutcome {
  ops: number;
  failedOps: number;
  /** First few failures, with their time. */
  errors: string[];
  /** Wall-clock times (epoch ms) of every completed operation: the gaps come from these. */
  done: number[];
  bytes: number;
  /** The program's own checksum of its state equals the client's reference. */
  stateOk: boolean;
  /** The checksums compared, and anything else the client checked. */
  checks: Record<string, unknown>;
}

export interface RunningAppClient {
  /** Resolves once the client works against the service. */
  ready: Promise<void>;
  /** Ends the client (or waits for its bounded run to end) and returns its outcome. */
  stop: () => Promise<ClientOutcome>;
}

export interface AppDef {
  name: string;
  /** One line: the program, its client, what is checked. */
  description: string;
  port: number;
  image: () => Promise<HostImageSpec>;
  /** Work after the service answers and before the client starts (loading data...). */
  prepare?: (ctx: AppContext) => Promise<void>;
  startClient: (ctx: AppContext) => Promise<RunningAppClient>;
  /** A check beside the client's after the handoff (e.g. a transaction held across it). */
  afterHandoff?: (ctx: AppContext) => Promise<Record<string, unknown> & { ok: boolean }>;
  /** How long the service may take to answer after its start (default 60 s). */
  startTimeoutMs?: number;
  /** Target: its downtime within this many times the reference counter's of the same run (issue 17). */
  downtimeVsCounter?: number;
}

export interface AppResult {
  name: string;
  description: string;
  image: { name: string; imageId: string };
  /** Where it ran: handoff a -> b, null when it failed before. */
  from: string;
  to: string;
  ok: boolean;
  stateOk: boolean;
  failedOps: number;
  ops: number;
  /** The longest time without a completed client operation around the handoff. */
  clientGapMs: number | null;
  downtimeMs: number | null;
  totalMs: number | null;
  /** Bytes the migration sent (memory rounds, file system, image layers). */
  bytes: number | null;
  rounds: number | null;
  restoreMode: string | null;
  clientBytes: number;
  checks: Record<string, unknown>;
  errors: string[];
  /** Why the app failed, when it did (the run is kept and counted). */
  failure: string | null;
  /** Its downtime over the reference counter's of the same run, and its target when it has one. */
  downtimeVsCounter: { ratio: number | null; target: number | null; met: boolean | null };
  report: MigrationReport | null;
}

export interface AppsBenchResult {
  bench: 'apps';
  command: string;
  date: string;
  machine: { cores: number; memoryGiB: number; kernel: string };
  /** The lab's Docker --userns-remap (user, start of its uid and gid ranges); null: none. Absent in runs from before. */
  usernsRemap?: { user: string; uid: number; gid: number } | null;
  /** Where the apps and the reference got their network namespace: a holder, or their own (remapped lab). */
  network?: 'holder' | 'own';
  link: { bandwidth: string; latency: string };
  /** The busybox counter (in a holder, or its own namespace like the apps), handed off a -> b in the same run before the apps: the yardstick. */
  reference: ReferenceHandoff;
  apps: AppResult[];
  allOk: boolean;
  /** Every app with a downtime target met it (an app that failed misses its target). */
  targetsMet: boolean;
}

export interface ReferenceHandoff {
  workload: string;
  downtimeMs: number | null;
  totalMs: number | null;
  /** Why it could not be measured (then no app's ratio is known). */
  error: string | null;
}
