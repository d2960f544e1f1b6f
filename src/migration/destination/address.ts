// Destination, announce (before the source freezes): packets for the service address are held
// here (PacketHold) and the address is routed here. From then on a client's segments wait in
// the hold instead of being dropped at the frozen source, and reach the restored socket as
// soon as it exists (restore.ts lets them through): the client's gap ends one round trip
// after the restore, not at its next retransmission timer. If the handoff fails, the source
// routes the address back and the abort drops what was held.
import { PacketHold } from '../../network/packet-hold.js';
import { ConflictError, UsageError } from '../../util/errors.js';
import { enterState, type DestinationDeps, type Incoming } from './incoming.js';
import type { AddressTaken } from './wire.js';

export async function takeAddress(deps: DestinationDeps, inc: Incoming): Promise<AddressTaken> {
  const svc = deps.serviceNetwork;
  if (inc.serviceAddress === null || !svc) throw new UsageError(`migration ${inc.id} has no service address to route here`);
  if (inc.hold) throw new ConflictError(`the address of migration ${inc.id} is already held here`);
  const t0 = performance.now();
  inc.hold = await PacketHold.start(inc.serviceAddress);
  const holdSetupMs = performance.now() - t0;
  enterState(deps, inc, 'address');
  // A failed announce leaves the hold in place until the source's abort.
  return { holdSetupMs, announceMs: await svc.announce(inc.serviceAddress) };
}
