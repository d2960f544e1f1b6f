// Docker 28 with the containerd image store (`containerd-snapshotter`, Docker 29's default) on a
// real lab: a and b run docker28-containerd, c the classic Docker 20.10. Between a and b a
// service in a netns holder moves with its memory, its R/W layer (a snapshot of containerd's
// overlayfs snapshotter, which `docker inspect` does not name) and its connections; its image
// reaches b as an overlay synthesized on that store. A handoff to c (the other image store) is
// refused at c's prepare, naming both engines, before anything is frozen.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertRoundTripHandoff, execIn, readCounter, removeContainers, startCounterInHolder, useLab } from '../helpers/lab.js';
import type { MigrationPlan } from '../../src/migration/source.js';
import type { HandoffBenchResult } from '../../src/bench/handoff.js';
import type { MigrationReport } from '../../src/migration/types.js';

const isRoot = process.getuid?.() === 0;

describe('Docker 28 with the containerd image store', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('ctrd', { cloudlets: 3, engines: 'a=docker28-containerd,b=docker28-containerd,c=docker20' });

  test('the lab and doctor say which image store runs where', async () => {
    const status = await lab.cliJson<{
      cloudlets: { name: string; engine: string; imageStore: string; engineAdapter: { family?: string; checkpoint?: string } }[];
    }>(['lab', 'status', '--json']);
    assert.deepEqual(
      status.cloudlets.map((c) => `${c.name}=${c.engine}/${c.imageStore}/${c.engineAdapter.family}`),
      ['a=docker28-containerd/containerd/docker28-containerd', 'b=docker28-containerd/containerd/docker28-containerd', 'c=docker20/overlay2/docker20'],
    );
    assert.match(status.cloudlets[0]!.engineAdapter.checkpoint ?? '', /netns holder/);
    assert.match(status.cloudlets[2]!.engineAdapter.checkpoint ?? '', /every network mode/);
    const text = await lab.cli(['lab', 'status']);
    assert.match(text.stdout, /^a: Docker 28\.\S+ \(docker28-containerd\): checkpoint\/restore of services in a netns holder/m);
    const info = await lab.docker('a').info();
    assert.equal(info.Driver, 'overlayfs', 'the containerd store reports its snapshotter');
    const doctor = await lab.cli(['doctor', '--json']);
    assert.match(doctor.stdout, /docker28-containerd, containerd image store\), experimental: checkpoint\/restore of services in a netns holder/);
  });

  test('a busybox counter in a holder moves a -> b with its memory and its R/W layer', async () => {
    const a = lab.docker('a');
    const holder = 'ctrd-counter-netns';
    const name = 'ctrd-counter';
    await startCounterInHolder(a, { holder, name });
    try {
      // A file only the R/W layer holds (the upper dir fssync reads on this store).
      await execIn(a, name, ['sh', '-c', 'mkdir -p /data && echo kept-on-containerd > /data/note']);
      await new Promise((r) => setTimeout(r, 1000));
      const before = await readCounter(a, name);
      const r = await lab.cli(['migrate', name, '--from', 'a', '--to', 'b', '--json'], 300_000);
      const report = JSON.parse(r.stdout) as MigrationReport;
      assert.equal(report.state, 'done', report.error?.message);
      const b = lab.docker('b');
      assert.equal((await b.getContainer(name).inspect()).State.Running, true);
      const after = await readCounter(b, name);
      assert.ok(after >= before, `the counter went on from ${before} (now ${after}), not from 1`);
      assert.equal((await execIn(b, name, ['cat', '/data/note'])).trim(), 'kept-on-containerd');
      await assert.rejects(a.getContainer(name).inspect(), 'removed at a');
    } finally {
      await removeContainers(lab, ['a', 'b'], [name, holder]);
    }
  });

  test('the handoff service (from an overlay) moves a -> b -> a with its connections', async (t) => {
    const r = await lab.cliJson<HandoffBenchResult>(['bench', 'handoff', '--scenario', 'direct', '--netns-holder', '--repeat', '2'], 600_000);
    assertRoundTripHandoff(t, r, 'runs');
  });

  test('a handoff to the overlay2 store (Docker 20.10) is refused at prepare, naming both engines', async () => {
    const a = lab.docker('a');
    const holder = 'ctrd-x-netns';
    const name = 'ctrd-x';
    await startCounterInHolder(a, { holder, name });
    try {
      const dry = await lab.cli(['migrate', name, '--from', 'a', '--to', 'c', '--dry-run', '--json']);
      const plan = JSON.parse(dry.stdout) as MigrationPlan;
      assert.equal(dry.code, 1, 'a refused plan exits 1');
      assert.equal(plan.refusals[0]?.code, 'engine_mismatch', JSON.stringify(plan.refusals));
      await new Promise((r) => setTimeout(r, 500));
      const before = await readCounter(a, name);
      const r = await lab.cli(['migrate', name, '--from', 'a', '--to', 'c', '--json'], 300_000);
      const report = JSON.parse(r.stdout) as MigrationReport;
      assert.equal(report.state, 'rolled-back');
      assert.match(report.error!.message, /from Docker 28\.\S+ \(containerd image store\) to Docker 20\.10\.\S+ \(overlay2 image store\)/);
      assert.equal(report.downtimeMs, null, 'never frozen');
      assert.equal(report.rounds.length, 0, 'no round sent');
      assert.equal(report.imageShipped ?? null, null, 'no image shipped');
      await new Promise((r) => setTimeout(r, 500));
      assert.ok((await readCounter(a, name)) > before, 'the counter kept going at a');
      for (const c of [name, holder]) await assert.rejects(lab.docker('c').getContainer(c).inspect(), `nothing made at c (${c})`);
    } finally {
      await removeContainers(lab, ['a'], [name, holder]);
    }
  });
});
