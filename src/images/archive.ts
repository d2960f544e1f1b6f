// `docker save` format archives: manifest.json, the image config named by its sha256, and one
// directory per layer holding layer.tar. This is what `POST /images/load` accepts, and the
// engine keeps the config bytes as they are, so the image id it reports is sha256(config) as
// computed here. Everything in the config is fixed or derived from the layers (determinism:
// see det-tar.ts).
import { createHash } from 'node:crypto';
import { link, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Parser, type ReadEntry } from 'tar';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { ImageError } from './errors.js';
import { FIXED_TIME, sortedTree, writeDeterministicTar } from './det-tar.js';

export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface LayerFile {
  /** 'sha256:<hex>' of the uncompressed layer tar. */
  diffId: string;
  /** Where the layer tar is on disk. */
  path: string;
  /** What made it: goes into the image history. */
  createdBy: string;
}

export interface ImageSpec {
  /** repo:tag, e.g. cloudlet/busybox:1 */
  name: string;
  cmd: string[];
  layers: LayerFile[];
  /** Optional config fields of application images; absent ones leave the config bytes as before. */
  config?: ImageConfigExtras;
}

/** What an application image declares beside its command (Dockerfile USER, ENV, EXPOSE...). */
export interface ImageConfigExtras {
  user?: string;
  /** Added after PATH. */
  env?: string[];
  entrypoint?: string[];
  exposedPorts?: string[];
  workingDir?: string;
}

/** The image config as bytes. Key order is fixed by construction, so the bytes are stable. */
export function imageConfigJson(spec: ImageSpec): string {
  const created = FIXED_TIME.toISOString().replace('.000Z', 'Z');
  const config = {
    architecture: 'amd64',
    config: runConfig(spec),
    created,
    history: spec.layers.map((l) => ({ created, created_by: l.createdBy })),
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: spec.layers.map((l) => l.diffId) },
  };
  return JSON.stringify(config);
}

function runConfig(spec: ImageSpec): Record<string, unknown> {
  const x = spec.config;
  if (!x) return { Env: [DEFAULT_PATH_ENV], Cmd: spec.cmd };
  return {
    ...(x.user ? { User: x.user } : {}),
    ...(x.exposedPorts?.length ? { ExposedPorts: Object.fromEntries(x.exposedPorts.map((p) => [p, {}])) } : {}),
    Env: [DEFAULT_PATH_ENV, ...(x.env ?? [])],
    ...(x.entrypoint ? { Entrypoint: x.entrypoint } : {}),
    Cmd: spec.cmd,
    ...(x.workingDir ? { WorkingDir: x.workingDir } : {}),
  };
}

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Id the engine will give the image: sha256 of the config bytes. */
export function imageIdOfConfig(configJson: string): string {
  return `sha256:${sha256Hex(configJson)}`;
}

function hexOf(digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new ImageError('bad_digest', `not a sha256 digest: '${digest}'`, { context: { digest } });
  return m[1]!;
}

/**
 * Writes the archive for `spec` to `archivePath` (via `stageDir`, which is created and removed).
 * Layer tars are hard-linked into the staging tree, not copied (stageDir must be on the same
 * file system as the layers). Returns the image id.
 */
export async function writeImageArchive(spec: ImageSpec, stageDir: string, archivePath: string): Promise<string> {
  const configJson = imageConfigJson(spec);
  const configHex = sha256Hex(configJson);
  await rm(stageDir, { recursive: true, force: true });
  await mkdir(stageDir, { recursive: true });
  try {
    const manifest = [
      {
        Config: `${configHex}.json`,
        RepoTags: [spec.name],
        Layers: spec.layers.map((l) => `${hexOf(l.diffId)}/layer.tar`),
      },
    ];
    await writeFile(join(stageDir, 'manifest.json'), JSON.stringify(manifest), { mode: 0o644 });
    await writeFile(join(stageDir, `${configHex}.json`), configJson, { mode: 0o644 });
    for (const l of spec.layers) {
      const dir = join(stageDir, hexOf(l.diffId));
      await mkdir(dir, { mode: 0o755 });
      await link(l.path, join(dir, 'layer.tar'));
    }
    await writeDeterministicTar(stageDir, await sortedTree(stageDir), archivePath);
  } finally {
    await rm(stageDir, { recursive: true, force: true });
  }
  return `sha256:${configHex}`;
}

export interface ArchiveSummary {
  imageId: string;
  repoTags: string[];
  diffIds: string[];
}

/** Reads manifest.json and the config from an archive (layer data is skipped, not buffered). */
export async function readArchiveSummary(archivePath: string): Promise<ArchiveSummary> {
  const jsons = new Map<string, Buffer>();
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      if (!entry.path.endsWith('.json') || entry.path.includes('/')) {
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => jsons.set(entry.path, Buffer.concat(chunks)));
    },
  });
  await pipeline(createReadStream(archivePath), parser);
  const manifestBytes = jsons.get('manifest.json');
  if (!manifestBytes) {
    throw new ImageError('bad_image_archive', `no manifest.json in ${archivePath}`, { context: { archivePath } });
  }
  const manifest = JSON.parse(manifestBytes.toString('utf8')) as { Config: string; RepoTags?: string[] }[];
  const first = manifest[0];
  const configBytes = first ? jsons.get(first.Config) : undefined;
  if (!first || !configBytes) {
    throw new ImageError('bad_image_archive', `manifest.json of ${archivePath} names no config that is present`, {
      context: { archivePath, manifest },
    });
  }
  const config = JSON.parse(configBytes.toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
  return {
    imageId: `sha256:${sha256Hex(configBytes)}`,
    repoTags: first.RepoTags ?? [],
    diffIds: config.rootfs?.diff_ids ?? [],
  };
}

/** Image id (sha256 of the config) of a `docker save` archive. */
export async function imageIdOfArchive(archivePath: string): Promise<string> {
  return (await readArchiveSummary(archivePath)).imageId;
}
