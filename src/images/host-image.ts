// Application images made from the host's installed programs, without any registry: the
// busybox base layer (base-images.ts) plus one layer holding
//   - host binaries at their own paths (their content: a symlink such as /usr/bin/python3 is
//     followed), and the shared libraries `ldd` lists for them;
//   - whole host directories (a language's standard library, a server's modules), with the
//     libraries their shared objects need;
//   - generated files (the app's script, /etc/passwd with its user, a config file);
// and a config with what a Dockerfile would declare (USER, ENV, EXPOSE, ENTRYPOINT, CMD).
// This is how `cloudlet bench apps` gets Debian's python3, nginx, PostgreSQL 15 into images on
// the lab's engines. Built like the base images (deterministic tars, cached by the inputs'
// sizes and mtimes), so a rebuild with the same host gives the same image id.
import { chmod, copyFile, cp, mkdir, readdir, realpath, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { run } from '../util/exec.js';
import type { ImageConfigExtras, LayerFile } from './archive.js';
import {
  buildBaseImageArchives,
  buildLayer,
  BUSYBOX_LAYER_CREATED_BY,
  cached,
  cacheKey,
  inputFile,
  layerPath,
  parseLddOutput,
  sharedLibraries,
  type BaseImageArchive,
  type InputFile,
} from './base-images.js';

export interface HostTree {
  /** An absolute host directory, copied to the same path. */
  path: string;
  /** Entry names skipped at any depth (e.g. __pycache__, test). */
  exclude?: string[];
}

export interface GeneratedFile {
  path: string;
  content: string;
  mode: number;
}

export interface HostImageSpec {
  /** repo:tag of the image. */
  name: string;
  /** Absolute host paths of programs, copied to the same path with the libraries they need. */
  binaries: string[];
  trees?: HostTree[];
  files?: GeneratedFile[];
  /** Directories made empty in the image, with their mode (e.g. 0o1777 for a non-root user's data). */
  dirs?: { path: string; mode: number }[];
  /** Symlinks in the image: path -> target. */
  symlinks?: { path: string; target: string }[];
  cmd: string[];
  config?: ImageConfigExtras;
}

/** Builds (or reuses from cacheDir) the archive of the image `spec` describes. */
export async function buildHostImage(cacheDir: string, spec: HostImageSpec): Promise<BaseImageArchive> {
  const [busybox] = await buildBaseImageArchives(cacheDir);
  const libs = new Set<string>();
  for (const b of spec.binaries) for (const l of await sharedLibraries(b)) libs.add(l);
  const treeFiles: string[] = [];
  for (const t of spec.trees ?? []) treeFiles.push(...(await filesUnder(t.path, new Set(t.exclude ?? []))));
  for (const so of treeFiles.filter((f) => /\.so(\.|$)/.test(f))) for (const l of await librariesOfModule(so)) libs.add(l);
  const inputs: InputFile[] = [];
  for (const p of [...spec.binaries, ...libs, ...treeFiles]) inputs.push(await inputFile(p));
  const key = cacheKey(spec.name, inputs, JSON.stringify({ busybox: busybox!.imageId, spec }));
  return cached(cacheDir, spec.name, key, async (stage) => {
    const base: LayerFile = { diffId: busybox!.diffIds[0]!, path: layerPath(cacheDir, busybox!.diffIds[0]!), createdBy: BUSYBOX_LAYER_CREATED_BY };
    const layer = await buildLayer(cacheDir, join(stage, 'rootfs'), (root) => stageRootfs(root, spec, [...libs].sort()), {
      createdBy: `cloudlet: host programs ${spec.binaries.map((b) => basename(b)).join(', ')} and their libraries`,
    });
    return { cmd: spec.cmd, layers: [base, layer], ...(spec.config ? { config: spec.config } : {}) };
  });
}

/** Regular files and symlinks under dir, skipping excluded names (absolute paths, sorted). */
async function filesUnder(dir: string, exclude: Set<string>): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (exclude.has(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p, exclude)));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/**
 * Libraries a loadable module needs. Unlike a program's, a module's missing library is not an
 * error: a standard library has modules for optional packages the app never imports.
 */
async function librariesOfModule(so: string): Promise<string[]> {
  try {
    const { stdout } = await run('ldd', [so]);
    return parseLddOutput(stdout).paths;
  } catch {
    return [];
  }
}

async function mkdirs(root: string, path: string): Promise<void> {
  const parts = path.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const d = join(root, ...parts.slice(0, i));
    await mkdir(d, { recursive: true });
    await chmod(d, 0o755);
  }
}

async function stageRootfs(root: string, spec: HostImageSpec, libs: readonly string[]): Promise<void> {
  // Contents, not symlink chains: the image needs none of the host's library layout.
  for (const p of [...spec.binaries, ...libs]) {
    await mkdirs(root, dirname(p));
    await copyFile(await realpath(p), join(root, p));
    await chmod(join(root, p), (await stat(p)).mode & 0o7777);
  }
  for (const t of spec.trees ?? []) {
    const exclude = new Set(t.exclude ?? []);
    await mkdirs(root, dirname(t.path));
    await cp(t.path, join(root, t.path), { recursive: true, verbatimSymlinks: true, filter: (src) => !exclude.has(basename(src)) });
  }
  for (const d of spec.dirs ?? []) {
    await mkdirs(root, dirname(d.path));
    await mkdir(join(root, d.path), { recursive: true });
    await chmod(join(root, d.path), d.mode);
  }
  for (const f of spec.files ?? []) {
    await mkdirs(root, dirname(f.path));
    await writeFile(join(root, f.path), f.content);
    await chmod(join(root, f.path), f.mode);
  }
  for (const s of spec.symlinks ?? []) {
    await mkdirs(root, dirname(s.path));
    await symlink(s.target, join(root, s.path));
  }
}
