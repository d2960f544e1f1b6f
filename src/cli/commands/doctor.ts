// `cloudlet doctor [--json] [--docker-host unix:///path]`: checks this machine's kernel,
// CRIU, container runtime, network tools and (when a lab is up) its Docker engines.
// Exit code 1 when a required item is missing, so scripts can gate on it.
import type { Command } from 'commander';
import { runDoctor, type CheckResult } from '../../doctor/checks.js';
import { action, printJson, printTable } from '../output.js';

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check that this machine can run cloudlets (kernel, CRIU, Docker, network tools)')
    .option('--json', 'print {ok, checks} as JSON')
    .option('--docker-host <url>', 'also check this engine (unix:///path) instead of the lab engines')
    .action(
      action(async (opts: { json?: boolean; dockerHost?: string }) => {
        const report = await runDoctor(opts.dockerHost ? { dockerHost: opts.dockerHost } : {});
        if (opts.json) printJson(report);
        else printHuman(report.checks, report.ok);
        return report.ok ? 0 : 1;
      }),
    );
}

function printHuman(checks: CheckResult[], ok: boolean): void {
  printTable(
    checks.map((c) => ({ status: c.status, check: c.title + (c.required ? '' : ' (optional)'), detail: c.detail })),
    ['status', 'check', 'detail'],
  );
  const fixes = checks.filter((c) => c.fix && c.status !== 'ok');
  if (fixes.length > 0) {
    process.stdout.write('\nfixes:\n');
    for (const c of fixes) process.stdout.write(`  ${c.title}: ${c.fix}\n`);
  }
  process.stdout.write(`\n${ok ? 'ok: every required item is present' : 'NOT OK: a required item is missing'}\n`);
}
