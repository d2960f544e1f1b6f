// Which processes a container's memory scan (proc-scan.ts) covers, and under which ids:
// the members of the init process's cgroup that descend from it, in CRIU's dump order,
// and each one's pid in the container's pid namespace.
import { readFile } from 'node:fs/promises';
import { CloudletError } from '../util/errors.js';

/** The container's init process is gone (or never existed): nothing to scan. */
export class ScanProcessGoneError extends CloudletError {
  constructor(pid: number, cause?: unknown) {
    super('process_gone', `process ${pid} is gone: cannot scan its memory`, {
      context: { pid },
      hint: 'the container stopped or restarted; take a fresh inventory of it',
      kind: 'conflict',
      cause,
    });
  }
}

interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
  start: number;
}

async function procStat(pid: number): Promise<ProcInfo | null> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // pid (comm) state ppid ... ; comm may hold spaces and parens: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, ppid: Number(rest[1]), state: rest[0]!, start: Number(rest[19]) };
}

/** Host pids of the cgroup (v1 memory, else v1 pids, else v2) that `pid` is in. */
export async function cgroupPids(pid: number): Promise<number[]> {
  let lines: string[];
  try {
    lines = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
  } catch (err) {
    throw new ScanProcessGoneError(pid, err);
  }
  const mounts = await cgroupMounts();
  const candidates: string[] = [];
  for (const ctl of ['memory', 'pids']) {
    const l = lines.find((x) => new RegExp(`^\\d+:([^:]*,)?${ctl}(,[^:]*)?:`).test(x));
    const mnt = mounts.v1.get(ctl);
    if (l && mnt) candidates.push(joinCg(mnt, l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1)));
  }
  const v2 = lines.find((x) => x.startsWith('0::'));
  if (v2 && mounts.v2) candidates.push(joinCg(mounts.v2, v2.slice(3)));
  for (const dir of candidates) {
    try {
      const text = await readFile(`${dir}/cgroup.procs`, 'utf8');
      return text
        .split('\n')
        .filter((x) => x !== '')
        .map(Number);
    } catch {
      // try the next hierarchy
    }
  }
  throw new CloudletError('cgroup_unknown', `no readable cgroup.procs for pid ${pid}`, { kind: 'internal', context: { pid, candidates } });
}

function joinCg(mount: { dir: string; root: string }, path: string): string {
  let rel = path;
  if (mount.root !== '/' && (rel === mount.root || rel.startsWith(`${mount.root}/`))) rel = rel.slice(mount.root.length);
  return `${mount.dir}${rel === '/' ? '' : rel}`;
}

interface CgroupMounts {
  v1: Map<string, { dir: string; root: string }>;
  v2: { dir: string; root: string } | null;
}

async function cgroupMounts(): Promise<CgroupMounts> {
  const out: CgroupMounts = { v1: new Map(), v2: null };
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    const m = { dir: unescapeMount(pre[4]!), root: unescapeMount(pre[3]!) };
    if (post[0] === 'cgroup2') out.v2 ??= m;
    else if (post[0] === 'cgroup') {
      for (const opt of (post[2] ?? '').split(',')) if (!out.v1.has(opt)) out.v1.set(opt, m);
    }
  }
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/**
 * The processes to scan: members of initPid's cgroup that descend from initPid, in CRIU's
 * dump order (pre-order, children by start time then pid). Zombies are left out (CRIU dumps
 * them without memory and gives them no pages id).
 */
export async function containerProcesses(initPid: number): Promise<number[]> {
  const members = await cgroupPids(initPid);
  const infos = new Map<number, ProcInfo>();
  const root = await procStat(initPid);
  if (!root) throw new ScanProcessGoneError(initPid);
  infos.set(initPid, root);
  await Promise.all(
    members.map(async (p) => {
      if (p === initPid) return;
      const i = await procStat(p);
      if (i) infos.set(p, i);
    }),
  );
  const children = new Map<number, ProcInfo[]>();
  for (const i of infos.values()) {
    if (i.pid === initPid) continue;
    const list = children.get(i.ppid) ?? [];
    list.push(i);
    children.set(i.ppid, list);
  }
  const order: number[] = [];
  const visit = (i: ProcInfo): void => {
    if (i.state !== 'Z' && i.state !== 'X') order.push(i.pid);
    const kids = (children.get(i.pid) ?? []).sort((a, b) => a.start - b.start || a.pid - b.pid);
    for (const k of kids) visit(k);
  };
  visit(root);
  return order;
}

/** The pid in the innermost pid namespace (last NSpid field); the pid itself outside any. */
export async function namespacePid(pid: number): Promise<number | null> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = /^NSpid:\s+(.*)$/m.exec(text);
  if (!m) return pid;
  const fields = m[1]!.trim().split(/\s+/);
  return Number(fields[fields.length - 1]);
}
