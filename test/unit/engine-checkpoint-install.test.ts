// Installing a CRIU image dir as a Docker checkpoint: small files in the checkpoint dir,
// pages-*.img staged under XDG_RUNTIME_DIR and replaced by relative symlinks that resolve
// from containerd's unpack dir (XDG/ctrd-checkpointNNN/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, readFile, readlink, readdir, rm, symlink, utimes } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCheckpoint, removeInstalledCheckpoint, pruneContainerdCheckpointCopies, checkpointPaths } from '../../src/engine/checkpoint-install.js';
import { ConflictError, UsageError } from '../../src/util/errors.js';

const ID = 'ab'.repeat(32);

async function fixture(): Promise<{ root: string; dataRoot: string; xdg: string; img: string }> {
  const root = await mkdtemp(join(tmpdir(), 'cl-ckinst-'));
  const dataRoot = join(root, 'docker');
  const xdg = join(root, 'xdg');
  const img = join(root, 'img');
  await mkdir(join(dataRoot, 'containers', ID), { recursive: true });
  await mkdir(xdg);
  await mkdir(img);
  await writeFile(join(img, 'inventory.img'), 'inv');
  await writeFile(join(img, 'pagemap-1.img'), 'pm');
  await writeFile(join(img, 'pages-1.img'), Buffer.alloc(8192, 1));
  await writeFile(join(img, 'pages-12.img'), Buffer.alloc(4096, 2));
  await writeFile(join(img, 'descriptors.json'), '[]');
  return { root, dataRoot, xdg, img };
}

test('installCheckpoint stages pages-*.img behind relative links that resolve from XDG/ctrd-checkpointNNN', async () => {
  const f = await fixture();
  try {
    const r = await installCheckpoint({ dataRoot: f.dataRoot, containerId: ID, name: 'cp1', imageDir: f.img, xdgRuntimeDir: f.xdg });
    assert.equal(r.checkpointDir, join(f.dataRoot, 'containers', ID, 'checkpoints', 'cp1'));
    assert.equal(r.stageDir, join(f.xdg, 'cloudlet-stage', `${ID}-cp1`));
    assert.deepEqual(r.linked, ['pages-1.img', 'pages-12.img']);
    assert.equal(await readlink(join(r.checkpointDir, 'pages-1.img')), `../cloudlet-stage/${ID}-cp1/pages-1.img`);
    assert.equal(await readFile(join(r.checkpointDir, 'inventory.img'), 'utf8'), 'inv');
    assert.equal(existsSync(f.img), false);
    // What containerd does: copy the dir (links as links) into XDG/ctrd-checkpointNNN.
    const unpack = join(f.xdg, 'ctrd-checkpoint123');
    await mkdir(unpack);
    for (const n of await readdir(r.checkpointDir)) {
      if (n.startsWith('pages-')) await symlink(await readlink(join(r.checkpointDir, n)), join(unpack, n));
      else await writeFile(join(unpack, n), await readFile(join(r.checkpointDir, n)));
    }
    assert.deepEqual(await readFile(join(unpack, 'pages-1.img')), Buffer.alloc(8192, 1));
    assert.deepEqual(await readFile(join(unpack, 'pages-12.img')), Buffer.alloc(4096, 2));
    // Old copies go; a young one is spared with minAgeMs.
    const young = join(f.xdg, 'ctrd-checkpoint999');
    await mkdir(young);
    const old = new Date(Date.now() - 60_000);
    await utimes(unpack, old, old);
    assert.deepEqual(await pruneContainerdCheckpointCopies(f.xdg, { minAgeMs: 30_000 }), ['ctrd-checkpoint123']);
    assert.deepEqual(await pruneContainerdCheckpointCopies(f.xdg), ['ctrd-checkpoint999']);
    assert.ok(existsSync(join(f.xdg, 'cloudlet-stage')));
    await removeInstalledCheckpoint({ dataRoot: f.dataRoot, containerId: ID, name: 'cp1', xdgRuntimeDir: f.xdg });
    assert.equal(existsSync(r.checkpointDir), false);
    assert.equal(existsSync(r.stageDir!), false);
  } finally {
    await rm(f.root, { recursive: true, force: true });
  }
});

test('installCheckpoint without XDG copies every file into the checkpoint dir', async () => {
  const f = await fixture();
  try {
    const r = await installCheckpoint({ dataRoot: f.dataRoot, containerId: ID, name: 'full', imageDir: f.img, xdgRuntimeDir: null });
    assert.deepEqual(r.linked, []);
    assert.equal(r.stageDir, null);
    assert.deepEqual((await readFile(join(r.checkpointDir, 'pages-1.img'))).length, 8192);
    assert.deepEqual(await pruneContainerdCheckpointCopies(join(f.root, 'missing')), []);
  } finally {
    await rm(f.root, { recursive: true, force: true });
  }
});

test('installCheckpoint refuses bad names, unknown containers and existing checkpoints', async () => {
  const f = await fixture();
  try {
    assert.throws(() => checkpointPaths({ dataRoot: f.dataRoot, containerId: ID, name: '../x', xdgRuntimeDir: null }), UsageError);
    assert.throws(() => checkpointPaths({ dataRoot: f.dataRoot, containerId: 'abc', name: 'x', xdgRuntimeDir: null }), UsageError);
    await assert.rejects(
      installCheckpoint({ dataRoot: f.dataRoot, containerId: 'cd'.repeat(32), name: 'x', imageDir: f.img, xdgRuntimeDir: null }),
      UsageError,
    );
    await mkdir(join(f.dataRoot, 'containers', ID, 'checkpoints', 'dup'), { recursive: true });
    await assert.rejects(installCheckpoint({ dataRoot: f.dataRoot, containerId: ID, name: 'dup', imageDir: f.img, xdgRuntimeDir: f.xdg }), ConflictError);
    assert.ok(existsSync(join(f.img, 'pages-1.img')), 'nothing moved on refusal');
  } finally {
    await rm(f.root, { recursive: true, force: true });
  }
});
