// The HTTP keep-alive session with a window: up to `window` requests pipelined on one
// connection (HTTP/1.1), through undici's Client. With one request in flight a request lost
// in a handoff can hide behind the client's own wait; with several, a lost one leaves a hole
// the later answers show. The connection is watched through the connector: a second
// connection is seen (and, without --reconnect, ends the session), never made silently.
import type net from 'node:net';
import { Client, buildConnector } from 'undici';
import { requestPath, parseHttpReply } from './http-session.js';
import { Session, type SessionParams } from './session.js';

export interface HttpPipelineSessionParams extends SessionParams {
  /** Requests in flight at most (pipelined on the one connection). */
  window: number;
  /** The path requested, `n=N` added to its query (default /req). */
  path?: string;
}

export class HttpPipelineSession extends Session {
  private client: Client | null = null;
  private socket: net.Socket | null = null;
  private readonly path: string;

  constructor(private readonly hp: HttpPipelineSessionParams) {
    super(hp);
    this.path = hp.path ?? '/req';
  }

  start(): void {
    // The first request (at the first tick) opens the connection.
    this.state = 'connecting';
  }

  private dispatcher(): Client {
    if (this.client) return this.client;
    const connect = buildConnector({ timeout: this.hp.connectTimeoutMs });
    this.client = new Client(`http://${this.hp.host}:${this.hp.port}`, {
      pipelining: this.hp.window,
      // An established connection to a frozen service is waited for, as TCP itself does.
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: (opts, callback) =>
        connect(opts, (err, socket) => {
          if (err || !socket) {
            this.connectFailed(err ?? new Error('no socket'));
            callback(err ?? new Error('no socket'), null);
            return;
          }
          if (!this.onConnected(socket as net.Socket)) {
            socket.destroy();
            callback(Object.assign(new Error('a new connection is not allowed without --reconnect'), { code: 'new_connection' }), null);
            return;
          }
          callback(null, socket);
        }),
    });
    return this.client;
  }

  /** false when the connection must not be used: a silent reconnect. */
  private onConnected(s: net.Socket): boolean {
    const reconnect = this.recorder.connectionCount > 0;
    if (reconnect && !this.p.reconnect) {
      this.appError('new_connection', 'the HTTP client opened a new connection (the kept-alive one is gone)');
      this.state = 'ended';
      return false;
    }
    this.socket = s;
    this.connErrorSeen = false;
    this.state = 'open';
    this.connectionUp();
    this.recorder.connectionOpened(s.localPort ?? null, reconnect);
    s.on('error', (err) => this.connectionError(err));
    s.on('close', () => {
      if (this.socket !== s) return;
      this.socket = null;
      if (!this.connErrorSeen) this.recordError('closed', 'connection closed');
      if (this.state === 'ended') return;
      this.connectionLost(() => {
        this.state = 'connecting';
      });
    });
    this.p.onChange();
    return true;
  }

  private connectFailed(err: Error): void {
    this.connectionError(err);
    if (this.state === 'ended') return;
    this.connectionLost(() => {
      this.state = 'connecting';
    });
  }

  tick(): void {
    if (this.state === 'ended' || this.state === 'reconnecting' || this.nextN > this.p.limit) return;
    if (this.recorder.pendingCount >= this.hp.window) return;
    // Until the connection is up, one request opens it; the window fills once it is open.
    if (this.state !== 'open' && this.recorder.pendingCount > 0) return;
    const n = this.nextN++;
    const path = requestPath(this.path, n);
    this.recorder.sent(n);
    this.dispatcher()
      .request({ path, method: 'GET' })
      .then(async (res) => {
        const body = await res.body.text();
        const r = parseHttpReply(path, n, res.statusCode, body);
        if (r.ok) this.recorder.reply(n, r.served, r.instance);
        else {
          this.appError(r.code, r.message);
          this.recorder.giveUp(n);
        }
      })
      .catch((err: Error) => {
        this.connectionError(err);
        this.recorder.giveUp(n);
      })
      .finally(() => this.p.onChange());
  }

  close(): void {
    this.closing = true;
    this.recorder.connectionClosed();
    this.clearReconnect();
    void this.client?.destroy().catch(() => undefined);
    if (!this.socket) this.state = 'ended';
  }
}
