// What CRIU needs to dump a container that can be known before the freeze, checked before
// the destination does any work. CRIU reads every process's resource limits with prlimit(2);
// for a process whose uids differ from CRIU's own (a service running as a non-root user:
// PostgreSQL, nginx's workers, any image with USER) the kernel allows that only with
// CAP_SYS_RESOURCE. Where cloudletd (and so runc and CRIU, its children) runs without it,
// as in some sandboxes, the final dump fails after the freeze ("Can't get rlimit 0:
// Operation not permitted") and the handoff rolls back with the downtime already paid.
import { readFile } from 'node:fs/promises';
import { ConflictError } from '../../util/errors.js';
import { containerProcesses } from '../../checkpoint/proc-tree.js';

/** Bit of CAP_SYS_RESOURCE in the capability sets of /proc/PID/status. */
export const CAP_SYS_RESOURCE = 24;

/** Whether the hex capability set of a /proc/PID/status line (CapEff) holds capability `bit`. */
export function hasCapability(status: string, bit: number, set = 'CapEff'): boolean {
  const m = new RegExp(`^${set}:\\s*([0-9a-fA-F]+)$`, 'm').exec(status);
  if (!m) return false;
  return (BigInt(`0x${m[1]!}`) >> BigInt(bit)) & 1n ? true : false;
}

/** The real, effective and saved uids of a /proc/PID/status text. */
export function uidsOf(status: string): number[] {
  const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [];
}

/**
 * Refuses (ConflictError, before the freeze) a container with a process of another uid than
 * ours when we lack CAP_SYS_RESOURCE; does nothing otherwise. `user` is the container's
 * Config.User (`docker run --user`, or the image's USER), named in the error when set.
 */
export async function checkDumpPermitted(initPid: number, container: string, user?: string | null): Promise<void> {
  const self = await readFile('/proc/self/status', 'utf8');
  if (hasCapability(self, CAP_SYS_RESOURCE)) return;
  const ours = uidsOf(self)[1] ?? 0;
  const others: { pid: number; uid: number }[] = [];
  // A tree that cannot be read is not refused here: the dump reports what it finds.
  const pids = await containerProcesses(initPid).catch(() => [] as number[]);
  for (const pid of pids) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const foreign = uidsOf(status).find((u) => u !== ours);
    if (foreign !== undefined) others.push({ pid, uid: foreign });
  }
  if (others.length === 0) return;
  throw new ConflictError(
    `${container} has ${others.length} process(es) running as uid ${[...new Set(others.map((o) => o.uid))].join(', ')}${user ? ` (Config.User ${JSON.stringify(user)}: docker run --user or the image's USER)` : ''}, and cloudletd runs without CAP_SYS_RESOURCE: CRIU could not read their resource limits, so the dump would fail after the freeze`,
    {
      context: { container, ...(user ? { user } : {}), processes: others.slice(0, 10) },
      hint: 'run cloudletd with CAP_SYS_RESOURCE (it lacks it in this sandbox), or run the service as root',
    },
  );
}
