// Lazy (post-copy) restore on one machine: the restored container runs before its memory
// is all in, and CRIU's lazy-pages daemon fills it from the local image directory.
//
// Why: `docker start --checkpoint` of a 256 MiB service spends most of its time in CRIU
// copying every page into the new process before the process may run (PLATFORM.md: start
// 0.6-0.75 s, with local lazy pages 0.40-0.43 s). With lazy pages, the restore maps the
// memory empty and hands a userfaultfd per process to the daemon, which answers page faults
// at once and copies the rest in the background. The pages are already on this machine
// (received in the final round), so no network post-copy is involved (that path fails on
// this kernel, PLATFORM.md).
//
// How the engine's restore gets `lazy-pages`: runc gives CRIU the engine's configuration
// file (the lab mounts an engine's own directory over /etc/criu, see lab/engines.ts), whose
// options override runc's request. The option is added to that file for one restore at a
// time and removed right after it; restores through one file are serialized. The daemon
// and the restore meet on `lazy-pages.socket`, a name relative to CRIU's work directory,
// so the daemon runs with the same `work-dir` as the engine's configuration.
//
// Nothing is given up on safety: the daemon's exit status says whether every page arrived;
// the handoff is committed (the source copy removed) only after that.
import { lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CloudletError } from '../util/errors.js';
import { tryRun } from '../util/exec.js';
import { startTracked } from '../util/spawner.js';

/** Where an engine's restores read their CRIU options, and the work directory those name. */
export interface LazyRestoreConfig {
  /** The CRIU configuration file the engine's runc passes to CRIU (its runc.conf). */
  criuConfigFile: string;
  /** The `work-dir` that file sets (where CRIU looks for lazy-pages.socket). */
  workDir: string;
  /** CRIU binary for the daemon (the same CRIU the engine restores with). */
  criu: string;
}

export const LAZY_SOCKET = 'lazy-pages.socket';
/** Longest life of a lazy-pages daemon: restore plus post-copy take about a second here. */
const DAEMON_LIFETIME_S = 180;

export class LazyPagesError extends CloudletError {
  constructor(message: string, context: Record<string, unknown>) {
    super('lazy_pages_failed', message, { context, kind: 'internal' });
  }
}

export interface LazyPagesDaemon {
  pid: number;
  /** Resolves when the daemon exits 0 (every page copied); rejects otherwise. */
  done: Promise<void>;
  /** Kills the daemon if it still runs (a restore that failed never connects). */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Completes the directory the daemon reads the restore's images from with symlinks to the
 * files of the installed checkpoint directory, leaving alone the names already there (the
 * pagemaps and pages a parent-mode rebuild wrote for the daemon: with them, the checkpoint's
 * own pagemaps, pages and `parent` are not linked). Relative links of the checkpoint (pages
 * staged outside containerd's copy) resolve from `outDir` too: it lies directly in
 * $XDG_RUNTIME_DIR like containerd's copy, so they are copied as they are.
 */
export async function linkImagesForDaemon(checkpointDir: string, outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const present = new Set(await readdir(outDir));
  const ownPages = [...present].some((n) => n.startsWith('pagemap-'));
  for (const name of await readdir(checkpointDir)) {
    if (present.has(name)) continue;
    if (ownPages && (/^(pagemap|pages)-.*\.img$/.test(name) || name === 'parent')) continue;
    const from = join(checkpointDir, name);
    const st = await lstat(from);
    if (st.isSymbolicLink()) await symlink(await readlink(from), join(outDir, name));
    else if (st.isFile()) await symlink(from, join(outDir, name));
  }
}

/** Starts `criu lazy-pages` on `imagesDir` and waits until it listens in `workDir`. */
export async function startLazyPagesDaemon(opts: { criu: string; imagesDir: string; workDir: string; logFile: string }): Promise<LazyPagesDaemon> {
  const socket = join(opts.workDir, LAZY_SOCKET);
  // A socket left by an earlier daemon would let the restore connect to nobody.
  await rm(socket, { force: true });
  // Under `timeout`: a daemon whose restore never comes (cloudletd killed before it) waits
  // for a connection forever; bounded, it cannot outlive a handoff by much. `timeout` passes
  // our SIGTERM on to CRIU.
  const child = startTracked(
    'timeout',
    ['-k', '5', String(DAEMON_LIFETIME_S), opts.criu, 'lazy-pages', '--images-dir', opts.imagesDir, '--work-dir', opts.workDir, '-o', opts.logFile, '-v2'],
    {
      maxStdout: 4096,
    },
  );
  const context = { imagesDir: opts.imagesDir, log: opts.logFile };
  let running = true;
  const done = child.exited.then(
    async (x) => {
      running = false;
      const code = x.signal ? null : x.code;
      if (code !== 0) {
        const tail = (await readFile(opts.logFile, 'utf8').catch(() => ''))
          .split('\n')
          .filter((l) => /Error|Only \d+ of/.test(l))
          .slice(-3)
          .join(' | ');
        throw new LazyPagesError(
          `CRIU's lazy-pages daemon failed (exit ${code ?? 'by signal'}): ${tail || x.stderr.slice(0, 4096).trim() || 'see its log'}`,
          context,
        );
      }
    },
    (e: unknown) => {
      running = false;
      throw new LazyPagesError(`cannot run ${opts.criu} lazy-pages: ${(e as Error).message}`, context);
    },
  );
  // Nobody may be waiting on `done` yet: a failure is still seen by whoever awaits it.
  done.catch(() => undefined);
  const stop = async (): Promise<void> => {
    if (!running) return;
    child.kill('SIGTERM');
    await child.exited.catch(() => null);
  };
  for (let waited = 0; ; waited += 5) {
    if ((await stat(socket).catch(() => null))?.isSocket()) break;
    if (!running) {
      await done; // its own error (exit status, log lines)
      throw new LazyPagesError(`CRIU's lazy-pages daemon exited before it listened on ${socket}`, context);
    }
    if (waited > 5000) {
      await stop();
      throw new LazyPagesError(`CRIU's lazy-pages daemon did not listen on ${socket} within 5 s`, context);
    }
    await sleep(5);
  }
  return { pid: await child.pid, done, stop };
}

/** Whether this kernel and CRIU can restore lazily (`criu check --feature uffd-noncoop`); the detail says why not. */
export async function lazyPagesSupported(criu: string): Promise<{ ok: boolean; detail: string }> {
  const r = await tryRun(criu, ['check', '--feature', 'uffd-noncoop']);
  const detail = `${r.stdout}${r.stderr}`.trim().split('\n').slice(-2).join(' | ');
  return { ok: r.exitCode === 0, detail };
}

const configLocks = new Map<string, Promise<void>>();

/** Runs `fn` when no other restore through the same CRIU configuration file runs. */
async function serializedOnConfig<T>(configFile: string, fn: () => Promise<T>): Promise<T> {
  const prev = configLocks.get(configFile) ?? Promise.resolve();
  let release!: () => void;
  const chained = prev.then(() => new Promise<void>((r) => (release = r)));
  configLocks.set(configFile, chained);
  await prev;
  try {
    return await fn();
  } finally {
    release();
    if (configLocks.get(configFile) === chained) configLocks.delete(configFile);
  }
}

/**
 * An eager restore on an engine that also restores lazily: it must not run while the
 * engine's configuration says `lazy-pages`, so it waits its turn like the lazy ones.
 */
export function serializedWithLazyRestores<T>(cfg: LazyRestoreConfig | null, fn: () => Promise<T>): Promise<T> {
  return cfg ? serializedOnConfig(cfg.criuConfigFile, fn) : fn();
}

const LAZY_OPTION = 'lazy-pages';

/**
 * Takes out a `lazy-pages` line a killed cloudletd left in the engine's CRIU configuration
 * (withLazyPagesOption puts the file back in a finally, which a SIGKILL skips): with it,
 * every later restore of the engine would wait for a daemon that is not there. Returns
 * whether it had to.
 */
export async function clearLeftLazyPagesOption(configFile: string): Promise<boolean> {
  const text = await readFile(configFile, 'utf8');
  const lines = text.split('\n');
  const kept = lines.filter((l) => l.trim() !== LAZY_OPTION);
  if (kept.length === lines.length) return false;
  await writeFile(configFile, kept.join('\n'));
  return true;
}

/**
 * Runs `fn` (the engine's restore) with `lazy-pages` added to the engine's CRIU
 * configuration, one restore per configuration file at a time; the file is put back as it
 * was before the next restore may start, even if `fn` fails.
 */
export function withLazyPagesOption<T>(configFile: string, fn: () => Promise<T>): Promise<T> {
  return serializedOnConfig(configFile, async () => {
    const original = await readFile(configFile, 'utf8');
    const lines = original.split('\n').filter((l) => l.trim() !== '');
    await writeFile(configFile, [...lines, LAZY_OPTION, ''].join('\n'));
    try {
      return await fn();
    } finally {
      await writeFile(configFile, original);
    }
  });
}
