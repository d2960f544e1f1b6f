// The HTTP keep-alive session: GET /req?n=N (or another path, n=N added) through an Agent
// with keepAlive and one socket, so every request rides the same TCP connection. A new
// connection is seen as a `socket` event with a socket we have not seen before; without
// --reconnect it ends the session instead of letting the agent reconnect silently.
// With newConnectionPerRequest every request opens (and closes) a connection of its own
// instead: what a stream of short-lived clients sees, e.g. through a handoff by re-creation.
import http from 'node:http';
import type net from 'node:net';
import { Session, type SessionParams } from './session.js';

export interface HttpSessionParams extends SessionParams {
  /** A new connection per request (`Connection: close`, no agent): see ClientOptions. */
  newConnectionPerRequest?: boolean;
  /** Per-request mode: a request silent this long fails (the next one goes on). */
  requestTimeoutMs?: number;
  /** The path requested, `n=N` added to its query (default /req). */
  path?: string;
}

/** The path of request n: `path` with n=N added to its query. */
export function requestPath(path: string, n: number): string {
  return `${path}${path.includes('?') ? '&' : '?'}n=${n}`;
}

export type HttpReply = { ok: true; served: number; instance: string } | { ok: false; code: 'http_status' | 'bad_reply'; message: string };

/** An answer of the handoff service's HTTP side to GET `path` (request n), checked. */
export function parseHttpReply(path: string, n: number, status: number, body: string): HttpReply {
  if (status !== 200) return { ok: false, code: 'http_status', message: `GET ${path} answered ${status}: ${body.slice(0, 200)}` };
  let reply: { n?: unknown; served?: unknown; instance?: unknown };
  try {
    reply = JSON.parse(body) as typeof reply;
  } catch (err) {
    return { ok: false, code: 'bad_reply', message: `GET ${path}: body is not JSON (${(err as Error).message})` };
  }
  if (reply.n !== n || typeof reply.served !== 'number' || typeof reply.instance !== 'string') {
    return { ok: false, code: 'bad_reply', message: `GET ${path}: unexpected reply ${body.slice(0, 200)}` };
  }
  return { ok: true, served: reply.served, instance: reply.instance };
}

/** Per-request mode's default for a request that gets no byte (a client gives up, tries again). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 3000;

export class HttpSession extends Session {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private socket: net.Socket | null = null;
  private inFlight: http.ClientRequest | null = null;
  private readonly perRequest: boolean;
  private readonly requestTimeoutMs: number;
  private readonly path: string;

  constructor(p: HttpSessionParams) {
    super(p);
    this.perRequest = p.newConnectionPerRequest ?? false;
    this.requestTimeoutMs = p.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.path = p.path ?? '/req';
  }

  start(): void {
    // The first request (at the first tick) opens the connection.
    this.state = 'connecting';
  }

  tick(): void {
    if (this.state === 'ended' || this.state === 'reconnecting' || this.inFlight || this.nextN > this.p.limit) return;
    const n = this.nextN++;
    const path = requestPath(this.path, n);
    const req = this.perRequest
      ? http.request({ host: this.p.host, port: this.p.port, path, method: 'GET', agent: false, headers: { connection: 'close' } })
      : http.request({ host: this.p.host, port: this.p.port, path, method: 'GET', agent: this.agent });
    this.inFlight = req;
    this.recorder.sent(n);
    req.on('socket', (s) => (this.perRequest ? this.onFreshSocket(s, req) : this.onSocket(s, req)));
    // A stream of short-lived clients does not wait forever on one of them: a silent request
    // fails (recorded) and frees the session for the next one.
    if (this.perRequest) {
      req.setTimeout(this.requestTimeoutMs, () =>
        req.destroy(Object.assign(new Error(`no answer to GET ${path} within ${this.requestTimeoutMs} ms`), { code: 'request_timeout' })),
      );
    }
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('error', (err) => this.connectionError(err));
      res.on('end', () => {
        if (this.inFlight === req) this.inFlight = null;
        this.onReply(n, res.statusCode ?? 0, body);
        this.p.onChange();
      });
    });
    req.on('error', (err) => {
      if (this.inFlight === req) this.inFlight = null;
      this.connectionError(err);
      this.recorder.giveUp(n);
      this.p.onChange();
    });
    req.end();
  }

  private onReply(n: number, status: number, body: string): void {
    const r = parseHttpReply(requestPath(this.path, n), n, status, body);
    if (r.ok) this.recorder.reply(n, r.served, r.instance);
    else {
      this.appError(r.code, r.message);
      this.recorder.giveUp(n);
    }
  }

  private onSocket(s: net.Socket, req: http.ClientRequest): void {
    if (s === this.socket) return; // the kept-alive connection, reused: what we want
    const reconnect = this.recorder.connectionCount > 0;
    if (reconnect && !this.p.reconnect) {
      // The agent opened a new connection on its own: that is exactly what must not pass unseen.
      this.appError('new_connection', 'the HTTP agent opened a new connection (the kept-alive one is gone)');
      this.state = 'ended';
      req.destroy();
      s.destroy();
      return;
    }
    this.socket = s;
    this.connErrorSeen = false;
    const connected = () => {
      clearTimeout(connectTimer);
      this.state = 'open';
      this.connectionUp();
      this.recorder.connectionOpened(s.localPort ?? null, reconnect);
      this.p.onChange();
    };
    // Only the set-up has a deadline: an established connection to a frozen service is waited for.
    const connectTimer = setTimeout(() => {
      this.connectionError(
        Object.assign(new Error(`no connection to ${this.p.host}:${this.p.port} after ${this.p.connectTimeoutMs} ms`), { code: 'connect_timeout' }),
      );
      s.destroy();
    }, this.p.connectTimeoutMs);
    if (s.connecting) s.once('connect', connected);
    else connected();
    // Errors of an idle pooled socket are handled (and swallowed) by the agent: see them here.
    s.on('error', (err) => this.connectionError(err));
    s.on('close', () => {
      clearTimeout(connectTimer);
      if (this.socket !== s) return;
      this.socket = null;
      if (!this.connErrorSeen) this.recordError('closed', 'connection closed');
      if (this.state === 'ended') return; // ended by a refused silent reconnect
      this.connectionLost(() => {
        this.state = 'connecting';
      });
    });
  }

  /**
   * A connection of its own for one request: every one is expected to be new. A failure is
   * recorded (the request is given up by its 'error' handler) and the next tick tries again:
   * the session never ends on it, so that what a stream of new clients sees is measured.
   */
  private onFreshSocket(s: net.Socket, req: http.ClientRequest): void {
    this.connErrorSeen = false;
    const connected = () => {
      clearTimeout(connectTimer);
      this.state = 'open';
      this.connectionUp();
      this.recorder.connectionOpened(s.localPort ?? null, false);
      this.p.onChange();
    };
    const connectTimer = setTimeout(() => {
      req.destroy(Object.assign(new Error(`no connection to ${this.p.host}:${this.p.port} after ${this.p.connectTimeoutMs} ms`), { code: 'connect_timeout' }));
    }, this.p.connectTimeoutMs);
    if (s.connecting) s.once('connect', connected);
    else connected();
    s.on('close', () => {
      clearTimeout(connectTimer);
      this.recorder.connectionClosed(s.localPort ?? null);
    });
  }

  close(): void {
    this.closing = true;
    this.recorder.connectionClosed();
    this.clearReconnect();
    this.inFlight?.destroy();
    this.agent.destroy();
    if (!this.socket) this.state = 'ended';
  }
}
