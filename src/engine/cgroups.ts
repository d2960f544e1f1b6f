// A container's memory as its cgroup counts it: anonymous memory is what a checkpoint must
// carry, so it sizes the decision to pre-copy or not before any dump.
import { readFile, writeFile } from 'node:fs/promises';
import { CloudletError } from '../util/errors.js';

/** Anonymous memory (bytes) of the cgroup that `pid` is in (v1 total_rss, v2 anon). */
export async function anonymousMemoryBytes(pid: number): Promise<number> {
  const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
  const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
  const v2 = lines.find((l) => l.startsWith('0::'));
  const [file, key] = v1
    ? [`/sys/fs/cgroup/memory${v1.split(':')[2]}/memory.stat`, 'total_rss']
    : v2
      ? [`/sys/fs/cgroup${v2.slice(3)}/memory.stat`, 'anon']
      : [null, null];
  if (!file || !key) throw new CloudletError('cgroup_unknown', `no memory cgroup for pid ${pid}`, { kind: 'internal', context: { pid } });
  const stat = await readFile(file, 'utf8');
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(stat);
  if (!m) throw new CloudletError('cgroup_unknown', `${file} has no ${key}`, { kind: 'internal', context: { pid, file } });
  return Number(m[1]);
}

/** A frozen cgroup; thaw() undoes the freeze (a no-op once the cgroup is gone). */
export interface FrozenCgroup {
  file: string;
  ms: number;
  thaw(): Promise<void>;
}

const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Freezes the cgroup of `pid` (v1 freezer.state, v2 cgroup.freeze) and waits until the kernel
 * reports it frozen, polling every millisecond. A final dump that starts on an already
 * frozen cgroup skips CRIU's own freezer wait, which sleeps 100 ms before its first check;
 * the freeze is then also the exact start of the downtime.
 */
export async function freezeCgroup(pid: number, timeoutMs = 5000): Promise<FrozenCgroup> {
  const lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
  const v1 = lines.find((l) => /^\d+:([^:]*,)?freezer(,[^:]*)?:/.test(l));
  const v2 = lines.find((l) => l.startsWith('0::'));
  const t0 = performance.now();
  if (v1) {
    const file = `/sys/fs/cgroup/freezer${v1.split(':')[2]}/freezer.state`;
    await writeFile(file, 'FROZEN');
    for (;;) {
      const state = (await readFile(file, 'utf8')).trim();
      if (state === 'FROZEN') break;
      if (performance.now() - t0 > timeoutMs) {
        await writeFile(file, 'THAWED');
        throw new CloudletError('freeze_failed', `cgroup of pid ${pid} did not freeze within ${timeoutMs} ms (state ${state})`, {
          kind: 'internal',
          context: { pid, file },
        });
      }
      await sleepMs(1);
    }
    return { file, ms: performance.now() - t0, thaw: () => writeIfPresent(file, 'THAWED') };
  }
  if (v2) {
    const dir = `/sys/fs/cgroup${v2.slice(3)}`;
    const file = `${dir}/cgroup.freeze`;
    await writeFile(file, '1');
    for (;;) {
      if (/^frozen 1$/m.test(await readFile(`${dir}/cgroup.events`, 'utf8'))) break;
      if (performance.now() - t0 > timeoutMs) {
        await writeFile(file, '0');
        throw new CloudletError('freeze_failed', `cgroup of pid ${pid} did not freeze within ${timeoutMs} ms`, { kind: 'internal', context: { pid, file } });
      }
      await sleepMs(1);
    }
    return { file, ms: performance.now() - t0, thaw: () => writeIfPresent(file, '0') };
  }
  throw new CloudletError('cgroup_unknown', `no freezer cgroup for pid ${pid}`, { kind: 'internal', context: { pid } });
}

async function writeIfPresent(file: string, value: string): Promise<void> {
  try {
    await writeFile(file, value);
  } catch (err) {
    // The container ended and its cgroup went away: nothing is frozen any more.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
