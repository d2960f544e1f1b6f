// Live progress of migrations inside one cloudletd process: the migration source publishes
// its report at every journal write (state change, round), and the dashboard's server-sent
// events route forwards it to the browsers that follow that migration.
//
// One emitter per process, not per MigrationSource: the source only needs a one-line hook,
// and subscribers filter by migration id (ids are random, so two daemons sharing a process
// in tests never see each other's migrations under the same id).
import { EventEmitter } from 'node:events';
import { CloudletError, errorMessage } from '../util/errors.js';
import type { MigrationReport } from '../migration/types.js';

export type MigrationListener = (report: MigrationReport) => void;

/** Bound on concurrent followers: each open dashboard tab following a migration is one. */
const MAX_SUBSCRIBERS = 256;

class MigrationEvents {
  private readonly emitter = new EventEmitter();
  private count = 0;

  constructor() {
    // The limit is enforced by subscribe() itself, with a clear error, not by Node's warning.
    this.emitter.setMaxListeners(0);
  }

  /**
   * Called by the source at every update. Listeners get a snapshot (the source keeps
   * mutating its report), and a failing listener must not break the migration.
   */
  publish(report: MigrationReport): void {
    if (this.emitter.listenerCount(report.id) === 0) return;
    const snapshot: MigrationReport = { ...report, rounds: report.rounds.map((r) => ({ ...r })), warnings: [...report.warnings] };
    for (const listener of this.emitter.listeners(report.id) as MigrationListener[]) {
      try {
        listener(snapshot);
      } catch (err) {
        // A subscriber's bug (e.g. writing to a closed socket) is its own problem: it is
        // reported (daemon log, or a process warning) and never thrown into the migration.
        if (this.emitter.listenerCount('listener-error') > 0) this.emitter.emit('listener-error', err);
        else process.emitWarning(`migration event listener failed: ${errorMessage(err)}`);
      }
    }
  }

  /** Follows one migration; returns the function that stops following it. */
  subscribe(id: string, listener: MigrationListener): () => void {
    if (this.count >= MAX_SUBSCRIBERS) {
      throw new TooManySubscribersError(MAX_SUBSCRIBERS);
    }
    this.emitter.on(id, listener);
    this.count++;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      this.count--;
      this.emitter.off(id, listener);
    };
  }

  /** Errors thrown by listeners (logged by whoever registers here). */
  onListenerError(fn: (err: unknown) => void): () => void {
    this.emitter.on('listener-error', fn);
    return () => this.emitter.off('listener-error', fn);
  }

  subscribers(): number {
    return this.count;
  }
}

export class TooManySubscribersError extends CloudletError {
  constructor(limit: number) {
    super('too_many_subscribers', `more than ${limit} clients are following migrations on this cloudlet`, {
      kind: 'unavailable',
      context: { limit },
      hint: 'close dashboard tabs that follow migrations, or retry later',
    });
  }
}

export const migrationEvents = new MigrationEvents();
