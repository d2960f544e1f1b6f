// `cloudlet bench ...`: benchmarks on the lab, printing measured figures and the ratios
// against baselines measured in the same run.
import { copyFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import { runMigrateBench, type MigrateBenchOptions } from '../../bench/migrate.js';
import { runMigrateBenchOnEngines } from '../../bench/migrate-engines.js';
import { runSweepBench, sweepMarkdown } from '../../bench/sweep.js';
import { parseDuration } from './migrate.js';
import { parseEngineKind } from '../../lab/engines.js';
import { migrateBenchMarkdown, migrateBenchText } from '../../bench/migrate-report.js';
import { runOverlayBench, type OverlayBenchResult } from '../../bench/overlay.js';
import { runOverlayBenchOnEngines } from '../../bench/overlay-engines.js';
import { runHandoffBench, DIRECT_WINDOW } from '../../bench/handoff.js';
import { handoffReportText } from '../../bench/handoff-report.js';
import { runBenchAll } from '../../bench/all/run.js';
import { runFaultMatrix, SCENARIOS as FAULT_SCENARIOS } from '../../bench/faults.js';
import { runLoad } from '../../bench/faults-load.js';
import { labDir } from '../../lab/state.js';
import { comparisons, fmt, readResults, writeReport } from '../../bench/all/report.js';
import { parseCodec } from '../../transfer/codecs.js';
import { runAppsBench } from '../../bench/apps/run.js';
import { APPS } from '../../bench/apps/index.js';
import { appsMarkdown } from '../../bench/apps/report.js';
import { runSecurityBench, securityRows, SECURITY_COLUMNS } from '../../bench/security/run.js';
import { writeFile } from 'node:fs/promises';
import { action, printJson, printTable, progress, requireRoot } from '../output.js';

export function registerBenchCommands(program: Command): void {
  const bench = program.command('bench').description('benchmarks on the lab (a lab is brought up if none is)');
  registerBenchAll(bench);
  registerBenchReport(bench);
  registerBenchApps(bench);
  registerBenchMigrate(bench);
  registerBenchSweep(bench);
  registerBenchHandoff(bench);
  registerBenchFaults(bench);
  registerBenchOverlay(bench);
  registerBenchSecurity(bench);
}

function registerBenchAll(bench: Command): void {
  bench
    .command('all')
    .description(
      'the whole evaluation (overlay, compression, pre-copy rounds, alpha, bandwidth sweep, decision models): DIR/results.json, CSV, charts/*.svg, REPORT.md',
    )
    .requiredOption('--out <dir>', 'directory for the results and the report')
    .option('--quick', 'fewer repetitions, bandwidths and memory (< 20 min; the report lists what it drops)')
    .option('--json', 'print results.json on stdout')
    .action(
      action(async (opts: { out: string; quick?: boolean; json?: boolean }) => {
        requireRoot('benchmarks on the lab');
        const command = `cloudlet ${process.argv.slice(2).join(' ')}`;
        const r = await runBenchAll({ out: opts.out, quick: Boolean(opts.quick), command, progress });
        if (opts.json) return printJson(r);
        process.stdout.write(`${opts.out}/REPORT.md written (${(r.wallMs / 60000).toFixed(1)} min)\n\n`);
        printTable(
          comparisons(r).map((c) => ({
            figure: c.what,
            ours: `${fmt(c.ours)} ${c.unit}`,
            published: c.published,
            ratio: c.ours ? (c.ours.median / c.publishedValue).toFixed(2) : '-',
          })),
          ['figure', 'ours', 'published', 'ratio'],
        );
        return 0;
      }),
    );
}

function registerBenchReport(bench: Command): void {
  bench
    .command('report')
    .description('re-render a `bench all` report (REPORT.md, CSV, charts) from its results.json')
    .requiredOption('--from <file>', 'results.json of a `bench all` run')
    .requiredOption('--out <dir>', 'directory to write into')
    .action(
      action(async (opts: { from: string; out: string }) => {
        const written = await writeReport(await readResults(opts.from), opts.out);
        // The report links results.json: keep the data beside it.
        if (resolve(opts.from) !== resolve(opts.out, 'results.json')) {
          await copyFile(opts.from, join(opts.out, 'results.json'));
          written.push('results.json');
        }
        process.stdout.write(written.map((f) => `${opts.out}/${f}`).join('\n') + '\n');
        return 0;
      }),
    );
}

function registerBenchApps(bench: Command): void {
  bench
    .command('apps')
    .description(
      "real programs (python3, nginx, PostgreSQL 15, Node.js) from the host's packages, each handed off a -> b under its own client: state checksum, failed operations, client gap, downtime",
    )
    .option('--only <names>', `comma-separated apps to run (of: ${APPS.map((a) => a.name).join(', ')})`)
    .option('--out <file>', 'write the results JSON to this file')
    .option('--markdown <file>', 'write the Markdown report (as docs/results/apps.md) to this file')
    .option(
      '--userns-remap',
      'on a lab whose engines run with userns-remap (brought up when none is; a lab without it is refused): each app in its own network namespace',
    )
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { only?: string; out?: string; markdown?: string; json?: boolean; usernsRemap?: boolean }) => {
        requireRoot('benchmarks on the lab');
        const names = opts.only?.split(',').map((s) => s.trim()) ?? APPS.map((a) => a.name);
        const unknown = names.filter((n) => !APPS.some((a) => a.name === n));
        if (unknown.length > 0 || names.length === 0)
          throw new UsageError(`--only: no app named ${unknown.join(', ') || '(none)'}`, { hint: `apps: ${APPS.map((a) => a.name).join(', ')}` });
        const command = `cloudlet ${process.argv.slice(2).join(' ')}`;
        const r = await runAppsBench({ apps: APPS.filter((a) => names.includes(a.name)), command, progress, usernsRemap: opts.usernsRemap === true });
        if (opts.out) await writeFile(opts.out, JSON.stringify(r, null, 2) + '\n');
        if (opts.markdown) await writeFile(opts.markdown, appsMarkdown(r, opts.out ?? '(not written)'));
        if (opts.json) printJson(r);
        else
          printTable(
            r.apps.map((a) => ({
              app: a.name,
              ok: a.ok,
              stateOk: a.stateOk,
              failedOps: a.failedOps,
              ops: a.ops,
              clientGapMs: a.clientGapMs,
              downtimeMs: a.downtimeMs,
              xCounter: a.downtimeVsCounter.ratio ?? '-',
              failure: a.failure ?? '',
            })),
            ['app', 'ok', 'stateOk', 'failedOps', 'ops', 'clientGapMs', 'downtimeMs', 'xCounter', 'failure'],
          );
        if (!opts.json)
          process.stdout.write(
            `reference (${r.reference.workload}): downtime ${r.reference.downtimeMs ?? '-'} ms${r.reference.error ? `, FAILED: ${r.reference.error}` : ''}\n`,
          );
        return r.allOk && r.targetsMet ? 0 : 1;
      }),
    );
}

interface BenchMigrateFlags {
  stateMb: string;
  dirty: string;
  repeat: string;
  engine?: string;
  /** Commander's negated --no-page-cache-scenarios. */
  pageCacheScenarios?: boolean;
  json?: boolean;
  markdown?: boolean;
}

/** The flags a benchmark's service takes: memory, dirty rate, repetitions (at most maxRepeat). */
function serviceFlags(opts: { stateMb: string; dirty: string; repeat: string }, maxRepeat: number): { stateMb: number; dirty: number; repeat: number } {
  const stateMb = Number(opts.stateMb);
  const dirty = Number(opts.dirty);
  const repeat = Number(opts.repeat);
  if (!(Number.isInteger(stateMb) && stateMb >= 1 && stateMb <= 4096)) throw new UsageError(`--state-mb must be 1..4096 (got ${opts.stateMb})`);
  if (!(Number.isInteger(dirty) && dirty >= 0)) throw new UsageError(`--dirty must be a non-negative integer (got ${opts.dirty})`);
  if (!(/^\d+$/.test(opts.repeat) && repeat >= 1 && repeat <= maxRepeat)) throw new UsageError(`--repeat must be 1..${maxRepeat} (got ${opts.repeat})`);
  return { stateMb, dirty, repeat };
}

function benchMigrateOptions(opts: BenchMigrateFlags): MigrateBenchOptions {
  const { stateMb, dirty, repeat } = serviceFlags(opts, 100);
  return {
    stateMb,
    dirtyPagesPerSec: dirty,
    repeat,
    pageCacheScenarios: opts.pageCacheScenarios !== false,
    command: `cloudlet ${process.argv.slice(2).join(' ')}`,
    progress,
  };
}

function registerBenchMigrate(bench: Command): void {
  bench
    .command('migrate')
    .description(
      'handoff figures under a client: busybox counter, and a large-memory service (its client reading pages over all its memory) against stop-and-copy',
    )
    .option('--state-mb <n>', 'memory state of the service (MiB)', '256')
    .option('--dirty <pages>', 'pages per second the service dirties', '100')
    .option('--repeat <n>', 'handoffs per workload under its client, alternating a -> b, b -> a...; per-run figures and their median, p95, min-max', '1')
    .option('--engine <kinds>', 'run the bench once per engine kind on labs of its own, e.g. docker20,docker28 (no lab may be up)')
    .option('--no-page-cache-scenarios', 'skip the page cache scenarios (same image at the destination, return handoff)')
    .option('--json', 'print JSON')
    .option('--markdown', 'print the Markdown report (as in docs/results/migration.md)')
    .action(
      action(async (opts: BenchMigrateFlags) => {
        requireRoot('benchmarks on the lab');
        const o = benchMigrateOptions(opts);
        const engines = opts.engine?.split(',').map((k) => parseEngineKind(k.trim(), '--engine'));
        const r = engines ? await runMigrateBenchOnEngines({ ...o, engines }) : await runMigrateBench(o);
        const results = r.bench === 'migrate-engines' ? r.engines : [r];
        if (opts.json) printJson(r);
        else if (opts.markdown) process.stdout.write(results.map((x) => migrateBenchMarkdown(x, `sudo ${o.command}`)).join('\n'));
        else process.stdout.write(results.map(migrateBenchText).join('\n'));
        return 0;
      }),
    );
}

interface BenchSweepFlags {
  mbits: string;
  stateMb: string;
  dirty: string;
  maxDowntime: string;
  repeat: string;
  json?: boolean;
  markdown?: boolean;
}

function registerBenchSweep(bench: Command): void {
  bench
    .command('sweep')
    .description('slow links with a stated --max-downtime: each handoff meets it or is refused before the freeze; totals against the wire limit')
    .option('--mbits <list>', 'link bandwidths, Mbit/s', '5,10')
    .option('--state-mb <n>', 'memory state of the random-state service (MiB)', '64')
    .option('--dirty <pages>', 'pages per second the service dirties', '100')
    .option('--max-downtime <duration>', 'the downtime bound every handoff states', '1s')
    .option('--repeat <n>', 'sweeps', '1')
    .option('--json', 'print JSON')
    .option('--markdown', 'print the Markdown table')
    .action(
      action(async (opts: BenchSweepFlags) => {
        requireRoot('benchmarks on the lab');
        const mbits = opts.mbits.split(',').map((x) => Number(x.trim()));
        if (mbits.length === 0 || !mbits.every((m) => Number.isFinite(m) && m > 0 && m <= 10_000))
          throw new UsageError(`--mbits must list bandwidths in Mbit/s (got '${opts.mbits}')`);
        const { stateMb, dirty, repeat } = serviceFlags(opts, 20);
        const r = await runSweepBench({
          mbits,
          stateMb,
          dirtyPagesPerSec: dirty,
          maxDowntimeMs: parseDuration(opts.maxDowntime, '--max-downtime'),
          repeat,
          command: `cloudlet ${process.argv.slice(2).join(' ')}`,
          progress,
        });
        if (opts.json) printJson(r);
        else process.stdout.write(sweepMarkdown(r));
        return r.allTargetsMet ? 0 : 1;
      }),
    );
}

function registerBenchHandoff(bench: Command): void {
  bench
    .command('handoff')
    .description(
      'network handoff as the user sees it: a client keeps TCP and HTTP keep-alive sessions through a live migration, and through a walk from cell a to cell b',
    )
    .option('--scenario <name>', 'direct, mobility, all (= direct + mobility) or strategies (migrate vs recreate of a stateless HTTP service)', 'all')
    .option('--interval <ms>', 'a client request every (per session)', '20')
    .option('--netns-holder', 'direct and mobility: run the service in a network namespace holder (cloudlet run --netns-holder)')
    .option('--repeat <n>', 'direct: n live migrations under one client, alternating a -> b, b -> a...; per-run figures and their median, p95, min-max')
    .option('--window <n>', 'direct: TCP requests in flight at most', String(DIRECT_WINDOW))
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { scenario: string; interval: string; netnsHolder?: boolean; repeat?: string; window: string; json?: boolean }) => {
        requireRoot('benchmarks on the lab');
        const scenarios = opts.scenario === 'all' ? (['direct', 'mobility'] as const) : [opts.scenario];
        for (const s of scenarios) {
          if (s !== 'direct' && s !== 'mobility' && s !== 'strategies')
            throw new UsageError(`--scenario must be direct, mobility, all or strategies (got ${opts.scenario})`);
        }
        const intervalMs = Number(opts.interval);
        if (!(Number.isInteger(intervalMs) && intervalMs >= 5 && intervalMs <= 10_000))
          throw new UsageError(`--interval must be 5..10000 ms (got ${opts.interval})`);
        const repeat = opts.repeat === undefined ? undefined : Number(opts.repeat);
        if (repeat !== undefined && !(/^\d+$/.test(opts.repeat!) && repeat >= 1 && repeat <= 1000))
          throw new UsageError(`--repeat must be 1..1000 (got ${opts.repeat})`);
        if (repeat !== undefined && !scenarios.includes('direct'))
          throw new UsageError('--repeat applies to the direct scenario', { hint: '--scenario direct (or all)' });
        const window = Number(opts.window);
        if (!(/^\d+$/.test(opts.window) && window >= 1 && window <= 1000)) throw new UsageError(`--window must be 1..1000 (got ${opts.window})`);
        const r = await runHandoffBench({
          scenarios: scenarios as ('direct' | 'mobility' | 'strategies')[],
          intervalMs,
          progress,
          netnsHolder: opts.netnsHolder === true,
          ...(repeat !== undefined ? { repeat } : {}),
          window,
          command: `cloudlet ${process.argv.slice(2).join(' ')}`,
        });
        if (opts.json) printJson(r);
        else process.stdout.write(handoffReportText(r));
        const keptOk = r.direct || r.mobility ? r.tcpConnectionSurvived && r.httpKeepAliveSurvived && r.messagesLost === 0 : true;
        // strategies: a recreate must not fail a single new connection's request.
        const recreateOk = (r.strategies?.runs ?? []).every((x) => x.strategy !== 'recreate' || x.failed === 0);
        return keptOk && recreateOk ? 0 : 1;
      }),
    );
}

function registerBenchFaults(bench: Command): void {
  bench
    .command('faults')
    .description('fault matrix on the lab: per scenario, is the service running exactly once, its state intact, anything left behind, the error reported')
    .option('--only <list>', `comma-separated scenarios (${FAULT_SCENARIOS.map((s) => s.name).join(', ')})`)
    .option('--load', 'instead: ten concurrent provisionings and migrations across three cloudlets')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { only?: string; load?: boolean; json?: boolean }) => {
        requireRoot('fault injection on the lab');
        if (opts.load) {
          const l = await runLoad(labDir(), progress);
          if (opts.json) printJson(l);
          else {
            printTable(
              l.operations.map((o) => ({
                op: o.kind,
                container: o.container,
                node: o.to ? `${o.node}->${o.to}` : o.node,
                ok: o.ok ? 'yes' : 'NO',
                ms: o.ms,
                error: (o.error ?? '-').slice(0, 90),
              })),
              ['op', 'container', 'node', 'ok', 'ms', 'error'],
            );
            process.stdout.write(`\nconcurrent phase ${l.wallMs} ms; placements ${l.placementsOk ? 'ok' : 'WRONG'}; leftovers ${l.leftovers.length}\n`);
          }
          return l.allCompleted && l.placementsOk && l.leftovers.length === 0 ? 0 : 1;
        }
        const only = opts.only
          ? opts.only
              .split(',')
              .map((x) => x.trim())
              .filter(Boolean)
          : undefined;
        const r = await runFaultMatrix(labDir(), { ...(only ? { only } : {}), progress });
        if (opts.json) printJson(r);
        else {
          printTable(
            r.scenarios.map((s) => ({
              scenario: s.name,
              outcome: s.outcome ?? '-',
              exactly_once: s.serviceRunningExactlyOnce ? 'yes' : 'NO',
              state_intact: s.stateIntact ? 'yes' : 'NO',
              leftovers: s.leftovers.length,
              s: (s.ms / 1000).toFixed(1),
              pass: s.passed ? 'yes' : 'NO',
              error: (s.error ?? '-').slice(0, 90),
            })),
            ['scenario', 'outcome', 'exactly_once', 'state_intact', 'leftovers', 's', 'pass', 'error'],
          );
        }
        return r.failed === 0 ? 0 : 1;
      }),
    );
}

function registerBenchOverlay(bench: Command): void {
  bench
    .command('overlay')
    .description('overlays: create on a, push to b over the lab link, synthesize and start on b; against the 2016 method and whole-image shipping')
    .option('--codecs <list>', 'codecs to measure, the first is the headline', 'lz4,zstd,gzip,none')
    .option('--workloads <list>', 'large (~200 MB of app files), small (~2 MB)', 'large,small')
    .option('--engine <kinds>', 'run the bench once per engine kind on labs of its own, e.g. docker20,docker28,docker28-containerd (no lab may be up)')
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { codecs: string; workloads: string; engine?: string; json?: boolean }) => {
        requireRoot('benchmarks on the lab');
        const codecs = opts.codecs.split(',').map((c) => parseCodec(c.trim()));
        const workloads = opts.workloads.split(',').map((w) => w.trim());
        for (const w of workloads) if (w !== 'large' && w !== 'small') throw new UsageError(`--workloads: unknown workload '${w}' (large, small)`);
        if (codecs.length === 0 || workloads.length === 0) throw new UsageError('--codecs and --workloads need at least one entry');
        const o = { codecs, workloads: workloads as ('large' | 'small')[], progress };
        if (opts.engine !== undefined) {
          const engines = opts.engine.split(',').map((k) => parseEngineKind(k.trim(), '--engine'));
          const command = `cloudlet bench overlay --engine ${engines.join(',')} --codecs ${codecs.join(',')} --workloads ${workloads.join(',')}${opts.json ? ' --json' : ''}`;
          const all = await runOverlayBenchOnEngines({ ...o, engines, command });
          if (opts.json) return printJson(all);
          for (const r of all.engines) printOverlayBench(r);
          return 0;
        }
        const r = await runOverlayBench(o);
        if (opts.json) return printJson(r);
        printOverlayBench(r);
        return r.workloads.every((w) => w.imageIdMatches) ? 0 : 1;
      }),
    );
}

function registerBenchSecurity(bench: Command): void {
  bench
    .command('security')
    .description(
      'a hostile peer and operator against a victim cloudletd (mutual TLS, default policy) on loopback: each attack must be refused, host stand-ins unchanged',
    )
    .option('--json', 'print JSON')
    .action(
      action(async (opts: { json?: boolean }) => {
        requireRoot('the security bench (setfattr security.*, rsync as root)');
        const r = await runSecurityBench({ progress });
        if (opts.json) printJson(r);
        else {
          printTable(securityRows(r), SECURITY_COLUMNS);
          for (const a of r.attacks.filter((x) => !x.refused || x.hostChanged)) process.stdout.write(`FAILED ${a.name}: ${a.note}\n`);
          process.stdout.write(`victim still up: ${r.victimUp}; ${r.ok ? 'all refused, nothing changed' : 'NOT all refused'}\n`);
        }
        return r.ok ? 0 : 1;
      }),
    );
}

/** The overlay bench's tables (one engine). */
function printOverlayBench(r: OverlayBenchResult): void {
  process.stdout.write(`engine ${r.engine.kind} (Docker ${r.engine.version}, ${r.engine.imageStore} image store)\n`);
  const mb = (b: number) => (b / 1e6).toFixed(2);
  process.stdout.write(`link ${r.link.bandwidth} / ${r.link.latency}; ${r.machine.cores} cores, kernel ${r.machine.kernel}\n\n`);
  printTable(
    r.workloads.flatMap((w) =>
      w.codecs.map((c) => ({
        workload: w.name,
        codec: c.codec,
        app_mb: mb(w.appBytes),
        overlay_raw_mb: mb(c.overlayRawBytes),
        overlay_mb: mb(c.overlayBytes),
        create_ms: c.createMs,
        push_ms: c.pushMs,
        synth_ms: c.synthesisMs,
        start_ms: c.createContainerMs + c.startMs,
        first_request_ms: c.firstRequestMs,
        id_ok: c.imageIdMatches ? 'yes' : 'NO',
      })),
    ),
    ['workload', 'codec', 'app_mb', 'overlay_raw_mb', 'overlay_mb', 'create_ms', 'push_ms', 'synth_ms', 'start_ms', 'first_request_ms', 'id_ok'],
  );
  process.stdout.write('\n');
  printTable(
    r.workloads.map((w) => ({
      workload: w.name,
      synth_ms: w.synthesisMs,
      prototype_synth_ms: w.baselinePrototypeSynthesisMs,
      speedup: `${w.synthesisSpeedup}x`,
      full_image_mb: mb(w.fullImageBytes),
      full_image_ms: w.baselines.fullImage.totalMs,
      '2016': w.name === 'large' ? '69 MB / ~18 s' : '0.69 MB / ~4 s',
    })),
    ['workload', 'synth_ms', 'prototype_synth_ms', 'speedup', 'full_image_mb', 'full_image_ms', '2016'],
  );
}
