// Destination, recovery after a daemon restart: the handoffs held when the daemon stopped.
// Their unstarted twins (and holder copies) are removed; a running twin stays, for its
// source to commit (it asks GET /v1/incoming/:id).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { removeInstalledCheckpoint } from '../../engine/checkpoint-install.js';
import { clearLeftRestoreOptions } from '../../engine/criu-config.js';
import { checkpointName, type DestinationDeps } from './incoming.js';

/** Settles every handoff the journal says was in flight here; notes for the log. */
export async function recoverIncoming(deps: DestinationDeps): Promise<string[]> {
  const notes: string[] = [];
  const { engine } = deps;
  const left = deps.criuConfigFile ? await clearLeftRestoreOptions(deps.criuConfigFile) : [];
  if (left.length > 0) notes.push(`took the option(s) ${left.join(', ')} left by an interrupted restore out of ${deps.criuConfigFile}`);
  for (const m of deps.db.activeMigrations('destination')) {
    const { twinId, holderId } = (m.report as { twinId?: string; holderId?: string | null } | null) ?? {};
    let twinRunning = false;
    if (twinId && (await engine.containerExists(twinId))) {
      const d = await engine.inspectContainer(twinId);
      twinRunning = d.running;
      if (!d.running) {
        await engine.removeContainer(twinId, { force: true });
        notes.push(`removed the unstarted twin of migration ${m.id}`);
      }
    }
    // A running twin stays (its source commits it, asking GET /v1/incoming/:id); so does its holder.
    if (holderId && !twinRunning && (await engine.removeContainer(holderId, { force: true }))) {
      notes.push(`removed the network namespace holder started for migration ${m.id}`);
    }
    if (twinId) {
      const { dataRoot, xdgRuntimeDir } = deps;
      await removeInstalledCheckpoint({ dataRoot, containerId: twinId, name: checkpointName(m.id), xdgRuntimeDir });
    }
    deps.db.updateMigration(m.id, 'destination', { state: 'aborted', error: 'daemon restarted during the migration' });
  }
  const stage = join(deps.scratchDir, 'incoming');
  await rm(stage, { recursive: true, force: true });
  return notes;
}
