// Scenarios 3 and 4: forced pre-copy rounds (0, 1, 2) and the alpha rule (alpha = 1, 1.5)
// while the lab client sends n = 90/180/270 requests, each dirtying memory in the service.
// One service serves both scenarios; the repetition loop is outermost so that drift of the
// shared machine spreads over every setting instead of biasing one.
import type { LabState } from '../../lab/state.js';
import { setBandwidth, rowOf } from './lab-ops.js';
import { removeService, startActivityService } from './workloads.js';
import type { BenchPlan, MigrationRow } from './types.js';

export const ACTIVITY_SERVICE = 'bench-all-activity';

export async function runActivityScenario(
  lab: LabState,
  which: 'rounds' | 'alpha',
  plan: BenchPlan['activity'],
  progress: (m: string) => void,
): Promise<MigrationRow[]> {
  await setBandwidth(lab, plan.mbit);
  const { shuttle, address } = await startActivityService(lab, ACTIVITY_SERVICE, plan.stateMb, plan.dirtyKbPerRequest, (m) => progress(`[${which}] ${m}`));
  const rows: MigrationRow[] = [];
  const settings = which === 'rounds' ? plan.rounds.map((r) => `rounds=${r}`) : plan.alphas.map((a) => `alpha=${a}`);
  try {
    for (let rep = 1; rep <= plan.reps; rep++) {
      for (const n of plan.ns) {
        for (const policy of settings) {
          const [key, value] = policy.split('=') as [string, string];
          const body = key === 'rounds' ? { rounds: Number(value), codec: plan.codec as 'none' } : { alpha: Number(value), codec: plan.codec as 'none' };
          progress(`[${which}] rep ${rep}/${plan.reps}, n=${n}, ${policy}: ${shuttle.where} -> other`);
          const { report, requests, client } = await shuttle.migrateUnderLoad(address, n, plan.windowMs, body);
          progress(
            `[${which}]   total ${report.totalMs} ms, downtime ${report.downtimeMs} ms, client gap ${client.clientGapMs ?? '-'} ms (rtt ${client.rttMs ?? '-'} ms), ${report.precopyRounds} pre-copy rounds, ${requests} requests`,
          );
          rows.push(
            rowOf(
              report,
              { scenario: which, rep, workload: `activity service ${plan.stateMb} MiB`, params: { n, [key]: Number(value) }, policy, requests },
              client,
            ),
          );
        }
      }
    }
  } finally {
    await removeService(lab, ACTIVITY_SERVICE);
  }
  return rows;
}
