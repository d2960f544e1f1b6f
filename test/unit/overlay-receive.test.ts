// Overlays received by cloudletd (PUT /v1/overlays through the real routes, the engine a
// stub that records loads): a good overlay is verified and catalogued; each kind of bad input
// is refused with a clear error, and leaves no file, no catalog row and no load behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buildServer } from '../../src/daemon/server.js';
import type { DockerEngine, ImageDetails } from '../../src/engine/docker.js';
import { OVERLAY_CONTENT_TYPE } from '../../src/daemon/routes-overlays.js';
import { readHeader, type OverlayHeader } from '../../src/images/overlay.js';
import { readAllArtifacts } from '../../src/transfer/frame-reader.js';
import { makeFixture } from './daemon-fixtures.js';
import { forgeOverlay, makeOverlay, type TarEntry } from './overlay-fixtures.js';

function stubEngine(images: Map<string, ImageDetails>) {
  const loads: number[] = [];
  const engine = {
    socketPath: '/stub.sock',
    // A Docker 20.10 with the classic store: synthesis loads a docker-save archive.
    version: async () => ({ version: '20.10.24+dfsg1' }),
    info: async () => ({ storageDriver: 'overlay2', dockerRootDir: '/stub' }),
    inspectImage: async (ref: string) => images.get(ref) ?? null,
    containerExists: async () => false,
    loadImage: async (s: NodeJS.ReadableStream) => {
      let n = 0;
      for await (const c of s) n += (c as Buffer).length;
      loads.push(n);
      return ['Loaded image: test/app:1'];
    },
  };
  return { engine: engine as unknown as DockerEngine, loads };
}

async function setup(opts: { basePresent?: boolean } = {}) {
  const fx = makeFixture();
  const ovl = await makeOverlay();
  const images = new Map<string, ImageDetails>();
  if (opts.basePresent ?? true) images.set(ovl.base.imageId, { id: ovl.base.imageId, repoTags: ['test/base:1'], diffIds: ovl.base.diffIds, size: 1 });
  const { engine, loads } = stubEngine(images);
  const app = buildServer({ config: fx.config, engine, logger: false });
  const auth = { authorization: `Bearer ${fx.config.token}` };
  const put = (payload: Buffer) =>
    app.inject({ method: 'PUT', url: '/v1/overlays', headers: { ...auth, 'content-type': OVERLAY_CONTENT_TYPE }, payload: Readable.from([payload]) });
  const overlaysDir = join(fx.config.dataDir, 'overlays');
  /** Nothing kept: no overlay file (not even a staging one), no catalog row, no load. */
  const assertNothingLeft = async () => {
    const files = existsSync(overlaysDir) ? readdirSync(overlaysDir) : [];
    assert.deepEqual(files, [], `files left behind: ${files.join(', ')}`);
    const list = await app.inject({ method: 'GET', url: '/v1/overlays', headers: auth });
    assert.deepEqual(list.json(), []);
    assert.deepEqual(loads, [], 'nothing may reach the engine');
  };
  return {
    fx,
    ovl,
    app,
    auth,
    put,
    images,
    loads,
    assertNothingLeft,
    cleanup: async () => {
      await app.close();
      fx.cleanup();
      ovl.cleanup();
    },
  };
}

async function explode(bytes: Buffer) {
  const { header, rest } = await readHeader(Readable.from([bytes]));
  const { artifacts } = await readAllArtifacts(rest);
  const layers = header.layers.map((l) => artifacts.get(`layer/${l.diffId.slice(7)}`)!.data);
  return { header, config: artifacts.get('config.json')!.data, manifest: artifacts.get('manifest.json')!.data, layers };
}

/** An overlay whose app layer holds `entries` (the header and config made to match). */
async function overlayWithLayer(entries: TarEntry[]): Promise<Buffer> {
  const o = await makeOverlay(entries);
  try {
    return o.bytes;
  } finally {
    o.cleanup();
  }
}

test('a good overlay is verified, stored and catalogued; the base layer is not in it', async () => {
  const s = await setup();
  try {
    assert.equal(s.ovl.overlay.header.layers.length, 1, 'only the app layer');
    assert.equal(s.ovl.overlay.header.base.diffIds.length, 1);
    const res = await s.put(s.ovl.bytes);
    assert.equal(res.statusCode, 201, res.body);
    const body = res.json();
    assert.equal(body.id, s.ovl.overlay.id);
    assert.equal(body.fileBytes, s.ovl.bytes.length);
    assert.equal(body.tarEntries, 4);
    assert.deepEqual(readdirSync(join(s.fx.config.dataDir, 'overlays')), [`${body.id}.ovl`]);
    const list = (await s.app.inject({ method: 'GET', url: '/v1/overlays', headers: s.auth })).json();
    assert.equal(list.length, 1);
    assert.equal(list[0].appImageId, s.ovl.overlay.header.app.imageId);
    const one = (await s.app.inject({ method: 'GET', url: `/v1/overlays/${body.id}`, headers: s.auth })).json();
    assert.equal(one.header.codec, 'lz4');
    assert.deepEqual(s.loads, [], 'receiving loads nothing');
  } finally {
    await s.cleanup();
  }
});

test('corrupted layer: bytes that do not hash to the diff id are refused (digest mismatch)', async () => {
  const s = await setup();
  try {
    const { header, config, manifest, layers } = await explode(s.ovl.bytes);
    // A self-consistent stream (frames and their sha256 fine, same size, still a valid tar)
    // whose layer is not the one named: one byte of a file's content changed.
    const other = Buffer.from(layers[0]!);
    other[512 * 2 + 3] = 'X'.charCodeAt(0);
    const forged = await forgeOverlay(header, { manifest, config, layers: [other] });
    const res = await s.put(forged);
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().error, 'layer_digest_mismatch');
    assert.match(res.json().message, new RegExp(`layer ${header.layers[0]!.diffId}: its bytes hash to sha256:`));
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});

test('corrupted layer: a byte flipped in the file is caught before anything is kept', async () => {
  const s = await setup();
  try {
    const bad = Buffer.from(s.ovl.bytes);
    bad[bad.length - 200] = bad[bad.length - 200]! ^ 0xff;
    const res = await s.put(bad);
    assert.equal(res.statusCode, 422, res.body);
    assert.match(res.json().error, /^transfer_(crc|checksum)$/);
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});

test('truncated upload: refused as truncated, the staging file removed', async () => {
  const s = await setup();
  try {
    const res = await s.put(s.ovl.bytes.subarray(0, Math.floor(s.ovl.bytes.length * 0.6)));
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().error, 'transfer_truncated');
    await s.assertNothingLeft();
    const headerOnly = await s.put(s.ovl.bytes.subarray(0, 20));
    assert.equal(headerOnly.statusCode, 422, headerOnly.body);
    assert.equal(headerOnly.json().error, 'overlay_truncated');
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});

test('tar entry with an absolute path is refused', async () => {
  const s = await setup();
  try {
    const res = await s.put(await overlayWithLayer([{ name: '/etc/passwd', data: 'root::0:0::/:/bin/sh\n' }]));
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().error, 'unsafe_layer');
    assert.match(res.json().message, /tar entry '\/etc\/passwd' has an absolute path/);
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});

test("tar entry with '..' is refused", async () => {
  const s = await setup();
  try {
    const res = await s.put(
      await overlayWithLayer([
        { name: 'app/', type: 'dir' },
        { name: 'app/../../escape.txt', data: 'x' },
      ]),
    );
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().error, 'unsafe_layer');
    assert.match(res.json().message, /tar entry 'app\/\.\.\/\.\.\/escape\.txt' has a '\.\.' component/);
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});

test('escaping symlinks are refused: a relative target out of the root, and an entry written through a link', async () => {
  const s = await setup();
  try {
    const res = await s.put(
      await overlayWithLayer([
        { name: 'app/', type: 'dir' },
        { name: 'app/evil', type: 'symlink', linkname: '../../../etc' },
      ]),
    );
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().error, 'unsafe_layer');
    assert.match(res.json().message, /symbolic link 'app\/evil' -> '\.\.\/\.\.\/\.\.\/etc' points outside the image root/);
    await s.assertNothingLeft();

    const through = await s.put(
      await overlayWithLayer([
        { name: 'app', type: 'symlink', linkname: '/etc' },
        { name: 'app/passwd', data: 'x' },
      ]),
    );
    assert.equal(through.statusCode, 422, through.body);
    assert.match(through.json().message, /tar entry 'app\/passwd' lies beneath the symbolic link 'app'/);
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});

test('an overlay whose base is absent is refused, naming the base, before its bulk is read', async () => {
  const s = await setup({ basePresent: false });
  try {
    const res = await s.put(s.ovl.bytes);
    assert.equal(res.statusCode, 409, res.body);
    assert.equal(res.json().error, 'base_image_missing');
    assert.match(res.json().message, new RegExp(`base image test/base:1 \\(${s.ovl.base.imageId}\\) of overlay ${s.ovl.overlay.id} is not on cloudlet alpha`));
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});

test('a base removed after receipt: synthesis fails naming the base, nothing is loaded', async () => {
  const s = await setup();
  try {
    assert.equal((await s.put(s.ovl.bytes)).statusCode, 201);
    s.images.clear();
    const res = await s.app.inject({ method: 'POST', url: `/v1/overlays/${s.ovl.overlay.id}/synthesize`, headers: s.auth });
    assert.equal(res.statusCode, 409, res.body);
    assert.match(res.json().message, /base image test\/base:1 .* is not on cloudlet alpha/);
    assert.deepEqual(s.loads, []);
    const svc = await s.app.inject({ method: 'POST', url: '/v1/services', headers: s.auth, payload: { overlay: s.ovl.overlay.id } });
    assert.equal(svc.statusCode, 409, svc.body);
    assert.deepEqual(s.loads, []);
  } finally {
    await s.cleanup();
  }
});

test('a header naming an unknown codec is refused by name', async () => {
  const s = await setup();
  try {
    const { header, config, manifest } = await explode(s.ovl.bytes);
    const forged = await forgeOverlay({ ...header, codec: 'brotli' } as unknown as OverlayHeader, { manifest, config, layers: [Buffer.alloc(0)] });
    const res = await s.put(forged);
    assert.equal(res.statusCode, 422, res.body);
    assert.equal(res.json().error, 'unknown_codec');
    assert.match(res.json().message, /overlay header names codec "brotli", which this cloudlet does not know \(known: none, lz4, zstd, gzip\)/);
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});

test('an upload over the size limit is refused from its Content-Length', async () => {
  const s = await setup();
  try {
    const res = await s.app.inject({
      method: 'PUT',
      url: '/v1/overlays',
      headers: { ...s.auth, 'content-type': OVERLAY_CONTENT_TYPE, 'content-length': String(64 * 2 ** 30) },
      payload: Readable.from([s.ovl.bytes]),
    });
    assert.equal(res.statusCode, 413, res.body);
    assert.equal(res.json().error, 'overlay_too_large');
    await s.assertNothingLeft();
  } finally {
    await s.cleanup();
  }
});
