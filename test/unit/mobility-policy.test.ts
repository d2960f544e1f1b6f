import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HandoffPolicy } from '../../src/mobility/policy.js';

const opts = { marginMs: 10, dwellMs: 1000, cooldownMs: 5000 };

test('moves once the other cloudlet has been closer by the margin for the dwell time', () => {
  const p = new HandoffPolicy(opts);
  assert.equal(p.observe({ atMs: 0, rttMs: { a: 30, b: 5 } }, 'a').move, false, 'not before the dwell time');
  assert.equal(p.observe({ atMs: 500, rttMs: { a: 30, b: 5 } }, 'a').move, false);
  const d = p.observe({ atMs: 1000, rttMs: { a: 30, b: 5 } }, 'a');
  assert.deepEqual(d.move && d.to, 'b');
});

test('a user between two cells (RTTs crossing back and forth) causes no move', () => {
  const p = new HandoffPolicy(opts);
  for (let t = 0; t < 20_000; t += 200) {
    const near = Math.floor(t / 600) % 2 === 0;
    const d = p.observe({ atMs: t, rttMs: near ? { a: 30, b: 5 } : { a: 5, b: 30 } }, 'a');
    assert.equal(d.move, false, `t=${t}: ${d.reason}`);
  }
});

test('a smaller gain than the margin never moves', () => {
  const p = new HandoffPolicy(opts);
  for (let t = 0; t < 10_000; t += 100) assert.equal(p.observe({ atMs: t, rttMs: { a: 14, b: 5 } }, 'a').move, false);
});

test('after a move, no move back within the cooldown, then again when warranted', () => {
  const p = new HandoffPolicy(opts);
  let t = 0;
  for (; t <= 1000; t += 100) p.observe({ atMs: t, rttMs: { a: 30, b: 5 } }, 'a');
  const moves: string[] = [];
  for (; t <= 4000; t += 100) {
    const d = p.observe({ atMs: t, rttMs: { a: 5, b: 30 } }, 'b');
    if (d.move) moves.push(`${t}:${d.to}`);
  }
  assert.equal(moves.length, 0, `cooldown holds: ${moves.join(', ')}`);
  for (; t <= 8000; t += 100) {
    const d = p.observe({ atMs: t, rttMs: { a: 5, b: 30 } }, 'b');
    if (d.move) moves.push(d.to);
  }
  assert.deepEqual(moves, ['a']);
});

test('an unreachable current cloudlet counts as far away', () => {
  const p = new HandoffPolicy({ ...opts, dwellMs: 0 });
  const d = p.observe({ atMs: 0, rttMs: { b: 40 } }, 'a');
  assert.equal(d.move && d.to, 'b');
});

test('bad options are refused by name', () => {
  assert.throws(() => new HandoffPolicy({ ...opts, dwellMs: -1 }), /dwellMs/);
});
