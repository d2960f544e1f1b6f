// Scenario 6: the decision models side by side on the same workloads and link: our default
// model, the alpha rule (alpha = 1 s), P.Haul's rule and LXD's (src/migration/decision.ts).
// One codec for every run so that only the stop rule differs.
import type { LabState } from '../../lab/state.js';
import { policyBody, rowOf, setBandwidth, type Shuttle } from './lab-ops.js';
import { removeService, startActivityService, startCounter, startRandomStateService } from './workloads.js';
import type { BenchPlan, MigrationRow } from './types.js';

export async function runDecisionScenario(lab: LabState, plan: BenchPlan['decision'], activity: BenchPlan['activity'], progress: (m: string) => void): Promise<MigrationRow[]> {
  await setBandwidth(lab, plan.mbit);
  const rows: MigrationRow[] = [];
  const names = ['bench-all-d-counter', 'bench-all-d-svc', 'bench-all-d-activity'];
  try {
    const counter = await startCounter(lab, names[0]!);
    const svc = await startRandomStateService(lab, names[1]!, plan.stateMb, plan.dirtyPagesPerSec);
    const act = await startActivityService(lab, names[2]!, activity.stateMb, activity.dirtyKbPerRequest, (m) => progress(`[decision] ${m}`));
    const workloads: { name: string; shuttle: Shuttle; run: (s: Shuttle, body: object) => Promise<{ report: Awaited<ReturnType<Shuttle['migrate']>>; requests: number | null }> }[] = [
      { name: 'busybox counter', shuttle: counter, run: async (s, body) => ({ report: await s.migrate(body), requests: null }) },
      { name: `random-state service ${plan.stateMb} MiB`, shuttle: svc, run: async (s, body) => ({ report: await s.migrate(body), requests: null }) },
      {
        name: `activity service ${activity.stateMb} MiB, n=${plan.n}`,
        shuttle: act.shuttle,
        run: (s, body) => s.migrateUnderLoad(act.address, plan.n, activity.windowMs, body),
      },
    ];
    for (let rep = 1; rep <= plan.reps; rep++) {
      for (const w of workloads) {
        for (const policy of plan.policies) {
          progress(`[decision] rep ${rep}/${plan.reps}, ${w.name}, ${policy}: ${w.shuttle.where} -> other`);
          const { report, requests } = await w.run(w.shuttle, { ...policyBody(policy), codec: plan.codec });
          progress(`[decision]   total ${report.totalMs} ms, downtime ${report.downtimeMs} ms, ${report.precopyRounds} rounds, stopped by ${report.stopReason}`);
          rows.push(rowOf(report, { scenario: 'decision', rep, workload: w.name, params: { policy }, policy, requests }));
        }
      }
    }
  } finally {
    for (const n of names) await removeService(lab, n);
  }
  return rows;
}
