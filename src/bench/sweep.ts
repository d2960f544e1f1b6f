// `cloudlet bench sweep`: slow links with a stated downtime bound (issue 21). At each
// bandwidth the random-state service and the busybox counter are handed off with
// `--max-downtime` stated, so the decision model must either meet it or refuse the handoff
// before the freeze with its prediction; each handoff that ran is set beside the physical
// limit of its bytes on the link (wire-limit.ts), and a refused one is checked to have left
// the service running at the source, never frozen. Handoffs start cold (no page cache), as
// in bench all's sweep.
import { cpus, release, totalmem } from 'node:os';
import type { LabState } from '../lab/state.js';
import type { MigrationReport } from '../migration/types.js';
import { CloudletError } from '../util/errors.js';
import { linksOf, restoreLinks, setBandwidth } from './all/lab-ops.js';
import { removeProbedWorkload, startCounter, startRandomStateService } from './all/workloads.js';
import { wireLimitMs } from './all/wire-limit.js';
import { engineOf, postMigration } from './lab-migrate.js';
import { onLab } from './lab-session.js';
import { spareReady } from './migrate.js';
import { target, type Target } from './migrate-runs.js';

export interface SweepOptions {
  mbits: number[];
  stateMb: number;
  dirtyPagesPerSec: number;
  maxDowntimeMs: number;
  repeat: number;
  command: string;
  progress: (msg: string) => void;
}

export interface SweepRow {
  rep: number;
  mbit: number;
  workload: string;
  from: string;
  to: string;
  /** done: handed off; refused: refused before the freeze (objective_unreachable). */
  outcome: 'done' | 'refused';
  downtimeMs: number | null;
  totalMs: number | null;
  /** Every round's bytes on the wire (the rounds that ran, for a refusal too). */
  bytesToCross: number;
  wireLimitMs: number;
  precopyRounds: number;
  stopReason: string | null;
  /** The model's last prediction before the freeze (or before the refusal). */
  predictedDowntimeMs: number | null;
  predictedTotalMs: number | null;
  /** Refused only: the service still ran at the source afterwards. */
  stillAtSource: boolean | null;
  targets: Target[];
  report: MigrationReport;
}

export interface SweepResult {
  bench: 'sweep';
  command: string;
  date: string;
  machine: { cores: number; memoryGiB: number; kernel: string };
  mbits: number[];
  stateMb: number;
  dirtyPagesPerSec: number;
  maxDowntimeMs: number;
  repeat: number;
  rows: SweepRow[];
  allTargetsMet: boolean;
}

/** One handoff that may be refused: the report, and where the service is now. */
async function handOff(lab: LabState, o: { container: string; from: string; to: string; maxDowntimeMs: number }): Promise<MigrationReport> {
  const r = await postMigration(lab, o.from, { container: o.container, to: o.to, maxDowntimeMs: o.maxDowntimeMs, pageCache: false });
  const refused = r.state === 'rolled-back' && r.error?.code === 'objective_unreachable';
  if (r.state !== 'done' && !refused) {
    throw new CloudletError('bench_failed', `handoff of ${o.container} ${o.from} -> ${o.to} ended ${r.state}: ${r.error?.message ?? ''}`, { kind: 'internal' });
  }
  return r;
}

async function rowOf(
  lab: LabState,
  o: { rep: number; mbit: number; workload: string; container: string; maxDowntimeMs: number; r: MigrationReport },
): Promise<SweepRow> {
  const { r } = o;
  const outcome = r.state === 'done' ? 'done' : 'refused';
  const bytesToCross = r.rounds.reduce((n, x) => n + x.sentBytes, 0);
  const limitMs = wireLimitMs(bytesToCross, o.mbit);
  const stillAtSource = outcome === 'refused' ? ((await engineOf(lab, r.from).inspectContainerIfAny(o.container))?.running ?? false) : null;
  const targets =
    outcome === 'done'
      ? [
          target(`downtimeMs <= --max-downtime ${o.maxDowntimeMs}`, r.downtimeMs, o.maxDowntimeMs),
          target(`totalMs <= 1.25 x bytes to cross / bandwidth + 2000 (= ${Math.round(1.25 * limitMs + 2000)})`, r.totalMs, 1.25 * limitMs + 2000),
        ]
      : [
          target('refused before the freeze: never frozen (1 = frozen)', r.downtimeMs === null && !r.rounds.some((x) => x.final) ? 0 : 1, 0),
          target('refused: still running at the source (1 = not)', stillAtSource ? 0 : 1, 0),
          target('refused with a prediction (1 = none)', r.objective?.predictedDowntimeMs != null ? 0 : 1, 0),
        ];
  return {
    rep: o.rep,
    mbit: o.mbit,
    workload: o.workload,
    from: r.from,
    to: r.to,
    outcome,
    downtimeMs: r.downtimeMs,
    totalMs: r.totalMs,
    bytesToCross,
    wireLimitMs: Math.round(limitMs),
    precopyRounds: r.precopyRounds,
    stopReason: r.stopReason,
    predictedDowntimeMs: r.objective?.predictedDowntimeMs ?? null,
    predictedTotalMs: r.objective?.predictedTotalMs ?? null,
    stillAtSource,
    targets,
    report: r,
  };
}

async function sweepOnLab(lab: LabState, o: SweepOptions): Promise<SweepRow[]> {
  const original = linksOf(lab);
  const say = (m: string) => o.progress(`[sweep] ${m}`);
  const workloads = [
    { label: 'busybox counter', shuttle: await startCounter(lab, 'bench-sweep-counter', say) },
    { label: `random-state service ${o.stateMb} MiB`, shuttle: await startRandomStateService(lab, 'bench-sweep-svc', o.stateMb, o.dirtyPagesPerSec, say) },
  ];
  const at = new Map(workloads.map((w) => [w.shuttle.container, lab.cloudlets[0]!.name]));
  const [a, b] = lab.cloudlets.map((c) => c.name) as [string, string];
  const rows: SweepRow[] = [];
  try {
    for (let rep = 1; rep <= o.repeat; rep++) {
      for (const mbit of o.mbits) {
        await setBandwidth(lab, mbit);
        for (const w of workloads) {
          const container = w.shuttle.container;
          const from = at.get(container)!;
          const to = from === a ? b : a;
          say(`rep ${rep}/${o.repeat}, ${mbit} Mbit/s, ${w.label}: ${from} -> ${to}, --max-downtime ${o.maxDowntimeMs} ms`);
          const r = await handOff(lab, { container, from, to, maxDowntimeMs: o.maxDowntimeMs });
          if (r.state === 'done') {
            at.set(container, to);
            await spareReady(engineOf(lab, to));
          }
          const row = await rowOf(lab, { rep, mbit, workload: w.label, container, maxDowntimeMs: o.maxDowntimeMs, r });
          say(
            `  ${row.outcome}: downtime ${row.downtimeMs ?? '-'} ms, total ${row.totalMs ?? '-'} ms, ${(row.bytesToCross / 1e6).toFixed(1)} MB (limit ${(row.wireLimitMs / 1000).toFixed(1)} s), predicted downtime ${row.predictedDowntimeMs ?? '-'} ms, stopped by ${row.stopReason ?? '-'}`,
          );
          rows.push(row);
        }
      }
    }
  } finally {
    await restoreLinks(lab, original);
    for (const w of workloads) await removeProbedWorkload(lab, w.shuttle, say);
  }
  return rows;
}

export async function runSweepBench(o: SweepOptions): Promise<SweepResult> {
  const rows = await onLab(o.progress, (lab) => sweepOnLab(lab, o));
  return {
    bench: 'sweep',
    command: o.command,
    date: new Date().toISOString(),
    machine: { cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release() },
    mbits: o.mbits,
    stateMb: o.stateMb,
    dirtyPagesPerSec: o.dirtyPagesPerSec,
    maxDowntimeMs: o.maxDowntimeMs,
    repeat: o.repeat,
    rows,
    allTargetsMet: rows.every((r) => r.targets.every((t) => t.ok)),
  };
}

/** The rows as a Markdown table (docs/results). */
export function sweepMarkdown(r: SweepResult): string {
  const head =
    '| rep | Mbit/s | workload | from -> to | outcome | downtime ms | predicted downtime ms | total ms | MB to cross | wire limit s | total / limit | stopped by | targets met |';
  const lines = [
    head,
    `|${head
      .split('|')
      .slice(1, -1)
      .map(() => '---')
      .join('|')}|`,
  ];
  for (const x of r.rows) {
    const ratio = x.totalMs === null || x.wireLimitMs <= 0 ? '-' : (x.totalMs / x.wireLimitMs).toFixed(2);
    lines.push(
      `| ${x.rep} | ${x.mbit} | ${x.workload} | ${x.from} -> ${x.to} | ${x.outcome} | ${x.downtimeMs ?? '-'} | ${x.predictedDowntimeMs ?? '-'} | ${x.totalMs ?? '-'} | ${(x.bytesToCross / 1e6).toFixed(1)} | ${(x.wireLimitMs / 1000).toFixed(1)} | ${ratio} | ${x.stopReason ?? '-'} | ${
        x.targets.every((t) => t.ok)
          ? 'yes'
          : `NO (${x.targets
              .filter((t) => !t.ok)
              .map((t) => t.name)
              .join('; ')})`
      } |`,
    );
  }
  return lines.join('\n') + '\n';
}
