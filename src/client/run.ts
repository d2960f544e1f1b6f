// The measuring client's run: starts the sessions, ticks them at the interval, decides when
// the run is ready (every session connected and answered once) and when it stops (duration,
// count, abort signal, or every session ended), gives in-flight requests a grace period,
// closes the connections and builds the report.
import { UsageError } from '../util/errors.js';
import { HANDOFF_SERVICE_DEFAULTS } from '../workloads/handoff-service.js';
import { RunClock, round2 } from './clock.js';
import { HttpSession } from './http-session.js';
import { HttpPipelineSession } from './http-pipeline-session.js';
import { SessionRecorder } from './recorder.js';
import type { Session } from './session.js';
import { TcpSession } from './tcp-session.js';
import type { ClientOptions, ClientReport, StopReason } from './types.js';

export const CLIENT_DEFAULTS = {
  tcpPort: HANDOFF_SERVICE_DEFAULTS.tcpPort,
  httpPort: HANDOFF_SERVICE_DEFAULTS.httpPort,
  intervalMs: 20,
  window: 1,
  payloadBytes: 16,
  graceMs: 1000,
  connectTimeoutMs: 5000,
} as const;

export interface ClientHandle {
  /** true once every session is connected and answered once; false if the run ended before. */
  ready: Promise<boolean>;
  /** The report, once the run has stopped and its connections are closed. */
  done: Promise<ClientReport>;
  /** Stops the run now (as the abort signal does); `done` still resolves with the report. */
  stop(): void;
}

/** Runs the client to its end and returns the report. */
export function runClient(opts: ClientOptions): Promise<ClientReport> {
  return startClient(opts).done;
}

function checkOptions(o: ClientOptions): void {
  const positiveInt = (v: number | undefined, name: string, min = 1) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= min)) throw new UsageError(`${name} must be an integer >= ${min} (got ${v})`);
  };
  if (!o.target) throw new UsageError('a target address is required');
  if (o.tcp === false && o.http === false) throw new UsageError('both sessions are disabled: nothing to measure', { hint: 'drop --no-tcp or --no-http' });
  if (o.durationMs === undefined && o.count === undefined) throw new UsageError('the run needs a bound: a duration or a count');
  if (o.durationMs !== undefined && !(o.durationMs > 0)) throw new UsageError(`the duration must be > 0 ms (got ${o.durationMs})`);
  if (o.intervalMs !== undefined && !(o.intervalMs >= 1)) throw new UsageError(`the interval must be >= 1 ms (got ${o.intervalMs})`);
  positiveInt(o.count, 'count');
  positiveInt(o.window, 'window');
  positiveInt(o.tcpPort, 'tcp port');
  positiveInt(o.httpPort, 'http port');
  positiveInt(o.payloadBytes, 'payload bytes', 0);
  positiveInt(o.graceMs, 'grace (ms)', 0);
  positiveInt(o.connectTimeoutMs, 'connect timeout (ms)');
  if (o.httpPath !== undefined && !/^\/[^\s#]*$/.test(o.httpPath))
    throw new UsageError(`the HTTP path must start with / and hold no space or # (got '${o.httpPath}')`);
}

type Sessions = { tcp?: Session; http?: Session };

/** The run's sessions (TCP and HTTP, unless disabled); each calls `onChange` when its state changes. */
function createSessions(opts: ClientOptions, run: { clock: RunClock; onChange: () => void }): Sessions {
  const { clock } = run;
  const common = {
    host: opts.target,
    limit: opts.count ?? Infinity,
    reconnect: opts.reconnect ?? false,
    connectTimeoutMs: opts.connectTimeoutMs ?? CLIENT_DEFAULTS.connectTimeoutMs,
    onChange: run.onChange,
  };
  const sessions: Sessions = {};
  if (opts.tcp !== false) {
    const port = opts.tcpPort ?? CLIENT_DEFAULTS.tcpPort;
    sessions.tcp = new TcpSession({
      ...common,
      port,
      recorder: new SessionRecorder('tcp', opts.target, port, clock),
      window: opts.window ?? CLIENT_DEFAULTS.window,
      payloadBytes: opts.payloadBytes ?? CLIENT_DEFAULTS.payloadBytes,
    });
  }
  if (opts.http !== false) {
    const port = opts.httpPort ?? CLIENT_DEFAULTS.httpPort;
    const perRequest = opts.newConnectionPerRequest ?? false;
    const window = opts.window ?? CLIENT_DEFAULTS.window;
    const recorder = new SessionRecorder('http', opts.target, port, clock, perRequest);
    const path = opts.httpPath ? { path: opts.httpPath } : {};
    // A window of more than one request is pipelined on the kept-alive connection; a
    // connection per request has one request per connection by definition.
    sessions.http =
      window > 1 && !perRequest
        ? new HttpPipelineSession({ ...common, port, recorder, window, ...path })
        : new HttpSession({
            ...common,
            port,
            recorder,
            newConnectionPerRequest: perRequest,
            ...(opts.requestTimeoutMs ? { requestTimeoutMs: opts.requestTimeoutMs } : {}),
            ...path,
          });
  }
  return sessions;
}

/** The report of a run that has stopped; ok when every session survived and was served continuously. */
function clientReport(
  opts: ClientOptions,
  run: { clock: RunClock; sessions: Sessions; intervalMs: number; stoppedBy: StopReason; readyAtMs: number | null; endedAtMs: number },
): ClientReport {
  const { clock, sessions, intervalMs, stoppedBy, readyAtMs, endedAtMs } = run;
  const report: ClientReport = {
    target: opts.target,
    startedAt: new Date(clock.startWall).toISOString(),
    endedAt: clock.iso(endedAtMs),
    durationMs: round2(endedAtMs),
    intervalMs,
    stoppedBy,
    readyAtMs,
    sessions: {},
    ok: false,
  };
  if (sessions.tcp) report.sessions.tcp = sessions.tcp.recorder.report(opts.samples ?? false);
  if (sessions.http) report.sessions.http = sessions.http.recorder.report(opts.samples ?? false);
  const reports = Object.values(report.sessions);
  report.ok = reports.every((r) => r.survived && r.served.continuous);
  return report;
}

export function startClient(opts: ClientOptions): ClientHandle {
  checkOptions(opts);
  const intervalMs = opts.intervalMs ?? CLIENT_DEFAULTS.intervalMs;
  const graceMs = opts.graceMs ?? CLIENT_DEFAULTS.graceMs;
  const clock = new RunClock();
  const sessions = createSessions(opts, { clock, onChange: () => check() });
  const all = Object.values(sessions);

  let readyAtMs: number | null = null;
  let resolveReady!: (ready: boolean) => void;
  const ready = new Promise<boolean>((r) => (resolveReady = r));
  let resolveDone!: (r: ClientReport) => void;
  const done = new Promise<ClientReport>((r) => (resolveDone = r));

  let stoppedBy: StopReason | null = null;
  let endedAtMs = 0;
  let finished = false;
  let graceTimer: NodeJS.Timeout | null = null;
  const ticker = setInterval(() => {
    for (const s of all) s.tick();
  }, intervalMs);
  const durationTimer = opts.durationMs === undefined ? null : setTimeout(() => stop('duration'), opts.durationMs);
  const onAbort = () => stop('signal');

  function check(): void {
    if (readyAtMs === null && all.every((s) => s.ready)) {
      readyAtMs = clock.now();
      resolveReady(true);
      opts.onReady?.();
    }
    if (stoppedBy === null) {
      if (all.every((s) => s.ended)) stop('sessions-ended');
      else if (all.every((s) => s.finishedSending && s.settled)) stop('count');
    } else if (all.every((s) => s.settled || s.ended)) {
      finish();
    }
  }

  function stop(reason: StopReason): void {
    if (stoppedBy !== null) return;
    stoppedBy = reason;
    endedAtMs = clock.now();
    clearInterval(ticker);
    if (durationTimer) clearTimeout(durationTimer);
    for (const s of all) s.recorder.markStop();
    // In-flight requests get graceMs to be answered before they count as lost.
    graceTimer = setTimeout(finish, graceMs);
    check();
  }

  function finish(): void {
    if (finished) return;
    finished = true;
    if (graceTimer) clearTimeout(graceTimer);
    opts.signal?.removeEventListener('abort', onAbort);
    for (const s of all) s.close();
    if (readyAtMs === null) resolveReady(false);
    const report = clientReport(opts, { clock, sessions, intervalMs, stoppedBy: stoppedBy!, readyAtMs, endedAtMs });
    resolveDone(report);
  }

  if (opts.signal?.aborted) {
    queueMicrotask(() => stop('signal'));
  } else {
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  }
  for (const s of all) s.start();
  return { ready, done, stop: () => stop('signal') };
}
