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
// How the engine's restore gets `lazy-pages`: added to the engine's own CRIU configuration
// for that one restore (criu-config.ts withRestoreOptions). The daemon
// and the restore meet on `lazy-pages.socket`, a name relative to CRIU's work directory,
// so the daemon runs with the same `work-dir` as the engine's configuration.
//
// Nothing is given up on safety: the daemon's exit status says whether every page arrived;
// the handoff is committed (the source copy removed) only after that.
import { lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink } from 'node:fs/promises';
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
