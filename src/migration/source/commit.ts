// Source, commit: the twin runs at the destination; now, and only now, the source copy goes.
// From here on nothing rolls back: a failing clean-up is reported, the service stays at B.
import { errorMessage } from '../../util/errors.js';
import type { ContainerDetails } from '../../engine/docker.js';
import type { PeerTransport } from '../peer-transport.js';
import { FAULT_STALL_MS, type MigrationReport } from '../types.js';
import { sleep, type SourceDeps, type SourceHandoff } from './handoff.js';
import { keepSentPages } from './page-cache.js';

export async function runCommit(h: SourceHandoff): Promise<void> {
  const { report } = h;
  const tCommit = performance.now();
  report.state = 'committing';
  h.journal();
  h.progress.frozen = false;
  // Fault injection (lab only): the twin runs, the stopped copy is still here.
  if (h.req.inject === 'stall-before-commit') await sleep(FAULT_STALL_MS);
  await commitHandoff(h.deps, { report, details: h.details, peer: h.peer });
  // The copy that could have answered a SYN here is gone: the gate is no longer needed.
  const gate = h.progress.gate;
  if (gate) {
    const seen = await gate.open().catch((err: unknown) => {
      report.warnings.push(errorMessage(err));
      return null;
    });
    if (report.synGate) report.synGate.held = seen === null ? null : seen.held;
  }
  report.commitMs = Math.round(performance.now() - tCommit);
  // Off the handoff's clock: the service runs at the destination already.
  await keepSentPages(h);
  report.warnings.push(...addressNotes(h.details, report.serviceAddress, report.to));
  report.state = 'done';
}

/** After the handoff: remove the source copy, let the destination drop its staging data. */
export async function commitHandoff(deps: SourceDeps, o: { report: MigrationReport; details: ContainerDetails; peer: PeerTransport }): Promise<void> {
  const { report, details, peer } = o;
  // The address went with the service: this cloudlet must not hand it to a new one.
  if (report.serviceAddress) deps.db.markAddressMoved(report.serviceAddress, details.name, report.to);
  try {
    await deps.engine.removeContainer(details.id, { force: true });
  } catch (err) {
    report.warnings.push(`the stopped source container ${details.name} could not be removed: ${errorMessage(err)}`);
  }
  // The destination runs its own copy of the holder; this one would only keep the address.
  if (report.netnsHolder) {
    try {
      await deps.engine.removeContainer(report.netnsHolder, { force: true });
    } catch (err) {
      report.warnings.push(`the source's network namespace holder ${report.netnsHolder} could not be removed: ${errorMessage(err)}`);
    }
  }
  try {
    await peer.post(`/v1/incoming/${report.id}/commit`, {});
  } catch (err) {
    report.warnings.push(`the destination could not drop its staging data: ${errorMessage(err)}`);
  }
}

/**
 * What a client of the container sees change that the handoff does not carry: an address on
 * another network than the service network (the default bridge, a user network) is the
 * destination engine's own choice, and published ports are published on the destination's
 * host. Not a refusal: with no client connected, or clients that find it again, the state
 * is what matters. Notes for the report's warnings, once the handoff is done.
 */
export function addressNotes(details: Pick<ContainerDetails, 'name' | 'networks' | 'createOptions'>, serviceAddress: string | null, to: string): string[] {
  const notes: string[] = [];
  for (const [net, address] of Object.entries(details.networks)) {
    if (address === null || address === serviceAddress) continue;
    notes.push(
      `${details.name}'s address ${address} on network ${net} is not kept: ${to}'s engine gave it one on its own ${net} (connections to ${address} here do not follow)`,
    );
  }
  const published = Object.entries(details.createOptions.HostConfig?.PortBindings ?? {}).flatMap(([port, list]) =>
    ((list ?? []) as Array<{ HostIp?: string; HostPort?: string }>).map((b) => `${b.HostIp ? `${b.HostIp}:` : ''}${b.HostPort || '(any)'}->${port}`),
  );
  if (published.length > 0) notes.push(`${details.name}'s published ports (${published.join(', ')}) are published on ${to}'s host now, no longer on this one`);
  return notes;
}
