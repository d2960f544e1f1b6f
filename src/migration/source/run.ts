// The source's state machine: one handoff from prepare to commit, or to its rollback.
//
//   prepare -> precopy (rounds while the service runs; skipped when the first decision stops)
//           -> announce (restart policy off, address moved to the destination)
//           -> final (freeze, last dump and delta; the destination restores the twin)
//           -> commit (source copy removed) -> done
//   any failure before the destination runs the twin -> rollback (rollback.ts)
//
// Invariant: the service runs in exactly one place. The source container is removed only
// after the destination has reported its twin running; if anything fails before that, the
// destination is told to abort (twin, volumes, staging removed) and, if the source was
// already frozen by the final dump, the source container is restored from that same dump.
// The report's state (what the journal records) follows: preparing, precopy, final (from the
// announce on), committing, done; rolling-back, then rolled-back or failed.
import { rm } from 'node:fs/promises';
import { errorMessage } from '../../util/errors.js';
import type { SourceHandoff } from './handoff.js';
import { runPrepare } from './prepare.js';
import { runPrecopy } from './precopy.js';
import { runAnnounce } from './announce.js';
import { runFinal } from './final.js';
import { runCommit } from './commit.js';
import { settleFailure } from './rollback.js';

export type SourcePhase = 'prepare' | 'precopy' | 'announce' | 'final' | 'commit';

const PHASES: Record<SourcePhase, (h: SourceHandoff) => Promise<void>> = {
  prepare: runPrepare,
  precopy: runPrecopy,
  announce: runAnnounce,
  final: runFinal,
  commit: runCommit,
};

/** The phase after `phase` ('done' after the commit). The one branch: pre-copy may be skipped. */
export function nextPhase(phase: SourcePhase, h: Pick<SourceHandoff, 'plan'>): SourcePhase | 'done' {
  switch (phase) {
    case 'prepare':
      return h.plan?.initial.stop ? 'announce' : 'precopy';
    case 'precopy':
      return 'announce';
    case 'announce':
      return 'final';
    case 'final':
      return 'commit';
    case 'commit':
      return 'done';
  }
}

/** Runs the handoff to its end; failures are settled here (rollback), never thrown. */
export async function runHandoff(h: SourceHandoff, o: { onFinished: () => void }): Promise<void> {
  const { report } = h;
  let keepStage = false;
  try {
    for (let phase: SourcePhase | 'done' = 'prepare'; phase !== 'done'; phase = nextPhase(phase, h)) {
      await PHASES[phase](h);
    }
  } catch (err) {
    keepStage = (await settleFailure(h, err)).keepStage;
  } finally {
    for (const f of h.fsSources) {
      await f.source.dispose().catch((e: unknown) => report.warnings.push(`fs sync clean-up: ${errorMessage(e)}`));
    }
    if (!keepStage) await rm(h.stage, { recursive: true, force: true });
    report.bytesSent = report.rounds.reduce((s, r) => s + r.sentBytes, 0);
    report.finishedAt = new Date().toISOString();
    h.journal();
    o.onFinished();
  }
}
