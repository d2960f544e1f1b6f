// Small overlays made without an engine: a base image of one layer, an app image adding one
// layer whose tar entries the test chooses (also unsafe ones), written as `docker save`
// archives and turned into overlay files; and raw overlay files with any header and layer
// bytes (to forge damaged ones).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { imageConfigJson, imageIdOfConfig, sha256Hex, writeImageArchive, type ImageSpec } from '../../src/images/archive.js';
import { createOverlayFromArchive, type CreateResult } from '../../src/images/overlay-create.js';
import { encodeHeader, layerArtifactName, loadManifest, type OverlayHeader } from '../../src/images/overlay.js';
import { FrameWriter } from '../../src/transfer/frame-writer.js';
import type { CodecName } from '../../src/transfer/codecs.js';

export interface TarEntry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink';
  data?: Buffer | string;
  linkname?: string;
}

/** A ustar archive of the entries, byte for byte as given (no sanitising). */
export function rawTar(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, 'utf8');
    h.write(e.type === 'dir' ? '0000755\0' : '0000644\0', 100, 'latin1');
    h.write('0000000\0', 108, 'latin1');
    h.write('0000000\0', 116, 'latin1');
    const size = e.type === undefined || e.type === 'file' ? data.length : 0;
    h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
    h.write('00000000000\0', 136, 'latin1');
    h.write('        ', 148, 'latin1');
    h.write({ file: '0', dir: '5', symlink: '2', hardlink: '1' }[e.type ?? 'file'], 156, 'latin1');
    if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
    h.write('ustar\0' + '00', 257, 'latin1');
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += h[i]!;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    parts.push(h);
    if (size > 0) {
      parts.push(data);
      if (size % 512) parts.push(Buffer.alloc(512 - (size % 512)));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export interface OverlayFixture {
  dir: string;
  base: { name: string; imageId: string; diffIds: string[] };
  overlay: CreateResult;
  /** The overlay file's bytes. */
  bytes: Buffer;
  cleanup(): void;
}

export const SAFE_APP_ENTRIES: TarEntry[] = [
  { name: 'app/', type: 'dir' },
  { name: 'app/hello.txt', data: 'hello from the app\n'.repeat(200) },
  { name: 'app/link', type: 'symlink', linkname: 'hello.txt' },
  { name: 'app/abs', type: 'symlink', linkname: '/app/hello.txt' },
];

/** Base (one layer) + app (base + a layer of `appEntries`) -> an overlay file. */
export async function makeOverlay(appEntries: TarEntry[] = SAFE_APP_ENTRIES, codec: CodecName = 'lz4'): Promise<OverlayFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'overlay-test-'));
  const baseTar = rawTar([
    { name: 'etc/', type: 'dir' },
    { name: 'etc/base-release', data: 'base 1\n' },
  ]);
  const appTar = rawTar(appEntries);
  writeFileSync(join(dir, 'base.tar'), baseTar);
  writeFileSync(join(dir, 'app.tar'), appTar);
  const baseLayer = { diffId: `sha256:${sha256Hex(baseTar)}`, path: join(dir, 'base.tar'), createdBy: 'base' };
  const baseSpec: ImageSpec = { name: 'test/base:1', cmd: ['sh'], layers: [baseLayer] };
  const appSpec: ImageSpec = {
    name: 'test/app:1',
    cmd: ['sh'],
    layers: [baseLayer, { diffId: `sha256:${sha256Hex(appTar)}`, path: join(dir, 'app.tar'), createdBy: 'app' }],
  };
  await writeImageArchive(appSpec, join(dir, 'stage'), join(dir, 'app-image.tar'));
  const base = { name: 'test/base:1', imageId: imageIdOfConfig(imageConfigJson(baseSpec)), diffIds: [baseLayer.diffId] };
  const overlay = await createOverlayFromArchive({ archive: join(dir, 'app-image.tar'), base, out: join(dir, 'app.ovl'), codec });
  const { readFileSync } = await import('node:fs');
  return { dir, base, overlay, bytes: readFileSync(overlay.path), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * An overlay file written from parts: any header (also an invalid one, as a raw object), the
 * manifest and config bytes, and the layer bytes in header order.
 */
export async function forgeOverlay(
  header: OverlayHeader | Record<string, unknown>,
  parts: { manifest?: Buffer; config: Buffer; layers: Buffer[]; codec?: CodecName },
): Promise<Buffer> {
  const h = header as OverlayHeader;
  let head: Buffer;
  try {
    head = encodeHeader(h);
  } catch {
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(json.length);
    head = Buffer.concat([Buffer.from('CLOVL01\n', 'latin1'), len, json]);
  }
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  const codec = parts.codec ?? 'lz4';
  const w = new FrameWriter(sink);
  await w.writeArtifact('manifest.json', codec, parts.manifest ?? Buffer.from(loadManifest(h)));
  await w.writeArtifact('config.json', codec, parts.config);
  for (const [i, l] of parts.layers.entries()) await w.writeArtifact(layerArtifactName(h.layers[i]!.diffId), codec, l);
  await w.finish();
  return Buffer.concat([head, ...chunks]);
}
