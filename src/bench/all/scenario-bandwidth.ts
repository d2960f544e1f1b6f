// Scenario 5: the link bandwidth swept for a large-memory service and the busybox counter,
// with our default decision model and codec choice (the shape of Ma et al.'s table). The
// links are put back as they were afterwards.
import type { LabState } from '../../lab/state.js';
import { linksOf, restoreLinks, rowOf, setBandwidth } from './lab-ops.js';
import { removeService, startCounter, startRandomStateService } from './workloads.js';
import type { BenchPlan, MigrationRow } from './types.js';

export async function runBandwidthScenario(lab: LabState, plan: BenchPlan['bandwidth'], progress: (m: string) => void): Promise<MigrationRow[]> {
  const original = linksOf(lab);
  const rows: MigrationRow[] = [];
  const large = `random-state service ${plan.stateMb} MiB`;
  const counter = await startCounter(lab, 'bench-all-bw-counter');
  try {
    const svc = await startRandomStateService(lab, 'bench-all-bw-svc', plan.stateMb, plan.dirtyPagesPerSec);
    for (let rep = 1; rep <= plan.reps; rep++) {
      for (const mbit of plan.mbits) {
        await setBandwidth(lab, mbit);
        for (const [workload, s] of [['busybox counter', counter], [large, svc]] as const) {
          progress(`[bandwidth] rep ${rep}/${plan.reps}, ${mbit} Mbit/s, ${workload}: ${s.where} -> other`);
          const r = await s.migrate({});
          progress(`[bandwidth]   total ${r.totalMs} ms, downtime ${r.downtimeMs} ms, ${(r.bytesSent / 1e6).toFixed(1)} MB, stopped by ${r.stopReason}`);
          rows.push(rowOf(r, { scenario: 'bandwidth', rep, workload, params: { mbit }, policy: 'model' }));
        }
      }
    }
  } finally {
    await restoreLinks(lab, original);
    await removeService(lab, 'bench-all-bw-counter');
    await removeService(lab, 'bench-all-bw-svc');
  }
  return rows;
}
