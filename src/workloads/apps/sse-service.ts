// A Node.js server-sent-events service for `cloudlet bench apps` (node's http module only),
// run by the host's node inside an image made from the host (src/images/host-image.ts):
//   GET /events            a stream (its id in the x-stream header): an event every
//                          INTERVAL_MS ms, `id: n` counting from 1, `data:` a JSON payload;
//   GET /checksum?stream=S&upto=N
//                          {count, sha256}: the service's sha256 over the data lines of events
//                          1..N it sent on stream S (count: events sent so far);
//   GET /health            ok.
export const SSE_SERVICE_JS = `
const http = require('http');
const crypto = require('crypto');
const interval = Number(process.env.INTERVAL_MS || 20);
const streams = new Map();
let nextStream = 1;
http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname === '/health') return res.end('ok');
  if (u.pathname === '/events') {
    const id = String(nextStream++);
    const sent = [];
    streams.set(id, sent);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-stream': id });
    const timer = setInterval(() => {
      const n = sent.length + 1;
      const data = JSON.stringify({ n, stream: id, at: Date.now(), pad: 'x'.repeat(n % 97) });
      sent.push(data);
      res.write('id: ' + n + '\\ndata: ' + data + '\\n\\n');
    }, interval);
    req.on('close', () => clearInterval(timer));
    return;
  }
  if (u.pathname === '/checksum') {
    const sent = streams.get(u.searchParams.get('stream')) || [];
    const upto = Math.min(Number(u.searchParams.get('upto') || sent.length), sent.length);
    const h = crypto.createHash('sha256');
    for (let i = 0; i < upto; i++) h.update(sent[i] + '\\n');
    res.setHeader('content-type', 'application/json');
    return res.end(JSON.stringify({ count: sent.length, upto, sha256: h.digest('hex') }));
  }
  res.statusCode = 404;
  res.end();
}).listen(Number(process.env.PORT || 8080));
`;
