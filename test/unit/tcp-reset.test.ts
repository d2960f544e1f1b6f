// --tcp-close's reset before the freeze (src/network/tcp-reset.ts), on a real connection: a
// Python process in a network namespace of its own holds a listener, a client and the
// accepted socket; the reset must reach both ends at once (each reads an error, not silence
// until its 20 s timeout) and leave the listener alone.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { resetTcpConnections } from '../../src/network/tcp-reset.js';

const isRoot = process.getuid?.() === 0;

const PROGRAM = `
import socket, sys
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
cli = socket.create_connection(srv.getsockname()); acc, _ = srv.accept()
print('ready', flush=True)
cli.settimeout(20); acc.settimeout(20)
for name, s in (('client', cli), ('server', acc)):
    try:
        print(name, 'got', s.recv(10), flush=True)
    except OSError as e:
        print(name, type(e).__name__, flush=True)
srv.settimeout(20)
late = socket.create_connection(srv.getsockname()); srv.accept()
print('listener still accepts', flush=True)
`;

describe('resetTcpConnections', { skip: !isRoot && 'needs root (a network namespace)' }, () => {
  it("resets both ends of a connection in the process's network namespace, and nothing else", async () => {
    const child = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec python3 -c "$0"`, PROGRAM], { stdio: ['ignore', 'pipe', 'inherit'] });
    const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
    try {
      let out = '';
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d: string) => (out += d));
      for (let i = 0; i < 200 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 25));
      assert.match(out, /ready/, 'the program connected');
      const r = await resetTcpConnections(child.pid!);
      // Both ends are in the namespace here: the end destroyed first resets the other, which is
      // then closed already (ss counts what it destroyed). A client elsewhere counts one each.
      assert.ok(r.reset === 1 || r.reset === 2, `one connection reset, counted ${r.reset}`);
      await once(child, 'exit');
      assert.match(out, /client Connection(Reset|Aborted)Error/, out);
      assert.match(out, /server Connection(Reset|Aborted)Error/, out);
      assert.match(out, /listener still accepts/, out);
    } finally {
      clearTimeout(guard);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
