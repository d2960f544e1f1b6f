// What the migration core needs from its host, as interfaces the host implements: a journal
// of migrations that outlives the process (cloudletd: its SQLite database), and a sink for
// live progress (cloudletd: the dashboard's event stream). The core never imports the daemon.
import type { MigrationReport } from './types.js';

export type MigrationRole = 'source' | 'destination';

export interface MigrationRow {
  id: string;
  role: MigrationRole;
  container: string;
  fromNode: string;
  toNode: string;
  state: string;
  options: Record<string, unknown>;
  report: Record<string, unknown> | null;
  error: string | null;
  created: string;
  updated: string;
}

/** States after which a migration holds nothing any more. */
export const FINAL_MIGRATION_STATES = ['done', 'failed', 'rolled-back', 'aborted'] as const;

export interface MigrationJournal {
  insertMigration(m: Omit<MigrationRow, 'created' | 'updated' | 'report' | 'error'>): void;
  updateMigration(id: string, role: MigrationRole, patch: { state?: string; report?: Record<string, unknown> | null; error?: string | null }): void;
  migration(id: string, role: MigrationRole): MigrationRow | null;
  /** Most recent first. */
  migrations(opts?: { role?: MigrationRole; limit?: number }): MigrationRow[];
  /** Migrations of this role that have not reached a final state. */
  activeMigrations(role: MigrationRole): MigrationRow[];
  /** The service at `address` moved away: the address is not handed out here again. */
  markAddressMoved(address: string, container: string, movedTo: string): void;
  /** The service at `address` is served here (again). */
  clearMovedAddress(address: string): void;
  /** Something that happened here, for the daemon's event log (e.g. a service re-created). */
  recordEvent(kind: string, data?: Record<string, unknown>): void;
}

/** Where a source publishes its report at every journal write (live progress). */
export interface MigrationEventSink {
  publish(report: MigrationReport): void;
}
