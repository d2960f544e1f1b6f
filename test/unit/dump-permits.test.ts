// The check that refuses, before the freeze, a container CRIU could not dump without
// CAP_SYS_RESOURCE (processes of another uid): parsing /proc/PID/status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CAP_SYS_RESOURCE, hasCapability, uidsOf } from '../../src/migration/source/dump-permits.js';

const status = (capEff: string, uid: string) => `Name:\tpostgres\nUid:\t${uid}\nGid:\t1000\t1000\t1000\t1000\nCapEff:\t${capEff}\n`;

test('CAP_SYS_RESOURCE is bit 24 of CapEff', () => {
  assert.equal(hasCapability(status('000001ffffffffff', '0\t0\t0\t0'), CAP_SYS_RESOURCE), true);
  // This sandbox's root: everything but CAP_SYS_RESOURCE.
  assert.equal(hasCapability(status('000001fffeffffff', '0\t0\t0\t0'), CAP_SYS_RESOURCE), false);
  assert.equal(hasCapability(status('0000000001000000', '0\t0\t0\t0'), CAP_SYS_RESOURCE), true);
  assert.equal(hasCapability('Name:\tx\n', CAP_SYS_RESOURCE), false);
});

test('uids: real, effective, saved', () => {
  assert.deepEqual(uidsOf(status('0', '1000\t1000\t1000\t1000')), [1000, 1000, 1000]);
  assert.deepEqual(uidsOf(status('0', '0\t1000\t0\t1000')), [0, 1000, 0]);
  assert.deepEqual(uidsOf('Name:\tx\n'), []);
});
