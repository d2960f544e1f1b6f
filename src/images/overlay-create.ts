// `cloudlet overlay create`: app image minus base image, from the engine that holds both.
//
// The engine saves the app image (`docker save` stream); its layer tars are staged on disk
// while their sha256 is computed, the base's layers are dropped as soon as they are
// recognised, and the overlay file is written through a temporary name (renamed when
// complete), so a failure never leaves a partial overlay under the requested name.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';
import type { DockerEngine } from '../engine/docker.js';
import { FrameWriter } from '../transfer/frame-writer.js';
import type { CodecName } from '../transfer/codecs.js';
import { sha256Hex } from './archive.js';
import { ImageError } from './errors.js';
import { OVERLAY_FORMAT, encodeHeader, layerArtifactName, loadManifest, overlayId, validateHeader, type OverlayHeader } from './overlay.js';

export interface ImageRef {
  /** A name to record (repo:tag) or null. */
  name: string | null;
  imageId: string;
  diffIds: string[];
}

export interface CreateResult {
  id: string;
  path: string;
  header: OverlayHeader;
  /** Bytes of the overlay file. */
  fileBytes: number;
  /** Raw bytes of its layers (before compression). */
  layerBytes: number;
  /** Bytes of the app image as saved by the engine (all layers). */
  appBytes: number;
  /** Time the engine took to save the app image (streamed into staging). */
  saveMs: number;
  /** Time to compress and write the overlay. */
  writeMs: number;
  totalMs: number;
}

/** Refuses an app that is not built on the base, naming both. */
export function checkBuiltOn(base: ImageRef, app: ImageRef): void {
  const ok = app.diffIds.length >= base.diffIds.length && base.diffIds.every((d, i) => app.diffIds[i] === d);
  if (!ok) {
    const b = base.name ?? base.imageId;
    const a = app.name ?? app.imageId;
    throw new ImageError('not_built_on_base', `image ${a} is not built on ${b}: its layers do not start with the ${base.diffIds.length} layer(s) of ${b}`, {
      context: { base: base.imageId, app: app.imageId, baseDiffIds: base.diffIds, appDiffIds: app.diffIds },
      hint: 'choose the base image the app was built FROM (docker image inspect shows RootFS.Layers)',
    });
  }
  if (base.imageId === app.imageId) {
    throw new ImageError('not_built_on_base', `the app and the base are the same image (${app.imageId})`, { context: { image: app.imageId } });
  }
}

async function imageRef(engine: DockerEngine, ref: string, what: string): Promise<ImageRef> {
  const i = await engine.inspectImage(ref);
  if (!i) {
    throw new ImageError('image_not_found', `${what} image '${ref}' is not on the engine at ${engine.socketPath}`, {
      context: { ref, socketPath: engine.socketPath },
      hint: 'load or build it there first (docker images lists what the engine has)',
    });
  }
  const name = /^sha256:/.test(ref) ? (i.repoTags[0] ?? null) : ref.includes(':') ? ref : `${ref}:latest`;
  return { name, imageId: i.id, diffIds: i.diffIds };
}

/** Creates an overlay of `app` on `base`, both on `engine`, written to `out`. */
export async function createOverlay(opts: { engine: DockerEngine; base: string; app: string; out: string; codec: CodecName }): Promise<CreateResult> {
  const base = await imageRef(opts.engine, opts.base, 'base');
  const app = await imageRef(opts.engine, opts.app, 'app');
  checkBuiltOn(base, app);
  const started = performance.now();
  const stream = await opts.engine.saveImage(app.imageId);
  return createOverlayFromArchive({ archive: stream, base, appName: app.name, out: opts.out, codec: opts.codec, started });
}

interface StagedLayer {
  path: string;
  size: number;
  diffId: string;
}

/** What is kept of a `docker save` archive: its JSON files, and the layers not in the base. */
interface ReadArchive {
  /** Top-level JSON files (manifest.json, the image config) by name. */
  jsons: Map<string, Buffer>;
  /** Staged layer tars by diff id. */
  staged: Map<string, StagedLayer>;
  /** The same, by path in the archive. */
  byPath: Map<string, StagedLayer>;
  /** Bytes of all the layer tars the archive held, base layers included. */
  appBytes: number;
}

/**
 * Reads the archive: JSON files into memory, layer tars to `stage` with their sha256; a
 * layer of the base (or one seen before) is dropped as soon as its digest is known.
 */
async function readSavedArchive(opts: { archive: NodeJS.ReadableStream | string; stage: string; baseSet: Set<string> }): Promise<ReadArchive> {
  const read: ReadArchive = { jsons: new Map(), staged: new Map(), byPath: new Map(), appBytes: 0 };
  const pending: Promise<void>[] = [];
  let n = 0;
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      const p = entry.path.replace(/^\.\//, '');
      if (entry.type !== 'File' && entry.type !== 'OldFile') return entry.resume();
      if (!p.includes('/') && p.endsWith('.json')) {
        const chunks: Buffer[] = [];
        entry.on('data', (c: Buffer) => chunks.push(c));
        entry.on('end', () => read.jsons.set(p, Buffer.concat(chunks)));
        return;
      }
      // Docker 20.10 saves layers as <dir>/layer.tar; Docker 25 and later save an OCI layout
      // whose layers and config are blobs/sha256/<hex> (manifest.json names them either way).
      if (!p.endsWith('/layer.tar') && !p.startsWith('blobs/')) return entry.resume();
      read.appBytes += entry.size ?? 0;
      pending.push(stageLayer({ entry, path: p, file: join(opts.stage, `layer-${n++}.tar`), baseSet: opts.baseSet, read }));
    },
  });
  const src = typeof opts.archive === 'string' ? createReadStream(opts.archive) : opts.archive;
  await pipeline(src as NodeJS.ReadableStream, parser);
  await Promise.all(pending);
  return read;
}

/** Writes one layer tar to `file` while hashing it; resolves once it is staged (or dropped). */
function stageLayer(opts: { entry: ReadEntry; path: string; file: string; baseSet: Set<string>; read: ReadArchive }): Promise<void> {
  const { entry, path: p, file, baseSet } = opts;
  const { staged, byPath } = opts.read;
  const hash = createHash('sha256');
  const out = createWriteStream(file);
  let size = 0;
  entry.on('data', (c: Buffer) => {
    hash.update(c);
    size += c.length;
    if (!out.write(c)) {
      entry.pause();
      out.once('drain', () => entry.resume());
    }
  });
  return new Promise<void>((resolve, reject) => {
    entry.on('end', () => {
      out.end(() => {
        const diffId = `sha256:${hash.digest('hex')}`;
        if (baseSet.has(diffId) || staged.has(diffId)) {
          if (staged.has(diffId)) byPath.set(p, staged.get(diffId)!);
          rm(file, { force: true }).then(() => resolve(), reject);
        } else {
          staged.set(diffId, { path: file, size, diffId });
          byPath.set(p, staged.get(diffId)!);
          resolve();
        }
      });
    });
    out.on('error', reject);
  });
}

/** The app image the archive holds (exactly one), from its manifest.json and config (a JSON file, or an OCI blob). */
async function archivedApp(read: Pick<ReadArchive, 'jsons' | 'byPath'>, appName: string | null | undefined): Promise<{ app: ImageRef; configBytes: Buffer }> {
  const { jsons, byPath } = read;
  const manifestBytes = jsons.get('manifest.json');
  if (!manifestBytes) throw new ImageError('bad_image_archive', 'the saved app image has no manifest.json');
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { Config: string; RepoTags?: string[] | null }[];
  const configPath = manifest[0]?.Config;
  const configBlob = configPath === undefined ? undefined : byPath.get(configPath);
  const configBytes = configPath === undefined ? undefined : (jsons.get(configPath) ?? (configBlob ? await readFile(configBlob.path) : undefined));
  if (!manifest[0] || !configBytes || manifest.length !== 1) {
    throw new ImageError('bad_image_archive', 'the saved archive must hold exactly one image with its config', { context: { images: manifest.length } });
  }
  const config = JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
  const app: ImageRef = {
    name: appName ?? manifest[0].RepoTags?.[0] ?? null,
    imageId: `sha256:${sha256Hex(configBytes)}`,
    diffIds: config.rootfs?.diff_ids ?? [],
  };
  return { app, configBytes };
}

/** Writes the header, then the framed artifacts, to `tmp`; resolves once the file is closed. */
async function writeOverlayFile(opts: {
  tmp: string;
  header: OverlayHeader;
  codec: CodecName;
  manifestJson: Buffer;
  configBytes: Buffer;
  layers: StagedLayer[];
}): Promise<void> {
  const file = createWriteStream(opts.tmp);
  const fileDone = new Promise<void>((resolve, reject) => {
    file.on('close', resolve);
    file.on('error', reject);
  });
  file.write(encodeHeader(opts.header));
  const writer = new FrameWriter(file, { meta: { overlay: overlayId(opts.header) } });
  await writer.writeArtifact('manifest.json', opts.codec, opts.manifestJson);
  await writer.writeArtifact('config.json', opts.codec, opts.configBytes);
  for (const l of opts.layers) {
    await writer.writeArtifact(layerArtifactName(l.diffId), opts.codec, createReadStream(l.path, { highWaterMark: 1 << 20 }), { rawSize: l.size });
  }
  await writer.finish();
  await fileDone;
}

/**
 * Overlay from a `docker save` archive (a stream, or a path). Layer tars are staged next to
 * `out` and removed afterwards; base layers are dropped while the archive is read.
 */
export async function createOverlayFromArchive(opts: {
  archive: NodeJS.ReadableStream | string;
  base: ImageRef;
  appName?: string | null;
  out: string;
  codec: CodecName;
  started?: number;
}): Promise<CreateResult> {
  const started = opts.started ?? performance.now();
  const stage = join(dirname(opts.out), `.overlay-stage-${process.pid}-${Date.now()}`);
  const tmp = `${opts.out}.tmp-${process.pid}`;
  const baseSet = new Set(opts.base.diffIds);
  await mkdir(stage, { recursive: true });
  try {
    // 1. Read the archive: JSON files into memory, layer tars to staging with their sha256.
    const { jsons, staged, byPath, appBytes } = await readSavedArchive({ archive: opts.archive, stage, baseSet });
    const saveDone = performance.now();

    const { app, configBytes } = await archivedApp({ jsons, byPath }, opts.appName);
    checkBuiltOn(opts.base, app);
    const overlayIds = [...new Set(app.diffIds.slice(opts.base.diffIds.length).filter((d) => !baseSet.has(d)))];
    const layers = overlayIds.map((d) => {
      const s = staged.get(d);
      if (!s) throw new ImageError('bad_image_archive', `the saved app image lacks the layer ${d} its config lists`, { context: { diffId: d } });
      return s;
    });

    // 2. Header, then the framed artifacts.
    const manifestJson = Buffer.from(loadManifest({ app: { ...app, configBytes: 0, manifestBytes: 0 } }), 'utf8');
    const header: OverlayHeader = validateHeader({
      format: OVERLAY_FORMAT,
      version: 1,
      codec: opts.codec,
      created: new Date().toISOString(),
      base: { name: opts.base.name, imageId: opts.base.imageId, diffIds: opts.base.diffIds },
      app: { name: app.name, imageId: app.imageId, diffIds: app.diffIds, configBytes: configBytes.length, manifestBytes: manifestJson.length },
      layers: layers.map((l) => ({ diffId: l.diffId, sha256: l.diffId.slice(7), size: l.size })),
    });
    await writeOverlayFile({ tmp, header, codec: opts.codec, manifestJson, configBytes, layers });
    await rename(tmp, opts.out);
    const done = performance.now();
    return {
      id: overlayId(header),
      path: opts.out,
      header,
      fileBytes: (await stat(opts.out)).size,
      layerBytes: layers.reduce((s, l) => s + l.size, 0),
      appBytes,
      saveMs: Math.round(saveDone - started),
      writeMs: Math.round(done - saveDone),
      totalMs: Math.round(done - started),
    };
  } finally {
    await rm(stage, { recursive: true, force: true });
    await rm(tmp, { force: true });
  }
}
