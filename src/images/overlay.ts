// Image overlays: an application image minus the base image it is built on.
//
// OVERLAY FILE (version 1)
//
//   file   := MAGIC headerLen u32 BE | header (UTF-8 JSON, <= 64 KiB) | stream
//   MAGIC  := "CLOVL01\n"
//   stream := a framed transfer stream (src/transfer/frames.ts) holding, in this order:
//             "manifest.json"  the manifest `docker load` gets (all layers listed, base ones too)
//             "config.json"    the app image's config, byte for byte (its sha256 is the image id)
//             "layer/<hex>"    one per overlay layer: the uncompressed layer tar, whose sha256
//                              is its diff id <hex>
//             every artifact compressed with the header's codec, each with its sha256 and size
//             (checked by the frame reader).
//
// The header comes first so that a cloudlet can refuse an overlay (unknown codec, base it does
// not have, sizes over its limits) before it reads the bulk, and can check every artifact
// against it while it arrives. Nothing in the header is trusted on its own: the config's
// sha256 must be the app image id, the config's diff ids must be the base's followed by the
// overlay layers', and each layer's bytes must hash to its diff id.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { CODEC_NAMES, isCodecName, type CodecName } from '../transfer/codecs.js';
import { ByteQueue } from '../transfer/byte-queue.js';
import { ImageError } from './errors.js';

export const OVERLAY_MAGIC = Buffer.from('CLOVL01\n', 'latin1');
export const MAX_HEADER_BYTES = 64 * 1024;
export const OVERLAY_FORMAT = 'cloudlet-overlay';

export interface OverlayLayer {
  /** 'sha256:<hex>': sha256 of the uncompressed layer tar. */
  diffId: string;
  /** Hex sha256 of the layer tar (the diff id's hex; stated apart for readers of the header). */
  sha256: string;
  /** Bytes of the uncompressed layer tar. */
  size: number;
}

export interface OverlayHeader {
  format: typeof OVERLAY_FORMAT;
  version: 1;
  codec: CodecName;
  /** When the overlay was made (ISO 8601); informational. */
  created: string;
  base: { name: string | null; imageId: string; diffIds: string[] };
  app: { name: string | null; imageId: string; diffIds: string[]; configBytes: number; manifestBytes: number };
  /** The app layers the base does not have, in the app's order (each diff id once). */
  layers: OverlayLayer[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function digestHex(digest: string): string {
  if (!DIGEST.test(digest)) throw new ImageError('bad_digest', `not a sha256 digest: '${digest}'`, { context: { digest } });
  return digest.slice(7);
}

/** The overlay's id on a cloudlet: the first 12 hex digits of the app image id. */
export function overlayId(header: Pick<OverlayHeader, 'app'>): string {
  return digestHex(header.app.imageId).slice(0, 12);
}

export function layerArtifactName(diffId: string): string {
  return `layer/${digestHex(diffId)}`;
}

/** Raw bytes the overlay's artifacts hold (what the frames carry before compression). */
export function overlayRawBytes(h: OverlayHeader): number {
  return h.app.configBytes + h.app.manifestBytes + h.layers.reduce((n, l) => n + l.size, 0);
}

/** The manifest `docker load` needs for the app image (every layer listed, base ones too). */
export function loadManifest(h: Pick<OverlayHeader, 'app'>): string {
  return JSON.stringify([
    {
      Config: `${digestHex(h.app.imageId)}.json`,
      RepoTags: h.app.name ? [h.app.name] : null,
      Layers: h.app.diffIds.map((d) => `${digestHex(d)}/layer.tar`),
    },
  ]);
}

function bad(message: string, context: Record<string, unknown> = {}): ImageError {
  return new ImageError('bad_overlay', message, { context, hint: 'the overlay file is damaged or was not made by `cloudlet overlay create`' });
}

/**
 * Checks a parsed header: every field present and well-formed, a codec we know, the app's
 * diff ids = the base's followed by the overlay layers'. Throws ImageError (code bad_overlay,
 * or unknown_codec) naming the field.
 */
export function validateHeader(raw: unknown): OverlayHeader {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('overlay header is not a JSON object');
  const h = raw as Record<string, unknown>;
  if (h.format !== OVERLAY_FORMAT) throw bad(`not an overlay header (format ${JSON.stringify(h.format)})`);
  if (h.version !== 1) throw bad(`unsupported overlay version ${JSON.stringify(h.version)} (this cloudlet reads version 1)`);
  if (typeof h.codec !== 'string' || !isCodecName(h.codec)) {
    throw new ImageError(
      'unknown_codec',
      `overlay header names codec ${JSON.stringify(h.codec)}, which this cloudlet does not know (known: ${CODEC_NAMES.join(', ')})`,
      {
        context: { codec: h.codec, known: [...CODEC_NAMES] },
        hint: 'recreate the overlay with --codec lz4, zstd, gzip or none',
      },
    );
  }
  const isDigests = (v: unknown): v is string[] => Array.isArray(v) && v.every((d) => typeof d === 'string' && DIGEST.test(d));
  const isSize = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  const base = h.base as Record<string, unknown> | undefined;
  const app = h.app as Record<string, unknown> | undefined;
  if (!base || typeof base !== 'object' || typeof base.imageId !== 'string' || !DIGEST.test(base.imageId) || !isDigests(base.diffIds)) {
    throw bad('overlay header: base must have imageId and diffIds (sha256 digests)');
  }
  if (!app || typeof app !== 'object' || typeof app.imageId !== 'string' || !DIGEST.test(app.imageId) || !isDigests(app.diffIds)) {
    throw bad('overlay header: app must have imageId and diffIds (sha256 digests)');
  }
  if (!isSize(app.configBytes) || app.configBytes === 0 || app.configBytes > MAX_HEADER_BYTES * 16)
    throw bad('overlay header: app.configBytes is not a plausible size');
  if (!isSize(app.manifestBytes) || app.manifestBytes === 0 || app.manifestBytes > MAX_HEADER_BYTES * 16)
    throw bad('overlay header: app.manifestBytes is not a plausible size');
  const nameOk = (v: unknown) => v === null || v === undefined || (typeof v === 'string' && v.length > 0 && v.length <= 255);
  if (!nameOk(base.name) || !nameOk(app.name)) throw bad('overlay header: image names must be strings of 1..255 characters or null');
  if (!Array.isArray(h.layers)) throw bad('overlay header: layers must be a list');
  const layers: OverlayLayer[] = [];
  for (const [i, l] of (h.layers as unknown[]).entries()) {
    const x = l as Record<string, unknown> | null;
    if (!x || typeof x.diffId !== 'string' || !DIGEST.test(x.diffId) || x.sha256 !== x.diffId.slice(7) || !isSize(x.size)) {
      throw bad(`overlay header: layer ${i} must have diffId, sha256 (its hex) and size`, { layer: i });
    }
    layers.push({ diffId: x.diffId, sha256: x.sha256 as string, size: x.size });
  }
  const baseIds = base.diffIds as string[];
  const appIds = app.diffIds as string[];
  if (appIds.length < baseIds.length || baseIds.some((d, i) => appIds[i] !== d)) {
    throw bad('overlay header: the app image is not built on the base (its layers do not start with the base layers)');
  }
  const baseSet = new Set(baseIds);
  const expected = [...new Set(appIds.slice(baseIds.length).filter((d) => !baseSet.has(d)))];
  if (expected.length !== layers.length || expected.some((d, i) => layers[i]!.diffId !== d)) {
    throw bad('overlay header: its layers are not the app layers that the base does not have', { expected, got: layers.map((l) => l.diffId) });
  }
  return {
    format: OVERLAY_FORMAT,
    version: 1,
    codec: h.codec,
    created: typeof h.created === 'string' ? h.created : '',
    base: { name: (base.name as string | null | undefined) ?? null, imageId: base.imageId, diffIds: baseIds },
    app: {
      name: (app.name as string | null | undefined) ?? null,
      imageId: app.imageId,
      diffIds: appIds,
      configBytes: app.configBytes,
      manifestBytes: app.manifestBytes,
    },
    layers,
  };
}

/** MAGIC, length and JSON of a header: the first bytes of an overlay file. */
export function encodeHeader(h: OverlayHeader): Buffer {
  const json = Buffer.from(JSON.stringify(h), 'utf8');
  if (json.length > MAX_HEADER_BYTES) throw bad(`overlay header of ${json.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(json.length, 0);
  return Buffer.concat([OVERLAY_MAGIC, len, json]);
}

/**
 * Reads the header from the start of a byte source. Returns it with an async iterable of the
 * bytes after it (the framed stream), so that the caller reads the source once.
 */
export async function readHeader(
  source: AsyncIterable<Buffer | Uint8Array | string>,
): Promise<{ header: OverlayHeader; headerBytes: number; rest: AsyncIterable<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const q = new ByteQueue();
  const fill = async (n: number): Promise<boolean> => {
    while (q.length < n) {
      const r = await it.next();
      if (r.done) return false;
      const v = r.value;
      q.push(typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    }
    return true;
  };
  if (!(await fill(OVERLAY_MAGIC.length + 4))) {
    throw new ImageError('overlay_truncated', `overlay ended after ${q.length} bytes, before its header`, { context: { bytes: q.length } });
  }
  const magic = q.take(OVERLAY_MAGIC.length);
  if (!magic.equals(OVERLAY_MAGIC)) throw bad(`not an overlay file (starts with ${JSON.stringify(magic.toString('latin1'))})`);
  const len = q.take(4).readUInt32BE(0);
  if (len === 0 || len > MAX_HEADER_BYTES) throw bad(`overlay header length ${len} is out of range 1..${MAX_HEADER_BYTES}`);
  if (!(await fill(len))) {
    throw new ImageError('overlay_truncated', `overlay ended inside its header (${q.length} of ${len} bytes)`, { context: { have: q.length, len } });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(q.take(len).toString('utf8'));
  } catch (err) {
    throw bad(`overlay header is not JSON: ${(err as Error).message}`);
  }
  const header = validateHeader(parsed);
  const leftover = q.length > 0 ? q.take(q.length) : null;
  async function* rest(): AsyncGenerator<Buffer> {
    if (leftover) yield leftover;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      const v = r.value;
      yield typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    }
  }
  return { header, headerBytes: OVERLAY_MAGIC.length + 4 + len, rest: rest() };
}

/** The header of an overlay file on disk (`cloudlet overlay inspect`). */
export async function inspectOverlayFile(path: string): Promise<{ header: OverlayHeader; fileBytes: number; id: string }> {
  let size: number;
  try {
    const fh = await open(path, 'r');
    size = (await fh.stat()).size;
    await fh.close();
  } catch (err) {
    throw new ImageError('overlay_unreadable', `cannot read overlay ${path}: ${(err as Error).message}`, { context: { path } });
  }
  const stream = createReadStream(path, { highWaterMark: 64 * 1024 });
  try {
    const { header } = await readHeader(stream);
    return { header, fileBytes: size, id: overlayId(header) };
  } finally {
    stream.destroy();
  }
}

// ---------------------------------------------------------------------------------------
// Layer tar safety: what a layer may contain before it goes anywhere near an engine.

/**
 * Checks a layer tar while its bytes stream past (write(), then end()). Refuses entries with
 * absolute paths or `..` components, hard links that leave the archive's tree, symbolic links
 * whose relative target climbs out of the root, entries reached through a symbolic link of
 * the same layer, and bytes that are not a tar archive. Absolute symlink targets are allowed:
 * they resolve inside the container's root (and Docker extracts layers chrooted).
 */
export class LayerTarChecker {
  private readonly parser: Parser;
  private failure: ImageError | null = null;
  private readonly symlinks = new Set<string>();
  entries = 0;

  constructor(private readonly layer: string) {
    this.parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        try {
          this.check(entry);
        } catch (err) {
          this.failure ??= err as ImageError;
        }
        entry.resume();
      },
    });
    this.parser.on('error', (err: Error) => {
      this.failure ??= this.unsafe(`layer is not a valid tar archive: ${err.message}`, {});
    });
    this.parser.on('warn', (code: string, message: string | Error) => {
      this.failure ??= this.unsafe(`layer is not a valid tar archive (${code}: ${typeof message === 'string' ? message : message.message})`, {});
    });
  }

  private unsafe(message: string, context: Record<string, unknown>): ImageError {
    return new ImageError('unsafe_layer', `layer ${this.layer}: ${message}`, {
      context: { layer: this.layer, ...context },
      hint: 'the overlay was refused whole; nothing of it was stored or loaded',
    });
  }

  private check(entry: ReadEntry): void {
    this.entries++;
    const raw = entry.path;
    const ctx = { entry: raw, type: entry.type };
    if (raw.startsWith('/')) throw this.unsafe(`tar entry '${raw}' has an absolute path`, ctx);
    const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) throw this.unsafe(`tar entry '${raw}' has a '..' component`, ctx);
    const path = parts.join('/');
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (this.symlinks.has(prefix)) throw this.unsafe(`tar entry '${raw}' lies beneath the symbolic link '${prefix}' of the same layer`, ctx);
    }
    if (entry.type === 'SymbolicLink') {
      const target = entry.linkpath ?? '';
      if (!target.startsWith('/')) {
        const resolved = posix.normalize(posix.join(posix.dirname(path), target));
        if (resolved === '..' || resolved.startsWith('../')) {
          throw this.unsafe(`symbolic link '${raw}' -> '${target}' points outside the image root`, { ...ctx, target });
        }
      }
      this.symlinks.add(path);
    } else if (entry.type === 'Link') {
      const target = entry.linkpath ?? '';
      if (target.startsWith('/') || target.split('/').includes('..')) {
        throw this.unsafe(`hard link '${raw}' -> '${target}' points outside the archive`, { ...ctx, target });
      }
    } else {
      this.symlinks.delete(path);
    }
  }

  /** Feeds bytes; throws as soon as an unsafe entry was seen. */
  write(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    try {
      this.parser.write(chunk);
    } catch (err) {
      // node-tar throws (instead of emitting) on some damaged archives, e.g. "writing more to
      // entry than is appropriate" when a size field disagrees with the data (found by fuzzing).
      this.failure ??= this.unsafe(`layer is not a valid tar archive: ${(err as Error).message}`, {});
    }
    if (this.failure) throw this.failure;
  }

  /** After the last byte: throws if anything was unsafe or the archive is incomplete. */
  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    await new Promise<void>((resolve) => {
      this.parser.on('end', resolve);
      try {
        this.parser.end();
      } catch (err) {
        // As in write(): a damaged archive may make node-tar throw instead of emitting.
        this.failure ??= this.unsafe(`layer is not a valid tar archive: ${(err as Error).message}`, {});
        resolve();
      }
    });
    if (this.failure) throw this.failure;
  }
}
