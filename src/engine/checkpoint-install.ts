// Putting a CRIU image directory where a Docker engine restores from, without paying
// containerd's copy of every page.
//
// `docker start --checkpoint NAME` restores from DATA_ROOT/containers/ID/checkpoints/NAME.
// dockerd tars that directory into containerd's content store (CPU-bound: ~4-5 s for
// 264 MiB) and containerd unpacks it into $XDG_RUNTIME_DIR/ctrd-checkpointNNN/ (XDG_RUNTIME_DIR
// of dockerd; /tmp when unset) before CRIU restores from there. The tar keeps symlinks as
// symlinks, so the big pages-*.img files are staged OUTSIDE the checkpoint directory, in
// $XDG_RUNTIME_DIR/cloudlet-stage/<ID>-<NAME>/, and the checkpoint directory holds RELATIVE
// symlinks to them:
//
//   DATA_ROOT/containers/ID/checkpoints/NAME/pages-1.img -> ../cloudlet-stage/ID-NAME/pages-1.img
//
// The link is dangling where it is installed; it resolves from the directory containerd
// unpacks into ($XDG_RUNTIME_DIR/ctrd-checkpointNNN/ + ../cloudlet-stage/... =
// $XDG_RUNTIME_DIR/cloudlet-stage/...), which is where CRIU opens it (relative to its image
// directory fd; checked by experiment: restore in ~0.6 s instead of ~5 s for 256 MiB).
// ABSOLUTE links do not work: CRIU opens the pages after entering the container's root.
//
// containerd NEVER deletes its ctrd-checkpoint* copies: every restore leaks one directory
// (with the symlink trick only the small files, ~100 KiB; without it the whole image). Call
// pruneContainerdCheckpointCopies after a successful start; call removeInstalledCheckpoint
// once the restored container runs (CRIU has read every page by then).
import { copyFile, lstat, mkdir, readdir, readlink, rename, rm, stat, symlink, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError, UsageError } from '../util/errors.js';
import { readCriuStats, type RestoreStats } from './criu-stats.js';

export const STAGE_DIR = 'cloudlet-stage';
export const CONTAINERD_COPY_PREFIX = 'ctrd-checkpoint';

export interface InstallCheckpointOptions {
  /** The destination engine's --data-root. */
  dataRoot: string;
  /** Full id (64 hex) of the created (not started) twin. */
  containerId: string;
  /** Checkpoint name, as given to startFromCheckpoint. */
  name: string;
  /** A complete CRIU image directory. Its files are MOVED (copied across filesystems); the directory is removed. */
  imageDir: string;
  /** The engine's XDG_RUNTIME_DIR; null = no staging: every file goes into the checkpoint dir (containerd copies all). */
  xdgRuntimeDir: string | null;
}

export interface InstalledCheckpoint {
  checkpointDir: string;
  /** Staging directory of the big files (null without staging). */
  stageDir: string | null;
  /** Names of the files replaced by relative symlinks into stageDir. */
  linked: string[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const ID_RE = /^[0-9a-f]{64}$/;

export function checkpointPaths(opts: { dataRoot: string; containerId: string; name: string; xdgRuntimeDir: string | null }): {
  checkpointDir: string;
  stageDir: string | null;
} {
  if (!ID_RE.test(opts.containerId)) throw new UsageError(`not a full container id: '${opts.containerId}'`);
  if (!NAME_RE.test(opts.name)) throw new UsageError(`invalid checkpoint name '${opts.name}'`, { hint: 'letters, digits, _ . - (not first)' });
  return {
    checkpointDir: join(opts.dataRoot, 'containers', opts.containerId, 'checkpoints', opts.name),
    stageDir: opts.xdgRuntimeDir === null ? null : join(opts.xdgRuntimeDir, STAGE_DIR, `${opts.containerId}-${opts.name}`),
  };
}

/** The big files worth keeping out of containerd's copy: CRIU's raw page data. */
export function isPagesFile(name: string): boolean {
  return /^pages-\d+\.img$/.test(name);
}

export async function installCheckpoint(opts: InstallCheckpointOptions): Promise<InstalledCheckpoint> {
  const { checkpointDir, stageDir } = checkpointPaths(opts);
  const containerDir = join(opts.dataRoot, 'containers', opts.containerId);
  if (!(await isDir(containerDir))) {
    throw new UsageError(`container ${opts.containerId.slice(0, 12)} has no directory under ${opts.dataRoot}`, {
      hint: 'create the twin on the destination engine first',
    });
  }
  if (await exists(checkpointDir)) throw new ConflictError(`checkpoint '${opts.name}' already exists for ${opts.containerId.slice(0, 12)}`);
  if (stageDir !== null && (await exists(stageDir))) throw new ConflictError(`stage directory ${stageDir} already exists`);
  const entries = await readdir(opts.imageDir, { withFileTypes: true });
  for (const e of entries) {
    if (!e.isFile() && !e.isSymbolicLink()) {
      throw new UsageError(`${join(opts.imageDir, e.name)}: only files and symlinks can be installed as a checkpoint`);
    }
  }
  await mkdir(checkpointDir, { recursive: true });
  if (stageDir !== null) await mkdir(stageDir, { recursive: true });
  const linked: string[] = [];
  const installOne = async (e: (typeof entries)[number]): Promise<void> => {
    const from = join(opts.imageDir, e.name);
    if (e.isSymbolicLink()) {
      await symlink(await readlink(from), join(checkpointDir, e.name));
      await unlink(from);
    } else if (stageDir !== null && isPagesFile(e.name)) {
      await moveFile(from, join(stageDir, e.name));
      await symlink(`../${STAGE_DIR}/${opts.containerId}-${opts.name}/${e.name}`, join(checkpointDir, e.name));
      linked.push(e.name);
    } else {
      await moveFile(from, join(checkpointDir, e.name));
    }
  };
  try {
    // Every file at once: a handoff's final round waits for this (dozens of small files,
    // each a copy across filesystems into the engine's data root).
    const settled = await Promise.allSettled(entries.map(installOne));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (err) {
    await rm(checkpointDir, { recursive: true, force: true });
    if (stageDir !== null) await rm(stageDir, { recursive: true, force: true });
    throw err;
  }
  await rm(opts.imageDir, { recursive: true, force: true });
  return { checkpointDir, stageDir, linked: linked.sort() };
}

/** Removes an installed checkpoint and its staged files (no-op for parts already gone). */
export async function removeInstalledCheckpoint(opts: { dataRoot: string; containerId: string; name: string; xdgRuntimeDir: string | null }): Promise<void> {
  const { checkpointDir, stageDir } = checkpointPaths(opts);
  await rm(checkpointDir, { recursive: true, force: true });
  if (stageDir !== null) await rm(stageDir, { recursive: true, force: true });
}

/**
 * Removes containerd's leaked unpack directories ($XDG_RUNTIME_DIR/ctrd-checkpoint*) that are
 * at least minAgeMs old, and returns their names. Call it after a restore has started: a
 * restore still running on the same engine needs its own copy until CRIU has finished, so
 * with concurrent restores on one engine pass a minAgeMs longer than a restore takes.
 */
export async function pruneContainerdCheckpointCopies(xdgRuntimeDir: string, opts: { minAgeMs?: number } = {}): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(xdgRuntimeDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const removed: string[] = [];
  const now = Date.now();
  for (const n of names) {
    if (!n.startsWith(CONTAINERD_COPY_PREFIX)) continue;
    const p = join(xdgRuntimeDir, n);
    const st = await lstat(p).catch(() => null);
    if (!st || !st.isDirectory()) continue;
    if (now - st.mtimeMs < (opts.minAgeMs ?? 0)) continue;
    await rm(p, { recursive: true, force: true });
    removed.push(n);
  }
  return removed.sort();
}

/**
 * CRIU's stats-restore of the last restore of a container: in CRIU's restore work dir, which
 * is containerd's task bundle (DATA_ROOT/containerd/daemon/io.containerd.runtime.v2.task/moby/ID/;
 * read it right after the start: the bundle goes when the container stops) unless the
 * engine's CRIU configuration sets a `work-dir` of its own (`criuWorkDir`; the lab's does).
 */
export async function readRestoreStats(dataRoot: string, containerId: string, criuWorkDir?: string): Promise<RestoreStats | null> {
  if (!ID_RE.test(containerId)) throw new UsageError(`not a full container id: '${containerId}'`);
  const dir = criuWorkDir ?? join(dataRoot, 'containerd', 'daemon', 'io.containerd.runtime.v2.task', 'moby', containerId);
  return (await readCriuStats(join(dir, 'stats-restore')))?.restore ?? null;
}

async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(from, to);
    await unlink(from);
  }
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}
