// `cloudlet bench migrate --engine docker20,docker28`: the same bench once per engine kind, each
// on a lab of its own, so that the figures of the engines sit side by side in one JSON.
import { ConflictError } from '../util/errors.js';
import { labDown, labUp } from '../lab/lab.js';
import { readLabState } from '../lab/state.js';
import type { EngineKind } from '../lab/engines.js';
import { runOnLab, type MigrateBenchOptions, type MigrateBenchResult } from './migrate.js';

/** The whole bench once per engine kind, each on a lab of its own brought up and down here. */
export async function runMigrateBenchOnEngines(opts: MigrateBenchOptions & { engines: EngineKind[] }): Promise<MigrateEnginesResult> {
  if (readLabState()) throw new ConflictError('bench migrate --engine brings its own labs up: a lab is up', { hint: 'cloudlet lab down first' });
  const runs: MigrateBenchResult[] = [];
  for (const engine of opts.engines) {
    opts.progress(`engine ${engine}: lab up (2 cloudlets, 100mbit, 5ms)`);
    const lab = await labUp({ cloudlets: 2, link: { bandwidth: '100mbit', latency: '5ms' }, engine }, opts.progress);
    try {
      runs.push(await runOnLab(lab, opts));
    } finally {
      opts.progress(`engine ${engine}: lab down`);
      await labDown(() => undefined);
    }
  }
  return { bench: 'migrate-engines', command: opts.command ?? 'cloudlet bench migrate --engine', date: new Date().toISOString(), engines: runs };
}

/** The results of each engine, in the order asked. */
export interface MigrateEnginesResult {
  bench: 'migrate-engines';
  command: string;
  date: string;
  engines: MigrateBenchResult[];
}
