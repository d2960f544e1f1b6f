// Connection draining for the route switch of a handoff by re-creation.
//
// The switch moves the service address's route from the source to the destination. A new
// connection then reaches the new instance; but a connection the old instance was serving at
// that instant (its SYN went to the source) would now send its next packets to the
// destination, whose new instance has no such connection and answers with a reset. So for a
// while after the switch the destination sends those packets back to the source, which hands
// them to the old instance (make-before-break per connection, not only per route):
//
//   destination: a packet to the address that opens no connection here (conntrack NEW, not a
//     SYN: a flow whose SYN went to the source) marks its connection (CONNMARK); marked
//     packets are routed (fwmark -> own table) into a point-to-point VXLAN link to the source;
//   source: the VXLAN link's end; the decapsulated packets are forwarded to its bridge, the old
//     instance answers the client directly.
//
// VXLAN because it is the tunnel the engines already need (ipip/gre may be missing from the
// kernel). Each drain has its own device, mark, table and chain, derived from the handoff id.
// Everything is set up by `ip` and `iptables` in the cloudlet's own network namespace.
import { createHash } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { CloudletError, errorMessage } from '../util/errors.js';
import { run, tryRun } from '../util/exec.js';

/** How long the old instance keeps serving the connections it had at the switch. */
export const DRAIN_MS = 2000;
const VXLAN_PORT = '4790';

export interface DrainNames {
  dev: string;
  chain: string;
  mark: number;
  table: number;
  vni: number;
  /** Point-to-point addresses of the link: the source's end, the destination's end (/30). */
  sourceEnd: string;
  destinationEnd: string;
}

export function drainNames(id: string): DrainNames {
  const h = createHash('sha256').update(id).digest();
  const n = h.readUInt32BE(0);
  const third = h[4]!;
  const quad = (h[5]! % 64) * 4;
  return {
    dev: `cldr${h.toString('hex').slice(0, 8)}`,
    chain: `CLDRAIN-${h.toString('hex').slice(0, 8)}`,
    mark: 0x10000 + (n % 0xfff0),
    table: 17_000 + (n % 1000),
    vni: 1_000_000 + (n % 1_000_000),
    sourceEnd: `169.254.${third}.${quad + 1}`,
    destinationEnd: `169.254.${third}.${quad + 2}`,
  };
}

/** This host's address towards `remote` (the route's preferred source). */
export async function localAddressTowards(remote: string): Promise<string> {
  const { stdout } = await run('ip', ['-j', 'route', 'get', remote]);
  const src = (JSON.parse(stdout || '[]') as { prefsrc?: string }[])[0]?.prefsrc;
  if (!src || !isIPv4(src)) throw new CloudletError('drain_failed', `no local address towards ${remote}`, { kind: 'internal', context: { remote } });
  return src;
}

async function addLink(names: DrainNames, local: string, remote: string, end: string): Promise<void> {
  await run('ip', ['link', 'add', names.dev, 'type', 'vxlan', 'id', String(names.vni), 'local', local, 'remote', remote, 'dstport', VXLAN_PORT]);
  await run('ip', ['addr', 'add', `${end}/30`, 'dev', names.dev]);
  await run('ip', ['link', 'set', names.dev, 'up']);
}

/** Removes what was made (each step runs even if an earlier one failed); returns the failures. */
async function undo(steps: [string, string[]][]): Promise<string[]> {
  const failed: string[] = [];
  for (const [cmd, args] of steps) {
    const r = await tryRun(cmd, args);
    if (r.exitCode !== 0) failed.push(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
  }
  return failed;
}

export interface Drain {
  /** Takes the drain down; resolves with the steps that failed (empty: all removed). */
  close(): Promise<string[]>;
  /** Destination: connections sent back to the old instance so far (null: not known here). */
  connections(): Promise<number | null>;
}

/** Source side: the link's end where drained packets arrive (then routed to the bridge as usual). */
export async function openSourceDrain(id: string, remote: string): Promise<Drain> {
  const names = drainNames(id);
  const local = await localAddressTowards(remote);
  const close = () => undo([['ip', ['link', 'del', names.dev]]]);
  try {
    await addLink(names, local, remote, names.sourceEnd);
  } catch (err) {
    await close();
    throw new CloudletError('drain_failed', `setting up the drain link to ${remote} failed: ${errorMessage(err)}`, { kind: 'internal', cause: err });
  }
  return { close, connections: async () => null };
}

/** Destination side: packets of connections it never saw open go back to the source. */
export async function openDestinationDrain(id: string, address: string, remote: string): Promise<Drain> {
  const names = drainNames(id);
  const local = await localAddressTowards(remote);
  const mark = `0x${names.mark.toString(16)}`;
  const jump = ['-w', '-t', 'mangle', '-D', 'PREROUTING', '-d', `${address}/32`, '-j', names.chain];
  const close = () =>
    undo([
      ['iptables', jump],
      ['iptables', ['-w', '-t', 'mangle', '-F', names.chain]],
      ['iptables', ['-w', '-t', 'mangle', '-X', names.chain]],
      ['ip', ['rule', 'del', 'fwmark', mark, 'lookup', String(names.table)]],
      ['ip', ['route', 'flush', 'table', String(names.table)]],
      ['ip', ['link', 'del', names.dev]],
    ]);
  try {
    await addLink(names, local, remote, names.destinationEnd);
    await run('ip', ['route', 'replace', `${address}/32`, 'via', names.sourceEnd, 'dev', names.dev, 'table', String(names.table)]);
    await run('ip', ['rule', 'add', 'fwmark', mark, 'lookup', String(names.table)]);
    await run('iptables', ['-w', '-t', 'mangle', '-N', names.chain]);
    // A flow first seen here without its SYN started at the source: mark it for good...
    await run('iptables', [
      '-w',
      '-t',
      'mangle',
      '-A',
      names.chain,
      '-p',
      'tcp',
      '-m',
      'conntrack',
      '--ctstate',
      'NEW',
      '!',
      '--syn',
      '-j',
      'CONNMARK',
      '--set-mark',
      mark,
    ]);
    // ...and give every packet of a marked flow the mark the routing rule looks for.
    await run('iptables', ['-w', '-t', 'mangle', '-A', names.chain, '-j', 'CONNMARK', '--restore-mark']);
    await run('iptables', ['-w', '-t', 'mangle', '-I', 'PREROUTING', '-d', `${address}/32`, '-j', names.chain]);
  } catch (err) {
    await close();
    throw new CloudletError('drain_failed', `setting up the drain of ${address} to ${remote} failed: ${errorMessage(err)}`, { kind: 'internal', cause: err });
  }
  // The marking rule's packet counter: one packet per drained connection (its first one seen here).
  const connections = async (): Promise<number | null> => {
    const r = await tryRun('iptables', ['-w', '-t', 'mangle', '-L', names.chain, '-v', '-n', '-x']);
    const line = r.stdout.split('\n').find((l) => l.includes('CONNMARK set'));
    const n = line ? Number(line.trim().split(/\s+/)[0]) : NaN;
    return Number.isInteger(n) ? n : null;
  };
  return { close, connections };
}
