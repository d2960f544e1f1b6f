// `cloudlet bench faults`: the fault matrix. Each scenario starts a service on cloudlet a,
// migrates it to b while a fault strikes (a cut or slowed link, a killed engine or daemon, a
// full disk, a damaged frame, a second start, a wrong token), and then checks, on the real
// lab, what the product promises: the service runs in exactly one place and answers, its
// state is intact (checksums of its memory and of a file of its R/W layer), nothing is left
// behind (containers, images, volumes, staging and checkpoint directories), and the
// migration's report carries a clear error. test/integration/faults.test.ts runs the same
// scenario functions.
import { setLink } from '../lab/lab.js';
import { ApiClient, OPERATOR_TIMEOUT_MS } from '../api/client/client.js';
import os from 'node:os';
import { ApiError, CloudletError, UsageError, errorMessage } from '../util/errors.js';
import type { LabState } from '../lab/state.js';
import type { MigrationReport, MigrationState } from '../migration/types.js';
import type { IncomingStatus } from '../migration/destination.js';
import type { StartMigrationBody } from '../daemon/routes-migrations.js';
import {
  cloudletOf,
  cutLink,
  freshState,
  killDaemon,
  killEngine,
  restartDaemon,
  restartEngine,
  restoreLink,
  restoreScratch,
  shrinkScratch,
} from './faults-lab.js';
import { engineOf, inventory, leftovers, placement, readState, removeEverywhere, startService, type ServiceSpec, type ServiceState } from './faults-check.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every scenario migrates from SRC to DST. */
const SRC = 'a';
const DST = 'b';
/**
 * A cut link is noticed by the migration's peer timeout, while the link is still down: the
 * link comes back only once the migration is rolling back (its first clean-up attempts at
 * the destination fail, later ones must succeed), or after CUT_MAX_MS (the scenario fails).
 */
const CUT_PEER_TIMEOUT_MS = 15_000;
const CUT_MAX_MS = 90_000;
const CUT_AFTER_NOTICE_MS = 5_000;

/** Cuts the destination's link until the migration has noticed (see CUT_MAX_MS); returns notes. */
async function cutUntilNoticed(ctx: Ctx, id: string): Promise<string[]> {
  cutLink(ctx.state(), DST);
  const t0 = Date.now();
  try {
    const r = await waitMigration(ctx, id, (x) => x.state === 'rolling-back' || x.finishedAt !== null, CUT_MAX_MS);
    const notes = [`the migration noticed the cut after ${((Date.now() - t0) / 1000).toFixed(1)} s (state ${r.state})`];
    await sleep(CUT_AFTER_NOTICE_MS);
    return notes;
  } catch (err) {
    throw new CloudletError('cut_not_noticed', `the migration did not notice the cut link within ${CUT_MAX_MS / 1000} s: ${errorMessage(err)}`, {
      kind: 'deadline-exceeded',
    });
  } finally {
    restoreLink(ctx.state(), DST);
  }
}
/** Bound of one scenario (the machine may be slow and shared). */
const SCENARIO_TIMEOUT_MS = 8 * 60_000;

export interface FaultScenarioResult {
  name: string;
  fault: string;
  /** The migration's final state, 'refused' when the fault is a refused request. */
  outcome: MigrationState | 'refused' | null;
  expected: readonly string[];
  runningOn: string[];
  serviceRunningExactlyOnce: boolean;
  answering: boolean;
  stateIntact: boolean;
  leftovers: string[];
  /** The error of the migration's report (or the refusal's message). */
  error: string | null;
  /** The error says what happened (matches the scenario's pattern). */
  errorClear: boolean;
  passed: boolean;
  ms: number;
  notes: string[];
}

interface ActResult {
  outcome: MigrationState | 'refused' | null;
  error: string | null;
  notes: string[];
}

interface Scenario {
  name: string;
  fault: string;
  service: ServiceSpec;
  expected: readonly (MigrationState | 'refused')[];
  /** What the error must say; null: no error required (the migration may succeed). */
  errorPattern: RegExp | null;
  act: (lab: Ctx, container: string) => Promise<ActResult>;
}

/** What a scenario's act works with: the lab directory (states are re-read: PIDs change). */
interface Ctx {
  dir: string;
  progress: (m: string) => void;
  state(): LabState;
  api(node: string, timeoutMs?: number): ApiClient;
}

function makeCtx(dir: string, progress: (m: string) => void): Ctx {
  return {
    dir,
    progress,
    state: () => freshState(dir),
    api(node, timeoutMs = 15_000) {
      const lab = freshState(dir);
      return new ApiClient({ baseUrl: cloudletOf(lab, node).daemon.apiUrl, token: lab.token, timeoutMs: timeoutMs ?? OPERATOR_TIMEOUT_MS });
    },
  };
}

async function startMigration(ctx: Ctx, body: StartMigrationBody): Promise<MigrationReport> {
  return ctx.api(SRC).post<MigrationReport>('/v1/migrations', body);
}

/** Polls the migration on `node` until `pred` holds; a daemon briefly away is waited for. */
async function waitMigration(ctx: Ctx, id: string, pred: (r: MigrationReport) => boolean, timeoutMs: number, node = SRC): Promise<MigrationReport> {
  const deadline = Date.now() + timeoutMs;
  let last: MigrationReport | null = null;
  let lastErr: unknown = null;
  for (;;) {
    try {
      last = await ctx.api(node, 5000).get<MigrationReport>(`/v1/migrations/${id}`);
      if (pred(last)) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new CloudletError(
        'scenario_timeout',
        `migration ${id} did not reach the expected point within ${timeoutMs} ms (last state ${last?.state ?? 'unknown'}${lastErr ? `; ${errorMessage(lastErr)}` : ''})`,
        { kind: 'deadline-exceeded' },
      );
    }
    await sleep(100);
  }
}

const finished = (r: MigrationReport) => r.finishedAt !== null && r.state !== 'rolling-back';

function ended(r: MigrationReport, notes: string[] = []): ActResult {
  return { outcome: r.state, error: r.error?.message ?? null, notes: [...notes, ...r.warnings.map((w) => `warning: ${w}`)] };
}

const LINK_DEFAULT = { bandwidth: '100mbit', latency: '5ms' };

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'link-cut-precopy',
    fault: `link of ${DST} cut during the first pre-copy round, until the migration notices`,
    service: { kind: 'node', stateMb: 48 },
    expected: ['rolled-back'],
    errorPattern: /no answer within|unreachable|socket hang up|ECONNRESET/i,
    async act(ctx, container) {
      const m = await startMigration(ctx, { container, to: DST, rounds: 2, peerTimeoutMs: CUT_PEER_TIMEOUT_MS });
      const at = await waitMigration(ctx, m.id, (r) => r.state === 'precopy' || r.finishedAt !== null, 120_000);
      const notes = [`cut in state ${at.state} after ${at.rounds.length} round(s)`, ...(await cutUntilNoticed(ctx, m.id))];
      return ended(await waitMigration(ctx, m.id, finished, 300_000), notes);
    },
  },
  {
    name: 'link-cut-final',
    fault: `link of ${DST} cut during the final transfer (stop-and-copy: the whole memory), until the migration notices`,
    service: { kind: 'node', stateMb: 48 },
    expected: ['rolled-back'],
    errorPattern: /no answer within|unreachable|socket hang up|ECONNRESET/i,
    async act(ctx, container) {
      const m = await startMigration(ctx, { container, to: DST, rounds: 0, peerTimeoutMs: CUT_PEER_TIMEOUT_MS });
      // The final dump stops the container: from then on the final round is on the wire.
      const src = engineOf(cloudletOf(ctx.state(), SRC));
      const deadline = Date.now() + 120_000;
      for (;;) {
        const r = await ctx.api(SRC).get<MigrationReport>(`/v1/migrations/${m.id}`);
        if (r.finishedAt !== null)
          throw new CloudletError('scenario_missed', `the migration ended (${r.state}) before the final transfer was seen`, { kind: 'internal' });
        if (r.state === 'final' && !(await src.inspectContainer(container)).running) break;
        if (Date.now() > deadline) throw new CloudletError('scenario_timeout', 'the final transfer did not start within 120 s', { kind: 'deadline-exceeded' });
        await sleep(50);
      }
      const notes = ['cut after the final dump, during the final send', ...(await cutUntilNoticed(ctx, m.id))];
      return ended(await waitMigration(ctx, m.id, finished, 300_000), notes);
    },
  },
  {
    name: 'link-slow-1mbit',
    fault: `link of ${DST} slowed from 100 Mbit/s to 1 Mbit/s right after the migration started`,
    service: { kind: 'busybox' },
    expected: ['done', 'rolled-back'],
    errorPattern: null,
    async act(ctx, container) {
      const m = await startMigration(ctx, { container, to: DST, maxTimeMs: 120_000, peerTimeoutMs: 60_000 });
      await setLink(ctx.state(), DST, { bandwidth: '1mbit', latency: '5ms' });
      try {
        const r = await waitMigration(ctx, m.id, finished, 360_000);
        const bw = r.rounds.map((x) => `${x.final ? 'final' : `round ${x.index}`}: ${(x.bandwidthBps / 1e6).toFixed(2)} Mbit/s`);
        return ended(r, [`stop reason ${r.stopReason}; ${bw.join(', ')}`]);
      } finally {
        await setLink(ctx.state(), DST, LINK_DEFAULT);
      }
    },
  },
  {
    name: 'dest-engine-killed',
    fault: `Docker engine of ${DST} killed (SIGKILL) during the restore, started again after the failure`,
    service: { kind: 'node', stateMb: 16 },
    expected: ['rolled-back'],
    errorPattern: /engine|docker|socket|ECONNREFUSED|ENOENT|connect/i,
    async act(ctx, container) {
      const m = await startMigration(ctx, { container, to: DST, rounds: 1, inject: 'stall-before-restore' });
      const deadline = Date.now() + 180_000;
      for (;;) {
        const st = await ctx
          .api(DST)
          .get<IncomingStatus>(`/v1/incoming/${m.id}`)
          .catch(() => null);
        if (st?.state === 'restoring') break;
        if (Date.now() > deadline)
          throw new CloudletError('scenario_timeout', 'the destination did not reach its restore within 180 s', { kind: 'deadline-exceeded' });
        await sleep(100);
      }
      await killEngine(ctx.state(), DST);
      try {
        await waitMigration(ctx, m.id, (r) => r.state === 'rolling-back' || r.finishedAt !== null, 120_000);
      } finally {
        await restartEngine(ctx.dir, DST);
      }
      return ended(await waitMigration(ctx, m.id, finished, 300_000), ['engine killed in the destination state restoring']);
    },
  },
  {
    name: 'dest-daemon-restarted',
    fault: `cloudletd of ${DST} killed (SIGKILL) during the first pre-copy round and started again`,
    service: { kind: 'node', stateMb: 32 },
    expected: ['rolled-back'],
    errorPattern: /unreachable|ECONNRESET|socket hang up|ECONNREFUSED|peer answered/i,
    async act(ctx, container) {
      const m = await startMigration(ctx, { container, to: DST, rounds: 2 });
      const at = await waitMigration(ctx, m.id, (r) => r.state === 'precopy' || r.finishedAt !== null, 120_000);
      await killDaemon(ctx.state(), DST);
      await sleep(1000);
      await restartDaemon(ctx.dir, DST);
      return ended(await waitMigration(ctx, m.id, finished, 300_000), [`killed in state ${at.state} after ${at.rounds.length} round(s)`]);
    },
  },
  {
    name: 'source-daemon-restarted',
    fault: `cloudletd of ${SRC} killed (SIGKILL) after the freeze (final dump taken, not yet sent) and started again`,
    service: { kind: 'node', stateMb: 16 },
    expected: ['rolled-back', 'done'],
    errorPattern: /restarted/i,
    async act(ctx, container) {
      const m = await startMigration(ctx, { container, to: DST, rounds: 1, inject: 'stall-after-final-dump' });
      const src = engineOf(cloudletOf(ctx.state(), SRC));
      const deadline = Date.now() + 180_000;
      for (;;) {
        const r = await ctx.api(SRC).get<MigrationReport>(`/v1/migrations/${m.id}`);
        if (r.finishedAt !== null)
          throw new CloudletError('scenario_missed', `the migration ended (${r.state}) before the freeze was seen`, { kind: 'internal' });
        if (r.state === 'final' && !(await src.inspectContainer(container)).running) break;
        if (Date.now() > deadline) throw new CloudletError('scenario_timeout', 'the final dump did not happen within 180 s', { kind: 'deadline-exceeded' });
        await sleep(100);
      }
      await killDaemon(ctx.state(), SRC);
      await restartDaemon(ctx.dir, SRC);
      // The restarted daemon settles the migration before it serves requests.
      const r = await waitMigration(ctx, m.id, finished, 60_000);
      return ended(r, ['killed while the service was stopped by the final dump']);
    },
  },
  {
    name: 'source-daemon-restarted-after-restore',
    fault: `cloudletd of ${SRC} killed (SIGKILL) after the twin runs on ${DST}, before the commit, and started again`,
    service: { kind: 'node', stateMb: 16 },
    expected: ['done'],
    // A handoff the restarted daemon commits has no error: its warning must say what happened.
    errorPattern: /restarted/i,
    async act(ctx, container) {
      const m = await startMigration(ctx, { container, to: DST, rounds: 1, inject: 'stall-before-commit' });
      await waitMigration(ctx, m.id, (r) => r.state === 'committing' || r.finishedAt !== null, 180_000);
      await killDaemon(ctx.state(), SRC);
      await restartDaemon(ctx.dir, SRC);
      const r = await waitMigration(ctx, m.id, finished, 60_000);
      return {
        outcome: r.state,
        error: r.error?.message ?? (r.warnings.join('; ') || null),
        notes: ['killed in state committing (twin running, source copy stopped)'],
      };
    },
  },
  {
    name: 'dest-disk-full',
    fault: `scratch tmpfs of ${DST} (staging, checkpoint images) left with 4 MiB free`,
    service: { kind: 'node', stateMb: 32 },
    expected: ['rolled-back'],
    errorPattern: /ENOSPC|no space/i,
    async act(ctx, container) {
      await shrinkScratch(ctx.state(), DST, 4 << 20);
      try {
        const r = await ctx.api(SRC, 600_000).post<MigrationReport>('/v1/migrations?wait=1', { container, to: DST, rounds: 1 });
        return ended(r);
      } finally {
        await restoreScratch(ctx.state(), DST);
      }
    },
  },
  {
    name: 'corrupt-frame',
    fault: 'one byte of the final round flipped in transit (sender side)',
    service: { kind: 'node', stateMb: 16 },
    expected: ['rolled-back'],
    errorPattern: /crc|sha256|checksum|corrupt|integrity|frame/i,
    async act(ctx, container) {
      const r = await ctx.api(SRC, 600_000).post<MigrationReport>('/v1/migrations?wait=1', { container, to: DST, rounds: 1, inject: 'corrupt-frame' });
      return ended(r);
    },
  },
  {
    name: 'dest-fails-before-restore',
    fault: 'the destination fails after the final round arrived, before its restore',
    service: { kind: 'node', stateMb: 16 },
    expected: ['rolled-back'],
    errorPattern: /injected fault/i,
    async act(ctx, container) {
      const r = await ctx.api(SRC, 600_000).post<MigrationReport>('/v1/migrations?wait=1', { container, to: DST, rounds: 1, inject: 'before-restore' });
      return ended(r);
    },
  },
  {
    name: 'started-twice',
    fault: 'a second migration of the same container while the first runs',
    service: { kind: 'node', stateMb: 16 },
    expected: ['done'],
    errorPattern: /already being migrated/i,
    async act(ctx, container) {
      const first = await startMigration(ctx, { container, to: DST, rounds: 1 });
      let refusal: string | null = null;
      try {
        await startMigration(ctx, { container, to: DST, rounds: 1 });
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 409) throw err;
        refusal = `${err.status}: ${err.message}`;
      }
      const r = await waitMigration(ctx, first.id, finished, 300_000);
      if (refusal === null) return { outcome: r.state, error: 'the second start was accepted', notes: ['second start NOT refused'] };
      // The error this scenario must show is the refusal; the first migration must succeed.
      return { outcome: r.state, error: refusal, notes: [`first migration ${r.state}${r.error ? `: ${r.error.message}` : ''}`] };
    },
  },
  {
    name: 'wrong-token',
    fault: `calls to ${DST} (prepare, round, abort) and to ${SRC} (start) with a wrong token`,
    service: { kind: 'busybox' },
    expected: ['refused'],
    errorPattern: /401|token|unauthori[sz]ed/i,
    async act(ctx, container) {
      const lab = ctx.state();
      const bad = 'f'.repeat(lab.token.length);
      const dst = new ApiClient({ baseUrl: cloudletOf(lab, DST).daemon.apiUrl, token: bad, timeoutMs: 15_000 });
      const srcApi = new ApiClient({ baseUrl: cloudletOf(lab, SRC).daemon.apiUrl, token: bad, timeoutMs: 15_000 });
      const id = 'm-wrongtoken-0001';
      const calls: [string, () => Promise<unknown>][] = [
        [
          'POST /v1/incoming',
          () =>
            dst.post('/v1/incoming', {
              id,
              from: SRC,
              container: { name: container, imageId: `sha256:${'0'.repeat(64)}`, imageName: 'x', spec: { network: { mode: 'none' } }, volumes: [] },
            }),
        ],
        ['GET /v1/incoming/:id', () => dst.get(`/v1/incoming/${id}`)],
        ['DELETE /v1/incoming/:id', () => dst.delete(`/v1/incoming/${id}`)],
        ['POST /v1/migrations', () => srcApi.post('/v1/migrations', { container, to: DST })],
      ];
      const refused: string[] = [];
      const notes: string[] = [];
      for (const [what, call] of calls) {
        try {
          await call();
          notes.push(`${what} was ACCEPTED`);
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) refused.push(`${what}: 401`);
          else notes.push(`${what} failed otherwise: ${errorMessage(err)}`);
        }
      }
      const all = refused.length === calls.length;
      const started = await ctx.api(SRC).get<MigrationReport[]>('/v1/migrations');
      if (started.some((r) => r.container === container)) notes.push('a migration of the service was started');
      return {
        outcome: all && notes.length === 0 ? 'refused' : null,
        error: refused.length ? `refused with 401 unauthorized: ${refused.join(', ')}` : null,
        notes,
      };
    },
  },
];

function sameState(spec: ServiceSpec, before: ServiceState, after: ServiceState): boolean {
  if (before.file !== after.file) return false;
  // The Node service's counter and memory change only on requests: they must be equal. The
  // busybox counter keeps counting: it must not have gone back.
  return spec.kind === 'node' ? before.memory === after.memory && before.counter === after.counter : after.counter >= before.counter;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CloudletError('scenario_timeout', `${what} did not finish within ${ms / 1000} s`, { kind: 'deadline-exceeded' })), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Runs one scenario on the lab in `dir` and checks its outcome. */
export async function runFaultScenario(dir: string, scenario: Scenario, progress: (m: string) => void = () => undefined): Promise<FaultScenarioResult> {
  const ctx = makeCtx(dir, progress);
  const container = `flt-${scenario.name}`;
  const notes: string[] = [];
  await removeEverywhere(ctx.state(), container);
  const before = await inventory(ctx.state());
  const initial = await startService(cloudletOf(ctx.state(), SRC), container, scenario.service);
  progress(`${scenario.name}: service ${container} running on ${SRC}; fault: ${scenario.fault}`);
  const t0 = Date.now();
  let act: ActResult;
  try {
    act = await withTimeout(scenario.act(ctx, container), SCENARIO_TIMEOUT_MS, `scenario ${scenario.name}`);
  } catch (err) {
    act = { outcome: null, error: null, notes: [`scenario failed: ${errorMessage(err)}`] };
  }
  const ms = Date.now() - t0;
  notes.push(...act.notes);
  const lab = ctx.state();
  const where = await placement(lab, container);
  let answering = false;
  let stateIntact = false;
  if (where.runningOn.length === 1) {
    const engine = engineOf(cloudletOf(lab, where.runningOn[0]!));
    try {
      const now = await readState(engine, container, scenario.service);
      answering = true;
      stateIntact = sameState(scenario.service, initial, now);
      if (!stateIntact) notes.push(`state changed: before ${JSON.stringify(initial)}, after ${JSON.stringify(now)}`);
    } catch (err) {
      notes.push(`the service does not answer: ${errorMessage(err)}`);
    }
  }
  const left = await leftovers(lab, before, container);
  for (const n of where.existsOn.filter((x) => !where.runningOn.includes(x))) left.push(`${n}: stopped copy of ${container}`);
  const errorClear = scenario.errorPattern === null || (act.error !== null && scenario.errorPattern.test(act.error));
  const exactlyOnce = where.runningOn.length === 1 && where.existsOn.length === 1;
  const result: FaultScenarioResult = {
    name: scenario.name,
    fault: scenario.fault,
    outcome: act.outcome,
    expected: scenario.expected,
    runningOn: where.runningOn,
    serviceRunningExactlyOnce: exactlyOnce,
    answering,
    stateIntact,
    leftovers: left,
    error: act.error,
    errorClear,
    passed: exactlyOnce && answering && stateIntact && left.length === 0 && errorClear && act.outcome !== null && scenario.expected.includes(act.outcome),
    ms,
    notes,
  };
  progress(
    `${scenario.name}: ${result.passed ? 'PASS' : 'FAIL'} (${result.outcome}, on ${where.runningOn.join(',') || 'nowhere'}, ${(ms / 1000).toFixed(1)} s)`,
  );
  await removeEverywhere(lab, container);
  return result;
}

export interface FaultMatrixResult {
  date: string;
  machine: { cores: number; kernel: string };
  scenarios: FaultScenarioResult[];
  passed: number;
  failed: number;
  wallMs: number;
}

export async function runFaultMatrix(dir: string, opts: { only?: string[]; progress?: (m: string) => void } = {}): Promise<FaultMatrixResult> {
  const t0 = Date.now();
  const chosen = opts.only?.length ? SCENARIOS.filter((s) => opts.only!.includes(s.name)) : SCENARIOS;
  const unknown = (opts.only ?? []).filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new UsageError(`unknown scenario(s): ${unknown.join(', ')}`, { hint: `scenarios: ${SCENARIOS.map((s) => s.name).join(', ')}` });
  const scenarios: FaultScenarioResult[] = [];
  for (const s of chosen) scenarios.push(await runFaultScenario(dir, s, opts.progress));
  return {
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, kernel: os.release() },
    scenarios,
    passed: scenarios.filter((s) => s.passed).length,
    failed: scenarios.filter((s) => !s.passed).length,
    wallMs: Date.now() - t0,
  };
}

export function scenarioByName(name: string): Scenario {
  const s = SCENARIOS.find((x) => x.name === name);
  if (!s) throw new UsageError(`unknown fault scenario '${name}'`);
  return s;
}
