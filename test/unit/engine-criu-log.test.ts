import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CheckpointFailedError, criuLogSummary } from '../../src/engine/runc.js';

// The shape of a real failed dump's log: the cause, then dozens of lines of clean-up.
const cleanup = Array.from({ length: 40 }, (_, i) => `(00.2446${String(i).padStart(2, '0')}) 28383 was trapped`);
const log = [
  '(00.001000) Version: 4.2.1',
  '(00.100000) Error (criu/sk-inet.c:199): inet: Connected TCP socket, consider using --tcp-established option.',
  '(00.100100) Error (criu/cr-dump.c:1633): Dump files (pid: 28338) failed with -1',
  ...cleanup,
  '(00.446717) Error (criu/cr-dump.c:1975): Dumping FAILED.',
].join('\n');

test('a failed dump is summarized by its CRIU errors, then the log tail', () => {
  const s = criuLogSummary(log, 30);
  assert.match(s.split('\n')[0]!, /Connected TCP socket/, 'the cause comes first, although it is not in the last 30 lines');
  assert.match(s, /Dumping FAILED/);
  assert.equal(s.split('\n').length, 2 + 1 + 30);
  assert.equal(criuLogSummary('a\nb', 30), 'a\nb', 'a short log is left as it is');
  const err = new CheckpointFailedError('0123456789abcdef', '/tmp/w', 1, s, '', null);
  assert.match(err.message, /Connected TCP socket/);
  assert.match(err.message, /Dumping FAILED/);
});
