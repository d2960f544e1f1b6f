// The bookkeeping of one session, whatever its protocol: which numbered requests were sent,
// which replies came (when, with which `served` and `instance`), errors, connections. The
// sessions only report events here; the verdicts (lost, gaps, continuity) are made from
// these records when the report is built.
import type { RunClock } from './clock.js';
import { round2 } from './clock.js';
import { latencyStats, replyGaps, servedContinuity, type ReplyMark } from './stats.js';
import type { ClientErrorRecord, ConnectionRecord, RequestSample, SessionKind, SessionReport } from './types.js';

interface RequestRecord {
  n: number;
  sentAtMs: number;
  repliedAtMs: number | null;
  served: number | null;
  instance: string | null;
  /** Given up: its connection is gone, no reply can come any more. */
  lost: boolean;
}

const MAX_LISTED = 100;

export class SessionRecorder {
  private readonly requests = new Map<number, RequestRecord>();
  /** Numbers sent and neither answered nor given up, in sending order. */
  private readonly pending = new Set<number>();
  private readonly replies: (ReplyMark & { served: number })[] = [];
  private readonly errors: ClientErrorRecord[] = [];
  private readonly connections: ConnectionRecord[] = [];
  private readonly instances: string[] = [];
  private readonly duplicates: number[] = [];
  private readonly outOfOrder: number[] = [];
  private readonly unexpected: number[] = [];
  private reconnects = 0;
  private stopAtMs: number | null = null;
  private answeredInGrace = 0;

  constructor(
    readonly kind: SessionKind,
    readonly target: string,
    readonly port: number,
    private readonly clock: RunClock,
    /** A new connection per request (HTTP without keep-alive): many connections are expected. */
    private readonly connectionPerRequest = false,
  ) {}

  get sentCount(): number {
    return this.requests.size;
  }

  get answeredCount(): number {
    return this.replies.length;
  }

  get connectionCount(): number {
    return this.connections.length;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  sent(n: number): void {
    this.requests.set(n, { n, sentAtMs: this.clock.now(), repliedAtMs: null, served: null, instance: null, lost: false });
    this.pending.add(n);
  }

  /** A reply to request n. Returns false when it matched no pending request (recorded as such). */
  reply(n: number, served: number, instance: string): boolean {
    const at = this.clock.now();
    const rec = this.requests.get(n);
    if (!rec || rec.lost) {
      this.unexpected.push(n);
      return false;
    }
    if (rec.repliedAtMs !== null) {
      this.duplicates.push(n);
      return false;
    }
    // An older request still pending means this reply overtook it.
    for (const p of this.pending) {
      if (p < n) this.outOfOrder.push(n);
      break;
    }
    this.pending.delete(n);
    rec.repliedAtMs = at;
    rec.served = served;
    rec.instance = instance;
    this.replies.push({ n, atMs: at, served });
    if (!this.instances.includes(instance)) this.instances.push(instance);
    if (this.stopAtMs !== null) this.answeredInGrace++;
    return true;
  }

  error(code: string, message: string): void {
    const atMs = this.clock.now();
    this.errors.push({ atMs, at: this.clock.iso(atMs), code, message });
  }

  connectionOpened(localPort: number | null, reconnect: boolean): void {
    this.connections.push({ localPort, openedAtMs: this.clock.now(), closedAtMs: null });
    if (reconnect) this.reconnects++;
  }

  connectionClosed(localPort?: number | null): void {
    // With a connection per request, the next one may open before the last one's close is seen.
    let c: ConnectionRecord | undefined = this.connections[this.connections.length - 1];
    if (localPort !== undefined) {
      c = undefined;
      for (let i = this.connections.length - 1; i >= 0 && !c; i--) {
        const x = this.connections[i]!;
        if (x.localPort === localPort && x.closedAtMs === null) c = x;
      }
    }
    if (c && c.closedAtMs === null) c.closedAtMs = this.clock.now();
  }

  /** The connection is gone: whatever it carried will never be answered. */
  givePendingUp(): void {
    for (const n of this.pending) this.requests.get(n)!.lost = true;
    this.pending.clear();
  }

  /** Request n got an answer that is not a reply (an HTTP error status...): none will come. */
  giveUp(n: number): void {
    const rec = this.requests.get(n);
    if (rec && this.pending.delete(n)) rec.lost = true;
  }

  /** The run is stopping: replies from now on are counted as answered in the grace period. */
  markStop(): void {
    this.stopAtMs ??= this.clock.now();
  }

  report(withSamples: boolean): SessionReport {
    const lostNumbers: number[] = [];
    let lost = 0;
    const latencies: number[] = [];
    for (const r of this.requests.values()) {
      if (r.repliedAtMs === null) {
        lost++;
        if (lostNumbers.length < MAX_LISTED) lostNumbers.push(r.n);
      } else {
        latencies.push(round2(r.repliedAtMs - r.sentAtMs));
      }
    }
    const gaps = replyGaps(this.replies, (ms) => this.clock.iso(ms));
    const served = servedContinuity(this.replies);
    const sequence = {
      duplicates: this.duplicates.slice(0, MAX_LISTED),
      outOfOrder: this.outOfOrder.slice(0, MAX_LISTED),
      unexpected: this.unexpected.slice(0, MAX_LISTED),
    };
    const report: SessionReport = {
      kind: this.kind,
      target: this.target,
      port: this.port,
      sent: this.requests.size,
      answered: this.replies.length,
      lost,
      lostNumbers,
      answeredInGrace: this.answeredInGrace,
      errors: [...this.errors],
      reconnects: this.reconnects,
      connections: this.connections.map((c) => ({ ...c })),
      latencyMs: latencyStats(latencies),
      largestGap: gaps[0] ?? null,
      topGaps: gaps.slice(0, 5),
      served,
      instances: [...this.instances],
      sequence,
      survived:
        (this.connectionPerRequest || this.connections.length === 1) &&
        this.errors.length === 0 &&
        this.reconnects === 0 &&
        lost === 0 &&
        this.replies.length > 0 &&
        this.duplicates.length + this.outOfOrder.length + this.unexpected.length === 0,
    };
    if (withSamples) {
      report.samples = [...this.requests.values()].map((r): RequestSample => ({
        n: r.n,
        sentAtMs: r.sentAtMs,
        repliedAtMs: r.repliedAtMs,
        latencyMs: r.repliedAtMs === null ? null : round2(r.repliedAtMs - r.sentAtMs),
        served: r.served,
        instance: r.instance,
      }));
    }
    return report;
  }
}
