// The engine's CRIU configuration during restores (src/engine/criu-config.ts): a restore's
// own options (`lazy-pages`, `tcp-close`) are there for exactly one restore at a time, put
// back after a failure, and taken out at start-up if a killed daemon left them. The restores
// themselves are tested with the real CRIU in checkpoint-parent.test.ts and on the lab in
// migration.test.ts and shapes.test.ts.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { clearLeftRestoreOptions, withRestoreOptions } from '../../src/engine/criu-config.js';
import { lazyPagesSupported } from '../../src/engine/lazy-pages.js';
import { REAL_CRIU } from '../../src/lab/engines.js';

const ORIGINAL = 'tcp-established\nwork-dir /run/x/criu-work\n';

describe("a restore's options in the engine CRIU configuration", () => {
  let dir: string;
  let conf: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cloudlet-lazy-'));
    conf = join(dir, 'runc.conf');
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is present during the restore only, and the file is put back byte for byte, also after a failure', async () => {
    await writeFile(conf, ORIGINAL);
    const during = await withRestoreOptions(conf, ['lazy-pages'], () => readFile(conf, 'utf8'));
    assert.equal(during, 'tcp-established\nwork-dir /run/x/criu-work\nlazy-pages\n');
    const both = await withRestoreOptions(conf, ['lazy-pages', 'tcp-close'], () => readFile(conf, 'utf8'));
    assert.equal(both, 'tcp-established\nwork-dir /run/x/criu-work\nlazy-pages\ntcp-close\n');
    assert.equal(await readFile(conf, 'utf8'), ORIGINAL);
    await assert.rejects(
      withRestoreOptions(conf, ['lazy-pages'], async () => Promise.reject(new Error('restore failed'))),
      /restore failed/,
    );
    assert.equal(await readFile(conf, 'utf8'), ORIGINAL);
  });

  it('serializes restores through one file: an eager restore never sees the option of a lazy one', async () => {
    await writeFile(conf, ORIGINAL);
    const seen: string[] = [];
    const order: string[] = [];
    const lazy = withRestoreOptions(conf, ['lazy-pages'], async () => {
      order.push('lazy start');
      await new Promise((r) => setTimeout(r, 50));
      order.push('lazy end');
    });
    const eager = withRestoreOptions(conf, [], async () => {
      order.push('eager');
      seen.push(await readFile(conf, 'utf8'));
    });
    const lazy2 = withRestoreOptions(conf, ['lazy-pages'], async () => {
      order.push('lazy2');
      seen.push(await readFile(conf, 'utf8'));
    });
    await Promise.all([lazy, eager, lazy2]);
    assert.deepEqual(order, ['lazy start', 'lazy end', 'eager', 'lazy2']);
    assert.equal(seen[0], ORIGINAL);
    assert.match(seen[1]!, /\nlazy-pages\n$/);
    assert.equal(await readFile(conf, 'utf8'), ORIGINAL);
    // no configuration: nothing to serialize on, the restore just runs
    assert.equal(await withRestoreOptions(null, [], async () => 7), 7);
    // ... but an option cannot be added to a file that is not known
    await assert.rejects(
      withRestoreOptions(null, ['tcp-close'], async () => 7),
      /no CRIU configuration file of the engine to add tcp-close/,
    );
  });

  it('takes out left-over options (a daemon killed mid-restore) and nothing else', async () => {
    await writeFile(conf, ORIGINAL + 'lazy-pages\ntcp-close\n');
    assert.deepEqual(await clearLeftRestoreOptions(conf), ['lazy-pages', 'tcp-close']);
    assert.equal(await readFile(conf, 'utf8'), ORIGINAL);
    assert.deepEqual(await clearLeftRestoreOptions(conf), []);
    assert.equal(await readFile(conf, 'utf8'), ORIGINAL);
  });
});

describe('lazyPagesSupported', () => {
  it(
    "asks CRIU whether it can restore lazily here, and says no with CRIU's answer when it cannot",
    { skip: process.getuid?.() !== 0 && 'criu check needs root' },
    async () => {
      // PLATFORM.md: uffd-noncoop passes on this machine kind.
      assert.equal((await lazyPagesSupported(REAL_CRIU)).ok, true);
      const no = await lazyPagesSupported('false');
      assert.equal(no.ok, false);
    },
  );
});
