// The migrated workloads of `bench all`, each started once on cloudlet a and then moved
// back and forth (Shuttle): the busybox counter (busybox httpd beside it) and a Node.js
// service with pseudo-random state and a timer dirty rate (the large-memory workload), both
// on the service network in a holder as `bench migrate` runs them, so that an HTTP probe in
// the lab's client namespace sees every migration; and the activity service whose every
// client request dirties memory (provisioned from an overlay on the service network, so the
// lab client can reach it through every handoff).
import type { ContainerCreateOptions } from '../../engine/docker.js';
import type { LabState } from '../../lab/state.js';
import { BUSYBOX_IMAGE } from '../../images/base-images.js';
import { announceOn, COUNTER_HTTP_PATH, pickBenchAddress, PROBE_WINDOW, removeWorkload, startWorkload, TOUCH_PATH } from '../migrate.js';
import { engineOf, waitForService } from '../lab-migrate.js';
import { provisionHandoffService, removeService } from '../handoff.js';
import { BUSYBOX_COUNTER_HTTP_SCRIPT, STATEFUL_SERVICE_SCRIPT } from '../../workloads/stateful-service.js';
import { Shuttle, type HttpProbe } from './lab-ops.js';

/**
 * Starts a workload on cloudlet a in a holder of its own on the service network, at a free
 * address routed to a; removed again if it does not come up.
 */
async function startOnServiceNetwork(
  lab: LabState,
  name: string,
  options: ContainerCreateOptions,
  probe: Pick<HttpProbe, 'path' | 'connectionPerRequest'>,
  progress: (m: string) => void,
): Promise<Shuttle> {
  const ca = lab.cloudlets[0]!;
  await removeService(lab, name);
  const ea = engineOf(lab, ca.name);
  const address = await pickBenchAddress(lab, ca);
  try {
    await startWorkload(ea, { name, ...options }, 'holder', address);
    await announceOn(ca, address);
    await waitForService(ea, name);
  } catch (err) {
    await removeWorkload(lab, name, address, progress);
    throw err;
  }
  // busybox httpd closes every connection after its answer: one request per connection.
  const window = probe.connectionPerRequest ? 1 : PROBE_WINDOW;
  progress(
    `${name} on ${ca.name} at ${address}, probed with GET ${probe.path}${probe.connectionPerRequest ? ' (a connection per request)' : ` (one kept-alive connection, ${window} pipelined)`}`,
  );
  return new Shuttle(lab, name, ca.name, { address, ...probe, window });
}

export function startCounter(lab: LabState, name: string, progress: (m: string) => void): Promise<Shuttle> {
  return startOnServiceNetwork(
    lab,
    name,
    { Image: BUSYBOX_IMAGE, Cmd: ['sh', '-c', BUSYBOX_COUNTER_HTTP_SCRIPT] },
    { path: COUNTER_HTTP_PATH, connectionPerRequest: true },
    progress,
  );
}

export function startRandomStateService(
  lab: LabState,
  name: string,
  stateMb: number,
  dirtyPagesPerSec: number,
  progress: (m: string) => void,
): Promise<Shuttle> {
  return startOnServiceNetwork(
    lab,
    name,
    {
      Image: 'cloudlet/node:20',
      Cmd: ['node', '-e', STATEFUL_SERVICE_SCRIPT],
      Env: [`STATE_MB=${stateMb}`, 'PORT=8080', `DIRTY_PAGES_PER_SEC=${dirtyPagesPerSec}`],
    },
    // GET /touch reads pages over the whole state and dirties none: the dirty rate stays the timer's.
    { path: TOUCH_PATH, connectionPerRequest: false },
    progress,
  );
}

/** Removes a probed workload, its holder and the route to its address. */
export async function removeProbedWorkload(lab: LabState, shuttle: Shuttle, progress: (m: string) => void): Promise<void> {
  await removeWorkload(lab, shuttle.container, shuttle.probe?.address ?? null, progress);
}

export async function startActivityService(
  lab: LabState,
  name: string,
  stateMb: number,
  dirtyKbPerRequest: number,
  progress: (m: string) => void,
): Promise<{ shuttle: Shuttle; address: string }> {
  const a = lab.cloudlets[0]!.name;
  const svc = await provisionHandoffService(lab, a, name, { env: [`STATE_MB=${stateMb}`, `DIRTY_KB_PER_REQUEST=${dirtyKbPerRequest}`], progress });
  const shuttle = new Shuttle(lab, name, a);
  // The app image exists only where the overlay was synthesized: a first, unrecorded
  // migration ships it to the other cloudlet, so that no measured migration includes it.
  progress(`warm-up migration of ${name} (ships its image once)`);
  await shuttle.migrate({});
  return { shuttle, address: svc.address };
}

export { removeService };
