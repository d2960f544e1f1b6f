// `cloudlet bench all`: every scenario of the evaluation on the lab, one after the other,
// then results.json and the report rendered from it. results.json is rewritten after every
// scenario, so that a run that fails late keeps what it measured.
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { CloudletError } from '../../util/errors.js';
import type { LabState } from '../../lab/state.js';
import { onLab } from '../lab-session.js';
import { benchPlan } from './plan.js';
import { linksOf, restoreLinks } from './lab-ops.js';
import { runOverlayScenario } from './scenario-overlay.js';
import { runCompressionScenario } from './scenario-compression.js';
import { runActivityScenario } from './scenario-activity.js';
import { runBandwidthScenario } from './scenario-bandwidth.js';
import { runDecisionScenario } from './scenario-decision.js';
import { writeReport } from './report.js';
import { PUBLISHED, RESULTS_VERSION, type BenchAllResult, type Machine } from './types.js';

export interface BenchAllOptions {
  out: string;
  quick: boolean;
  /** The command line, as the report quotes it. */
  command: string;
  progress: (m: string) => void;
}

const load = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

function machine(): Machine {
  return {
    cores: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    loadAverageStart: load(),
    loadAverageEnd: [],
  };
}

export async function runBenchAll(opts: BenchAllOptions): Promise<BenchAllResult> {
  return onLab(opts.progress, (lab) => runOnLab(lab, opts));
}

async function runOnLab(lab: LabState, opts: BenchAllOptions): Promise<BenchAllResult> {
  if (lab.cloudlets.length < 2) throw new CloudletError('bench_failed', 'the lab needs at least 2 cloudlets', { kind: 'internal' });
  await mkdir(opts.out, { recursive: true });
  const plan = benchPlan(opts.quick);
  const t0 = performance.now();
  const result: BenchAllResult = {
    bench: 'all',
    version: RESULTS_VERSION,
    command: opts.command,
    startedAt: new Date().toISOString(),
    finishedAt: '',
    wallMs: 0,
    machine: machine(),
    lab: { cloudlets: lab.cloudlets.map((c) => c.name), link: { ...lab.cloudlets[1]!.link } },
    plan,
    scenarioMs: {},
    overlay: [],
    compression: [],
    rounds: [],
    alpha: [],
    bandwidth: [],
    decision: [],
    published: PUBLISHED,
  };
  const save = () => writeFile(join(opts.out, 'results.json'), JSON.stringify(result, null, 2) + '\n');
  const timed = async (name: string, fn: () => Promise<void>) => {
    const s = performance.now();
    opts.progress(`=== scenario ${name} ===`);
    await fn();
    result.scenarioMs[name] = Math.round(performance.now() - s);
    opts.progress(`=== ${name} done in ${(result.scenarioMs[name] / 1000).toFixed(0)} s ===`);
    await save();
  };
  const links = linksOf(lab);
  try {
    await timed('compression', async () => void (result.compression = await runCompressionScenario(lab, plan.compression, opts.progress)));
    await timed('rounds', async () => void (result.rounds = await runActivityScenario(lab, 'rounds', plan.activity, opts.progress)));
    await timed('alpha', async () => void (result.alpha = await runActivityScenario(lab, 'alpha', plan.activity, opts.progress)));
    await timed('bandwidth', async () => void (result.bandwidth = await runBandwidthScenario(lab, plan.bandwidth, opts.progress)));
    await timed('decision', async () => void (result.decision = await runDecisionScenario(lab, plan.decision, plan.activity, opts.progress)));
    // Last: the longest scenario, and the one that needs no workload of the others.
    await timed('overlay', async () => void (result.overlay = await runOverlayScenario(plan.overlay, opts.progress)));
  } finally {
    await restoreLinks(lab, links);
  }
  result.finishedAt = new Date().toISOString();
  result.wallMs = Math.round(performance.now() - t0);
  result.machine.loadAverageEnd = load();
  await save();
  await writeReport(result, opts.out);
  return result;
}
