// Overlays end to end on a real lab: both workloads (large: ~200 MB of app files on the node
// base; small: ~2 MB) created on cloudlet a with the CLI, pushed to b, synthesized and started
// on b by the first request, with the original image ids. On the lab engine of
// test/helpers/lab-engine.ts (no handoff here: a service with a namespace of its own runs on
// Docker 28 as on 20.10).
import { SPARE_HOLDER_NAME } from '../../src/network/netns-holder.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useLab, execIn } from '../helpers/lab.js';
import { LAB_ENGINE } from '../helpers/lab-engine.js';
import { IMAGE_CACHE_DIR } from '../../src/lab/lab.js';
import { loadImageArchive } from '../../src/images/base-images.js';
import { buildAppArchive, LARGE_APP, SMALL_APP } from '../../src/workloads/overlay-apps.js';

const isRoot = process.getuid?.() === 0;

describe(`overlays on the lab on ${LAB_ENGINE}`, { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('ovl', { engine: LAB_ENGINE });
  const work = mkdtempSync(join(tmpdir(), 'overlay-it-'));
  process.on('exit', () => rmSync(work, { recursive: true, force: true }));

  for (const [name, spec, codec] of [
    ['small', SMALL_APP, 'zstd'],
    ['large', LARGE_APP, 'lz4'],
  ] as const) {
    test(`${name} workload: created on a, pushed to b, synthesized and started there, same image id`, async (t) => {
      const app = await buildAppArchive(IMAGE_CACHE_DIR, spec);
      const a = lab.state().cloudlets.find((c) => c.name === 'a')!;
      await loadImageArchive(a.engine.socket, app.archivePath);
      const b = lab.docker('b');
      await assert.rejects(b.getImage(app.imageId).inspect(), 'b does not have the app image before');

      const file = join(work, `${name}.ovl`);
      const created = await lab.cliJson(
        ['overlay', 'create', '--node', 'a', '--base', 'cloudlet/node:20', '--app', spec.name, '-o', file, '--codec', codec],
        300_000,
      );
      assert.equal(created.header.app.imageId, app.imageId);
      assert.equal(created.header.layers.length, 1, 'only the app layer is in the overlay');
      t.diagnostic(
        `${name}: overlay ${(created.fileBytes / 1e6).toFixed(2)} MB (${codec}) of ${(created.layerBytes / 1e6).toFixed(2)} MB raw, created in ${created.totalMs} ms`,
      );

      const inspected = await lab.cliJson(['overlay', 'inspect', file]);
      assert.equal(inspected.id, created.id);
      assert.equal(inspected.header.codec, codec);

      // Over the lab link, from inside cloudlet a.
      const pushed = await lab.cliJson(['overlay', 'push', file, '--node', 'b', '--via', 'a'], 300_000);
      assert.equal(pushed.id, created.id);
      t.diagnostic(`${name}: pushed in ${pushed.pushMs} ms`);
      const list = await lab.cliJson(['overlays', '--node', 'b']);
      assert.ok(list.some((o: { id: string }) => o.id === created.id));

      const svc = await lab.cliJson(['run', '--node', 'b', '--overlay', created.id, '--name', `svc-${name}`, '-e', 'GREETING=hi', '--port', '8080'], 300_000);
      t.diagnostic(`${name}: first request ${JSON.stringify(svc.timings)}`);
      assert.equal(svc.synthesized, true);
      assert.equal(svc.imageIdMatches, true);
      assert.equal(svc.imageId, app.imageId);
      assert.match(svc.endpoint, /^http:\/\/10\.250\.2\.2:\d+$/);
      for (const k of ['transferMs', 'decompressMs', 'loadMs', 'createMs', 'startMs', 'totalMs']) assert.equal(typeof svc.timings[k], 'number', k);

      assert.equal((await b.getImage(app.imageId).inspect()).Id, app.imageId, 'image id on b equals the original');
      assert.equal((await b.getContainer(`svc-${name}`).inspect()).State.Running, true);
      let reply = '';
      for (let i = 0; i < 50 && !reply.includes('"files"'); i++) {
        reply = await execIn(b, `svc-${name}`, ['wget', '-qO-', 'http://127.0.0.1:8080/']).catch(() => '');
        if (!reply) await new Promise((r) => setTimeout(r, 100));
      }
      const body = JSON.parse(reply);
      assert.equal(body.files, spec.files);
      assert.equal(body.greeting, 'hi');

      // A second request for the same overlay starts from the image already there.
      const again = await lab.cliJson(['run', '--node', 'b', '--overlay', created.id, '--name', `svc-${name}-2`]);
      assert.equal(again.synthesized, false);
      for (const c of [`svc-${name}`, `svc-${name}-2`]) await b.getContainer(c).remove({ force: true });
    });
  }

  test('an overlay whose base b does not have is refused, naming it', async () => {
    const a = lab.state().cloudlets.find((c) => c.name === 'a')!;
    const file = join(work, 'small-on-busybox.ovl');
    // The small app is built on the node image, which is built on busybox: as an overlay on
    // busybox it needs the node layer too; remove busybox from b so the base is absent there.
    const app = await buildAppArchive(IMAGE_CACHE_DIR, SMALL_APP);
    await loadImageArchive(a.engine.socket, app.archivePath);
    await lab.cliJson(['overlay', 'create', '--node', 'a', '--base', 'cloudlet/busybox:1', '--app', SMALL_APP.name, '-o', file]);
    const b = lab.docker('b');
    // cloudletd's spare network namespace holder runs the busybox image: it goes first.
    await b
      .getContainer(SPARE_HOLDER_NAME)
      .remove({ force: true })
      .catch(() => undefined);
    await b.getImage('cloudlet/busybox:1').remove();
    const r = await lab.cli(['overlay', 'push', file, '--node', 'b', '--json']);
    assert.notEqual(r.code, 0);
    const err = JSON.parse(r.stdout);
    assert.equal(err.error, 'base_image_missing');
    assert.match(err.message, /base image cloudlet\/busybox:1 \(sha256:[0-9a-f]{64}\) of overlay [0-9a-f]{12} is not on cloudlet b/);
    const list = await lab.cliJson(['overlays', '--node', 'b']);
    assert.ok(!list.some((o: { appImageId: string; baseName: string | null }) => o.appImageId === app.imageId && o.baseName === 'cloudlet/busybox:1'));
  });
});
