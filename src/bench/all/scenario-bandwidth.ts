// Scenario 5: the link bandwidth swept for a large-memory service and the busybox counter,
// with our default decision model and codec choice (the shape of Ma et al.'s table), each
// migration under an HTTP probe (what its client sees). The links are put back as they
// were afterwards.
import type { LabState } from '../../lab/state.js';
import { linksOf, restoreLinks, rowOf, setBandwidth, type Shuttle } from './lab-ops.js';
import { removeProbedWorkload, startCounter, startRandomStateService } from './workloads.js';
import type { BenchPlan, MigrationRow } from './types.js';

export async function runBandwidthScenario(lab: LabState, plan: BenchPlan['bandwidth'], progress: (m: string) => void): Promise<MigrationRow[]> {
  const original = linksOf(lab);
  const rows: MigrationRow[] = [];
  const large = `random-state service ${plan.stateMb} MiB`;
  const say = (m: string) => progress(`[bandwidth] ${m}`);
  const started: Shuttle[] = [];
  try {
    const counter = await startCounter(lab, 'bench-all-bw-counter', say);
    started.push(counter);
    const svc = await startRandomStateService(lab, 'bench-all-bw-svc', plan.stateMb, plan.dirtyPagesPerSec, say);
    started.push(svc);
    for (let rep = 1; rep <= plan.reps; rep++) {
      for (const mbit of plan.mbits) {
        await setBandwidth(lab, mbit);
        for (const [workload, s] of [
          ['busybox counter', counter],
          [large, svc],
        ] as const) {
          say(`rep ${rep}/${plan.reps}, ${mbit} Mbit/s, ${workload}: ${s.where} -> other`);
          const { report: r, client } = await s.migrateProbed({});
          say(
            `  total ${r.totalMs} ms, downtime ${r.downtimeMs} ms, client gap ${client.clientGapMs ?? '-'} ms (rtt ${client.rttMs ?? '-'} ms), ${(r.bytesSent / 1e6).toFixed(1)} MB, stopped by ${r.stopReason}`,
          );
          rows.push(rowOf(r, { scenario: 'bandwidth', rep, workload, params: { mbit }, policy: 'model', linkMbit: mbit }, client));
        }
      }
    }
  } finally {
    await restoreLinks(lab, original);
    for (const s of started) await removeProbedWorkload(lab, s, say);
  }
  return rows;
}
