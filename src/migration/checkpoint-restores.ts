// Restores from a checkpoint running on one engine, counted by whoever restores there: the
// destination side (the twin) and the source side (a rollback restores the source container).
import { pruneContainerdCheckpointCopies } from '../engine/checkpoint-install.js';

/**
 * containerd's unpacked copy of a checkpoint ($XDG_RUNTIME_DIR/ctrd-checkpoint*) is read by
 * CRIU until its restore ends: pruning the copies while another restore runs made that
 * restore fail ("criu failed: type RESTORE"; two migrations into one cloudlet at once, found
 * by the load test). So restores are counted, and the copies are pruned only when none is
 * in flight (the last one prunes). One instance per engine, shared by both sides of the
 * handoff (cloudletd makes it where it wires them up).
 */
export class CheckpointRestores {
  private inFlight = 0;

  /** Runs a restore, counted while it runs. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight++;
    try {
      return await fn();
    } finally {
      this.inFlight--;
    }
  }

  async pruneCopiesIfIdle(xdgRuntimeDir: string): Promise<void> {
    if (this.inFlight === 0) await pruneContainerdCheckpointCopies(xdgRuntimeDir);
  }
}
