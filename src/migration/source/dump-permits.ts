// What CRIU needs to dump a container that can be known before the freeze, checked before
// the destination does any work. CRIU reads every process's resource limits with prlimit(2);
// for a process whose uids differ from CRIU's own (a service running as a non-root user:
// PostgreSQL, nginx's workers, any image with USER) the kernel allows that only with
// CAP_SYS_RESOURCE. Where cloudletd (and so runc and CRIU, its children) runs without it,
// as in some sandboxes, the final dump fails after the freeze ("Can't get rlimit 0:
// Operation not permitted") and the handoff rolls back with the downtime already paid.
import { readFile, readlink } from 'node:fs/promises';
import { ConflictError } from '../../util/errors.js';
import { containerProcesses } from '../../checkpoint/proc-tree.js';
import type { ContainerDetails } from '../../engine/docker.js';

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

/** The container a dump permit is asked for: its name, and what the refusals name. */
export interface DumpSubject {
  container: string;
  /** Config.User (`docker run --user`, or the image's USER), named in the error when set. */
  user?: string | null;
  /** HostConfig.NetworkMode (`container:X` joins a netns holder). */
  networkMode?: string | null;
}

/** A container's dump subject from its details. */
export function dumpSubjectOf(details: ContainerDetails): DumpSubject {
  return { container: details.name, user: details.createOptions.User, networkMode: details.createOptions.HostConfig?.NetworkMode };
}

/**
 * Refuses (ConflictError, before the freeze) a container with a process of another uid than
 * ours when we lack CAP_SYS_RESOURCE, unless its user namespace is root's (userns-remap), where
 * a holder-joined one is refused instead; does nothing otherwise.
 */
export async function checkDumpPermitted(initPid: number, subject: DumpSubject): Promise<void> {
  const { container, user, networkMode } = subject;
  const self = await readFile('/proc/self/status', 'utf8');
  if (await inRootOwnedUserNamespace(initPid)) {
    refuseHolderUnderRemap(container, networkMode);
    return;
  }
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

/**
 * Whether the container runs in a user namespace other than ours that root created (Docker's
 * userns-remap: runc makes it as root). Its owner has every capability in it, so prlimit(2)
 * on its processes needs no CAP_SYS_RESOURCE. SKETCH: "created by root" is assumed when our
 * euid is 0 and the namespace maps its 0 elsewhere; the exact test is ioctl(NS_GET_OWNER_UID)
 * on /proc/PID/ns/user, which needs a native helper (dist/native).
 */
export async function inRootOwnedUserNamespace(pid: number): Promise<boolean> {
  const [own, theirs, map] = await Promise.all([
    readlink('/proc/self/ns/user').catch(() => ''),
    readlink(`/proc/${pid}/ns/user`).catch(() => ''),
    readFile(`/proc/${pid}/uid_map`, 'utf8').catch(() => ''),
  ]);
  if (!own || !theirs || own === theirs || process.geteuid?.() !== 0) return false;
  const first = map.trim().split(/\s+/).map(Number);
  return first.length >= 3 && first[0] === 0 && first[1] !== 0;
}

/**
 * Under userns-remap a container in another's network namespace (a netns holder:
 * NetworkMode container:X) shares the holder's user namespace; CRIU restores it into a NEW
 * user namespace and cannot join the holder's network namespace from there ("Can't setns
 * 17/net: Operation not permitted"): refused before the freeze (docs/userns-remap.md).
 */
function refuseHolderUnderRemap(container: string, networkMode?: string | null): void {
  if (!networkMode?.startsWith('container:')) return;
  throw new ConflictError(
    `${container} runs in a user namespace (userns-remap) and in the network namespace of ${networkMode.slice('container:'.length)}: CRIU would restore it into a new user namespace that cannot join that network namespace`,
    {
      context: { container, networkMode },
      hint: 'attach the service to a network with a fixed address (docker network connect --ip) instead of a netns holder, or run the engine without userns-remap',
    },
  );
}
