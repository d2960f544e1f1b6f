// The migration, handoff and overlay paths on an engine other than the default (issue 18.7),
// on a lab whose two cloudlets both run it: `CLOUDLET_TEST_ENGINES` (comma-separated kinds,
// default docker28) gives one lab per kind. The whole suite runs on the default engine
// (docker20); most of its migration tests use containers with a network namespace of their
// own, which Docker 28 refuses at prepare (engines.test.ts), so this is the subset that a
// Docker 28 cloudlet must pass: a service in a netns holder handed off with its memory, its R/W
// layer and a named volume; the handoff service (from an overlay) there and back under its
// client; an overlay synthesized on first request with the source's image id.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertRoundTripHandoff, execIn, readCounter, removeContainers, startCounterInHolder, useLab } from '../helpers/lab.js';
import type { HandoffBenchResult } from '../../src/bench/handoff.js';
import type { OverlayBenchResult } from '../../src/bench/overlay.js';
import type { MigrationReport } from '../../src/migration/types.js';
import { ENGINE_KINDS, type EngineKind } from '../../src/lab/state.js';

const isRoot = process.getuid?.() === 0;
const kinds = (process.env.CLOUDLET_TEST_ENGINES ?? 'docker28').split(',').map((k) => k.trim()) as EngineKind[];
for (const k of kinds) if (!ENGINE_KINDS.includes(k)) throw new Error(`CLOUDLET_TEST_ENGINES: unknown engine kind '${k}'`);

for (const kind of kinds) {
  describe(`handoffs and overlays between two ${kind} cloudlets`, { skip: !isRoot && 'needs root' }, () => {
    const lab = useLab(`k${kind.replace(/[^a-z0-9]/g, '').slice(-6)}`, { engines: `a=${kind},b=${kind}` });

    test('a counter in a holder moves a -> b with its memory, R/W layer and volume', async () => {
      assert.deepEqual(
        lab.state().cloudlets.map((c) => c.engine.kind),
        [kind, kind],
      );
      const a = lab.docker('a');
      const [holder, name] = ['kc-netns', 'kc'];
      await startCounterInHolder(a, { holder, name, binds: ['kc-data:/vol'] });
      try {
        await execIn(a, name, ['sh', '-c', 'mkdir -p /data && echo rw > /data/note && echo vol > /vol/note']);
        await new Promise((r) => setTimeout(r, 1000));
        const before = await readCounter(a, name);
        const r = await lab.cli(['migrate', name, '--from', 'a', '--to', 'b', '--json'], 300_000);
        const report = JSON.parse(r.stdout) as MigrationReport;
        assert.equal(report.state, 'done', report.error?.message ?? r.stderr);
        const b = lab.docker('b');
        const after = await readCounter(b, name);
        assert.ok(after >= before, `the counter went on from ${before} (now ${after}), not from 1`);
        assert.equal((await execIn(b, name, ['cat', '/data/note', '/vol/note'])).trim(), 'rw\nvol');
      } finally {
        await removeContainers(lab, ['a', 'b'], [name, holder]);
        for (const node of ['a', 'b']) {
          await lab
            .docker(node)
            .getVolume('kc-data')
            .remove()
            .catch(() => undefined);
        }
      }
    });

    test('the handoff service moves a -> b -> a under its client, connections kept', async (t) => {
      const r = await lab.cliJson<HandoffBenchResult>(['bench', 'handoff', '--scenario', 'direct', '--netns-holder', '--repeat', '2'], 600_000);
      assertRoundTripHandoff(t, r, kind);
    });

    test('an overlay is synthesized on first request with the image id it has at a', async (t) => {
      const r = await lab.cliJson<OverlayBenchResult>(['bench', 'overlay', '--workloads', 'small', '--codecs', 'lz4', '--json'], 600_000);
      const w = r.workloads[0]!;
      t.diagnostic(`${kind}: synthesis ${w.synthesisMs} ms, prototype's method ${w.baselinePrototypeSynthesisMs} ms`);
      assert.equal(r.engine.kind, kind);
      assert.equal(w.imageIdMatches, true, 'overlay, prototype and whole image: the id of a');
      assert.equal(w.codecs[0]!.serviceAnswered, true);
    });
  });
}
