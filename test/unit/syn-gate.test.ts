// The source's gate on new connections: which sockets are still being opened or closed (the
// kernel's tables, and a real connection waiting in a listener's accept queue).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { countUnsettled, unsettledSockets } from '../../src/network/syn-gate.js';
import { parseHoldRules } from '../../src/network/packet-hold.js';

/** Unsettled sockets of this network namespace on one local port (other processes' sockets left out). */
async function unsettledOnPort(port: number): Promise<number> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
  const table = await readFile('/proc/self/net/tcp', 'utf8');
  const [header, ...rows] = table.split('\n');
  return countUnsettled([header, ...rows.filter((r) => r.split(/\s+/)[2]?.concat(' ').endsWith(hex))].join('\n'));
}

const HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const line = (st: string, inode: number) =>
  `   0: 0100007F:1F90 0200007F:C350 ${st} 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0000000000000000 20 4 30 10 -1`;

test('owned sockets, listeners and TIME_WAIT are settled; handshakes, unaccepted and orphaned closing sockets are not', () => {
  const settled = [line('0A', 111), line('01', 222), line('06', 0), line('04', 333)];
  assert.equal(countUnsettled([HEADER, ...settled].join('\n')), 0);
  // SYN_RECV (request socket), ESTABLISHED and CLOSE_WAIT not accepted, FIN_WAIT1/2, LAST_ACK, CLOSING orphans.
  const unsettled = ['03', '01', '08', '04', '05', '09', '0B'].map((st) => line(st, 0));
  assert.equal(countUnsettled([HEADER, ...settled, ...unsettled].join('\n')), unsettled.length);
});

test('a connection waiting in a listener accept queue is unsettled until the listener accepts it', async (t) => {
  // A listener that accepts only when told (Node accepts at once, so python3 holds it).
  const py = spawn(
    'python3',
    [
      '-c',
      'import socket,sys\ns=socket.socket();s.bind(("127.0.0.1",0));s.listen(4)\nprint(s.getsockname()[1],flush=True)\nsys.stdin.readline()\nc,_=s.accept()\nprint("accepted",flush=True)\nsys.stdin.readline()',
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  t.after(() => py.kill());
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  py.stdout.setEncoding('utf8').on('data', (d: string) => {
    lines.push(...d.split('\n').filter(Boolean));
    wake?.();
  });
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) await new Promise<void>((r) => (wake = r));
    return lines.shift()!;
  };
  const port = Number(await nextLine());
  assert.equal(await unsettledOnPort(port), 0);
  const client = await new Promise<Socket>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', reject);
  });
  try {
    assert.equal(await unsettledOnPort(port), 1, 'completed by the kernel, not accepted: unsettled');
    assert.ok(((await unsettledSockets(process.pid)) ?? 0) >= 1, "read from the process's namespace too");
    py.stdin.write('\n');
    assert.equal(await nextLine(), 'accepted');
    assert.equal(await unsettledOnPort(port), 0, 'accepted: settled');
  } finally {
    client.destroy();
    py.stdin.end();
  }
});

test('a process that is gone has no table', async () => {
  assert.equal(await unsettledSockets(2 ** 22 + 7), null);
});

test('hold rules left by a daemon are found with their kind: all packets, or SYNs only (a source gate)', () => {
  // `iptables -t raw -S PREROUTING` as iptables-legacy prints the two rules.
  const rules = [
    '-P PREROUTING ACCEPT',
    '-A PREROUTING -d 10.240.1.7/32 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m comment --comment cloudlet-hold -j NFQUEUE --queue-num 4101',
    '-A PREROUTING -d 10.240.2.3/32 -m comment --comment cloudlet-hold -j NFQUEUE --queue-num 4100',
    '-A PREROUTING -d 10.240.2.4/32 -j NFQUEUE --queue-num 9',
  ].join('\n');
  assert.deepEqual(parseHoldRules(rules), [
    { address: '10.240.1.7', queue: 4101, synOnly: true },
    { address: '10.240.2.3', queue: 4100, synOnly: false },
  ]);
});
