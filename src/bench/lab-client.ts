// `cloudlet client` in the lab's client namespace, as a child process we own: the handoff
// benches' client (startLabClient: TCP and HTTP sessions to the handoff service) and an
// HTTP-only probe for other workloads (startLabHttpProbe: `--http-path`, a connection per
// request...). Both run through spawnLabClient; they differ in their arguments only.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError } from '../util/errors.js';
import type { ClientReport } from '../client/types.js';

const CLI_MAIN = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'cli', 'main.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long a started client may take to connect and write its ready file. */
const READY_TIMEOUT_MS = 20_000;
/** How long a stopped client may take to finish its report before it is killed. */
const STOP_TIMEOUT_MS = 15_000;

export interface RunningClient {
  pid: number;
  ready: Promise<void>;
  /** Stops the client (SIGINT: it finishes its report) and returns the report. */
  stop: () => Promise<ClientReport>;
}

export interface LabClientOptions {
  durationMs: number;
  intervalMs: number;
  env?: NodeJS.ProcessEnv;
  httpOnly?: boolean;
  newConnectionPerRequest?: boolean;
  window?: number;
}

/** The handoff service's client: a TCP and an HTTP session to `target` (or HTTP only). */
export async function startLabClient(target: string, opts: LabClientOptions): Promise<RunningClient> {
  return spawnLabClient({
    args: (readyFile) => [
      'client',
      '--target',
      target,
      '--in-lab',
      '--json',
      '--timeline',
      '--duration',
      `${opts.durationMs}ms`,
      '--interval',
      `${opts.intervalMs}ms`,
      '--ready-file',
      readyFile,
      // The request in flight when we stop the client is not lost by the handoff: on a busy
      // machine its answer may take more than the default 1 s grace.
      '--grace',
      '3000ms',
      ...(opts.httpOnly ? ['--no-tcp'] : []),
      ...(opts.newConnectionPerRequest ? ['--new-connection-per-request'] : []),
      ...(opts.window !== undefined ? ['--window', String(opts.window)] : []),
    ],
    env: { ...process.env, ...opts.env },
  });
}

export interface LabHttpProbeOptions {
  /** Upper bound of the run: the client is stopped before, once the measurements are done. */
  durationMs: number;
  intervalMs: number;
  /** Path requested (n=N added), e.g. /touch?pages=64. */
  httpPath: string;
  httpPort?: number;
  /** A connection per request: for servers that close every connection after their answer. */
  newConnectionPerRequest?: boolean;
  /** Requests pipelined on the kept-alive connection at most (not with a connection per request). */
  window?: number;
}

/** The client's arguments for an HTTP-only probe of `target` (JSON report with per-request samples). */
export function labHttpProbeArgs(target: string, o: LabHttpProbeOptions, readyFile: string): string[] {
  return [
    'client',
    '--target',
    target,
    '--in-lab',
    '--json',
    '--timeline',
    '--no-tcp',
    '--http-path',
    o.httpPath,
    ...(o.httpPort !== undefined ? ['--http-port', String(o.httpPort)] : []),
    '--duration',
    `${o.durationMs}ms`,
    '--interval',
    `${o.intervalMs}ms`,
    '--ready-file',
    readyFile,
    // The request in flight when the client is stopped is not lost by a handoff: on a busy
    // machine its answer may take more than the default 1 s grace.
    '--grace',
    '3000ms',
    ...(o.newConnectionPerRequest ? ['--new-connection-per-request'] : []),
    ...(o.window !== undefined ? ['--window', String(o.window)] : []),
  ];
}

/** Starts an HTTP-only `cloudlet client` against `target` in the lab's client namespace. */
export async function startLabHttpProbe(target: string, o: LabHttpProbeOptions): Promise<RunningClient> {
  return spawnLabClient({ args: (readyFile) => labHttpProbeArgs(target, o, readyFile), env: process.env });
}

/**
 * `cloudlet <args>` as a child process we own; `args` gets the file the client writes once
 * it is connected (`--ready-file`). The lab's environment (CLOUDLET_LAB_DIR...) in `env`
 * tells the client which lab's namespace to enter.
 */
async function spawnLabClient(o: { args: (readyFile: string) => string[]; env: NodeJS.ProcessEnv }): Promise<RunningClient> {
  const dir = await mkdtemp(join(os.tmpdir(), 'cloudlet-client-'));
  const readyFile = join(dir, 'ready');
  const child = spawn(process.execPath, [CLI_MAIN, ...o.args(readyFile)], { stdio: ['ignore', 'pipe', 'pipe'], env: o.env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => (done = true));
  const ready = (async () => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (
        await stat(readyFile).then(
          () => true,
          () => false,
        )
      )
        return;
      if (done)
        throw new CloudletError('client_failed', `the client exited before it was ready: ${(stderr.trim() || stdout.trim()).slice(-500)}`, {
          kind: 'internal',
        });
      if (Date.now() > deadline)
        throw new CloudletError('client_failed', `the client was not ready within 20 s: ${stderr.trim().slice(-500)}`, { kind: 'internal' });
      await sleep(50);
    }
  })();
  // A caller that stops the client without awaiting `ready` must not see an unhandled rejection.
  ready.catch(() => undefined);
  const stop = async (): Promise<ClientReport> => {
    if (!done && child.pid) process.kill(child.pid, 'SIGINT');
    const timer = setTimeout(() => child.pid && !done && process.kill(child.pid, 'SIGKILL'), STOP_TIMEOUT_MS);
    const code = await exited;
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
    try {
      return JSON.parse(stdout) as ClientReport;
    } catch {
      throw new CloudletError('client_failed', `the client exited ${code} without a report: ${stderr.trim().slice(-500)}`, { kind: 'internal' });
    }
  };
  if (!child.pid) throw new CloudletError('client_failed', 'could not start the client', { kind: 'internal' });
  return { pid: child.pid, ready, stop };
}
