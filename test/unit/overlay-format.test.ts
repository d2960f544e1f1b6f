// The overlay file format: header, inspect, the built-on-base check, the `docker load`
// archive synthesis makes from an overlay, and the layer tar checker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Parser, type ReadEntry } from 'tar';
import { pipeline } from 'node:stream/promises';
import { checkBuiltOn } from '../../src/images/overlay-create.js';
import { inspectOverlayFile, LayerTarChecker, overlayRawBytes, validateHeader } from '../../src/images/overlay.js';
import { verifyOverlayFile } from '../../src/images/overlay-verify.js';
import { loadArchiveFromOverlay } from '../../src/images/overlay-synthesize.js';
import { CODEC_NAMES } from '../../src/transfer/codecs.js';
import { makeOverlay, rawTar } from './overlay-fixtures.js';

test('every codec makes an overlay whose header, inspect and full verification agree', async () => {
  for (const codec of CODEC_NAMES) {
    const o = await makeOverlay(undefined, codec);
    try {
      const { header, fileBytes, id } = await inspectOverlayFile(o.overlay.path);
      assert.equal(id, o.overlay.id);
      assert.equal(fileBytes, o.bytes.length);
      assert.equal(header.codec, codec);
      assert.equal(header.app.name, 'test/app:1');
      assert.equal(header.base.imageId, o.base.imageId);
      assert.equal(header.layers[0]!.sha256, header.layers[0]!.diffId.slice(7));
      const v = await verifyOverlayFile(o.overlay.path);
      assert.equal(v.rawBytes, overlayRawBytes(header));
      assert.equal(v.tarEntries, 4);
    } finally {
      o.cleanup();
    }
  }
});

test('an app not built on the base is refused with both names', () => {
  const base = { name: 'b:1', imageId: `sha256:${'1'.repeat(64)}`, diffIds: [`sha256:${'a'.repeat(64)}`] };
  const app = { name: 'x:1', imageId: `sha256:${'2'.repeat(64)}`, diffIds: [`sha256:${'c'.repeat(64)}`, `sha256:${'d'.repeat(64)}`] };
  assert.throws(() => checkBuiltOn(base, app), /image x:1 is not built on b:1/);
  assert.doesNotThrow(() => checkBuiltOn(base, { ...app, diffIds: [...base.diffIds, ...app.diffIds] }));
});

test('headers that lie about their layers are refused', async () => {
  const o = await makeOverlay();
  try {
    const h = o.overlay.header;
    assert.throws(() => validateHeader({ ...h, layers: [] }), /not the app layers that the base does not have/);
    assert.throws(() => validateHeader({ ...h, base: { ...h.base, diffIds: [`sha256:${'e'.repeat(64)}`] } }), /not built on the base/);
    assert.throws(() => validateHeader({ ...h, version: 2 }), /unsupported overlay version 2/);
    assert.throws(() => validateHeader({ ...h, codec: 'xz' }), /codec "xz"/);
  } finally {
    o.cleanup();
  }
});

test('synthesis archive: manifest with every layer, the config, and only the overlay layers', async () => {
  const o = await makeOverlay();
  try {
    const entries = new Map<string, number>();
    let manifest = '';
    const parser = new Parser({
      strict: true,
      onReadEntry: (e: ReadEntry) => {
        entries.set(e.path, e.size ?? 0);
        if (e.path === 'manifest.json') e.on('data', (c: Buffer) => (manifest += c.toString()));
        else e.resume();
      },
    });
    await pipeline(loadArchiveFromOverlay(o.overlay.path, o.overlay.header), parser);
    const h = o.overlay.header;
    const appHex = h.app.imageId.slice(7);
    const layerHex = h.layers[0]!.diffId.slice(7);
    assert.deepEqual([...entries.keys()].sort(), ['manifest.json', `${appHex}.json`, `${layerHex}/`, `${layerHex}/layer.tar`].sort());
    assert.equal(entries.get(`${layerHex}/layer.tar`), h.layers[0]!.size);
    const m = JSON.parse(manifest);
    assert.deepEqual(
      m[0].Layers,
      h.app.diffIds.map((d) => `${d.slice(7)}/layer.tar`),
    );
    assert.deepEqual(m[0].RepoTags, ['test/app:1']);
  } finally {
    o.cleanup();
  }
});

test('layer tar checker: ordinary layers pass, garbage is not a tar', async () => {
  const ok = new LayerTarChecker('L');
  ok.write(
    rawTar([
      { name: 'usr/', type: 'dir' },
      { name: 'usr/bin/', type: 'dir' },
      { name: 'usr/bin/sh', type: 'symlink', linkname: '/bin/busybox' },
      { name: 'usr/bin/.wh.vi', data: '' },
      { name: 'usr/bin/hl', type: 'hardlink', linkname: 'usr/bin/sh' },
    ]),
  );
  await ok.end();
  assert.equal(ok.entries, 5);
  const bad = new LayerTarChecker('L');
  await assert.rejects(async () => {
    bad.write(Buffer.alloc(1536, 0x41));
    await bad.end();
  }, /not a valid tar archive/);
  const hard = new LayerTarChecker('L');
  await assert.rejects(async () => {
    hard.write(rawTar([{ name: 'x', type: 'hardlink', linkname: '../../etc/shadow' }]));
    await hard.end();
  }, /hard link 'x' -> '\.\.\/\.\.\/etc\/shadow' points outside the archive/);
});
