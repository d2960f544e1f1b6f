// Load: ten concurrent operations across three cloudlets - five first-request provisionings
// (POST /v1/services, two of them of the same overlay on the same cloudlet at once) and five
// live migrations (a->b, b->c, c->a, a->c, b->a, so every cloudlet is source and destination
// at once) - must all complete, without interfering: every migrated service runs exactly once
// where it went with its state, every provisioned one runs where it was asked for, nothing
// is left behind. Bounded: ten operations, one deadline for all of them.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { ApiClient } from '../api/client/client.js';
import { CloudletError, errorMessage } from '../util/errors.js';
import { IMAGE_CACHE_DIR } from '../lab/lab.js';
import { createOverlay } from '../images/overlay-create.js';
import { uploadFile } from '../images/overlay-upload.js';
import { NODE_IMAGE, loadImageArchive } from '../images/base-images.js';
import { buildAppArchive, HANDOFF_APP } from '../workloads/overlay-apps.js';
import { OVERLAY_CONTENT_TYPE, type ServiceReply } from '../daemon/routes-overlays.js';
import type { MigrationReport } from '../migration/types.js';
import type { LabState } from '../lab/state.js';
import { cloudletOf, freshState } from './faults-lab.js';
import { engineOf, inventory, leftovers, placement, readState, removeEverywhere, startService, type ServiceState } from './faults-check.js';

export interface LoadOperation {
  kind: 'provision' | 'migrate';
  container: string;
  node: string;
  /** Migrations: the destination. */
  to: string | null;
  ok: boolean;
  ms: number;
  error: string | null;
  /** Migrations: total and downtime as reported. */
  totalMs: number | null;
  downtimeMs: number | null;
}

export interface LoadResult {
  date: string;
  machine: { cores: number; kernel: string };
  operations: LoadOperation[];
  /** Wall time of the concurrent phase. */
  wallMs: number;
  allCompleted: boolean;
  /** Every service runs exactly once, where it should, with its state (migrations). */
  placementsOk: boolean;
  leftovers: string[];
  notes: string[];
}

const MIGRATIONS: readonly [string, string][] = [
  ['a', 'b'],
  ['b', 'c'],
  ['c', 'a'],
  ['a', 'c'],
  ['b', 'a'],
];
const PROVISION_ON: readonly string[] = ['a', 'b', 'c', 'a', 'b'];
const DEADLINE_MS = 10 * 60_000;

/** The handoff app as an overlay on every cloudlet (its image removed where it was built). */
async function pushOverlayEverywhere(dir: string): Promise<string> {
  const lab = freshState(dir);
  const builder = cloudletOf(lab, 'a');
  const engine = engineOf(builder);
  const app = await buildAppArchive(IMAGE_CACHE_DIR, HANDOFF_APP);
  if (!(await engine.imageExists(app.imageId))) await loadImageArchive(builder.engine.socket, app.archivePath);
  const tmp = await mkdtemp(join(os.tmpdir(), 'cloudlet-load-'));
  try {
    const file = join(tmp, 'app.ovl');
    await createOverlay({ engine, base: NODE_IMAGE, app: HANDOFF_APP.name, out: file, codec: 'zstd' });
    let id = '';
    for (const cl of lab.cloudlets) {
      const pushed = await uploadFile<{ id: string }>({
        url: cl.daemon.apiUrl,
        token: lab.token,
        file,
        path: '/v1/overlays',
        method: 'PUT',
        contentType: OVERLAY_CONTENT_TYPE,
      });
      id = pushed.body.id;
    }
    // Every first request must synthesize the image from the overlay, also on a.
    await engine.removeImage(app.imageId, { force: true });
    return id;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

interface MigratedService {
  name: string;
  from: string;
  to: string;
}

interface ProvisionedService {
  name: string;
  node: string;
}

/** Runs one operation and records its outcome and time; a failure is recorded, not thrown. */
async function timed(
  op: Omit<LoadOperation, 'ok' | 'ms' | 'error' | 'totalMs' | 'downtimeMs'>,
  fn: () => Promise<Partial<LoadOperation>>,
): Promise<LoadOperation> {
  const t0 = performance.now();
  try {
    const extra = await fn();
    return { ...op, ok: true, error: null, totalMs: null, downtimeMs: null, ...extra, ms: Math.round(performance.now() - t0) };
  } catch (err) {
    return { ...op, ok: false, error: errorMessage(err), totalMs: null, downtimeMs: null, ms: Math.round(performance.now() - t0) };
  }
}

/** The concurrent phase: every migration and every provisioning at once. */
function runOperations(opts: { lab: LabState; overlay: string; migrated: MigratedService[]; provisioned: ProvisionedService[] }): Promise<LoadOperation[]> {
  const { lab, overlay, migrated, provisioned } = opts;
  const api = (node: string) => new ApiClient({ baseUrl: cloudletOf(lab, node).daemon.apiUrl, token: lab.token, timeoutMs: DEADLINE_MS });
  return Promise.all([
    ...migrated.map((m) =>
      timed({ kind: 'migrate', container: m.name, node: m.from, to: m.to }, async () => {
        const r = await api(m.from).post<MigrationReport>('/v1/migrations?wait=1', { container: m.name, to: m.to });
        if (r.state !== 'done') throw new CloudletError('migration_failed', `${r.state}: ${r.error?.message ?? 'no error'}`, { kind: 'upstream' });
        return { totalMs: r.totalMs, downtimeMs: r.downtimeMs };
      }),
    ),
    ...provisioned.map((p) =>
      timed({ kind: 'provision', container: p.name, node: p.node, to: null }, async () => {
        const r = await api(p.node).post<ServiceReply>('/v1/services', { overlay, name: p.name, env: [] });
        if (!r.imageIdMatches)
          throw new CloudletError('image_mismatch', `the synthesized image of ${p.name} does not match the app's id`, { kind: 'internal' });
        return {};
      }),
    ),
  ]);
}

/** Whether every service runs exactly once where it should, a migrated one with its state; what is not, as notes. */
async function checkPlacements(opts: {
  after: LabState;
  migrated: MigratedService[];
  provisioned: ProvisionedService[];
  initial: Map<string, ServiceState>;
}): Promise<{ placementsOk: boolean; notes: string[] }> {
  const { after, migrated, provisioned, initial } = opts;
  const notes: string[] = [];
  let placementsOk = true;
  for (const m of migrated) {
    const where = await placement(after, m.name);
    if (where.existsOn.length !== 1 || where.runningOn[0] !== m.to) {
      placementsOk = false;
      notes.push(`${m.name}: exists on [${where.existsOn.join(', ')}], runs on [${where.runningOn.join(', ')}], expected ${m.to}`);
      continue;
    }
    try {
      const st = await readState(engineOf(cloudletOf(after, m.to)), m.name, { kind: 'busybox' });
      const was = initial.get(m.name)!;
      if (st.file !== was.file || st.counter < was.counter) {
        placementsOk = false;
        notes.push(`${m.name}: state changed (${JSON.stringify(was)} -> ${JSON.stringify(st)})`);
      }
    } catch (err) {
      placementsOk = false;
      notes.push(`${m.name} does not answer on ${m.to}: ${errorMessage(err)}`);
    }
  }
  for (const p of provisioned) {
    const where = await placement(after, p.name);
    if (where.existsOn.length !== 1 || where.runningOn[0] !== p.node) {
      placementsOk = false;
      notes.push(`${p.name}: exists on [${where.existsOn.join(', ')}], runs on [${where.runningOn.join(', ')}], expected ${p.node}`);
    }
  }
  return { placementsOk, notes };
}

export async function runLoad(dir: string, progress: (m: string) => void = () => undefined): Promise<LoadResult> {
  const lab = freshState(dir);
  if (lab.cloudlets.length < 3)
    throw new CloudletError('lab_too_small', `the load needs 3 cloudlets (the lab has ${lab.cloudlets.length})`, {
      kind: 'conflict',
      hint: 'cloudlet lab up --cloudlets 3',
    });
  const migrated = MIGRATIONS.map(([from, to], i) => ({ name: `load-mig-${i + 1}`, from, to }));
  const provisioned = PROVISION_ON.map((node, i) => ({ name: `load-svc-${i + 1}`, node }));
  const names = [...migrated.map((m) => m.name), ...provisioned.map((p) => p.name)];
  for (const n of names) await removeEverywhere(lab, n);
  const overlay = await pushOverlayEverywhere(dir);
  progress(`overlay ${overlay} on ${lab.cloudlets.map((c) => c.name).join(', ')}`);
  const before = await inventory(lab);
  const initial = new Map<string, ServiceState>();
  for (const m of migrated) initial.set(m.name, await startService(cloudletOf(lab, m.from), m.name, { kind: 'busybox' }));
  progress(`${migrated.length} services to migrate are running; starting ${migrated.length + provisioned.length} operations at once`);

  const t0 = performance.now();
  const operations = await runOperations({ lab, overlay, migrated, provisioned });
  const wallMs = Math.round(performance.now() - t0);

  const after = freshState(dir);
  const { placementsOk, notes } = await checkPlacements({ after, migrated, provisioned, initial });
  const left = await leftovers(after, before, names, { newImagesExpected: true });
  for (const n of names) await removeEverywhere(after, n);
  return {
    date: new Date().toISOString(),
    machine: { cores: os.cpus().length, kernel: os.release() },
    operations,
    wallMs,
    allCompleted: operations.every((o) => o.ok),
    placementsOk,
    leftovers: left,
    notes,
  };
}
