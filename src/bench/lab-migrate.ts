// Lab operations the benchmarks share: a handoff through a cloudlet's API (waiting for its
// end), a cloudlet's engine, and a service's container made ready or removed.
import { ApiClient } from '../api/client/client.js';
import type { StartMigrationBody } from '../daemon/routes-migrations.js';
import { DockerEngine } from '../engine/docker.js';
import type { LabState } from '../lab/state.js';
import type { MigrationReport } from '../migration/types.js';
import { CloudletError } from '../util/errors.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A handoff through `from`'s API, waited for; the report whatever its end (done, rolled back...). */
export async function postMigration(lab: LabState, from: string, body: StartMigrationBody): Promise<MigrationReport> {
  const cl = lab.cloudlets.find((c) => c.name === from)!;
  const client = new ApiClient({ baseUrl: cl.daemon.apiUrl, token: lab.token, timeoutMs: 30 * 60_000 });
  return client.post<MigrationReport>('/v1/migrations?wait=1', body);
}

/** A handoff that must end done: anything else fails the bench. */
export async function migrate(lab: LabState, from: string, body: StartMigrationBody): Promise<MigrationReport> {
  const r = await postMigration(lab, from, body);
  if (r.state !== 'done') {
    throw new CloudletError('bench_failed', `migration of ${body.container} ${from} -> ${body.to} ended ${r.state}: ${r.error?.message ?? ''}`, {
      kind: 'internal',
    });
  }
  return r;
}

/** The engine of cloudlet `name`; `timeoutMs` bounds each call (default 60 s). */
export function engineOf(lab: LabState, name: string, o: { timeoutMs?: number } = {}): DockerEngine {
  return new DockerEngine(lab.cloudlets.find((c) => c.name === name)!.engine.socket, { timeoutMs: o.timeoutMs ?? 60_000 });
}

export async function removeIfPresent(engine: DockerEngine, name: string): Promise<void> {
  if (await engine.containerExists(name)) await engine.removeContainer(name, { force: true });
}

/** Waits until the service in the container answers (HTTP through busybox wget inside it). */
export async function waitForService(engine: DockerEngine, name: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    const r = await engine.exec(name, ['wget', '-qO-', 'http://127.0.0.1:8080/health']);
    if (r.exitCode === 0) return;
    await sleep(200);
  }
  throw new CloudletError('bench_failed', `the service in ${name} did not answer within 30 s`, { kind: 'internal' });
}
