// Doctor's parsers and verdicts, fed with this machine's real outputs where there are some,
// and the compiled CLI end to end (`cloudlet doctor --json`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import {
  KERNEL_OPTIONS,
  LAB_UP_FIX,
  compareVersions,
  criuVersionCheck,
  engineChecks,
  kernelOptionCheck,
  parseCriuVersion,
  parseKernelConfig,
  readKernelConfig,
  summarize,
  type CheckResult,
  type DoctorReport,
} from '../../src/doctor/checks.js';
import { run, tryRun } from '../../src/util/exec.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const isRoot = process.getuid?.() === 0;
/** Runs the compiled CLI; keeps stdout also on a non-zero exit (util/exec's tryRun does not). */
function runCli(args: string[], env: NodeJS.ProcessEnv): { stdout: string; exitCode: number | null } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 90_000 });
  if (r.error) throw r.error;
  return { stdout: r.stdout, exitCode: r.status };
}
const spec = (id: string) => KERNEL_OPTIONS.find((k) => k.id === id)!;

test('parseKernelConfig reads set, module, quoted and "is not set" lines', () => {
  const c = parseKernelConfig('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D="x y"\n# comment\n\n');
  assert.equal(c.get('CONFIG_A'), 'y');
  assert.equal(c.get('CONFIG_B'), 'm');
  assert.equal(c.get('CONFIG_C'), 'n');
  assert.equal(c.get('CONFIG_D'), 'x y');
  assert.equal(c.size, 4);
});

test("this machine's kernel config: the parser agrees with zcat/grep", async (t) => {
  const src = readKernelConfig();
  if (!src.config) {
    t.skip(`kernel config unreadable here: ${src.error}`);
    return;
  }
  // An independent reading of the same option with the system's own tools.
  const raw = src.source.endsWith('.gz') ? (await run('zcat', [src.source])).stdout : (await run('cat', [src.source])).stdout;
  const line = raw.split('\n').find((l) => /^(# )?CONFIG_CHECKPOINT_RESTORE[= ]/.test(l)) ?? '';
  const expected = line.startsWith('CONFIG_CHECKPOINT_RESTORE=') ? line.split('=')[1] : 'n';
  assert.equal(src.config.get('CONFIG_CHECKPOINT_RESTORE') ?? 'n', expected);
  const soft = kernelOptionCheck(spec('kernel-soft-dirty'), src);
  assert.equal(soft.required, false);
  if (soft.status !== 'ok') {
    assert.equal(soft.status, 'warn');
    assert.equal(soft.detail, "absent: Cloudlet's content-hash pre-copy is used instead");
  }
});

test('kernel checks: unreadable config is a warning, an absent required option is missing', () => {
  const unreadable = kernelOptionCheck(spec('kernel-checkpoint-restore'), { config: null, source: '', error: 'x: absent' });
  assert.equal(unreadable.status, 'warn');
  const absent = kernelOptionCheck(spec('kernel-checkpoint-restore'), { config: parseKernelConfig('# CONFIG_CHECKPOINT_RESTORE is not set'), source: 't' });
  assert.equal(absent.status, 'missing');
  assert.ok(absent.fix);
});

test('compareVersions orders dotted versions numerically', () => {
  assert.equal(compareVersions('4.2', '4.2.0'), 0);
  assert.equal(compareVersions('4.1.1', '4.2'), -1);
  assert.equal(compareVersions('3.17.1', '4.2'), -1);
  assert.equal(compareVersions('10.0', '9.9'), 1);
  assert.equal(compareVersions('4.2.1', '4.2'), 1);
  assert.throws(() => compareVersions('x', '1'), RangeError);
});

test("this machine's `criu --version` parses and passes the >= 4.2 check", async (t) => {
  const r = await tryRun('criu', ['--version']).catch((err: unknown) => err as Error);
  if (r instanceof Error) {
    t.skip(`criu not runnable here: ${r.message}`);
    return;
  }
  const v = parseCriuVersion(r.stdout);
  assert.match(v ?? '', /^\d+\.\d+(\.\d+)?$/);
  const check = criuVersionCheck({ found: true, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr });
  assert.equal(check.status, compareVersions(v!, '4.2') >= 0 ? 'ok' : 'missing');
});

test('an old or absent criu is missing with a setup fix', () => {
  const old = criuVersionCheck({ found: true, exitCode: 0, stdout: 'Version: 3.17.1\n', stderr: '' });
  assert.equal(old.status, 'missing');
  assert.match(old.fix ?? '', /scripts\/setup\.sh/);
  assert.equal(criuVersionCheck({ found: false, exitCode: null, stdout: '', stderr: '' }).status, 'missing');
});

test('verdict: only required missing items fail; no lab means the engine check is skipped', () => {
  const skipped = engineChecks(null);
  assert.equal(skipped.length, 1);
  assert.equal(skipped[0]!.status, 'skipped');
  assert.equal(skipped[0]!.required, false);
  assert.equal(skipped[0]!.fix, LAB_UP_FIX);
  const warn: CheckResult = { id: 'w', title: 'w', status: 'warn', required: false, detail: '' };
  assert.equal(summarize([...skipped, warn]).ok, true);
  const missing: CheckResult = { id: 'm', title: 'm', status: 'missing', required: true, detail: '' };
  assert.equal(summarize([...skipped, warn, missing]).ok, false);
  const experimentalOff = engineChecks([{ target: { name: 'a', socket: '/s' }, reachable: true, experimental: false, version: '20.10' }]);
  assert.equal(experimentalOff[0]!.status, 'missing');
});

test('engine check: the adapter family and what it can restore; unmeasured engines are named', () => {
  const probe = (version: string, storageDriver: string) => ({
    target: { name: 'a', socket: '/s' },
    reachable: true,
    experimental: true,
    version,
    storageDriver,
  });
  const [d20] = engineChecks([probe('20.10.24+dfsg1', 'overlay2')]);
  assert.equal(d20!.status, 'ok');
  assert.match(d20!.detail, /\(docker20, overlay2 image store\).*every network mode/);
  const [d28] = engineChecks([probe('28.5.2+dfsg4', 'overlay2')]);
  assert.equal(d28!.status, 'ok');
  assert.match(d28!.detail, /\(docker28, overlay2 image store\).*netns holder/);
  const [d28c] = engineChecks([probe('28.5.2+dfsg4', 'overlayfs')]);
  assert.equal(d28c!.status, 'ok');
  assert.match(d28c!.detail, /\(docker28-containerd, containerd image store\).*netns holder/);
  const [d29] = engineChecks([probe('29.1.0', 'overlayfs')]);
  assert.equal(d29!.status, 'missing');
  assert.match(d29!.detail, /29\.1\.0 .*not supported/);
});

test('cloudlet doctor --json (compiled CLI) on this machine', async () => {
  const labDir = await mkdtemp(join(tmpdir(), 'cloudlet-doctor-'));
  try {
    const env = { ...process.env, CLOUDLET_LAB_DIR: labDir }; // no lab here: engine check skipped
    const r = runCli(['doctor', '--json'], env);
    const report = JSON.parse(r.stdout) as DoctorReport;
    assert.equal(typeof report.ok, 'boolean');
    assert.ok(Array.isArray(report.checks) && report.checks.length >= 15);
    for (const c of report.checks) {
      assert.equal(typeof c.id, 'string');
      assert.equal(typeof c.title, 'string');
      assert.ok(['ok', 'missing', 'warn', 'skipped'].includes(c.status), c.status);
      assert.equal(typeof c.required, 'boolean');
      assert.equal(typeof c.detail, 'string');
      if (c.status === 'missing') assert.ok(c.fix, `${c.id} is missing but has no fix`);
    }
    assert.equal(new Set(report.checks.map((c) => c.id)).size, report.checks.length, 'ids are unique');
    assert.equal(r.exitCode, report.ok ? 0 : 1);
    assert.equal(report.checks.find((c) => c.id === 'docker-engine')?.status, 'skipped');
    if (isRoot) assert.equal(report.checks.find((c) => c.id === 'criu-check')?.status, 'ok');

    // An engine that is not there is a required item missing: exit code 1.
    const bad = runCli(['doctor', '--json', '--docker-host', `unix://${labDir}/none.sock`], env);
    const badReport = JSON.parse(bad.stdout) as DoctorReport;
    assert.equal(badReport.ok, false);
    assert.equal(bad.exitCode, 1);
    assert.equal(badReport.checks.find((c) => c.id === 'docker-engine:docker-host')?.status, 'missing');
  } finally {
    await rm(labDir, { recursive: true, force: true });
  }
});
