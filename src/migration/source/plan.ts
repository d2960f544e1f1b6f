// A dry run of a handoff (`cloudlet migrate --dry-run`): what would happen and why, and every
// reason it would be refused before the freeze, from the same checks a handoff runs (this
// side's, and the destination's through POST /v1/incoming/check), with nothing made, frozen
// or journalled on either side.
import type { SourceEngine } from '../../engine/engine-adapter.js';
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import type { MigrationPlanSchema } from '../../api/schemas/migrations.js';
import { anonymousMemoryBytes } from '../../engine/cgroups.js';
import type { ContainerDetails } from '../../engine/docker.js';
import type { ContainerSpec } from '../../engine/container-spec.js';
import type { HolderSpec } from '../../network/netns-holder.js';
import { decideInitial, describePolicy, DEFAULT_COSTS } from '../decision.js';
import { refusalOf, type PrepareCheck, type Refusal } from '../destination.js';
import type { PeerTransport } from '../peer-transport.js';
import type { StrategyChoice } from '../recreate.js';
import type { MigrationRequest } from '../types.js';
import { establishedTcpConnections, unkeptConnectionsError } from './connections.js';
import { tcpCloseUnsupported } from '../../engine/criu-config.js';
import { checkDumpPermitted, dumpSubjectOf } from './dump-permits.js';
import type { SourceDeps } from './handoff.js';
import { prepareRequestOf, volumesOf } from './prepare.js';
import { ASSUMED_LINK_BPS, restoreFor } from './tuning.js';

/** The plan's shape is the API's (api/schemas/migrations.ts MigrationPlanSchema). */
export type MigrationPlan = z.infer<typeof MigrationPlanSchema>;

export interface PlanInput {
  req: MigrationRequest;
  details: ContainerDetails;
  holder: { spec: HolderSpec; details: ContainerDetails } | null;
  spec: ContainerSpec;
  choice: StrategyChoice;
  peer: PeerTransport;
  /** The address the service keeps (service network, its holder's when it has one), or null. */
  serviceAddress: string | null;
  /** This cloudlet's engine, named to the destination (which refuses an image store unlike its own). */
  sourceEngine: SourceEngine;
}

export async function planHandoff(deps: SourceDeps, input: PlanInput): Promise<MigrationPlan> {
  const { req, details, holder, spec, choice, serviceAddress } = input;
  const refusals: Refusal[] = [];
  const warnings: string[] = [];
  const [memoryBytes, established] = await Promise.all([
    details.pid ? anonymousMemoryBytes(details.pid).catch(() => null) : null,
    details.pid ? establishedTcpConnections(details.pid) : 0,
  ]);
  if (details.pid) await checkDumpPermitted(details.pid, dumpSubjectOf(details)).catch((err: unknown) => refusals.push(refusalOf(err)));
  const connectionsKept = serviceAddress !== null;
  const connectionsClosed = !connectionsKept && req.tcpClose === true;
  if (connectionsClosed) {
    if (deps.criuConfigFile === null) refusals.push(refusalOf(tcpCloseUnsupported(deps.node)));
    warnings.push(
      `--tcp-close: the ${established} established TCP connection(s) now, and any made meanwhile, are reset just before the freeze; their clients must reconnect to the destination`,
    );
  } else if (established > 0 && !connectionsKept) refusals.push(refusalOf(unkeptConnectionsError(details.name, established)));
  if (established > 0 && connectionsKept) warnings.push(`${established} established TCP connection(s) are kept: the service keeps ${serviceAddress}`);
  if (serviceAddress === null) warnings.push('no service address: the twin gets another address at the destination; its clients must find it there');

  let check: PrepareCheck | null = null;
  if (choice.strategy === 'migrate') {
    const prepareReq = prepareRequestOf({
      id: `plan-${randomBytes(6).toString('hex')}`,
      node: deps.node,
      details,
      spec,
      serviceAddress,
      holder: holder?.spec ?? null,
      sourceEngine: input.sourceEngine,
    });
    if (connectionsClosed) prepareReq.tcpClose = true;
    check = await input.peer.post<PrepareCheck>('/v1/incoming/check', prepareReq);
    refusals.push(...check.refusals);
    if (!check.imageHere) warnings.push(`the destination lacks ${details.imageName}: its missing layers are shipped first`);
  } else {
    warnings.push('re-creation: a fresh instance starts at the destination; state in memory is not kept (the destination is asked at the handoff)');
  }
  const restore = restoreFor(req.restore, memoryBytes ?? 0);
  const initial = decideInitial(req.policy, memoryBytes ?? 0, ASSUMED_LINK_BPS, DEFAULT_COSTS);
  return {
    container: details.name,
    from: deps.node,
    to: req.to,
    strategy: choice.strategy,
    strategyReason: choice.reason,
    network: {
      mode: spec.network.mode,
      netnsHolder: holder?.spec.name ?? null,
      serviceAddress,
      establishedTcp: established,
      connectionsKept,
      connectionsClosed,
    },
    memoryBytes,
    restore,
    policy: describePolicy(req.policy),
    decision: initial.explanation,
    volumes: volumesOf(details).map((v) => v.name),
    image: { name: details.imageName, id: details.imageId, atDestination: check ? check.imageHere : null },
    destinationEngine: check?.engine ?? null,
    refusals,
    warnings,
    ok: refusals.length === 0,
  };
}
