// Bulk-transfer endpoints for measuring a lab link, run inside namespaces by throughput.ts:
//   throughput-worker.js sink HOST PORT           accepts one connection, reports JSON on stdout
//   throughput-worker.js source HOST PORT BYTES SECONDS   sends BYTES (or until SECONDS pass)
// The sink times from the first byte to the end of the stream; the sender is bounded in
// both bytes and time.
import { createServer, connect } from 'node:net';

const [mode, host, portText, bytesText, secondsText] = process.argv.slice(2);
const port = Number(portText);

if (mode === 'sink' && host && port > 0) {
  const server = createServer((sock) => {
    let bytes = 0;
    let first = 0n;
    sock.on('data', (chunk: Buffer) => {
      if (bytes === 0) first = process.hrtime.bigint();
      bytes += chunk.length;
    });
    sock.on('end', () => {
      const seconds = Number(process.hrtime.bigint() - first) / 1e9;
      process.stdout.write(JSON.stringify({ bytes, seconds, bitsPerSecond: (bytes * 8) / seconds }) + '\n');
      sock.end();
      server.close();
    });
  });
  server.listen(port, host, () => process.stderr.write('listening\n'));
  // Never outlive a broken measurement.
  setTimeout(() => process.exit(3), 120_000).unref();
} else if (mode === 'source' && host && port > 0) {
  const total = Number(bytesText);
  const deadline = Date.now() + Number(secondsText) * 1000;
  const chunk = Buffer.alloc(64 * 1024, 0xa5);
  const sock = connect(port, host);
  let sent = 0;
  const pump = () => {
    while (sent < total && Date.now() < deadline) {
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      if (!sock.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void sock.once('drain', pump);
    }
    sock.end();
  };
  sock.on('connect', pump);
  sock.on('error', (err) => {
    process.stderr.write(`source: ${err.message}\n`);
    process.exit(1);
  });
  sock.on('close', () => process.exit(0));
} else {
  process.stderr.write('usage: throughput-worker.js sink HOST PORT | source HOST PORT BYTES SECONDS\n');
  process.exit(2);
}
