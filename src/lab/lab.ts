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
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConflictError, UsageError, errorMessage } from '../util/errors.js';
import { run } from '../util/exec.js';
import { initCa, issueCert } from '../util/pki.js';
import { buildBaseImageArchives, loadImageArchive } from '../images/base-images.js';
import { ensureCriuKdatCache, KDAT_CACHE, KDAT_PATH } from '../engine/criu-kdat.js';
import { lazyPagesSupported } from '../engine/lazy-pages.js';
import { DAEMON_PORT, startDaemon, startForwarder, waitForDaemon } from './daemons.js';
import { DEFAULT_ENGINE_KIND, engineLayout, startEngine, REAL_CRIU, type EngineKind, type UsernsRemap } from './engines.js';
import { applyRemap, planRemap, remapUserFor } from './userns-remap.js';
import { labDown } from './lab-down.js';
import { validateLink } from './link-shaping.js';
import { buildLabNetwork, hostOnLink, requireNativeHelpers } from './links.js';
import { listNetns } from './netns.js';
import { isOurProcess } from './processes.js';
import {
  LAB_PREFIX,
  labDir,
  labRunDir,
  readLabState,
  scratchOf,
  writeLabState,
  type LabCloudlet,
  type LabHost,
  type LabState,
  type LinkSpec,
  type RestoreMode,
} from './state.js';

// The lab's parts, named here as before for the lab's callers.
export { DAEMON_PORT, FIRST_HOST_PORT, LAB_SERVICE_NETWORK, labDaemonEnv, spawnDaemon, waitForDaemon } from './daemons.js';
export { labDown, type LabDownReport } from './lab-down.js';
export { WIRE_BIN, requireNativeHelpers, setLink } from './links.js';
export { LAB_PREFIX, scratchOf } from './state.js';

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
  /** The engine of every cloudlet (default docker20), and per-cloudlet exceptions by name. */
  engine?: EngineKind;
  engines?: Record<string, EngineKind>;
  /** Every engine with Docker's --userns-remap (docker20 only; src/lab/userns-remap.ts). */
  usernsRemap?: boolean;
}

export type Progress = (message: string) => void;

export function cloudletName(index: number): string {
  return String.fromCharCode('a'.charCodeAt(0) + index);
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
  await refuseIfUp(dir);
  const restore = await labRestoreMode(opts.restore, progress);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  mkdirSync(runDir, { recursive: true, mode: 0o700 });

  const linkOf = (name: string) => (opts.links?.[name] ? validateLink(opts.links[name]!) : link);
  const engineOf = labEngineKinds(opts);
  if (opts.usernsRemap) refuseRemapKinds(opts.cloudlets, engineOf);
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
    if (opts.usernsRemap) await setUpRemap(state, dir, progress);
    progress('network: router, client and cloudlet namespaces, shaped links');
    const hosts: LabHost[] = [state.client];
    for (let i = 0; i < opts.cloudlets; i++) hosts.push(hostOnLink(cloudletName(i), i + 1, linkOf(cloudletName(i)), dir));
    await buildLabNetwork(state, hosts, dir);
    const remap = state.usernsRemap ? { user: state.usernsRemap.user, uid: state.usernsRemap.uid, gid: state.usernsRemap.gid } : null;
    state.cloudlets.push(...hosts.slice(1).map((h) => cloudletOn(h, { dir, runDir, engine: engineOf(h.name), remap })));
    writeLabState(state, dir);
    await startCloudlets(state, dir, progress);
    return state;
  } catch (err) {
    progress(`lab up failed: ${errorMessage(err)}; cleaning up`);
    await labDown(() => undefined);
    throw err;
  }
}

/** Refuses a second lab: one is recorded, or namespaces of an earlier one are left. */
async function refuseIfUp(dir: string): Promise<void> {
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
}

/** Each cloudlet's engine kind; a name in `engines` that is not one of the lab's cloudlets is refused. */
function labEngineKinds(opts: LabUpOptions): (name: string) => EngineKind {
  const names = Array.from({ length: opts.cloudlets }, (_, i) => cloudletName(i));
  for (const name of Object.keys(opts.engines ?? {})) {
    if (!names.includes(name)) throw new UsageError(`--engines: no cloudlet '${name}' in a lab of ${opts.cloudlets} (${names.join(', ')})`);
  }
  return (name) => opts.engines?.[name] ?? opts.engine ?? DEFAULT_ENGINE_KIND;
}

/**
 * Docker 20.10 only: Docker 28 cannot restore a container with a network namespace of its own
 * (docs/engines-docker28.md), and under remap one joining a holder cannot be restored at all.
 */
function refuseRemapKinds(cloudlets: number, engineOf: (name: string) => EngineKind): void {
  const others = Array.from({ length: cloudlets }, (_, i) => cloudletName(i)).filter((n) => engineOf(n) !== 'docker20');
  if (others.length > 0)
    throw new UsageError(`--userns-remap: cloudlet(s) ${others.join(', ')} would run ${engineOf(others[0]!)}; a remapped lab runs docker20 engines only`, {
      hint: 'under remap a service needs a network namespace of its own, which only docker20 restores (docs/userns-remap.md)',
    });
}

/** The lab's remap user and range: recorded in the state first, then added where missing (so `lab down` removes them after a crash too). */
async function setUpRemap(state: LabState, dir: string, progress: Progress): Promise<void> {
  const remap = await planRemap(remapUserFor(state.prefix));
  state.usernsRemap = remap;
  writeLabState(state, dir);
  await applyRemap(remap);
  const what = Object.entries(remap.added)
    .filter(([, v]) => v)
    .map(([k]) => k);
  progress(`userns-remap: ${remap.user}, ids ${remap.uid}-${remap.uid + remap.count - 1} (${what.length > 0 ? `added: ${what.join(', ')}` : 'already there'})`);
}

/**
 * dockerd --userns-remap refuses a data root whose parents the remapped root cannot traverse
 * ("please fix by allowing 'o+x' permissions on existing directories"): the lab dir and the
 * engine's dirs become 0711 (no listing; the state, configs and keys stay 0600).
 */
function traversableForRemap(labDirPath: string, dataRoot: string): void {
  mkdirSync(dataRoot, { recursive: true });
  for (let d = dataRoot; d.startsWith(labDirPath); d = dirname(d)) {
    chmodSync(d, 0o711);
    if (d === labDirPath) break;
  }
}

/** A cloudlet on its host: where its engine and its daemon will live (nothing started yet). */
function cloudletOn(h: LabHost, where: { dir: string; runDir: string; engine: EngineKind; remap: UsernsRemap | null }): LabCloudlet {
  const { dir, runDir } = where;
  const layout = engineLayout(h.name, dir, runDir, LAB_PREFIX, join(scratchOf(h.name), 'xdg'));
  return {
    ...h,
    engine: { ...layout, kind: where.engine, pid: 0, ...(where.remap ? { usernsRemap: where.remap } : {}) },
    daemon: {
      pid: 0,
      configPath: join(dir, h.name, 'cloudletd.json'),
      // HTTPS with mutual TLS: the lab's peers know each other by their certificates (labPki).
      peerUrl: `https://${h.address}:${DAEMON_PORT}`,
      apiUrl: '',
      socket: join(runDir, h.name, 'api.sock'),
      log: join(dir, h.name, 'cloudletd.log'),
    },
  };
}

/** Scratch, engines, base images, daemons and the host's access to them, in that order. */
async function startCloudlets(state: LabState, dir: string, progress: Progress): Promise<void> {
  for (const cl of state.cloudlets) await mountScratch(cl.name, state.usernsRemap !== undefined);
  // Before any CRIU run: without its cache every dump and restore probes the kernel again.
  const kdat = await ensureCriuKdatCache(REAL_CRIU);
  if (kdat === 'made') progress(`criu: kernel-data cache made (${KDAT_CACHE}, linked from ${KDAT_PATH}: /run is not tmpfs here)`);
  if (state.usernsRemap) for (const cl of state.cloudlets) traversableForRemap(dir, cl.engine.dataRoot);
  progress(`engines: starting ${state.cloudlets.map((cl) => `${cl.name}=${cl.engine.kind ?? DEFAULT_ENGINE_KIND}`).join(', ')}`);
  await Promise.all(
    state.cloudlets.map(async (cl) => {
      const { pid: _none, kind, ...layout } = cl.engine;
      cl.engine = await startEngine({ name: cl.name, namespace: cl.namespace, layout, kind: kind ?? DEFAULT_ENGINE_KIND });
      writeLabState(state, dir);
    }),
  );

  progress('images: building the local base images (busybox, node runtime)');
  const archives = await buildBaseImageArchives(IMAGE_CACHE_DIR);
  for (const cl of state.cloudlets) {
    for (const a of archives) await loadImageArchive(cl.engine.socket, a.archivePath);
    progress(`images: ${archives.map((a) => a.name).join(', ')} loaded on ${cl.name}`);
  }

  progress("tls: the lab's CA and a certificate per cloudlet (mutual TLS between cloudlets)");
  state.tls = await labPki(state, dir);
  writeLabState(state, dir);

  progress('daemons: starting cloudletd on every cloudlet');
  for (const cl of state.cloudlets) {
    cl.daemon.pid = startDaemon(cl, state);
    writeLabState(state, dir);
  }
  for (const cl of state.cloudlets) await waitForDaemon(cl);

  progress('host access: forwarding loopback ports to the daemons');
  state.forwarder = await startForwarder(state, dir);
  writeLabState(state, dir);
}

/** LAB/pki: a fresh CA (a lab's CA lives as long as the lab) and each cloudlet's certificate for its lab address. */
async function labPki(state: LabState, dir: string): Promise<{ dir: string; ca: string }> {
  const pki = join(dir, 'pki');
  const ca = await initCa({ dir: pki, name: `cloudlet lab CA ${state.prefix}`, force: true });
  for (const cl of state.cloudlets) await issueCert({ dir: pki, name: cl.name, ips: [cl.address], force: true });
  return { dir: pki, ca: ca.cert };
}

/**
 * Under remap the restored tasks open their images as the containers' root (a host uid of the
 * range): the way to containerd's unpack dirs below XDG must let them through (0711, no listing).
 */
async function mountScratch(name: string, remapped: boolean): Promise<void> {
  const dir = scratchOf(name);
  mkdirSync(dir, { recursive: true });
  if (remapped) for (const d of [labRunDir(), join(labRunDir(), name)]) chmodSync(d, 0o711);
  await run('mount', ['-t', 'tmpfs', '-o', `mode=${remapped ? '0711' : '0700'},size=8g`, `cloudlet-lab-${name}`, dir]);
  mkdirSync(join(dir, 'xdg'), { recursive: true, mode: remapped ? 0o711 : 0o777 });
  mkdirSync(join(dir, 'cloudletd'), { recursive: true });
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
