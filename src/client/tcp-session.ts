// The raw TCP session: one socket for the whole run (unless reconnect is allowed), numbered
// line requests at the runner's interval with at most `window` of them in flight.
import net from 'node:net';
import { LineSplitter, encodeRequest, parseReply } from './line-protocol.js';
import { Session, errorCode, type SessionParams } from './session.js';

export interface TcpSessionParams extends SessionParams {
  window: number;
  payloadBytes: number;
}

export class TcpSession extends Session {
  private socket: net.Socket | null = null;

  constructor(private readonly tp: TcpSessionParams) {
    super(tp);
  }

  start(): void {
    this.connect();
  }

  private connect(): void {
    const reconnect = this.recorder.connectionCount > 0;
    this.connErrorSeen = false;
    const socket = net.connect({ host: this.tp.host, port: this.tp.port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    // Only the set-up has a deadline: once established, a silent peer (frozen for its
    // migration) is waited for, as TCP itself does.
    const connectTimer = setTimeout(() => {
      this.recordError('connect_timeout', `no connection to ${this.tp.host}:${this.tp.port} after ${this.tp.connectTimeoutMs} ms`);
      socket.destroy();
    }, this.tp.connectTimeoutMs);
    const lines = new LineSplitter();
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      this.state = 'open';
      this.connectionUp();
      this.recorder.connectionOpened(socket.localPort ?? null, reconnect);
      this.p.onChange();
    });
    socket.on('data', (chunk: string) => {
      let got: string[];
      try {
        got = lines.push(chunk);
      } catch (err) {
        this.recordError('bad_reply', (err as Error).message);
        socket.destroy();
        return;
      }
      for (const line of got) {
        if (!this.onLine(line)) {
          // Not the handoff protocol (another service on that port?): one error, not one per line.
          socket.destroy();
          break;
        }
      }
      this.p.onChange();
    });
    socket.on('error', (err) => this.recordError(errorCode(err), err.message));
    socket.on('end', () => {
      // The peer closed its side (FIN): this session never closes first, so it is the service going away.
      if (!this.connErrorSeen) this.recordError('closed', 'connection closed by the service (FIN)');
      socket.destroy();
    });
    socket.on('close', () => {
      clearTimeout(connectTimer);
      if (this.socket !== socket) return;
      this.socket = null;
      if (!this.connErrorSeen && !this.closing) this.recordError('closed', 'connection closed');
      this.connectionLost(() => this.connect());
    });
  }

  /** false when the line is not of the protocol at all. */
  private onLine(line: string): boolean {
    const r = parseReply(line);
    if (r.kind === 'res') this.recorder.reply(r.n, r.served, r.instance);
    else if (r.kind === 'err') this.recordError('server_error', `service answered ERR ${r.reason}`);
    else {
      this.recordError('bad_reply', `unexpected line from the service: ${JSON.stringify(r.line)}`);
      return false;
    }
    return true;
  }

  tick(): void {
    if (this.state !== 'open' || !this.socket || this.nextN > this.p.limit) return;
    if (this.recorder.pendingCount >= this.tp.window) return;
    const n = this.nextN++;
    this.recorder.sent(n);
    this.socket.write(encodeRequest(n, this.tp.payloadBytes));
  }

  close(): void {
    this.closing = true;
    this.recorder.connectionClosed();
    this.clearReconnect();
    this.socket?.destroy();
    if (!this.socket) this.state = 'ended';
  }
}
