// Established TCP connections counted from the kernel's own tables (migration/source/connections.ts):
// real loopback connections of this process, counted in /proc/PID/net/tcp{,6}.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { countEstablished, establishedTcpConnections } from '../../src/migration/source/connections.js';

test('a table with a listener and no connection counts none', () => {
  // The header line of /proc/net/tcp and a listening socket (st 0A), as the kernel writes them.
  const table = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0',
  ].join('\n');
  assert.equal(countEstablished(table), 0);
});

test('three loopback connections of this process are counted from both ends, and no longer once closed', async () => {
  const accepted: Socket[] = [];
  const server = createServer((s) => accepted.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const before = await establishedTcpConnections(process.pid);
  const clients = await Promise.all(
    [1, 2, 3].map(
      () =>
        new Promise<Socket>((resolve) => {
          const c = connect(port, '127.0.0.1', () => resolve(c));
        }),
    ),
  );
  try {
    while (accepted.length < 3) await new Promise((r) => setTimeout(r, 10));
    assert.equal((await establishedTcpConnections(process.pid)) - before, 6, 'client and server end of each');
  } finally {
    for (const s of [...clients, ...accepted]) s.destroy();
    server.close();
  }
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(await establishedTcpConnections(process.pid), before);
});
