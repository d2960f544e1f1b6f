// When to end pre-copy. Each pre-copy round sends the pages that changed since the previous
// one while the service runs; the final round freezes it and sends the rest. More rounds
// shrink the final send (the downtime) only while the dirty set keeps shrinking. The rules
// here are pure functions of the rounds observed so far, so they can be tested, compared
// side by side in the benchmark, and explained in the report ("which rule stopped it").
import { UsageError } from '../util/errors.js';

/** What one pre-copy round measured. */
export interface RoundObservation {
  index: number;
  /** From this round's dump start to the end of its send. */
  durationMs: number;
  /** From the previous round's dump start to this one's (the window in which pages got dirty); null for round 1. */
  intervalMs: number | null;
  /** Time the service was frozen by this round's dump. */
  stallMs: number;
  /** Hashing and delta computation of this round. */
  hashMs: number;
  pagesScanned: number;
  /** Pages sent: new or changed, not zero. */
  pagesChanged: number;
  rawBytes: number;
  sentBytes: number;
  sendMs: number;
  /** Measured throughput of this round's send, bits per second. */
  bandwidthBps: number;
}

export type Policy =
  | { kind: 'rounds'; rounds: number }
  | { kind: 'alpha'; alphaSeconds: number; maxRounds: number }
  | { kind: 'model'; maxDowntimeMs: number; maxRounds: number; maxTimeMs: number }
  | { kind: 'phaul' }
  | { kind: 'lxd' };

export type StopReason =
  | 'forced-rounds'
  | 'alpha'
  | 'predicted-downtime'
  | 'small-memory'
  | 'converged'
  | 'no-convergence'
  | 'max-rounds'
  | 'max-time'
  | 'phaul-few-pages'
  | 'phaul-growth'
  | 'phaul-max-rounds'
  | 'lxd-unchanged'
  | 'lxd-max-rounds';

export interface Decision {
  stop: boolean;
  reason: StopReason | null;
  /** The model's prediction of the final round's downtime if it stopped now. */
  predictedDowntimeMs: number | null;
  explanation: string;
}

/** Costs of the final round that do not depend on how much changed. */
export interface FixedCosts {
  /** Restore at the destination (engine start from checkpoint), measured or a prior. */
  restoreMs: number;
  /** Rebuilding the image directory at the destination per MiB of memory. */
  rebuildMsPerMiB: number;
}

export const DEFAULT_COSTS: FixedCosts = { restoreMs: 700, rebuildMsPerMiB: 1 };

/** Rounds shrinking by less than this factor do not converge. */
const CONVERGENCE_FACTOR = 0.9;
/** Below this predicted final send, another round cannot shorten the downtime noticeably. */
const NEGLIGIBLE_SEND_MS = 100;

export function describePolicy(p: Policy): string {
  switch (p.kind) {
    case 'rounds':
      return `exactly ${p.rounds} pre-copy round(s)`;
    case 'alpha':
      return `alpha rule: stop when a round's send takes < ${p.alphaSeconds} s (max ${p.maxRounds} rounds)`;
    case 'model':
      return `model: stop when the predicted downtime is <= ${p.maxDowntimeMs} ms, rounds stop shrinking, ${p.maxRounds} rounds or ${p.maxTimeMs / 1000} s`;
    case 'phaul':
      return 'P.Haul rule: stop at <= 64 pages written, > 10 % growth, or 8 rounds';
    case 'lxd':
      return 'LXD rule: stop when >= 70 % of pages were unchanged, or 10 rounds';
  }
}

export function validatePolicy(p: Policy): Policy {
  const bad = (m: string) => {
    throw new UsageError(m);
  };
  if (p.kind === 'rounds' && !(Number.isInteger(p.rounds) && p.rounds >= 0 && p.rounds <= 50)) bad(`--rounds must be an integer 0..50 (got ${p.rounds})`);
  if (p.kind === 'alpha' && !(p.alphaSeconds > 0 && p.alphaSeconds <= 600)) bad(`--alpha must be in (0, 600] seconds (got ${p.alphaSeconds})`);
  if ((p.kind === 'alpha' || p.kind === 'model') && !(Number.isInteger(p.maxRounds) && p.maxRounds >= 1 && p.maxRounds <= 50)) {
    bad(`--max-rounds must be an integer 1..50 (got ${p.maxRounds})`);
  }
  if (p.kind === 'model' && !(p.maxDowntimeMs > 0)) bad(`--max-downtime must be positive (got ${p.maxDowntimeMs} ms)`);
  if (p.kind === 'model' && !(p.maxTimeMs > 0)) bad(`--max-time must be positive (got ${p.maxTimeMs} ms)`);
  return p;
}

/** Whether to run a first pre-copy round at all (only `--rounds 0` says no). */
export function wantsPrecopy(p: Policy): boolean {
  return !(p.kind === 'rounds' && p.rounds === 0);
}

/**
 * Before any round, the model can tell that pre-copy is pointless: when sending the whole
 * memory in the final round is predicted to fit the downtime budget (a small container),
 * a pre-copy round would only add its own dump and send to the total time.
 */
export function decideInitial(p: Policy, memoryBytes: number, linkBps: number, costs: FixedCosts = DEFAULT_COSTS): Decision {
  if (!wantsPrecopy(p)) return { stop: true, reason: 'forced-rounds', predictedDowntimeMs: null, explanation: 'no pre-copy round requested' };
  if (p.kind !== 'model') return { stop: false, reason: null, predictedDowntimeMs: null, explanation: 'the rule needs at least one round' };
  const sendAllMs = ((memoryBytes * 8) / linkBps) * 1000;
  const fixedMs = FIRST_DUMP_STALL_MS + costs.restoreMs;
  const predicted = fixedMs + sendAllMs + (memoryBytes / 2 ** 20) * costs.rebuildMsPerMiB;
  // Pre-copy can at best save the final send; when that is small next to the fixed costs
  // of a freeze and a restore, a pre-copy round would only add its own dump and send.
  if (sendAllMs <= Math.max(50, 0.1 * fixedMs)) {
    return {
      stop: true,
      reason: 'small-memory',
      predictedDowntimeMs: predicted,
      explanation: `all ${(memoryBytes / 2 ** 20).toFixed(1)} MiB send in ~${Math.round(sendAllMs)} ms: pre-copy cannot shorten the downtime`,
    };
  }
  if (predicted <= p.maxDowntimeMs) {
    return {
      stop: true,
      reason: 'predicted-downtime',
      predictedDowntimeMs: predicted,
      explanation: `stop-and-copy of ${(memoryBytes / 2 ** 20).toFixed(1)} MiB predicted at ${Math.round(predicted)} ms <= ${p.maxDowntimeMs} ms`,
    };
  }
  return {
    stop: false,
    reason: null,
    predictedDowntimeMs: predicted,
    explanation: `stop-and-copy predicted at ${Math.round(predicted)} ms > ${p.maxDowntimeMs} ms`,
  };
}

/** Prior for the final dump's freeze before any dump was measured (busybox: ~0.25-0.35 s). */
const FIRST_DUMP_STALL_MS = 300;

/**
 * Predicts the final round's downtime if the source froze now: the pages dirtied since the
 * last dump (the last round's dirty rate over the time that round took), compressed at its
 * measured ratio, sent at its measured bandwidth, plus the freeze (last stall), hashing,
 * rebuild at the destination and restore.
 */
export function predictDowntimeMs(rounds: readonly RoundObservation[], costs: FixedCosts): number | null {
  const p = predictFinal(rounds, costs);
  return p === null ? null : p.downtimeMs;
}

/** The final round's predicted downtime and, within it, the part spent sending. */
export function predictFinal(rounds: readonly RoundObservation[], costs: FixedCosts): { downtimeMs: number; sendMs: number } | null {
  const last = rounds[rounds.length - 1];
  if (!last || last.intervalMs === null || last.intervalMs <= 0) return null;
  const dirtyBytesPerMs = last.rawBytes / last.intervalMs;
  const finalRaw = Math.min(dirtyBytesPerMs * last.durationMs, last.pagesScanned * 4096);
  const ratio = last.rawBytes > 0 ? last.sentBytes / last.rawBytes : 1;
  const bps = last.bandwidthBps > 0 ? last.bandwidthBps : 1e6;
  const sendMs = ((finalRaw * ratio * 8) / bps) * 1000;
  const rebuildMs = ((last.pagesScanned * 4096) / 2 ** 20) * costs.rebuildMsPerMiB;
  return { downtimeMs: last.stallMs + last.hashMs + sendMs + rebuildMs + costs.restoreMs, sendMs };
}

/** Called after each pre-copy round: stop now (final round next) or run another round? */
export function decide(policy: Policy, rounds: readonly RoundObservation[], elapsedMs: number, costs: FixedCosts = DEFAULT_COSTS): Decision {
  const k = rounds.length;
  const last = rounds[k - 1];
  const prev = rounds[k - 2];
  const predicted = predictDowntimeMs(rounds, costs);
  const go = (explanation: string): Decision => ({ stop: false, reason: null, predictedDowntimeMs: predicted, explanation });
  const stop = (reason: StopReason, explanation: string): Decision => ({ stop: true, reason, predictedDowntimeMs: predicted, explanation });
  if (!last) return go('no round yet');

  switch (policy.kind) {
    case 'rounds':
      return k >= policy.rounds ? stop('forced-rounds', `${k} of ${policy.rounds} forced rounds done`) : go(`${k} of ${policy.rounds} forced rounds done`);

    case 'alpha':
      if (last.sendMs < policy.alphaSeconds * 1000) return stop('alpha', `round ${k} sent in ${last.sendMs} ms < alpha ${policy.alphaSeconds} s`);
      if (k >= policy.maxRounds) return stop('max-rounds', `${k} rounds reached --max-rounds`);
      return go(`round ${k} sent in ${last.sendMs} ms >= alpha ${policy.alphaSeconds} s`);

    case 'model': {
      if (predicted !== null && predicted <= policy.maxDowntimeMs) {
        return stop('predicted-downtime', `predicted downtime ${Math.round(predicted)} ms <= ${policy.maxDowntimeMs} ms`);
      }
      // The budget is out of reach, but the final send is already negligible: what is left
      // is the freeze and the restore, which more rounds do not shorten.
      const parts = predictFinal(rounds, costs);
      if (parts !== null && parts.sendMs < NEGLIGIBLE_SEND_MS) {
        return stop(
          'converged',
          `predicted final send ${Math.round(parts.sendMs)} ms is negligible; the predicted downtime (${Math.round(parts.downtimeMs)} ms) is freeze and restore`,
        );
      }
      if (k >= policy.maxRounds) return stop('max-rounds', `${k} rounds reached --max-rounds`);
      if (elapsedMs >= policy.maxTimeMs) return stop('max-time', `${Math.round(elapsedMs)} ms reached --max-time`);
      // Round 2 is the first whose size reflects the dirty rate (round 1 sends everything);
      // from round 3 on, a round that did not shrink means more rounds will not help.
      if (k >= 3 && prev && last.rawBytes >= prev.rawBytes * CONVERGENCE_FACTOR) {
        return stop('no-convergence', `round ${k} sent ${last.rawBytes} B, not below ${CONVERGENCE_FACTOR} x round ${k - 1} (${prev.rawBytes} B)`);
      }
      return go(predicted === null ? 'dirty rate not known yet' : `predicted downtime ${Math.round(predicted)} ms > ${policy.maxDowntimeMs} ms`);
    }

    case 'phaul':
      if (last.pagesChanged <= 64) return stop('phaul-few-pages', `round ${k} wrote ${last.pagesChanged} <= 64 pages`);
      if (prev && last.pagesChanged > prev.pagesChanged * 1.1) return stop('phaul-growth', `round ${k} grew by more than 10 %`);
      if (k >= 8) return stop('phaul-max-rounds', '8 rounds');
      return go(`round ${k} wrote ${last.pagesChanged} pages`);

    case 'lxd': {
      const unchanged = last.pagesScanned > 0 ? 1 - last.pagesChanged / last.pagesScanned : 1;
      if (k >= 2 && unchanged >= 0.7) return stop('lxd-unchanged', `${(unchanged * 100).toFixed(0)} % of pages unchanged in round ${k}`);
      if (k >= 10) return stop('lxd-max-rounds', '10 rounds');
      return go(`${(unchanged * 100).toFixed(0)} % of pages unchanged`);
    }
  }
}
