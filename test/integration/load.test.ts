// Load on a lab of three cloudlets: ten concurrent operations (five provisionings, five live
// migrations crossing every pair of cloudlets) complete without failure or interference.
// The same function as `cloudlet bench faults --load` (src/bench/faults-load.ts).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useLab } from '../helpers/lab.js';
import { runLoad } from '../../src/bench/faults-load.js';

const isRoot = process.getuid?.() === 0;

describe('load on the lab', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('load', { cloudlets: 3 });

  test('ten concurrent provisionings and migrations across three cloudlets', { timeout: 20 * 60_000 }, async (t) => {
    const r = await runLoad(lab.state().dir, (m) => t.diagnostic(m));
    for (const o of r.operations) {
      t.diagnostic(
        `${o.kind} ${o.container} on ${o.node}${o.to ? ` -> ${o.to}` : ''}: ${o.ok ? 'ok' : 'FAILED'} in ${o.ms} ms${o.error ? ` (${o.error})` : ''}`,
      );
    }
    t.diagnostic(`concurrent phase: ${r.wallMs} ms`);
    assert.equal(r.operations.length, 10);
    assert.deepEqual(
      r.operations.filter((o) => !o.ok).map((o) => `${o.container}: ${o.error}`),
      [],
    );
    assert.equal(r.placementsOk, true, r.notes.join('\n'));
    assert.deepEqual(r.leftovers, []);
    assert.equal(r.allCompleted, true);
  });
});
