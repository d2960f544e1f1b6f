// `cloudlet bench overlay --engine docker20,docker28,docker28-containerd`: the overlay bench
// (with the 2016 prototype's synthesis and whole-image shipping in the same run) once per
// engine kind, each on a lab of its own, so the engines' figures sit side by side in one JSON.
import { mkdir, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { ConflictError } from '../util/errors.js';
import { labDown, labUp } from '../lab/lab.js';
import { readLabState } from '../lab/state.js';
import type { EngineKind } from '../lab/engines.js';
import { runOnLab, type OverlayBenchOptions, type OverlayBenchResult } from './overlay.js';

export interface OverlayEnginesResult {
  bench: 'overlay-engines';
  command: string;
  date: string;
  /** Load averages (1, 5, 15 min) before the first lab and after the last. */
  loadAverage: { before: number[]; after: number[] };
  /** One result per engine kind, in the order asked. */
  engines: OverlayBenchResult[];
}

const load = (): number[] => os.loadavg().map((x) => Math.round(x * 100) / 100);

/** The whole overlay bench once per engine kind, each on a lab brought up and down here. */
export async function runOverlayBenchOnEngines(opts: OverlayBenchOptions & { engines: EngineKind[]; command: string }): Promise<OverlayEnginesResult> {
  if (readLabState()) throw new ConflictError('bench overlay --engine brings its own labs up: a lab is up', { hint: 'cloudlet lab down first' });
  const before = load();
  const engines: OverlayBenchResult[] = [];
  const work = join(os.tmpdir(), `cloudlet-bench-overlay-${process.pid}`);
  try {
    for (const engine of opts.engines) {
      opts.progress(`engine ${engine}: lab up (2 cloudlets, 100mbit, 5ms)`);
      const lab = await labUp({ cloudlets: 2, link: { bandwidth: '100mbit', latency: '5ms' }, engine }, opts.progress);
      try {
        await mkdir(work, { recursive: true });
        engines.push(await runOnLab(lab, work, opts));
      } finally {
        opts.progress(`engine ${engine}: lab down`);
        await labDown(() => undefined);
        await rm(work, { recursive: true, force: true });
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { bench: 'overlay-engines', command: opts.command, date: new Date().toISOString(), loadAverage: { before, after: load() }, engines };
}
