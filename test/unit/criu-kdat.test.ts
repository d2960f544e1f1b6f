// CRIU's kernel-data cache where /run is not tmpfs (src/engine/criu-kdat.ts): made once,
// found again, and loaded by a real CRIU run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureCriuKdatCache, KDAT_CACHE, KDAT_PATH } from '../../src/engine/criu-kdat.js';
import { REAL_CRIU } from '../../src/lab/engines.js';
import { tryRun } from '../../src/util/exec.js';

const isRoot = process.getuid?.() === 0;

test('CRIU loads its kernel-data cache after ensureCriuKdatCache, also where /run is not tmpfs', { skip: !isRoot && 'needs root' }, async (t) => {
  const runIsTmpfs = (await statfs('/run')).type === 0x01021994;
  if (!runIsTmpfs) {
    // Start from nothing when the link is ours (a fresh machine has none: made now too).
    const ours = await lstat(KDAT_PATH).then(
      (s) => s.isSymbolicLink(),
      () => false,
    );
    if (ours) {
      await rm(KDAT_PATH);
      await rm(KDAT_CACHE, { force: true });
    }
    const first = await ensureCriuKdatCache(REAL_CRIU);
    t.diagnostic(`first call: ${first}`);
    assert.ok(first === 'made' || (first === 'present' && !ours), `first call: ${first}`);
    assert.equal(await ensureCriuKdatCache(REAL_CRIU), 'present', 'a second call finds it');
  } else {
    assert.equal(await ensureCriuKdatCache(REAL_CRIU), 'criu-keeps-it');
    t.diagnostic('/run is tmpfs here: CRIU keeps its cache itself');
  }
  const dir = await mkdtemp(join(tmpdir(), 'kdat-'));
  try {
    const log = join(dir, 'check.log');
    // Twice: on a tmpfs /run the first run writes the cache, the second loads it.
    // (The exit code is not the point: a kernel may lack an optional feature.)
    for (let i = 0; i < 2; i++) await tryRun(REAL_CRIU, ['check', '-v4', '-o', log], { timeoutMs: 60_000 });
    assert.match(await readFile(log, 'utf8'), /Loaded kdat cache from \/run\/criu\.kdat/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
