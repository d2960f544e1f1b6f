// The stateful Node.js workload of the tests, benchmarks and demo. It runs in the lab's
// runtime image (`node -e SCRIPT`), holds STATE_MB MiB of pseudo-random state, and answers
// over HTTP on PORT:
//   GET /         {counter, pid}: every request increments the counter and dirties
//                 DIRTY_PER_REQUEST pages of state (a client's activity dirties memory);
//   GET /checksum {counter, checksum}: sha256 of the whole state;
//   GET /touch?pages=K&n=N
//                 {n, served, instance, counter, pages, checksum}: reads K pages spread over
//                 the whole state (touchPages below) and dirties nothing, so that a request
//                 waits for pages a lazy restore has not brought in yet; served counts
//                 /touch requests (the measuring client's continuity check, `--http-path`);
//   GET /health   ok.
// DIRTY_PAGES_PER_SEC > 0 also dirties pages on a timer, for a steady dirty rate. The state
// is the same in every instance (a fixed seed, like data loaded from the image) unless
// STATE_SEED gives another.
// A counter line is appended to /tmp/counter.log every second (a file in the R/W layer).

/**
 * The pages GET /touch reads for its `seq`-th request: k pages (at most totalPages) a stride
 * of floor(totalPages / k) apart, so that they span the whole state, all shifted by an offset
 * inside the stride that changes with every request (a prime step, so that successive
 * requests land far apart and `stride` requests cover every page of the strided range).
 * Self-contained: its source is put into the service's script as it is.
 */
export function touchPages(totalPages: number, k: number, seq: number): number[] {
  const n = Math.max(1, Math.min(Math.floor(k), totalPages));
  const stride = Math.floor(totalPages / n);
  const offset = ((seq % stride) * 7919) % stride;
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(i * stride + offset);
  return out;
}

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
let x = (Number(process.env.STATE_SEED) || 0x9e3779b9) >>> 0;
function next() { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; }
for (let i = 0; i < state.length; i += 4) state.writeUInt32LE(next(), i);
const pages = state.length / PAGE;
let counter = 0;
let touches = 0;
const instance = crypto.randomUUID();
const touchPages = ${touchPages.toString()};
function dirty(n) { for (let i = 0; i < n; i++) { const p = next() % pages; state.writeUInt32LE(next(), p * PAGE + (next() % (PAGE / 4)) * 4); } }
if (RATE > 0) setInterval(() => dirty(Math.max(1, Math.round(RATE / 10))), 100);
setInterval(() => fs.appendFileSync('/tmp/counter.log', counter + '\n'), 1000);
http.createServer((req, res) => {
  if (req.url === '/health') { res.end('ok'); return; }
  if (req.url.startsWith('/touch?') || req.url === '/touch') {
    const q = new URL(req.url, 'http://x').searchParams;
    const k = Math.min(4096, Math.max(1, Number(q.get('pages')) || 64));
    let sum = 0;
    for (const p of touchPages(pages, k, touches)) sum = (sum + state.readUInt32LE(p * PAGE)) >>> 0;
    touches++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ n: Number(q.get('n')), served: touches, instance, counter, pages: k, checksum: sum }));
    return;
  }
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

/**
 * The busybox counter (BUSYBOX_COUNTER_SCRIPT, unchanged) with busybox httpd beside it on
 * :8080, so that a client can watch it: GET /health answers ok, GET /cgi-bin/req?n=N answers
 * {n, served, instance, counter} (the measuring client's reply with `--http-path
 * /cgi-bin/req`): served is a count kept in a file of the R/W layer, instance an id drawn at
 * the start, counter the loop's value. httpd closes every connection after its answer, so a
 * client needs a connection per request.
 */
export const BUSYBOX_COUNTER_HTTP_SCRIPT = [
  'mkdir -p /tmp/www/cgi-bin',
  'echo ok > /tmp/www/health',
  'cat /proc/sys/kernel/random/uuid > /tmp/instance',
  "cat > /tmp/www/cgi-bin/req <<'EOF'",
  '#!/bin/sh',
  'n=${QUERY_STRING#*n=}; n=${n%%&*}',
  "case $n in ''|*[!0-9]*) n=0;; esac",
  's=$(cat /tmp/served 2>/dev/null); s=$((${s:-0}+1)); echo $s > /tmp/served',
  'c=$(cat /tmp/counter 2>/dev/null)',
  'printf \'Content-Type: application/json\\r\\n\\r\\n{"n":%s,"served":%s,"instance":"%s","counter":%s}\\n\' "$n" "$s" "$(cat /tmp/instance)" "${c:-null}"',
  'EOF',
  'chmod +x /tmp/www/cgi-bin/req',
  'httpd -f -p 8080 -h /tmp/www &',
  BUSYBOX_COUNTER_SCRIPT,
].join('\n');
