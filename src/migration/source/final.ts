// Source, final round: the freeze (downtime starts), the last dump and delta; the destination
// restores the twin before it answers (the restore, reported here from its answer).
import type { RoundResponse } from '../destination/wire.js';
import { runRound } from './round.js';
import type { SourceHandoff } from './handoff.js';

export async function runFinal(h: SourceHandoff): Promise<void> {
  const freezeAt = performance.now();
  h.progress.frozen = true;
  const fin = await runRound(h, { index: h.index, final: true, onFinalSend: () => (h.progress.finalSent = true) });
  recordRestore(h, fin.response, freezeAt);
}

/** The destination's restore, as the final round's answer tells it; the handoff's total. */
function recordRestore(h: SourceHandoff, r: RoundResponse, freezeAt: number): void {
  const { report } = h;
  // The downtime ends when the restored service was reachable at the destination; what
  // the destination did after it (closing the hold; a lazy restore's post-copy) is not.
  const afterReachableMs = r.reachableMs === null ? (r.postCopyMs ?? 0) : r.applyMs - r.reachableMs;
  report.downtimeMs = Math.round(performance.now() - freezeAt - afterReachableMs);
  report.restoreMs = r.restoreMs === null ? null : Math.round(r.restoreMs);
  if (r.announceMs !== null) report.announceMs = Math.round(r.announceMs);
  report.hold = r.hold;
  const postCopyMs = r.postCopyMs ?? null;
  report.postCopyMs = postCopyMs === null ? null : Math.round(postCopyMs);
  // A lazy restore is the one that answers with a post-copy time.
  report.restoreMode = postCopyMs === null ? 'eager' : 'lazy';
  // The handoff is complete when the twin runs: the total stops here; removing the
  // source copy and the staging data (commit) is reported apart.
  report.totalMs = Math.round(performance.now() - h.t0);
}
