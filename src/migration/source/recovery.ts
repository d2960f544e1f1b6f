// Source, recovery after a daemon restart. Migrations this daemon was running when it stopped
// cannot go on (their state lived in the process); they are settled so that the service runs
// in exactly one place:
//  - before the freeze (preparing, precopy) the service still runs here: the destination
//    drops its twin, the migration is rolled back;
//  - after it, the destination is asked whether its twin runs: if it does, the handoff is
//    committed (the stopped copy here is removed); if it does not, its twin is dropped and
//    the service restored here from the final dump the staging directory still holds;
//  - a destination that cannot be reached leaves the migration failed, the final dump kept:
//    restoring here could run the service twice.
// (Before: every such migration was only marked failed, leaving a frozen service stopped.)
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../../util/errors.js';
import { freezeCgroup } from '../../engine/cgroups.js';
import type { ContainerDetails } from '../../engine/docker.js';
import type { MigrationRow } from '../journal.js';
import type { PeerTransport } from '../peer-transport.js';
import { RollbackLog } from '../rollback-log.js';
import type { MigrationReport } from '../types.js';
import { IncomingStatusSchema } from '../../api/schemas/migrations.js';
import { commitHandoff } from './commit.js';
import { rollback } from './rollback.js';
import { lastDumpDir, type SourceDeps } from './handoff.js';

/** A restarted daemon asks the destination where the service runs; it must not wait long. */
const RECOVERY_PEER_TIMEOUT_MS = 10_000;
/** Two attempts only at the destination: the daemon serves no request until its recovery is over. */
const RECOVERY_ABORT_ATTEMPTS = 2;

/** What the destination says about its twin after the source's restart. */
type TwinAnswer = { kind: 'unreachable'; error: Error } | { kind: 'running' } | { kind: 'not-running' };

interface Recovering {
  row: MigrationRow;
  report: MigrationReport;
  peer: PeerTransport;
  stage: string;
  /** For the report's messages: what happened. */
  what: string;
}

/** Settles every source migration the journal says was in flight; notes for the log. */
export async function recoverSourceMigrations(deps: SourceDeps, journal: (report: MigrationReport) => void): Promise<string[]> {
  const notes: string[] = [];
  for (const m of deps.db.activeMigrations('source')) {
    const report = (m.report as unknown as MigrationReport | null) ?? null;
    const what = `cloudletd restarted during the migration (state '${m.state}')`;
    const peer = deps.peers.find((p) => p.name === m.toNode);
    if (!report || !peer) {
      deps.db.updateMigration(m.id, 'source', { state: 'failed', error: `${what}; check where ${m.container} runs` });
      notes.push(`migration ${m.id} of ${m.container} marked failed`);
      continue;
    }
    const r: Recovering = {
      row: m,
      report,
      what,
      peer: deps.connectPeer({ url: peer.url, silenceMs: RECOVERY_PEER_TIMEOUT_MS }),
      stage: join(deps.scratchDir, 'migrations', m.id),
    };
    let keepStage = false;
    try {
      keepStage = (await recoverOne(deps, r)).keepStage;
    } catch (err) {
      keepStage = true;
      report.state = 'failed';
      report.error = { code: 'recovery_failed', message: `${what}; recovery failed: ${errorMessage(err)}; check where ${m.container} runs` };
    }
    if (!keepStage) await rm(r.stage, { recursive: true, force: true });
    report.finishedAt = new Date().toISOString();
    journal(report);
    notes.push(`migration ${m.id} of ${m.container}: ${report.state}${report.error ? ` (${report.error.message})` : ''}`);
  }
  return notes;
}

async function recoverOne(deps: SourceDeps, r: Recovering): Promise<{ keepStage: boolean }> {
  const { row: m, report, what } = r;
  const frozen = !['preparing', 'precopy'].includes(m.state);
  const twin = frozen ? await askTwin(r) : null;
  const details = (await deps.engine.containerExists(m.container)) ? await deps.engine.inspectContainer(m.container) : null;
  if (twin?.kind === 'unreachable') {
    report.state = 'failed';
    report.error = {
      code: 'recovery_failed',
      message: `${what}; the destination could not be asked whether it runs the service (${twin.error.message}): check where ${m.container} runs; its final dump is kept in ${r.stage}`,
    };
    return { keepStage: true };
  }
  if (twin?.kind === 'running') {
    if (details) await commitHandoff(deps, { report, details, peer: r.peer });
    else report.warnings.push(`source container ${m.container} was already gone`);
    report.warnings.push(`${what}: the destination runs the service, the handoff was committed by the restarted daemon`);
    report.state = 'done';
    return { keepStage: false };
  }
  const log = await rollBackAfterRestart(deps, r, { frozen, details });
  report.error = { code: 'daemon_restarted', message: `${what}; rolled back (${log.toString()})` };
  report.state = log.outcome;
  return { keepStage: report.state === 'failed' };
}

async function askTwin(r: Recovering): Promise<TwinAnswer> {
  try {
    const s = await r.peer.get(`/v1/incoming/${r.row.id}`, IncomingStatusSchema);
    return s.twinRunning ? { kind: 'running' } : { kind: 'not-running' };
  } catch (err) {
    return { kind: 'unreachable', error: err as Error };
  }
}

/** The twin does not run: it is dropped, the service restored here if it was frozen. */
async function rollBackAfterRestart(deps: SourceDeps, r: Recovering, o: { frozen: boolean; details: ContainerDetails | null }): Promise<RollbackLog> {
  const { frozen, details } = o;
  // Killed between its freeze and the dump: the service is 'running' but frozen.
  if (frozen && details?.running) await thawIfFrozen(details.pid);
  const dump = frozen ? await lastDumpDir(r.stage) : null;
  if (!details) {
    const log = new RollbackLog();
    log.failed(`FAILED to find the source container ${r.row.container}`, { sourceContainer: true });
    return log;
  }
  const log = await rollback(deps, {
    report: r.report,
    details,
    peer: r.peer,
    progress: {
      prepared: true,
      frozen: frozen && dump !== null && !details.running,
      // From the final state on, the address may have been routed to the destination.
      addressMoved: frozen,
      finalSent: false,
    },
    finalDumpDir: dump ?? '',
    abortAttempts: RECOVERY_ABORT_ATTEMPTS,
  });
  if (!details.running && frozen && dump === null)
    log.failed(`FAILED: ${r.row.container} is stopped and no final dump is in ${r.stage}`, { sourceContainer: true });
  return log;
}

/**
 * A daemon killed between its freeze and the dump leaves the cgroup frozen: freezing it
 * again (a no-op when frozen) gives the handle that thaws it.
 */
async function thawIfFrozen(pid: number): Promise<void> {
  const f = await freezeCgroup(pid);
  await f.thaw();
}
