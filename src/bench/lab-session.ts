// Benchmarks run on the lab that is up; when none is, they bring one up with the defaults
// and take it down again afterwards (also when the benchmark fails).
import { labDown, labUp } from '../lab/lab.js';
import { readLabState, type LabState } from '../lab/state.js';

export async function onLab<T>(progress: (m: string) => void, run: (lab: LabState) => Promise<T>): Promise<T> {
  let lab = readLabState();
  const ownLab = lab === null;
  if (!lab) {
    progress('no lab is up: bringing one up (2 cloudlets, 100mbit, 5ms)');
    lab = await labUp({ cloudlets: 2, link: { bandwidth: '100mbit', latency: '5ms' } }, progress);
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
