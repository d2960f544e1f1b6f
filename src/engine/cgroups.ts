// A container's memory as its cgroup counts it: anonymous memory is what a checkpoint must
// carry, so it sizes the decision to pre-copy or not before any dump.
import { readFile } from 'node:fs/promises';
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
  if (!file || !key) throw new CloudletError('cgroup_unknown', `no memory cgroup for pid ${pid}`, { context: { pid } });
  const stat = await readFile(file, 'utf8');
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(stat);
  if (!m) throw new CloudletError('cgroup_unknown', `${file} has no ${key}`, { context: { pid, file } });
  return Number(m[1]);
}
