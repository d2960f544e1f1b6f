// The fault matrix on a lab of its own: the same scenario functions as `cloudlet bench faults`
// (src/bench/faults.ts). Each scenario must end with the service running in exactly one
// place and answering, its state intact (memory and file checksums), nothing left behind,
// the migration's outcome among the expected ones and a clear error in its report.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useLab } from '../helpers/lab.js';
import { SCENARIOS, runFaultScenario } from '../../src/bench/faults.js';

const isRoot = process.getuid?.() === 0;

describe('fault matrix on the lab', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('flt');

  test('the matrix has at least ten scenarios', () => {
    assert.ok(SCENARIOS.length >= 10, `${SCENARIOS.length} scenarios`);
  });

  for (const scenario of SCENARIOS) {
    test(`${scenario.name}: ${scenario.fault}`, { timeout: 12 * 60_000 }, async (t) => {
      const r = await runFaultScenario(lab.state().dir, scenario, (m) => t.diagnostic(m));
      t.diagnostic(`${r.name}: ${r.outcome} in ${(r.ms / 1000).toFixed(1)} s; error: ${r.error}; notes: ${r.notes.join(' | ')}`);
      const detail = JSON.stringify(r, null, 1);
      assert.ok(r.outcome !== null && scenario.expected.includes(r.outcome), `outcome ${r.outcome}, expected ${scenario.expected.join(' or ')}: ${detail}`);
      assert.equal(r.serviceRunningExactlyOnce, true, `running on [${r.runningOn.join(', ')}]: ${detail}`);
      assert.equal(r.answering, true, `the service answers: ${detail}`);
      assert.equal(r.stateIntact, true, `state intact: ${detail}`);
      assert.deepEqual(r.leftovers, [], `nothing left behind: ${detail}`);
      assert.equal(r.errorClear, true, `a clear error (${scenario.errorPattern}): ${r.error}`);
      assert.equal(r.passed, true, detail);
    });
  }
});
