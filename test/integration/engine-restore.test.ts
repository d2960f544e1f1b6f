// The engine side of live migration on the REAL lab: runc checkpoint on cloudlet a's engine,
// a twin created on cloudlet b's engine, the R/W layer copied, the CRIU images installed
// (with and without the relative-symlink staging trick), `start --checkpoint` on b.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import Docker from 'dockerode';
import { runCli } from '../helpers/cli.js';
import { readLabState, type LabState, type LabCloudlet } from '../../src/lab/state.js';
import { engineCriuSettings } from '../../src/lab/engines.js';
import { DockerEngine } from '../../src/engine/docker.js';
import { engineRuncRoot, runcCheckpoint, CheckpointFailedError } from '../../src/engine/runc.js';
import { readCriuStats } from '../../src/engine/criu-stats.js';
import {
  installCheckpoint,
  pruneContainerdCheckpointCopies,
  removeInstalledCheckpoint,
  readRestoreStats,
  STAGE_DIR,
} from '../../src/engine/checkpoint-install.js';
import { run } from '../../src/util/exec.js';

const isRoot = process.getuid?.() === 0;
const LAB_ENV = {
  CLOUDLET_LAB_DIR: '/var/lib/cloudlet/test-engine-lab',
  CLOUDLET_LAB_RUN_DIR: '/run/cloudlet-test-engine',
  CLOUDLET_LAB_PREFIX: 'cltste-',
};
const WORK = join(LAB_ENV.CLOUDLET_LAB_DIR, 'engine-test-work');

let state: LabState | null = null;
let nodeA: LabCloudlet;
let nodeB: LabCloudlet;
let engA: DockerEngine;
let engB: DockerEngine;

const runcRoot = (c: LabCloudlet): string => engineRuncRoot(c.engine.execRoot);
const xdgOf = (c: LabCloudlet): string => c.engine.xdgRuntimeDir;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const ms = (x: number): string => `${x.toFixed(0)} ms`;

before(async () => {
  if (!isRoot) return;
  await runCli(['lab', 'down'], { env: LAB_ENV }); // leftovers of an interrupted run
  const r = await runCli(['lab', 'up', '--cloudlets', '2'], { env: LAB_ENV, timeoutMs: 600_000 });
  assert.equal(r.code, 0, `lab up: ${r.stderr}${r.stdout}`);
  state = readLabState(LAB_ENV.CLOUDLET_LAB_DIR);
  assert.ok(state, 'lab state written');
  nodeA = state.cloudlets.find((c) => c.name === 'a')!;
  nodeB = state.cloudlets.find((c) => c.name === 'b')!;
  engA = new DockerEngine(nodeA.engine.socket);
  engB = new DockerEngine(nodeB.engine.socket);
  await mkdir(WORK, { recursive: true });
});

after(async () => {
  if (!isRoot) return;
  const r = await runCli(['lab', 'down'], { env: LAB_ENV });
  assert.equal(r.code, 0, `lab down in after(): ${r.stderr}`);
});

/**
 * Reads a file in a container through exec (trimmed stdout). The services rewrite their
 * files in place (truncate, then write), so an empty read is retried.
 */
async function catIn(eng: DockerEngine, id: string, path: string): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await eng.exec(id, ['cat', path]);
    assert.equal(r.exitCode, 0, `cat ${path}: ${r.stderr}`);
    if (r.stdout.trim() !== '' || i >= 20) return r.stdout.trim();
    await sleep(20);
  }
}

async function waitFor<T>(what: string, fn: () => Promise<T | null>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** Twin on the destination: create with the source's options, copy the R/W layer (cp -a). */
async function makeTwin(src: { upperDir: string | null; createOptions: Docker.ContainerCreateOptions }, name?: string): Promise<string> {
  const opts = { ...src.createOptions, ...(name ? { name } : {}) };
  const id = await engB.createContainer(opts);
  const twin = await engB.inspectContainer(id);
  assert.ok(src.upperDir && twin.upperDir, 'overlay2 upper dirs');
  await run('cp', ['-a', `${src.upperDir}/.`, `${twin.upperDir}/`]);
  return id;
}

test('engine: runc checkpoint on a, restore of a twin on b', { skip: !isRoot && 'needs root' }, async (t) => {
  await t.test('(a) busybox counter resumes on b from the value it had on a', async () => {
    const script = 'i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; [ $((i % 10)) = 0 ] && echo tick $i; sleep 0.1; done';
    const srcId = await engA.createContainer({
      name: 'counter',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', script],
      HostConfig: { NetworkMode: 'none' },
    });
    await engA.startContainer(srcId);
    await waitFor('counter >= 10 on a', async () => (Number(await catIn(engA, srcId, '/tmp/counter')) >= 10 ? true : null));
    const src = await engA.inspectContainer(srcId);
    assert.equal(src.running, true);
    assert.equal(src.imageName, 'cloudlet/busybox:1');
    assert.ok(src.upperDir);

    // The last value seen on a before the dump (the file itself may be caught mid-rewrite).
    const seenOnA = Number(await catIn(engA, srcId, '/tmp/counter'));
    const imageDir = join(WORK, 'counter', 'img');
    const workDir = join(WORK, 'counter', 'work');
    const cp = await runcCheckpoint({ runcRoot: runcRoot(nodeA), containerId: srcId, imageDir, workDir, leaveRunning: false });
    assert.ok(cp.stats, 'stats-dump parsed');
    t.diagnostic(
      `busybox runc checkpoint (final): wall ${ms(cp.wallMs)}, frozen ${ms(cp.stats.frozenTimeUs / 1000)}, ` +
        `freezing ${ms(cp.stats.freezingTimeUs / 1000)}, memdump ${ms(cp.stats.memdumpTimeUs / 1000)}, ` +
        `memwrite ${ms(cp.stats.memwriteTimeUs / 1000)}, pages written ${cp.stats.pagesWritten}/${cp.stats.pagesScanned} scanned`,
    );

    // Our decoder agrees with crit on every field of the same file.
    const crit = JSON.parse((await run('crit', ['show', join(workDir, 'stats-dump')])).stdout) as {
      entries: Array<{ dump: Record<string, number> }>;
    };
    const d = crit.entries[0]!.dump;
    const mine = (await readCriuStats(join(workDir, 'stats-dump')))!.dump!;
    assert.deepEqual(
      [
        mine.freezingTimeUs,
        mine.frozenTimeUs,
        mine.memdumpTimeUs,
        mine.memwriteTimeUs,
        mine.pagesScanned,
        mine.pagesSkippedParent,
        mine.pagesWritten,
        mine.pagesLazy,
        mine.pagePipes,
        mine.pagePipeBufs,
      ],
      [
        d.freezing_time,
        d.frozen_time,
        d.memdump_time,
        d.memwrite_time,
        d.pages_scanned,
        d.pages_skipped_parent,
        d.pages_written,
        d.pages_lazy,
        d.page_pipes,
        d.page_pipe_bufs,
      ].map(Number),
    );

    await engA.waitNotRunning(srcId);
    // The file as the dump left it: the value at the freeze, or empty if the freeze caught sh
    // between truncating and writing it.
    const fileOnA = readFileSync(join(src.upperDir, 'tmp', 'counter'), 'utf8').trim();
    const lastOnA = fileOnA === '' ? seenOnA : Number(fileOnA);
    assert.ok(lastOnA >= seenOnA && lastOnA >= 10, `counter on a: ${fileOnA} (seen ${seenOnA})`);

    const twinId = await makeTwin(src);
    const twin = await engB.inspectContainer(twinId);
    assert.equal(twin.name, 'counter');
    assert.equal(twin.createOptions.Hostname, src.createOptions.Hostname, 'same hostname as on a');
    assert.equal(twin.imageId, src.imageId, 'same image id on both engines');

    const inst = await installCheckpoint({ dataRoot: nodeB.engine.dataRoot, containerId: twinId, name: 'final', imageDir, xdgRuntimeDir: xdgOf(nodeB) });
    assert.ok(inst.linked.length >= 1 && inst.linked.every((f) => /^pages-\d+\.img$/.test(f)), JSON.stringify(inst.linked));
    assert.equal(readlinkSync(join(inst.checkpointDir, inst.linked[0]!)), `../${STAGE_DIR}/${twinId}-final/${inst.linked[0]}`);
    assert.equal(existsSync(imageDir), false, 'the image dir was consumed');

    const t0 = performance.now();
    await engB.startFromCheckpoint(twinId, 'final');
    t.diagnostic(`busybox startFromCheckpoint (symlinked pages): ${ms(performance.now() - t0)}`);
    const pruned = await pruneContainerdCheckpointCopies(xdgOf(nodeB));
    assert.equal(pruned.length, 1, `one containerd copy leaked and pruned: ${pruned.join(', ')}`);
    await removeInstalledCheckpoint({ dataRoot: nodeB.engine.dataRoot, containerId: twinId, name: 'final', xdgRuntimeDir: xdgOf(nodeB) });

    const first = Number(await catIn(engB, twinId, '/tmp/counter'));
    assert.ok(first >= lastOnA && first < lastOnA + 50, `counter on b ${first} continues from a's ${lastOnA}`);
    const later = await waitFor('counter advancing on b', async () => {
      const v = Number(await catIn(engB, twinId, '/tmp/counter'));
      return v > first + 5 ? v : null;
    });
    assert.ok((await engB.inspectContainer(twinId)).running);
    // Logs of the twin: its output since the restore continues the numbering (a tick every 10).
    const dockerB = new Docker({ socketPath: nodeB.engine.socket });
    const ticks = await waitFor(
      'a tick in the logs on b',
      async () => {
        const logs = (await dockerB.getContainer(twinId).logs({ stdout: true, stderr: true, follow: false })) as unknown as Buffer;
        const found = [...logs.toString('latin1').matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
        return found.length > 0 ? found : null;
      },
      10_000,
    );
    assert.ok(ticks[0]! >= lastOnA && ticks[0]! <= lastOnA + 60, `ticks on b: ${ticks.join(',')}, a ended at ${lastOnA}`);
    const t1 = performance.now();
    await engB.stopContainer(twinId, { timeoutS: 1 });
    assert.equal((await engB.inspectContainer(twinId)).running, false);
    t.diagnostic(`busybox: a stopped at ${lastOnA}, b resumed at ${first}, reached ${later}; stop on b ${ms(performance.now() - t1)}`);
    assert.equal(await engB.removeContainer(twinId, { force: true }), true);
    assert.equal(await engB.containerExists(twinId), false);
    assert.equal(await engB.removeContainer(twinId), false);
    await engA.removeContainer(srcId, { force: true });
  });

  await t.test('(b, c) 256 MiB Node.js state: leave-running dump keeps a running; restores on b with and without staging', async () => {
    const script = [
      "const fs=require('fs'),crypto=require('crypto');",
      'const N=256*1024*1024;const buf=Buffer.allocUnsafe(N);',
      'const u=new Uint32Array(buf.buffer,buf.byteOffset,N/4);',
      'let x=20261128;for(let i=0;i<u.length;i++){x^=x<<13;x^=x>>>17;x^=x<<5;u[i]=x>>>0;}',
      "const sum=()=>crypto.createHash('sha256').update(buf).digest('hex');",
      'const c0=sum();let n=0;',
      "setInterval(()=>{n++;fs.writeFileSync('/tmp/state',n+' '+c0+'\\n');",
      "if(fs.existsSync('/tmp/verify-req')){fs.unlinkSync('/tmp/verify-req');fs.writeFileSync('/tmp/verify',n+' '+sum()+'\\n');}},100);",
    ].join('');
    const srcId = await engA.createContainer({
      name: 'state256',
      Image: 'cloudlet/node:20',
      Cmd: ['node', '-e', script],
      HostConfig: { NetworkMode: 'none' },
    });
    await engA.startContainer(srcId);
    const readState = async (eng: DockerEngine, id: string): Promise<{ n: number; sum: string }> => {
      const [n, sum] = (await catIn(eng, id, '/tmp/state')).split(' ');
      return { n: Number(n), sum: sum! };
    };
    const verify = async (eng: DockerEngine, id: string): Promise<string> => {
      assert.equal((await eng.exec(id, ['touch', '/tmp/verify-req'])).exitCode, 0);
      return waitFor('verify checksum', async () => {
        const r = await eng.exec(id, ['cat', '/tmp/verify']);
        return r.exitCode === 0 && r.stdout.trim() ? r.stdout.trim().split(' ')[1]! : null;
      });
    };
    const s0 = await waitFor(
      'node state on a',
      async () => {
        const s = await readState(engA, srcId);
        return s.n >= 3 ? s : null;
      },
      60_000,
    );
    assert.match(s0.sum, /^[0-9a-f]{64}$/);
    const src = await engA.inspectContainer(srcId);

    // (c) --leave-running: a short freeze, then the container carries on at a.
    const lrImg = join(WORK, 'state-lr', 'img');
    const lr = await runcCheckpoint({
      runcRoot: runcRoot(nodeA),
      containerId: srcId,
      imageDir: lrImg,
      workDir: join(WORK, 'state-lr', 'work'),
      leaveRunning: true,
    });
    t.diagnostic(
      `256 MiB runc checkpoint --leave-running: wall ${ms(lr.wallMs)}, frozen ${ms(lr.stats!.frozenTimeUs / 1000)}, ` +
        `memdump ${ms(lr.stats!.memdumpTimeUs / 1000)}, memwrite ${ms(lr.stats!.memwriteTimeUs / 1000)}, pages written ${lr.stats!.pagesWritten}`,
    );
    assert.ok(lr.stats!.pagesWritten >= 65536, `>= 256 MiB of pages written: ${lr.stats!.pagesWritten}`);
    assert.equal((await engA.inspectContainer(srcId)).running, true, 'still running on a after --leave-running');
    const afterLr = await readState(engA, srcId);
    await waitFor('counter advancing on a after --leave-running', async () => ((await readState(engA, srcId)).n > afterLr.n + 3 ? true : null));

    // Final dump.
    const finImg = join(WORK, 'state-final', 'img');
    const fin = await runcCheckpoint({
      runcRoot: runcRoot(nodeA),
      containerId: srcId,
      imageDir: finImg,
      workDir: join(WORK, 'state-final', 'work'),
      leaveRunning: false,
    });
    t.diagnostic(
      `256 MiB runc checkpoint (final): wall ${ms(fin.wallMs)}, frozen ${ms(fin.stats!.frozenTimeUs / 1000)}, ` +
        `memdump ${ms(fin.stats!.memdumpTimeUs / 1000)}, memwrite ${ms(fin.stats!.memwriteTimeUs / 1000)}, pages written ${fin.stats!.pagesWritten}`,
    );
    await engA.waitNotRunning(srcId);
    const fileOnA = readFileSync(join(src.upperDir!, 'tmp', 'state'), 'utf8').trim();
    const lastOnA = fileOnA === '' ? afterLr.n : Number(fileOnA.split(' ')[0]);

    // (b) restore with staged pages (relative symlinks).
    const twinId = await makeTwin(src);
    const inst = await installCheckpoint({
      dataRoot: nodeB.engine.dataRoot,
      containerId: twinId,
      name: 'final',
      imageDir: finImg,
      xdgRuntimeDir: xdgOf(nodeB),
    });
    assert.ok(inst.linked.length >= 1);
    await run('sync', []); // the dumps' dirty pages are written back before timing restores
    const t0 = performance.now();
    await engB.startFromCheckpoint(twinId, 'final');
    const withLinks = performance.now() - t0;
    const rsLinks = await readRestoreStats(nodeB.engine.dataRoot, twinId, engineCriuSettings(nodeB.engine).workDir);
    const copies = readdirSync(xdgOf(nodeB)).filter((n) => n.startsWith('ctrd-checkpoint'));
    assert.equal(copies.length, 1, `containerd left its copy: ${copies.join(', ')}`);
    assert.deepEqual(await pruneContainerdCheckpointCopies(xdgOf(nodeB)), copies);
    await removeInstalledCheckpoint({ dataRoot: nodeB.engine.dataRoot, containerId: twinId, name: 'final', xdgRuntimeDir: xdgOf(nodeB) });
    const onB = await readState(engB, twinId);
    assert.ok(onB.n >= lastOnA && onB.n < lastOnA + 50, `counter on b ${onB.n} continues from a's ${lastOnA}`);
    assert.equal(onB.sum, s0.sum);
    assert.equal(await verify(engB, twinId), s0.sum, 'the 256 MiB buffer hashes the same after the restore');

    // The same service restored once WITHOUT staging: containerd copies every page.
    const fullId = await makeTwin(src, 'state256-full');
    const instFull = await installCheckpoint({ dataRoot: nodeB.engine.dataRoot, containerId: fullId, name: 'lr', imageDir: lrImg, xdgRuntimeDir: null });
    assert.deepEqual(instFull.linked, []);
    await run('sync', []);
    const t1 = performance.now();
    await engB.startFromCheckpoint(fullId, 'lr');
    const fullCopy = performance.now() - t1;
    const rsFull = await readRestoreStats(nodeB.engine.dataRoot, fullId, engineCriuSettings(nodeB.engine).workDir);
    assert.equal(await verify(engB, fullId), s0.sum);
    const pruned = await pruneContainerdCheckpointCopies(xdgOf(nodeB));
    assert.equal(pruned.length, 1);
    await removeInstalledCheckpoint({ dataRoot: nodeB.engine.dataRoot, containerId: fullId, name: 'lr', xdgRuntimeDir: null });
    t.diagnostic(
      `256 MiB startFromCheckpoint: ${ms(withLinks)} with symlinked pages (CRIU restore_time ${ms((rsLinks?.restoreTimeUs ?? NaN) / 1000)}, ` +
        `${rsLinks?.pagesRestored} pages), ${ms(fullCopy)} with containerd's full copy (CRIU restore_time ${ms((rsFull?.restoreTimeUs ?? NaN) / 1000)})`,
    );
    assert.ok(withLinks < fullCopy, 'staging beats the full copy');

    for (const id of [twinId, fullId]) await engB.removeContainer(id, { force: true });
    await engA.removeContainer(srcId, { force: true });
  });

  await t.test('a failed dump throws CheckpointFailedError with the tail of dump.log; the container carries on', async () => {
    // An established TCP connection (over loopback) without tcpEstablished: CRIU refuses.
    const id = await engA.createContainer({
      name: 'tcp-pair',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', 'sleep 1000 | nc -l -p 1234 >/dev/null & sleep 0.3; sleep 1000 | nc 127.0.0.1 1234 >/dev/null'],
      HostConfig: { NetworkMode: 'none' },
    });
    await engA.startContainer(id);
    await sleep(800);
    const workDir = join(WORK, 'bad', 'work');
    await assert.rejects(
      runcCheckpoint({ runcRoot: runcRoot(nodeA), containerId: id, imageDir: join(WORK, 'bad', 'img'), workDir, leaveRunning: false }),
      (err: unknown) => {
        assert.ok(err instanceof CheckpointFailedError, String(err));
        assert.equal(err.code, 'checkpoint_failed');
        assert.match(err.dumpLogTail, /tcp-established|TCP/i);
        t.diagnostic(`failed dump: ${err.message.split('\n').slice(0, 2).join(' | ')}`);
        return true;
      },
    );
    assert.equal((await engA.inspectContainer(id)).running, true, 'still running at a after the failed dump');
    // With tcpEstablished the same dump succeeds (skipInFlight reaches CRIU through its config file).
    const okWork = join(WORK, 'tcp', 'work');
    const ok = await runcCheckpoint({
      runcRoot: runcRoot(nodeA),
      containerId: id,
      imageDir: join(WORK, 'tcp', 'img'),
      workDir: okWork,
      leaveRunning: true,
      tcpEstablished: true,
      skipInFlight: true,
    });
    assert.ok(ok.stats && ok.stats.pagesWritten > 0);
    assert.match(readFileSync(join(okWork, 'dump.log'), 'utf8'), /Parsing config file .*cloudlet-criu\.conf/);
    assert.ok(
      readdirSync(join(WORK, 'tcp', 'img')).some((f) => f.startsWith('tcp-stream-')),
      'tcp-stream images written',
    );
    assert.equal((await engA.inspectContainer(id)).running, true);
    await engA.removeContainer(id, { force: true });
  });
});
