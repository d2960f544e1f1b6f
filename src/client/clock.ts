// One clock per run: monotonic milliseconds since the start (immune to wall-clock steps, which
// matter when we measure gaps of a few ms), plus the wall-clock ISO string of any instant.
import { performance } from 'node:perf_hooks';

export class RunClock {
  private readonly startPerf = performance.now();
  readonly startWall = Date.now();

  /** Milliseconds since the run started, to 0.01 ms. */
  now(): number {
    return round2(performance.now() - this.startPerf);
  }

  iso(atMs: number): string {
    return new Date(this.startWall + atMs).toISOString();
  }
}

export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
