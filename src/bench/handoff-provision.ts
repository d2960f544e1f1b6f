// The handoff benches' service in the lab: provisioned from an overlay by a first request,
// migrated with the strategy it declared, found through the router's route, removed.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { CloudletError, UsageError } from '../util/errors.js';
import { DockerEngine } from '../engine/docker.js';
import { ApiClient } from '../api/client/client.js';
import { IMAGE_CACHE_DIR } from '../lab/lab.js';
import { nsRun } from '../lab/netns.js';
import { labDir, readLabState, type LabCloudlet, type LabState } from '../lab/state.js';
import { holderNameFor } from '../network/netns-holder.js';
import { createOverlay } from '../images/overlay-create.js';
import { uploadFile } from '../images/overlay-upload.js';
import { NODE_IMAGE, loadImageArchive } from '../images/base-images.js';
import { buildAppArchive, HANDOFF_APP } from '../workloads/overlay-apps.js';
import type { MigrationReport } from '../migration/types.js';
import { OVERLAY_CONTENT_TYPE, type ServiceReply, type ServiceRequest } from '../daemon/routes-overlays.js';

export interface ProvisionedService {
  node: string;
  container: string;
  address: string;
  overlay: string;
  overlayBytes: number;
  reply: ServiceReply;
}

export function cloudlet(lab: LabState, name: string): LabCloudlet {
  const cl = lab.cloudlets.find((c) => c.name === name);
  if (!cl) throw new UsageError(`no cloudlet '${name}' in the lab`, { hint: `cloudlets: ${lab.cloudlets.map((c) => c.name).join(', ')}` });
  return cl;
}

export function api(lab: LabState, name: string, timeoutMs = 10 * 60_000): ApiClient {
  return new ApiClient({ baseUrl: cloudlet(lab, name).daemon.apiUrl, token: lab.token, timeoutMs });
}

export function labOrThrow(): LabState {
  const lab = readLabState(labDir());
  if (!lab) throw new UsageError('the lab is not up', { hint: 'run `cloudlet lab up` first' });
  return lab;
}

/**
 * The handoff service as a user would get it: its app image is made into an overlay on the
 * node base (on `node`'s engine, where the app was built), pushed to `node` and started there
 * by a first request, on the service network.
 */
export async function provisionHandoffService(
  lab: LabState,
  node: string,
  name: string,
  opts: { env?: string[]; progress?: (m: string) => void; handoff?: Pick<ServiceRequest, 'handoff' | 'stateless' | 'health'>; netnsHolder?: boolean } = {},
): Promise<ProvisionedService> {
  const progress = opts.progress ?? (() => undefined);
  const cl = cloudlet(lab, node);
  const engine = new DockerEngine(cl.engine.socket, { timeoutMs: 120_000 });
  await removeService(lab, name);
  const app = await buildAppArchive(IMAGE_CACHE_DIR, HANDOFF_APP);
  // By name: on the containerd image store the image's id is not its config's digest (app.imageId).
  if (!(await engine.imageExists(HANDOFF_APP.name))) await loadImageArchive(cl.engine.socket, app.archivePath);
  const dir = await mkdtemp(join(os.tmpdir(), 'cloudlet-handoff-'));
  try {
    const file = join(dir, 'handoff-service.ovl');
    const created = await createOverlay({ engine, base: NODE_IMAGE, app: HANDOFF_APP.name, out: file, codec: 'zstd' });
    const bytes = (await stat(file)).size;
    progress(`overlay ${created.id}: ${(bytes / 1e3).toFixed(1)} kB (app ${HANDOFF_APP.name} on ${NODE_IMAGE})`);
    const pushed = await uploadFile<{ id: string }>({
      url: cl.daemon.apiUrl,
      token: lab.token,
      file,
      path: '/v1/overlays',
      method: 'PUT',
      contentType: OVERLAY_CONTENT_TYPE,
    });
    // The app image was built on this engine: remove it so the first request synthesizes it.
    await engine.removeImage(HANDOFF_APP.name, { force: true });
    const reply = await api(lab, node).post<ServiceReply>('/v1/services', {
      overlay: pushed.body.id,
      name,
      env: opts.env ?? [],
      ...opts.handoff,
      ...(opts.netnsHolder ? { netnsHolder: true } : {}),
    });
    if (!reply.address) throw new CloudletError('no_service_address', `service ${name} on ${node} got no address on the service network`, { kind: 'internal' });
    progress(
      `service ${name} on ${node} at ${reply.address} (first request ${reply.timings.totalMs} ms: synthesis ${reply.timings.decompressMs + reply.timings.loadMs} ms)`,
    );
    return { node, container: name, address: reply.address, overlay: pushed.body.id, overlayBytes: bytes, reply };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Removes the service's container and its holder (if any) from every cloudlet of the lab (it may have moved). */
export async function removeService(lab: LabState, name: string): Promise<void> {
  for (const cl of lab.cloudlets) {
    const engine = new DockerEngine(cl.engine.socket, { timeoutMs: 60_000 });
    for (const c of [name, holderNameFor(name)]) {
      if (await engine.containerExists(c)) await engine.removeContainer(c, { force: true });
    }
  }
}

// No strategy in the request: the service's declared handoff (its labels) decides (issue 9).
export async function migrate(lab: LabState, from: string, to: string, container: string): Promise<MigrationReport> {
  return api(lab, from).post<MigrationReport>('/v1/migrations?wait=1', { container, to });
}

/** Which cloudlet the router sends the service address to (lab router's /32 route). */
export async function routedTo(lab: LabState, address: string): Promise<string | null> {
  const { stdout } = await nsRun(lab.router.namespace, 'ip', ['-json', 'route', 'show', `${address}/32`]);
  const via = (JSON.parse(stdout || '[]') as { gateway?: string }[])[0]?.gateway;
  return lab.cloudlets.find((c) => c.address === via)?.name ?? null;
}
