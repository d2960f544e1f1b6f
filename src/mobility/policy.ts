// When should a service follow its user? The handoff policy sees, over time, the user's
// round-trip time to every cloudlet and where the service is. It moves the service to the
// closest cloudlet only when that one has been closer by at least `marginMs` for `dwellMs`
// without interruption (hysteresis: a user standing between two cells, whose RTTs cross
// back and forth, never triggers a move), and never again within `cooldownMs` of a move
// (a handoff costs a downtime; bouncing costs two).

export interface HandoffPolicyOptions {
  /** The candidate must be at least this much closer (RTT, ms) than the current cloudlet. */
  marginMs: number;
  /** ...continuously for this long before a move. */
  dwellMs: number;
  /** No new move within this long after the last one started. */
  cooldownMs: number;
}

export const DEFAULT_HANDOFF_POLICY: HandoffPolicyOptions = { marginMs: 10, dwellMs: 2000, cooldownMs: 10_000 };

export interface RttSample {
  /** Time of the measurement, ms (any monotonic origin). */
  atMs: number;
  /** RTT per cloudlet, ms; a cloudlet that did not answer is absent. */
  rttMs: Record<string, number>;
}

export type PolicyDecision = { move: false; reason: string } | { move: true; to: string; reason: string };

export class HandoffPolicy {
  /** The cloudlet that has been the better candidate since `since` (null: none). */
  private candidate: { node: string; since: number } | null = null;
  private lastMoveAt = Number.NEGATIVE_INFINITY;

  constructor(readonly options: HandoffPolicyOptions = DEFAULT_HANDOFF_POLICY) {
    for (const [k, v] of Object.entries(options)) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`handoff policy: ${k} must be a non-negative number (got ${v})`);
    }
  }

  /** Feeds one sample; `current` is where the service runs now. */
  observe(sample: RttSample, current: string): PolicyDecision {
    const here = sample.rttMs[current];
    let best: { node: string; rtt: number } | null = null;
    for (const [node, rtt] of Object.entries(sample.rttMs)) {
      if (node !== current && (best === null || rtt < best.rtt)) best = { node, rtt };
    }
    // The current cloudlet unreachable counts as infinitely far: any reachable one is better.
    const gain = best === null ? 0 : (here ?? Number.POSITIVE_INFINITY) - best.rtt;
    if (best === null || gain < this.options.marginMs) {
      this.candidate = null;
      return { move: false, reason: best === null ? 'no other cloudlet answered' : `${current} is within ${this.options.marginMs} ms of the best` };
    }
    if (this.candidate?.node !== best.node) this.candidate = { node: best.node, since: sample.atMs };
    const held = sample.atMs - this.candidate.since;
    if (held < this.options.dwellMs) {
      return { move: false, reason: `${best.node} closer by ${gain.toFixed(1)} ms for ${Math.round(held)} ms (dwell ${this.options.dwellMs} ms)` };
    }
    if (sample.atMs - this.lastMoveAt < this.options.cooldownMs) {
      return { move: false, reason: `cooling down after the last move` };
    }
    this.lastMoveAt = sample.atMs;
    this.candidate = null;
    return {
      move: true,
      to: best.node,
      reason: `${best.node} closer than ${current} by ${gain.toFixed(1)} ms (>= ${this.options.marginMs}) for ${Math.round(held)} ms (>= ${this.options.dwellMs})`,
    };
  }
}
