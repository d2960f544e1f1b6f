// The lab's userns-remap range: /etc/subuid entries read, a free range chosen, the user named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freeRangeStart, parseSubids, remapUserFor } from '../../src/lab/userns-remap.js';

test('subuid entries: name, start, count; comments and junk skipped', () => {
  assert.deepEqual(parseSubids('# c\nalice:100000:65536\n\nbad line\nbob:165536:65536\n'), [
    { name: 'alice', start: 100000, count: 65536 },
    { name: 'bob', start: 165536, count: 65536 },
  ]);
});

test('a free range overlaps no entry', () => {
  assert.equal(freeRangeStart([]), 100000);
  assert.equal(freeRangeStart([{ name: 'x', start: 100000, count: 65536 }]), 165536);
  assert.equal(freeRangeStart([{ name: 'x', start: 150000, count: 10 }]), 165536);
  assert.equal(freeRangeStart([{ name: 'x', start: 10000, count: 1000 }]), 100000);
});

test('the remap user is named for the lab prefix', () => {
  assert.equal(remapUserFor('cllab-'), 'cllab-remap');
  assert.equal(remapUserFor('cltremp-'), 'cltremp-remap');
  assert.throws(() => remapUserFor('1x-'), /no valid user name/);
});
