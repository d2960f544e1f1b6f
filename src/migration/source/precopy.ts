// Source, pre-copy: rounds while the service runs (never frozen), until the decision model
// says the final round's downtime is small enough, or that more rounds would not help, or
// refuses the handoff before the freeze (neither bound can be met: objective.ts).
import { decide, DEFAULT_COSTS, type RoundObservation } from '../decision.js';
import { runRound } from './round.js';
import { recordDecision } from './objective.js';
import type { SourceHandoff } from './handoff.js';

export async function runPrecopy(h: SourceHandoff): Promise<void> {
  const { report, req } = h;
  report.state = 'precopy';
  h.journal();
  const observations: RoundObservation[] = [];
  let lastDumpStart: number | null = null;
  for (;;) {
    const index = ++h.index;
    const dumpStart = performance.now();
    const r = await runRound(h, { index, final: false });
    h.prevIndex = r.index;
    observations.push({
      index,
      durationMs: performance.now() - dumpStart,
      intervalMs: lastDumpStart === null ? null : dumpStart - lastDumpStart,
      stallMs: r.round.stallMs,
      hashMs: r.round.hashMs,
      pagesScanned: r.round.pagesScanned,
      pagesChanged: r.round.pagesChanged,
      rawBytes: r.round.rawBytes,
      sentBytes: r.round.sentBytes,
      sendMs: r.round.sendMs,
      bandwidthBps: r.round.bandwidthBps,
    });
    lastDumpStart = dumpStart;
    const d = decide(req.policy, observations, performance.now() - h.t0, DEFAULT_COSTS);
    report.precopyRounds = index;
    recordDecision(h, d, r.round);
    h.journal();
    if (d.stop) return;
  }
}
