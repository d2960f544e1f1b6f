// Fixtures for the /proc memory scan tests: processes holding known memory, and a
// page-by-page comparison of a scan directory with a real CRIU dump of the same processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';
import { indexDump, type PageIndex } from '../../src/checkpoint/page-index.js';
import { parseMaps } from '../../src/checkpoint/proc-scan.js';

/** 16-byte header of marker page i: "CLDSCAN!" + u32 LE index + u32 LE ~index. */
export function markerPage(i: number): Buffer {
  const p = Buffer.alloc(4096);
  p.write('CLDSCAN!', 0, 'latin1');
  p.writeUInt32LE(i, 8);
  p.writeUInt32LE(~i >>> 0, 12);
  // The rest: a deterministic pattern of the index (xorshift32), never all zeros.
  let x = (i * 2654435761) >>> 0 || 1;
  for (let o = 16; o < 4096; o += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    p.writeUInt32LE(x, o);
  }
  return p;
}

/**
 * Program for `node -e`: fills MARK_PAGES marker pages (same pattern as markerPage) in one
 * buffer, optionally spawns a child doing the same (CHILD_PAGES), ticks a counter every
 * 2 ms into TICK_FILE, prints "ready <pid>" and obeys lines on stdin: "free" drops the
 * buffer and runs a GC (then prints "freed"), "exit" exits.
 */
export const MARKER_PROGRAM = String.raw`
const fs = require('fs'), cp = require('child_process');
function markerPage(i) {
  const p = Buffer.alloc(4096);
  p.write('CLDSCAN!', 0, 'latin1'); p.writeUInt32LE(i, 8); p.writeUInt32LE(~i >>> 0, 12);
  let x = (Math.imul(i, 2654435761) >>> 0) || 1;
  for (let o = 16; o < 4096; o += 4) { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; p.writeUInt32LE(x, o); }
  return p;
}
const n = Number(process.env.MARK_PAGES || 1024);
globalThis.big = Buffer.allocUnsafeSlow(n * 4096);
for (let i = 0; i < n; i++) markerPage(i).copy(globalThis.big, i * 4096);
let kid = null;
if (process.env.CHILD_PAGES) {
  kid = cp.spawn(process.execPath, ['-e', process.env.PROGRAM], { env: { ...process.env, MARK_PAGES: process.env.CHILD_PAGES, CHILD_PAGES: '', TICK_FILE: '' }, stdio: ['pipe', 'pipe', 'ignore'] });
  kid.stdout.once('data', (d) => { process.stdout.write('child ' + String(d).trim().split(' ')[1] + '\n'); });
}
let count = 0;
setInterval(() => { count++; if (process.env.TICK_FILE) fs.writeFileSync(process.env.TICK_FILE, String(count)); }, 2);
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  for (const cmd of d.split('\n')) {
    if (cmd === 'free') { globalThis.big = null; global.gc && global.gc(); setTimeout(() => process.stdout.write('freed\n'), 50); }
    if (cmd === 'exit') process.exit(0);
    if (cmd === 'kill-child' && kid) { kid.kill('SIGKILL'); }
  }
});
process.stdout.write('ready ' + process.pid + '\n');
`;

export interface MarkerProcess {
  child: ChildProcess;
  pid: number;
  /** Host pid of its own child (only when childPages was given). */
  childPid: () => Promise<number>;
  /** Resolves with the next stdout line that starts with `prefix`. */
  line: (prefix: string) => Promise<string>;
  send: (cmd: string) => void;
}

export async function spawnMarkerProcess(opts: { pages: number; childPages?: number; tickFile?: string; exposeGc?: boolean }): Promise<MarkerProcess> {
  const args = opts.exposeGc ? ['--expose-gc', '-e', MARKER_PROGRAM] : ['-e', MARKER_PROGRAM];
  const child = spawn(process.execPath, args, {
    env: {
      ...process.env,
      PROGRAM: MARKER_PROGRAM,
      MARK_PAGES: String(opts.pages),
      CHILD_PAGES: opts.childPages ? String(opts.childPages) : '',
      TICK_FILE: opts.tickFile ?? '',
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let buf = '';
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  const flush = (): void => {
    for (let i = 0; i < waiters.length; i++) {
      const k = lines.findIndex((l) => l.startsWith(waiters[i]!.prefix));
      if (k >= 0) {
        const [l] = lines.splice(k, 1);
        waiters.splice(i--, 1)[0]!.resolve(l!);
      }
    }
  };
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    flush();
  });
  const line = (prefix: string): Promise<string> =>
    new Promise((resolve, reject) => {
      waiters.push({ prefix, resolve });
      flush();
      const t = setTimeout(() => reject(new Error(`no "${prefix}" line from the marker process`)), 30_000);
      t.unref();
    });
  const ready = await line('ready ');
  let kid: Promise<number> | null = null;
  const childPid = (): Promise<number> => {
    if (!opts.childPages) return Promise.reject(new Error('no child'));
    kid ??= line('child ').then((l) => {
      const pid = Number(l.split(' ')[1]);
      grandchildren.set(child, pid);
      return pid;
    });
    return kid;
  };
  if (opts.childPages) await childPid();
  return {
    child,
    pid: Number(ready.split(' ')[1]),
    childPid,
    line,
    send: (cmd) => child.stdin!.write(`${cmd}\n`),
  };
}

const grandchildren = new WeakMap<ChildProcess, number>();

/** Kills a marker process (and its own child, which would otherwise be orphaned). */
export async function stopProcess(child: ChildProcess): Promise<void> {
  const kid = grandchildren.get(child);
  if (kid !== undefined) {
    try {
      process.kill(kid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await done;
}

/**
 * Address of marker page 0 in a marker process, found by reading its anonymous writable
 * mappings. The buffer's own mmap may be merged by the kernel with a neighbouring anonymous
 * mapping, so its address is looked up by content, not guessed from the mapping sizes.
 */
export async function findMarkerBuffer(pid: number): Promise<number | null> {
  const header = markerPage(0).subarray(0, 16);
  const second = markerPage(1).subarray(0, 16);
  const vmas = parseMaps(await readFile(`/proc/${pid}/maps`, 'utf8')).filter((v) => v.inode === 0 && v.perms === 'rw-p');
  const mem = await open(`/proc/${pid}/mem`, 'r');
  try {
    const chunk = Buffer.alloc(4 << 20);
    for (const v of vmas) {
      for (let at = v.start; at < v.end; at += chunk.length) {
        const len = Math.min(chunk.length, v.end - at);
        // A range the process unmaps meanwhile reads as EIO: nothing to find there.
        const { bytesRead } = await mem.read(chunk, 0, len, at).catch(() => ({ bytesRead: 0 }));
        // The temporary copy of page 0 may still lie elsewhere: the buffer is where page 1 follows.
        for (let k = chunk.subarray(0, bytesRead).indexOf(header); k >= 0; k = chunk.subarray(0, bytesRead).indexOf(header, k + 1)) {
          const next = Buffer.alloc(16);
          await mem.read(next, 0, 16, at + k + 4096).catch(() => ({ bytesRead: 0 }));
          if (next.equals(second)) return at + k;
        }
      }
    }
    return null;
  } finally {
    await mem.close();
  }
}

/** Waits until no mapping in /proc/PID/maps covers the address `addr`. */
export async function waitUnmapped(pid: number, addr: number, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const maps = await readFile(`/proc/${pid}/maps`, 'utf8').catch(() => '');
    if (!parseMaps(maps).some((v) => v.start <= addr && addr < v.end)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

export interface DumpComparison {
  scanIds: string[];
  criuIds: string[];
  scanPagesIds: number[];
  criuPagesIds: number[];
  /** CRIU's present pages (process pagemaps only). */
  criuPages: number;
  scanPages: number;
  /** CRIU pages found in the scan at the same (id, vaddr) with the same hash. */
  same: number;
  /** ... found with another hash (changed between scan and dump, or torn). */
  differ: number;
  /** CRIU pages the scan does not have. */
  missing: number;
  /** Scan pages CRIU does not have. */
  extra: number;
  /** Up to 10 (id, vaddr) of missing and extra pages, for explanations. */
  missingSample: string[];
  extraSample: string[];
}

/** Compares a scan directory with a CRIU dump directory page by page (shmem pagemaps ignored). */
export async function compareWithDump(scanDir: string, criuDir: string): Promise<DumpComparison> {
  const scan = await indexDump(scanDir);
  const criu = await indexDump(criuDir);
  const procIds = (ix: PageIndex): string[] => [...ix.keys()].filter((k) => /^\d+$/.test(k));
  const c: DumpComparison = {
    scanIds: procIds(scan),
    criuIds: procIds(criu),
    scanPagesIds: procIds(scan).map((k) => scan.get(k)!.pagesId),
    criuPagesIds: procIds(criu).map((k) => criu.get(k)!.pagesId),
    criuPages: 0,
    scanPages: 0,
    same: 0,
    differ: 0,
    missing: 0,
    extra: 0,
    missingSample: [],
    extraSample: [],
  };
  const positions = (ix: PageIndex, id: string): Map<number, number> => {
    const m = new Map<number, number>();
    const pp = ix.get(id);
    if (pp) for (let i = 0; i < pp.vaddrs.length; i++) m.set(pp.vaddrs[i]!, i);
    return m;
  };
  for (const id of c.criuIds) {
    const pc = criu.get(id)!;
    const ps = scan.get(id);
    const at = positions(scan, id);
    for (let i = 0; i < pc.vaddrs.length; i++) {
      c.criuPages++;
      const j = at.get(pc.vaddrs[i]!);
      if (j === undefined || !ps) {
        c.missing++;
        if (c.missingSample.length < 10) c.missingSample.push(`${id}:${pc.vaddrs[i]!.toString(16)}`);
      } else if (ps.hashes[j] === pc.hashes[i]) c.same++;
      else c.differ++;
    }
  }
  for (const id of c.scanIds) {
    const ps = scan.get(id)!;
    const at = positions(criu, id);
    for (let i = 0; i < ps.vaddrs.length; i++) {
      c.scanPages++;
      if (!at.has(ps.vaddrs[i]!)) {
        c.extra++;
        if (c.extraSample.length < 10) c.extraSample.push(`${id}:${ps.vaddrs[i]!.toString(16)}`);
      }
    }
  }
  return c;
}
