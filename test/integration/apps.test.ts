// Issue 17 (1), on a real lab: `cloudlet bench apps` with the Python app. Debian's python3 and
// its standard library are built into an image from the host, loaded on a only, started like
// `docker run` in a holder, and handed off a -> b while a client POSTs increments on a
// kept-alive connection, checking each answer. Afterwards the service's own sha256 of its
// 16 MiB of counters must equal the client's reference copy, and no operation may have failed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { useLab } from '../helpers/lab.js';
import type { AppsBenchResult } from '../../src/bench/apps/types.js';

const isRoot = process.getuid?.() === 0;

describe('bench apps', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('apps');

  test('python-kv keeps its in-memory state and its client loses no request through the handoff', async () => {
    const r = await lab.cli(['bench', 'apps', '--only', 'python-kv', '--json'], 600_000);
    const result = JSON.parse(r.stdout) as AppsBenchResult;
    const app = result.apps.find((a) => a.name === 'python-kv');
    assert.ok(app, `no python-kv in the results: ${r.stdout.slice(0, 500)} ${r.stderr.slice(-1000)}`);
    assert.equal(app.failure, null, `python-kv failed: ${app.failure}`);
    assert.equal(app.report?.state, 'done');
    assert.equal(app.to, 'b');
    assert.ok(app.ops > 50, `only ${app.ops} client operations`);
    assert.equal(app.failedOps, 0, `failed operations: ${app.errors.join('; ')}`);
    assert.equal(app.stateOk, true, `checksums differ: ${JSON.stringify(app.checks)}`);
    assert.ok(typeof app.downtimeMs === 'number' && app.downtimeMs > 0);
    assert.ok(app.clientGapMs !== null && app.clientGapMs >= app.downtimeMs * 0.5, `client gap ${app.clientGapMs} ms, downtime ${app.downtimeMs} ms`);
    assert.equal(app.ok, true);
    // The same run's yardstick: the busybox counter's handoff, and the app's downtime against it.
    assert.equal(result.reference.error, null, `reference: ${result.reference.error}`);
    assert.ok(typeof result.reference.downtimeMs === 'number' && result.reference.downtimeMs > 0);
    assert.equal(app.downtimeVsCounter.ratio, Math.round((app.downtimeMs / result.reference.downtimeMs) * 100) / 100);
    assert.equal(app.downtimeVsCounter.target, null, 'python-kv has no downtime target');
    assert.equal(result.targetsMet, true);
    assert.equal(r.code, 0, r.stderr.slice(-1000));
  });
});
