// A client program of `cloudlet bench apps` in the lab's client namespace, as a child process
// we own: the host's python3 with client-py.ts's script, pgbench, psql. It is told to stop by
// a line on its stdin (never a signal by name), and its stdout is its report.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { CloudletError } from '../../util/errors.js';
import { nsenterArgs } from '../../lab/netns.js';
import type { LabState } from '../../lab/state.js';
import { APP_CLIENT_PY } from './client-py.js';
import type { ClientOutcome, RunningAppClient } from './types.js';

/** Debian's python3 (not a pyenv shim earlier in PATH). */
export const HOST_PYTHON = '/usr/bin/python3';

export interface ClientProcess {
  pid: number;
  /** Writes to its stdin. */
  write: (s: string) => void;
  /** Resolves with its exit code and output once it exited. */
  exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** The output so far. */
  output: () => string;
  /** Ends it if it still runs (SIGKILL, by its pid). */
  kill: () => void;
}

/** Starts `cmd args` in the lab's client namespace. */
export function spawnInClientNs(lab: LabState, cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): ClientProcess {
  const child = spawn('nsenter', nsenterArgs(lab.client.namespace, cmd, args), { stdio: ['pipe', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.on('error', () => undefined);
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  if (!child.pid) throw new CloudletError('client_failed', `could not start ${cmd} in the lab's client namespace`, { kind: 'internal' });
  let running = true;
  void exited.then(() => (running = false));
  return {
    pid: child.pid,
    write: (s) => {
      if (running) child.stdin.write(s);
    },
    exited,
    output: () => stdout + stderr,
    kill: () => {
      if (running && child.pid) process.kill(child.pid, 'SIGKILL');
    },
  };
}

/** Runs client-py.ts's script in `mode` until stopped; stop() returns its report. */
export async function startPythonClient(
  lab: LabState,
  mode: string,
  args: readonly (string | number)[],
  opts: { stopTimeoutMs?: number } = {},
): Promise<RunningAppClient> {
  const dir = await mkdtemp(join(os.tmpdir(), 'cloudlet-apps-client-'));
  const script = join(dir, 'client.py');
  await writeFile(script, APP_CLIENT_PY);
  const p = spawnInClientNs(lab, HOST_PYTHON, [script, mode, ...args.map(String)]);
  const stop = async (): Promise<ClientOutcome> => {
    p.write('stop\n');
    const timer = setTimeout(p.kill, opts.stopTimeoutMs ?? 120_000);
    const { code, stdout, stderr } = await p.exited;
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
    try {
      const r = JSON.parse(stdout) as Omit<ClientOutcome, 'checks'> & Record<string, unknown>;
      const { ops, failedOps, errors, done, bytes, stateOk, ...checks } = r;
      return { ops, failedOps, errors, done, bytes, stateOk: stateOk === true, checks };
    } catch {
      throw new CloudletError('client_failed', `the ${mode} client exited ${code} without a report: ${stderr.trim().slice(-800)}`, { kind: 'internal' });
    }
  };
  // Ready once it is past its first requests: the framework waits a pause before the handoff anyway.
  return { ready: Promise.resolve(), stop };
}

/** Waits until HOST:PORT accepts a TCP connection from the client namespace. */
export async function waitForPort(lab: LabState, address: string, port: number, timeoutMs: number): Promise<void> {
  const dir = await mkdtemp(join(os.tmpdir(), 'cloudlet-apps-wait-'));
  try {
    await writeFile(join(dir, 'client.py'), APP_CLIENT_PY);
    const p = spawnInClientNs(lab, HOST_PYTHON, [join(dir, 'client.py'), 'wait', address, String(port), String(Math.ceil(timeoutMs / 1000))]);
    p.write('\n');
    const { code, stderr } = await p.exited;
    if (code !== 0)
      throw new CloudletError('bench_failed', `${address}:${port} did not accept a connection within ${timeoutMs} ms ${stderr.trim().slice(-300)}`, {
        kind: 'internal',
      });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
