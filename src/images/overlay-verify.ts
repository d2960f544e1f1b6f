// Receiving an overlay on a cloudlet: the upload is written to a staging file while every
// part of it is checked, and it becomes the overlay (one rename) only when all checks passed:
//   - header: well-formed, known codec, sizes within the cloudlet's limits, base present
//     (checked before the bulk is read);
//   - frames: CRC of every frame, sha256 and size of every artifact (frames.ts);
//   - artifacts: exactly manifest.json, config.json and one layer/<hex> per header layer, in
//     that order, each with the header's codec and size;
//   - config: its sha256 is the app image id, its diff ids are the header's;
//   - manifest: the one `docker load` needs for those diff ids;
//   - layers: each hashes to its diff id, and is a tar without absolute paths, `..`, links
//     out of the root or entries beneath a link (LayerTarChecker).
// On any failure the staging file is removed: nothing partial is ever kept or loaded.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FrameReader } from '../transfer/frame-reader.js';
import type { ArtifactHeader, ArtifactSummary } from '../transfer/frames.js';
import { sha256Hex } from './archive.js';
import { ImageError } from './errors.js';
import { LayerTarChecker, layerArtifactName, loadManifest, overlayId, overlayRawBytes, readHeader, type OverlayHeader } from './overlay.js';

export interface ReceiveLimits {
  /** Largest overlay file accepted (bytes on the wire). */
  maxFileBytes: number;
  /** Largest sum of raw artifact bytes accepted. */
  maxRawBytes: number;
}

export const DEFAULT_LIMITS: ReceiveLimits = {
  maxFileBytes: 8 * 2 ** 30,
  maxRawBytes: 16 * 2 ** 30,
};

export interface ReceivedOverlay {
  id: string;
  header: OverlayHeader;
  path: string;
  fileBytes: number;
  rawBytes: number;
  /** From the first byte to the last check. */
  receiveMs: number;
  tarEntries: number;
}

function tooLarge(what: string, size: number, limit: number): ImageError {
  return new ImageError('overlay_too_large', `${what} of ${size} bytes exceeds this cloudlet's limit of ${limit} bytes (limits.overlayBytes)`, {
    context: { size, limit },
  });
}

async function writeChunk(out: WriteStream, chunk: Buffer): Promise<void> {
  if (out.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const onDrain = () => {
      out.off('error', onError);
      resolve();
    };
    const onError = (e: Error) => {
      out.off('drain', onDrain);
      reject(e);
    };
    out.once('drain', onDrain);
    out.once('error', onError);
  });
}

/** One artifact an overlay must hold: its name and raw size, and the diff id of a layer. */
interface ExpectedArtifact {
  name: string;
  size: number;
  diffId?: string;
}

/** The artifacts the header promises, in their order: manifest.json, config.json, then the layers. */
function expectedArtifacts(header: OverlayHeader): ExpectedArtifact[] {
  return [
    { name: 'manifest.json', size: header.app.manifestBytes },
    { name: 'config.json', size: header.app.configBytes },
    ...header.layers.map((l) => ({ name: layerArtifactName(l.diffId), size: l.size, diffId: l.diffId })),
  ];
}

/** Refuses an artifact that begins where another is expected, or with another codec or size than the header's. */
function checkArtifactBegin(header: OverlayHeader, want: ExpectedArtifact | undefined, a: ArtifactHeader, index: number): asserts want is ExpectedArtifact {
  if (!want) throw new ImageError('bad_overlay', `overlay holds an unexpected extra artifact '${a.name}'`, { context: { artifact: a.name } });
  if (a.name !== want.name) {
    throw new ImageError('bad_overlay', `overlay artifact ${index} is '${a.name}', expected '${want.name}'`, {
      context: { artifact: a.name, expected: want.name },
    });
  }
  if (a.codec !== header.codec) {
    throw new ImageError('bad_overlay', `artifact '${a.name}' is compressed with ${a.codec}, the header says ${header.codec}`, {
      context: { artifact: a.name },
    });
  }
  if (a.rawSize !== want.size) {
    throw new ImageError('bad_overlay', `artifact '${a.name}' announces ${a.rawSize} bytes, the header says ${want.size}`, {
      context: { artifact: a.name },
    });
  }
}

/** Checks a layer once all of it is read: its digest, then the rest of its tar; returns its tar entries. */
async function checkLayerEnd(diffId: string, summary: ArtifactSummary, checker: LayerTarChecker): Promise<number> {
  if (`sha256:${summary.sha256}` !== diffId) {
    throw new ImageError('layer_digest_mismatch', `layer ${diffId}: its bytes hash to sha256:${summary.sha256}`, {
      context: { diffId, actual: `sha256:${summary.sha256}` },
      hint: 'the overlay was refused whole; nothing of it was stored or loaded',
    });
  }
  await checker.end();
  return checker.entries;
}

/** Checks config.json: it hashes to the app image id and lists the header's diff ids. */
function checkConfig(header: OverlayHeader, config: Buffer): void {
  if (`sha256:${sha256Hex(config)}` !== header.app.imageId) {
    throw new ImageError('layer_digest_mismatch', `config.json hashes to sha256:${sha256Hex(config)}, not to the app image id ${header.app.imageId}`, {
      context: { expected: header.app.imageId },
    });
  }
  let diffIds: unknown;
  try {
    diffIds = (JSON.parse(config.toString('utf8')) as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids;
  } catch {
    diffIds = undefined;
  }
  if (!Array.isArray(diffIds) || diffIds.length !== header.app.diffIds.length || diffIds.some((d, i) => d !== header.app.diffIds[i])) {
    throw new ImageError('bad_overlay', 'the app config lists other layers than the overlay header', {
      context: { config: diffIds, header: header.app.diffIds },
    });
  }
}

/**
 * Checks the artifacts of an overlay's framed stream against its header. With `tee`, every
 * stream byte is also handed to it (the receiver's staging file) before it is parsed.
 */
export async function verifyOverlayStream(header: OverlayHeader, stream: AsyncIterable<Buffer>): Promise<{ tarEntries: number; rawBytes: number }> {
  const expected = expectedArtifacts(header);
  const maxArtifact = Math.max(...expected.map((e) => e.size), 1);
  const reader = new FrameReader(stream, { maxArtifactBytes: maxArtifact });
  let index = 0;
  let small: Buffer[] = [];
  let checker: LayerTarChecker | null = null;
  let tarEntries = 0;
  let rawBytes = 0;
  for await (const ev of reader) {
    if (ev.type === 'begin') {
      const want = expected[index];
      checkArtifactBegin(header, want, ev.artifact, index);
      small = [];
      checker = want.diffId ? new LayerTarChecker(want.diffId) : null;
    } else if (ev.type === 'data') {
      if (checker) checker.write(ev.chunk);
      else small.push(ev.chunk);
    } else if (ev.type === 'end') {
      const want = expected[index]!;
      rawBytes += ev.summary.rawBytes;
      if (want.diffId) {
        tarEntries += await checkLayerEnd(want.diffId, ev.summary, checker!);
        checker = null;
      } else if (want.name === 'config.json') {
        checkConfig(header, Buffer.concat(small));
      } else {
        if (Buffer.concat(small).toString('utf8') !== loadManifest(header)) {
          throw new ImageError('bad_overlay', 'manifest.json is not the manifest of the app image the header names');
        }
      }
      index++;
    } else if (ev.type === 'eos') {
      if (index !== expected.length) {
        throw new ImageError('bad_overlay', `overlay ends after ${index} of ${expected.length} artifacts`, {
          context: { got: index, expected: expected.length },
        });
      }
    }
  }
  return { tarEntries, rawBytes };
}

/**
 * Receives an overlay from `source` into `dir`/<id>.ovl. `beforeBody` runs once the header
 * is read and may refuse (base absent, ...). Throws ImageError/TransferError; nothing is left
 * behind on failure.
 */
export async function receiveOverlay(opts: {
  source: AsyncIterable<Buffer | Uint8Array | string>;
  dir: string;
  limits?: ReceiveLimits;
  beforeBody?: (header: OverlayHeader) => Promise<void>;
}): Promise<ReceivedOverlay> {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const started = performance.now();
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const staging = join(opts.dir, `.incoming-${process.pid}-${randomBytes(6).toString('hex')}`);
  const out = createWriteStream(staging, { mode: 0o600 });
  const outClosed = new Promise<void>((resolve, reject) => {
    out.on('close', resolve);
    out.on('error', reject);
  });
  outClosed.catch(() => undefined);
  let fileBytes = 0;
  // Every byte goes to the staging file first, then to the parsers; the limit is enforced
  // on the wire bytes whatever the header claims.
  async function* tee(): AsyncGenerator<Buffer> {
    for await (const v of opts.source) {
      const chunk = typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      fileBytes += chunk.length;
      if (fileBytes > limits.maxFileBytes) throw tooLarge('overlay upload', fileBytes, limits.maxFileBytes);
      await writeChunk(out, chunk);
      yield chunk;
    }
  }
  try {
    const { header, rest } = await readHeader(tee());
    const raw = overlayRawBytes(header);
    if (raw > limits.maxRawBytes) throw tooLarge('overlay content', raw, limits.maxRawBytes);
    if (opts.beforeBody) await opts.beforeBody(header);
    const { tarEntries, rawBytes } = await verifyOverlayStream(header, rest);
    // Bytes after the end of the stream are not part of any overlay.
    for await (const extra of rest) {
      if (extra.length > 0) throw new ImageError('bad_overlay', 'overlay has bytes after the end of its stream', { context: { fileBytes } });
    }
    out.end();
    await outClosed;
    const id = overlayId(header);
    const path = join(opts.dir, `${id}.ovl`);
    await rename(staging, path);
    return { id, header, path, fileBytes, rawBytes, receiveMs: Math.round(performance.now() - started), tarEntries };
  } catch (err) {
    out.destroy();
    await outClosed.catch(() => undefined);
    await rm(staging, { force: true });
    throw err;
  }
}

/** Re-checks an overlay file on disk completely (`verifyOverlayStream` over the file). */
export async function verifyOverlayFile(path: string): Promise<{ header: OverlayHeader; tarEntries: number; rawBytes: number }> {
  const { header, rest } = await readHeader(createReadStream(path, { highWaterMark: 1 << 20 }));
  const r = await verifyOverlayStream(header, rest);
  return { header, ...r };
}
