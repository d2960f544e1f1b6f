// The lab: a real multi-cloudlet topology on one machine.
//
//   client ns ──┐                       each link: two TAPs joined by cl-wire (delay) and
//   cloudlet a ─┼── router ns            shaped with tbf (rate), addresses 10.250.K.0/24
//   cloudlet b ─┘                        (K = 0 for the client, 1.. for cloudlets)
//
// Services live on 10.240.0.0/16 (LAB_SERVICE_NETWORK), the same bridge network on every
// engine; the router holds a /32 route per service address to the cloudlet hosting it.
//
// Every cloudlet namespace runs its own Docker engine and its own cloudletd. The host reaches
// each cloudletd through a loopback port forwarded to the daemon's unix socket.
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, closeSync, rmSync, writeFileSync, existsSync, readFileSync, rmdirSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError, ConflictError, UsageError, errorMessage } from '../util/errors.js';
import { run, spawnDetached } from '../util/exec.js';
import { HOLD_BIN } from '../network/packet-hold.js';
import { LAB_FAULTS_ENV, type DaemonConfigInput } from '../daemon/config.js';
import type { ServiceNetworkConfigInput } from '../network/service-network.js';
import { BUSYBOX_IMAGE, buildBaseImageArchives, loadImageArchive } from '../images/base-images.js';
import { engineLayout, engineCriuSettings, startEngine, stopEngine, REAL_CRIU } from './engines.js';
import { ensureCriuKdatCache, KDAT_CACHE, KDAT_PATH } from '../engine/criu-kdat.js';
import { lazyPagesSupported } from '../engine/lazy-pages.js';
import { shapeRate, validateLink, writeDelayFile } from './link-shaping.js';
import { mountsUnder, unmountAllUnder } from './mounts.js';
import { addNetns, addTap, deleteNetns, listNetns, netnsPath, nsenterArgs, setDefaultRoute, sysctl } from './netns.js';
import { isAlive, isOurProcess, processesMentioning, terminate } from './processes.js';
import { labDir, labRunDir, readLabState, statePath, writeLabState, type LabCloudlet, type LabHost, type LabState, type LinkSpec, type RestoreMode } from './state.js';

/** Namespace (and cgroup) name prefix; CLOUDLET_LAB_PREFIX lets tests run a lab of their own. */
export const LAB_PREFIX = process.env.CLOUDLET_LAB_PREFIX ?? 'cllab-';
export const DAEMON_PORT = 7070;
/**
 * The lab's daemons take fault-injection requests (bench faults, the integration tests).
 * It is written into their configs (allowFaultInjection) and, as the second key cloudletd
 * requires, into their environment (CLOUDLET_LAB_FAULTS=1): see checkFaultInjection.
 */
const LAB_FAULT_INJECTION = true;
/** First loopback port tried for the forwarded APIs: a -> 7171, b -> 7172, ... */
export const FIRST_HOST_PORT = 7171;
export const IMAGE_CACHE_DIR = process.env.CLOUDLET_IMAGE_CACHE ?? '/var/cache/cloudlet/images';

export interface LabUpOptions {
  cloudlets: number;
  link: LinkSpec;
  /** Per-node overrides, e.g. the client's link. */
  links?: Record<string, LinkSpec>;
  /**
   * Whether the cloudlets may restore migrated containers lazily (default: lazy where CRIU
   * can, see labRestoreMode; each handoff then asks for lazy or eager, by default by the
   * container's memory, see restoreFor in migration/source.ts; eager: never lazily).
   */
  restore?: RestoreMode;
}

export type Progress = (message: string) => void;

const here = fileURLToPath(new URL('.', import.meta.url));
const DAEMON_MAIN = join(here, '..', 'daemon', 'main.js');
const FORWARDER_MAIN = join(here, 'forwarder-main.js');
/** Built by scripts/setup.sh from native/cl-wire.c. */
export const WIRE_BIN = join(here, '..', '..', 'native', 'cl-wire');

/**
 * The lab's links and every handoff need the native helpers, which scripts/setup.sh builds
 * (a plain `npm ci && npm run build` does not): say so before anything is created.
 */
export function requireNativeHelpers(): void {
  const missing = [WIRE_BIN, HOLD_BIN].filter((bin) => !existsSync(bin));
  if (missing.length) {
    throw new UsageError(`native helper(s) not built: ${missing.join(', ')}`, {
      hint: 'run `bash scripts/setup.sh` as root (it builds dist/native/ from native/*.c; cl-hold needs libnetfilter-queue-dev)',
      context: { missing },
    });
  }
}

export function cloudletName(index: number): string {
  return String.fromCharCode('a'.charCodeAt(0) + index);
}

function hostOnLink(name: string, k: number, link: LinkSpec, dir: string): LabHost {
  return {
    name,
    namespace: `${LAB_PREFIX}${name}`,
    address: `10.250.${k}.2`,
    gateway: `10.250.${k}.1`,
    ifname: 'uplink',
    routerIfname: `to-${name}`,
    link,
    wire: { pid: 0, delayFile: join(dir, 'links', `${name}.delay`), log: join(dir, 'links', `${name}.log`) },
  };
}

/**
 * Lazy restores where this kernel and CRIU allow them (userfaultfd), unless asked otherwise;
 * asked for where they do not, lab up fails with CRIU's answer.
 */
async function labRestoreMode(asked: RestoreMode | undefined, progress: Progress): Promise<RestoreMode> {
  if (asked === 'eager') return 'eager';
  const lazy = await lazyPagesSupported(REAL_CRIU);
  if (lazy.ok) return 'lazy';
  if (asked === 'lazy') {
    throw new UsageError(`lazy restores need userfaultfd: \`criu check --feature uffd-noncoop\` failed: ${lazy.detail}`, { hint: 'use --restore eager' });
  }
  progress(`criu: no lazy restores here (criu check --feature uffd-noncoop: ${lazy.detail}): handoffs restore eagerly`);
  return 'eager';
}

export async function labUp(opts: LabUpOptions, progress: Progress): Promise<LabState> {
  if (!Number.isInteger(opts.cloudlets) || opts.cloudlets < 1 || opts.cloudlets > 8) {
    throw new UsageError(`--cloudlets must be an integer from 1 to 8 (got ${opts.cloudlets})`);
  }
  const link = validateLink(opts.link);
  requireNativeHelpers();
  const dir = labDir();
  const runDir = labRunDir();
  const existing = readLabState(dir);
  if (existing) {
    throw new ConflictError(`the lab is already up (${existing.cloudlets.length} cloudlets, since ${existing.createdAt})`, {
      hint: 'run `cloudlet lab status` to see it or `cloudlet lab down` to remove it',
      context: { dir },
    });
  }
  const strays = (await listNetns()).filter((n) => n.startsWith(LAB_PREFIX));
  if (strays.length > 0) {
    throw new ConflictError(`namespaces of an earlier lab are still there: ${strays.join(', ')}`, {
      hint: 'run `cloudlet lab down` first',
    });
  }
  const restore = await labRestoreMode(opts.restore, progress);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  mkdirSync(runDir, { recursive: true, mode: 0o700 });

  const linkOf = (name: string) => (opts.links?.[name] ? validateLink(opts.links[name]!) : link);
  const state: LabState = {
    version: 1,
    createdAt: new Date().toISOString(),
    dir,
    prefix: LAB_PREFIX,
    token: randomBytes(24).toString('hex'),
    router: { namespace: `${LAB_PREFIX}router` },
    client: hostOnLink('client', 0, linkOf('client'), dir),
    cloudlets: [],
    restore,
    forwarder: null,
  };
  // Written before anything exists, so that `lab down` can clean up after a failed `up`.
  writeLabState(state, dir);

  try {
    progress('network: router, client and cloudlet namespaces, shaped links');
    await addNetns(state.router.namespace);
    await sysctl(state.router.namespace, 'net.ipv4.ip_forward', '1');
    const hosts: LabHost[] = [state.client];
    for (let i = 0; i < opts.cloudlets; i++) hosts.push(hostOnLink(cloudletName(i), i + 1, linkOf(cloudletName(i)), dir));
    mkdirSync(join(dir, 'links'), { recursive: true });
    for (const h of hosts) {
      await addNetns(h.namespace);
      await addTap(h.namespace, h.ifname, `${h.address}/24`);
      await addTap(state.router.namespace, h.routerIfname, `${h.gateway}/24`);
      h.wire.pid = startWire(h, state.router.namespace);
      writeLabState(state, dir);
      await setDefaultRoute(h.namespace, h.gateway);
      await shapeRate(h.namespace, h.ifname, h.link.bandwidth);
      await shapeRate(state.router.namespace, h.routerIfname, h.link.bandwidth);
    }

    for (const h of hosts.slice(1)) {
      const layout = engineLayout(h.name, dir, runDir, LAB_PREFIX, join(scratchOf(h.name), 'xdg'));
      const cl: LabCloudlet = {
        ...h,
        engine: { ...layout, pid: 0 },
        daemon: {
          pid: 0,
          configPath: join(dir, h.name, 'cloudletd.json'),
          peerUrl: `http://${h.address}:${DAEMON_PORT}`,
          apiUrl: '',
          socket: join(runDir, h.name, 'api.sock'),
          log: join(dir, h.name, 'cloudletd.log'),
        },
      };
      state.cloudlets.push(cl);
    }
    writeLabState(state, dir);

    for (const cl of state.cloudlets) await mountScratch(cl.name);
    // Before any CRIU run: without its cache every dump and restore probes the kernel again.
    const kdat = await ensureCriuKdatCache(REAL_CRIU);
    if (kdat === 'made') progress(`criu: kernel-data cache made (${KDAT_CACHE}, linked from ${KDAT_PATH}: /run is not tmpfs here)`);
    progress(`engines: starting ${state.cloudlets.length} Docker engines`);
    await Promise.all(
      state.cloudlets.map(async (cl) => {
        cl.engine = await startEngine(cl.name, cl.namespace, cl.engine);
        writeLabState(state, dir);
      }),
    );

    progress('images: building the local base images (busybox, node runtime)');
    const archives = await buildBaseImageArchives(IMAGE_CACHE_DIR);
    for (const cl of state.cloudlets) {
      for (const a of archives) await loadImageArchive(cl.engine.socket, a.archivePath);
      progress(`images: ${archives.map((a) => a.name).join(', ')} loaded on ${cl.name}`);
    }

    progress('daemons: starting cloudletd on every cloudlet');
    for (const cl of state.cloudlets) {
      cl.daemon.pid = startDaemon(cl, state);
      writeLabState(state, dir);
    }
    for (const cl of state.cloudlets) await waitForDaemon(cl);

    progress('host access: forwarding loopback ports to the daemons');
    state.forwarder = await startForwarder(state, dir);
    writeLabState(state, dir);
    return state;
  } catch (err) {
    progress(`lab up failed: ${errorMessage(err)}; cleaning up`);
    await labDown(() => undefined);
    throw err;
  }
}

/** Starts the wire that joins a host's TAP to the router's TAP, adding the link's delay. */
function startWire(h: LabHost, routerNs: string): number {
  writeDelayFile(h.wire.delayFile, h.link.latency);
  const fd = openSync(h.wire.log, 'a');
  try {
    return spawnDetached(WIRE_BIN, [netnsPath(h.namespace), h.ifname, netnsPath(routerNs), h.routerIfname, h.wire.delayFile], {
      logFd: fd,
    });
  } finally {
    closeSync(fd);
  }
}

/**
 * Per-cloudlet tmpfs for migration staging and the engine's XDG_RUNTIME_DIR (where containerd
 * unpacks checkpoints and our base images live): dumps of hundreds of MB never reach the
 * disk, so their writeback cannot slow the final round. Under the lab's run dir, so that
 * `lab down` unmounts it with the rest.
 */
export function scratchOf(name: string): string {
  return join(labRunDir(), name, 'scratch');
}

async function mountScratch(name: string): Promise<void> {
  const dir = scratchOf(name);
  mkdirSync(dir, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', 'mode=0700,size=8g', `cloudlet-lab-${name}`, dir]);
  mkdirSync(join(dir, 'xdg'), { recursive: true });
  mkdirSync(join(dir, 'cloudletd'), { recursive: true });
}

/**
 * The lab's service network: 10.240.0.0/16 on every engine, cloudlet K hands out 10.240.K.x,
 * and a service address is routed by the router to the cloudlet that announced it last.
 */
export const LAB_SERVICE_NETWORK = { name: 'cloudlet-svc', subnet: '10.240.0.0/16', gateway: '10.240.0.1' } as const;

function serviceNetworkConfig(cl: LabCloudlet, state: LabState): ServiceNetworkConfigInput {
  const k = state.cloudlets.indexOf(cl) + 1;
  return {
    ...LAB_SERVICE_NETWORK,
    ipRange: `10.240.${k}.0/24`,
    announce: ['ip', '-n', state.router.namespace, 'route', 'replace', '{address}/32', 'via', cl.address],
  };
}

function daemonConfig(cl: LabCloudlet, state: LabState): DaemonConfigInput {
  return {
    serviceNetwork: serviceNetworkConfig(cl, state),
    node: cl.name,
    listen: [{ host: cl.address, port: DAEMON_PORT }, { socket: cl.daemon.socket }],
    token: state.token,
    dockerSocket: cl.engine.socket,
    dockerExecRoot: cl.engine.execRoot,
    dockerDataRoot: cl.engine.dataRoot,
    dockerXdgRuntimeDir: cl.engine.xdgRuntimeDir,
    lazyRestore: state.restore === 'lazy' ? engineCriuSettings(cl.engine) : null,
    // Holders without a network (bench all's workloads) fit this spare; a holder with a pinned
    // service address (bench migrate's, cloudletd's netnsHolder services) does not: the
    // destination starts its copy before the freeze.
    netnsSpare: { image: BUSYBOX_IMAGE, network: 'none' },
    scratchDir: join(scratchOf(cl.name), 'cloudletd'),
    dataDir: join(state.dir, cl.name, 'cloudletd'),
    peers: state.cloudlets.filter((p) => p.name !== cl.name).map((p) => ({ name: p.name, url: p.daemon.peerUrl })),
    logLevel: 'info',
    allowFaultInjection: LAB_FAULT_INJECTION,
  };
}

function startDaemon(cl: LabCloudlet, state: LabState): number {
  writeFileSync(cl.daemon.configPath, JSON.stringify(daemonConfig(cl, state), null, 2) + '\n', { mode: 0o600 });
  return spawnDaemon(cl);
}

/**
 * cloudletd's environment in the lab: ours, a fixed PATH, and CLOUDLET_LAB_FAULTS=1 exactly
 * when the lab turns fault injection on (never inherited from the shell that ran the lab).
 */
export function labDaemonEnv(base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
  delete env[LAB_FAULTS_ENV];
  if (LAB_FAULT_INJECTION) env[LAB_FAULTS_ENV] = '1';
  return env;
}

/** Runs cloudletd in the cloudlet's namespace with its config file as written; returns its PID. */
export function spawnDaemon(cl: LabCloudlet): number {
  const fd = openSync(cl.daemon.log, 'a');
  try {
    return spawnDetached('nsenter', nsenterArgs(cl.namespace, process.execPath, [DAEMON_MAIN, '--config', cl.daemon.configPath]), {
      logFd: fd,
      env: labDaemonEnv(process.env),
    });
  } finally {
    closeSync(fd);
  }
}

/** GET /healthz over the daemon's unix socket. */
function healthz(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath: socket, path: '/healthz', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** Waits until the cloudlet's daemon answers /healthz; fails (with its log's tail) if it exits or takes longer than timeoutMs. */
export async function waitForDaemon(cl: LabCloudlet, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await healthz(cl.daemon.socket))) {
    if (!isAlive(cl.daemon.pid) || Date.now() > deadline) {
      const tail = existsSync(cl.daemon.log) ? readFileSync(cl.daemon.log, 'utf8').split('\n').slice(-8).join('\n') : '';
      throw new CloudletError('daemon_start_failed', `cloudletd of ${cl.name} did not become healthy`, {
        kind: 'unavailable',
        context: { node: cl.name, log: cl.daemon.log, tail },
        hint: `see ${cl.daemon.log}`,
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startForwarder(state: LabState, dir: string): Promise<{ pid: number; log: string }> {
  const specFile = join(dir, 'forwarder.json');
  const portsFile = join(dir, 'forwarder-ports.json');
  const log = join(dir, 'forwarder.log');
  rmSync(portsFile, { force: true });
  writeFileSync(
    specFile,
    JSON.stringify(state.cloudlets.map((cl, i) => ({ name: cl.name, socket: cl.daemon.socket, port: FIRST_HOST_PORT + i }))),
  );
  const fd = openSync(log, 'a');
  let pid: number;
  try {
    pid = spawnDetached(process.execPath, [FORWARDER_MAIN, specFile, portsFile], { logFd: fd });
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + 10_000;
  while (!existsSync(portsFile)) {
    if (!isAlive(pid) || Date.now() > deadline) {
      throw new CloudletError('forwarder_failed', 'the loopback forwarder did not start', { kind: 'internal', context: { log } });
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const ports = JSON.parse(readFileSync(portsFile, 'utf8')) as Record<string, number>;
  for (const cl of state.cloudlets) cl.daemon.apiUrl = `http://127.0.0.1:${ports[cl.name]}`;
  return { pid, log };
}

export interface LabDownReport {
  wasUp: boolean;
  removed: string[];
  errors: string[];
}

/**
 * Removes everything the lab made. Safe to run twice, and after a crash: each step checks
 * what exists, and a failing step does not stop the ones after it (they are reported).
 */
export async function labDown(progress: Progress): Promise<LabDownReport> {
  const dir = labDir();
  const runDir = labRunDir();
  const state = readLabState(dir);
  // The state's prefix wins over the environment's: it names what this lab really made.
  const prefix = state?.prefix ?? LAB_PREFIX;
  const report: LabDownReport = { wasUp: state !== null, removed: [], errors: [] };
  const step = async (what: string, fn: () => Promise<string[] | void>) => {
    try {
      const notes = await fn();
      if (notes) report.removed.push(...notes.map((n) => `${what}: ${n}`));
    } catch (err) {
      report.errors.push(`${what}: ${errorMessage(err)}`);
    }
  };

  if (state) {
    if (state.forwarder) {
      const fwd = state.forwarder;
      await step('forwarder', async () => [`${fwd.pid} ${await terminate(fwd.pid, FORWARDER_MAIN, 5000)}`]);
    }
    for (const cl of state.cloudlets) {
      progress(`stopping ${cl.name}`);
      await step(`cloudletd ${cl.name}`, async () =>
        cl.daemon.pid ? [`${cl.daemon.pid} ${await terminate(cl.daemon.pid, cl.daemon.configPath, 10_000)}`] : [],
      );
    }
    await Promise.all(state.cloudlets.map((cl) => step(`engine ${cl.name}`, () => stopEngine(cl.engine))));
    for (const h of [state.client, ...state.cloudlets]) {
      if (h.wire?.pid) await step(`wire ${h.name}`, async () => [`${h.wire.pid} ${await terminate(h.wire.pid, h.wire.delayFile, 5000)}`]);
    }
  }
  // Anything still naming the lab's directories (a daemon or shim from a crashed `up`).
  await step('processes', async () => {
    const notes: string[] = [];
    for (const pid of processesMentioning([dir + '/', runDir + '/'])) {
      notes.push(`${pid} ${await terminate(pid, [dir + '/', runDir + '/'], 5000)}`);
    }
    return notes;
  });
  await step('mounts', () => unmountAllUnder([dir, runDir]));
  await step('namespaces', async () => {
    const notes: string[] = [];
    for (const ns of (await listNetns()).filter((n) => n.startsWith(prefix))) {
      await deleteNetns(ns);
      notes.push(ns);
    }
    return notes;
  });
  await step('cgroups', async () => removeLabCgroups(prefix));
  await step('files', async () => {
    const notes: string[] = [];
    for (const d of [dir, runDir]) {
      if (!existsSync(d)) continue;
      const left = mountsUnder([d]);
      if (left.length > 0) throw new Error(`still mounted under ${d}: ${left.join(', ')}`);
      rmSync(d, { recursive: true, force: true });
      notes.push(d);
    }
    return notes;
  });
  if (existsSync(statePath(dir))) report.errors.push(`state file ${statePath(dir)} is still there`);
  return report;
}

/** Docker creates CGROUP_ROOT/<controller>/<prefix><name>; empty once its containers are gone. */
function removeLabCgroups(prefix: string): string[] {
  const root = '/sys/fs/cgroup';
  const removed: string[] = [];
  if (!existsSync(root)) return removed;
  for (const controller of readdirSync(root)) {
    const cdir = join(root, controller);
    let entries: string[];
    try {
      entries = readdirSync(cdir);
    } catch {
      continue; // a file (cgroup v2 interface file) or an unreadable controller: nothing of ours
    }
    for (const e of entries.filter((n) => n.startsWith(prefix))) {
      rmdirCgroupTree(join(cdir, e));
      removed.push(join(controller, e));
    }
  }
  return removed;
}

/**
 * Removes a cgroup and the cgroups below it, deepest first. A container's cgroup can outlive
 * it (an engine stopped before its runc cleaned up: seen once on a dev lab, empty) and would
 * keep the lab's own from going. The kernel refuses a cgroup that still has processes
 * (EBUSY), so nothing running is ever taken away.
 */
function rmdirCgroupTree(dir: string): void {
  for (const child of readdirSync(dir, { withFileTypes: true })) {
    if (child.isDirectory()) rmdirCgroupTree(join(dir, child.name));
  }
  rmdirSync(dir);
}

export interface NodeHealth {
  name: string;
  engineRunning: boolean;
  daemonRunning: boolean;
}

export function labHealth(state: LabState): NodeHealth[] {
  return state.cloudlets.map((cl) => ({
    name: cl.name,
    engineRunning: isOurProcess(cl.engine.pid, cl.engine.dataRoot),
    daemonRunning: isOurProcess(cl.daemon.pid, cl.daemon.configPath),
  }));
}

/** Reshapes one node's link (both directions) on a running lab. */
export async function setLink(state: LabState, nodeName: string, spec: LinkSpec): Promise<void> {
  const link = validateLink(spec);
  const host = nodeName === 'client' ? state.client : state.cloudlets.find((c) => c.name === nodeName);
  if (!host) {
    throw new UsageError(`unknown lab node '${nodeName}'`, {
      hint: `lab nodes: client, ${state.cloudlets.map((c) => c.name).join(', ')}`,
    });
  }
  await shapeRate(host.namespace, host.ifname, link.bandwidth);
  await shapeRate(state.router.namespace, host.routerIfname, link.bandwidth);
  writeDelayFile(host.wire.delayFile, link.latency);
  if (!isOurProcess(host.wire.pid, host.wire.delayFile)) {
    throw new CloudletError('wire_down', `the wire of ${nodeName}'s link (pid ${host.wire.pid}) is not running`, {
      kind: 'unavailable',
      hint: 'recreate the lab: `cloudlet lab down && cloudlet lab up`',
    });
  }
  process.kill(host.wire.pid, 'SIGHUP');
  host.link = link;
  writeLabState(state, state.dir);
}
