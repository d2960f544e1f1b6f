// The lab's state file: everything `lab up` made, so that `lab status`, `lab down` and the
// host-side CLI can find it again (also after a crash of the process that made it).
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { LabUsernsRemap } from './userns-remap.js';

export const LAB_STATE_FILE = 'lab.json';

/** Namespace (and cgroup) name prefix; CLOUDLET_LAB_PREFIX lets tests run a lab of their own. */
export const LAB_PREFIX = process.env.CLOUDLET_LAB_PREFIX ?? 'cllab-';

/** Default lab directory; CLOUDLET_LAB_DIR overrides it (tests, several labs). */
export function labDir(): string {
  return process.env.CLOUDLET_LAB_DIR ?? '/var/lib/cloudlet/lab';
}

/** Short runtime directory (unix socket paths are limited to 107 bytes). */
export function labRunDir(): string {
  return process.env.CLOUDLET_LAB_RUN_DIR ?? '/run/cloudlet-lab';
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

/**
 * The engines a lab can run, one kind per cloudlet (src/lab/engines.ts): Docker 20.10, Docker 28
 * with the classic overlay2 store, Docker 28 with the containerd image store.
 */
export const ENGINE_KINDS = ['docker20', 'docker28', 'docker28-containerd'] as const;
export type EngineKind = (typeof ENGINE_KINDS)[number];

export interface LinkSpec {
  /** tc rate, e.g. "100mbit". */
  bandwidth: string;
  /** One-way delay added in each direction of the link, e.g. "5ms". */
  latency: string;
}

export interface LabHost {
  name: string;
  namespace: string;
  /** The host's address on its link to the router. */
  address: string;
  /** The router's address on that link (the host's gateway). */
  gateway: string;
  /** Interface names: inside the host's namespace and inside the router namespace. */
  ifname: string;
  routerIfname: string;
  link: LinkSpec;
  /** The cl-wire process that joins the two TAP ends and adds the link's delay. */
  wire: { pid: number; delayFile: string; log: string };
}

export interface LabCloudlet extends LabHost {
  engine: {
    /** Which engine runs here (src/lab/engines.ts); absent in a lab from before kinds: docker20. */
    kind?: EngineKind;
    pid: number;
    socket: string;
    dataRoot: string;
    execRoot: string;
    pidfile: string;
    cgroupParent: string;
    log: string;
    /** The engine's XDG_RUNTIME_DIR: containerd unpacks checkpoints below it. */
    xdgRuntimeDir: string;
    /** Docker's --userns-remap (src/lab/engines.ts UsernsRemap, `lab up --userns-remap`); absent: none. */
    usernsRemap?: { user: string; uid: number; gid: number } | null;
  };
  daemon: {
    pid: number;
    configPath: string;
    /** URL peers use, inside the lab network. */
    peerUrl: string;
    /** URL the host (CLI, browser) uses: a loopback port forwarded to the daemon's socket. */
    apiUrl: string;
    socket: string;
    log: string;
  };
}

export interface LabState {
  version: 1;
  createdAt: string;
  dir: string;
  prefix: string;
  token: string;
  router: { namespace: string };
  client: LabHost;
  cloudlets: LabCloudlet[];
  forwarder: { pid: number; log: string } | null;
  /**
   * The lab's deployment CA (`LAB/pki/ca.pem`; keys and certificates beside it, one per
   * cloudlet): cloudletd's listeners on the lab addresses are HTTPS with mutual TLS, and
   * whoever calls a peerUrl from the host verifies it against `ca`. Absent: a lab from before
   * TLS (plain http).
   */
  tls?: { dir: string; ca: string };
  /** How the cloudlets restore migrated containers (cloudletd's lazyRestore); absent: eager. */
  restore?: RestoreMode;
  /** `lab up --userns-remap`: every engine runs with Docker's --userns-remap (src/lab/userns-remap.ts); absent: none. */
  usernsRemap?: LabUsernsRemap;
}

/** lazy: CRIU's local lazy pages (post-copy from the received images); eager: every page first. */
export type RestoreMode = 'lazy' | 'eager';

export function statePath(dir = labDir()): string {
  return join(dir, LAB_STATE_FILE);
}

export function readLabState(dir = labDir()): LabState | null {
  const p = statePath(dir);
  if (!existsSync(p)) return null;
  return JSON.parse(readFileSync(p, 'utf8')) as LabState;
}

/** Written atomically (rename) and readable by root only: it holds the token. */
export function writeLabState(state: LabState, dir = labDir()): void {
  const p = statePath(dir);
  writeFileSync(p + '.tmp', JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  renameSync(p + '.tmp', p);
}

/** The CA file a caller of the lab's peer URLs verifies them against (undefined: plain http lab). */
export function labCaFile(state: LabState): string | undefined {
  return state.tls?.ca;
}
