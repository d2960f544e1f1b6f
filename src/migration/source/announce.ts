// Source, announce: the final stage begins. The engine must not restart the container behind
// our back once the final dump stops it: its restart policy is off until the handoff is
// decided. Then the service address moves to the destination, before the freeze.
import { AddressTakenSchema } from '../../api/schemas/migrations.js';
import type { SourceHandoff } from './handoff.js';

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
    h.progress.addressMoved = true;
    const taken = await h.peer.post(`/v1/incoming/${report.id}/address`, {}, AddressTakenSchema);
    report.announceMs = Math.round(taken.announceMs);
    report.holdSetupMs = Math.round(taken.holdSetupMs);
  }
}
