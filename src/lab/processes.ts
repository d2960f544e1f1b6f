// Processes the lab started: liveness, identity and termination strictly by PID. Before a
// PID is signalled its command line is checked, so a PID reused by someone else is spared.
import { readFileSync, readdirSync } from 'node:fs';

export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The process's argv, or null when it is gone (or a zombie with no command line). */
export function cmdlineOf(pid: number): string[] | null {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!raw) return null;
    return raw.split('\0').filter((s) => s.length > 0);
  } catch {
    return null; // the process exited: nothing to report
  }
}

/** True when the process is alive and its command line mentions `marker` (e.g. our config path). */
export function isOurProcess(pid: number, marker: string | readonly string[]): boolean {
  const markers = typeof marker === 'string' ? [marker] : marker;
  const argv = cmdlineOf(pid);
  return argv !== null && argv.some((a) => markers.some((m) => a.includes(m)));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * SIGTERM, wait up to graceMs, then SIGKILL. Returns how it ended. Only signals the PID when
 * its command line still contains `marker`.
 */
export async function terminate(pid: number, marker: string | readonly string[], graceMs = 10_000): Promise<'not-running' | 'terminated' | 'killed'> {
  if (!isOurProcess(pid, marker)) return 'not-running';
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isOurProcess(pid, marker)) return 'terminated';
    await sleep(50);
  }
  if (isOurProcess(pid, marker)) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && isOurProcess(pid, marker); i++) await sleep(20);
  return 'killed';
}

/**
 * PIDs whose command line mentions one of the given paths: the engine's containerd and its
 * shims carry the lab's directories in their arguments, which identifies them as ours.
 */
export function processesMentioning(paths: readonly string[]): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const argv = cmdlineOf(pid);
    if (argv && argv.some((a) => paths.some((p) => a.includes(p)))) found.push(pid);
  }
  return found;
}
