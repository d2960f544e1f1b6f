// Scenario 6: the decision models side by side on the same workloads and link: our default
// model, the alpha rule (alpha = 1 s), P.Haul's rule and LXD's (src/migration/decision.ts).
// One codec for every run so that only the stop rule differs. The counter and the
// random-state service migrate under an HTTP probe, the activity service under its load.
import type { LabState } from '../../lab/state.js';
import type { ClientFigures } from './client-figures.js';
import type { MigrationReport } from '../../migration/types.js';
import { policyBody, rowOf, setBandwidth, type Shuttle } from './lab-ops.js';
import { removeProbedWorkload, removeService, startActivityService, startCounter, startRandomStateService } from './workloads.js';
import type { BenchPlan, MigrationRow } from './types.js';

interface DecisionWorkload {
  name: string;
  shuttle: Shuttle;
  run: (s: Shuttle, body: object) => Promise<{ report: MigrationReport; requests: number | null; client: ClientFigures }>;
}

export async function runDecisionScenario(
  lab: LabState,
  plan: BenchPlan['decision'],
  activity: BenchPlan['activity'],
  progress: (m: string) => void,
): Promise<MigrationRow[]> {
  await setBandwidth(lab, plan.mbit);
  const rows: MigrationRow[] = [];
  const say = (m: string) => progress(`[decision] ${m}`);
  const activityName = 'bench-all-d-activity';
  const probed: Shuttle[] = [];
  try {
    const counter = await startCounter(lab, 'bench-all-d-counter', say);
    probed.push(counter);
    const svc = await startRandomStateService(lab, 'bench-all-d-svc', plan.stateMb, plan.dirtyPagesPerSec, say);
    probed.push(svc);
    const act = await startActivityService(lab, activityName, activity.stateMb, activity.dirtyKbPerRequest, say);
    const workloads: DecisionWorkload[] = [
      { name: 'busybox counter', shuttle: counter, run: (s, body) => s.migrateProbed(body) },
      { name: `random-state service ${plan.stateMb} MiB`, shuttle: svc, run: (s, body) => s.migrateProbed(body) },
      {
        name: `activity service ${activity.stateMb} MiB, n=${plan.n}`,
        shuttle: act.shuttle,
        run: (s, body) => s.migrateUnderLoad(act.address, plan.n, activity.windowMs, body),
      },
    ];
    for (let rep = 1; rep <= plan.reps; rep++) {
      for (const w of workloads) {
        for (const policy of plan.policies) {
          say(`rep ${rep}/${plan.reps}, ${w.name}, ${policy}: ${w.shuttle.where} -> other`);
          const { report, requests, client } = await w.run(w.shuttle, { ...policyBody(policy), codec: plan.codec });
          say(
            `  total ${report.totalMs} ms, downtime ${report.downtimeMs} ms, client gap ${client.clientGapMs ?? '-'} ms, ${report.precopyRounds} rounds, stopped by ${report.stopReason}`,
          );
          rows.push(rowOf(report, { scenario: 'decision', rep, workload: w.name, params: { policy }, policy, requests, linkMbit: plan.mbit }, client));
        }
      }
    }
  } finally {
    for (const s of probed) await removeProbedWorkload(lab, s, say);
    await removeService(lab, activityName);
  }
  return rows;
}
