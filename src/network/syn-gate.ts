// Closing the source to a moving service's new connections before its address moves.
//
// Measured on the lab (tcpdump in the router's namespace, a connection per request during
// handoffs of a service in a holder): a client's SYN that reached the source in the last
// round trip before the address moved was answered there (SYN-ACK); the client's ACK and
// request then went to the destination, were held, and on release met a restored listener
// that had never seen that handshake: the destination's kernel answered with a reset
// (ECONNRESET in the client). The same happens to a connection the source's kernel
// completed but the service had not accept()ed at the freeze (CRIU skips in-flight
// connections), and to a connection the service had closed but whose client still had to
// answer (an orphan: no process owns it, CRIU never dumps it).
//
// So, before the address moves, the source stops answering new SYNs for it: they are held
// here (a SYN-only PacketHold), and the handshakes already under way are given a round trip
// to finish and be accepted. Once the address has moved, the held SYNs - and any that still
// reach the source - are sent on to where the address is now: this host routes the address
// to its default gateway (the network that the announce updated), which carries them to the
// destination, where they wait in its hold for the restored listener. A client whose SYN
// met the move therefore connects when the service is back, like every other client: a
// delay of about the downtime, never a reset. Without a default route the held SYNs are
// dropped instead (never rejected: a reset or an ICMP error would end the client's connect):
// the client sends them again after its SYN timeout (1 s on Linux), by then to the
// destination. The gate stays until the source's copy is gone (commit) or runs here again
// (rollback, which removes the route before the address comes back).
import { namespaceTcpSockets, parseTcpTable, type ProcTcpSocket } from './proc-tcp.js';
import { isIPv4 } from 'node:net';
import { CloudletError, UsageError, errorMessage } from '../util/errors.js';
import { run } from '../util/exec.js';
import { PacketHold, type PacketHoldStats } from './packet-hold.js';

/** The routing protocol number that marks the gate's route (left ones are found by it). */
export const GATE_ROUTE_PROTO = '252';

/**
 * /proc/net/tcp states of sockets the service does not own yet or any more (inode 0) whose
 * peer still has a packet to send: a handshake under way (SYN_RECV), completed but not
 * accepted (ESTABLISHED, CLOSE_WAIT), or closed by the service and not yet by the client
 * (FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK). TIME_WAIT (06) needs nothing from the client.
 */
const UNSETTLED_STATES = new Set(['01', '03', '04', '05', '08', '09', '0B']);

export class SynGateError extends CloudletError {
  constructor(message: string, context: Record<string, unknown>, cause?: unknown) {
    super('syn_gate_failed', message, {
      kind: 'internal',
      context,
      hint: "needs iptables with the NFQUEUE target and native/cl-hold, as the destination's hold (see packet-hold.ts)",
      ...(cause !== undefined ? { cause } : {}),
    });
  }
}

const isUnsettled = (s: ProcTcpSocket) => UNSETTLED_STATES.has(s.state) && s.inode === '0';

/** How many sockets of a /proc/net/tcp(6) table are unsettled (see UNSETTLED_STATES). */
export function countUnsettled(table: string): number {
  return parseTcpTable(table).filter(isUnsettled).length;
}

/** Unsettled sockets (IPv4 and IPv6) in the network namespace of `pid`; null if it is gone. */
export async function unsettledSockets(pid: number): Promise<number | null> {
  return (await namespaceTcpSockets(pid))?.filter(isUnsettled).length ?? null;
}

export interface SettleResult {
  /** From the gate's closing until no socket was unsettled (or the limit). */
  settleMs: number;
  /** Sockets still unsettled at the limit (0: settled). */
  unsettled: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** This namespace's default route: where an address announced elsewhere is reached. */
async function defaultRoute(): Promise<{ gateway: string; dev: string } | null> {
  const { stdout } = await run('ip', ['-4', '-json', 'route', 'show', 'default']);
  const r = (JSON.parse(stdout || '[]') as { gateway?: string; dev?: string }[]).find((x) => x.gateway && x.dev);
  return r ? { gateway: r.gateway!, dev: r.dev! } : null;
}

/** New SYNs to one address held on this host, then sent on to where the address moved. */
export class SynGate {
  private routed: string[] | null = null;
  private opened: Promise<PacketHoldStats | null> | null = null;
  private constructor(
    readonly address: string,
    /** performance.now() when the hold was in place. */
    readonly closedAt: number,
    private readonly hold: PacketHold,
  ) {}

  static async close(address: string): Promise<SynGate> {
    if (!isIPv4(address)) throw new UsageError(`not an IPv4 address: '${address}'`);
    try {
      const hold = await PacketHold.start(address, { synOnly: true });
      return new SynGate(address, performance.now(), hold);
    } catch (err) {
      throw new SynGateError(`holding new connections to ${address} failed: ${errorMessage(err)}`, { address }, err);
    }
  }

  /**
   * Waits until the handshakes under way in the service's namespace (`pid`) are done and
   * accepted and the connections it closed are closed by their clients too, polling
   * /proc/PID/net/tcp; at most `limitMs` (a client that never answers must not hold the
   * handoff: its connection is lost as before).
   */
  async settle(pid: number, o: { limitMs: number; pollMs?: number }): Promise<SettleResult> {
    const poll = o.pollMs ?? 3;
    for (;;) {
      const left = await unsettledSockets(pid);
      const ms = performance.now() - this.closedAt;
      if (left === null || left === 0) return { settleMs: ms, unsettled: 0 };
      if (ms >= o.limitMs) return { settleMs: ms, unsettled: left };
      await sleep(poll);
    }
  }

  /**
   * The address has moved: the held SYNs, and later ones, go to the default gateway, which
   * routes the address to its new place. Returns false when they were dropped instead (no
   * default route, or the route could not be added): their clients send them again.
   */
  async forward(): Promise<boolean> {
    const via = await defaultRoute().catch(() => null);
    if (via) {
      const route = [`${this.address}/32`, 'via', via.gateway, 'dev', via.dev, 'proto', GATE_ROUTE_PROTO];
      const added = await run('ip', ['route', 'replace', ...route]).then(
        () => true,
        () => false,
      );
      if (added) {
        this.routed = route;
        this.hold.release();
        return true;
      }
    }
    this.hold.discard();
    return false;
  }

  /**
   * Before the address is routed back here (rollback): the route goes, or packets for the
   * address would loop between this host and its gateway. SYNs are still held or dropped.
   */
  async unroute(): Promise<void> {
    const route = this.routed;
    if (!route) return;
    this.routed = null;
    try {
      await run('ip', ['route', 'del', ...route]);
    } catch (err) {
      throw new SynGateError(`removing the route of ${this.address} to the default gateway failed: ${errorMessage(err)}`, { address: this.address }, err);
    }
  }

  /** New SYNs are answered here again (route and hold removed); what the hold saw. Idempotent. */
  open(): Promise<PacketHoldStats | null> {
    this.opened ??= (async () => {
      let routeError: unknown = null;
      await this.unroute().catch((e: unknown) => (routeError = e));
      const stats = await this.hold.close();
      if (routeError) throw routeError;
      return stats;
    })();
    return this.opened;
  }
}

/** Gate routes left by a daemon that died (addresses). */
export async function leftOverGateRoutes(): Promise<string[]> {
  const { stdout } = await run('ip', ['-4', '-json', 'route', 'show', 'proto', GATE_ROUTE_PROTO]);
  return (JSON.parse(stdout || '[]') as { dst?: string }[]).map((r) => r.dst ?? '').filter((d) => isIPv4(d.replace(/\/32$/, '')));
}

/** Removes a gate route found by leftOverGateRoutes. */
export async function removeLeftOverGateRoute(dst: string): Promise<void> {
  await run('ip', ['route', 'del', dst.includes('/') ? dst : `${dst}/32`, 'proto', GATE_ROUTE_PROTO]);
}
