// The freeze-free /proc memory scan against REAL CRIU on a lab engine: a Node.js container
// (256 MiB of random data in its init, 8 MiB in a child process) is scanned with
// scanContainerMemory and then dumped with `runc checkpoint --leave-running`. Checked: the
// same pagemap ids (container pids) and pages ids as CRIU's; (almost) every page CRIU dumps
// is in the scan with the same xxh64; few pages on either side only; and the stall: the
// container ticks every 2 ms, the longest gap between ticks during the scan stays small
// while CRIU's dump freezes it for hundreds of ms. Figures go to the test diagnostics.
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { scanContainerMemory } from '../../src/checkpoint/proc-scan.js';
import { engineRuncRoot, runcCheckpoint } from '../../src/engine/runc.js';
import { useLab } from '../helpers/lab.js';
import { compareWithDump } from '../helpers/procscan-fixtures.js';

const isRoot = process.getuid?.() === 0;

const APP = String.raw`
const crypto = require('crypto'), fs = require('fs'), cp = require('child_process');
const MB = Number(process.env.MB || 256);
globalThis.big = Buffer.allocUnsafeSlow(MB << 20);
crypto.randomFillSync(globalThis.big);
if (!process.env.CHILD) cp.spawn(process.execPath, ['-e', process.env.APP], { env: { ...process.env, CHILD: '1', MB: '8' }, stdio: 'inherit' });
const file = process.env.CHILD ? '/tmp/child-ticks' : '/tmp/ticks';
setInterval(() => fs.appendFileSync(file, Date.now() + '\n'), 2);
fs.writeFileSync(process.env.CHILD ? '/tmp/child-ready' : '/tmp/ready', 'ok');
`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Longest gap between consecutive ticks that overlaps the window [from, to]. */
function maxGap(ticks: number[], from: number, to: number): number {
  let gap = 0;
  for (let i = 1; i < ticks.length; i++) {
    if (ticks[i]! < from || ticks[i - 1]! > to) continue;
    gap = Math.max(gap, ticks[i]! - ticks[i - 1]!);
  }
  return gap;
}

describe('proc scan vs real CRIU', { skip: isRoot ? false : 'needs root (lab, runc, /proc/PID/mem)', timeout: 900_000 }, () => {
  const lab = useLab('scan', { cloudlets: 1 });

  it('matches the pagemap ids and page contents of runc checkpoint, without a stall', async (t) => {
    const docker = lab.docker('a');
    const node = lab.state().cloudlets.find((c) => c.name === 'a')!;
    const runcRoot = engineRuncRoot(node.engine.execRoot);
    const work = join(lab.state().dir, 'procscan-test');
    const c = await docker.createContainer({
      Image: 'cloudlet/node:20',
      Cmd: ['node', '-e', APP],
      Env: [`APP=${APP}`],
      HostConfig: { NetworkMode: 'none' },
    });
    try {
      await c.start();
      const info = await c.inspect();
      const pid = info.State.Pid;
      const root = `/proc/${pid}/root`;
      for (let i = 0; ; i++) {
        const ready = await Promise.all([readFile(`${root}/tmp/ready`), readFile(`${root}/tmp/child-ready`)]).then(
          () => true,
          () => false,
        );
        if (ready) break;
        assert.ok(i < 300, 'the container is ready within 30 s');
        await sleep(100);
      }
      await sleep(500);

      // Throughput: three scans (the first one also warms up the JIT).
      const rates: string[] = [];
      for (let i = 0; i < 3; i++) {
        const dir = join(work, `warm-${i}`);
        await rm(dir, { recursive: true, force: true });
        const r = await scanContainerMemory({ initPid: pid, outDir: dir });
        rates.push(`${r.ms.toFixed(0)} ms (${(r.bytes / 1048576 / (r.ms / 1000)).toFixed(0)} MB/s, ${(r.bytes / 1048576).toFixed(0)} MiB)`);
        await rm(dir, { recursive: true, force: true });
      }
      t.diagnostic(`scan of the 256 MiB container: ${rates.join('; ')}`);

      const scanDir = join(work, 'scan');
      const criuDir = join(work, 'criu');
      await rm(scanDir, { recursive: true, force: true });
      await rm(criuDir, { recursive: true, force: true });
      const s0 = Date.now();
      const scan = await scanContainerMemory({ initPid: pid, outDir: scanDir });
      const s1 = Date.now();
      const d0 = Date.now();
      const dump = await runcCheckpoint({ runcRoot, containerId: info.Id, imageDir: criuDir, workDir: join(work, 'criu-work'), leaveRunning: true });
      const d1 = Date.now();
      await sleep(100);
      const ticks = (await readFile(`${root}/tmp/ticks`, 'utf8'))
        .split('\n')
        .filter((l) => l !== '')
        .map(Number);
      const scanGap = maxGap(ticks, s0, s1);
      const dumpGap = maxGap(ticks, d0, d1);
      t.diagnostic(
        `scan ${scan.ms.toFixed(0)} ms, ${scan.pages} pages, ${scan.processes} processes, skipped ${scan.skippedPages}; ` +
          `longest tick gap during the scan ${scanGap} ms; runc checkpoint ${dump.wallMs.toFixed(0)} ms, ` +
          `frozen ${((dump.stats?.frozenTimeUs ?? 0) / 1000).toFixed(0)} ms, longest tick gap during it ${dumpGap} ms`,
      );

      const cmp = await compareWithDump(scanDir, criuDir);
      const agree = cmp.same / cmp.criuPages;
      t.diagnostic(
        `ids scan ${cmp.scanIds.join(',')} (pages ids ${cmp.scanPagesIds.join(',')}) / criu ${cmp.criuIds.join(',')} (pages ids ${cmp.criuPagesIds.join(',')}); ` +
          `CRIU pages ${cmp.criuPages}: same hash ${cmp.same} (${(agree * 100).toFixed(2)} %), other hash ${cmp.differ}, not in the scan ${cmp.missing}; ` +
          `scan pages ${cmp.scanPages}, not in CRIU's dump ${cmp.extra}; missing e.g. ${cmp.missingSample.join(' ')}; extra e.g. ${cmp.extraSample.join(' ')}`,
      );
      assert.equal(cmp.criuIds.length, 2, 'CRIU dumped both processes');
      assert.deepEqual(cmp.scanIds, cmp.criuIds, 'same pagemap ids (pids in the container) as CRIU');
      assert.deepEqual(cmp.scanPagesIds, cmp.criuPagesIds, 'same pages ids as CRIU');
      assert.ok(cmp.criuPages > 65_536, 'the 256 MiB are in the dump');
      assert.ok(agree > 0.98, `>98 % of CRIU's pages have the scan's content (${(agree * 100).toFixed(2)} %)`);
      assert.ok(cmp.missing < cmp.criuPages * 0.02, `few CRIU pages not in the scan (${cmp.missing})`);
      assert.ok(cmp.extra < cmp.criuPages * 0.02, `few scan pages not in CRIU's dump (${cmp.extra})`);
      assert.ok(scanGap < 150, `no freeze during the scan (longest tick gap ${scanGap} ms)`);
    } finally {
      await c.remove({ force: true }).catch(() => undefined);
      await rm(work, { recursive: true, force: true });
    }
  });
});
