// Benchmarks run on the lab that is up; when none is, they bring one up with the defaults
// and take it down again afterwards (also when the benchmark fails).
import { labDown, labUp } from '../lab/lab.js';
import { readLabState, type LabState } from '../lab/state.js';
import { ConflictError } from '../util/errors.js';

/**
 * How a benchmark's services get their network namespace on this lab: a holder they join (how
 * Cloudlet runs services), or their own on the service network with a fixed address on a
 * remapped lab, where a holder-joined container cannot be restored (docs/userns-remap.md).
 */
export function serviceNetworkMode(lab: LabState): 'holder' | 'own' {
  return lab.usernsRemap ? 'own' : 'holder';
}

/** `usernsRemap`: the benchmark needs a remapped lab (brings one up, refuses one that is not). */
export async function onLab<T>(progress: (m: string) => void, run: (lab: LabState) => Promise<T>, opts: { usernsRemap?: boolean } = {}): Promise<T> {
  let lab = readLabState();
  const ownLab = lab === null;
  if (lab && opts.usernsRemap && !lab.usernsRemap) {
    throw new ConflictError(`--userns-remap: the lab that is up (since ${lab.createdAt}, ${lab.dir}) runs its engines without userns-remap`, {
      hint: 'run `cloudlet lab down` first (the benchmark then brings up a remapped lab of its own), or `cloudlet lab up --userns-remap`',
    });
  }
  if (!lab) {
    progress(`no lab is up: bringing one up (2 cloudlets, 100mbit, 5ms${opts.usernsRemap ? ', userns-remap' : ''})`);
    lab = await labUp({ cloudlets: 2, link: { bandwidth: '100mbit', latency: '5ms' }, ...(opts.usernsRemap ? { usernsRemap: true } : {}) }, progress);
  }
  try {
    return await run(lab);
  } finally {
    if (ownLab) {
      progress('taking the lab down');
      await labDown(() => undefined);
    }
  }
}
