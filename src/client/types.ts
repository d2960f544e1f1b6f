// The measuring client's options and report (JSON shape of `cloudlet client --json`).
// Times: `*Ms` fields named `atMs`/`startMs` are milliseconds since the run started
// (monotonic clock); `at`/`start` fields are the same instants as ISO wall-clock strings, so a
// benchmark can line them up with a migration's own timestamps.

export type SessionKind = 'tcp' | 'http';

export interface ClientOptions {
  /** Service address (IPv4/IPv6 literal or host name). */
  target: string;
  tcpPort?: number;
  httpPort?: number;
  /** Run the raw TCP session / the HTTP keep-alive session (both by default). */
  tcp?: boolean;
  http?: boolean;
  /** A new request every intervalMs (skipped while the window is full). Default 20. */
  intervalMs?: number;
  /** Stop after this long (ms). At least one of durationMs and count must be set. */
  durationMs?: number;
  /** Stop each session after it sent this many requests (and their replies came or grace ran out). */
  count?: number;
  /** Requests in flight at most per session (default 1): TCP line requests, HTTP requests pipelined on the kept-alive connection (not with newConnectionPerRequest). */
  window?: number;
  /** Padding bytes of each TCP request's payload (default 16). */
  payloadBytes?: number;
  /**
   * HTTP: a new TCP connection for every request (no keep-alive), as many short-lived clients
   * would; a failed request is counted and the next one tried. `survived` then means: every
   * request answered, no error. Default false (one kept-alive connection).
   */
  newConnectionPerRequest?: boolean;
  /** With newConnectionPerRequest: a request with no byte of answer for this long fails (default 3000). */
  requestTimeoutMs?: number;
  /**
   * HTTP: the path each request GETs, with `n=N` added to its query (default /req, the handoff
   * service's). Whatever the path, the reply must be the handoff service's JSON {n, served,
   * instance} (other fields are ignored), so that the same checks apply to any workload.
   */
  httpPath?: string;
  /** Reconnect after a closed or reset connection, counting it (default false: the session ends). */
  reconnect?: boolean;
  /** At stop, how long in-flight requests may still be answered before they count as lost (default 1000). */
  graceMs?: number;
  /** Limit of the first connection's set-up (default 5000); an established connection has no timeout. */
  connectTimeoutMs?: number;
  /** Stops the run early (as SIGINT does for the CLI); the report is still produced. */
  signal?: AbortSignal;
  /** Called once every enabled session is connected and has been answered once. */
  onReady?: () => void;
  /** Keep every request's record in the report (`samples`). Default false. */
  samples?: boolean;
}

export interface ClientErrorRecord {
  atMs: number;
  at: string;
  /** Node's error code (ECONNRESET, ECONNREFUSED...) or a client-side code (closed, timeout, bad_reply...). */
  code: string;
  message: string;
}

export interface ConnectionRecord {
  localPort: number | null;
  openedAtMs: number;
  closedAtMs: number | null;
}

export interface RequestSample {
  n: number;
  sentAtMs: number;
  repliedAtMs: number | null;
  latencyMs: number | null;
  served: number | null;
  instance: string | null;
}

export interface GapRecord {
  ms: number;
  startMs: number;
  start: string;
  /** Request numbers of the replies on either side of the gap. */
  afterN: number;
  beforeN: number;
}

export interface ServedContinuity {
  first: number | null;
  last: number | null;
  /** +1 per answered request throughout the run (no jump, no reset). */
  continuous: boolean;
  /** served went up by more than one: other clients, or replies we never saw. */
  jumps: { n: number; from: number; to: number }[];
  /** served went down or repeated: a different or restarted process (state not moved). */
  resets: { n: number; from: number; to: number }[];
}

export interface SessionReport {
  kind: SessionKind;
  target: string;
  port: number;
  sent: number;
  answered: number;
  /** Sent and never answered (in-flight requests at stop got graceMs to be answered). */
  lost: number;
  /** The first 100 lost request numbers. */
  lostNumbers: number[];
  /** Requests in flight when the run stopped that were answered within the grace period. */
  answeredInGrace: number;
  errors: ClientErrorRecord[];
  reconnects: number;
  connections: ConnectionRecord[];
  latencyMs: { p50: number; p95: number; max: number; mean: number } | null;
  /** The longest time between two consecutive replies. */
  largestGap: GapRecord | null;
  /** The five longest gaps, longest first. */
  topGaps: GapRecord[];
  served: ServedContinuity;
  /** Distinct `instance` values in the order they were first seen. */
  instances: string[];
  /** Reply bookkeeping: numbers answered twice, answered before an older pending one, never sent. */
  sequence: { duplicates: number[]; outOfOrder: number[]; unexpected: number[] };
  /** One connection from first to last, no error, no reconnect, nothing lost. */
  survived: boolean;
  samples?: RequestSample[];
}

export type StopReason = 'duration' | 'count' | 'signal' | 'sessions-ended';

export interface ClientReport {
  target: string;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  intervalMs: number;
  stoppedBy: StopReason;
  /** When every session was connected and answered once (ms since start), or null. */
  readyAtMs: number | null;
  sessions: { tcp?: SessionReport; http?: SessionReport };
  /** Every session survived and its served counter was continuous. */
  ok: boolean;
}
