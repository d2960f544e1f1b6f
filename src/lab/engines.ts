// One Docker engine per cloudlet, each in its cloudlet's network namespace with its own
// data-root, exec-root, socket, pidfile and cgroup parent, so engines never share state.
// Three engine kinds: the system's Docker 20.10, and Docker 28.5 with containerd 2.1 from the
// private prefix scripts/setup-docker28.sh installs (docs/engines-docker28.md) with either
// image store: the classic overlay2 graph driver (docker28) or containerd's (docker28-containerd).
import { mkdirSync, openSync, closeSync, writeFileSync, readFileSync, existsSync, symlinkSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CloudletError, UsageError } from '../util/errors.js';
import { spawnDetached } from '../util/exec.js';
import { DockerEngine } from '../engine/docker.js';
import { CONTAINERD_COPY_PREFIX } from '../engine/checkpoint-install.js';
import { nsenterArgs } from './netns.js';
import { isAlive, terminate, processesMentioning } from './processes.js';
import { ENGINE_KINDS, type EngineKind, type LabCloudlet } from './state.js';

export type EngineInfo = LabCloudlet['engine'];

export { ENGINE_KINDS, type EngineKind } from './state.js';
export const DEFAULT_ENGINE_KIND: EngineKind = 'docker20';

export function parseEngineKind(value: string, what: string): EngineKind {
  if ((ENGINE_KINDS as readonly string[]).includes(value)) return value as EngineKind;
  throw new UsageError(`${what}: unknown engine '${value}' (one of ${ENGINE_KINDS.join(', ')})`);
}

/** Where scripts/setup-docker28.sh installs Docker 28 (its CLOUDLET_DOCKER28_PREFIX). */
export const DOCKER28_PREFIX = process.env.CLOUDLET_DOCKER28_PREFIX ?? '/opt/cloudlet/docker28';
/**
 * The runc Docker 28 runs here: Debian 12's 1.1.5. The prefix's runc 1.3.6 needs glibc 2.38
 * and cannot re-execute itself through a private loader (`runc init`), see
 * docs/engines-docker28.md.
 */
const DOCKER28_RUNC = '/usr/sbin/runc';

/** The dockerd to start and the directories its PATH needs before the usual ones. */
function engineBinaries(kind: EngineKind, home: string): { dockerd: string; path: string[] } {
  if (kind === 'docker20') return { dockerd: 'dockerd', path: [] };
  const bin = join(DOCKER28_PREFIX, 'bin');
  if (!existsSync(join(bin, 'dockerd')) || !existsSync(join(bin, 'containerd'))) {
    throw new UsageError(`engine ${kind}: Docker 28 is not installed in ${DOCKER28_PREFIX}`, {
      hint: 'run `bash scripts/setup-docker28.sh` (scripts/setup.sh does it)',
    });
  }
  // dockerd starts its containerd and shims from PATH; our runc goes before the prefix's.
  const runcDir = join(home, 'runc-bin');
  mkdirSync(runcDir, { recursive: true });
  rmSync(join(runcDir, 'runc'), { force: true });
  symlinkSync(DOCKER28_RUNC, join(runcDir, 'runc'));
  return { dockerd: join(bin, 'dockerd'), path: [runcDir, bin] };
}

/**
 * The engine's daemon.json: empty but for the containerd image store of `docker28-containerd`
 * (the `containerd-snapshotter` feature, Docker 29's default: images and R/W layers kept by
 * containerd's overlayfs snapshotter instead of the overlay2 graph driver).
 */
export function engineDaemonConfig(kind: EngineKind): Record<string, unknown> {
  return kind === 'docker28-containerd' ? { features: { 'containerd-snapshotter': true } } : {};
}

/** The image store the lab configures for that kind (`cloudlet doctor` reads it from the engine). */
export function engineImageStore(kind: EngineKind): 'overlay2' | 'containerd' {
  return kind === 'docker28-containerd' ? 'containerd' : 'overlay2';
}

/**
 * Docker's `--userns-remap USER` (a daemon-wide setting): every container runs in a user
 * namespace runc creates as root, container uids mapped to USER's subordinate range (Docker
 * 20.10 looks up /etc/subuid AND /etc/subgid by the user's name). Root owns those namespaces,
 * so CRIU may read the rlimits of their non-root processes without CAP_SYS_RESOURCE (see
 * docs/userns-remap.md). uid/gid: the start of the range (what names DATA_ROOT/UID.GID).
 */
export interface UsernsRemap {
  user: string;
  uid: number;
  gid: number;
}

/** Where the engine keeps containers, layers and checkpoints: DATA_ROOT, or DATA_ROOT/UID.GID under userns-remap (docker info: DockerRootDir). */
export function engineDockerRoot(engine: { dataRoot: string; usernsRemap?: UsernsRemap | null }): string {
  const r = engine.usernsRemap;
  return r ? join(engine.dataRoot, `${r.uid}.${r.gid}`) : engine.dataRoot;
}

export function engineLayout(name: string, dir: string, runDir: string, prefix: string, xdgRuntimeDir: string): Omit<EngineInfo, 'pid' | 'kind'> {
  return {
    dataRoot: join(dir, name, 'docker'),
    execRoot: join(runDir, name, 'exec'),
    socket: join(runDir, name, 'docker.sock'),
    pidfile: join(runDir, name, 'docker.pid'),
    cgroupParent: `${prefix}${name}`,
    log: join(dir, name, 'dockerd.log'),
    xdgRuntimeDir,
  };
}

/** PATH for engines: /usr/local/sbin first, where set-up puts the CRIU >= 4.2 wrapper. */
const ENGINE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * CRIU options for every restore of a lab engine. tcp-established lets `docker start
 * --checkpoint` restore the established connections of a final dump (network handoff).
 * work-dir: CRIU needs one it can mount its cgroup yard in from the wrapper's mount namespace;
 * restore.log lands there too (and stays, unlike containerd's copy).
 */
function engineCriuConfig(workDir: string): string {
  return `tcp-established\nwork-dir ${workDir}\n`;
}

/**
 * Gives one engine its own CRIU configuration. runc names /etc/criu/runc.conf to CRIU, whose
 * settings override what runc asks over RPC; the file is host-wide, and Docker 20.10 cannot
 * name another one (no org.criu.config annotation; CRIU_CONFIG_FILE is overridden by the RPC
 * request). So the engine finds, first in its PATH, a `criu` that bind-mounts the engine's
 * own directory over /etc/criu in a private mount namespace (slave propagation, so mounts
 * made by the host still reach it) and runs the real CRIU there. Returns the wrapper's dir.
 */
function installCriuWrapper(home: string, workDir: string, remapped: { xdg: string; gid: number } | null): string {
  const etc = dirname(engineCriu(home, workDir).criuConfigFile);
  if (/['\\\n]/.test(etc + workDir + (remapped?.xdg ?? ''))) throw new UsageError(`lab paths must not contain quotes or backslashes: ${etc}`);
  const bin = join(home, 'criu-bin');
  mkdirSync(etc, { recursive: true });
  mkdirSync(bin, { recursive: true });
  mkdirSync(workDir, { recursive: true });
  // The mount point; empty on hosts without a CRIU configuration of their own.
  mkdirSync('/etc/criu', { recursive: true });
  writeFileSync(join(etc, 'runc.conf'), engineCriuConfig(workDir));
  writeFileSync(
    join(bin, 'criu'),
    [
      '#!/bin/sh',
      "# Written by cloudlet lab up: this engine's CRIU runs with the configuration in",
      `# ${etc} mounted over /etc/criu (see src/lab/engines.ts).`,
      ...remapUnpackLines(remapped),
      `exec unshare -m --propagation slave /bin/sh -c 'mount --bind "$0" /etc/criu && exec ${REAL_CRIU} "$@"' '${etc}' "$@"`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return bin;
}

/**
 * Under userns-remap the restored tasks open their images themselves, as the container's root
 * (host uid/gid of the range's start): containerd unpacks them into a 0700 root-owned
 * $XDG_RUNTIME_DIR/ctrd-checkpointNNN, and the restore fails with "Unable to open
 * tty-info.img: Permission denied". The wrapper runs after the unpack: it lets the range's
 * gid in. SKETCH: a race-free place would be a restore hook, or containerd's unpack mode.
 */
function remapUnpackLines(remapped: { xdg: string; gid: number } | null): string[] {
  if (!remapped) return [];
  return [`for d in '${remapped.xdg}'/${CONTAINERD_COPY_PREFIX}*; do [ -d "$d" ] && chgrp ${remapped.gid} "$d" && chmod 0750 "$d"; done`];
}

/** The CRIU >= 4.2 that set-up installs (a wrapper around its private prefix). */
export const REAL_CRIU = '/usr/local/sbin/criu';

function criuWorkDir(layout: Pick<EngineInfo, 'xdgRuntimeDir'>): string {
  return join(layout.xdgRuntimeDir, '..', 'criu-work');
}

function engineCriu(home: string, workDir: string): { criuConfigFile: string; workDir: string; criu: string } {
  return { criuConfigFile: join(home, 'criu-etc', 'runc.conf'), workDir, criu: REAL_CRIU };
}

/** The engine's own CRIU settings: its configuration file, the work-dir that sets, the CRIU it runs (cloudletd's `lazyRestore`). */
export function engineCriuSettings(layout: Pick<EngineInfo, 'dataRoot' | 'xdgRuntimeDir'>): { criuConfigFile: string; workDir: string; criu: string } {
  return engineCriu(join(layout.dataRoot, '..'), criuWorkDir(layout));
}

export interface StartEngineOptions {
  name: string;
  /** The cloudlet's network namespace. */
  namespace: string;
  layout: Omit<EngineInfo, 'pid' | 'kind'>;
  kind: EngineKind;
}

export async function startEngine(opts: StartEngineOptions): Promise<EngineInfo> {
  const { name, layout, kind } = opts;
  const home = join(layout.dataRoot, '..');
  const binaries = engineBinaries(kind, home);
  mkdirSync(layout.dataRoot, { recursive: true });
  mkdirSync(layout.execRoot, { recursive: true });
  // A config file of our own, so that a host-wide /etc/docker/daemon.json never applies.
  const configFile = join(home, 'daemon.json');
  writeFileSync(configFile, `${JSON.stringify(engineDaemonConfig(kind))}\n`);
  const remap = layout.usernsRemap ?? null;
  const criuBin = installCriuWrapper(home, criuWorkDir(layout), remap ? { xdg: layout.xdgRuntimeDir, gid: remap.gid } : null);
  // containerd unpacks checkpoints into $XDG_RUNTIME_DIR and never deletes them: the lab
  // gives it a dir on its scratch tmpfs, which `lab down` removes.
  const xdg = layout.xdgRuntimeDir;
  mkdirSync(xdg, { recursive: true });
  const logFd = openSync(layout.log, 'a');
  let pid: number;
  try {
    pid = spawnDetached(
      'nsenter',
      nsenterArgs(opts.namespace, binaries.dockerd, [
        '--data-root',
        layout.dataRoot,
        '--exec-root',
        layout.execRoot,
        '-H',
        `unix://${layout.socket}`,
        '--pidfile',
        layout.pidfile,
        '--config-file',
        configFile,
        '--cgroup-parent',
        layout.cgroupParent,
        '--experimental',
        ...(remap ? ['--userns-remap', remap.user] : []),
      ]),
      { logFd, env: { PATH: [criuBin, ...binaries.path, ENGINE_PATH].join(':'), XDG_RUNTIME_DIR: xdg, HOME: home } },
    );
  } finally {
    closeSync(logFd);
  }
  const engine = new DockerEngine(layout.socket);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (!isAlive(pid)) {
      throw new CloudletError('engine_start_failed', `Docker engine of ${name} exited during start-up`, {
        kind: 'unavailable',
        context: { name, log: layout.log, tail: logTail(layout.log) },
        hint: `see ${layout.log}`,
      });
    }
    if (
      await engine.ping().then(
        () => true,
        () => false,
      )
    )
      break;
    if (Date.now() > deadline) {
      throw new CloudletError('engine_start_failed', `Docker engine of ${name} did not answer within 60 s`, {
        kind: 'unavailable',
        context: { name, log: layout.log, tail: logTail(layout.log) },
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { ...layout, kind, pid };
}

function logTail(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').slice(-8).join('\n') : '';
}

/**
 * Stops an engine: kills its containers first (a container that ignores SIGTERM would hold
 * dockerd's shutdown for its whole grace time), then dockerd by PID, then any containerd or
 * shim that still names the engine's directories.
 */
export async function stopEngine(engine: EngineInfo): Promise<string[]> {
  const notes: string[] = [];
  if (isAlive(engine.pid)) {
    const docker = new DockerEngine(engine.socket);
    try {
      const killed = await docker.killAllContainers();
      if (killed > 0) notes.push(`killed ${killed} container(s)`);
    } catch (err) {
      notes.push(`could not list containers before stopping the engine: ${(err as Error).message}`);
    }
    const how = await terminate(engine.pid, engine.dataRoot, 20_000);
    notes.push(`dockerd ${engine.pid} ${how}`);
  }
  const dirs = [engine.execRoot, engine.dataRoot];
  for (const pid of processesMentioning(dirs)) {
    const how = await terminate(pid, dirs, 5_000);
    if (how !== 'not-running') notes.push(`leftover process ${pid} ${how}`);
  }
  return notes;
}
