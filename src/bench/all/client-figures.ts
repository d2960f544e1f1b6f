// What the client saw of one `bench all` migration: the longest silence between its replies
// that overlaps the migration (clientGapMs) and its round trip in the second before it
// (rttMs), from its per-request samples (`--timeline`). The attribution is the handoff
// bench's (handoff-runs.ts), so that these figures compare with `bench migrate`'s and
// `bench handoff`'s. A pure function over the client's report and the daemon's report.
import type { ClientReport, SessionReport } from '../../client/types.js';
import type { MigrationReport } from '../../migration/types.js';
import { handoffRuns, migrationWindow } from '../handoff-runs.js';

export interface ClientFigures {
  clientGapMs: number | null;
  rttMs: number | null;
  /** Why clientGapMs is null; null when it was measured. */
  clientNote: string | null;
}

/** The reasons a row has no client gap, as the report prints them. */
export const CLIENT_NOTES = {
  noSamples: 'the client report has no per-request samples',
  notAfter:
    'the client got no reply after the migration ended (its requests stopped before the service answered again), so its silence around the migration is unknown',
  noClient: 'no client ran (results.json of version 1)',
} as const;

export function clientFigures(client: ClientReport, migration: MigrationReport): ClientFigures {
  const sessions = [client.sessions.tcp, client.sessions.http].filter((s): s is SessionReport => s !== undefined);
  if (sessions.length === 0 || sessions.some((s) => s.samples === undefined)) return { clientGapMs: null, rttMs: null, clientNote: CLIENT_NOTES.noSamples };
  const [run] = handoffRuns(client, [migration]);
  const w = migrationWindow(client.startedAt, migration);
  // Without a reply after the end, the last silence is cut short by the client's own stop
  // (or the freeze fell after its last request): no figure rather than one that is too small.
  const heardAfter = sessions.some((s) => s.samples!.some((x) => x.repliedAtMs !== null && x.repliedAtMs >= w.endMs));
  const rttMs = run?.rttMs ?? null;
  if (!run || !heardAfter || run.clientGapMs === null) return { clientGapMs: null, rttMs, clientNote: CLIENT_NOTES.notAfter };
  return { clientGapMs: run.clientGapMs, rttMs, clientNote: null };
}
