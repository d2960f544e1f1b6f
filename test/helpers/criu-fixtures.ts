// Real CRIU fixtures made at test time: a small Node.js workload holding a buffer of known
// content, dumped with the real criu (`dump --leave-running`, final `dump`) and restored.
// Every process started here is tracked by PID and killed by `cleanup()`.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../../src/util/exec.js';

/**
 * How the workload's rewritten slices can be recognised in a pages file: 8 bytes computed
 * at run time (so they appear nowhere in the script source or heap), then u32 LE gen.
 */
export function hotMarker(gen: number): Buffer {
  const b = Buffer.alloc(12);
  for (let i = 0; i < 8; i++) b[i] = (i * 37 + 0x11) & 0xff;
  b.writeUInt32LE(gen, 8);
  return b;
}

// The workload: `node workload.cjs STATUS MIB HOT ZERO_MIB [random]`.
//  - a MIB MiB buffer of non-zero content (a fast pattern, or random bytes);
//  - a ZERO_MIB MiB buffer whose pages were written and then zeroed (present zero pages);
//  - SIGUSR1: gen++, rewrites HOT 4 KiB slices (every 8th page): hotMarker(gen), slice no, fill;
//  - SIGHUP: grows++, allocates one more 2 MiB buffer (a new mapping: the page layout of
//    the next dump changes) filled with a pattern of grows;
//  - SIGUSR2 (and start): writes STATUS = {pid, seq, gen, grows, sum: sha256 of all buffers}.
const WORKLOAD = String.raw`
const { writeFileSync, renameSync } = require('node:fs');
const { createHash, randomFillSync } = require('node:crypto');
const [status, mib, hot, zeroMib, mode] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]), process.argv[6]];
const buf = Buffer.allocUnsafeSlow(mib << 20);
if (mode === 'random') randomFillSync(buf);
else for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((((i * 2654435761) >>> 0) | 1) >>> 0, i);
const zero = Buffer.allocUnsafeSlow(zeroMib << 20);
zero.fill(0x5a); zero.fill(0);
let gen = 0, seq = 0;
const extra = [];
function report() {
  seq++;
  const h = createHash('sha256').update(buf).update(zero);
  for (const x of extra) h.update(x);
  const sum = h.digest('hex');
  writeFileSync(status + '.tmp', JSON.stringify({ pid: process.pid, seq, gen, grows: extra.length, sum }));
  renameSync(status + '.tmp', status);
}
process.on('SIGUSR1', () => {
  gen++;
  for (let h = 0; h < hot; h++) {
    const off = (h * 8 + 1) * 4096;
    buf.fill((gen * 31 + h) & 0xff | 1, off, off + 4096);
    for (let i = 0; i < 8; i++) buf[off + i] = (i * 37 + 0x11) & 0xff;
    buf.writeUInt32LE(gen, off + 8);
    buf.writeUInt32LE(h, off + 12);
  }
  report();
});
process.on('SIGUSR2', report);
process.on('SIGHUP', () => {
  const x = Buffer.allocUnsafeSlow(2 << 20);
  for (let i = 0; i < x.length; i += 4) x.writeUInt32LE(((i * 40503 + extra.length * 7919) | 1) >>> 0, i);
  extra.push(x);
  report();
});
setInterval(() => {}, 1 << 30);
report();
`;

export interface WorkloadStatus {
  pid: number;
  seq: number;
  gen: number;
  grows: number;
  sum: string;
}

/** Null when real CRIU fixtures can be made here, else the reason to skip. */
export function criuSkipReason(): string | null {
  if (process.platform !== 'linux') return 'CRIU fixtures need Linux';
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'CRIU fixtures need root';
  for (const dir of (process.env.PATH ?? '').split(':')) {
    try {
      accessSync(join(dir, 'criu'), constants.X_OK);
      return null;
    } catch {
      /* next */
    }
  }
  return 'criu is not on PATH';
}

/** Resolves true when p settles within ms, false otherwise; leaves no timer behind. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), t]);
  } finally {
    clearTimeout(timer);
  }
}

export class CriuLab {
  private readonly pids = new Set<number>();
  private readonly children = new Set<ChildProcess>();

  constructor(readonly workDir: string) {}

  /** Starts the workload in its own session (no --shell-job needed) and waits for its first status. */
  async startWorkload(opts: { mib: number; hot: number; zeroMib?: number; random?: boolean }): Promise<Workload> {
    const script = join(this.workDir, 'workload.cjs');
    await writeFile(script, WORKLOAD);
    const statusFile = join(this.workDir, 'status.json');
    const args = [script, statusFile, String(opts.mib), String(opts.hot), String(opts.zeroMib ?? 1)];
    if (opts.random) args.push('random');
    // Own session (detached = setsid), stdout/stderr to a log file that criu restores too.
    const log = await open(join(this.workDir, 'workload.log'), 'a');
    const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log.fd, log.fd] });
    await log.close();
    if (child.pid === undefined) throw new Error('could not start the workload');
    this.children.add(child);
    this.pids.add(child.pid);
    const w = new Workload(this, child.pid, statusFile, child);
    await w.waitStatus((s) => s.seq >= 1, 30_000);
    return w;
  }

  track(pid: number): void {
    this.pids.add(pid);
  }

  async dump(pid: number, dir: string, leaveRunning: boolean): Promise<void> {
    const args = ['dump', '-t', String(pid), '-D', dir, '-o', 'dump.log', '-v4'];
    if (leaveRunning) args.push('--leave-running');
    await run('mkdir', ['-p', dir]);
    try {
      await run('criu', args, { timeoutMs: 60_000 });
    } catch (err) {
      const log = await readFile(join(dir, 'dump.log'), 'utf8').catch(() => '');
      throw new Error(
        `criu dump failed: ${String(err)}\n${log
          .split('\n')
          .filter((l) => /Error|error/.test(l))
          .slice(-10)
          .join('\n')}`,
      );
    }
    if (!leaveRunning) this.pids.delete(pid);
  }

  /**
   * `criu restore` WITHOUT --restore-detached: criu stays the restored task's parent and
   * reaps it when we kill it (PID 1 here does not reap orphans promptly). Ready when the
   * log says "Restore finished successfully". `extraArgs`, e.g. --lazy-pages.
   */
  async restore(dir: string, pid: number, statusFile: string, extraArgs: readonly string[] = []): Promise<Workload> {
    const log = join(this.workDir, `restore-${Date.now()}.log`);
    const child = spawn('criu', ['restore', '-D', dir, '-o', log, '-v4', ...extraArgs], { stdio: 'ignore' });
    this.children.add(child);
    this.pids.add(pid);
    let exited: number | null | undefined;
    child.on('exit', (code) => (exited = code));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const text = await readFile(log, 'utf8').catch(() => '');
      if (text.includes('Restore finished successfully')) break;
      if (exited !== undefined || Date.now() > deadline) {
        const errs = text
          .split('\n')
          .filter((l) => /Error|error/.test(l))
          .slice(-10)
          .join('\n');
        throw new Error(`criu restore failed (exit ${exited}): ${errs || text.slice(-2000)}`);
      }
      await sleep(50);
    }
    return new Workload(this, pid, statusFile, child);
  }

  /** Kills every process we started or restored (by PID), and the criu parents. */
  async cleanup(): Promise<void> {
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) {
        const done = new Promise((r) => c.once('exit', r));
        try {
          c.kill('SIGKILL');
        } catch {
          /* gone */
        }
        await within(done, 2000);
      }
    }
    this.pids.clear();
    this.children.clear();
  }
}

export class Workload {
  constructor(
    private readonly lab: CriuLab,
    readonly pid: number,
    readonly statusFile: string,
    readonly child: ChildProcess,
  ) {}

  async readStatus(): Promise<WorkloadStatus | null> {
    try {
      return JSON.parse(await readFile(this.statusFile, 'utf8')) as WorkloadStatus;
    } catch {
      return null;
    }
  }

  async waitStatus(ok: (s: WorkloadStatus) => boolean, timeoutMs = 15_000): Promise<WorkloadStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.readStatus();
      if (s && s.pid === this.pid && ok(s)) return s;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        const log = await readFile(join(this.lab.workDir, 'workload.log'), 'utf8').catch(() => '');
        throw new Error(`workload ${this.pid} exited (${this.child.exitCode ?? this.child.signalCode}): ${log.slice(-1500)}`);
      }
      if (Date.now() > deadline) throw new Error(`workload ${this.pid}: no expected status within ${timeoutMs} ms (last: ${JSON.stringify(s)})`);
      await sleep(20);
    }
  }

  /** Asks for a fresh status (SIGUSR2). */
  async status(): Promise<WorkloadStatus> {
    const before = (await this.readStatus())?.seq ?? 0;
    process.kill(this.pid, 'SIGUSR2');
    return this.waitStatus((s) => s.seq > before);
  }

  /** Rewrites the hot pages (SIGUSR1) and returns the status after it. */
  async mutate(): Promise<WorkloadStatus> {
    const before = (await this.readStatus())?.gen ?? 0;
    process.kill(this.pid, 'SIGUSR1');
    return this.waitStatus((s) => s.gen > before);
  }

  /** Allocates one more 2 MiB buffer (SIGHUP) and returns the status after it. */
  async grow(): Promise<WorkloadStatus> {
    const before = (await this.readStatus())?.grows ?? 0;
    process.kill(this.pid, 'SIGHUP');
    return this.waitStatus((s) => s.grows > before);
  }

  dump(dir: string, leaveRunning: boolean): Promise<void> {
    return this.lab.dump(this.pid, dir, leaveRunning);
  }

  /** Resolves when the process (our child or criu's restored child) has exited. */
  async waitExit(timeoutMs = 10_000): Promise<void> {
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    if (!(await within(new Promise((r) => c.once('exit', r)), timeoutMs))) {
      throw new Error(`process ${c.pid} did not exit within ${timeoutMs} ms`);
    }
  }
}
