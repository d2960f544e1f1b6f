// The containerd image store's pieces that need no engine: the snapshot mount answer's upper
// dir, the content store's manifests, and the OCI load parts of an overlay (the manifest must
// be byte for byte the one containerd writes when it imports a docker-save archive).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { upperDirOfMountCommand } from '../../src/engine/containerd-snapshots.js';
import { contentBlobPath, readImageManifest } from '../../src/engine/containerd-content.js';
import { containerdImageName, ociPartsFor } from '../../src/images/overlay-oci.js';
import type { OverlayHeader } from '../../src/images/overlay.js';

const SNAP = '/var/lib/x/docker/containerd/daemon/io.containerd.snapshotter.v1.overlayfs/snapshots';

test('the upper dir of a `ctr snapshots mounts` answer', () => {
  const text = `mount -t overlay overlay /x -o workdir=${SNAP}/8/work,upperdir=${SNAP}/8/fs,lowerdir=${SNAP}/7/fs:${SNAP}/1/fs,index=off\n`;
  assert.equal(upperDirOfMountCommand(text), `${SNAP}/8/fs`);
  assert.equal(upperDirOfMountCommand(`mount -t overlay overlay /x -o upperdir=${SNAP}/3/fs`), `${SNAP}/3/fs`);
  // A view or a committed snapshot is mounted read-only: no upper dir.
  assert.equal(upperDirOfMountCommand(`mount -t bind ${SNAP}/1/fs /x -o ro,rbind`), null);
});

test('containerd names images docker.io/... with library/ for one-part names', () => {
  assert.deepEqual(containerdImageName('cloudlet-bench/app-small:1'), { full: 'docker.io/cloudlet-bench/app-small:1', tag: '1' });
  assert.deepEqual(containerdImageName('busybox'), { full: 'docker.io/library/busybox:latest', tag: 'latest' });
  assert.deepEqual(containerdImageName('localhost:5000/a/b:2'), { full: 'localhost:5000/a/b:2', tag: '2' });
});

// Measured on the lab (Docker 28.5.2, containerd 2.1.9): cloudlet-bench/app-small:1 loaded from
// its docker-save archive has this manifest, sha256:3529fe66... (the id on both cloudlets).
const BASE_LAYERS = [
  ['sha256:4d39fb771d81a6c46bdbaaf8e4b8b7a7099063cba5f0d7cac64a233e550eba52', 2126848],
  ['sha256:e6a15b00012f0b3b0853be047f3d54519f7716953f5e6ee22bda232662b31c7c', 104340992],
] as const;
const APP_LAYER = 'sha256:f008c06e7f303dd42eeb14a1e02cce8bfbf50089359fc3a628054ea24ac7205e';
const APP_CONFIG = 'sha256:c8cddf467987e60dfc4df649bb0601ce66f385d0fc252cdabee8b86514ba082f';
const APP_ID = 'sha256:3529fe66fef70d5e16e1e99323791d56285c148047edf9f0ffcfe872cb6fe772';

function header(): OverlayHeader {
  return {
    format: 'cloudlet-overlay',
    version: 1,
    codec: 'lz4',
    created: '2026-12-06T00:00:00Z',
    base: { name: 'cloudlet/node:20', imageId: `sha256:${'b'.repeat(64)}`, diffIds: BASE_LAYERS.map((l) => l[0]) },
    app: {
      name: 'cloudlet-bench/app-small:1',
      imageId: APP_CONFIG,
      diffIds: [...BASE_LAYERS.map((l) => l[0]), APP_LAYER],
      configBytes: 704,
      manifestBytes: 300,
    },
    layers: [{ diffId: APP_LAYER, sha256: APP_LAYER.slice(7), size: 2104320 }],
  };
}

const baseManifest = {
  schemaVersion: 2,
  mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
  config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${'c'.repeat(64)}`, size: 583 },
  layers: BASE_LAYERS.map(([digest, size]) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar', digest, size })),
};

test("the overlay's OCI manifest is containerd's own: the app keeps the source's id", () => {
  const parts = ociPartsFor(header(), baseManifest);
  assert.equal(parts.manifestDigest, APP_ID);
  assert.equal(`sha256:${createHash('sha256').update(parts.manifest).digest('hex')}`, APP_ID);
  const index = JSON.parse(parts.index.toString()) as { manifests: { digest: string; annotations: Record<string, string> }[] };
  assert.equal(index.manifests[0]!.digest, APP_ID);
  assert.equal(index.manifests[0]!.annotations['io.containerd.image.name'], 'docker.io/cloudlet-bench/app-small:1');
});

test('a base layer kept compressed here cannot be named by its diff id: refused by name', () => {
  const gz = {
    ...baseManifest,
    layers: baseManifest.layers.map((l, i) => (i === 1 ? { ...l, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' } : l)),
  };
  assert.throws(
    () => ociPartsFor(header(), gz),
    (err: Error & { code?: string }) => err.code === 'image_format' && err.message.includes(BASE_LAYERS[1][0]),
  );
});

test("manifests are read from the content store, an index followed to linux/amd64's", async () => {
  const root = await mkdtemp(join(tmpdir(), 'cl-content-'));
  try {
    const put = async (doc: unknown): Promise<string> => {
      const bytes = Buffer.from(JSON.stringify(doc));
      const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      await mkdir(join(contentBlobPath(root, digest), '..'), { recursive: true });
      await writeFile(contentBlobPath(root, digest), bytes);
      return digest;
    };
    const m = await put(baseManifest);
    assert.deepEqual(await readImageManifest(root, m), baseManifest);
    const arm = await put({ ...baseManifest, layers: [] });
    const idx = await put({
      schemaVersion: 2,
      manifests: [
        { mediaType: 'x', digest: arm, size: 1, platform: { architecture: 'arm64', os: 'linux' } },
        { mediaType: 'x', digest: m, size: 1, platform: { architecture: 'amd64', os: 'linux' } },
      ],
    });
    assert.deepEqual(await readImageManifest(root, idx), baseManifest);
    assert.equal(await readImageManifest(root, `sha256:${'0'.repeat(64)}`), null);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
