// The lab's network: a TAP pair per host (client, cloudlets) joined to the router by cl-wire,
// which adds the link's delay, and shaped by tbf for its rate; and live reshaping.
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError, UsageError } from '../util/errors.js';
import { spawnDetached } from '../util/exec.js';
import { HOLD_BIN } from '../network/packet-hold.js';
import { shapeRate, validateLink, writeDelayFile } from './link-shaping.js';
import { addNetns, addTap, netnsPath, setDefaultRoute, sysctl } from './netns.js';
import { isOurProcess } from './processes.js';
import { LAB_PREFIX, writeLabState, type LabHost, type LabState, type LinkSpec } from './state.js';

const here = fileURLToPath(new URL('.', import.meta.url));
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

/** A host (client or cloudlet) on link K: 10.250.K.2, its gateway the router's 10.250.K.1. */
export function hostOnLink(name: string, k: number, link: LinkSpec, dir: string): LabHost {
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
 * The router, then every host's namespace with its shaped link; the state is written as each
 * wire starts, so that `lab down` finds it.
 */
export async function buildLabNetwork(state: LabState, hosts: readonly LabHost[], dir: string): Promise<void> {
  await addNetns(state.router.namespace);
  await sysctl(state.router.namespace, 'net.ipv4.ip_forward', '1');
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
