// Base images made on this machine, without any registry (none is reachable from a cloudlet):
//   cloudlet/busybox:1  the host's static busybox with one symlink per applet, minimal /etc;
//   cloudlet/node:20    the busybox layer + the host's node binary and the shared libraries
//                       ldd lists for it (with the dynamic loader).
//
// Why deterministic: migration ships an application as an overlay on a base image that the
// target cloudlet already has, and engines recognise "already has" by layer digest (chain id)
// and image id. Each engine loads its own copy of the base archive, so the same inputs must
// give byte-identical layer tars and the same config bytes, hence the same image id on every
// engine, today and after a rebuild. See det-tar.ts for what is fixed in the tars.
import { createReadStream, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DockerEngine } from '../engine/docker.js';
import { run } from '../util/exec.js';
import { errorMessage } from '../util/errors.js';
import { imageIdOfArchive, sha256Hex, writeImageArchive, type ImageConfigExtras, type LayerFile } from './archive.js';
import { sha256File, sortedTree, writeDeterministicTar } from './det-tar.js';
import { ImageError } from './errors.js';

export { imageIdOfArchive };

export const BUSYBOX_IMAGE = 'cloudlet/busybox:1';
export const NODE_IMAGE = 'cloudlet/node:20';

/** The history line of the busybox layer (also the base layer of host-image.ts's images). */
export const BUSYBOX_LAYER_CREATED_BY = 'cloudlet: busybox-static from the host, one symlink per applet, /etc/passwd, /etc/group';

/** Bump when the layout of the images changes, so that cached archives are rebuilt. */
const BUILDER_VERSION = 1;

export interface BaseImageArchive {
  name: string;
  archivePath: string;
  imageId: string;
  diffIds: string[];
}

export interface BuildOptions {
  /** Defaults: /bin/busybox and the running node (process.execPath, resolved). */
  busyboxPath?: string;
  nodePath?: string;
}

/** A file the image is made from; size+mtime+path decide whether the cache is still valid. */
export interface InputFile {
  path: string;
  size: number;
  mtimeMs: number;
}

interface CacheMeta extends BaseImageArchive {
  key: string;
}

/**
 * Builds (or reuses from cacheDir) the archives of cloudlet/busybox:1 and cloudlet/node:20,
 * in that order. An archive is rebuilt only when its input files changed.
 */
export async function buildBaseImageArchives(cacheDir: string, opts: BuildOptions = {}): Promise<BaseImageArchive[]> {
  await mkdir(join(cacheDir, 'layers'), { recursive: true });
  const busyboxPath = opts.busyboxPath ?? '/bin/busybox';
  const nodePath = await realpath(opts.nodePath ?? process.execPath);

  const bbInputs = [await inputFile(busyboxPath)];
  const bbKey = cacheKey(BUSYBOX_IMAGE, bbInputs);
  const busybox = await cached(cacheDir, BUSYBOX_IMAGE, bbKey, async (stage) => {
    const layer = await buildLayer(cacheDir, join(stage, 'rootfs'), (root) => stageBusyboxRootfs(root, busyboxPath), {
      createdBy: BUSYBOX_LAYER_CREATED_BY,
    });
    return { cmd: ['sh'], layers: [layer] };
  });

  const libs = await sharedLibraries(nodePath);
  const nodeInputs = [await inputFile(nodePath), ...(await Promise.all(libs.map((l) => inputFile(l))))];
  const nodeKey = cacheKey(NODE_IMAGE, nodeInputs, bbKey);
  const node = await cached(cacheDir, NODE_IMAGE, nodeKey, async (stage) => {
    const base: LayerFile = {
      diffId: busybox.diffIds[0]!,
      path: layerPath(cacheDir, busybox.diffIds[0]!),
      createdBy: BUSYBOX_LAYER_CREATED_BY,
    };
    const layer = await buildLayer(cacheDir, join(stage, 'rootfs'), (root) => stageNodeRootfs(root, nodePath, libs), {
      createdBy: 'cloudlet: node from the host at /usr/local/bin/node and the shared libraries it needs',
    });
    return { cmd: ['node'], layers: [base, layer] };
  });
  return [busybox, node];
}

export function cacheKey(name: string, inputs: InputFile[], parentKey = ''): string {
  return sha256Hex(JSON.stringify({ builder: BUILDER_VERSION, name, inputs, parentKey }));
}

export async function inputFile(path: string): Promise<InputFile> {
  try {
    const st = await stat(path);
    return { path, size: st.size, mtimeMs: st.mtimeMs };
  } catch (err) {
    throw new ImageError('base_image_input_missing', `cannot read ${path}: ${errorMessage(err)}`, {
      context: { path },
      hint: 'run as root: bash scripts/setup.sh (installs busybox-static)',
      cause: err,
    });
  }
}

function slug(name: string): string {
  return name.replace(/[^a-zA-Z0-9]+/g, '-');
}

export function layerPath(cacheDir: string, diffId: string): string {
  return join(cacheDir, 'layers', `${diffId.replace(/^sha256:/, '')}.tar`);
}

/**
 * Returns the cached archive for `name` when its key matches and all its files are there;
 * otherwise runs `build` in a private staging directory and writes archive + metadata
 * (each through a temporary name and a rename, so a crash never leaves a half file in use).
 */
export async function cached(
  cacheDir: string,
  name: string,
  key: string,
  build: (stage: string) => Promise<{ cmd: string[]; layers: LayerFile[]; config?: ImageConfigExtras }>,
): Promise<BaseImageArchive> {
  const archivePath = join(cacheDir, `${slug(name)}.tar`);
  const metaPath = join(cacheDir, `${slug(name)}.json`);
  if (existsSync(metaPath) && existsSync(archivePath)) {
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as CacheMeta;
    if (meta.key === key && meta.diffIds.every((d) => existsSync(layerPath(cacheDir, d)))) {
      return { name: meta.name, archivePath: meta.archivePath, imageId: meta.imageId, diffIds: meta.diffIds };
    }
  }
  const stage = join(cacheDir, `.stage-${slug(name)}-${process.pid}`);
  await rm(stage, { recursive: true, force: true });
  await mkdir(stage, { recursive: true });
  try {
    const { cmd, layers, config } = await build(stage);
    const tmpArchive = `${archivePath}.${process.pid}.tmp`;
    const imageId = await writeImageArchive({ name, cmd, layers, ...(config ? { config } : {}) }, join(stage, 'archive'), tmpArchive);
    await rename(tmpArchive, archivePath);
    const result: BaseImageArchive = { name, archivePath, imageId, diffIds: layers.map((l) => l.diffId) };
    await writeFile(`${metaPath}.${process.pid}.tmp`, JSON.stringify({ ...result, key } satisfies CacheMeta, null, 2));
    await rename(`${metaPath}.${process.pid}.tmp`, metaPath);
    return result;
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** Stages a rootfs with `fill`, tars it deterministically into cacheDir/layers/<diff hex>.tar. */
export async function buildLayer(cacheDir: string, root: string, fill: (root: string) => Promise<void>, meta: { createdBy: string }): Promise<LayerFile> {
  await mkdir(root, { recursive: true });
  await fill(root);
  const tmp = join(cacheDir, 'layers', `.layer-${process.pid}.tmp`);
  await writeDeterministicTar(root, await sortedTree(root), tmp);
  const diffId = await sha256File(tmp);
  const path = layerPath(cacheDir, diffId);
  await rename(tmp, path);
  return { diffId, path, createdBy: meta.createdBy };
}

/** mkdir + explicit chmod: the mode in the tar must not depend on the process umask. */
async function dir(path: string, mode: number): Promise<void> {
  await mkdir(path, { recursive: true });
  await chmod(path, mode);
}

async function file(path: string, content: string, mode: number): Promise<void> {
  await writeFile(path, content);
  await chmod(path, mode);
}

async function stageBusyboxRootfs(root: string, busyboxPath: string): Promise<void> {
  const { stdout } = await run(busyboxPath, ['--list']);
  const applets = stdout
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => /^[a-zA-Z0-9._[\]-]+$/.test(s) && s !== 'busybox');
  if (!applets.includes('sh')) {
    throw new ImageError('busybox_unusable', `${busyboxPath} --list names no 'sh' applet`, {
      context: { busyboxPath, applets: applets.length },
      hint: 'use a static busybox build (Debian package busybox-static)',
    });
  }
  await dir(join(root, 'bin'), 0o755);
  await copyFile(busyboxPath, join(root, 'bin', 'busybox'));
  await chmod(join(root, 'bin', 'busybox'), 0o755);
  // Relative links: they resolve to /bin/busybox inside any container rootfs.
  for (const a of applets) await symlink('busybox', join(root, 'bin', a));
  for (const [d, mode] of [
    ['dev', 0o755],
    ['proc', 0o555],
    ['sys', 0o555],
    ['root', 0o700],
    ['tmp', 0o1777],
    ['etc', 0o755],
  ] as const) {
    await dir(join(root, d), mode);
  }
  await file(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n', 0o644);
  await file(join(root, 'etc', 'group'), 'root:x:0:\nnobody:x:65534:\n', 0o644);
}

async function stageNodeRootfs(root: string, nodePath: string, libs: readonly string[]): Promise<void> {
  for (const d of ['usr', 'usr/local', 'usr/local/bin']) await dir(join(root, d), 0o755);
  await copyFile(nodePath, join(root, 'usr/local/bin/node'));
  await chmod(join(root, 'usr/local/bin/node'), 0o755);
  for (const lib of libs) {
    // The soname path ldd printed (what the loader looks up), with the content of the file
    // it points to: the image needs no symlink chain of the host's library layout.
    const target = join(root, lib);
    const parts = dirname(lib).split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) await dir(join(root, ...parts.slice(0, i)), 0o755);
    await copyFile(await realpath(lib), target);
    await chmod(target, 0o755);
  }
}

/** Absolute paths of the shared objects (and the loader) that `ldd` lists for a binary. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]);
  const libs = parseLddOutput(stdout);
  if (libs.missing.length > 0) {
    throw new ImageError('shared_library_missing', `ldd ${binary}: not found: ${libs.missing.join(', ')}`, {
      context: { binary, missing: libs.missing },
    });
  }
  return libs.paths;
}

/**
 * Parses ldd's output. Lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)",
 * "/lib64/ld-linux-x86-64.so.2 (0x...)" (the loader), "linux-vdso.so.1 (0x...)" (kernel, no
 * file), "libfoo.so.1 => not found". Paths are returned sorted and without duplicates.
 */
export function parseLddOutput(text: string): { paths: string[]; missing: string[] } {
  const paths = new Set<string>();
  const missing: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('statically linked')) continue;
    const arrow = /^(\S+)\s+=>\s+(.*)$/.exec(line);
    if (arrow) {
      const rhs = arrow[2]!.trim();
      if (rhs.startsWith('not found')) missing.push(arrow[1]!);
      else if (rhs.startsWith('/')) paths.add(rhs.replace(/\s*\(0x[0-9a-f]+\)$/, ''));
      continue;
    }
    const direct = /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line);
    if (direct) paths.add(direct[1]!);
  }
  return { paths: [...paths].sort(), missing };
}

/**
 * Uploads a `docker save` archive to the engine at `dockerSocket` (POST /images/load) and
 * reads the whole reply: the engine reports failures inside the stream (HTTP 200 already sent),
 * so a load is successful only when no line of it carries an error.
 */
export async function loadImageArchive(dockerSocket: string, archivePath: string): Promise<void> {
  const socketPath = dockerSocket.replace(/^unix:\/\//, '');
  try {
    // The engine checks the whole reply: a load succeeded only when it confirmed it.
    await new DockerEngine(socketPath).loadImage(createReadStream(archivePath));
  } catch (err) {
    throw new ImageError('image_load_failed', `loading ${archivePath} into ${socketPath} failed: ${errorMessage(err)}`, {
      context: { socketPath, archivePath },
      cause: err,
      hint: 'is the engine running? (cloudlet doctor)',
    });
  }
}
