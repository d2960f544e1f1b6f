// `cloudlet client --target ADDRESS`: the mobile user's side of a handoff. Keeps a raw TCP
// session and an HTTP keep-alive session to the handoff service (src/workloads/handoff-service.ts)
// for a bounded run, then prints what it saw: losses, errors, reconnects, latency, the largest
// gap, the continuity of the service's counter. When a lab is up (and the target is not
// loopback) it runs itself again inside the lab's client namespace.
// Not to be confused with src/cli/client.ts, the HTTP client of cloudletd.
import { rmSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import { CLIENT_DEFAULTS, formatSummary, formatTimeline, startClient, type ClientOptions } from '../../client/index.js';
import { clientNamespace, reexecInNamespace } from '../../client/lab-netns.js';
import { action, printJson } from '../output.js';
import { parseDuration } from './migrate.js';

interface ClientCliOptions {
  target: string;
  tcpPort: string;
  httpPort: string;
  interval: string;
  duration?: string;
  count?: string;
  tcp: boolean;
  http: boolean;
  window: string;
  grace: string;
  reconnect?: boolean;
  newConnectionPerRequest?: boolean;
  httpPath?: string;
  json?: boolean;
  timeline?: boolean;
  readyFile?: string;
  inLab?: boolean;
}

function intOption(text: string, option: string, min: number): number {
  if (!/^\d+$/.test(text) || Number(text) < min) throw new UsageError(`${option} must be an integer >= ${min} (got '${text}')`);
  return Number(text);
}

export function clientOptions(o: ClientCliOptions): ClientOptions {
  const intervalMs = parseDuration(o.interval, '--interval');
  const count = o.count === undefined ? undefined : intOption(o.count, '--count', 1);
  // Always bounded in time: with only --count, long enough for it at half the pace, plus 10 s.
  const durationMs = o.duration !== undefined ? parseDuration(o.duration, '--duration') : count !== undefined ? count * intervalMs * 2 + 10_000 : 30_000;
  return {
    target: o.target,
    tcpPort: intOption(o.tcpPort, '--tcp-port', 1),
    httpPort: intOption(o.httpPort, '--http-port', 1),
    tcp: o.tcp,
    http: o.http,
    intervalMs,
    durationMs,
    ...(count === undefined ? {} : { count }),
    window: intOption(o.window, '--window', 1),
    graceMs: parseDuration(o.grace, '--grace'),
    reconnect: Boolean(o.reconnect),
    ...(o.newConnectionPerRequest ? { newConnectionPerRequest: true } : {}),
    ...(o.httpPath !== undefined ? { httpPath: o.httpPath } : {}),
    samples: Boolean(o.timeline),
  };
}

export function registerClientCommand(program: Command): void {
  program
    .command('client')
    .description('the mobile user: a raw TCP and an HTTP keep-alive session to the handoff service; reports losses, gaps, reconnects')
    .requiredOption('--target <address>', 'service address')
    .option('--tcp-port <port>', 'raw TCP port of the service', String(CLIENT_DEFAULTS.tcpPort))
    .option('--http-port <port>', 'HTTP port of the service', String(CLIENT_DEFAULTS.httpPort))
    .option('--interval <time>', 'a request every (per session)', `${CLIENT_DEFAULTS.intervalMs}ms`)
    .option('--duration <time>', 'stop after (default 30s; with --count: count x interval x 2 + 10s)')
    .option('--count <n>', 'stop each session after n requests')
    .option('--no-tcp', 'no raw TCP session')
    .option('--no-http', 'no HTTP keep-alive session')
    .option('--window <n>', 'requests in flight at most per session (HTTP: pipelined on the kept-alive connection)', String(CLIENT_DEFAULTS.window))
    .option('--grace <time>', 'at stop, time left for in-flight requests before they count as lost', `${CLIENT_DEFAULTS.graceMs}ms`)
    .option('--reconnect', 'reconnect after a reset or closed connection (counted); default: the session ends')
    .option('--new-connection-per-request', 'HTTP: a new connection for every request (no keep-alive); failures are counted, the next request goes on')
    .option('--http-path <path>', 'HTTP: the path requested, n=N added to its query (default /req); the reply must be JSON {n, served, instance}')
    .option('--json', 'print the report as JSON')
    .option('--timeline', 'print an ASCII timeline of replies and gaps (with --json: per-request samples)')
    .option('--ready-file <path>', 'write this file once every session is connected and answered once')
    .option('--in-lab', "run in the lab's client namespace (default when a lab is up and the target is not loopback)")
    .option('--no-in-lab', 'run in this namespace even when a lab is up')
    .action(
      action(async (o: ClientCliOptions) => {
        const opts = clientOptions(o);
        const ns = clientNamespace(o.target, o.inLab);
        if (ns) return reexecInNamespace(ns);
        // A file left by an earlier run must not announce this one as ready.
        if (o.readyFile) rmSync(o.readyFile, { force: true });
        const abort = new AbortController();
        const onSignal = () => abort.abort();
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        const readyFile = o.readyFile;
        const handle = startClient({
          ...opts,
          signal: abort.signal,
          ...(readyFile ? { onReady: () => writeFileSync(readyFile, JSON.stringify({ readyAt: new Date().toISOString(), pid: process.pid }) + '\n') } : {}),
        });
        const report = await handle.done;
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        if (o.json) {
          printJson(report);
        } else {
          process.stdout.write(formatSummary(report));
          if (o.timeline) process.stdout.write('\n' + formatTimeline(report));
        }
        return report.ok ? 0 : 1;
      }),
    );
}
