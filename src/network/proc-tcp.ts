// The TCP sockets of a network namespace, as the kernel lists them in /proc/PID/net/tcp and
// tcp6 (the tables of PID's namespace): one reader for whoever counts them by state.
import { readFile } from 'node:fs/promises';

/** One socket of a /proc/net/tcp table: its state (two hex digits) and its inode (0: no process owns it). */
export interface ProcTcpSocket {
  state: string;
  inode: string;
}

/** The sockets of one /proc/net/tcp(6) table (the header line skipped). */
export function parseTcpTable(table: string): ProcTcpSocket[] {
  return table
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length > 9)
    .map((f) => ({ state: f[3]!.toUpperCase(), inode: f[9]! }));
}

/** The TCP sockets (IPv4 and IPv6) of the network namespace of `pid`; null when it is gone. */
export async function namespaceTcpSockets(pid: number): Promise<ProcTcpSocket[] | null> {
  const tables = await Promise.all(['tcp', 'tcp6'].map((t) => readFile(`/proc/${pid}/net/${t}`, 'utf8').catch(() => null)));
  if (tables[0] === null) return null;
  return tables.flatMap((t) => (t === null ? [] : parseTcpTable(t)));
}
