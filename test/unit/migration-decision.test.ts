import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, decideInitial, predictDowntimeMs, validatePolicy, wantsPrecopy, type RoundObservation } from '../../src/migration/decision.js';

const MiB = 2 ** 20;
/** A round that sent `rawMiB` over a 100 Mbit/s link at compression ratio 0.5. */
function round(index: number, rawMiB: number, opts: Partial<RoundObservation> = {}): RoundObservation {
  const raw = rawMiB * MiB;
  const sent = raw / 2;
  const sendMs = Math.round(((sent * 8) / 100e6) * 1000);
  return {
    index,
    durationMs: 300 + sendMs,
    intervalMs: index === 1 ? null : 2000,
    stallMs: 300,
    hashMs: 80,
    pagesScanned: 65536,
    pagesChanged: raw / 4096,
    rawBytes: raw,
    sentBytes: sent,
    sendMs,
    bandwidthBps: 100e6,
    ...opts,
  };
}

test('forced rounds stop exactly after N rounds', () => {
  const p = { kind: 'rounds', rounds: 2 } as const;
  assert.equal(decide(p, [round(1, 256)], 0).stop, false);
  const d = decide(p, [round(1, 256), round(2, 10)], 0);
  assert.equal(d.stop, true);
  assert.equal(d.reason, 'forced-rounds');
  assert.equal(wantsPrecopy({ kind: 'rounds', rounds: 0 }), false);
  assert.equal(wantsPrecopy({ kind: 'lxd' }), true);
});

test('alpha rule stops once a send is faster than alpha', () => {
  const p = { kind: 'alpha', alphaSeconds: 1, maxRounds: 8 } as const;
  const big = round(1, 256); // ~10.7 s at 100 Mbit/s with ratio 0.5
  assert.equal(decide(p, [big], 0).stop, false);
  const small = round(2, 4); // ~0.17 s
  const d = decide(p, [big, small], 0);
  assert.equal(d.reason, 'alpha');
  assert.ok(small.sendMs < 1000);
});

test('model predicts from dirty rate, ratio and bandwidth, and stops below the target', () => {
  const rounds = [round(1, 256), round(2, 100, { intervalMs: 11_000 })];
  const p = predictDowntimeMs(rounds, { restoreMs: 700, rebuildMsPerMiB: 1 })!;
  const last = rounds[1]!;
  const finalRaw = (last.rawBytes / last.intervalMs!) * last.durationMs;
  const expected = last.stallMs + last.hashMs + ((finalRaw * 0.5 * 8) / 100e6) * 1000 + 256 + 700;
  assert.ok(Math.abs(p - expected) < 1e-6, `${p} vs ${expected}`);
  const d = decide({ kind: 'model', maxDowntimeMs: p + 1, maxRounds: 8, maxTimeMs: 60_000 }, rounds, 12_000);
  assert.equal(d.reason, 'predicted-downtime');
  const d2 = decide({ kind: 'model', maxDowntimeMs: p - 1, maxRounds: 8, maxTimeMs: 60_000 }, rounds, 12_000);
  assert.equal(d2.stop, false);
});

test('model refuses to loop when rounds stop shrinking', () => {
  // A service dirtying faster than the link: every round is as big as the one before.
  const rounds = [round(1, 256), round(2, 100), round(3, 98)];
  const d = decide({ kind: 'model', maxDowntimeMs: 100, maxRounds: 8, maxTimeMs: 600_000 }, rounds, 30_000);
  assert.equal(d.reason, 'no-convergence');
  const shrinking = [round(1, 256), round(2, 100), round(3, 40)];
  assert.equal(decide({ kind: 'model', maxDowntimeMs: 100, maxRounds: 8, maxTimeMs: 600_000 }, shrinking, 30_000).stop, false);
});

test('model honours max rounds and max time', () => {
  const rounds = [round(1, 256), round(2, 100)];
  assert.equal(decide({ kind: 'model', maxDowntimeMs: 1, maxRounds: 2, maxTimeMs: 600_000 }, rounds, 0).reason, 'max-rounds');
  assert.equal(decide({ kind: 'model', maxDowntimeMs: 1, maxRounds: 8, maxTimeMs: 1000 }, rounds, 5000).reason, 'max-time');
});

test('P.Haul and LXD rules', () => {
  assert.equal(decide({ kind: 'phaul' }, [round(1, 256), round(2, (64 * 4096) / MiB)], 0).reason, 'phaul-few-pages');
  assert.equal(decide({ kind: 'phaul' }, [round(1, 256), round(2, 10), round(3, 12)], 0).reason, 'phaul-growth');
  assert.equal(decide({ kind: 'lxd' }, [round(1, 256)], 0).stop, false);
  // 20 % of 65536 pages changed -> 80 % unchanged
  assert.equal(decide({ kind: 'lxd' }, [round(1, 256), round(2, 51.2)], 0).reason, 'lxd-unchanged');
});

test('bad policies are refused with the option named', () => {
  assert.throws(() => validatePolicy({ kind: 'rounds', rounds: -1 }), /--rounds/);
  assert.throws(() => validatePolicy({ kind: 'alpha', alphaSeconds: 0, maxRounds: 8 }), /--alpha/);
  assert.throws(() => validatePolicy({ kind: 'model', maxDowntimeMs: 1000, maxRounds: 0, maxTimeMs: 1 }), /--max-rounds/);
});

test('the model skips pre-copy when sending all memory fits the budget', () => {
  const model = { kind: 'model', maxDowntimeMs: 1000, maxRounds: 8, maxTimeMs: 60_000 } as const;
  const small = decideInitial(model, 200 * 1024, 100e6);
  assert.equal(small.stop, true);
  assert.equal(small.reason, 'small-memory');
  // 4 MiB at 100 Mbit/s: ~335 ms of send, fits a 2 s budget.
  const fits = decideInitial({ ...model, maxDowntimeMs: 2000 }, 4 * MiB, 100e6);
  assert.equal(fits.reason, 'predicted-downtime');
  assert.equal(decideInitial(model, 4 * MiB, 100e6).stop, false);
  const big = decideInitial(model, 256 * MiB, 100e6);
  assert.equal(big.stop, false);
  assert.ok(big.predictedDowntimeMs! > 20_000, 'sending 256 MiB at 100 Mbit/s takes > 20 s');
  assert.equal(decideInitial({ kind: 'alpha', alphaSeconds: 1, maxRounds: 8 }, 1024, 100e6).stop, false);
  assert.equal(decideInitial({ kind: 'rounds', rounds: 0 }, 256 * MiB, 100e6).stop, true);
});

test('the model stops once the final send is negligible even if the budget is out of reach', () => {
  // 0.5 MiB dirtied per round: ~20 ms to send, but freeze + restore alone exceed 500 ms.
  const rounds = [round(1, 256), round(2, 0.5, { intervalMs: 11_000 })];
  const d = decide({ kind: 'model', maxDowntimeMs: 500, maxRounds: 8, maxTimeMs: 600_000 }, rounds, 12_000);
  assert.equal(d.reason, 'converged');
  // 40 MiB dirtied: the send still matters, keep going.
  const busy = [round(1, 256), round(2, 40, { intervalMs: 11_000 })];
  assert.equal(decide({ kind: 'model', maxDowntimeMs: 500, maxRounds: 8, maxTimeMs: 600_000 }, busy, 12_000).stop, false);
});
