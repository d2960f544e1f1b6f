// Source: the decision model's verdicts in the report (report.objective, the round's
// predictions), and the refusal before the freeze when neither of the user's bounds can be
// met (decision.ts: --max-total stated, no --force). A refusal is thrown from prepare or
// pre-copy, before any freeze: the rollback aborts the destination's prepared twin and the
// service keeps running here, never paused.
import { ObjectiveUnmetError, type Decision, type Policy } from '../decision.js';
import type { ObjectiveReport, RoundReport } from '../types.js';
import type { SourceHandoff } from './handoff.js';

/** The model rule's bounds as a handoff starts; null for the other rules. */
export function newObjective(p: Policy): ObjectiveReport | null {
  if (p.kind !== 'model') return null;
  return {
    maxDowntimeMs: p.maxDowntimeMs,
    maxTotalMs: p.maxTotalMs ?? null,
    force: p.force ?? false,
    predictedDowntimeMs: null,
    predictedTotalMs: null,
    unmet: null,
  };
}

const rounded = (ms: number | null): number | null => (ms === null ? null : Math.round(ms));

/**
 * Records a decision (after a round, or the one before any round: round null) in the report;
 * a stop records its reason. Throws ObjectiveUnmetError when the decision refuses the handoff.
 */
export function recordDecision(h: SourceHandoff, d: Decision, round: RoundReport | null): void {
  const { report, req } = h;
  report.decision = d.explanation;
  if (round) {
    round.decision = d.explanation;
    round.predictedDowntimeMs = rounded(d.predictedDowntimeMs);
    round.predictedTotalMs = rounded(d.predictedTotalMs);
  }
  if (report.objective) {
    report.objective.predictedDowntimeMs = rounded(d.predictedDowntimeMs);
    report.objective.predictedTotalMs = rounded(d.predictedTotalMs);
    report.objective.unmet = d.unmet;
  }
  if (d.stop) report.stopReason = d.reason === 'forced-rounds' && !round ? 'stop-and-copy' : d.reason;
  if (d.unmet === 'forced') report.warnings.push(`going on with --force: ${d.explanation}`);
  if (d.unmet === 'refuse' && req.policy.kind === 'model') throw new ObjectiveUnmetError(d, req.policy);
}
