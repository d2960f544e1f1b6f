// What the runner needs from a session (raw TCP or HTTP keep-alive): the runner calls tick()
// at every interval and the session sends its next numbered request when its connection and
// window allow; the session reports every event to its recorder and calls onChange so that
// the runner can re-check its stop and ready conditions.
import type { SessionRecorder } from './recorder.js';

export interface SessionParams {
  host: string;
  port: number;
  recorder: SessionRecorder;
  /** Requests to send at most (Infinity when only the duration bounds the run). */
  limit: number;
  reconnect: boolean;
  connectTimeoutMs: number;
  onChange: () => void;
}

export type SessionState = 'connecting' | 'open' | 'reconnecting' | 'ended';

export abstract class Session {
  protected state: SessionState = 'connecting';
  protected nextN = 1;
  /** Set by close(): from then on, closes and errors are ours, not the network's. */
  protected closing = false;
  /** Whether the current connection already has an error recorded (so its close is not a second one). */
  protected connErrorSeen = false;
  protected reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelayMs = 100;

  constructor(protected readonly p: SessionParams) {}

  get recorder(): SessionRecorder {
    return this.p.recorder;
  }

  /** Connected and answered at least once. */
  get ready(): boolean {
    return this.p.recorder.answeredCount > 0;
  }

  /** No more requests will be sent: the connection is gone for good, or the limit is reached. */
  get finishedSending(): boolean {
    return this.state === 'ended' || this.nextN > this.p.limit;
  }

  /** Nothing sent is waiting for an answer. */
  get settled(): boolean {
    return this.p.recorder.pendingCount === 0;
  }

  get ended(): boolean {
    return this.state === 'ended';
  }

  abstract start(): void;
  /** Sends the next request if the connection is open and the window has room. */
  abstract tick(): void;
  /** Closes the connection; nothing is recorded as an error from here on. */
  abstract close(): void;

  protected recordError(code: string, message: string): void {
    if (this.closing) return;
    this.connErrorSeen = true;
    this.p.recorder.error(code, message);
  }

  /** One error per connection: a request and its socket (or every pipelined request) report the same failure. */
  protected connectionError(err: Error): void {
    if (!this.connErrorSeen) this.recordError(errorCode(err), err.message);
  }

  /** The service answered, but not as the protocol says: not a connection failure. */
  protected appError(code: string, message: string): void {
    if (!this.closing) this.p.recorder.error(code, message);
  }

  /**
   * The connection is gone (reset, closed by the peer, failed to open): pending requests
   * are lost; then either the session ends or, with reconnect, a new connection is tried.
   */
  protected connectionLost(connect: () => void): void {
    this.p.recorder.connectionClosed();
    this.p.recorder.givePendingUp();
    if (this.closing) {
      this.state = 'ended';
    } else if (this.p.reconnect) {
      this.state = 'reconnecting';
      // Backoff doubles to 1 s, so that a service that is down does not fill the error list.
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        if (!this.closing) connect();
      }, this.reconnectDelayMs);
      this.reconnectDelayMs = Math.min(1000, this.reconnectDelayMs * 2);
    } else {
      this.state = 'ended';
    }
    this.p.onChange();
  }

  protected connectionUp(): void {
    this.reconnectDelayMs = 100;
  }

  protected clearReconnect(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }
}

export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'error';
}
