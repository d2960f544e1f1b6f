// The API's shapes as the page uses them: subsets of src/migration/types.ts and
// src/daemon/server.ts. They are written out here because the browser build cannot import
// the daemon's modules; test/unit/openapi.test.ts checks at compile time that the daemon's
// types still fit these.

export type MigrationState =
  | 'preparing'
  | 'precopy'
  | 'final'
  | 'restoring'
  | 'committing'
  | 'done'
  | 'rolling-back'
  | 'rolled-back'
  | 'failed';

export interface RoundReport {
  index: number;
  final: boolean;
  dumpMs: number;
  stallMs: number;
  hashMs: number;
  pagesScanned: number;
  pagesChanged: number;
  rawBytes: number;
  sentBytes: number;
  codec: string;
  sendMs: number;
  bandwidthBps: number;
  applyMs: number;
  decision: string | null;
}

export interface MigrationReport {
  id: string;
  container: string;
  from: string;
  to: string;
  state: MigrationState;
  policy: string;
  codec: string;
  rounds: RoundReport[];
  precopyRounds: number;
  stopReason: string | null;
  decision: string | null;
  totalMs: number | null;
  commitMs: number | null;
  downtimeMs: number | null;
  restoreMs: number | null;
  imageShipped: { bytes: number; layers: number; ms: number } | null;
  /** Network handoff: the address kept across the move, and the time to route it. */
  serviceAddress?: string | null;
  announceMs?: number | null;
  bytesSent: number;
  warnings: string[];
  startedAt: string;
  finishedAt: string | null;
  error: { code: string; message: string } | null;
}

export interface NodeInfo {
  node: string;
  version: string;
  engine: { reachable: boolean; version: string | null; apiVersion: string | null; experimental: boolean; error?: string };
  criu: { version: string | null; error?: string };
  capabilities: { checkpoint: boolean; checkpointBlockers: string[] };
  peers: string[];
}

export interface CloudletView {
  name: string;
  self: boolean;
  url: string | null;
  ok: boolean;
  latencyMs: number;
  error?: string;
  info: NodeInfo | null;
}

export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  state: string;
  status: string;
  created: string;
}

export interface OverlaySummary {
  id: string;
  appName: string | null;
  appImageId: string;
  baseName: string | null;
  codec: string;
  fileBytes: number;
  layers: number;
  received?: string;
  synthesized: string | null;
}

/** POST /v1/migrations body (src/daemon/routes-migrations.ts). */
export interface StartMigration {
  container: string;
  to: string;
  rounds?: number;
  codec?: 'none' | 'lz4' | 'zstd' | 'gzip' | 'auto';
}

export interface ApiErrorBody {
  error?: string;
  message?: string;
  hint?: string;
}
