// Application images for overlay tests and benchmarks, made locally (no registry): the
// cloudlet/node:20 base plus one app layer of generated files and a small HTTP server.
//   large: ~200 MB of app files over the ~106 MB base (like the 2016 object-recognition app:
//          303 MB app on a 104 MB base);
//   small: ~2 MB of app files (like the 2016 graphics app's 0.69 MB overlay).
// The files are deterministic pseudo-random data, part random bytes and part text drawn from
// a small vocabulary, so that they compress partly and the codecs differ. Every build of the
// same spec gives the same layer bytes and the same image id (det-tar.ts); archives are
// cached in the image cache.
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageIdOfConfig, imageConfigJson, writeImageArchive, type LayerFile } from '../images/archive.js';
import { buildBaseImageArchives, NODE_IMAGE } from '../images/base-images.js';
import { sha256File, sortedTree, writeDeterministicTar } from '../images/det-tar.js';
import { HANDOFF_SERVICE_SCRIPT } from './handoff-service.js';

export interface AppSpec {
  /** repo:tag of the app image. */
  name: string;
  /** Number of generated files and the size of each. */
  files: number;
  fileBytes: number;
  /** Fraction (0..1) of each file that is random bytes; the rest is compressible text. */
  randomFraction: number;
  seed: number;
  /** /app/server.js of the image (default APP_SERVER_JS). */
  serverJs?: string;
}

export const LARGE_APP: AppSpec = { name: 'cloudlet-bench/app-large:1', files: 200, fileBytes: 1 << 20, randomFraction: 0.35, seed: 1 };
/** The service of network handoffs (src/workloads/handoff-service.ts) as an app on the node base. */
export const HANDOFF_APP: AppSpec = {
  name: 'cloudlet/handoff-service:1',
  files: 0,
  fileBytes: 0,
  randomFraction: 0,
  seed: 3,
  serverJs: HANDOFF_SERVICE_SCRIPT,
};
export const SMALL_APP: AppSpec = { name: 'cloudlet-bench/app-small:1', files: 8, fileBytes: 256 << 10, randomFraction: 0.35, seed: 2 };

export interface AppArchive {
  name: string;
  archivePath: string;
  imageId: string;
  diffIds: string[];
  base: { name: string; imageId: string; diffIds: string[]; archivePath: string };
  /** Bytes of the generated app files. */
  appDataBytes: number;
}

/** Serves GET / with {app, files} on $PORT (default 8080). */
export const APP_SERVER_JS = `const http = require('http');
const fs = require('fs');
const files = fs.readdirSync('/app/data').length;
const app = process.env.APP_NAME || 'overlay-app';
http.createServer((req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ app, files, greeting: process.env.GREETING || null }));
}).listen(Number(process.env.PORT || 8080));
`;

const GENERATOR_VERSION = 1;
const WORDS =
  'const let function return import export from await async class this new if else for while of in true false null undefined model tensor layer weight bias input output shape dtype float32 buffer array map filter reduce object string number'
    .split(' ')
    .map((w) => Buffer.from(w + ' '));

/** Deterministic content of file `i` of a spec. */
export function appFileContent(spec: AppSpec, i: number): Buffer {
  const buf = Buffer.allocUnsafe(spec.fileBytes);
  let x = (spec.seed * 0x9e3779b1 + i * 0x85ebca6b + 1) >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const randomEnd = Math.floor((spec.fileBytes * spec.randomFraction) / 4) * 4;
  for (let o = 0; o < randomEnd; o += 4) buf.writeUInt32LE(next(), o);
  let o = randomEnd;
  while (o < spec.fileBytes) {
    const w = WORDS[next() % WORDS.length]!;
    o += w.copy(buf, o);
    if (next() % 12 === 0 && o < spec.fileBytes) buf[o++] = 0x0a;
  }
  return buf;
}

function slug(name: string): string {
  return name.replace(/[^a-zA-Z0-9]+/g, '-');
}

/**
 * Builds (or reuses from cacheDir/apps) the app image archive for `spec` on cloudlet/node:20.
 * Returns it with the base's archive (both loadable with loadImageArchive).
 */
export async function buildAppArchive(cacheDir: string, spec: AppSpec): Promise<AppArchive> {
  const archives = await buildBaseImageArchives(cacheDir);
  const node = archives.find((a) => a.name === NODE_IMAGE)!;
  const dir = join(cacheDir, 'apps');
  await mkdir(dir, { recursive: true });
  const key = JSON.stringify({ GENERATOR_VERSION, spec, base: node.imageId });
  const metaPath = join(dir, `${slug(spec.name)}.json`);
  if (existsSync(metaPath)) {
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as AppArchive & { key: string };
    if (meta.key === key && existsSync(meta.archivePath)) {
      const { key: _k, ...rest } = meta;
      return rest;
    }
  }
  const stage = join(dir, `.stage-${slug(spec.name)}-${process.pid}`);
  await rm(stage, { recursive: true, force: true });
  try {
    const root = join(stage, 'rootfs');
    await mkdir(join(root, 'app', 'data'), { recursive: true });
    for (const d of [join(root, 'app'), join(root, 'app', 'data')]) await chmod(d, 0o755);
    await writeFile(join(root, 'app', 'server.js'), spec.serverJs ?? APP_SERVER_JS);
    await chmod(join(root, 'app', 'server.js'), 0o644);
    for (let i = 0; i < spec.files; i++) {
      const f = join(root, 'app', 'data', `part-${String(i).padStart(4, '0')}.bin`);
      await writeFile(f, appFileContent(spec, i));
      await chmod(f, 0o644);
    }
    const layerTar = join(stage, 'app-layer.tar');
    await writeDeterministicTar(root, await sortedTree(root), layerTar);
    const diffId = await sha256File(layerTar);
    const layerPath = join(dir, `${slug(spec.name)}-layer.tar`);
    await rename(layerTar, layerPath);
    await rm(root, { recursive: true, force: true });
    const baseLayers: LayerFile[] = node.diffIds.map((d) => ({
      diffId: d,
      path: join(cacheDir, 'layers', `${d.slice(7)}.tar`),
      createdBy: 'cloudlet/node:20',
    }));
    const layers: LayerFile[] = [...baseLayers, { diffId, path: layerPath, createdBy: `cloudlet bench: ${spec.files} generated app files and /app/server.js` }];
    const imageSpec = { name: spec.name, cmd: ['node', '/app/server.js'], layers };
    const archivePath = join(dir, `${slug(spec.name)}.tar`);
    const tmp = `${archivePath}.${process.pid}.tmp`;
    const imageId = await writeImageArchive(imageSpec, join(stage, 'archive'), tmp);
    if (imageId !== imageIdOfConfig(imageConfigJson(imageSpec))) throw new Error('image id mismatch while building the app archive');
    await rename(tmp, archivePath);
    const result: AppArchive = {
      name: spec.name,
      archivePath,
      imageId,
      diffIds: layers.map((l) => l.diffId),
      base: { name: node.name, imageId: node.imageId, diffIds: node.diffIds, archivePath: node.archivePath },
      appDataBytes: spec.files * spec.fileBytes,
    };
    await writeFile(metaPath, JSON.stringify({ ...result, key }, null, 2));
    return result;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}
