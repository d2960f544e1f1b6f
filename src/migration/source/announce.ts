// Source, announce: the final stage begins. The engine must not restart the container behind
// our back once the final dump stops it: its restart policy is off until the handoff is
// decided. Then the source stops taking new connections, the service address moves to the
// destination, and the connections that arrive here meanwhile are sent on there: all before
// the freeze.
import { AddressTakenSchema } from '../../api/schemas/migrations.js';
import { SynGate } from '../../network/syn-gate.js';
import type { SourceHandoff } from './handoff.js';

/**
 * How long the handshakes under way may take to finish (and the connections the service
 * closed to be closed by their clients) before the address moves anyway: a few round trips
 * of an edge client. A connection still unsettled then may be reset, as before the gate.
 */
export const SETTLE_LIMIT_MS = 250;

export async function runAnnounce(h: SourceHandoff): Promise<void> {
  const { report, details } = h;
  report.state = 'final';
  h.journal();
  h.progress.restartPolicy = await h.deps.engine.setRestartPolicy(details.id, { Name: 'no' });
  h.index++;
  // The address moves before the freeze: the destination holds its packets until the
  // restored sockets are there, so a client's segment sent meanwhile is answered one round
  // trip after the restore instead of at its next retransmission (see destination/address.ts).
  if (report.serviceAddress !== null) {
    // Before it moves, no handshake may be left half done here: its client's next packets
    // would reach a destination that never saw it, and get a reset (see network/syn-gate.ts).
    // New SYNs are held from now on, and sent on to the destination once the address moved.
    const gate = await SynGate.close(report.serviceAddress);
    h.progress.gate = gate;
    const settled = await gate.settle(details.pid, { limitMs: SETTLE_LIMIT_MS });
    report.synGate = { settleMs: Math.round(settled.settleMs), unsettled: settled.unsettled, gateMs: null, forwarded: null, held: null };
    if (settled.unsettled > 0)
      report.warnings.push(
        `${settled.unsettled} connection(s) of the service were still being opened or closed ${SETTLE_LIMIT_MS} ms after it stopped taking new ones: their clients may see a reset`,
      );
    h.progress.addressMoved = true;
    const taken = await h.peer.post(`/v1/incoming/${report.id}/address`, {}, AddressTakenSchema);
    report.announceMs = Math.round(taken.announceMs);
    report.holdSetupMs = Math.round(taken.holdSetupMs);
    report.synGate.forwarded = await gate.forward();
    // How long new connections were held here before they went on to the destination (or,
    // not forwarded, were dropped: those clients connect about one SYN timeout later).
    report.synGate.gateMs = Math.round(performance.now() - gate.closedAt);
    if (!report.synGate.forwarded)
      report.warnings.push(
        `new connections to ${report.serviceAddress} that reached this cloudlet during the move were dropped (no default route to send them on): their clients retried about 1 s later`,
      );
  }
}
