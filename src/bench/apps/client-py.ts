// The clients of `cloudlet bench apps` that speak HTTP, as one Python 3 script (standard
// library only) run by the host's python3 in the lab's client namespace. Each mode works
// until a line arrives on its stdin (or it reaches its bound), then prints one JSON report:
//   {ops, failedOps, errors: [first few], done: [epoch ms of every completed operation],
//    bytes, ...mode's checks}
// Modes:
//   wait HOST PORT SECONDS        exits 0 once a TCP connection to HOST:PORT succeeds;
//   counters HOST PORT INTERVAL_MS MAX_OPS NEWCONN
//                                 GET /state (the reference copy), then POST /incr?slot=S
//                                 (S pseudo-random) checking every answer against the copy;
//                                 at the end GET /checksum: stateOk when the service's sha256
//                                 equals the copy's (NEWCONN=1: a connection per request);
//   download HOST PORT PATH RATE_KBPS INTERVAL_MS
//                                 one GET PATH read at RATE_KBPS (so that it spans the
//                                 handoff) and, beside it, keep-alive GET /small; stateOk when
//                                 the file's sha256 equals PATH.sha256 (computed by the server
//                                 side when it made the file);
//   sse HOST PORT PATH            one event stream: every event's id must be the previous + 1;
//                                 at the end GET /checksum?stream=ID: stateOk when the
//                                 server's count and sha256 of what it sent equal what came.
// An operation that fails is counted and the client reconnects: a handoff that keeps the
// connections has failedOps 0.
export const APP_CLIENT_PY = String.raw`
import hashlib, http.client, json, socket, sys, threading, time

stop = threading.Event()
def watch_stdin():
    sys.stdin.readline()
    stop.set()
threading.Thread(target=watch_stdin, daemon=True).start()
now = lambda: time.time() * 1000
TIMEOUT = 60

def report(r):
    sys.stdout.write(json.dumps(r))
    sys.stdout.flush()

def wait(host, port, seconds):
    deadline = time.time() + float(seconds)
    while time.time() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            return 0
        except OSError:
            time.sleep(0.2)
    return 1

def get(conn, method, path):
    conn.request(method, path)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError('%s %s: HTTP %d' % (method, path, r.status))
    return body

def counters(host, port, interval_ms, max_ops, newconn):
    port, interval, max_ops, newconn = int(port), float(interval_ms) / 1000, int(max_ops), newconn == '1'
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    ref = bytearray(get(conn, 'GET', '/state'))
    slots = len(ref) // 8
    ops = failed = nbytes = 0
    errors, done, pids = [], [], set()
    x = 12345
    while not stop.is_set() and ops < max_ops:
        x = (x * 1103515245 + 12345) & 0x7fffffff
        slot = x % slots
        try:
            if newconn:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            body = get(conn, 'POST', '/incr?slot=%d' % slot)
            nbytes += len(body)
            a = json.loads(body)
            want = int.from_bytes(ref[slot * 8:slot * 8 + 8], 'little') + 1
            ref[slot * 8:slot * 8 + 8] = want.to_bytes(8, 'little')
            pids.add(a['pid'])
            if a['value'] != want:
                raise RuntimeError('slot %d: got %d, expected %d' % (slot, a['value'], want))
            done.append(now())
        except Exception as e:
            failed += 1
            if len(errors) < 5:
                errors.append('%.0f %s' % (now(), repr(e)))
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        ops += 1
        time.sleep(interval)
    conn.close()
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    service = json.loads(get(conn, 'GET', '/checksum'))['sha256']
    expected = hashlib.sha256(ref).hexdigest()
    report({'ops': ops, 'failedOps': failed, 'errors': errors, 'done': done, 'bytes': nbytes,
            'stateOk': service == expected, 'checksum': {'service': service, 'expected': expected},
            'pids': sorted(pids)})

def download(host, port, path, rate_kbps, interval_ms):
    port, rate, interval = int(port), float(rate_kbps) * 1024, float(interval_ms) / 1000
    out = {'ops': 0, 'failedOps': 0, 'errors': [], 'done': [], 'bytes': 0}
    lock = threading.Lock()
    def fail(e):
        with lock:
            out['failedOps'] += 1
            if len(out['errors']) < 5:
                out['errors'].append('%.0f %s' % (now(), repr(e)))
    def keepalive():
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        while not stop.is_set():
            try:
                body = get(conn, 'GET', '/small')
                with lock:
                    out['ops'] += 1
                    out['bytes'] += len(body)
                    out['done'].append(now())
            except Exception as e:
                fail(e)
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
            time.sleep(interval)
    t = threading.Thread(target=keepalive)
    t.start()
    h = hashlib.sha256()
    got = 0
    started = time.time()
    try:
        conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
        conn.request('GET', path)
        r = conn.getresponse()
        length = int(r.getheader('content-length'))
        while True:
            chunk = r.read(65536)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
            with lock:
                out['done'].append(now())
            ahead = got / rate - (time.time() - started)
            if ahead > 0:
                time.sleep(ahead)
        expected = get(http.client.HTTPConnection(host, port, timeout=TIMEOUT), 'GET', path + '.sha256').decode().split()[0]
        out['stateOk'] = got == length and h.hexdigest() == expected
        out['checksum'] = {'service': expected, 'received': h.hexdigest(), 'length': length, 'receivedBytes': got}
    except Exception as e:
        fail(e)
        out['stateOk'] = False
    out['downloadMs'] = round((time.time() - started) * 1000)
    stop.wait()
    t.join()
    out['ops'] += 1
    out['bytes'] += got
    report(out)

def sse(host, port, path):
    port = int(port)
    out = {'ops': 0, 'failedOps': 0, 'errors': [], 'done': [], 'bytes': 0}
    conn = http.client.HTTPConnection(host, port, timeout=TIMEOUT)
    conn.request('GET', path, headers={'accept': 'text/event-stream'})
    r = conn.getresponse()
    stream = r.getheader('x-stream')
    h = hashlib.sha256()
    last = 0
    data = None
    while not stop.is_set():
        line = r.fp.readline()
        if not line:
            out['failedOps'] += 1
            out['errors'].append('%.0f stream closed' % now())
            break
        out['bytes'] += len(line)
        line = line.decode().rstrip('\n')
        if line.startswith('id: '):
            n = int(line[4:])
            if n != last + 1:
                out['failedOps'] += 1
                if len(out['errors']) < 5:
                    out['errors'].append('%.0f event %d after %d' % (now(), n, last))
            last = n
        elif line.startswith('data: '):
            data = line[6:]
        elif line == '' and data is not None:
            h.update((data + '\n').encode())
            out['ops'] += 1
            out['done'].append(now())
            data = None
    conn.close()
    c = json.loads(get(http.client.HTTPConnection(host, port, timeout=TIMEOUT), 'GET', '/checksum?stream=' + stream))
    # The server may have sent events after our last read: compare over what we received.
    c2 = json.loads(get(http.client.HTTPConnection(host, port, timeout=TIMEOUT), 'GET', '/checksum?stream=%s&upto=%d' % (stream, last)))
    out['stateOk'] = last > 0 and c2['upto'] == last and c2['sha256'] == h.hexdigest()
    out['checksum'] = {'service': c2['sha256'], 'received': h.hexdigest(), 'events': last, 'sent': c['count']}
    report(out)

mode, args = sys.argv[1], sys.argv[2:]
if mode == 'wait':
    sys.exit(wait(*args))
{'counters': counters, 'download': download, 'sse': sse}[mode](*args)
`;
