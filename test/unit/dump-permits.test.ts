// The check that refuses, before the freeze, a container CRIU could not dump without
// CAP_SYS_RESOURCE (processes of another uid): parsing /proc/PID/status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { CAP_SYS_RESOURCE, checkDumpPermitted, hasCapability, inRootOwnedUserNamespace, uidsOf } from '../../src/migration/source/dump-permits.js';

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

// A real user namespace made by root, mapped like Docker's userns-remap (0 -> 100000, 65536 ids).
test('a process in a root-made, remapped user namespace is dumpable; in a holder it is refused', async (t) => {
  if (process.geteuid?.() !== 0) return t.skip('needs root');
  const child = spawn('unshare', ['--user', 'sleep', '30'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  const pid = child.pid!;
  // Wait for the exec of sleep (in the new namespace), then map it as root would (runc does).
  for (let i = 0; i < 100 && (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim() !== 'sleep'; i++) await new Promise((r) => setTimeout(r, 20));
  await writeFile(`/proc/${pid}/uid_map`, '0 100000 65536\n');
  assert.equal(await inRootOwnedUserNamespace(pid), true);
  assert.equal(await inRootOwnedUserNamespace(process.pid), false);
  await checkDumpPermitted(pid, { container: 'remapped', networkMode: 'none' });
  await assert.rejects(checkDumpPermitted(pid, { container: 'remapped', networkMode: 'container:holder' }), /cannot join that network namespace/);
});
