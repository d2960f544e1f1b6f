// What `cloudlet bench all` runs, full or --quick. --quick keeps every scenario and the
// issue's grid of client activity (n = 90/180/270) and pre-copy rounds (0/1/2), and drops
// repetitions, bandwidths and memory (listed in quickDrops, printed in the report).
import type { BenchPlan } from './types.js';

export const FULL_MBITS = [5, 10, 20, 50, 100, 200, 500];

export function benchPlan(quick: boolean): BenchPlan {
  if (!quick) {
    return {
      quick,
      overlay: { reps: 3, workloads: ['large', 'small'], codec: 'lz4' },
      compression: { reps: 3, maxMiB: 160, stateMb: 64, mbits: [10, 100, 1000] },
      activity: {
        reps: 3,
        stateMb: 64,
        dirtyKbPerRequest: 64,
        windowMs: 8000,
        ns: [90, 180, 270],
        rounds: [0, 1, 2],
        alphas: [1, 1.5],
        mbit: 100,
        codec: 'none',
      },
      bandwidth: { reps: 3, mbits: FULL_MBITS, stateMb: 64, dirtyPagesPerSec: 100 },
      decision: { reps: 3, policies: ['model', 'alpha', 'phaul', 'lxd'], n: 180, stateMb: 64, dirtyPagesPerSec: 100, codec: 'none', mbit: 100 },
      quickDrops: [],
    };
  }
  return {
    quick,
    overlay: { reps: 1, workloads: ['large', 'small'], codec: 'lz4' },
    compression: { reps: 2, maxMiB: 64, stateMb: 16, mbits: [10, 100, 1000] },
    activity: {
      reps: 2,
      stateMb: 32,
      dirtyKbPerRequest: 64,
      windowMs: 5000,
      ns: [90, 180, 270],
      rounds: [0, 1, 2],
      alphas: [1, 1.5],
      mbit: 100,
      codec: 'none',
    },
    bandwidth: { reps: 1, mbits: [5, 100, 500], stateMb: 16, dirtyPagesPerSec: 100 },
    decision: { reps: 2, policies: ['model', 'alpha', 'phaul', 'lxd'], n: 180, stateMb: 16, dirtyPagesPerSec: 100, codec: 'none', mbit: 100 },
    quickDrops: [
      'repetitions: 1 for the overlay and the bandwidth sweep, 2 for the other scenarios (full: 3 everywhere)',
      'bandwidth sweep: 5, 100 and 500 Mbit/s only (full: 5, 10, 20, 50, 100, 200, 500)',
      'memory: 32 MiB of state for the activity service (full: 64), 16 MiB for the large-memory service and the codec workloads (full: 64), codec samples capped at 64 MiB of each process (full: 160 MiB)',
      'client window: the n requests are spread over 5 s (full: 8 s)',
    ],
  };
}
