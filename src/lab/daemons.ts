// cloudletd in every lab cloudlet: its config (service network, peers, the engine's paths),
// its start in the cloudlet's namespace, the wait for its health, and the host's access to
// it through the loopback forwarder.
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError } from '../util/errors.js';
import { spawnDetached } from '../util/exec.js';
import { LAB_FAULTS_ENV, type DaemonConfigInput } from '../daemon/config.js';
import type { ServiceNetworkConfigInput } from '../network/service-network.js';
import { BUSYBOX_IMAGE } from '../images/base-images.js';
import { engineCriuSettings, engineDockerRoot } from './engines.js';
import { nsenterArgs } from './netns.js';
import { isAlive } from './processes.js';
import { certPaths } from '../util/pki.js';
import { scratchOf, type LabCloudlet, type LabState } from './state.js';

export const DAEMON_PORT = 7070;
/**
 * The lab's daemons take fault-injection requests (bench faults, the integration tests).
 * It is written into their configs (allowFaultInjection) and, as the second key cloudletd
 * requires, into their environment (CLOUDLET_LAB_FAULTS=1): see checkFaultInjection.
 */
const LAB_FAULT_INJECTION = true;
/** First loopback port tried for the forwarded APIs: a -> 7171, b -> 7172, ... */
export const FIRST_HOST_PORT = 7171;

const here = fileURLToPath(new URL('.', import.meta.url));
const DAEMON_MAIN = join(here, '..', 'daemon', 'main.js');
export const FORWARDER_MAIN = join(here, 'forwarder-main.js');

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

/** Mutual TLS from the lab's PKI (lab.ts labPki); a lab state without one keeps plain http on its lab addresses. */
function tlsConfig(cl: LabCloudlet, state: LabState): Pick<DaemonConfigInput, 'tls' | 'insecure'> {
  if (!state.tls) return { insecure: true };
  const own = certPaths(state.tls.dir, cl.name);
  return { tls: { cert: own.cert, key: own.key, ca: state.tls.ca } };
}

function daemonConfig(cl: LabCloudlet, state: LabState): DaemonConfigInput {
  return {
    ...tlsConfig(cl, state),
    serviceNetwork: serviceNetworkConfig(cl, state),
    node: cl.name,
    listen: [{ host: cl.address, port: DAEMON_PORT }, { socket: cl.daemon.socket }],
    token: state.token,
    dockerSocket: cl.engine.socket,
    dockerExecRoot: cl.engine.execRoot,
    // Checkpoints are installed under it: DATA_ROOT/UID.GID under userns-remap.
    dockerDataRoot: engineDockerRoot(cl.engine),
    dockerXdgRuntimeDir: cl.engine.xdgRuntimeDir,
    lazyRestore: state.restore === 'lazy' ? engineCriuSettings(cl.engine) : null,
    criuConfigFile: engineCriuSettings(cl.engine).criuConfigFile,
    // Holders without a network (bench all's workloads) fit this spare; a holder with a pinned
    // service address (bench migrate's, cloudletd's netnsHolder services) does not: the
    // destination starts its copy before the freeze.
    netnsSpare: { image: BUSYBOX_IMAGE, network: 'none' },
    scratchDir: join(scratchOf(cl.name), 'cloudletd'),
    dataDir: join(state.dir, cl.name, 'cloudletd'),
    // Each peer presents the certificate issued for its name.
    peers: state.cloudlets.filter((p) => p.name !== cl.name).map((p) => ({ name: p.name, url: p.daemon.peerUrl, cert: p.name })),
    logLevel: 'info',
    allowFaultInjection: LAB_FAULT_INJECTION,
  };
}

/** Writes the cloudlet's cloudletd config and starts it; returns its PID. */
export function startDaemon(cl: LabCloudlet, state: LabState): number {
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

/** One host process exposing every daemon's unix socket on a loopback port (FIRST_HOST_PORT + i). */
export async function startForwarder(state: LabState, dir: string): Promise<{ pid: number; log: string }> {
  const specFile = join(dir, 'forwarder.json');
  const portsFile = join(dir, 'forwarder-ports.json');
  const log = join(dir, 'forwarder.log');
  rmSync(portsFile, { force: true });
  writeFileSync(specFile, JSON.stringify(state.cloudlets.map((cl, i) => ({ name: cl.name, socket: cl.daemon.socket, port: FIRST_HOST_PORT + i }))));
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
