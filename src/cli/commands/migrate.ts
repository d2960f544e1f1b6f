// `cloudlet migrate CONTAINER --from A --to B`: starts a live migration on the source
// cloudlet and follows it (progress on stderr), then prints the report (a table, or --json).
import { Option, type Command } from 'commander';
import { UsageError } from '../../util/errors.js';
import { HANDOFF_STRATEGIES, type HandoffStrategy, type MigrationReport } from '../../migration/types.js';
import type { MigrationPlan } from '../../migration/source.js';
import type { StartMigrationBody } from '../../daemon/routes-migrations.js';
import { action, printJson, printTable, progress } from '../output.js';
import { resolveNode, type GlobalOptions } from '../nodes.js';

interface MigrateOptions extends GlobalOptions {
  from: string;
  to: string;
  rounds?: string;
  alpha?: string;
  rule?: string;
  maxDowntime?: string;
  maxRounds?: string;
  maxTime?: string;
  maxTotal?: string;
  force?: boolean;
  codec?: string;
  inject?: string;
  precopy?: string;
  strategy?: string;
  restore?: string;
  /** Commander's negated --no-page-cache: false when given. */
  pageCache?: boolean;
  tcpClose?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/** "1s", "1500ms", "1.5" (seconds) -> milliseconds. */
export function parseDuration(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new UsageError(`${option}: invalid duration '${text}'`, { hint: 'use e.g. 1s, 800ms, 2m' });
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

function parseIntOption(text: string, option: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`${option} must be a non-negative integer (got '${text}')`);
  return Number(text);
}

export function migrationBody(container: string, o: MigrateOptions): StartMigrationBody {
  const body: StartMigrationBody = { container, to: o.to };
  if (o.rounds !== undefined) body.rounds = parseIntOption(o.rounds, '--rounds');
  if (o.alpha !== undefined) body.alpha = parseDuration(o.alpha, '--alpha') / 1000;
  if (o.rule !== undefined) body.rule = o.rule as StartMigrationBody['rule'];
  if (o.maxDowntime !== undefined) body.maxDowntimeMs = parseDuration(o.maxDowntime, '--max-downtime');
  if (o.maxRounds !== undefined) body.maxRounds = parseIntOption(o.maxRounds, '--max-rounds');
  if (o.maxTime !== undefined) body.maxTimeMs = parseDuration(o.maxTime, '--max-time');
  if (o.maxTotal !== undefined) body.maxTotalMs = parseDuration(o.maxTotal, '--max-total');
  if (o.force) body.force = true;
  if (o.codec !== undefined) body.codec = o.codec as StartMigrationBody['codec'];
  if (o.precopy !== undefined) body.precopy = o.precopy as StartMigrationBody['precopy'];
  if (o.inject !== undefined) body.inject = o.inject as StartMigrationBody['inject'];
  if (o.strategy !== undefined) {
    if (!(HANDOFF_STRATEGIES as readonly string[]).includes(o.strategy))
      throw new UsageError(`--strategy must be one of ${HANDOFF_STRATEGIES.join(', ')} (got '${o.strategy}')`);
    body.strategy = o.strategy as HandoffStrategy;
  }
  if (o.restore !== undefined) {
    if (o.restore !== 'lazy' && o.restore !== 'eager' && o.restore !== 'auto')
      throw new UsageError(`--restore must be lazy, eager or auto (got '${o.restore}')`);
    body.restore = o.restore;
  }
  if (o.pageCache === false) body.pageCache = false;
  if (o.tcpClose) body.tcpClose = true;
  return body;
}

const mb = (b: number) => (b / 1e6).toFixed(2);

/** The model's last prediction before the freeze against the user's bounds. */
export function objectiveLine(o: NonNullable<MigrationReport['objective']>): string {
  const figure = (ms: number | null, unit: 'ms' | 's') => (ms === null ? '-' : unit === 'ms' ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);
  const verdict = o.unmet === 'refuse' ? ': neither bound can be met, refused' : o.unmet === 'forced' ? ': neither bound can be met, gone on (--force)' : '';
  return (
    `predicted before the freeze: downtime ${figure(o.predictedDowntimeMs, 'ms')} (--max-downtime ${o.maxDowntimeMs} ms), ` +
    `total ${figure(o.predictedTotalMs, 's')}${o.maxTotalMs === null ? '' : ` (--max-total ${figure(o.maxTotalMs, 's')})`}${verdict}\n`
  );
}

export function printReport(r: MigrationReport): void {
  printTable(
    r.rounds.map((x) => ({
      round: x.final ? `${x.index} (final)` : x.index,
      dump_ms: x.dumpMs,
      stall_ms: x.stallMs,
      pages: `${x.pagesChanged}/${x.pagesScanned}`,
      raw_mb: mb(x.rawBytes),
      sent_mb: mb(x.sentBytes),
      codec: x.codec,
      send_ms: x.sendMs,
      mbit_s: (x.bandwidthBps / 1e6).toFixed(1),
      apply_ms: x.applyMs,
    })),
    ['round', 'dump_ms', 'stall_ms', 'pages', 'raw_mb', 'sent_mb', 'codec', 'send_ms', 'mbit_s', 'apply_ms'],
  );
  process.stdout.write(
    `\n${r.container}: ${r.from} -> ${r.to}  ${r.state}\n` +
      `total ${r.totalMs} ms, downtime ${r.downtimeMs ?? '-'} ms (restore ${r.restoreMs ?? '-'} ms${(r.postCopyMs ?? null) !== null ? `, lazy: last page in ${r.postCopyMs} ms after` : ''}), ` +
      `${mb(r.bytesSent)} MB sent, ${r.precopyRounds} pre-copy round(s), stopped by: ${r.stopReason ?? '-'}\n` +
      `policy: ${r.policy}\n`,
  );
  if (r.objective) process.stdout.write(objectiveLine(r.objective));
  if (r.strategy) process.stdout.write(`strategy: ${r.strategyReason ?? r.strategy}\n`);
  if (r.recreate) {
    const x = r.recreate;
    process.stdout.write(
      `recreate: volumes ${x.volumes.join(', ') || '-'} synced in ${x.volumeSyncMs} ms (${mb(x.volumeBytes)} MB); create ${x.createMs} ms, start ${x.startMs} ms, ` +
        `healthy after ${x.healthyMs} ms (${x.healthChecks} checks of ${x.health}); route switch ${r.announceMs ?? '-'} ms; ` +
        `${x.drainedConnections ?? '-'} connection(s) drained to the old instance for ${x.drainMs ?? '-'} ms, then it was removed in ${x.removeOldMs ?? '-'} ms\n`,
    );
  }
  if (r.pageCache) {
    const c = r.pageCache;
    process.stdout.write(
      `page cache: ${c.offeredPages === null ? 'none at the destination' : `${c.offeredPages} page(s) offered by the destination, ${c.pagesFromCache} not sent`}` +
        `${c.keptPages === null ? '' : `; ${c.keptPages} sent page(s) kept here (${c.keepMs} ms)`}\n`,
    );
  }
  if (r.tcpClose) {
    const c = r.tcpClose;
    process.stdout.write(`--tcp-close: ${c.atPrepare} connection(s) at prepare; ${c.reset} reset before the freeze (${c.ms} ms); clients reconnect\n`);
  }
  if (r.imageShipped) {
    process.stdout.write(`image shipped: ${mb(r.imageShipped.bytes)} MB, ${r.imageShipped.layers} layer(s), ${r.imageShipped.ms} ms (in the total)\n`);
  }
  if (r.error) process.stdout.write(`error: ${r.error.message}\n`);
}

/** The dry run's plan as a reader wants it: what would happen, then what would refuse it. */
export function planText(p: MigrationPlan): string {
  const net = p.network;
  const lines = [
    `${p.container}: ${p.from} -> ${p.to}, dry run: ${p.ok ? 'would start' : `would be REFUSED before the freeze (${p.refusals.length} reason(s))`}`,
    `strategy: ${p.strategy} (${p.strategyReason})`,
    `network: ${net.mode}${net.netnsHolder ? ` in holder ${net.netnsHolder}` : ''}, address ${net.serviceAddress ?? 'not kept'}, ` +
      `${net.establishedTcp} established TCP connection(s)${net.connectionsClosed ? ' reset before the freeze (--tcp-close)' : net.establishedTcp > 0 ? (net.connectionsKept ? ' kept' : ' NOT kept') : ''}`,
    `memory: ${p.memoryBytes === null ? '?' : `${mb(p.memoryBytes)} MB`}, restore ${p.restore}; ${p.policy}; first call: ${p.decision}`,
    `image: ${p.image.name} ${p.image.atDestination === null ? '' : p.image.atDestination ? '(at the destination)' : '(to be shipped)'}; volumes: ${p.volumes.join(', ') || '-'}`,
    `destination engine: ${p.destinationEngine ?? '-'}`,
    ...p.warnings.map((w) => `note: ${w}`),
    ...p.refusals.map((r) => `refused: ${r.message}${r.hint ? `\n  hint: ${r.hint}` : ''}`),
  ];
  return lines.join('\n') + '\n';
}

/** `--dry-run`: the source's plan (POST /v1/migrations/plan); exit 1 when it would be refused. */
async function dryRun(container: string, o: MigrateOptions): Promise<number> {
  const node = await resolveNode(o.from, o);
  const plan = await node.client.post<MigrationPlan>('/v1/migrations/plan', migrationBody(container, o));
  if (o.json) printJson(plan);
  else process.stdout.write(planText(plan));
  return plan.ok ? 0 : 1;
}

/** Starts the migration on the source and follows it (progress on stderr) to its report; exit 1 unless done. */
async function startAndFollow(container: string, o: MigrateOptions): Promise<number> {
  const node = await resolveNode(o.from, o);
  const started = await node.client.post<MigrationReport>('/v1/migrations', migrationBody(container, o));
  if (!o.json) progress(`migration ${started.id}: ${started.container} ${started.from} -> ${started.to}`);
  let seen = 0;
  let last = started;
  // Poll the source for progress: bounded by the migration's own --max-time plus slack.
  const deadline = Date.now() + parseDuration(o.maxTime ?? '5m', '--max-time') + 10 * 60_000;
  while (!last.finishedAt) {
    if (Date.now() > deadline) throw new UsageError(`migration ${started.id} did not finish in time; see \`cloudlet migrations --node ${o.from}\``);
    await new Promise((r) => setTimeout(r, 250));
    last = await node.client.get<MigrationReport>(`/v1/migrations/${started.id}`);
    if (!o.json) {
      for (; seen < last.rounds.length; seen++) {
        const x = last.rounds[seen]!;
        progress(
          `  round ${x.index}${x.final ? ' (final)' : ''}: ${x.pagesChanged} pages, ${mb(x.sentBytes)} MB sent in ${x.sendMs} ms` +
            ` (${x.codec}, ${(x.bandwidthBps / 1e6).toFixed(1)} Mbit/s), stall ${x.stallMs} ms` +
            (x.decision ? ` - ${x.decision}` : ''),
        );
      }
    }
  }
  if (o.json) printJson(last);
  else printReport(last);
  return last.state === 'done' ? 0 : 1;
}

export function registerMigrateCommand(program: Command): void {
  program
    .command('migrate')
    .description('live-migrate a running container from one cloudlet to another')
    .argument('<container>', 'container name or id on the source cloudlet')
    .requiredOption('--from <node>', 'source cloudlet')
    .requiredOption('--to <node>', 'destination cloudlet')
    .option('--rounds <n>', 'force exactly N pre-copy rounds (0 = stop-and-copy)')
    .option('--alpha <seconds>', 'classic rule: stop pre-copy when a round sent in less than alpha')
    .option('--rule <name>', 'stop rule: model (default), alpha, rounds, phaul, lxd')
    .option(
      '--max-downtime <duration>',
      'model rule: downtime bound; refused before the freeze when it cannot be met, unless --force (without it: a 1s target, a miss is told)',
    )
    .option('--max-rounds <n>', 'upper bound on pre-copy rounds', '8')
    .option('--max-time <duration>', 'upper bound on the pre-copy phase', '5m')
    .option('--max-total <duration>', 'model rule: bound on the whole handoff; when --max-downtime cannot be met within it, refuse before the freeze')
    .option('--force', 'model rule: hand off even when --max-downtime or --max-total cannot be met')
    .option('--codec <codec>', 'lz4, zstd, gzip, none or auto (per round, from link and data)', 'auto')
    .option('--precopy <how>', 'pre-copy capture: scan (read /proc, no freeze) or dump (CRIU --leave-running)', 'scan')
    .option('--strategy <name>', "migrate, recreate or auto (default: the service's declared handoff)")
    .option(
      '--restore <mode>',
      'lazy (post-copy, where the destination is configured for it), eager (every page in before the service runs) or auto: lazy from 128 MiB of memory',
      'auto',
    )
    .option('--no-page-cache', "send every page, even those the destination's page cache holds (baselines)")
    .option('--tcp-close', 'no service address: reset its TCP connections just before the freeze instead of refusing (clients must reconnect)')
    .option('--dry-run', 'say what the handoff would do and every reason it would be refused; start nothing (exit 1 if refused)')
    .option('--json', 'print the report as JSON')
    .addOption(new Option('--inject <point>', 'test hook: make the destination fail (lab only)').hideHelp())
    .action(
      action(async (container: string, _opts: unknown, cmd: Command) => {
        const o = cmd.optsWithGlobals<MigrateOptions>();
        if (o.dryRun) return dryRun(container, o);
        return startAndFollow(container, o);
      }),
    );

  registerMigrationsCommand(program);
}

function registerMigrationsCommand(program: Command): void {
  program
    .command('migrations')
    .description('list the migrations a cloudlet started')
    .requiredOption('--node <name>', 'source cloudlet')
    .option('--json', 'print JSON')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const o = cmd.optsWithGlobals<GlobalOptions & { node: string; json?: boolean }>();
        const node = await resolveNode(o.node, o);
        const list = await node.client.get<MigrationReport[]>('/v1/migrations');
        if (o.json) return printJson(list);
        printTable(
          list.map((m) => ({
            id: m.id,
            container: m.container,
            to: m.to,
            state: m.state,
            total_ms: m.totalMs,
            downtime_ms: m.downtimeMs,
            started: m.startedAt,
          })),
          ['id', 'container', 'to', 'state', 'total_ms', 'downtime_ms', 'started'],
        );
      }),
    );
}
