// Closing a container's TCP connections just before its final dump (`cloudlet migrate
// --tcp-close`). A container without a service address gets another address at the
// destination, so its connections cannot be kept. CRIU's own tcp-close would dump them as
// closed, but after a final dump the source's sockets die silently (CRIU's network lock
// drops what the kernel sends), so clients would wait for a timeout. Reset first, through
// the kernel's SOCK_DESTROY (`ss -K`): each client gets a reset at once and the service an
// error on the socket (ECONNABORTED), and both can act on it. A connection made in the few
// milliseconds between the reset and the freeze is still dumped closed (tcp-close), so the
// dump never fails on one.
import { run } from '../util/exec.js';

/** The states of a socket with a peer: SOCK_DESTROY resets each (TIME-WAIT has no socket to reset). */
const CONNECTED_STATES = ['established', 'syn-recv', 'syn-sent', 'fin-wait-1', 'fin-wait-2', 'close-wait', 'last-ack', 'closing'];

export interface TcpResetResult {
  /** Sockets reset (IPv4 and IPv6). */
  reset: number;
  ms: number;
}

/** Resets every TCP connection of the network namespace of `pid`. */
export async function resetTcpConnections(pid: number): Promise<TcpResetResult> {
  const t0 = performance.now();
  const states = CONNECTED_STATES.flatMap((s) => ['state', s]);
  // `ss -K` prints the sockets it destroyed; one it cannot destroy it skips.
  const { stdout } = await run('nsenter', ['-t', String(pid), '-n', 'ss', '-K', '-H', '-t', ...states], { timeoutMs: 10_000 });
  const reset = stdout.split('\n').filter((l) => l.trim() !== '').length;
  return { reset, ms: performance.now() - t0 };
}
