// Synthesis: the app image made on a cloudlet from a verified overlay and the cached base.
//
// The overlay's artifacts are decoded straight into a `docker load` archive that the engine
// reads as it is produced: manifest.json (listing every layer of the app), the config, and a
// layer.tar for the overlay's layers only. The engine skips the base layers it has (by chain
// id) and keeps the config bytes, so the image id is the original app image id. No temporary
// file, no untar/re-tar of the base (the 2016 prototype's method, see bench/overlay.ts).
// On Docker's containerd image store the archive is an OCI layout instead (overlay-oci.ts).
//
// Timing: decoding and loading overlap. `decompressMs` is the time the engine's upload waited
// for decoded bytes (reading the file, CRC/sha256 checks and decompression); `loadMs` is the
// rest of the wall time (the engine unpacking and registering the layers).
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { DockerEngine } from '../engine/docker.js';
import { probeEngineAdapter } from '../engine/engine-adapter.js';
import { readImageManifest } from '../engine/containerd-content.js';
import { ociPartsFor, type OciLoadParts } from './overlay-oci.js';
import { FrameReader } from '../transfer/frame-reader.js';
import { ImageError } from './errors.js';
import { digestHex, layerArtifactName, readHeader, type OverlayHeader } from './overlay.js';

export interface SynthesisResult {
  imageId: string;
  /** The engine's image id equals the app image id the overlay was made from. */
  imageIdMatches: boolean;
  /** false when the image was already there (nothing loaded). */
  synthesized: boolean;
  decompressMs: number;
  loadMs: number;
  totalMs: number;
  /** Raw bytes handed to the engine (the docker-load archive). */
  loadedBytes: number;
}

const BLOCK = 512;

/** One ustar header (names here are short: <= 99 bytes, so no prefix or PAX is needed). */
export function ustarHeader(name: string, size: number, type: 'file' | 'dir'): Buffer {
  const h = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(name) > 99) throw new ImageError('tar_path_unsupported', `tar name too long: ${name}`);
  h.write(name, 0, 100, 'utf8');
  h.write(type === 'dir' ? '0000755\0' : '0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write(type === 'dir' ? '5' : '0', 156, 'latin1');
  h.write('ustar\0' + '00', 257, 'latin1');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

function padding(size: number): Buffer | null {
  const r = size % BLOCK;
  return r === 0 ? null : Buffer.alloc(BLOCK - r);
}

/**
 * The `docker load` archive of the app image, decoded from the overlay file at `path`.
 * `onWait` receives the milliseconds each pull waited for the overlay's decoder, `onBytes`
 * the size of each piece produced.
 */
export function loadArchiveFromOverlay(
  path: string,
  header: OverlayHeader,
  hooks: { onWait?: (ms: number) => void; onBytes?: (n: number) => void; oci?: OciLoadParts } = {},
): Readable {
  const oci = hooks.oci ?? null;
  const onWait = hooks.onWait ?? (() => undefined);
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const b of gen()) {
      hooks.onBytes?.(b.length);
      yield b;
    }
  }
  async function* gen(): AsyncGenerator<Buffer> {
    const { rest } = await readHeader(createReadStream(path, { highWaterMark: 1 << 20 }));
    const reader = new FrameReader(rest, { maxArtifactBytes: Math.max(header.app.configBytes, header.app.manifestBytes, ...header.layers.map((l) => l.size)) });
    const it = reader[Symbol.asyncIterator]();
    const sizes = new Map<string, number>([
      ['manifest.json', header.app.manifestBytes],
      ['config.json', header.app.configBytes],
      ...header.layers.map((l) => [layerArtifactName(l.diffId), l.size] as [string, number]),
    ]);
    // The docker-save layout (manifest.json, <config>.json, <layer>/layer.tar) or, for the
    // containerd store, an OCI layout (blobs/sha256/<digest>; our manifest replaces manifest.json).
    const tarName = (artifact: string): string | null => (oci ? ociTarName : dockerSaveTarName)(artifact, header);
    if (oci) yield* ociPrologue(oci);
    let current = '';
    let skipping = false;
    for (;;) {
      const t0 = performance.now();
      const r = await it.next();
      onWait(performance.now() - t0);
      if (r.done) break;
      const ev = r.value;
      if (ev.type === 'begin') {
        current = ev.artifact.name;
        const size = sizes.get(current);
        if (size === undefined || ev.artifact.rawSize !== size) {
          throw new ImageError('bad_overlay', `overlay file ${path} changed since it was verified (artifact '${current}')`, { context: { path } });
        }
        const name = tarName(current);
        skipping = name === null;
        if (name === null) continue;
        if (name.endsWith('/layer.tar')) yield ustarHeader(name.slice(0, -'layer.tar'.length), 0, 'dir');
        yield ustarHeader(name, size, 'file');
      } else if (ev.type === 'data') {
        if (!skipping) yield ev.chunk;
      } else if (ev.type === 'end') {
        const pad = skipping ? null : padding(sizes.get(current)!);
        if (pad) yield pad;
      }
    }
    if (oci) yield* tarFile('index.json', oci.index);
    yield Buffer.alloc(BLOCK * 2);
  }
  return Readable.from(counted(), { objectMode: false, highWaterMark: 4 << 20 });
}

/** Where an overlay artifact goes in a docker-save archive. */
function dockerSaveTarName(artifact: string, header: OverlayHeader): string {
  if (artifact === 'manifest.json') return 'manifest.json';
  if (artifact === 'config.json') return `${digestHex(header.app.imageId)}.json`;
  return `${artifact.slice('layer/'.length)}/layer.tar`;
}

/** Where an overlay artifact goes in an OCI layout; null: left out (our manifest replaces manifest.json). */
function ociTarName(artifact: string, header: OverlayHeader): string | null {
  if (artifact === 'manifest.json') return null;
  if (artifact === 'config.json') return `blobs/sha256/${digestHex(header.app.imageId)}`;
  return `blobs/sha256/${artifact.slice('layer/'.length)}`;
}

function* tarFile(name: string, bytes: Buffer): Generator<Buffer> {
  yield ustarHeader(name, bytes.length, 'file');
  yield bytes;
  const pad = padding(bytes.length);
  if (pad) yield pad;
}

function* ociPrologue(oci: OciLoadParts): Generator<Buffer> {
  yield* tarFile('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
  yield ustarHeader('blobs/', 0, 'dir');
  yield ustarHeader('blobs/sha256/', 0, 'dir');
  yield* tarFile(`blobs/sha256/${digestHex(oci.manifestDigest)}`, oci.manifest);
}

/** Fails, naming the base, when the engine does not have the overlay's base image. */
export async function requireBase(engine: DockerEngine, header: OverlayHeader, node: string): Promise<void> {
  const base = await engine.inspectImage(header.base.imageId);
  if (!base) {
    const name = header.base.name ? `${header.base.name} (${header.base.imageId})` : header.base.imageId;
    throw new ImageError('base_image_missing', `base image ${name} of overlay ${digestHex(header.app.imageId).slice(0, 12)} is not on cloudlet ${node}`, {
      context: { base: header.base.imageId, baseName: header.base.name, node },
      hint: `load ${header.base.name ?? 'the base image'} on ${node} first (the lab loads cloudlet/busybox:1 and cloudlet/node:20 everywhere)`,
    });
  }
}

/**
 * Makes the app image on `engine` from the verified overlay at `path` (a no-op when the
 * image is already there). The resulting id is checked against the header's app image id.
 */
export async function synthesize(opts: { engine: DockerEngine; path: string; header: OverlayHeader; node: string }): Promise<SynthesisResult> {
  const { engine, header } = opts;
  const started = performance.now();
  // The containerd image store names the image by its manifest's digest and loads an OCI
  // layout without the base's layers (overlay-oci.ts); the classic store by its config's.
  const oci = (await probeEngineAdapter(engine)).imageStore === 'containerd' ? await ociParts(engine, header, opts.node) : null;
  const wantId = oci ? oci.manifestDigest : header.app.imageId;
  const present = await engine.inspectImage(wantId);
  if (present) {
    return {
      imageId: present.id,
      imageIdMatches: present.id === wantId,
      synthesized: false,
      decompressMs: 0,
      loadMs: 0,
      totalMs: Math.round(performance.now() - started),
      loadedBytes: 0,
    };
  }
  if (!oci) await requireBase(engine, header, opts.node);
  let waited = 0;
  let loadedBytes = 0;
  const archive = loadArchiveFromOverlay(opts.path, header, { onWait: (ms) => (waited += ms), onBytes: (n) => (loadedBytes += n), ...(oci ? { oci } : {}) });
  const loadStart = performance.now();
  let failure: unknown = null;
  archive.on('error', (err) => (failure ??= err));
  try {
    await engine.loadImage(archive);
  } catch (err) {
    // The archive's own error (a damaged overlay) explains an engine failure best.
    throw failure ?? err;
  }
  if (failure) throw failure;
  const total = performance.now() - loadStart;
  const img = await engine.inspectImage(wantId);
  if (!img) {
    throw new ImageError('synthesis_failed', `the engine loaded the overlay but has no image ${wantId}`, {
      context: { imageId: wantId, appConfigDigest: header.app.imageId },
    });
  }
  return {
    imageId: img.id,
    imageIdMatches: img.id === wantId,
    synthesized: true,
    decompressMs: Math.round(waited),
    loadMs: Math.round(total - waited),
    totalMs: Math.round(performance.now() - started),
    loadedBytes,
  };
}

/** The OCI parts for the containerd store: the base must be here, its manifest read from the content store. */
async function ociParts(engine: DockerEngine, header: OverlayHeader, node: string): Promise<OciLoadParts> {
  await requireBase(engine, header, node);
  const base = (await engine.inspectImage(header.base.imageId))!;
  const manifest = await readImageManifest((await engine.info()).dockerRootDir, base.id);
  if (!manifest) {
    throw new ImageError('synthesis_failed', `the containerd content store of cloudlet ${node} has no manifest of the base image ${base.id}`, {
      context: { base: base.id, node },
    });
  }
  return ociPartsFor(header, manifest);
}
