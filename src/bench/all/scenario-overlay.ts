// Scenario 1: overlay sizes and synthesis times, with the same-run baselines of
// `bench overlay` (the 2016 prototype's synthesis method, whole-image shipping).
import { runOverlayBench } from '../overlay.js';
import type { CodecName } from '../../transfer/codecs.js';
import type { BenchPlan, OverlayRow } from './types.js';

export async function runOverlayScenario(plan: BenchPlan['overlay'], progress: (m: string) => void): Promise<OverlayRow[]> {
  const rows: OverlayRow[] = [];
  for (let rep = 1; rep <= plan.reps; rep++) {
    progress(`[overlay] repetition ${rep}/${plan.reps}`);
    const r = await runOverlayBench({ codecs: [plan.codec as CodecName], workloads: plan.workloads, progress: (m) => progress(`[overlay] ${m}`) });
    for (const w of r.workloads) {
      const c = w.codecs[0]!;
      rows.push({
        rep,
        workload: w.name,
        codec: c.codec,
        overlayBytes: c.overlayBytes,
        overlayRawBytes: c.overlayRawBytes,
        appBytes: w.appBytes,
        createMs: c.createMs,
        pushMs: c.pushMs,
        synthesisMs: c.synthesisMs,
        firstRequestMs: c.firstRequestMs,
        prototypeSynthesisMs: w.baselinePrototypeSynthesisMs,
        fullImageBytes: w.fullImageBytes,
        fullImageMs: w.baselines.fullImage.totalMs,
        imageIdMatches: w.imageIdMatches,
      });
    }
  }
  return rows;
}
