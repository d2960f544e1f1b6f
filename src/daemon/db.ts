// cloudletd's own state in SQLite (WAL: readers such as tests or the dashboard do not block
// the daemon). The schema evolves through MIGRATIONS: entry i brings the database from
// user_version i to i+1, inside one transaction, so a crash never leaves half a migration.
import { FINAL_MIGRATION_STATES, type MigrationJournal, type MigrationRole, type MigrationRow } from '../migration/journal.js';
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CloudletError } from '../util/errors.js';

export const DB_FILE = 'cloudletd.db';

/** Append only: never edit a released entry, add a new one. */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE events (
     id   INTEGER PRIMARY KEY AUTOINCREMENT,
     ts   TEXT NOT NULL,
     kind TEXT NOT NULL,
     data TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data))
   );
   CREATE INDEX events_kind_ts ON events(kind, ts);
   CREATE TABLE peers (
     name       TEXT PRIMARY KEY,
     url        TEXT NOT NULL,
     last_seen  TEXT,
     last_error TEXT
   );`,
  // The migration journal: one row per handoff and role, updated at every state change, so
  // that a restarted daemon knows what was in flight.
  `CREATE TABLE migrations (
     id         TEXT NOT NULL,
     role       TEXT NOT NULL CHECK (role IN ('source', 'destination')),
     container  TEXT NOT NULL,
     from_node  TEXT NOT NULL,
     to_node    TEXT NOT NULL,
     state      TEXT NOT NULL,
     options    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(options)),
     report     TEXT CHECK (report IS NULL OR json_valid(report)),
     error      TEXT,
     created    TEXT NOT NULL,
     updated    TEXT NOT NULL,
     PRIMARY KEY (id, role)
   );
   CREATE INDEX migrations_container ON migrations(container, state);`,
  // The overlays this cloudlet holds (verified on receipt; files in dataDir/overlays).
  `CREATE TABLE overlays (
     id            TEXT PRIMARY KEY,
     app_image_id  TEXT NOT NULL,
     app_name      TEXT,
     base_image_id TEXT NOT NULL,
     base_name     TEXT,
     codec         TEXT NOT NULL,
     path          TEXT NOT NULL,
     file_bytes    INTEGER NOT NULL,
     raw_bytes     INTEGER NOT NULL,
     layers        INTEGER NOT NULL,
     header        TEXT NOT NULL CHECK (json_valid(header)),
     receive_ms    INTEGER NOT NULL,
     received      TEXT NOT NULL,
     synthesized   TEXT
   );`,
  // Service addresses this cloudlet handed out whose services moved to another cloudlet:
  // the engine's IPAM sees them free, but the address still belongs to the moved service.
  `CREATE TABLE moved_addresses (
     address   TEXT PRIMARY KEY,
     container TEXT NOT NULL,
     moved_to  TEXT NOT NULL,
     ts        TEXT NOT NULL
   );`,
];

// The journal's row shapes belong to the migration core, which defines what it needs.
export { FINAL_MIGRATION_STATES, type MigrationRole, type MigrationRow } from '../migration/journal.js';

export interface EventRow {
  id: number;
  ts: string;
  kind: string;
  data: Record<string, unknown>;
}

export interface PeerRow {
  name: string;
  url: string;
  lastSeen: string | null;
  lastError: string | null;
}

export class DaemonDb implements MigrationJournal {
  private constructor(
    readonly path: string,
    private readonly db: Database.Database,
  ) {}

  /** Opens (creating if needed) dataDir/cloudletd.db and applies pending migrations. */
  static open(dataDir: string, opts: { readonly?: boolean } = {}): DaemonDb {
    const path = join(dataDir, DB_FILE);
    let db: Database.Database;
    try {
      if (!opts.readonly) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
    } catch (err) {
      throw new CloudletError('db_open_failed', `cannot open database ${path}: ${(err as Error).message}`, {
        kind: 'internal',
        context: { path },
        cause: err,
      });
    }
    if (!opts.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('foreign_keys = ON');
      migrate(db, path);
    }
    return new DaemonDb(path, db);
  }

  /** The service at `address` moved away: the address is not handed out here again. */
  markAddressMoved(address: string, container: string, movedTo: string): void {
    this.db
      .prepare('INSERT OR REPLACE INTO moved_addresses (address, container, moved_to, ts) VALUES (?, ?, ?, ?)')
      .run(address, container, movedTo, new Date().toISOString());
  }

  /** A service with this address runs here (again): it is no longer someone else's. */
  clearMovedAddress(address: string): void {
    this.db.prepare('DELETE FROM moved_addresses WHERE address = ?').run(address);
  }

  movedAddresses(): Set<string> {
    return new Set((this.db.prepare('SELECT address FROM moved_addresses').all() as { address: string }[]).map((r) => r.address));
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  recordEvent(kind: string, data: Record<string, unknown> = {}): number {
    const r = this.db.prepare('INSERT INTO events (ts, kind, data) VALUES (?, ?, ?)').run(new Date().toISOString(), kind, JSON.stringify(data));
    return Number(r.lastInsertRowid);
  }

  /** Most recent first. */
  events(opts: { kind?: string; limit?: number } = {}): EventRow[] {
    const rows = this.db
      .prepare(`SELECT id, ts, kind, data FROM events WHERE (@kind IS NULL OR kind = @kind) ORDER BY id DESC LIMIT @limit`)
      .all({ kind: opts.kind ?? null, limit: opts.limit ?? 100 }) as { id: number; ts: string; kind: string; data: string }[];
    return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as Record<string, unknown> }));
  }

  /** Records the outcome of a health check of a peer: success sets last_seen, failure last_error. */
  recordPeerCheck(name: string, url: string, outcome: { ok: true } | { ok: false; error: string }): void {
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO peers (name, url, last_seen, last_error) VALUES (@name, @url, @seen, @error)
         ON CONFLICT(name) DO UPDATE SET url = excluded.url,
           last_seen = COALESCE(excluded.last_seen, peers.last_seen),
           last_error = excluded.last_error`,
      )
      .run({ name, url, seen: outcome.ok ? now : null, error: outcome.ok ? null : outcome.error });
  }

  peers(): PeerRow[] {
    const rows = this.db.prepare('SELECT name, url, last_seen, last_error FROM peers ORDER BY name').all() as {
      name: string;
      url: string;
      last_seen: string | null;
      last_error: string | null;
    }[];
    return rows.map((r) => ({ name: r.name, url: r.url, lastSeen: r.last_seen, lastError: r.last_error }));
  }

  peer(name: string): PeerRow | null {
    return this.peers().find((p) => p.name === name) ?? null;
  }

  insertMigration(m: Omit<MigrationRow, 'created' | 'updated' | 'report' | 'error'>): void {
    const now = new Date().toISOString();
    this.db
      .prepare(
        `INSERT INTO migrations (id, role, container, from_node, to_node, state, options, created, updated)
         VALUES (@id, @role, @container, @fromNode, @toNode, @state, @options, @now, @now)`,
      )
      .run({ ...m, options: JSON.stringify(m.options), now });
  }

  updateMigration(id: string, role: MigrationRole, patch: { state?: string; report?: Record<string, unknown> | null; error?: string | null }): void {
    const cur = this.migration(id, role);
    if (!cur) throw new CloudletError('db_missing_row', `no ${role} migration ${id} in the journal`, { kind: 'internal', context: { id, role } });
    this.db.prepare('UPDATE migrations SET state = @state, report = @report, error = @error, updated = @now WHERE id = @id AND role = @role').run({
      id,
      role,
      state: patch.state ?? cur.state,
      report: JSON.stringify(patch.report === undefined ? cur.report : patch.report),
      error: patch.error === undefined ? cur.error : patch.error,
      now: new Date().toISOString(),
    });
  }

  migration(id: string, role: MigrationRole): MigrationRow | null {
    const r = this.db.prepare('SELECT * FROM migrations WHERE id = ? AND role = ?').get(id, role) as RawMigration | undefined;
    return r ? toMigrationRow(r) : null;
  }

  /** Most recent first. */
  migrations(opts: { role?: MigrationRole; limit?: number } = {}): MigrationRow[] {
    const rows = this.db
      .prepare('SELECT * FROM migrations WHERE (@role IS NULL OR role = @role) ORDER BY created DESC LIMIT @limit')
      .all({ role: opts.role ?? null, limit: opts.limit ?? 100 }) as RawMigration[];
    return rows.map(toMigrationRow);
  }

  /** Migrations of this role that have not reached a final state. */
  activeMigrations(role: MigrationRole): MigrationRow[] {
    const finals = FINAL_MIGRATION_STATES.map((s) => `'${s}'`).join(',');
    const rows = this.db.prepare(`SELECT * FROM migrations WHERE role = ? AND state NOT IN (${finals}) ORDER BY created`).all(role) as RawMigration[];
    return rows.map(toMigrationRow);
  }

  /** Records an overlay (replacing an earlier copy of the same app image's overlay). */
  upsertOverlay(o: Omit<OverlayRow, 'synthesized'>): void {
    this.db
      .prepare(
        `INSERT INTO overlays (id, app_image_id, app_name, base_image_id, base_name, codec, path, file_bytes, raw_bytes, layers, header, receive_ms, received)
         VALUES (@id, @appImageId, @appName, @baseImageId, @baseName, @codec, @path, @fileBytes, @rawBytes, @layers, @header, @receiveMs, @received)
         ON CONFLICT(id) DO UPDATE SET app_image_id = excluded.app_image_id, app_name = excluded.app_name,
           base_image_id = excluded.base_image_id, base_name = excluded.base_name, codec = excluded.codec, path = excluded.path,
           file_bytes = excluded.file_bytes, raw_bytes = excluded.raw_bytes, layers = excluded.layers, header = excluded.header,
           receive_ms = excluded.receive_ms, received = excluded.received, synthesized = NULL`,
      )
      .run({ ...o, header: JSON.stringify(o.header) });
  }

  overlay(id: string): OverlayRow | null {
    const r = this.db.prepare('SELECT * FROM overlays WHERE id = ?').get(id) as RawOverlay | undefined;
    return r ? toOverlayRow(r) : null;
  }

  /** Most recent first. */
  overlays(): OverlayRow[] {
    return (this.db.prepare('SELECT * FROM overlays ORDER BY received DESC').all() as RawOverlay[]).map(toOverlayRow);
  }

  markOverlaySynthesized(id: string): void {
    this.db.prepare('UPDATE overlays SET synthesized = ? WHERE id = ?').run(new Date().toISOString(), id);
  }

  deleteOverlay(id: string): boolean {
    return this.db.prepare('DELETE FROM overlays WHERE id = ?').run(id).changes > 0;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

export interface OverlayRow {
  id: string;
  appImageId: string;
  appName: string | null;
  baseImageId: string;
  baseName: string | null;
  codec: string;
  path: string;
  fileBytes: number;
  rawBytes: number;
  layers: number;
  header: Record<string, unknown>;
  receiveMs: number;
  received: string;
  synthesized: string | null;
}

interface RawOverlay {
  id: string;
  app_image_id: string;
  app_name: string | null;
  base_image_id: string;
  base_name: string | null;
  codec: string;
  path: string;
  file_bytes: number;
  raw_bytes: number;
  layers: number;
  header: string;
  receive_ms: number;
  received: string;
  synthesized: string | null;
}

function toOverlayRow(r: RawOverlay): OverlayRow {
  return {
    id: r.id,
    appImageId: r.app_image_id,
    appName: r.app_name,
    baseImageId: r.base_image_id,
    baseName: r.base_name,
    codec: r.codec,
    path: r.path,
    fileBytes: r.file_bytes,
    rawBytes: r.raw_bytes,
    layers: r.layers,
    header: JSON.parse(r.header) as Record<string, unknown>,
    receiveMs: r.receive_ms,
    received: r.received,
    synthesized: r.synthesized,
  };
}

interface RawMigration {
  id: string;
  role: MigrationRole;
  container: string;
  from_node: string;
  to_node: string;
  state: string;
  options: string;
  report: string | null;
  error: string | null;
  created: string;
  updated: string;
}

function toMigrationRow(r: RawMigration): MigrationRow {
  return {
    id: r.id,
    role: r.role,
    container: r.container,
    fromNode: r.from_node,
    toNode: r.to_node,
    state: r.state,
    options: JSON.parse(r.options) as Record<string, unknown>,
    report: r.report === null ? null : (JSON.parse(r.report) as Record<string, unknown> | null),
    error: r.error,
    created: r.created,
    updated: r.updated,
  };
}

function migrate(db: Database.Database, path: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    // A newer cloudletd wrote this database; running old code on it could corrupt it.
    throw new CloudletError('db_too_new', `database ${path} has schema version ${current}, this cloudletd knows ${MIGRATIONS.length}`, {
      kind: 'internal',
      context: { path, current, known: MIGRATIONS.length },
      hint: 'upgrade cloudletd or use another dataDir',
    });
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
