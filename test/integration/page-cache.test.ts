// The page cache on the lab (src/checkpoint/page-cache.ts): a second service of the same
// image handed to a cloudlet that restored the first one, and a service handed back to the
// cloudlet it left, send only the pages the destination lacks; the state arrives intact
// (the service's own sha256 of its memory), and a destination whose cache was damaged
// fails the pre-copy round, before any freeze, leaving the service running at the source.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { useLab, execIn } from '../helpers/lab.js';
import { STATEFUL_SERVICE_SCRIPT } from '../../src/workloads/stateful-service.js';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STATE_MB = 64;

describe('page cache on the lab', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('pcache');

  async function startService(docker: Docker, name: string, seed?: number): Promise<void> {
    const env = [`STATE_MB=${STATE_MB}`, 'PORT=8080', 'DIRTY_PAGES_PER_SEC=0', ...(seed ? [`STATE_SEED=${seed}`] : [])];
    const c = await docker.createContainer({
      name,
      Image: 'cloudlet/node:20',
      Cmd: ['node', '-e', STATEFUL_SERVICE_SCRIPT],
      Env: env,
      HostConfig: { NetworkMode: 'none' },
    });
    await c.start();
  }
  async function get(docker: Docker, name: string, path: string): Promise<{ counter: number; checksum?: string }> {
    for (let i = 0; ; i++) {
      try {
        return JSON.parse(await execIn(docker, name, ['wget', '-qO-', `http://127.0.0.1:8080${path}`]));
      } catch (err) {
        if (i > 100) throw err;
        await sleep(200);
      }
    }
  }
  const migrate = (name: string, from: string, to: string, extra: string[] = []) =>
    lab.cliJson(['migrate', name, '--from', from, '--to', to, '--rounds', '1', '--restore', 'eager', ...extra], 600_000);
  const round1 = (r: { rounds: Array<{ index: number; sentBytes: number }> }) => r.rounds.find((x) => x.index === 1)!.sentBytes;

  test('same image at the destination, a return handoff, a damaged cache', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    t.after(async () => {
      for (const d of [a, b])
        for (const n of ['pc1', 'pc2', 'pc3'])
          await d
            .getContainer(n)
            .remove({ force: true })
            .catch(() => undefined);
    });
    await startService(a, 'pc1');
    await get(a, 'pc1', '/');
    const sum1 = await get(a, 'pc1', '/checksum');

    // Baseline: every page sent.
    const first = await migrate('pc1', 'a', 'b', ['--no-page-cache']);
    assert.equal(first.state, 'done', JSON.stringify(first.error));
    assert.equal(first.pageCache.offeredPages, null, 'no offer asked for');
    assert.equal(first.pageCache.pagesFromCache, 0);
    assert.ok(first.pageCache.keptPages >= (STATE_MB * 256) / 2, 'a kept the pages it sent');
    assert.deepEqual(await get(b, 'pc1', '/checksum'), sum1, 'identical state on b');
    t.diagnostic(`first handoff: ${first.bytesSent} B, round 1 ${round1(first)} B`);

    // A second service of the same image (same data) to b, which restored pc1's pages.
    await startService(a, 'pc2');
    await get(a, 'pc2', '/');
    await get(a, 'pc2', '/');
    const sum2 = await get(a, 'pc2', '/checksum');
    const second = await migrate('pc2', 'a', 'b');
    assert.equal(second.state, 'done', JSON.stringify(second.error));
    t.diagnostic(`same image at b: ${second.bytesSent} B, round 1 ${round1(second)} B, ${JSON.stringify(second.pageCache)}`);
    assert.ok(second.pageCache.offeredPages >= (STATE_MB * 256) / 2, `b offered ${second.pageCache.offeredPages} pages`);
    assert.ok(second.pageCache.pagesFromCache >= (STATE_MB * 256) / 2, `${second.pageCache.pagesFromCache} pages not sent`);
    assert.ok(round1(second) <= 0.5 * round1(first), `round 1: ${round1(second)} B vs ${round1(first)} B without the cache`);
    assert.deepEqual(await get(b, 'pc2', '/checksum'), sum2, "pc2's state intact on b");

    // pc1 back to a, which kept the pages it sent.
    await get(b, 'pc1', '/');
    const sum1b = await get(b, 'pc1', '/checksum');
    const back = await migrate('pc1', 'b', 'a');
    assert.equal(back.state, 'done', JSON.stringify(back.error));
    t.diagnostic(`return handoff: ${back.bytesSent} B, ${JSON.stringify(back.pageCache)}`);
    assert.ok(back.bytesSent <= 0.1 * first.bytesSent, `return handoff sent ${back.bytesSent} B vs ${first.bytesSent} B the first time`);
    assert.deepEqual(await get(a, 'pc1', '/checksum'), sum1b, 'identical state back on a');

    // b's cache damaged on disk: the pre-copy round fails, the service never froze and runs on a.
    const configB = JSON.parse(await readFile(lab.state().cloudlets.find((c) => c.name === 'b')!.daemon.configPath, 'utf8')) as { scratchDir: string };
    const cacheDir = join(configB.scratchDir, 'page-cache');
    for (const e of await readdir(cacheDir)) await writeFile(join(cacheDir, e, 'pages.bin'), Buffer.alloc(0)).catch(() => undefined);
    await startService(a, 'pc3');
    const sum3 = await get(a, 'pc3', '/checksum');
    const failed = await lab.cli(['migrate', 'pc3', '--from', 'a', '--to', 'b', '--rounds', '1', '--json'], 600_000);
    const report = JSON.parse(failed.stdout);
    assert.equal(report.state, 'rolled-back', failed.stdout);
    assert.match(report.error.message, /not in this cloudlet's page cache/);
    assert.equal(report.downtimeMs, null, 'never frozen');
    assert.equal((await a.getContainer('pc3').inspect()).State.Running, true);
    assert.deepEqual(await get(a, 'pc3', '/checksum'), sum3, 'pc3 unchanged on a');
    assert.equal(
      (await b.listContainers({ all: true })).some((x) => x.Names.includes('/pc3')),
      false,
      'nothing left on b',
    );
  });
});
