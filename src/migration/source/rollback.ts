// Source, rollback: puts everything back as it was after a failure before the destination ran
// the twin. The destination drops its twin (and what it held for the address); a source
// container already stopped by the final dump is restored from that dump on this engine;
// the address is routed back here.
import { CloudletError, errorMessage } from '../../util/errors.js';
import type { ContainerDetails } from '../../engine/docker.js';
import { PacketHold } from '../../network/packet-hold.js';
import type { SynGate } from '../../network/syn-gate.js';
import { installCheckpoint, removeInstalledCheckpoint } from '../../engine/checkpoint-install.js';
import { withRestoreOptions } from '../../engine/criu-config.js';
import type { PeerTransport } from '../peer-transport.js';
import { RollbackLog } from '../rollback-log.js';
import type { MigrationReport } from '../types.js';
import { dumpDirOf, sleep, type HandoffProgress, type SourceDeps, type SourceHandoff } from './handoff.js';

/**
 * The destination's clean-up in a rollback is retried: after a cut link or a restarted
 * destination daemon, the first attempts fail, and the source must not restore its copy
 * while the destination's twin may run (see rollback). Bounded: ~2 min at most.
 */
const ABORT_ATTEMPTS = 8;
const ABORT_RETRY_MS = 3000;
const ABORT_TIMEOUT_MS = 12_000;

export interface RollbackOptions {
  report: MigrationReport;
  details: ContainerDetails;
  peer: PeerTransport;
  /** What the handoff had done: what is undone. */
  progress: Pick<HandoffProgress, 'prepared' | 'frozen' | 'addressMoved' | 'finalSent'>;
  finalDumpDir: string;
  /** Attempts at the destination's clean-up (default ABORT_ATTEMPTS). */
  abortAttempts?: number;
  /** The source's gate on new connections: its route to the destination goes before the address comes back. */
  gate?: SynGate | null;
}

/**
 * A failed handoff: the report says why, the rollback undoes what was done (rollback), and
 * the outcome is recorded. Returns whether the staging directory must be kept: a frozen
 * service that could not be restored here keeps its final dump (the only copy of its state;
 * it was deleted with the staging before).
 */
export async function settleFailure(h: SourceHandoff, err: unknown): Promise<{ keepStage: boolean }> {
  const { report, details, deps } = h;
  report.error = { code: err instanceof CloudletError ? err.code : 'internal', message: errorMessage(err) };
  report.state = 'rolling-back';
  h.journal();
  const finalDumpDir = dumpDirOf(h.stage, h.index);
  const gate = h.progress.gate ?? null;
  const log = await rollback(deps, { report, details, peer: h.peer, progress: h.progress, finalDumpDir, gate });
  // The service runs here again (or not here): new connections are answered here again.
  if (gate) {
    await gate.open().then(
      () => log.done(`new connections to ${gate.address} taken here again`),
      (e: unknown) => log.failed(`FAILED to take new connections again: ${errorMessage(e)}`),
    );
  }
  const restartPolicy = h.progress.restartPolicy;
  if (restartPolicy) {
    await deps.engine.setRestartPolicy(details.id, restartPolicy).then(
      () => undefined,
      (e: unknown) => log.failed(`FAILED to restore the restart policy: ${errorMessage(e)}`),
    );
  }
  const keepStage = h.progress.frozen && log.sourceContainerFailed;
  if (keepStage) log.done(`the final dump is kept in ${finalDumpDir}`);
  report.error.message += log.empty ? '' : ` (rollback: ${log.toString()})`;
  report.state = log.outcome;
  report.totalMs = Math.round(performance.now() - h.t0);
  return { keepStage };
}

export async function rollback(deps: SourceDeps, o: RollbackOptions): Promise<RollbackLog> {
  const { report, details, peer } = o;
  const { prepared, frozen, addressMoved, finalSent } = o.progress;
  const log = new RollbackLog();
  let destinationClean = !prepared;
  if (prepared) {
    try {
      await abortDestination(deps, { id: report.id, peer, attempts: o.abortAttempts ?? ABORT_ATTEMPTS });
      destinationClean = true;
      log.done('destination cleaned up');
    } catch (err) {
      log.failed(`FAILED to clean up the destination: ${errorMessage(err)}`);
    }
  }
  // Once the final round may have reached the destination, its twin may be running there
  // (e.g. the link was cut after the restore, before the answer): restoring here as well
  // would run the service twice. Before this check, the source was restored regardless.
  if (frozen && finalSent && !destinationClean) {
    log.failed(`FAILED: the source container is not restored here, the destination may run it: check ${report.to}; the final dump is in ${o.finalDumpDir}`, {
      sourceContainer: true,
    });
    return log;
  }
  // SYNs sent on to the destination must not loop once the address is routed back here.
  await o.gate?.unroute().then(
    () => undefined,
    (e: unknown) => log.failed(`FAILED to stop sending new connections on: ${errorMessage(e)}`),
  );
  const svc = deps.serviceNetwork;
  const address = report.serviceAddress;
  let routedBack = !(addressMoved || frozen) || address === null || svc === null;
  const routeBack = async (): Promise<void> => {
    if (routedBack) return;
    routedBack = true;
    try {
      await svc!.announce(address!);
      log.done(`service address ${address} routed back here`);
    } catch (err) {
      log.failed(`FAILED to route ${address} back here: ${errorMessage(err)}`);
    }
  };
  if (frozen) {
    try {
      const d = await deps.engine.inspectContainer(details.id);
      if (d.running) {
        log.done('source container still running');
      } else {
        await restoreHere(deps, { report, details, finalDumpDir: o.finalDumpDir, routeBack, log });
        log.done('source container restored from its final dump');
      }
    } catch (err) {
      log.failed(`FAILED to restore the source container: ${errorMessage(err)}`, { sourceContainer: true });
    }
  }
  await routeBack();
  return log;
}

/** DELETE /v1/incoming/:id, retried a bounded number of times (see ABORT_ATTEMPTS). */
async function abortDestination(deps: SourceDeps, o: { id: string; peer: PeerTransport; attempts: number }): Promise<void> {
  const client = deps.connectPeer({ url: o.peer.baseUrl, silenceMs: ABORT_TIMEOUT_MS });
  for (let attempt = 1; ; attempt++) {
    try {
      await client.delete(`/v1/incoming/${o.id}`);
      return;
    } catch (err) {
      if (attempt >= o.attempts)
        throw new CloudletError('abort_failed', `the destination did not confirm the clean-up after ${attempt} attempts: ${errorMessage(err)}`, {
          kind: 'internal',
          cause: err,
        });
      await sleep(ABORT_RETRY_MS);
    }
  }
}

/**
 * Restores the stopped source container from its final dump. Its address's packets are
 * held here from before the address is routed back until its sockets are restored (see
 * PacketHold): Docker gives the new namespace the address before CRIU restores the
 * connections, and a segment arriving in between would be answered with a reset.
 */
async function restoreHere(
  deps: SourceDeps,
  o: { report: MigrationReport; details: ContainerDetails; finalDumpDir: string; routeBack: () => Promise<void>; log: RollbackLog },
): Promise<void> {
  const { report, details } = o;
  await deps.engine.waitNotRunning(details.id);
  const name = `rb-${report.id}`;
  await installCheckpoint({
    dataRoot: deps.dataRoot,
    containerId: details.id,
    name,
    imageDir: o.finalDumpDir,
    xdgRuntimeDir: deps.xdgRuntimeDir,
  });
  const hold = report.serviceAddress && deps.serviceNetwork ? await PacketHold.start(report.serviceAddress) : null;
  let restored = false;
  try {
    await o.routeBack();
    // A rollback restores eagerly: every page in before the service runs here again.
    // A final dump that closed its connections (tcp-close) restores only with that option.
    const start = () => deps.restores.run(() => deps.engine.startFromCheckpoint(details.id, name));
    await withRestoreOptions(deps.criuConfigFile, report.tcpClose ? ['tcp-close'] : [], start);
    restored = true;
  } finally {
    if (restored) hold?.release();
    else hold?.discard();
    await hold
      ?.close()
      .catch((err: unknown) => o.log.failed(`FAILED to lift the hold on ${report.serviceAddress} (iptables raw PREROUTING): ${errorMessage(err)}`));
  }
  await removeInstalledCheckpoint({ dataRoot: deps.dataRoot, containerId: details.id, name, xdgRuntimeDir: deps.xdgRuntimeDir });
  const xdg = deps.xdgRuntimeDir;
  if (xdg) await deps.restores.pruneCopiesIfIdle(xdg);
}
