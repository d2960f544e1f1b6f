// The yardstick of `cloudlet bench apps`: the busybox counter in a network namespace holder
// (on a remapped lab: in its own, as the apps there, see serviceNetworkMode), handed off a -> b on the same lab in the same run, so that an app's downtime is read
// against what the engine and the handoff cost for the smallest service at that moment
// (issue 17: PostgreSQL's and nginx's within 2x of it).
import { BUSYBOX_IMAGE } from '../../images/base-images.js';
import type { LabState } from '../../lab/state.js';
import { errorMessage } from '../../util/errors.js';
import { BUSYBOX_COUNTER_SCRIPT } from '../../workloads/stateful-service.js';
import { engineOf, migrate } from '../lab-migrate.js';
import { announceOn, pickBenchAddress, removeWorkload, spareReady, startWorkload } from '../migrate.js';
import { removeService } from '../handoff-provision.js';
import { serviceNetworkMode } from '../lab-session.js';
import type { AppResult, ReferenceHandoff } from './types.js';

const WORKLOADS = { holder: 'busybox counter in a netns holder', own: 'busybox counter in its own netns on the service network' } as const;
const NAME = 'app-reference-counter';
/** The counter runs this long before its handoff, like the apps' clients settle first. */
const SETTLE_MS = 2000;

export async function measureReference(lab: LabState, progress: (m: string) => void): Promise<ReferenceHandoff> {
  const [ca, cb] = [lab.cloudlets[0]!, lab.cloudlets[1]!];
  const network = serviceNetworkMode(lab);
  const workload = WORKLOADS[network];
  let address: string | null = null;
  try {
    await removeService(lab, NAME);
    address = await pickBenchAddress(lab, ca);
    await startWorkload(engineOf(lab, ca.name), { name: NAME, Image: BUSYBOX_IMAGE, Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT] }, network, address);
    await announceOn(ca, address);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const r = await migrate(lab, ca.name, { container: NAME, to: cb.name });
    await spareReady(engineOf(lab, cb.name));
    progress(`reference: ${workload} ${ca.name} -> ${cb.name}: downtime ${r.downtimeMs} ms, total ${r.totalMs} ms`);
    return { workload, downtimeMs: r.downtimeMs, totalMs: r.totalMs, error: null };
  } catch (err) {
    progress(`reference: FAILED: ${errorMessage(err)}`);
    return { workload, downtimeMs: null, totalMs: null, error: errorMessage(err) };
  } finally {
    await removeWorkload(lab, NAME, address, progress);
  }
}

/** An app's downtime against the reference's; its target met or not (null: it has none). */
export function againstReference(app: Pick<AppResult, 'downtimeMs'>, reference: ReferenceHandoff, target: number | null): AppResult['downtimeVsCounter'] {
  const ratio = app.downtimeMs !== null && reference.downtimeMs ? Math.round((app.downtimeMs / reference.downtimeMs) * 100) / 100 : null;
  return { ratio, target, met: target === null ? null : ratio !== null && ratio <= target };
}
