// Live migration end to end on a real lab: real engines, runc/CRIU dumps, page deltas,
// filesystem batches, restore on the other engine, rollback. On the lab engine of
// test/helpers/lab-engine.ts: on Docker 28 the containers that have a network namespace of
// their own on 20.10 run in a netns holder, and such a namespace is refused at b's prepare.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useLab, execIn, readCounter } from '../helpers/lab.js';
import { containerNames, expectedHolder, LAB_ENGINE, LAB_ENGINE_LABEL, removeWithHolder, RESTORES_OWN_NETNS, startService } from '../helpers/lab-engine.js';
import { BUSYBOX_COUNTER_SCRIPT, STATEFUL_SERVICE_SCRIPT } from '../../src/workloads/stateful-service.js';
import { measureEngineFloor } from '../../src/bench/engine-floor.js';
import { holderCreateOptions, holderNameFor, joiningHolder, SPARE_HOLDER_NAME } from '../../src/network/netns-holder.js';
import type Docker from 'dockerode';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe(`live migration on the lab ${LAB_ENGINE_LABEL}`, { skip: !isRoot && 'needs root' }, () => {
  // Lazy restores, so that both kinds run here: the 256 MiB test asks for an eager one too.
  const lab = useLab('mig', { restore: 'lazy', engine: LAB_ENGINE });

  test('busybox counter with R/W layer changes, a deleted base file and a named volume; pre-copy a -> b', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    await a.createVolume({ Name: 'counter-data' });
    await startService(a, {
      name: 'counter',
      Image: 'cloudlet/busybox:1',
      Cmd: [
        'sh',
        '-c',
        `mkdir -p /data; echo hello > /data/hello; rm /bin/vi; echo persisted > /vol/file; ln -s /data/hello /data/link; ${BUSYBOX_COUNTER_SCRIPT}`,
      ],
      HostConfig: { Binds: ['counter-data:/vol'] },
    });
    await sleep(1500);
    const before = await readCounter(a, 'counter');
    assert.ok(before > 0);

    const r = await lab.cliJson(['migrate', 'counter', '--from', 'a', '--to', 'b', '--rounds', '1'], 300_000);
    t.diagnostic(`busybox: total ${r.totalMs} ms, downtime ${r.downtimeMs} ms, restore ${r.restoreMs} ms, ${r.bytesSent} B`);
    assert.equal(r.state, 'done', JSON.stringify(r.error));
    assert.equal(r.netnsHolder ?? null, expectedHolder('counter'), `with its namespace, ${LAB_ENGINE_LABEL}`);
    assert.equal(r.precopyRounds, 1);
    assert.equal(r.rounds.length, 2);
    for (const k of ['index', 'dumpMs', 'stallMs', 'pagesScanned', 'pagesChanged', 'rawBytes', 'sentBytes', 'codec', 'sendMs', 'bandwidthBps']) {
      assert.ok(k in r.rounds[0], `round field ${k}`);
    }
    assert.ok(r.downtimeMs > 0 && r.totalMs >= r.downtimeMs);

    // Gone from a (with its holder), running on b with the counter continuing (not reset).
    const leftOnA = await containerNames(a);
    assert.ok(!leftOnA.includes('counter') && !leftOnA.includes(holderNameFor('counter')), `nothing of it left on a: ${leftOnA.join(' ')}`);
    const info = await b.getContainer('counter').inspect();
    assert.equal(info.State.Running, true);
    const after1 = await readCounter(b, 'counter');
    await sleep(500);
    const after2 = await readCounter(b, 'counter');
    assert.ok(after1 >= before, `counter continued: ${before} -> ${after1}`);
    assert.ok(after2 > after1, 'counter keeps counting on b');

    // Filesystem: written files, a symlink, a base file deleted, the volume's data.
    assert.equal((await execIn(b, 'counter', ['cat', '/data/hello'])).trim(), 'hello');
    assert.equal((await execIn(b, 'counter', ['readlink', '/data/link'])).trim(), '/data/hello');
    assert.equal((await execIn(b, 'counter', ['sh', '-c', 'test -e /bin/vi && echo present || echo absent'])).trim(), 'absent');
    assert.equal((await execIn(b, 'counter', ['cat', '/vol/file'])).trim(), 'persisted');

    // The engine floor of `bench migrate`: checkpointed and restored in place on b, the
    // counter carries on from where it was and no checkpoint is left behind.
    const floor = await measureEngineFloor(
      lab.state().cloudlets.find((c) => c.name === 'b')!,
      'counter',
    );
    t.diagnostic(`engine floor on b: ${JSON.stringify(floor)}`);
    assert.ok(floor.checkpointMs > 0 && floor.restoreMs > 0 && floor.floorMs === floor.checkpointMs + floor.restoreMs);
    assert.equal((await b.getContainer('counter').inspect()).State.Running, true, 'running again after the floor measurement');
    const after3 = await readCounter(b, 'counter');
    assert.ok(after3 >= after2, `counter continued across the in-place restore: ${after2} -> ${after3}`);
    const info2 = await b.getContainer('counter').inspect();
    assert.deepEqual(
      await readdir(join(lab.state().cloudlets.find((c) => c.name === 'b')!.engine.dataRoot, 'containers', info2.Id, 'checkpoints')).catch(() => []),
      [],
      'no checkpoint left',
    );

    // Managed by b's engine: logs, stop work there.
    await b.getContainer('counter').logs({ stdout: true, stderr: true });
    await b.getContainer('counter').stop({ t: 1 });
    await b.getContainer('counter').remove();
    await removeWithHolder([b], 'counter');
  });

  test('256 MiB Node.js service arrives with an identical checksum and a continuing counter (pre-copy with a lazy restore, then stop-and-copy back with an eager one)', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    // No timer dirtying: the state changes only on requests, so checksums must match exactly.
    await startService(a, {
      name: 'svc',
      Image: 'cloudlet/node:20',
      Cmd: ['node', '-e', STATEFUL_SERVICE_SCRIPT],
      Env: ['STATE_MB=256', 'PORT=8080', 'DIRTY_PAGES_PER_SEC=0'],
    });
    const get = async (docker: typeof a, path: string) => {
      for (let i = 0; ; i++) {
        try {
          return JSON.parse(await execIn(docker, 'svc', ['wget', '-qO-', `http://127.0.0.1:8080${path}`]));
        } catch (err) {
          if (i > 100) throw err;
          await sleep(200);
        }
      }
    };
    await get(a, '/');
    await get(a, '/');
    const onA = await get(a, '/checksum');
    assert.equal(onA.counter, 2);
    const pre = await lab.cliJson(['migrate', 'svc', '--from', 'a', '--to', 'b'], 600_000);
    t.diagnostic(
      `256 MiB pre-copy: total ${pre.totalMs} ms, downtime ${pre.downtimeMs} ms, restore ${pre.restoreMs} ms, post-copy ${pre.postCopyMs} ms, rounds ${pre.precopyRounds} (${pre.stopReason}), ${pre.bytesSent} B`,
    );
    assert.equal(pre.state, 'done', JSON.stringify(pre.error));
    assert.equal(pre.netnsHolder ?? null, expectedHolder('svc'), `with its namespace, ${LAB_ENGINE_LABEL}`);
    assert.ok(pre.precopyRounds >= 1);
    assert.ok(typeof pre.postCopyMs === 'number', 'the lab restores lazily: the last pages arrived after the service ran');
    assert.deepEqual(await get(b, '/checksum'), onA, 'identical state on b');
    assert.equal((await get(b, '/')).counter, 3, 'counter continues on b');

    const onB = await get(b, '/checksum');
    const sc = await lab.cliJson(['migrate', 'svc', '--from', 'b', '--to', 'a', '--rounds', '0', '--restore', 'eager'], 600_000);
    t.diagnostic(`256 MiB stop-and-copy: total ${sc.totalMs} ms, downtime ${sc.downtimeMs} ms, restore ${sc.restoreMs} ms (eager), ${sc.bytesSent} B`);
    assert.equal(sc.state, 'done', JSON.stringify(sc.error));
    assert.equal(sc.precopyRounds, 0);
    assert.equal(sc.postCopyMs, null, 'an eager restore when the handoff asks for one');
    assert.deepEqual(await get(a, '/checksum'), onB, 'identical state back on a');
    await removeWithHolder([a, b], 'svc');
  });

  test('a failure injected before the restore leaves the service running on a with its state', async () => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    await startService(a, { name: 'survivor', Image: 'cloudlet/busybox:1', Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT] });
    await sleep(1000);
    const before = await readCounter(a, 'survivor');
    const r = await lab.cli(['migrate', 'survivor', '--from', 'a', '--to', 'b', '--rounds', '1', '--inject', 'before-restore', '--json'], 300_000);
    assert.notEqual(r.code, 0);
    const report = JSON.parse(r.stdout);
    assert.equal(report.state, 'rolled-back', r.stdout);
    assert.match(report.error.message, /injected fault/);
    // Running on a only, state continuing; nothing left on b.
    assert.equal((await a.getContainer('survivor').inspect()).State.Running, true);
    const after = await readCounter(a, 'survivor');
    assert.ok(after >= before, `counter kept: ${before} -> ${after}`);
    const leftOnB = await containerNames(b);
    assert.ok(!leftOnB.includes('survivor') && !leftOnB.includes(holderNameFor('survivor')), `nothing of it left on b: ${leftOnB.join(' ')}`);
    await removeWithHolder([a], 'survivor');
  });

  test('a handoff whose --max-downtime cannot be met within --max-total is refused before the freeze; --force hands it off', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    t.after(() => removeWithHolder([a, b], 'bounded'));
    await startService(a, { name: 'bounded', Image: 'cloudlet/busybox:1', Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT] });
    await sleep(1000);
    const before = await readCounter(a, 'bounded');
    const bounds = ['--max-downtime', '1ms', '--max-total', '2s'];
    const r = await lab.cli(['migrate', 'bounded', '--from', 'a', '--to', 'b', ...bounds, '--json'], 300_000);
    assert.notEqual(r.code, 0);
    const report = JSON.parse(r.stdout);
    t.diagnostic(`refused: ${report.error?.message}; objective ${JSON.stringify(report.objective)}`);
    assert.equal(report.state, 'rolled-back', r.stdout);
    assert.equal(report.error.code, 'objective_unreachable', r.stdout);
    assert.match(report.error.message, /^refused before the freeze: predicted downtime \d+ ms > --max-downtime 1 ms, .*--max-total 2\.0 s/);
    assert.match(report.error.message, /rollback: destination cleaned up/);
    assert.equal(report.objective.unmet, 'refuse');
    assert.ok(report.objective.predictedDowntimeMs > 1 && report.objective.maxTotalMs === 2000);
    assert.equal(report.rounds.length, 0, 'refused before any round (nothing dumped, nothing frozen)');
    // Never paused: running on a the whole time, its counter going on; nothing left on b.
    const info = await a.getContainer('bounded').inspect();
    assert.equal(info.State.Running, true);
    assert.equal(info.State.Paused, false);
    const after = await readCounter(a, 'bounded');
    assert.ok(after > before, `counter kept counting: ${before} -> ${after}`);
    const leftOnB = await containerNames(b);
    assert.ok(!leftOnB.includes('bounded') && !leftOnB.includes(holderNameFor('bounded')), `nothing of it left on b: ${leftOnB.join(' ')}`);

    // The same bounds with --force: told, and handed off as before.
    const forced = await lab.cliJson(['migrate', 'bounded', '--from', 'a', '--to', 'b', ...bounds, '--force'], 300_000);
    t.diagnostic(`forced: total ${forced.totalMs} ms, downtime ${forced.downtimeMs} ms; ${forced.warnings.join('; ')}`);
    assert.equal(forced.state, 'done', JSON.stringify(forced.error));
    assert.equal(forced.objective.unmet, 'forced');
    assert.equal(forced.netnsHolder ?? null, expectedHolder('bounded'), `with its namespace, ${LAB_ENGINE_LABEL}`);
    assert.match(forced.warnings.join('\n'), /going on with --force/);
    assert.equal((await b.getContainer('bounded').inspect()).State.Running, true);
  });

  // Not Privileged itself: on this machine the engine cannot start a privileged container
  // (CAP_SYS_RESOURCE is outside the bounding set: "unable to apply caps"). What it can start
  // reaches the host as well: CAP_SYS_ADMIN, the host's pid namespace, /etc bind-mounted.
  test("a container with SYS_ADMIN, the host's pids and /etc is refused at b's prepare (its policy), before any freeze; it keeps running on a", async () => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    await startService(a, {
      name: 'hostile',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT],
      HostConfig: { CapAdd: ['SYS_ADMIN'], PidMode: 'host', Binds: ['/etc:/host-etc:ro'] },
    });
    await sleep(1000);
    const before = await readCounter(a, 'hostile');
    const r = await lab.cli(['migrate', 'hostile', '--from', 'a', '--to', 'b', '--rounds', '1', '--json'], 300_000);
    assert.notEqual(r.code, 0);
    const report = JSON.parse(r.stdout);
    assert.equal(report.state, 'rolled-back', r.stdout);
    assert.equal(report.error.code, 'policy_denied', r.stdout);
    const m = report.error.message as string;
    assert.match(m, /container\.spec\.capAdd \(HostConfig\.CapAdd\).*containerPolicy\.capabilities containing "SYS_ADMIN"/);
    assert.match(m, /container\.spec\.pidMode \(HostConfig\.PidMode\).*containerPolicy\.hostNamespaces containing "pid"/);
    assert.match(m, /container\.spec\.binds\[0\]\.source \(HostConfig\.Binds\[0\]\) = "\/etc".*containerPolicy\.bindMountRoots/);
    assert.equal(report.rounds.length, 0, 'refused before any round (nothing dumped, nothing frozen)');
    // Never paused: running on a the whole time, its counter going on; nothing made on b.
    const info = await a.getContainer('hostile').inspect();
    assert.equal(info.State.Running, true);
    assert.equal(info.State.Paused, false);
    const after = await readCounter(a, 'hostile');
    assert.ok(after > before, `counter kept counting: ${before} -> ${after}`);
    const leftOnB = await containerNames(b);
    assert.ok(!leftOnB.includes('hostile') && !leftOnB.includes(holderNameFor('hostile')), `nothing made on b: ${leftOnB.join(' ')}`);
    await removeWithHolder([a], 'hostile');
  });

  test("a counter in a network namespace holder moves with it: b's spare stands for the holder and is replaced, a's holder goes; a shared holder is refused", async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const spareOn = async (d: Docker): Promise<string> => {
      for (let i = 0; i < 100; i++) {
        const s = await d
          .getContainer(SPARE_HOLDER_NAME)
          .inspect()
          .catch(() => null);
        if (s?.State.Running) return s.Id;
        await sleep(100);
      }
      throw new Error(`no running ${SPARE_HOLDER_NAME}`);
    };
    const spareB = await spareOn(b);
    const holder = holderCreateOptions({ name: 'hcounter-netns', image: 'cloudlet/busybox:1', network: 'none' });
    await (await a.createContainer(holder)).start();
    await (
      await a.createContainer(joiningHolder({ name: 'hcounter', Image: 'cloudlet/busybox:1', Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT] }, 'hcounter-netns'))
    ).start();
    await sleep(1000);
    const before = await readCounter(a, 'hcounter');

    const r = await lab.cliJson(['migrate', 'hcounter', '--from', 'a', '--to', 'b', '--rounds', '0'], 300_000);
    t.diagnostic(`holder: total ${r.totalMs} ms, downtime ${r.downtimeMs} ms, restore ${r.restoreMs} ms, holder ${r.netnsHolderFrom}`);
    assert.equal(r.state, 'done', JSON.stringify(r.error));
    assert.equal(r.netnsHolder, 'hcounter-netns');
    assert.equal(r.netnsHolderFrom, 'spare');
    const holderB = await b.getContainer('hcounter-netns').inspect();
    assert.equal(holderB.Id, spareB, "b's spare became the holder");
    assert.equal((await b.getContainer('hcounter').inspect()).HostConfig.NetworkMode, `container:${spareB}`);
    const after1 = await readCounter(b, 'hcounter');
    await sleep(400);
    const after2 = await readCounter(b, 'hcounter');
    assert.ok(after1 >= before && after2 > after1, `counter continued on b: ${before} -> ${after1} -> ${after2}`);
    const left = (await a.listContainers({ all: true })).flatMap((x) => x.Names);
    assert.ok(!left.includes('/hcounter') && !left.includes('/hcounter-netns'), `nothing of it left on a: ${left.join(' ')}`);
    assert.notEqual(await spareOn(b), spareB, 'b made a new spare');

    // A second container in the same holder: moving one would cut the other off.
    await (await b.createContainer(joiningHolder({ name: 'hsharer', Image: 'cloudlet/busybox:1', Cmd: ['sleep', '600'] }, 'hcounter-netns'))).start();
    const refused = await lab.cli(['migrate', 'hcounter', '--from', 'b', '--to', 'a', '--json'], 60_000);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stdout + refused.stderr, /shares the network namespace of hcounter-netns with hsharer/);
    assert.equal((await b.getContainer('hcounter').inspect()).State.Running, true, 'still running on b');
    for (const n of ['hsharer', 'hcounter', 'hcounter-netns']) await b.getContainer(n).remove({ force: true });
  });

  test(
    "a counter with a network namespace of its own is refused at b's prepare, before any freeze, where b's engine cannot restore one (Docker 28); it keeps running on a",
    { skip: RESTORES_OWN_NETNS && `${LAB_ENGINE} restores a namespace of its own: the tests above hand such containers off` },
    async (t) => {
      const a = lab.docker('a');
      const b = lab.docker('b');
      t.after(() => removeWithHolder([a, b], 'ownns'));
      await startService(a, { name: 'ownns', Image: 'cloudlet/busybox:1', Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT] }, 'own');
      await sleep(1000);
      const before = await readCounter(a, 'ownns');
      const r = await lab.cli(['migrate', 'ownns', '--from', 'a', '--to', 'b', '--rounds', '1', '--json'], 300_000);
      assert.notEqual(r.code, 0);
      const report = JSON.parse(r.stdout);
      t.diagnostic(`refused: ${report.error?.message}`);
      assert.equal(report.state, 'rolled-back', r.stdout);
      assert.equal(report.error.code, 'engine_cannot_restore', r.stdout);
      assert.match(report.error.message, /Docker 28\.\S+ cannot restore a container with a network namespace of its own/);
      assert.match(report.error.message, /--netns-holder/);
      assert.equal(report.downtimeMs, null, 'never frozen');
      assert.equal(report.rounds.length, 0, 'refused before any round (nothing dumped, nothing frozen)');
      const info = await a.getContainer('ownns').inspect();
      assert.equal(info.State.Running, true);
      assert.equal(info.State.Paused, false);
      const after = await readCounter(a, 'ownns');
      assert.ok(after > before, `counter kept counting: ${before} -> ${after}`);
      assert.ok(!(await containerNames(b)).includes('ownns'), 'nothing made on b');
    },
  );
});
