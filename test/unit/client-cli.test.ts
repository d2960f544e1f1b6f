// `cloudlet client` as a user runs it: the built CLI against the real handoff service on
// loopback (no lab: the lab directory points nowhere, so nothing is re-executed in a namespace).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { clientOptions } from '../../src/cli/commands/client.js';
import { clientNamespace } from '../../src/client/lab-netns.js';
import { NotFoundError, UsageError } from '../../src/util/errors.js';
import type { ClientReport } from '../../src/client/types.js';
import { CLI, runCli } from '../helpers/cli.js';
import { startLocalService } from '../helpers/handoff-service.js';

const tmp = mkdtempSync(join(tmpdir(), 'cloudlet-client-cli-'));
const env = { CLOUDLET_LAB_DIR: join(tmp, 'no-lab') };
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(tmp, { recursive: true, force: true });
});

test('options: durations, the time bound with only --count, and bad input refused by name', () => {
  const base = { target: '10.0.0.9', tcpPort: '7000', httpPort: '8080', interval: '20ms', tcp: true, http: true, window: '1', grace: '1s' };
  const a = clientOptions(base);
  assert.equal(a.durationMs, 30_000);
  assert.equal(a.intervalMs, 20);
  assert.equal(a.graceMs, 1000);
  assert.equal(a.count, undefined);
  const b = clientOptions({ ...base, count: '100', interval: '10ms' });
  assert.equal(b.count, 100);
  assert.equal(b.durationMs, 100 * 10 * 2 + 10_000);
  assert.equal(clientOptions({ ...base, count: '100', duration: '2s' }).durationMs, 2000);
  assert.throws(() => clientOptions({ ...base, interval: 'fast' }), UsageError);
  assert.throws(() => clientOptions({ ...base, count: '0' }), /--count/);
  assert.throws(() => clientOptions({ ...base, tcpPort: 'x' }), /--tcp-port/);
});

test('namespace choice: loopback or no lab stays here; --in-lab without a lab is an error', () => {
  const saved = process.env.CLOUDLET_LAB_DIR;
  process.env.CLOUDLET_LAB_DIR = env.CLOUDLET_LAB_DIR;
  try {
    assert.equal(clientNamespace('127.0.0.1', undefined), null);
    assert.equal(clientNamespace('10.250.1.9', undefined), null, 'no lab is up');
    assert.equal(clientNamespace('10.250.1.9', false), null);
    if (process.getuid?.() === 0) assert.throws(() => clientNamespace('10.250.1.9', true), NotFoundError);
    else assert.throws(() => clientNamespace('10.250.1.9', true), UsageError);
  } finally {
    if (saved === undefined) delete process.env.CLOUDLET_LAB_DIR;
    else process.env.CLOUDLET_LAB_DIR = saved;
  }
});

test('cloudlet client --count --json: a report with both sessions, exit 0, the ready file written', { timeout: 30_000 }, async () => {
  const svc = await startLocalService();
  const readyFile = join(tmp, 'ready.json');
  const r = await runCli(
    [
      'client',
      '--target',
      '127.0.0.1',
      '--tcp-port',
      String(svc.tcpPort),
      '--http-port',
      String(svc.httpPort),
      '--count',
      '20',
      '--interval',
      '10ms',
      '--json',
      '--ready-file',
      readyFile,
    ],
    { env, timeoutMs: 20_000 },
  );
  svc.child.kill('SIGKILL');
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const report = JSON.parse(r.stdout) as ClientReport;
  assert.equal(report.stoppedBy, 'count');
  assert.equal(report.ok, true);
  assert.equal(report.sessions.tcp!.answered, 20);
  assert.equal(report.sessions.http!.answered, 20);
  assert.equal(report.sessions.tcp!.samples, undefined, 'samples only with --timeline');
  assert.ok(existsSync(readyFile));
  assert.ok(JSON.parse(readFileSync(readyFile, 'utf8')).readyAt);
});

test('SIGINT stops the run and the report is still printed; a dead target exits 1; bad options exit 2', { timeout: 30_000 }, async () => {
  const svc = await startLocalService();
  const readyFile = join(mkdtempSync(join(tmpdir(), 'client-cli-')), 'ready');
  const child = spawn(
    process.execPath,
    [
      CLI,
      'client',
      '--target',
      '127.0.0.1',
      '--tcp-port',
      String(svc.tcpPort),
      '--http-port',
      String(svc.httpPort),
      '--duration',
      '20s',
      '--timeline',
      '--ready-file',
      readyFile,
    ],
    {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  // Ready (both sessions answered) before the signal, however slow the machine is today.
  for (let i = 0; i < 150 && !existsSync(readyFile); i++) await sleep(100);
  await sleep(500);
  child.kill('SIGINT');
  const [code] = (await once(child, 'exit')) as [number | null];
  svc.child.kill('SIGKILL');
  await once(svc.child, 'exit');
  assert.equal(code, 0, out);
  assert.match(out, /stopped by signal/);
  assert.match(out, /tcp 127\.0\.0\.1:\d+ {2}survived/);
  assert.match(out, /^tcp  \|.*\|$/m, 'the timeline');

  // The service is gone now: connection refused, the report says so, exit 1.
  const dead = await runCli(['client', '--target', '127.0.0.1', '--tcp-port', String(svc.tcpPort), '--http-port', String(svc.httpPort), '--duration', '5s'], {
    env,
    timeoutMs: 20_000,
  });
  assert.equal(dead.code, 1);
  assert.match(dead.stdout, /ECONNREFUSED/);
  assert.match(dead.stdout, /never ready/);

  const bad = await runCli(['client', '--target', '127.0.0.1', '--no-tcp', '--no-http'], { env, timeoutMs: 20_000 });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /both sessions are disabled/);
});
