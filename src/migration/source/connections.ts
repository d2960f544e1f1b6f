// Established TCP connections of a container's network namespace, read from the kernel's
// tables (/proc/PID/net/tcp and tcp6 list the sockets of PID's namespace). Only a service with
// the same address at the destination (the service network) can keep them: CRIU then dumps
// them (--tcp-established); without it the final dump would fail on the first one, after the
// freeze, so such a handoff is refused before it, unless asked to close them (--tcp-close,
// network/tcp-reset.ts).
import { namespaceTcpSockets, parseTcpTable } from '../../network/proc-tcp.js';
import { ConflictError } from '../../util/errors.js';

/** The `st` column of /proc/net/tcp for TCP_ESTABLISHED. */
const TCP_ESTABLISHED = '01';

/** How many sockets of a /proc/net/tcp table are established. */
export function countEstablished(table: string): number {
  return parseTcpTable(table).filter((s) => s.state === TCP_ESTABLISHED).length;
}

/** Established TCP connections (IPv4 and IPv6) in the network namespace of `pid` (0 when it is gone). */
export async function establishedTcpConnections(pid: number): Promise<number> {
  return ((await namespaceTcpSockets(pid)) ?? []).filter((s) => s.state === TCP_ESTABLISHED).length;
}

/** The refusal of a handoff whose connections cannot be kept (no service address). */
export function unkeptConnectionsError(container: string, count: number): ConflictError {
  return new ConflictError(
    `${container} has ${count} established TCP connection(s) and no service address: at the destination it gets another address, so they cannot be kept, and the final dump would fail on them after the freeze`,
    {
      context: { container, established: count },
      hint: 'hand it off with --tcp-close (its connections are reset just before the freeze; clients reconnect), let its clients close them first, or run the service on the service network (cloudlet run, --netns-holder), where it keeps its address and connections',
    },
  );
}
