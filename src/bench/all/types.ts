// The shape of `cloudlet bench all`'s results.json: every raw figure of every repetition,
// plus what is needed to re-render the report from it alone (plan, machine, command).
// Summaries (median, min, max) are not stored: the report computes them from the raw rows.
import type { StopReason } from '../../migration/decision.js';

/**
 * 2: migration rows carry the client's view (clientGapMs, rttMs, clientNote). Version 1
 * files (no client on most workloads) still render, without the client columns.
 */
export const RESULTS_VERSION = 2;
export type ResultsVersion = 1 | typeof RESULTS_VERSION;

/** One migration, condensed from the daemon's MigrationReport. */
export interface MigrationRow {
  scenario: 'rounds' | 'alpha' | 'bandwidth' | 'decision';
  rep: number;
  workload: string;
  /** The setting varied in the scenario, e.g. { rounds: 1, n: 90 } or { mbit: 5 }. */
  params: Record<string, number | string>;
  from: string;
  to: string;
  /** The request body's stop rule, as sent to the daemon. */
  policy: string;
  codec: string;
  totalMs: number;
  downtimeMs: number;
  bytesSent: number;
  /** Image layers shipped because the destination lacked them (0: it had the image). */
  imageShippedBytes: number;
  precopyRounds: number;
  stopReason: StopReason | 'stop-and-copy' | null;
  /** Client requests sent during the run (activity scenarios), null for the probes of the other scenarios. */
  requests: number | null;
  /**
   * The longest silence between the client's replies that overlaps the migration (start to
   * end), from its per-request samples (client-figures.ts); null when it is not known, with
   * the reason in clientNote.
   */
  clientGapMs: number | null;
  /** The client's median request latency in the second before the migration started. */
  rttMs: number | null;
  /** Why clientGapMs is null (null when it was measured). */
  clientNote: string | null;
  rounds: { index: number; final: boolean; pagesChanged: number; pagesScanned: number; sentBytes: number; sendMs: number; stallMs: number }[];
  /** The link bandwidth the migration ran at (bandwidth and decision scenarios); absent in older files. */
  linkMbit?: number | null;
  /** The bytes that had to cross: the rounds' sentBytes summed (wire-limit.ts); absent in older files. */
  bytesToCross?: number;
  /** Their physical limit on the link, bytesToCross * 8 / bandwidth, ms; absent in older files. */
  wireLimitMs?: number | null;
}

export interface OverlayRow {
  rep: number;
  workload: 'large' | 'small';
  codec: string;
  overlayBytes: number;
  overlayRawBytes: number;
  appBytes: number;
  createMs: number;
  pushMs: number;
  synthesisMs: number;
  firstRequestMs: number;
  /** Baselines measured in the same repetition, on the same cloudlet. */
  prototypeSynthesisMs: number;
  fullImageBytes: number;
  fullImageMs: number;
  imageIdMatches: boolean;
}

export interface CompressionRow {
  rep: number;
  workload: string;
  /** Bytes of the memory sample measured (the process's private writable mappings, capped). */
  sampleBytes: number;
  zeroPagesPercent: number;
  codec: string;
  /** Wire bytes / raw bytes. */
  ratio: number;
  /** Raw MB (10^6 bytes) per second on one core; null for 'none' (no codec work). */
  compressMBps: number | null;
  decompressMBps: number | null;
  /** Predicted time to move the sample through compress | send | decompress, per link Mbit/s. */
  transferS: Record<string, number>;
}

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  loadAverageStart: number[];
  loadAverageEnd: number[];
}

export interface BenchPlan {
  quick: boolean;
  overlay: { reps: number; workloads: ('large' | 'small')[]; codec: string };
  compression: { reps: number; maxMiB: number; stateMb: number; mbits: number[] };
  activity: {
    reps: number;
    stateMb: number;
    dirtyKbPerRequest: number;
    windowMs: number;
    ns: number[];
    rounds: number[];
    alphas: number[];
    mbit: number;
    codec: string;
  };
  bandwidth: { reps: number; mbits: number[]; stateMb: number; dirtyPagesPerSec: number };
  decision: { reps: number; policies: string[]; n: number; stateMb: number; dirtyPagesPerSec: number; codec: string; mbit: number };
  /** What --quick leaves out, in words (empty for the full run). */
  quickDrops: string[];
}

export interface BenchAllResult {
  bench: 'all';
  version: ResultsVersion;
  command: string;
  startedAt: string;
  finishedAt: string;
  wallMs: number;
  machine: Machine;
  /** The lab's links when the run started (scenarios that sweep bandwidth restore them). */
  lab: { cloudlets: string[]; link: { bandwidth: string; latency: string } };
  plan: BenchPlan;
  /** Per scenario, its wall time. */
  scenarioMs: Record<string, number>;
  overlay: OverlayRow[];
  compression: CompressionRow[];
  rounds: MigrationRow[];
  alpha: MigrationRow[];
  bandwidth: MigrationRow[];
  decision: MigrationRow[];
  /** Published figures the report compares with (not measured here). */
  published: typeof PUBLISHED;
}

/** The classic evaluation's figures, as quoted in issue 6. */
export const PUBLISHED = {
  overlay2016: { large: { overlayMB: 69, synthesisS: 18 }, small: { overlayMB: 0.69, synthesisS: 4 } },
  maOpenFace: { totalS: { '5': 48.9, '100': 10.7 } as Record<string, number> },
  maBusybox: { totalS: [3.1, 3.2] as [number, number], downtimeS: [2.7, 2.8] as [number, number] },
} as const;
