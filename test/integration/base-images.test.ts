// Base images on a real, private Docker engine: two independent builds give byte-identical
// archives and the same image ids, both load, both run, and the node image sits on the
// busybox layer (what overlay shipping and migration between engines rely on).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBaseImageArchives, imageIdOfArchive, loadImageArchive, type BaseImageArchive } from '../../src/images/base-images.js';
import { ImageError } from '../../src/images/errors.js';
import { sha256File } from '../../src/images/det-tar.js';
import { run } from '../../src/util/exec.js';
import { startPrivateEngine, type PrivateEngine } from '../helpers/private-engine.js';

const isRoot = process.getuid?.() === 0;

describe('base images on a private engine', { skip: isRoot ? false : 'needs root: starts its own dockerd' }, () => {
  let work = '';
  let engine: PrivateEngine | undefined;
  let engine2: PrivateEngine | undefined;
  let first: BaseImageArchive[] = [];
  let second: BaseImageArchive[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cloudlet-images-'));
    let t0 = Date.now();
    first = await buildBaseImageArchives(join(work, 'cache-a'));
    const buildMs = Date.now() - t0;
    t0 = Date.now();
    second = await buildBaseImageArchives(join(work, 'cache-b'));
    const rebuildMs = Date.now() - t0;
    t0 = Date.now();
    await buildBaseImageArchives(join(work, 'cache-a'));
    const cachedMs = Date.now() - t0;
    console.log(`archive build ${buildMs} ms, again in a new cache ${rebuildMs} ms, cached ${cachedMs} ms`);
    for (const a of first) console.log(`${a.name}: ${(await stat(a.archivePath)).size} bytes, ${a.imageId}`);
    t0 = Date.now();
    engine = await startPrivateEngine(join(work, 'engine'));
    console.log(`engine start ${Date.now() - t0} ms`);
  });

  after(async () => {
    // Runs also when a test or `before` failed: the engine must never outlive the test.
    try {
      await Promise.all([engine?.stop(), engine2?.stop()]);
    } finally {
      if (work) await rm(work, { recursive: true, force: true });
    }
  });

  it('gives the same archives and image ids when built twice', async () => {
    assert.equal(first.length, 2);
    assert.deepEqual(
      first.map((a) => [a.name, a.imageId, a.diffIds]),
      second.map((a) => [a.name, a.imageId, a.diffIds]),
    );
    for (let i = 0; i < first.length; i++) {
      assert.equal(await sha256File(first[i]!.archivePath), await sha256File(second[i]!.archivePath));
      assert.equal(await imageIdOfArchive(first[i]!.archivePath), first[i]!.imageId);
    }
  });

  it('builds the node image on the busybox layer', () => {
    const [busybox, node] = first;
    assert.equal(busybox!.diffIds.length, 1);
    assert.equal(node!.diffIds.length, 2);
    assert.equal(node!.diffIds[0], busybox!.diffIds[0]);
  });

  it('loads both archives; the engine reports the computed ids and layers', async () => {
    for (const a of first) {
      const t0 = Date.now();
      await loadImageArchive(engine!.host, a.archivePath);
      console.log(`load ${a.name}: ${Date.now() - t0} ms`);
      const info = await engine!.docker.getImage(a.name).inspect();
      assert.equal(info.Id, a.imageId);
      assert.deepEqual(info.RootFS.Layers, a.diffIds);
    }
    // Loading again is a no-op for the engine, and must not be reported as a failure.
    await loadImageArchive(engine!.host, first[0]!.archivePath);
  });

  it('gives the same image ids on a second engine', async () => {
    const e2 = await startPrivateEngine(join(work, 'engine2'));
    engine2 = e2;
    for (const a of second) {
      await loadImageArchive(e2.socket, a.archivePath);
      const info = await e2.docker.getImage(a.name).inspect();
      const other = await engine!.docker.getImage(a.name).inspect();
      assert.equal(info.Id, other.Id);
    }
  });

  it('passes the doctor engine check (experimental engine)', async () => {
    const { engineTargets, probeEngine, engineChecks } = await import('../../src/doctor/checks.js');
    const { targets } = engineTargets(engine!.host);
    const checks = engineChecks(await Promise.all(targets!.map((t) => probeEngine(t))));
    assert.equal(checks.length, 1);
    assert.equal(checks[0]!.status, 'ok', checks[0]!.detail);
  });

  it('runs node in cloudlet/node:20', async () => {
    const { stdout } = await run('docker', ['-H', engine!.host, 'run', '--rm', '--network', 'none', 'cloudlet/node:20', 'node', '-e', 'console.log(1+1)']);
    assert.equal(stdout.trim(), '2');
  });

  it('runs sh in cloudlet/busybox:1', async () => {
    const { stdout } = await run('docker', ['-H', engine!.host, 'run', '--rm', '--network', 'none', 'cloudlet/busybox:1', 'sh', '-c', 'echo hi; ls -ld /tmp']);
    const [hi, tmpLine] = stdout.trim().split('\n');
    assert.equal(hi, 'hi');
    assert.match(tmpLine!, /^drwxrwxrwt/);
  });

  it('reports a refused archive as an ImageError', async () => {
    const bad = join(work, 'bad.tar');
    await writeFile(bad, Buffer.alloc(4096, 7));
    await assert.rejects(loadImageArchive(engine!.host, bad), (err: unknown) => {
      assert.ok(err instanceof ImageError);
      assert.equal(err.code, 'image_load_failed');
      assert.equal(err.context.archivePath, bad);
      return true;
    });
  });
});
