// `cloudlet bench apps`: real programs no one here wrote, each handed off a -> b on the lab
// while a client of its own kind works against it, and checked afterwards (issue 17).
// Per app: its image is built from the host's installed programs (host-image.ts) and loaded
// into a's engine only (b gets it by the handoff's image shipping, as a user's would); the
// container is created like `docker run IMAGE` (the image's own command, user, EXPOSE) in a
// network namespace holder on the lab's service network; the client starts, PAUSE_MS later
// the service moves a -> b, PAUSE_MS later the client stops and reports: its failed
// operations, the times of its completed operations (the client gap around the handoff comes
// from them), and whether the program's own checksum of its state equals the client's
// reference. A failing app is kept in the results with the reason; the next app still runs.
import os from 'node:os';
import type { DockerEngine } from '../../engine/docker.js';
import { buildHostImage } from '../../images/host-image.js';
import { loadImageArchive } from '../../images/base-images.js';
import { IMAGE_CACHE_DIR } from '../../lab/lab.js';
import type { LabState } from '../../lab/state.js';
import { CloudletError, errorMessage } from '../../util/errors.js';
import { onLab, serviceNetworkMode } from '../lab-session.js';
import { announceOn, pickBenchAddress, removeWorkload, spareReady, startWorkload } from '../migrate.js';
import { removeService } from '../handoff-provision.js';
import { waitForPort } from './client-process.js';
import { engineOf, postMigration } from '../lab-migrate.js';
import { againstReference, measureReference } from './reference.js';
import type { AppContext, AppDef, AppResult, AppsBenchResult, ClientOutcome } from './types.js';

/** Before the handoff (the client settles) and after it (the client shows it goes on). */
export const PAUSE_MS = 2000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface AppsBenchOptions {
  apps: AppDef[];
  command: string;
  /** Needs a remapped lab (brings one up; refuses a lab that is up without remap). */
  usernsRemap?: boolean;
  progress: (m: string) => void;
}

export async function runAppsBench(opts: AppsBenchOptions): Promise<AppsBenchResult> {
  return onLab(
    opts.progress,
    async (lab) => {
      if (lab.cloudlets.length < 2) throw new CloudletError('bench_failed', 'the lab needs at least 2 cloudlets', { kind: 'internal' });
      const reference = await measureReference(lab, opts.progress);
      const apps: AppResult[] = [];
      for (const app of opts.apps) {
        const r = await runApp(lab, app, opts.progress);
        r.downtimeVsCounter = againstReference(r, reference, app.downtimeVsCounter ?? null);
        opts.progress(
          `${app.name}: ${r.ok ? 'ok' : `FAILED (${r.failure ?? 'checks'})`}: stateOk ${r.stateOk}, failedOps ${r.failedOps}/${r.ops}, clientGap ${r.clientGapMs} ms, downtime ${r.downtimeMs} ms`,
        );
        apps.push(r);
      }
      return {
        usernsRemap: lab.usernsRemap ? { user: lab.usernsRemap.user, uid: lab.usernsRemap.uid, gid: lab.usernsRemap.gid } : null,
        network: serviceNetworkMode(lab),
        bench: 'apps',
        command: opts.command,
        date: new Date().toISOString(),
        machine: { cores: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
        link: { bandwidth: lab.cloudlets[1]!.link.bandwidth, latency: lab.cloudlets[1]!.link.latency },
        reference,
        apps,
        allOk: apps.length > 0 && apps.every((a) => a.ok),
        targetsMet: apps.every((a) => a.downtimeVsCounter.met !== false),
      };
    },
    { usernsRemap: opts.usernsRemap === true },
  );
}

/** The longest interval between two completed operations that overlaps [from, to]. */
export function gapAround(done: readonly number[], from: number, to: number): number | null {
  const t = [...done].sort((a, b) => a - b);
  let gap: number | null = null;
  for (let i = 1; i < t.length; i++) {
    if (t[i]! >= from && t[i - 1]! <= to) gap = Math.max(gap ?? 0, t[i]! - t[i - 1]!);
  }
  return gap === null ? null : Math.round(gap * 10) / 10;
}

/** An app's engine calls (its own exec'd clients and data loads among them) get 120 s each. */
const engineOn = (lab: LabState, name: string): DockerEngine => engineOf(lab, name, { timeoutMs: 120_000 });

/** Removes the app's image from the cloudlets named (an absent image is fine). */
async function removeAppImage(lab: LabState, opts: { nodes: string[]; image: string }): Promise<void> {
  for (const node of opts.nodes)
    await engineOn(lab, node)
      .removeImage(opts.image, { force: true })
      .catch(() => false);
}

/** An app's result before anything ran: not ok, no figures yet. */
function emptyResult(opts: { app: AppDef; image: string; from: string; to: string }): AppResult {
  return {
    name: opts.app.name,
    description: opts.app.description,
    image: { name: opts.image, imageId: '' },
    from: opts.from,
    to: opts.to,
    ok: false,
    stateOk: false,
    failedOps: 0,
    ops: 0,
    clientGapMs: null,
    downtimeMs: null,
    totalMs: null,
    bytes: null,
    rounds: null,
    restoreMode: null,
    clientBytes: 0,
    checks: {},
    errors: [],
    failure: null,
    downtimeVsCounter: { ratio: null, target: opts.app.downtimeVsCounter ?? null, met: null },
    report: null,
  };
}

/**
 * Starts the app's client, hands the service off a -> b under it (PAUSE_MS before and after),
 * stops the client; records the handoff's and the client's figures in `result`. `at.node`
 * follows the service (the context's engine() reads it).
 */
async function handoffUnderClient(opts: {
  lab: LabState;
  app: AppDef;
  ctx: AppContext;
  result: AppResult;
  at: { node: string };
  progress: (m: string) => void;
}): Promise<ClientOutcome> {
  const { lab, app, ctx, result, at, progress } = opts;
  const [ca, cb] = [lab.cloudlets[0]!, lab.cloudlets[1]!];
  const client = await app.startClient(ctx);
  let outcome: ClientOutcome;
  let t0 = 0;
  let t1 = 0;
  try {
    await client.ready;
    await sleep(PAUSE_MS);
    t0 = Date.now();
    const report = await postMigration(lab, ca.name, { container: ctx.name, to: cb.name });
    t1 = Date.now();
    result.report = report;
    result.downtimeMs = report.downtimeMs;
    result.totalMs = report.totalMs;
    result.bytes = report.bytesSent;
    result.rounds = report.precopyRounds;
    result.restoreMode = report.restoreMode ?? null;
    if (report.state !== 'done') throw new CloudletError('bench_failed', `handoff ${report.state}: ${report.error?.message ?? ''}`, { kind: 'internal' });
    at.node = cb.name;
    progress(`${app.name}: ${ca.name} -> ${cb.name}: total ${report.totalMs} ms, downtime ${report.downtimeMs} ms, ${report.precopyRounds} rounds`);
    await spareReady(engineOn(lab, cb.name));
    await sleep(PAUSE_MS);
  } finally {
    outcome = await client.stop();
    Object.assign(result, {
      ops: outcome.ops,
      failedOps: outcome.failedOps,
      stateOk: outcome.stateOk,
      clientBytes: outcome.bytes,
      checks: outcome.checks,
      errors: outcome.errors,
      clientGapMs: t1 > 0 ? gapAround(outcome.done, t0, t1) : null,
    });
  }
  return outcome;
}

async function runApp(lab: LabState, app: AppDef, progress: (m: string) => void): Promise<AppResult> {
  const [ca, cb] = [lab.cloudlets[0]!, lab.cloudlets[1]!];
  const name = `app-${app.name}`;
  const spec = await app.image();
  const result = emptyResult({ app, image: spec.name, from: ca.name, to: cb.name });
  const at = { node: ca.name };
  let address: string | null = null;
  try {
    progress(`${app.name}: building ${spec.name} from the host's programs`);
    const archive = await buildHostImage(IMAGE_CACHE_DIR, spec);
    result.image.imageId = archive.imageId;
    await removeService(lab, name);
    // Only on a: b gets the image (or the layers it lacks) from the handoff.
    await removeAppImage(lab, { nodes: [ca.name, cb.name], image: spec.name });
    await loadImageArchive(ca.engine.socket, archive.archivePath);
    address = await pickBenchAddress(lab, ca);
    const network = serviceNetworkMode(lab);
    await startWorkload(engineOn(lab, ca.name), { name, Image: spec.name }, network, address);
    await announceOn(ca, address);
    const ctx: AppContext = { lab, name, address, engine: () => engineOn(lab, at.node), progress: (m) => progress(`${app.name}: ${m}`) };
    await waitForPort(lab, address, app.port, app.startTimeoutMs ?? 60_000);
    progress(
      `${app.name}: running on ${ca.name} at ${address}:${app.port} (docker run ${spec.name}, ${network === 'holder' ? 'in a holder' : 'in its own network namespace'})`,
    );
    if (app.prepare) await app.prepare(ctx);
    const outcome = await handoffUnderClient({ lab, app, ctx, result, at, progress });
    if (app.afterHandoff) {
      const after = await app.afterHandoff(ctx);
      result.checks = { ...result.checks, afterHandoff: after };
      if (!after.ok) result.failure = 'the check after the handoff failed';
    }
    result.ok = result.failure === null && result.stateOk && result.failedOps === 0 && outcome.ops > 0;
  } catch (err) {
    result.failure = errorMessage(err);
  } finally {
    await removeWorkload(lab, name, address, progress);
    await removeAppImage(lab, { nodes: [ca.name, cb.name], image: spec.name });
  }
  return result;
}
