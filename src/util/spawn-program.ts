// Starting one program and reporting on it as messages: its PID once started, then its
// exit with its output. The same code runs in the spawner process (spawner-main.ts), whose
// messages cross an IPC channel, and in-process when no spawner runs (spawner.ts).
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';

/** Bytes of stderr kept (the end of it). */
const MAX_STDERR = 64 * 1024;

export interface SpawnRequest {
  id: number;
  cmd: string;
  args: string[];
  cwd?: string;
  env: Record<string, string | undefined>;
  /** Own process group (a kill of the group ends the program's helpers too). */
  detached: boolean;
  /** Fed to stdin: the first `end` bytes of a file, or the given bytes. */
  stdinFile?: { path: string; end: number };
  input?: string | Uint8Array;
  /** Longer stdout is cut (and said so in stderr). */
  maxStdout: number;
}

export type SpawnAnswer =
  | { t: 'pid'; id: number; pid: number }
  | {
      t: 'exit';
      id: number;
      code: number | null;
      signal: NodeJS.Signals | null;
      stdout: Uint8Array;
      stderr: string;
      /** The program could not be started (ENOENT, EACCES...). */
      error: { code: string | null; message: string } | null;
    };

export function startProgram(req: SpawnRequest, answer: (a: SpawnAnswer) => void): void {
  const failed = (e: NodeJS.ErrnoException, stderr: string): void =>
    answer({ t: 'exit', id: req.id, code: null, signal: null, stdout: Buffer.alloc(0), stderr, error: { code: e.code ?? null, message: e.message } });
  let child;
  try {
    child = spawn(req.cmd, req.args, {
      cwd: req.cwd,
      env: req.env,
      detached: req.detached,
      stdio: [req.stdinFile || req.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    failed(e as NodeJS.ErrnoException, '');
    return;
  }
  const out: Buffer[] = [];
  let outBytes = 0;
  let truncated = false;
  let err = '';
  let spawned = false;
  let done = false;
  child.stdout!.on('data', (b: Buffer) => {
    if (outBytes + b.length > req.maxStdout) {
      truncated = true;
      return;
    }
    out.push(b);
    outBytes += b.length;
  });
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString('utf8');
    if (err.length > MAX_STDERR) err = err.slice(-MAX_STDERR);
  });
  if (child.stdin) {
    const stdin = child.stdin;
    stdin.on('error', () => undefined); // EPIPE when the program exits early: its exit code tells
    if (req.stdinFile && req.stdinFile.end > 0) {
      const file = req.stdinFile.path;
      const rs = createReadStream(file, { start: 0, end: req.stdinFile.end - 1 });
      rs.on('error', (e) => {
        err += `\nreading ${file}: ${e.message}`;
        stdin.destroy();
      });
      rs.pipe(stdin);
    } else {
      stdin.end(req.input === undefined ? undefined : Buffer.from(req.input));
    }
  }
  child.on('spawn', () => {
    spawned = true;
    answer({ t: 'pid', id: req.id, pid: child.pid! });
  });
  child.on('error', (e: NodeJS.ErrnoException) => {
    // A program that could not be started (ENOENT, EACCES) is answered at once.
    if (spawned || done) return;
    done = true;
    failed(e, err);
  });
  child.on('close', (code, signal) => {
    if (done) return;
    done = true;
    if (truncated) err += `\nstdout longer than ${req.maxStdout} bytes: cut`;
    answer({ t: 'exit', id: req.id, code, signal, stdout: Buffer.concat(out), stderr: err, error: null });
  });
}
