// The freeze-free /proc memory scan (src/checkpoint/proc-scan.ts) on plain child processes:
// the pages hold the child's marker buffer at consecutive addresses, the directory is a
// "dump" the page index and delta code accept, the child keeps running during the scan,
// and processes that exit or unmap memory mid-scan give a clean error or a skip.
// Reading another process's /proc/PID/mem needs root (or ptrace rights): skipped otherwise.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeDelta } from '../../src/checkpoint/delta-write.js';
import { indexDump } from '../../src/checkpoint/page-index.js';
import { PAGE_SIZE, PE_PRESENT, pagesPath, readPagemap } from '../../src/checkpoint/pagemap.js';
import { isScannedVma, parseMaps, scanContainerMemory } from '../../src/checkpoint/proc-scan.js';
import { containerProcesses, namespacePid, ScanProcessGoneError } from '../../src/checkpoint/proc-tree.js';
import { findMarkerBuffer, markerPage, spawnMarkerProcess, stopProcess, waitUnmapped, type MarkerProcess } from '../helpers/procscan-fixtures.js';

/** The child rewrites the file (truncate + write): an empty read is retried. */
async function readTicks(file: string): Promise<number> {
  for (let i = 0; ; i++) {
    const t = (await readFile(file, 'utf8')).trim();
    if (t !== '' || i > 50) return Number(t);
    await new Promise((r) => setTimeout(r, 1));
  }
}

const skip = process.getuid?.() === 0 ? false : 'needs root to read /proc/PID/mem of other processes';

describe('parseMaps / isScannedVma', () => {
  it('keeps private mappings, skips shared and special areas, parses inodes', () => {
    const text = [
      '55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]',
      '7f0000000000-7f0000100000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)',
      '7f0000200000-7f0000201000 r--p 00001000 fd:01 42                         /usr/lib/libc.so.6',
      '7ffd1000-7ffd3000 r--p 00000000 00:00 0                                  [vvar]',
      '7ffd3000-7ffd4000 r--p 00000000 00:00 0                                  [vvar_vclock]',
      '7ffd4000-7ffd6000 r-xp 00000000 00:00 0                                  [vdso]',
      '7f0000300000-7f0000400000 ---p 00000000 00:00 0 ',
      'ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]',
    ].join('\n');
    const vmas = parseMaps(text);
    // vsyscall is above 2^53 and dropped at parse time.
    assert.equal(vmas.length, 7);
    assert.deepEqual(vmas[0], { start: 0x55d0c0a00000, end: 0x55d0c0a21000, perms: 'rw-p', inode: 0, name: '[heap]' });
    assert.equal(vmas[2]!.inode, 42);
    assert.deepEqual(
      vmas.filter(isScannedVma).map((v) => v.name),
      ['[heap]', '/usr/lib/libc.so.6', '[vdso]', ''],
    );
  });
});

describe('scanContainerMemory on plain processes', { skip, timeout: 120_000 }, () => {
  let dir: string;
  const procs: MarkerProcess[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cloudlet-procscan-'));
  });
  after(async () => {
    for (const p of procs) await stopProcess(p.child);
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the marker buffer at consecutive addresses, as a dump the index accepts; the process keeps running', async () => {
    const tickFile = join(dir, 'ticks');
    const MARKS = 4096; // 16 MiB
    const p = await spawnMarkerProcess({ pages: MARKS, tickFile });
    procs.push(p);
    assert.equal(await namespacePid(p.pid), p.pid, 'no pid namespace: NSpid is the pid itself');
    assert.deepEqual(await containerProcesses(p.pid), [p.pid], 'only the process (a descendant-free member of our cgroup)');
    await new Promise((r) => setTimeout(r, 50));
    const before = await readTicks(tickFile);
    const out = join(dir, 'scan1');
    let ticksDuringScan = -1;
    const r = await scanContainerMemory({
      initPid: p.pid,
      outDir: out,
      onBatch: async () => {
        // Between batches: the process is running (its counter moves while we read it).
        if (ticksDuringScan < 0) {
          const a = await readTicks(tickFile);
          await new Promise((res) => setTimeout(res, 20));
          ticksDuringScan = (await readTicks(tickFile)) - a;
        }
      },
    });
    const afterTicks = await readTicks(tickFile);
    assert.ok(ticksDuringScan > 0, `counter advanced during the scan (${ticksDuringScan})`);
    assert.ok(afterTicks > before, 'counter advanced over the scan');
    assert.equal(r.processes, 1);
    assert.equal(r.bytes, r.pages * PAGE_SIZE);
    assert.ok(r.pages >= MARKS, `at least the marker pages (${r.pages})`);
    assert.deepEqual(r.vanished, []);
    assert.deepEqual((await readdir(out)).sort(), [`pagemap-${p.pid}.img`, 'pages-1.img']);

    const pm = await readPagemap(out, p.pid); // validates order, flags and the pages file size
    assert.equal(pm.pagesId, 1);
    assert.ok(pm.entries.every((e) => e.flags === PE_PRESENT));
    for (let i = 1; i < pm.entries.length; i++) {
      const prev = pm.entries[i - 1]!;
      assert.ok(prev.vaddr + prev.nrPages * PAGE_SIZE < pm.entries[i]!.vaddr, 'runs coalesced: entries neither touch nor overlap');
    }
    // Find the marker buffer (malloc'd: it starts 16 bytes into its mapping, so marker i
    // straddles two pages) and check every byte of it at base + i * 4096.
    const data = await readFile(pagesPath(out, 1));
    const pageAt = new Map<number, Buffer>();
    let k = 0;
    for (const e of pm.entries) {
      for (let j = 0; j < e.nrPages; j++, k++) pageAt.set(e.vaddr + j * PAGE_SIZE, data.subarray(k * PAGE_SIZE, (k + 1) * PAGE_SIZE));
    }
    const scanned = (vaddr: number, len: number): Buffer | null => {
      const parts: Buffer[] = [];
      for (let a = vaddr; a < vaddr + len;) {
        const base = a - (a % PAGE_SIZE);
        const pg = pageAt.get(base);
        if (!pg) return null;
        const n = Math.min(base + PAGE_SIZE, vaddr + len) - a;
        parts.push(pg.subarray(a - base, a - base + n));
        a += n;
      }
      return Buffer.concat(parts);
    };
    const head0 = markerPage(0).subarray(0, 16);
    const bases: number[] = [];
    for (const [va, pg] of pageAt) {
      for (let off = pg.indexOf(head0); off >= 0; off = pg.indexOf(head0, off + 1)) bases.push(va + off);
    }
    const base = bases.find((b) => scanned(b, MARKS * PAGE_SIZE)?.equals(Buffer.concat(Array.from({ length: MARKS }, (_, i) => markerPage(i)))));
    assert.ok(base !== undefined, `the whole marker buffer is in the scan at consecutive addresses (candidates ${bases.length})`);
    // The addresses are those of a private anonymous mapping of the process.
    const vma = parseMaps(await readFile(`/proc/${p.pid}/maps`, 'utf8')).find((v) => v.start <= base && base < v.end);
    assert.ok(vma && vma.perms.endsWith('p') && vma.inode === 0, 'markers in an anonymous private mapping');

    // The existing pipeline takes the directory as a dump.
    const index = await indexDump(out);
    assert.equal(index.get(String(p.pid))!.vaddrs.length, r.pages);
    const delta = await writeDelta(null, out);
    assert.equal(delta.counts.scanned, r.pages);
    // A second scan against the first: the marker pages are unchanged.
    const out2 = join(dir, 'scan2');
    await scanContainerMemory({ initPid: p.pid, outDir: out2 });
    const d2 = await writeDelta(index, out2);
    assert.ok(d2.counts.unchanged >= MARKS, `marker pages unchanged in round 2 (${JSON.stringify(d2.counts)})`);
    await assert.rejects(scanContainerMemory({ initPid: p.pid, outDir: out }), /already holds page images/);
  });

  it('scans a process tree in CRIU order: parent first, pages ids 1, 2', async () => {
    const p = await spawnMarkerProcess({ pages: 256, childPages: 512 });
    procs.push(p);
    const kid = await p.childPid();
    assert.deepEqual(await containerProcesses(p.pid), [p.pid, kid]);
    const out = join(dir, 'tree');
    const r = await scanContainerMemory({ initPid: p.pid, outDir: out });
    assert.deepEqual(
      r.detail.map((d) => [d.vpid, d.pagesId]),
      [
        [p.pid, 1],
        [kid, 2],
      ],
    );
    assert.ok(r.detail[1]!.pages >= 512);
  });

  it('fails cleanly when the process is gone before or during the scan', async () => {
    const p = await spawnMarkerProcess({ pages: 16 });
    await stopProcess(p.child);
    await assert.rejects(scanContainerMemory({ initPid: p.pid, outDir: join(dir, 'gone') }), ScanProcessGoneError);

    const q = await spawnMarkerProcess({ pages: 8192 }); // 32 MiB: several batches
    procs.push(q);
    const out = join(dir, 'gone-mid');
    let killed = false;
    const err = await scanContainerMemory({
      initPid: q.pid,
      outDir: out,
      onBatch: async () => {
        if (killed) return;
        killed = true;
        await stopProcess(q.child); // exits and is reaped while we are reading it
      },
    }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(killed, 'the hook ran');
    assert.ok(err instanceof ScanProcessGoneError, `clean error, got ${String(err)}`);
    assert.equal((err as ScanProcessGoneError).code, 'process_gone');
    assert.deepEqual(await readdir(out), [], 'no partial images left behind');
  });

  it('leaves out a child that exits mid-scan and keeps the rest', async () => {
    const p = await spawnMarkerProcess({ pages: 64, childPages: 8192 });
    procs.push(p);
    const kid = await p.childPid();
    const out = join(dir, 'kid-gone');
    const r = await scanContainerMemory({
      initPid: p.pid,
      outDir: out,
      onBatch: async (info) => {
        if (info.pid !== kid) return;
        p.send('kill-child');
        for (let i = 0; i < 250; i++) {
          const st = await readFile(`/proc/${kid}/maps`, 'utf8').catch(() => '');
          if (st === '') break;
          await new Promise((res) => setTimeout(res, 20));
        }
      },
    });
    assert.deepEqual(r.vanished, [kid]);
    assert.equal(r.processes, 1);
    assert.deepEqual((await readdir(out)).sort(), [`pagemap-${p.pid}.img`, 'pages-1.img']);
  });

  it('skips pages unmapped between the pagemap read and the mem read (EIO) and goes on', async () => {
    const p = await spawnMarkerProcess({ pages: 16384, exposeGc: true }); // 64 MiB: malloc gives it an mmap that free() unmaps
    procs.push(p);
    const big = await findMarkerBuffer(p.pid);
    assert.ok(big !== null, 'the marker buffer was found in the process memory');
    const out = join(dir, 'eio');
    let freed = false;
    const r = await scanContainerMemory({
      initPid: p.pid,
      outDir: out,
      onBatch: async () => {
        if (freed) return;
        freed = true;
        p.send('free');
        await p.line('freed');
        assert.ok(await waitUnmapped(p.pid, big), 'the buffer was unmapped');
      },
    });
    assert.ok(r.skippedPages > 0, `pages skipped (${r.skippedPages})`);
    assert.equal(r.processes, 1);
    const pm = await readPagemap(out, p.pid); // pagemap and pages file agree
    let n = 0;
    for (const e of pm.entries) n += e.nrPages;
    assert.equal(n, r.pages);
  });
});
