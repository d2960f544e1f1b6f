// Running external programs without a shell: arguments are passed as an array, never
// concatenated into a command line, so names and ids from input cannot inject commands.
import { spawn } from 'node:child_process';
import { CommandError } from './errors.js';
import { runTracked, type ProgramExit } from './spawner.js';

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  maxBuffer?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a program to completion; throws CommandError (with stderr) when it fails. */
export async function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  // Started through the daemon's spawner when one runs (see spawner.ts).
  let x: ProgramExit & { timedOut: boolean };
  try {
    x = await runTracked(cmd, args, {
      env: opts.env ?? process.env,
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
      ...(opts.input !== undefined ? { input: opts.input } : {}),
      maxStdout: opts.maxBuffer ?? 64 * 1024 * 1024,
      timeoutMs,
    });
  } catch (e) {
    throw new CommandError(cmd, args, null, (e as Error).message, e);
  }
  const stdout = x.stdout.toString('utf8');
  if (x.code === 0) return { stdout, stderr: x.stderr };
  const why = x.timedOut ? `timed out after ${timeoutMs} ms` : x.signal ? `killed by ${x.signal}` : '';
  throw new CommandError(cmd, args, x.code, why === '' ? x.stderr : `${x.stderr}${x.stderr === '' || x.stderr.endsWith('\n') ? '' : '\n'}${why}`);
}

/** Like run, but returns the exit code instead of throwing on a non-zero exit. */
export async function tryRun(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult & { exitCode: number }> {
  try {
    const r = await run(cmd, args, opts);
    return { ...r, exitCode: 0 };
  } catch (err) {
    if (err instanceof CommandError && err.exitCode !== null) {
      return { stdout: '', stderr: err.stderr, exitCode: err.exitCode };
    }
    throw err;
  }
}

/**
 * Starts a long-running program detached from us (own process group, output to a log file
 * descriptor) and returns its PID. Used for engines and daemons that outlive the CLI call.
 */
export function spawnDetached(cmd: string, args: readonly string[], opts: { logFd: number; env?: NodeJS.ProcessEnv; cwd?: string }): number {
  const child = spawn(cmd, args as string[], {
    detached: true,
    stdio: ['ignore', opts.logFd, opts.logFd],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
  });
  if (child.pid === undefined) throw new CommandError(cmd, args, null, 'could not start process');
  child.unref();
  return child.pid;
}
