// What a handoff looked like from the client: each session's outcome and the summary
// against the migrations' downtime.
import type { ClientReport, SessionReport } from '../client/types.js';
import type { MigrationReport } from '../migration/types.js';

/** The client may see the service silent for the downtime plus one retransmission's slack. */
export const GAP_SLACK_MS = 300;

export interface SessionOutcome {
  survived: boolean;
  sent: number;
  answered: number;
  lost: number;
  reconnects: number;
  errors: number;
  largestGapMs: number | null;
  servedContinuous: boolean;
}

function outcome(s: SessionReport | undefined): SessionOutcome | null {
  if (!s) return null;
  return {
    survived: s.survived && s.served.continuous,
    sent: s.sent,
    answered: s.answered,
    lost: s.lost,
    reconnects: s.reconnects,
    errors: s.errors.length,
    largestGapMs: s.largestGap?.ms ?? null,
    servedContinuous: s.served.continuous,
  };
}

export interface HandoffSummary {
  tcpConnectionSurvived: boolean;
  httpKeepAliveSurvived: boolean;
  /** The longest silence either session saw. */
  clientGapMs: number | null;
  downtimeMs: number | null;
  /** clientGapMs <= downtimeMs + GAP_SLACK_MS. */
  gapWithinDowntimePlusSlack: boolean;
  messagesLost: number;
  tcp: SessionOutcome | null;
  http: SessionOutcome | null;
}

export function summarize(client: ClientReport, migrations: MigrationReport[]): HandoffSummary {
  const tcp = outcome(client.sessions.tcp);
  const http = outcome(client.sessions.http);
  const gaps = [tcp?.largestGapMs, http?.largestGapMs].filter((g): g is number => typeof g === 'number');
  const clientGapMs = gaps.length ? Math.max(...gaps) : null;
  const downs = migrations.map((m) => m.downtimeMs).filter((d): d is number => d !== null);
  const downtimeMs = downs.length ? Math.max(...downs) : null;
  return {
    tcpConnectionSurvived: tcp?.survived ?? false,
    httpKeepAliveSurvived: http?.survived ?? false,
    clientGapMs,
    downtimeMs,
    gapWithinDowntimePlusSlack: clientGapMs !== null && downtimeMs !== null && clientGapMs <= downtimeMs + GAP_SLACK_MS,
    messagesLost: (tcp?.lost ?? 0) + (http?.lost ?? 0),
    tcp,
    http,
  };
}
