// Starting programs without forking the daemon. Node forks the whole process to start a
// program, and a fork copies its page tables: on this machine kind that blocked cloudletd's
// event loop 29-64 ms per program once a 256 MiB handoff had grown it to ~500 MB resident
// (runc checkpoint, rsync and getfattr inside the frozen window, one after the other).
// A daemon therefore starts a small spawner process while it is still small
// (startSpawner) and has it start every program; its fork costs a few ms however large the
// daemon grows. Without a spawner (CLI, tests, or after the spawner died) programs are
// started in-process, with the same code (spawn-program.ts).
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CloudletError } from './errors.js';
import { startProgram, type SpawnAnswer, type SpawnRequest } from './spawn-program.js';

export interface ProgramOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Own process group: kill(signal, { group: true }) ends the program's helpers too. */
  detached?: boolean;
  stdinFile?: { path: string; end: number };
  input?: string | Buffer;
  /** Default 64 MiB. */
  maxStdout?: number;
}

export interface ProgramExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** A program that could not be started (not found, not executable). */
export class ProgramStartError extends CloudletError {
  constructor(
    readonly command: string,
    readonly errno: string | null,
    message: string,
    stderr: string,
  ) {
    super('program_start_failed', `cannot run ${command}: ${message}`, { kind: 'internal', context: { command, errno, stderr: stderr.slice(-2000) } });
  }
}

export interface Program {
  /** Resolves once the program runs (rejects as `exited` does when it never started). */
  readonly pid: Promise<number>;
  /** Resolves when it has exited and its output is closed; rejects with ProgramStartError. */
  readonly exited: Promise<ProgramExit>;
  /** Sends a signal to it (or its process group), once it runs; false if it has exited. */
  kill(signal: NodeJS.Signals, opts?: { group?: boolean }): boolean;
}

interface Pending {
  onAnswer(a: SpawnAnswer): void;
}

interface Spawner {
  child: ChildProcess;
  pending: Map<number, Pending>;
}

let spawner: Spawner | null = null;
/** The error code of an answer made up here for the programs a dead spawner was watching. */
const SPAWNER_EXITED = 'spawner_exited';
let starting: Promise<void> | null = null;
let nextId = 1;

/**
 * Starts the spawner process (idempotent). Call it early, while this process is small.
 * If the spawner dies, programs are started in-process again (and those it was watching
 * fail with an error naming it).
 */
export function startSpawner(): Promise<void> {
  if (spawner) return Promise.resolve();
  starting ??= launchSpawner().finally(() => (starting = null));
  return starting;
}

async function launchSpawner(): Promise<void> {
  const child = fork(fileURLToPath(new URL('./spawner-main.js', import.meta.url)), [], {
    serialization: 'advanced', // Buffers cross as they are
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv: [],
  });
  const pending = new Map<number, Pending>();
  const s: Spawner = { child, pending };
  child.on('message', (a: SpawnAnswer) => pending.get(a.id)?.onAnswer(a));
  // No new requests once its channel is gone; the exit below answers the watched ones.
  child.once('disconnect', () => {
    if (spawner === s) spawner = null;
  });
  child.once('exit', (code, signal) => {
    if (spawner === s) spawner = null;
    for (const [id, p] of pending) {
      p.onAnswer({
        t: 'exit',
        id,
        code: null,
        signal: null,
        stdout: new Uint8Array(0),
        stderr: '',
        error: { code: SPAWNER_EXITED, message: `the spawner process exited (${signal ?? `exit ${code}`}) while it watched this program` },
      });
    }
    pending.clear();
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e) => reject(new CloudletError('spawner_failed', `cannot start the spawner process: ${e.message}`, { kind: 'internal', cause: e })));
  });
  // The spawner must not keep a CLI or a test alive on its own: it holds this process
  // only while a program it started is being watched.
  holdFor(s, false);
  spawner = s;
}

/** Whether the spawner (its channel, and its exit) keeps this process alive: while it watches a program. */
function holdFor(s: Spawner, hold: boolean): void {
  if (hold) {
    s.child.ref();
    s.child.channel?.ref();
  } else {
    s.child.unref();
    s.child.channel?.unref();
  }
}

/** Stops the spawner (programs it started keep running). */
export function stopSpawner(): void {
  const s = spawner;
  spawner = null;
  if (s?.child.connected) s.child.disconnect();
}

/** The spawner process's PID, or null when programs are started in-process. */
export function spawnerPid(): number | null {
  return spawner?.child.pid ?? null;
}

/** The request for the spawner (or spawn-program.ts in-process), with the defaults filled in. */
function spawnRequest(cmd: string, args: readonly string[], opts: ProgramOptions): SpawnRequest {
  return {
    id: nextId++,
    cmd,
    args: [...args],
    env: { ...(opts.env ?? process.env) },
    detached: opts.detached ?? false,
    maxStdout: opts.maxStdout ?? 64 * 1024 * 1024,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    ...(opts.stdinFile ? { stdinFile: opts.stdinFile } : {}),
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  };
}

/** Has the spawner `s` start the program, or starts it in-process when there is none (or it is going). */
function sendRequest(s: Spawner | null, req: SpawnRequest, onAnswer: (a: SpawnAnswer) => void): void {
  if (s) {
    if (s.pending.size === 0) holdFor(s, true);
    s.pending.set(req.id, { onAnswer });
    s.child.send(req, (err) => {
      if (!err || !s.pending.delete(req.id)) return;
      // The channel closed under the request (the spawner is going): nothing was started.
      if (s.pending.size === 0) holdFor(s, false);
      startProgram(req, onAnswer);
    });
  } else {
    startProgram(req, onAnswer);
  }
}

/** Starts a program (no shell: arguments as given) through the spawner when it runs. */
export function startTracked(cmd: string, args: readonly string[], opts: ProgramOptions = {}): Program {
  const req = spawnRequest(cmd, args, opts);
  let knownPid: number | null = null;
  let over = false;
  let pidResolve!: (pid: number) => void;
  let pidReject!: (e: unknown) => void;
  const pid = new Promise<number>((res, rej) => {
    pidResolve = res;
    pidReject = rej;
  });
  let exitResolve!: (x: ProgramExit) => void;
  let exitReject!: (e: unknown) => void;
  const exited = new Promise<ProgramExit>((res, rej) => {
    exitResolve = res;
    exitReject = rej;
  });
  // Whoever awaits only one of them must not leave the other's rejection unhandled.
  pid.catch(() => undefined);
  exited.catch(() => undefined);
  const s = spawner;
  const onAnswer = (a: SpawnAnswer): void => {
    if (a.t === 'pid') {
      knownPid = a.pid;
      pidResolve(a.pid);
      return;
    }
    over = true;
    if (s?.pending.delete(req.id) && s.pending.size === 0) holdFor(s, false);
    if (a.error) {
      // Its exit status is lost with the spawner; the program itself may still run.
      const e =
        a.error.code === SPAWNER_EXITED
          ? new CloudletError(SPAWNER_EXITED, `${cmd}: ${a.error.message}`, { kind: 'internal', context: { command: cmd, pid: knownPid } })
          : new ProgramStartError(cmd, a.error.code, a.error.message, a.stderr);
      pidReject(e);
      exitReject(e);
      return;
    }
    exitResolve({ code: a.code, signal: a.signal, stdout: Buffer.from(a.stdout.buffer, a.stdout.byteOffset, a.stdout.byteLength), stderr: a.stderr });
  };
  sendRequest(s, req, onAnswer);
  return {
    pid,
    exited,
    kill(signal, killOpts = {}) {
      if (over || knownPid === null) {
        if (!over)
          void pid.then(
            () => this.kill(signal, killOpts),
            () => undefined,
          );
        return !over;
      }
      try {
        process.kill(killOpts.group ? -knownPid : knownPid, signal);
        return true;
      } catch (e) {
        // ESRCH: it has just exited (its exit answer is on the way).
        if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
        throw e;
      }
    },
  };
}

/**
 * Runs a program to its exit (through the spawner when it runs). At the deadline it gets
 * `kill` (default SIGTERM), its whole process group with `killGroup` (a detached program).
 */
export async function runTracked(
  cmd: string,
  args: readonly string[],
  opts: ProgramOptions & { timeoutMs: number; kill?: NodeJS.Signals; killGroup?: boolean },
): Promise<ProgramExit & { timedOut: boolean }> {
  const { timeoutMs, kill = 'SIGTERM', killGroup = false, ...programOptions } = opts;
  const p = startTracked(cmd, args, programOptions);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    p.kill(kill, { group: killGroup });
  }, timeoutMs);
  try {
    return { ...(await p.exited), timedOut };
  } finally {
    clearTimeout(timer);
  }
}
