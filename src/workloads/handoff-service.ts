// The service a mobile user talks to during a handoff (issue 5). It runs in the lab's runtime
// image (`node -e HANDOFF_SERVICE_SCRIPT`) and is what `cloudlet client` measures:
//   raw TCP on HOST (0.0.0.0) and TCP_PORT (7000; 0: any free port, printed), one line per message:
//     client: `REQ <n> <payload>\n`   server: `RES <n> <served> <instance>\n`
//     (a malformed line gets `ERR <reason>\n`; the connection stays open);
//   HTTP/1.1 on HTTP_PORT (8080), keep-alive:
//     GET /req?n=N -> {"n":N,"served":S,"instance":I};   GET /healthz -> ok;
//     GET /probe?n=N -> the same JSON from a counter of its own, dirtying nothing: a client
//     that watches the service without adding to the load a benchmark puts on it.
// `served` counts the requests this process answered, one counter per protocol (so that one
// client's TCP and HTTP streams each see +1 per request). It lives only in memory: after a
// live migration it continues where it was, which proves the memory moved; a restarted or
// different process starts again at 1. `instance` is chosen once at start (hostname and a
// random tag, or INSTANCE_ID) and moves with the memory, too.
// Optional: STATE_MB MiB of state, of which every request dirties DIRTY_KB_PER_REQUEST KiB
// (one word per 4 KiB page), for benchmarks where the client's activity dirties memory.
// No dependencies: it must run with a bare `node`.

export const HANDOFF_SERVICE_DEFAULTS = { tcpPort: 7000, httpPort: 8080 } as const;

export const HANDOFF_SERVICE_SCRIPT = String.raw`
'use strict';
const net = require('net');
const http = require('http');
const os = require('os');
const crypto = require('crypto');
const HOST = process.env.HOST || '0.0.0.0';
const TCP_PORT = Number(process.env.TCP_PORT ?? 7000);
const HTTP_PORT = Number(process.env.HTTP_PORT ?? 8080);
const DIRTY_KB = Number(process.env.DIRTY_KB_PER_REQUEST || 0);
const STATE_MB = Number(process.env.STATE_MB || (DIRTY_KB > 0 ? 64 : 0));
const MAX_LINE = 64 * 1024;
const PAGE = 4096;
const INSTANCE = (process.env.INSTANCE_ID || os.hostname() + '-' + crypto.randomBytes(3).toString('hex')).replace(/\s+/g, '_');
const state = Buffer.alloc(STATE_MB * 1024 * 1024, 1);
const pages = state.length / PAGE;
let x = (crypto.randomBytes(4).readUInt32LE(0) | 1) >>> 0;
function next() { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; }
function dirty() {
  if (pages === 0) return;
  const n = Math.ceil(DIRTY_KB * 1024 / PAGE);
  for (let i = 0; i < n; i++) state.writeUInt32LE(next(), (next() % pages) * PAGE + (next() % (PAGE / 4)) * 4);
}
let tcpServed = 0;
let httpServed = 0;
let probeServed = 0;

const tcpServer = net.createServer((sock) => {
  sock.setNoDelay(true);
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).replace(/\r$/, '');
      buf = buf.slice(i + 1);
      const m = /^REQ (\d+)(?: .*)?$/.exec(line);
      if (!m) { sock.write('ERR malformed\n'); continue; }
      tcpServed++;
      dirty();
      sock.write('RES ' + m[1] + ' ' + tcpServed + ' ' + INSTANCE + '\n');
    }
    // A peer that never sends a newline must not grow this buffer without end.
    if (buf.length > MAX_LINE) { sock.end('ERR line too long\n'); buf = ''; }
  });
  // A reset peer is the client's business, not a reason to stop the service.
  sock.on('error', (err) => console.error('tcp connection: ' + err.message));
});
// Port 0 picks a free port; the line below says which (tests read it).
tcpServer.listen(TCP_PORT, HOST, () => console.log('tcp listening on ' + HOST + ':' + tcpServer.address().port + ' as ' + INSTANCE));

// No request or idle timeouts: a freeze during migration (or a restored clock that jumped)
// must not make the service close the client's kept-alive connection.
const server = http.createServer({ requestTimeout: 0, headersTimeout: 0 }, (req, res) => {
  let url;
  try { url = new URL(req.url, 'http://service'); } catch { res.statusCode = 400; res.end('bad url\n'); return; }
  if (url.pathname === '/healthz') { res.end('ok\n'); return; }
  const probe = url.pathname === '/probe';
  if (url.pathname !== '/req' && !probe) { res.statusCode = 404; res.end('not found\n'); return; }
  const n = Number(url.searchParams.get('n'));
  if (!Number.isInteger(n) || n < 0) { res.statusCode = 400; res.end('n must be a non-negative integer\n'); return; }
  let served;
  if (probe) served = ++probeServed;
  else { served = ++httpServed; dirty(); }
  const body = JSON.stringify({ n, served, instance: INSTANCE });
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', Buffer.byteLength(body));
  res.end(body);
});
server.keepAliveTimeout = 0;
server.listen(HTTP_PORT, HOST, () => console.log('http listening on ' + HOST + ':' + server.address().port + ' as ' + INSTANCE));
`;
