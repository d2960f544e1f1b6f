// Checkpointing a Docker-managed container with runc directly, on the engine's own runc
// state (EXEC_ROOT/runtime-runc/moby). Docker's `checkpoint create` tars every page through
// containerd's content store (~5 s for 264 MiB); runc + CRIU write the images straight into
// a directory of ours (~0.5 s). The container stays engine-managed: without leaveRunning its
// process is killed after the dump and dockerd sees the exit (status 137) shortly afterwards.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CloudletError, CommandError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { readCriuStats, type DumpStats } from './criu-stats.js';

export type { DumpStats } from './criu-stats.js';

/** PATH for runc: /usr/local/sbin first, where set-up puts the CRIU >= 4.2 wrapper. */
const RUNC_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** runc's state root of a Docker engine's containers: EXEC_ROOT/runtime-runc/moby. */
export function engineRuncRoot(execRoot: string): string {
  return join(execRoot, 'runtime-runc', 'moby');
}

export interface RuncCheckpointOptions {
  /** runc state root of the engine: EXEC_ROOT/runtime-runc/moby. */
  runcRoot: string;
  /** Full container id (runc's id for Docker containers). */
  containerId: string;
  /** Where CRIU writes the images (created if missing). */
  imageDir: string;
  /** CRIU's work directory: dump.log and stats-dump go there (created if missing). */
  workDir: string;
  /** Keep the container running after the dump (a pre-copy round); false = final dump, the process is killed. */
  leaveRunning: boolean;
  /** Dump established TCP connections (needs the same address at restore and tcp-established in CRIU's restore config). */
  tcpEstablished?: boolean;
  /**
   * Skip connections that are not yet accepted (they get resets); needed when a listener has a
   * backlog. runc 1.1 has no flag for it: it goes to CRIU through a config file named by
   * CRIU_CONFIG_FILE (CRIU honours it in swrk mode too; checked with criu 4.2.1).
   */
  skipInFlight?: boolean;
  /**
   * Dump connected TCP sockets as closed (CRIU tcp-close; through the same config file as
   * skipInFlight): the restore then needs tcp-close too (criu-config.ts).
   */
  tcpClose?: boolean;
  /** Dump file locks (only needed when the application holds flock/posix locks). */
  fileLocks?: boolean;
  /** Upper bound for the whole runc call. */
  timeoutMs?: number;
}

export interface RuncCheckpointResult {
  /** Wall time of the runc call, including runc's own start-up and CRIU. */
  wallMs: number;
  /** CRIU's stats-dump (null when CRIU wrote none). */
  stats: DumpStats | null;
}

/** runc/CRIU could not checkpoint the container. The tail of CRIU's dump.log says why. */
export class CheckpointFailedError extends CloudletError {
  constructor(
    readonly containerId: string,
    readonly workDir: string,
    readonly exitCode: number | null,
    readonly dumpLogTail: string,
    stderr: string,
    cause: unknown,
  ) {
    // CRIU's own `Error (file:line)` lines name the cause first; else whatever says error.
    const lines = dumpLogTail.split('\n');
    const criuErrors = lines.filter((l) => /\bError \(/.test(l));
    const lastErrors = (
      criuErrors.length ? [...new Set([...criuErrors.slice(0, 2), criuErrors[criuErrors.length - 1]!])] : lines.filter((l) => /error|fail/i.test(l)).slice(-3)
    ).join('\n');
    super(
      'checkpoint_failed',
      `runc checkpoint of ${containerId.slice(0, 12)} failed` +
        (exitCode === null ? '' : ` (exit ${exitCode})`) +
        `: ${lastErrors || stderr.trim().split('\n').slice(-3).join('\n') || 'no error output'}`,
      {
        context: { containerId, workDir, exitCode, dumpLog: join(workDir, 'dump.log'), dumpLogTail, stderr: stderr.slice(-2000) },
        hint: `see ${join(workDir, 'dump.log')}; if the dump failed the container keeps running where it was`,
        kind: 'internal',
        cause,
      },
    );
  }
}

export function runcCheckpointArgs(opts: RuncCheckpointOptions): string[] {
  const args = ['--root', opts.runcRoot, 'checkpoint'];
  if (opts.leaveRunning) args.push('--leave-running');
  if (opts.tcpEstablished) args.push('--tcp-established');
  if (opts.fileLocks) args.push('--file-locks');
  args.push('--image-path', opts.imageDir, '--work-path', opts.workDir, opts.containerId);
  return args;
}

/** Runs `runc checkpoint` on an engine's container; returns wall time and CRIU's dump stats. */
export async function runcCheckpoint(opts: RuncCheckpointOptions): Promise<RuncCheckpointResult> {
  await mkdir(opts.imageDir, { recursive: true });
  await mkdir(opts.workDir, { recursive: true });
  const args = runcCheckpointArgs(opts);
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: RUNC_PATH };
  delete env.CRIU_CONFIG_FILE;
  const criuOptions = [...(opts.skipInFlight ? ['skip-in-flight'] : []), ...(opts.tcpClose ? ['tcp-close'] : [])];
  if (criuOptions.length > 0) {
    const conf = join(opts.workDir, 'cloudlet-criu.conf');
    await writeFile(conf, criuOptions.map((o) => `${o}\n`).join(''));
    env.CRIU_CONFIG_FILE = conf;
  }
  const t0 = performance.now();
  try {
    await run('runc', args, { timeoutMs: opts.timeoutMs ?? 120_000, env });
  } catch (err) {
    const tail = await logTail(join(opts.workDir, 'dump.log'), 30);
    const exitCode = err instanceof CommandError ? err.exitCode : null;
    const stderr = err instanceof CommandError ? err.stderr : String(err);
    throw new CheckpointFailedError(opts.containerId, opts.workDir, exitCode, tail, stderr, err);
  }
  const wallMs = performance.now() - t0;
  const stats = await readCriuStats(join(opts.workDir, 'stats-dump'));
  return { wallMs, stats: stats?.dump ?? null };
}

/**
 * What a failed dump's log says: CRIU's `Error (file:line)` lines, then its last lines. The
 * cause is often not in the tail: after it, CRIU cures the parasite and unfreezes the tasks,
 * which takes dozens of lines on its own.
 */
export function criuLogSummary(log: string, lines: number): string {
  const all = log.trimEnd().split('\n');
  const tail = all.slice(-lines);
  const errors = all
    .slice(0, -lines)
    .filter((l) => /\bError \(/.test(l))
    .slice(0, 10);
  return [...errors, ...(errors.length ? ['...'] : []), ...tail].join('\n');
}

async function logTail(path: string, lines: number): Promise<string> {
  try {
    return criuLogSummary(await readFile(path, 'utf8'), lines);
  } catch {
    return '';
  }
}
