// Shipping a migrating container's image to a destination that lacks it.
//
// The source asks the destination which of the image's layers it holds (POST
// /v1/images/layers): the destination answers with the local image whose layers are the
// longest prefix of the app image's (the base the overlay can be built on). The source then
// builds an overlay of the image against that base with the overlay code (only the layers the
// destination lacks travel, by diff id, each verified by sha256), pushes it through the
// overlay upload route and has it synthesized there (`docker load` keeps the image id). With
// no usable base on the destination the whole image goes (PUT /v1/images).
import { rm, mkdir, stat } from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { DockerEngine } from '../engine/docker.js';
import { CloudletError } from '../util/errors.js';
import { createOverlayFromArchive, type ImageRef } from '../images/overlay-create.js';
import type { SynthesisResult } from '../images/overlay-synthesize.js';
import type { CodecName } from '../transfer/codecs.js';
import type { PeerTransport } from './peer-transport.js';
import { LayersAnswerSchema } from '../api/schemas/overlays.js';

export const OVERLAY_CONTENT_TYPE = 'application/vnd.cloudlet.overlay';

export interface LayersQuery {
  imageId: string;
  diffIds: string[];
}

export interface LayersAnswer {
  /** The image itself is already there. */
  imagePresent: boolean;
  /** The requested diff ids the destination holds (as the prefix of a local image's). */
  present: string[];
  /** The local image whose layers are the longest prefix of the requested ones (null: none). */
  base: ImageRef | null;
}

export interface ImageShipped {
  /** Bytes on the wire (the overlay file, or the whole image archive). */
  bytes: number;
  /** Layers carried. */
  layers: number;
  ms: number;
}

/** Destination side: which of `q.diffIds` this engine holds, and the best base image. */
export async function findLayers(engine: DockerEngine, q: LayersQuery): Promise<LayersAnswer> {
  if (await engine.imageExists(q.imageId)) return { imagePresent: true, present: [...q.diffIds], base: null };
  let best: ImageRef | null = null;
  for (const id of await engine.listImageIds()) {
    if (id === q.imageId) continue;
    const i = await engine.inspectImage(id);
    if (!i || i.diffIds.length === 0 || i.diffIds.length > q.diffIds.length) continue;
    if (!i.diffIds.every((d, k) => q.diffIds[k] === d)) continue;
    if (!best || i.diffIds.length > best.diffIds.length) best = { name: i.repoTags[0] ?? null, imageId: i.id, diffIds: i.diffIds };
  }
  return { imagePresent: false, present: best ? [...best.diffIds] : [], base: best };
}

function overlayCodec(codec: string): CodecName {
  return codec === 'none' || codec === 'lz4' || codec === 'zstd' || codec === 'gzip' ? codec : 'zstd';
}

/**
 * Source side: makes sure the destination has image `imageId`; returns what was shipped, or
 * null when it was already there. The time includes the query, building the overlay, the
 * upload and the synthesis at the destination.
 */
export async function shipImageIfMissing(opts: {
  engine: DockerEngine;
  peer: PeerTransport;
  imageId: string;
  /** The container's image reference (repo:tag), recorded on the destination when it names the image. */
  imageName: string;
  stageDir: string;
  codec: string;
}): Promise<ImageShipped | null> {
  const t0 = performance.now();
  const { engine, peer } = opts;
  const img = await engine.inspectImage(opts.imageId);
  if (!img) throw new CloudletError('image_missing', `image ${opts.imageId} is not on the source engine`, { kind: 'internal' });
  const answer = await peer.post('/v1/images/layers', { imageId: img.id, diffIds: img.diffIds } satisfies LayersQuery, LayersAnswerSchema);
  if (answer.imagePresent) return null;
  // Saved under its name when the name still means this image, so the destination gets the tag too.
  const named = !/^sha256:/.test(opts.imageName) && (await engine.inspectImage(opts.imageName))?.id === img.id;
  const ref = named ? opts.imageName : img.id;
  const name = named ? (opts.imageName.includes(':') ? opts.imageName : `${opts.imageName}:latest`) : null;
  await mkdir(opts.stageDir, { recursive: true });
  try {
    let bytes: number;
    let layers: number;
    if (answer.base && answer.base.imageId !== img.id) {
      const created = await createOverlayFromArchive({
        archive: await engine.saveImage(ref),
        base: answer.base,
        appName: name,
        out: join(opts.stageDir, 'image.ovl'),
        codec: overlayCodec(opts.codec),
      });
      const up = await streamFile<{ id: string }>(peer, { file: created.path, path: '/v1/overlays', contentType: OVERLAY_CONTENT_TYPE });
      const s = await peer.post<SynthesisResult>(`/v1/overlays/${up.response.id}/synthesize`, {});
      if (!s.imageIdMatches || s.imageId !== img.id) {
        throw new CloudletError('synthesis_failed', `the destination synthesized ${s.imageId}, not ${img.id}`, {
          kind: 'internal',
          context: { got: s.imageId, want: img.id },
        });
      }
      // The image is there now; the overlay file need not stay in the destination's catalog.
      await peer.delete(`/v1/overlays/${up.response.id}`).catch(() => undefined);
      bytes = up.bytes;
      layers = created.header.layers.length;
    } else {
      const file = join(opts.stageDir, 'image.tar');
      await pipeline(await engine.saveImage(ref), createWriteStream(file));
      const up = await streamFile(peer, { file, path: '/v1/images', contentType: 'application/x-tar' });
      bytes = up.bytes;
      layers = img.diffIds.length;
      const check = await peer.post('/v1/images/layers', { imageId: img.id, diffIds: img.diffIds } satisfies LayersQuery, LayersAnswerSchema);
      if (!check.imagePresent)
        throw new CloudletError('image_load_failed', `the destination loaded the archive but has no image ${img.id}`, { kind: 'internal' });
    }
    return { bytes, layers, ms: Math.round(performance.now() - t0) };
  } finally {
    await rm(opts.stageDir, { recursive: true, force: true });
  }
}

/** An image's time to be verified or loaded by the peer, silent, after its last byte. */
const IMAGE_UPLOAD_SILENCE_MS = 30 * 60_000;

/** A file streamed to the peer as it is read (never held whole). */
async function streamFile<T>(peer: PeerTransport, o: { file: string; path: string; contentType: string }) {
  const { size } = await stat(o.file);
  const up = await peer.upload<T>({
    path: o.path,
    method: 'PUT',
    body: createReadStream(o.file, { highWaterMark: 1 << 20 }),
    contentType: o.contentType,
    contentLength: size,
    silenceMs: IMAGE_UPLOAD_SILENCE_MS,
  });
  return { ...up, bytes: size };
}
