// The migrated workloads of `bench all`, each started once on cloudlet a and then moved
// back and forth (Shuttle): the busybox counter, a Node.js service with pseudo-random state
// and a timer dirty rate (the large-memory workload), and the activity service whose every
// client request dirties memory (provisioned from an overlay on the service network, so the
// lab client can reach it through every handoff).
import type { LabState } from '../../lab/state.js';
import { engineOf, waitForService } from '../migrate.js';
import { provisionHandoffService, removeService } from '../handoff.js';
import { BUSYBOX_COUNTER_SCRIPT, STATEFUL_SERVICE_SCRIPT } from '../../workloads/stateful-service.js';
import { Shuttle } from './lab-ops.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startCounter(lab: LabState, name: string): Promise<Shuttle> {
  const a = lab.cloudlets[0]!.name;
  await removeService(lab, name);
  const ea = engineOf(lab, a);
  await ea.createContainer({ name, Image: 'cloudlet/busybox:1', Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT], HostConfig: { NetworkMode: 'none' } });
  await ea.startContainer(name);
  await sleep(1000);
  return new Shuttle(lab, name, a);
}

export async function startRandomStateService(lab: LabState, name: string, stateMb: number, dirtyPagesPerSec: number): Promise<Shuttle> {
  const a = lab.cloudlets[0]!.name;
  await removeService(lab, name);
  const ea = engineOf(lab, a);
  await ea.createContainer({
    name,
    Image: 'cloudlet/node:20',
    Cmd: ['node', '-e', STATEFUL_SERVICE_SCRIPT],
    Env: [`STATE_MB=${stateMb}`, 'PORT=8080', `DIRTY_PAGES_PER_SEC=${dirtyPagesPerSec}`],
    HostConfig: { NetworkMode: 'none' },
  });
  await ea.startContainer(name);
  await waitForService(ea, name);
  return new Shuttle(lab, name, a);
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
