// Migration to a cloudlet that lacks the container's image: the source asks the destination
// which layers it holds, ships only the missing ones as an overlay (here: one small app
// layer over cloudlet/busybox:1, which b has), b synthesizes the image with the same id and
// the container continues there. Back to a, which still has the image, nothing is shipped.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { useLab, execIn, readCounter } from '../helpers/lab.js';
import { IMAGE_CACHE_DIR } from '../../src/lab/lab.js';
import { buildBaseImageArchives, loadImageArchive, BUSYBOX_IMAGE } from '../../src/images/base-images.js';
import { writeImageArchive, type LayerFile } from '../../src/images/archive.js';
import { sha256File, sortedTree, writeDeterministicTar } from '../../src/images/det-tar.js';
import { BUSYBOX_COUNTER_SCRIPT } from '../../src/workloads/stateful-service.js';
import { SPARE_HOLDER_NAME } from '../../src/network/netns-holder.js';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const APP = 'cloudlet-test/mimg-app:1';

/** cloudlet/busybox:1 plus one small layer (/app/hello, /app/notes.txt); same fs as the cached layers. */
async function buildApp(work: string): Promise<{ archivePath: string; imageId: string; wholeBytes: number; appLayerBytes: number }> {
  const bb = (await buildBaseImageArchives(IMAGE_CACHE_DIR)).find((x) => x.name === BUSYBOX_IMAGE)!;
  const root = join(work, 'rootfs');
  await mkdir(join(root, 'app'), { recursive: true });
  await chmod(join(root, 'app'), 0o755);
  await writeFile(join(root, 'app', 'hello'), 'hello from the app layer\n');
  await writeFile(join(root, 'app', 'notes.txt'), 'migrated image layer\n'.repeat(1000));
  for (const f of ['hello', 'notes.txt']) await chmod(join(root, 'app', f), 0o644);
  const layerPath = join(work, 'app-layer.tar');
  await writeDeterministicTar(root, await sortedTree(root), layerPath);
  const diffId = await sha256File(layerPath);
  const layers: LayerFile[] = [
    ...bb.diffIds.map((d) => ({ diffId: d, path: join(IMAGE_CACHE_DIR, 'layers', `${d.slice(7)}.tar`), createdBy: BUSYBOX_IMAGE })),
    { diffId, path: layerPath, createdBy: 'mimg test: /app' },
  ];
  const archivePath = join(work, 'app.tar');
  const imageId = await writeImageArchive({ name: APP, cmd: ['sh'], layers }, join(work, 'stage'), archivePath);
  let wholeBytes = 0;
  for (const l of layers) wholeBytes += (await stat(l.path)).size;
  return { archivePath, imageId, wholeBytes, appLayerBytes: (await stat(layerPath)).size };
}

describe('migration ships the missing image layers', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('mimg');
  let work = '';
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('app image on busybox, absent on b: only its own layer travels, same image id, counter continues', async (t) => {
    await mkdir(IMAGE_CACHE_DIR, { recursive: true });
    work = await mkdtemp(join(IMAGE_CACHE_DIR, '.mimg-test-'));
    const app = await buildApp(work);
    const aCl = lab.state().cloudlets.find((c) => c.name === 'a')!;
    await loadImageArchive(aCl.engine.socket, app.archivePath);
    const a = lab.docker('a');
    const b = lab.docker('b');
    assert.equal((await a.getImage(APP).inspect()).Id, app.imageId);
    await assert.rejects(b.getImage(app.imageId).inspect(), 'b lacks the app image');
    assert.ok(await b.getImage(BUSYBOX_IMAGE).inspect(), 'b has the busybox base');

    const c = await a.createContainer({
      name: 'appctr',
      Image: APP,
      Cmd: ['sh', '-c', `cat /app/hello > /tmp/seen; ${BUSYBOX_COUNTER_SCRIPT}`],
      HostConfig: { NetworkMode: 'none' },
    });
    await c.start();
    await sleep(1500);
    const before = await readCounter(a, 'appctr');
    assert.ok(before > 0);

    const r = await lab.cliJson(['migrate', 'appctr', '--from', 'a', '--to', 'b', '--rounds', '1'], 300_000);
    t.diagnostic(
      `image shipped: ${JSON.stringify(r.imageShipped)} (whole image ${app.wholeBytes} B, app layer ${app.appLayerBytes} B); ` +
        `total ${r.totalMs} ms, downtime ${r.downtimeMs} ms, rounds ${r.bytesSent} B`,
    );
    assert.equal(r.state, 'done', JSON.stringify(r.error));
    assert.ok(r.imageShipped, 'the image was shipped');
    assert.equal(r.imageShipped.layers, 1, 'only the app layer');
    assert.ok(r.imageShipped.bytes < app.wholeBytes / 10, `shipped ${r.imageShipped.bytes} B, whole image ${app.wholeBytes} B`);
    assert.ok(r.imageShipped.ms > 0 && r.totalMs >= r.imageShipped.ms, 'image time inside the total');

    // b has the image with the original id (and its tag); the container continues there.
    assert.equal((await b.getImage(app.imageId).inspect()).Id, app.imageId);
    assert.equal((await b.getImage(APP).inspect()).Id, app.imageId);
    assert.equal((await b.getContainer('appctr').inspect()).State.Running, true);
    assert.equal(
      (await a.listContainers({ all: true })).some((x) => x.Names.includes('/appctr')),
      false,
    );
    const after1 = await readCounter(b, 'appctr');
    await sleep(500);
    const after2 = await readCounter(b, 'appctr');
    assert.ok(after1 >= before, `counter continued: ${before} -> ${after1}`);
    assert.ok(after2 > after1, 'counter keeps counting on b');
    assert.equal((await execIn(b, 'appctr', ['cat', '/tmp/seen'])).trim(), 'hello from the app layer');
    assert.equal((await execIn(b, 'appctr', ['wc', '-l', '/app/notes.txt'])).trim().split(/\s+/)[0], '1000');

    // Back to a, which still has the image: nothing to ship.
    const back = await lab.cliJson(['migrate', 'appctr', '--from', 'b', '--to', 'a', '--rounds', '0'], 300_000);
    assert.equal(back.state, 'done', JSON.stringify(back.error));
    assert.equal(back.imageShipped, null);
    assert.equal((await a.getContainer('appctr').inspect()).State.Running, true);

    // b with neither the app image nor its base: the whole image goes (no base to diff against).
    await b.getImage(APP).remove({ force: true });
    // cloudletd's spare network namespace holder runs the busybox image: it goes first.
    await b
      .getContainer(SPARE_HOLDER_NAME)
      .remove({ force: true })
      .catch(() => undefined);
    await b.getImage(BUSYBOX_IMAGE).remove({ force: true });
    await assert.rejects(b.getImage(app.imageId).inspect());
    const whole = await lab.cliJson(['migrate', 'appctr', '--from', 'a', '--to', 'b', '--rounds', '0'], 300_000);
    t.diagnostic(`no base on b: image shipped ${JSON.stringify(whole.imageShipped)}`);
    assert.equal(whole.state, 'done', JSON.stringify(whole.error));
    assert.equal(whole.imageShipped?.layers, 2);
    assert.ok(whole.imageShipped.bytes >= app.wholeBytes, `whole image: ${whole.imageShipped.bytes} B`);
    assert.equal((await b.getImage(APP).inspect()).Id, app.imageId);
    assert.equal((await b.getContainer('appctr').inspect()).State.Running, true);
    await b.getContainer('appctr').remove({ force: true });
  });
});
