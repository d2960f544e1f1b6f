// What the fault matrix checks after each scenario, on the real lab: where the service runs,
// whether it answers with the state it had, and what was left behind (containers, images,
// volumes, staging directories, checkpoint directories) compared with before the scenario.
import { SPARE_HOLDER_NAME } from '../network/netns-holder.js';
import { readdir } from 'node:fs/promises';
import Docker from 'dockerode';
import { join } from 'node:path';
import { CloudletError, errorMessage } from '../util/errors.js';
import { DockerEngine } from '../engine/docker.js';
import { CONTAINERD_COPY_PREFIX, STAGE_DIR } from '../engine/checkpoint-install.js';
import { BUSYBOX_IMAGE, NODE_IMAGE } from '../images/base-images.js';
import { BUSYBOX_COUNTER_SCRIPT, STATEFUL_SERVICE_SCRIPT } from '../workloads/stateful-service.js';
import type { LabCloudlet, LabState } from '../lab/state.js';
import { scratchDirOf } from './faults-lab.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function engineOf(cl: LabCloudlet): DockerEngine {
  return new DockerEngine(cl.engine.socket, { timeoutMs: 60_000 });
}

/** The service of a scenario: a Node.js service with STATE_MB of state, or a busybox counter. */
export interface ServiceSpec {
  kind: 'node' | 'busybox';
  /** Node only: memory state (MiB), never dirtied on a timer (its checksum must stay put). */
  stateMb?: number;
}

/** What must survive: the memory checksum (Node), a file of the R/W layer, the counter. */
export interface ServiceState {
  memory: string | null;
  file: string;
  counter: number;
}

async function execOk(engine: DockerEngine, name: string, cmd: string[]): Promise<string> {
  const r = await engine.exec(name, cmd, { timeoutMs: 30_000 });
  if (r.exitCode !== 0) throw new CloudletError('exec_failed', `${cmd.join(' ')} in ${name} exited ${r.exitCode}: ${r.stderr.trim()}`, { kind: 'internal' });
  return r.stdout;
}

/** Starts the service on `cl` with a file of random bytes in its R/W layer; waits until it answers. */
export async function startService(cl: LabCloudlet, name: string, spec: ServiceSpec): Promise<ServiceState> {
  const engine = engineOf(cl);
  if (await engine.containerExists(name)) await engine.removeContainer(name, { force: true });
  const id = await engine.createContainer(
    spec.kind === 'node'
      ? {
          name,
          Image: NODE_IMAGE,
          Cmd: ['node', '-e', STATEFUL_SERVICE_SCRIPT],
          Env: [`STATE_MB=${spec.stateMb ?? 16}`, 'PORT=8080', 'DIRTY_PAGES_PER_SEC=0'],
          HostConfig: { NetworkMode: 'none' },
        }
      : { name, Image: BUSYBOX_IMAGE, Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT], HostConfig: { NetworkMode: 'none' } },
  );
  await engine.startContainer(id);
  await execOk(engine, name, ['sh', '-c', 'head -c 1048576 /dev/urandom > /state.bin']);
  for (let i = 0; ; i++) {
    try {
      return await readState(engine, name, spec);
    } catch (err) {
      if (i >= 150) throw new CloudletError('service_start_failed', `service ${name} did not answer: ${errorMessage(err)}`, { kind: 'unavailable' });
      await sleep(200);
    }
  }
}

/** Reads the service's state; throws when it does not answer. */
export async function readState(engine: DockerEngine, name: string, spec: ServiceSpec): Promise<ServiceState> {
  const file = (await execOk(engine, name, ['sha256sum', '/state.bin'])).split(/\s+/)[0] ?? '';
  if (spec.kind === 'node') {
    const j = JSON.parse(await execOk(engine, name, ['wget', '-qO-', 'http://127.0.0.1:8080/checksum'])) as { counter: number; checksum: string };
    return { memory: j.checksum, file, counter: j.counter };
  }
  // The counter loop rewrites the file (`echo $i > /tmp/counter`): a read between its
  // truncation and its write sees it empty, which is not a counter of 0.
  for (let i = 0; ; i++) {
    const text = (await execOk(engine, name, ['cat', '/tmp/counter'])).trim();
    if (/^\d+$/.test(text)) return { memory: null, file, counter: Number(text) };
    if (i >= 20) throw new CloudletError('bad_counter', `/tmp/counter of ${name} reads '${text}'`, { kind: 'invalid-data' });
    await sleep(50);
  }
}

/** Everything a cloudlet holds that a migration could leave behind. */
export interface Inventory {
  containers: Map<string, string>;
  images: Set<string>;
  volumes: Set<string>;
}

export async function inventory(lab: LabState): Promise<Map<string, Inventory>> {
  const out = new Map<string, Inventory>();
  for (const cl of lab.cloudlets) {
    const engine = engineOf(cl);
    // The spare holder is cloudletd's own (made in the background at its start, replaced after use).
    const containers = new Map((await engine.listContainers(true)).filter((c) => c.name !== SPARE_HOLDER_NAME).map((c) => [c.id, c.name] as const));
    const images = new Set(await engine.listImageIds());
    const volumes = new Set(await listVolumes(cl));
    out.set(cl.name, { containers, images, volumes });
  }
  return out;
}

async function listVolumes(cl: LabCloudlet): Promise<string[]> {
  const r = await new Docker({ socketPath: cl.engine.socket, timeout: 60_000 }).listVolumes();
  return (r.Volumes ?? []).map((v) => v.Name);
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Leftovers: containers, images and volumes that were not there before (the service's own
 * container excepted), and any migration staging or checkpoint directory - none may outlive
 * a finished migration.
 */
export async function leftovers(
  lab: LabState,
  before: Map<string, Inventory>,
  serviceNames: string | readonly string[],
  opts: { newImagesExpected?: boolean } = {},
): Promise<string[]> {
  const services = new Set(typeof serviceNames === 'string' ? [serviceNames] : serviceNames);
  const now = await inventory(lab);
  const found: string[] = [];
  for (const cl of lab.cloudlets) {
    const b = before.get(cl.name);
    const n = now.get(cl.name)!;
    for (const [id, name] of n.containers) {
      if (services.has(name)) continue;
      if (!b?.containers.has(id)) found.push(`${cl.name}: container ${name || id.slice(0, 12)}`);
    }
    // Provisioning synthesizes images: expected then (the load test), never in a migration.
    if (!opts.newImagesExpected) for (const img of n.images) if (!b?.images.has(img)) found.push(`${cl.name}: image ${img.slice(0, 19)}`);
    for (const v of n.volumes) if (!b?.volumes.has(v)) found.push(`${cl.name}: volume ${v}`);
    const scratch = scratchDirOf(cl);
    for (const sub of ['migrations', 'incoming']) {
      for (const e of await entries(join(scratch, 'cloudletd', sub))) found.push(`${cl.name}: staging ${sub}/${e}`);
    }
    for (const e of await entries(join(cl.engine.xdgRuntimeDir, STAGE_DIR))) found.push(`${cl.name}: staged checkpoint ${e}`);
    for (const e of await entries(cl.engine.xdgRuntimeDir)) {
      if (e.startsWith(CONTAINERD_COPY_PREFIX)) found.push(`${cl.name}: containerd checkpoint copy ${e}`);
    }
    for (const c of await entries(join(cl.engine.dataRoot, 'containers'))) {
      for (const cp of await entries(join(cl.engine.dataRoot, 'containers', c, 'checkpoints'))) {
        found.push(`${cl.name}: checkpoint ${cp} of container ${c.slice(0, 12)}`);
      }
    }
  }
  return found;
}

export interface Placement {
  /** Cloudlets where a container of that name exists, and where it runs. */
  existsOn: string[];
  runningOn: string[];
}

export async function placement(lab: LabState, name: string): Promise<Placement> {
  const existsOn: string[] = [];
  const runningOn: string[] = [];
  for (const cl of lab.cloudlets) {
    const engine = engineOf(cl);
    if (!(await engine.containerExists(name))) continue;
    existsOn.push(cl.name);
    if ((await engine.inspectContainer(name)).running) runningOn.push(cl.name);
  }
  return { existsOn, runningOn };
}

export async function removeEverywhere(lab: LabState, name: string): Promise<void> {
  for (const cl of lab.cloudlets) {
    const engine = engineOf(cl);
    if (await engine.containerExists(name)) await engine.removeContainer(name, { force: true });
  }
}
