// The programs fssync runs (rsync, getfattr, setfattr): argument arrays, no shell, a
// timeout that ends their whole process group, and typed errors naming the step.
import { runTracked, type ProgramExit } from '../util/spawner.js';
import { FsSyncError, stderrTail } from './errors.js';

/** Runs a program with an argument array (no shell); optionally feeds a byte range of a file to stdin. */
async function runProc(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; timeoutMs: number; stdinFile?: { path: string; end: number } },
): Promise<ProgramExit> {
  // Through the daemon's spawner when one runs (see spawner.ts); in a process group of its
  // own: a timeout ends rsync's forked helpers too.
  const x = await runTracked(cmd, args, {
    env: { ...process.env, LC_ALL: 'C' },
    detached: true,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    ...(opts.stdinFile ? { stdinFile: opts.stdinFile } : {}),
    timeoutMs: opts.timeoutMs,
    kill: 'SIGKILL',
    killGroup: true,
  });
  return { ...x, stderr: x.stderr + (x.timedOut ? `\ntimed out after ${opts.timeoutMs} ms` : '') };
}

export async function runChecked(
  step: string,
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; timeoutMs: number; stdinFile?: { path: string; end: number }; okCodes: readonly number[]; nice?: number | null },
  context: Record<string, unknown>,
): Promise<ProgramExit> {
  let r: ProgramExit;
  try {
    r = opts.nice === undefined || opts.nice === null ? await runProc(cmd, args, opts) : await runProc('nice', ['-n', String(opts.nice), cmd, ...args], opts);
  } catch (e) {
    throw new FsSyncError('fssync_exec_failed', `${step}: cannot run ${cmd}: ${(e as Error).message}`, {
      context: { step, command: cmd, args, ...context },
      hint: cmd === 'rsync' ? 'install rsync (scripts/setup.sh)' : cmd.endsWith('fattr') ? 'install attr (scripts/setup.sh)' : undefined,
      cause: e,
    });
  }
  if (r.code === null || !opts.okCodes.includes(r.code)) {
    const tail = stderrTail(r.stderr);
    throw new FsSyncError('fssync_' + step.replace(/-/g, '_') + '_failed', `${step}: ${cmd} exited ${r.code ?? `on ${r.signal}`}${tail ? `: ${tail}` : ''}`, {
      context: { step, command: cmd, args, exitCode: r.code, signal: r.signal, stderrTail: tail, ...context },
      hint: process.getuid?.() === 0 ? undefined : 'fssync needs root (devices, owners, trusted.* xattrs)',
    });
  }
  return r;
}
