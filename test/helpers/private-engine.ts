// A private Docker engine for one test file: its own data-root, exec-root, socket and pidfile
// under one directory, no bridge and no iptables changes (tests must not touch the host's
// network). Stopped by its PID (never by name), then every mount left under its directory is
// lazily unmounted and the directory removed, so a failed test leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Docker from 'dockerode';
import { run } from '../../src/util/exec.js';
import { CloudletError, errorMessage } from '../../src/util/errors.js';

export interface PrivateEngine {
  dir: string;
  /** Path of the unix socket (without unix://). */
  socket: string;
  /** For docker -H. */
  host: string;
  pid: number;
  docker: Docker;
  /** SIGTERM by PID, wait for exit (SIGKILL after the timeout), unmount leftovers, remove dir. */
  stop(): Promise<void>;
}

export async function startPrivateEngine(dir: string, opts: { timeoutMs?: number } = {}): Promise<PrivateEngine> {
  await mkdir(dir, { recursive: true });
  const socket = join(dir, 'docker.sock');
  const configFile = join(dir, 'daemon.json');
  await writeFile(configFile, '{}\n');
  const logPath = join(dir, 'dockerd.log');
  const logFd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      'dockerd',
      [
        '--data-root',
        join(dir, 'data'),
        '--exec-root',
        join(dir, 'exec'),
        '-H',
        `unix://${socket}`,
        '--pidfile',
        join(dir, 'docker.pid'),
        '--bridge=none',
        '--iptables=false',
        '--ip-masq=false',
        '--experimental',
        '--config-file',
        configFile,
      ],
      { stdio: ['ignore', logFd, logFd] },
    );
  } finally {
    closeSync(logFd);
  }
  const pid = child.pid;
  if (pid === undefined) throw new CloudletError('engine_start_failed', 'could not start dockerd', { kind: 'internal', context: { dir } });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  let dead = false;
  void exited.then(() => (dead = true));

  const stop = async (): Promise<void> => {
    if (!dead) {
      process.kill(pid, 'SIGTERM');
      const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000).unref());
      if ((await Promise.race([exited, timer])) === 'timeout') {
        process.kill(pid, 'SIGKILL');
        await exited;
      }
    }
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  };

  const docker = new Docker({ socketPath: socket });
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    if (dead) {
      const log = existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n').slice(-15).join('\n') : '';
      await stop();
      throw new CloudletError('engine_start_failed', `dockerd exited during start-up:\n${log}`, { kind: 'internal', context: { dir } });
    }
    try {
      await docker.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await stop();
        throw new CloudletError('engine_start_failed', `dockerd not reachable after start: ${errorMessage(err)}`, {
          kind: 'internal',
          context: { dir, socket },
          cause: err,
        });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return { dir, socket, host: `unix://${socket}`, pid, docker, stop };
}

/** Mount points at or below dir, from /proc/self/mountinfo (field 5, octal escapes decoded). */
export function mountsUnder(dir: string, mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(prefix));
  // Deepest first, so that a parent is never unmounted before what is mounted inside it.
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

async function unmountUnder(dir: string): Promise<void> {
  // Re-read after each unmount: a lazy unmount of one point may take others with it.
  for (const p of mountsUnder(dir)) {
    if (mountsUnder(dir).includes(p)) await run('umount', ['-l', p]);
  }
}
