// Two Python 3 services for `cloudlet bench apps`, standard library only, run by Debian's
// python3 inside an image made from the host (src/images/host-image.ts):
//   python-kv    one process (http.server, HTTP/1.1 keep-alive) holding STATE_MB MiB of
//                 8-byte counters in a bytearray;
//   python-workers a parent that forks WORKERS children, all accepting on one listening
//                 socket (pre-fork, like gunicorn); the counters live in an anonymous shared
//                 mapping made before the fork, so every worker sees every increment. It runs
//                 as a non-root user (the image's USER).
// Both answer:
//   GET  /health         ok
//   GET  /state          the counters' bytes (the client's reference copy)
//   POST /incr?slot=S    adds 1 to counter S; {"slot", "value", "pid"}
//   GET  /checksum       {"sha256": of the counters' bytes, "pid"}: computed by the service
// The client (src/bench/apps/client-py.ts) applies its increments to its copy and compares
// its sha256 with the service's after the handoff.

const COMMON = String.raw`
import hashlib, http.server, json, os, socket, sys, urllib.parse

def make_handler(state):
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.1'
        def log_message(self, *a):
            pass
        def reply(self, code, body, ctype='application/json'):
            if isinstance(body, str):
                body = body.encode()
            self.send_response(code)
            self.send_header('content-type', ctype)
            self.send_header('content-length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_GET(self):
            u = urllib.parse.urlparse(self.path)
            if u.path == '/health':
                return self.reply(200, 'ok', 'text/plain')
            if u.path == '/state':
                return self.reply(200, bytes(state), 'application/octet-stream')
            if u.path == '/checksum':
                return self.reply(200, json.dumps({'sha256': hashlib.sha256(state).hexdigest(), 'pid': os.getpid()}))
            self.reply(404, '{"error":"not found"}')
        def do_POST(self):
            u = urllib.parse.urlparse(self.path)
            n = int(self.headers.get('content-length') or 0)
            if n:
                self.rfile.read(n)
            if u.path != '/incr':
                return self.reply(404, '{"error":"not found"}')
            slot = int(urllib.parse.parse_qs(u.query)['slot'][0]) % (len(state) // 8)
            v = int.from_bytes(state[slot * 8:slot * 8 + 8], 'little') + 1
            state[slot * 8:slot * 8 + 8] = v.to_bytes(8, 'little')
            self.reply(200, json.dumps({'slot': slot, 'value': v, 'pid': os.getpid()}))
    return H

def fill(state):
    # Deterministic, not compressible to nothing: a counter per slot from a multiplicative hash.
    for i in range(len(state) // 8):
        state[i * 8:i * 8 + 8] = ((i * 2654435761) & 0xffffffff).to_bytes(8, 'little')
`;

/** python-kv: one process, state in a bytearray. */
export const PYTHON_KV_PY = `${COMMON}
state = bytearray(int(os.environ.get('STATE_MB', '16')) * 1024 * 1024)
fill(state)
class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
Server(('0.0.0.0', int(os.environ.get('PORT', '8080'))), make_handler(state)).serve_forever()
`;

/** python-workers: a parent and WORKERS forked children sharing the state and the socket. */
export const PYTHON_WORKERS_PY = `${COMMON}
import mmap, signal, socketserver, time
state = mmap.mmap(-1, int(os.environ.get('STATE_MB', '8')) * 1024 * 1024)
fill(state)
class Server(socketserver.TCPServer):
    allow_reuse_address = True
srv = Server(('0.0.0.0', int(os.environ.get('PORT', '8080'))), make_handler(state))
children = []
for _ in range(int(os.environ.get('WORKERS', '3'))):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        srv.serve_forever()
        os._exit(0)
    children.append(pid)
def stop(*_):
    for c in children:
        os.kill(c, signal.SIGTERM)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print('parent', os.getpid(), 'uid', os.getuid(), 'workers', children, flush=True)
while True:
    pid, status = os.wait()
    print('worker', pid, 'exited', status, flush=True)
`;
