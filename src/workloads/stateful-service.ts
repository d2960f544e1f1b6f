// The stateful Node.js workload of the tests, benchmarks and demo. It runs in the lab's
// runtime image (`node -e SCRIPT`), holds STATE_MB MiB of pseudo-random state, and answers
// over HTTP on PORT:
//   GET /         {counter, pid}: every request increments the counter and dirties
//                 DIRTY_PER_REQUEST pages of state (a client's activity dirties memory);
//   GET /checksum {counter, checksum}: sha256 of the whole state;
//   GET /health   ok.
// DIRTY_PAGES_PER_SEC > 0 also dirties pages on a timer, for a steady dirty rate.
// A counter line is appended to /tmp/counter.log every second (a file in the R/W layer).

export const STATEFUL_SERVICE_SCRIPT = String.raw`
const http = require('http');
const crypto = require('crypto');
const fs = require('fs');
const MB = Number(process.env.STATE_MB || 64);
const PORT = Number(process.env.PORT || 8080);
const PER_REQ = Number(process.env.DIRTY_PER_REQUEST || 16);
const RATE = Number(process.env.DIRTY_PAGES_PER_SEC || 0);
const PAGE = 4096;
const state = Buffer.allocUnsafe(MB * 1024 * 1024);
let x = 0x9e3779b9 >>> 0;
function next() { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; }
for (let i = 0; i < state.length; i += 4) state.writeUInt32LE(next(), i);
const pages = state.length / PAGE;
let counter = 0;
function dirty(n) { for (let i = 0; i < n; i++) { const p = next() % pages; state.writeUInt32LE(next(), p * PAGE + (next() % (PAGE / 4)) * 4); } }
if (RATE > 0) setInterval(() => dirty(Math.max(1, Math.round(RATE / 10))), 100);
setInterval(() => fs.appendFileSync('/tmp/counter.log', counter + '\n'), 1000);
http.createServer((req, res) => {
  if (req.url === '/health') { res.end('ok'); return; }
  if (req.url === '/checksum') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ counter, checksum: crypto.createHash('sha256').update(state).digest('hex') }));
    return;
  }
  counter++;
  dirty(PER_REQ);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ counter, pid: process.pid }));
}).listen(PORT, '0.0.0.0');
`;

/** The busybox counter loop of the classic evaluation: a number incremented in a file. */
export const BUSYBOX_COUNTER_SCRIPT = 'i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done';
