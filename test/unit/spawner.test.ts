// Programs started through the spawner process (src/util/spawner.ts): output, exit codes,
// stdin, timeouts and process-group kills work as in-process; the program's parent is the
// spawner, not us; without a spawner (stopped or dead) programs start in-process again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommandError } from '../../src/util/errors.js';
import { run, tryRun } from '../../src/util/exec.js';
import { ProgramStartError, spawnerPid, startSpawner, startTracked, stopSpawner } from '../../src/util/spawner.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Running (a zombie left to a parent that does not reap counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The parent PID of a program started now (through the spawner, if one runs). */
async function parentOfProgram(): Promise<number> {
  return Number((await run('sh', ['-c', 'echo $PPID'])).stdout.trim());
}

test('spawner: programs run through it with their output, exit codes, stdin and timeouts', async (t) => {
  await startSpawner();
  t.after(stopSpawner);
  const pid = spawnerPid();
  assert.ok(pid !== null && pid !== process.pid, 'a spawner process runs');
  assert.equal(await parentOfProgram(), pid, "the program is the spawner's child, not ours");

  assert.deepEqual(await run('echo', ['a b', 'c']), { stdout: 'a b c\n', stderr: '' });
  assert.equal((await run('cat', [], { input: 'from stdin' })).stdout, 'from stdin');
  assert.deepEqual(await tryRun('sh', ['-c', 'echo oops >&2; exit 3']), { stdout: '', stderr: 'oops\n', exitCode: 3 });
  await assert.rejects(
    run('cloudlet-no-such-program', ['x']),
    (e: unknown) => e instanceof CommandError && /cannot run cloudlet-no-such-program: .*ENOENT/.test(e.message),
  );
  const t0 = performance.now();
  await assert.rejects(run('sleep', ['5'], { timeoutMs: 200 }), (e: unknown) => e instanceof CommandError && /timed out after 200 ms/.test(e.message));
  assert.ok(performance.now() - t0 < 3000, 'the timeout ended the program');

  // A byte range of a file on stdin (as the filesystem sync feeds rsync).
  const dir = await mkdtemp(join(tmpdir(), 'cloudlet-spawner-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'in'), 'first part|second part');
  const head = startTracked('cat', [], { stdinFile: { path: join(dir, 'in'), end: 10 } });
  assert.equal((await head.exited).stdout.toString(), 'first part');
  const missing = startTracked('cloudlet-no-such-program', []);
  await assert.rejects(missing.pid, ProgramStartError);
  await assert.rejects(missing.exited, ProgramStartError);
});

test('spawner: a kill of the process group ends the program and its helpers', async (t) => {
  await startSpawner();
  t.after(stopSpawner);
  const p = startTracked('sh', ['-c', 'sleep 30 & echo $!; wait'], { detached: true });
  await p.pid;
  await sleep(100); // the helper is started
  assert.equal(p.kill('SIGKILL', { group: true }), true);
  const x = await p.exited;
  assert.equal(x.signal, 'SIGKILL');
  const helper = Number(x.stdout.toString().trim());
  assert.ok(helper > 0, `the helper's PID was printed (${x.stdout.toString()})`);
  for (let i = 0; i < 50 && alive(helper); i++) await sleep(20);
  assert.equal(alive(helper), false, 'the helper went with its group');
  assert.equal(p.kill('SIGTERM'), false, 'an exited program cannot be signalled');
});

test('spawner: without it (stopped, or dead) programs start in-process again', async () => {
  await startSpawner();
  const pid = spawnerPid()!;
  const watched = startTracked('sleep', ['30']);
  const sleeper = await watched.pid;
  process.kill(pid, 'SIGKILL'); // the spawner we started, by its PID
  await assert.rejects(watched.exited, /the spawner process exited/);
  process.kill(sleeper, 'SIGKILL'); // the program it had started for us
  for (let i = 0; i < 50 && spawnerPid() !== null; i++) await sleep(20);
  assert.equal(spawnerPid(), null);
  assert.equal(await parentOfProgram(), process.pid, 'started in-process');
  await startSpawner();
  assert.notEqual(await parentOfProgram(), process.pid, 'through a new spawner');
  stopSpawner();
  assert.equal(spawnerPid(), null);
  assert.equal(await parentOfProgram(), process.pid);
});
