// Running external programs without a shell: arguments are passed as an array, never
// concatenated into a command line, so names and ids from input cannot inject commands.
import { execFile, spawn } from 'node:child_process';
import { CommandError } from './errors.js';

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
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args as string[],
      {
        encoding: 'utf8',
        timeout: opts.timeoutMs ?? 120_000,
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        maxBuffer: opts.maxBuffer ?? 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) {
          const code = typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number'
            ? ((err as unknown as { code: number }).code)
            : null;
          reject(new CommandError(cmd, args, code, stderr || err.message, err));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like run, but returns the exit code instead of throwing on a non-zero exit. */
export async function tryRun(
  cmd: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult & { exitCode: number }> {
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
export function spawnDetached(
  cmd: string,
  args: readonly string[],
  opts: { logFd: number; env?: NodeJS.ProcessEnv; cwd?: string },
): number {
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
