// `cloudlet bench ...`: benchmarks on the lab, printing measured figures and the ratios
// against baselines measured in the same run.
import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import { runMigrateBench } from '../../bench/migrate.js';
import { action, printJson, printTable, progress } from '../output.js';

function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new UsageError('benchmarks drive the lab and need root', { hint: 'run with sudo' });
}

export function registerBenchCommands(program: Command): void {
  const bench = program.command('bench').description('benchmarks on the lab (a lab is brought up if none is)');

  bench
    .command('migrate')
    .description('handoff figures: busybox counter, and a large-memory service against stop-and-copy')
    .option('--state-mb <n>', 'memory state of the service (MiB)', '256')
    .option('--dirty <pages>', 'pages per second the service dirties', '100')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { stateMb: string; dirty: string; json?: boolean }) => {
        requireRoot();
        const stateMb = Number(opts.stateMb);
        const dirty = Number(opts.dirty);
        if (!(Number.isInteger(stateMb) && stateMb >= 1 && stateMb <= 4096)) throw new UsageError(`--state-mb must be 1..4096 (got ${opts.stateMb})`);
        if (!(Number.isInteger(dirty) && dirty >= 0)) throw new UsageError(`--dirty must be a non-negative integer (got ${opts.dirty})`);
        const r = await runMigrateBench({ stateMb, dirtyPagesPerSec: dirty, progress });
        if (opts.json) {
          printJson(r);
        } else {
          process.stdout.write(`link ${r.link.bandwidth} / ${r.link.latency}; ${r.machine.cores} cores, kernel ${r.machine.kernel}\n\n`);
          printTable(
            r.scenarios.flatMap((s) => [
              { scenario: s.name, total_ms: s.totalMs, downtime_ms: s.downtimeMs, mb_sent: (s.bytesSent / 1e6).toFixed(2), rounds: s.precopyRounds, stopped_by: s.stopReason },
              ...(s.baseline
                ? [{ scenario: `  baseline: ${s.baseline.name}`, total_ms: s.baseline.totalMs, downtime_ms: s.baseline.downtimeMs, mb_sent: (s.baseline.bytesSent / 1e6).toFixed(2), rounds: 0, stopped_by: '-' }]
                : []),
            ]),
            ['scenario', 'total_ms', 'downtime_ms', 'mb_sent', 'rounds', 'stopped_by'],
          );
          process.stdout.write('\n');
          printTable(
            r.scenarios.flatMap((s) => s.targets.map((t) => ({ scenario: s.name, target: t.name, measured: Math.round(t.value), met: t.ok ? 'yes' : 'NO' }))),
            ['scenario', 'target', 'measured', 'met'],
          );
        }
        return 0;
      }),
    );
}
