// Issue 17 (2), on a real lab: the container shapes users have, each created on a as a user's
// `docker run` would (dockerode on a's engine, not through cloudletd), then handed off to b.
// Each is either kept - the twin on b running with the setting, its data and counter
// continued - or refused before the freeze with an error naming the setting (no round, no
// downtime, still running on a, nothing on b). Never a rollback after the freeze for
// something known in advance.
// Shapes covered elsewhere: named volumes (migration.test.ts), EXPOSE in a holder and an
// image held by id only (migration-image-name.test.ts), bind mounts outside the policy's
// roots (migration.test.ts, the "hostile" container).
// No registry is reachable from the lab: the images are made on a by `docker commit` of a
// busybox container with Dockerfile changes, as a build would.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useLab, readCounter, execIn } from '../helpers/lab.js';
import { BUSYBOX_COUNTER_SCRIPT } from '../../src/workloads/stateful-service.js';
import { CAP_SYS_RESOURCE, hasCapability } from '../../src/migration/source/dump-permits.js';

const isRoot = process.getuid?.() === 0;

/** A client of the echo server at argv[1]:9000 that writes what its connection saw to /tmp/state, then idles. */
const ECHO_CLIENT = `
const fs = require('fs');
const say = (state) => fs.writeFileSync('/tmp/state', state);
let failed = false;
const s = require('net').connect(9000, process.argv[1], () => s.write('hello\\n'));
s.on('data', () => say('echoed'));
s.on('error', (e) => { failed = true; say('error ' + e.code); });
s.on('close', () => failed || say('closed'));
setTimeout(() => {}, 600000);
`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A busybox image named `ref` on `docker`, with the Dockerfile instructions `changes` applied. */
async function commitImage(docker: Docker, ref: string, changes: string[]): Promise<string> {
  const c = await docker.createContainer({ Image: 'cloudlet/busybox:1', Cmd: ['true'] });
  const [repo, tag] = ref.split(':');
  await c.commit({ repo, tag, changes });
  await c.remove();
  return (await docker.getImage(ref).inspect()).Id;
}

interface Report {
  state: string;
  error: { code: string; message: string } | null;
  downtimeMs: number | null;
  rounds: unknown[];
  totalMs: number;
  warnings: string[];
}

describe('container shapes users have, handed off or refused before the freeze', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('shap');

  async function migrate(name: string): Promise<{ code: number; report: Report; stdout: string }> {
    const r = await lab.cli(['migrate', name, '--from', 'a', '--to', 'b', '--json'], 300_000);
    const report = JSON.parse(r.stdout) as Report;
    return { code: r.code, report, stdout: r.stdout };
  }

  /** Started on a, counting; its counter once it has counted a while. */
  async function startOnA(options: Docker.ContainerCreateOptions): Promise<number> {
    const a = lab.docker('a');
    await (await a.createContainer(options)).start();
    await sleep(1500);
    return readCounter(a, options.name!);
  }

  async function counterContinued(name: string, before: number): Promise<void> {
    const b = lab.docker('b');
    const after1 = await readCounter(b, name);
    await sleep(400);
    const after2 = await readCounter(b, name);
    assert.ok(after1 >= before && after2 > after1, `counter continued on b: ${before} -> ${after1} -> ${after2}`);
  }

  async function gone(docker: Docker, name: string): Promise<boolean> {
    return !(await docker.listContainers({ all: true })).some((x) => x.Names.includes(`/${name}`));
  }

  /** Refused at prepare: no round, no freeze, still counting on a, nothing left on b; then removed. */
  async function refusedBeforeFreeze(name: string, report: Report, before: number): Promise<void> {
    const a = lab.docker('a');
    assert.equal(report.downtimeMs, null, 'no freeze');
    assert.equal(report.rounds.length, 0, 'no round');
    const info = await a.getContainer(name).inspect();
    assert.equal(info.State.Running, true);
    assert.equal(info.State.Paused, false);
    const after = await readCounter(a, name);
    assert.ok(after > before, `still counting on a: ${before} -> ${after}`);
    assert.ok(await gone(lab.docker('b'), name), 'nothing left on b');
    await a.getContainer(name).remove({ force: true });
  }

  test('an image with ENTRYPOINT, CMD, LABEL, HEALTHCHECK and EXPOSE, run with env, labels, memory and CPU limits, present on b under another name: all kept', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const id = await commitImage(a, 'cltest/shaped:1', [
      'ENTRYPOINT ["sh", "-c"]',
      `CMD ["${BUSYBOX_COUNTER_SCRIPT}"]`,
      'LABEL cltest.image=shaped',
      'HEALTHCHECK --interval=2s --timeout=1s --retries=2 CMD test -s /tmp/counter',
      'EXPOSE 8080',
    ]);
    const img = await a.getImage(id).inspect();
    assert.deepEqual(img.Config.Entrypoint, ['sh', '-c'], 'the commit applied every change');
    assert.ok(img.Config.Healthcheck, 'the commit applied HEALTHCHECK');
    // b holds the same image under another name only (as after `docker tag` and `docker rmi`).
    const load = await b.loadImage(await a.getImage(id).get());
    await new Promise<void>((resolve, reject) => b.modem.followProgress(load, (err: Error | null) => (err ? reject(err) : resolve())));
    await b.getImage(id).tag({ repo: 'other/name', tag: '2' });
    assert.deepEqual((await b.getImage(id).inspect()).RepoTags, ['other/name:2']);

    const before = await startOnA({
      name: 'shaped',
      Image: 'cltest/shaped:1',
      Env: ['CLTEST_MODE=shaped', 'CLTEST_EMPTY='],
      Labels: { 'cltest.run': 'shaped', 'com.example.team': 'edge' },
      HostConfig: { NetworkMode: 'none', Memory: 64 * 1024 * 1024, NanoCpus: 500_000_000 },
    });
    const src = await a.getContainer('shaped').inspect();

    const { report, code, stdout } = await migrate('shaped');
    t.diagnostic(`shaped: state ${report.state}, total ${report.totalMs} ms, downtime ${report.downtimeMs} ms; ${JSON.stringify(report.error)}`);
    assert.equal(report.state, 'done', stdout);
    assert.equal(code, 0);
    assert.equal((report as Report & { imageShipped?: unknown }).imageShipped ?? null, null, 'nothing shipped: b had the image under another name');

    const twin = await b.getContainer('shaped').inspect();
    assert.equal(twin.State.Running, true);
    assert.equal(twin.Image, id);
    assert.equal(twin.Config.Image, 'cltest/shaped:1');
    assert.deepEqual(twin.Config.Entrypoint, ['sh', '-c']);
    assert.deepEqual(twin.Config.Cmd, [BUSYBOX_COUNTER_SCRIPT]);
    for (const e of ['CLTEST_MODE=shaped', 'CLTEST_EMPTY=']) assert.ok(twin.Config.Env.includes(e), `env ${e} kept: ${twin.Config.Env.join(' ')}`);
    assert.deepEqual(twin.Config.Labels, { 'cltest.image': 'shaped', 'cltest.run': 'shaped', 'com.example.team': 'edge' });
    assert.deepEqual(twin.Config.Healthcheck, src.Config.Healthcheck);
    assert.deepEqual(twin.Config.ExposedPorts, { '8080/tcp': {} });
    assert.equal(twin.HostConfig.Memory, 64 * 1024 * 1024);
    assert.equal(twin.HostConfig.NanoCpus, 500_000_000);
    await counterContinued('shaped', before);
    // The health check runs on b (the restored container's own health state).
    let health = '';
    for (let i = 0; i < 20 && health !== 'healthy'; i++) {
      await sleep(500);
      health = (await b.getContainer('shaped').inspect()).State.Health?.Status ?? '';
    }
    assert.equal(health, 'healthy', 'the health check passes on b');
    assert.ok(await gone(a, 'shaped'), 'gone from a');
    await b.getContainer('shaped').remove({ force: true });
  });

  // CRIU reads every process's rlimits with prlimit(2), which for another uid needs
  // CAP_SYS_RESOURCE: where cloudletd lacks it (this sandbox), --user is refused at prepare;
  // where it has it, the handoff keeps the user.
  test('--user: kept where cloudletd has CAP_SYS_RESOURCE, else refused before the freeze naming Config.User', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const canDump = hasCapability(await readFile('/proc/self/status', 'utf8'), CAP_SYS_RESOURCE);
    const before = await startOnA({
      name: 'user',
      Image: 'cloudlet/busybox:1',
      User: '1000:1000',
      Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT],
      HostConfig: { NetworkMode: 'none' },
    });
    assert.equal((await execIn(a, 'user', ['id', '-u'])).trim(), '1000');
    const { report, code, stdout } = await migrate('user');
    t.diagnostic(`user (CAP_SYS_RESOURCE ${canDump}): state ${report.state}, downtime ${report.downtimeMs} ms; ${JSON.stringify(report.error)}`);
    if (canDump) {
      assert.equal(report.state, 'done', stdout);
      const twin = await b.getContainer('user').inspect();
      assert.equal(twin.State.Running, true);
      assert.equal(twin.Config.User, '1000:1000');
      assert.equal((await execIn(b, 'user', ['id', '-u'])).trim(), '1000', 'the restored process runs as the user');
      await counterContinued('user', before);
      await b.getContainer('user').remove({ force: true });
      return;
    }
    assert.notEqual(code, 0);
    assert.equal(report.state, 'rolled-back', stdout);
    assert.equal(report.error?.code, 'conflict');
    assert.match(report.error?.message ?? '', /uid 1000 \(Config\.User "1000:1000": docker run --user/);
    await refusedBeforeFreeze('user', report, before);
  });

  test('--tmpfs, --mount type=tmpfs and --shm-size with data in /dev/shm: kept with their content', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const before = await startOnA({
      name: 'memfs',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', `echo in-tmpfs > /scratch/data; echo in-shm > /dev/shm/data; echo in-mount > /mnt/t/data; ${BUSYBOX_COUNTER_SCRIPT}`],
      HostConfig: {
        NetworkMode: 'none',
        Tmpfs: { '/scratch': 'rw,size=16m' },
        Mounts: [{ Type: 'tmpfs', Source: '', Target: '/mnt/t', TmpfsOptions: { SizeBytes: 8 * 1024 * 1024, Mode: 0o1777 } }],
        ShmSize: 128 * 1024 * 1024,
      },
    });
    await execIn(a, 'memfs', ['sh', '-c', 'echo later > /scratch/later; echo later > /dev/shm/later; echo later > /mnt/t/later']);
    const { report, stdout } = await migrate('memfs');
    t.diagnostic(`memfs: state ${report.state}, downtime ${report.downtimeMs} ms; ${JSON.stringify(report.error)}`);
    assert.equal(report.state, 'done', stdout);
    const twin = await b.getContainer('memfs').inspect();
    assert.equal(twin.State.Running, true);
    assert.deepEqual(twin.HostConfig.Tmpfs, { '/scratch': 'rw,size=16m' });
    assert.equal(twin.HostConfig.ShmSize, 128 * 1024 * 1024);
    assert.deepEqual(
      twin.HostConfig.Mounts?.map((m) => [m.Type, m.Target, m.TmpfsOptions?.SizeBytes, m.TmpfsOptions?.Mode]),
      [['tmpfs', '/mnt/t', 8 * 1024 * 1024, 0o1777]],
    );
    assert.equal((await execIn(b, 'memfs', ['cat', '/mnt/t/data', '/mnt/t/later'])).trim(), 'in-mount\nlater');
    assert.equal((await execIn(b, 'memfs', ['cat', '/scratch/data', '/scratch/later'])).trim(), 'in-tmpfs\nlater');
    assert.equal((await execIn(b, 'memfs', ['cat', '/dev/shm/data', '/dev/shm/later'])).trim(), 'in-shm\nlater');
    assert.match(await execIn(b, 'memfs', ['df', '-k', '/dev/shm']), /131072/, '/dev/shm is 128 MiB on b');
    await counterContinued('memfs', before);
    await b.getContainer('memfs').remove({ force: true });
  });

  // `-v NAME:/dir` is migration.test.ts's; here the other two ways a user gets a volume.
  test('a named volume by --mount type=volume and an anonymous volume (-v /dir): kept with their data', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const before = await startOnA({
      name: 'vols',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', `echo named > /vm/data; echo anon > /anon/data; ${BUSYBOX_COUNTER_SCRIPT}`],
      Volumes: { '/anon': {} },
      HostConfig: { NetworkMode: 'none', Mounts: [{ Type: 'volume', Source: 'shapes-vol', Target: '/vm' }] },
    });
    const anon = (await a.getContainer('vols').inspect()).Mounts.find((m) => m.Destination === '/anon')?.Name;
    assert.ok(anon, 'an anonymous volume at /anon');
    const { report, stdout } = await migrate('vols');
    t.diagnostic(`vols: state ${report.state}, downtime ${report.downtimeMs} ms; ${JSON.stringify(report.error)}`);
    assert.equal(report.state, 'done', stdout);
    const twin = await b.getContainer('vols').inspect();
    assert.equal(twin.State.Running, true);
    assert.deepEqual(
      twin.Mounts.map((m) => [m.Type, m.Name, m.Destination]).sort(),
      [
        ['volume', anon, '/anon'],
        ['volume', 'shapes-vol', '/vm'],
      ].sort(),
    );
    assert.equal((await execIn(b, 'vols', ['cat', '/vm/data', '/anon/data'])).trim(), 'named\nanon');
    await counterContinued('vols', before);
    await b.getContainer('vols').remove({ force: true, v: true });
    await b.getVolume('shapes-vol').remove();
  });

  test('a read-only root filesystem (writes to a tmpfs /tmp): kept, nothing written into the root', async (t) => {
    const b = lab.docker('b');
    const before = await startOnA({
      name: 'rofs',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT],
      HostConfig: { NetworkMode: 'none', ReadonlyRootfs: true, Tmpfs: { '/tmp': 'rw' } },
    });
    const { report, stdout } = await migrate('rofs');
    t.diagnostic(`rofs: state ${report.state}, downtime ${report.downtimeMs} ms; ${JSON.stringify(report.error)}`);
    assert.equal(report.state, 'done', stdout);
    const twin = await b.getContainer('rofs').inspect();
    assert.equal(twin.State.Running, true);
    assert.equal(twin.HostConfig.ReadonlyRootfs, true);
    await assert.rejects(execIn(b, 'rofs', ['touch', '/x']), 'the root is still read-only on b');
    await counterContinued('rofs', before);
    await b.getContainer('rofs').remove({ force: true });
  });

  test('--restart always: kept on b, and a does not restart its container after the final dump', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const before = await startOnA({
      name: 'always',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT],
      HostConfig: { NetworkMode: 'none', RestartPolicy: { Name: 'always' } },
    });
    const { report, stdout } = await migrate('always');
    t.diagnostic(`always: state ${report.state}, downtime ${report.downtimeMs} ms; ${JSON.stringify(report.error)}`);
    assert.equal(report.state, 'done', stdout);
    const twin = await b.getContainer('always').inspect();
    assert.equal(twin.State.Running, true);
    assert.equal(twin.HostConfig.RestartPolicy?.Name, 'always');
    await counterContinued('always', before);
    await sleep(2000);
    assert.ok(await gone(a, 'always'), 'not restarted on a: one instance, on b');
    await b.getContainer('always').remove({ force: true });
  });

  test('the default bridge with a published port and no client connected: handed off with its state, another address at b', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const before = await startOnA({
      name: 'published',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', `httpd -p 8080 -h /tmp; ${BUSYBOX_COUNTER_SCRIPT}`],
      ExposedPorts: { '8080/tcp': {} },
      HostConfig: { PortBindings: { '8080/tcp': [{ HostPort: '18080' }] } },
    });
    const addrA = (await a.getContainer('published').inspect()).NetworkSettings.IPAddress;
    const { report, stdout } = await migrate('published');
    t.diagnostic(`published: state ${report.state}, downtime ${report.downtimeMs} ms; ${JSON.stringify(report.error)}`);
    assert.equal(report.state, 'done', stdout);
    const twin = await b.getContainer('published').inspect();
    assert.equal(twin.State.Running, true);
    assert.deepEqual(twin.HostConfig.PortBindings, { '8080/tcp': [{ HostIp: '', HostPort: '18080' }] });
    t.diagnostic(`address on a ${addrA}, on b ${twin.NetworkSettings.IPAddress}; warnings ${JSON.stringify(report.warnings)}`);
    assert.ok(addrA, 'it had an address on the default bridge at a');
    assert.ok(
      report.warnings.some((w) => w.includes(`address ${addrA} on network bridge is not kept: b's engine gave it one on its own bridge`)),
      `the report says the address changes: ${JSON.stringify(report.warnings)}`,
    );
    assert.ok(
      report.warnings.some((w) => w.includes('published ports (18080->8080/tcp) are published on b')),
      `the report says where the port is published: ${JSON.stringify(report.warnings)}`,
    );
    // The service answers on b's published port (httpd restored with its listening socket).
    const index = await execIn(b, 'published', ['sh', '-c', 'echo hi > /tmp/index.html; wget -q -O - http://127.0.0.1:8080/index.html']);
    assert.equal(index.trim(), 'hi');
    await counterContinued('published', before);
    await b.getContainer('published').remove({ force: true });
  });

  test('the default bridge with a client connected: refused before the freeze; with --tcp-close the client is reset at once and the service moves', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    // A user's echo server (busybox nc, a cat per connection) beside the counter, and a client
    // of it in another container on a's default bridge that records what its connection saw.
    const before = await startOnA({ name: 'closer', Image: 'cloudlet/busybox:1', Cmd: ['sh', '-c', `nc -ll -p 9000 -e cat & ${BUSYBOX_COUNTER_SCRIPT}`] });
    const clientState = async () => (await execIn(a, 'closer-client', ['cat', '/tmp/state']).catch(() => '')).trim();
    /** A new client of the server's address on a now, once it got its echo. */
    const connectClient = async () => {
      await a
        .getContainer('closer-client')
        .remove({ force: true })
        .catch(() => undefined);
      const addr = (await a.getContainer('closer').inspect()).NetworkSettings.IPAddress;
      await (await a.createContainer({ name: 'closer-client', Image: 'cloudlet/node:20', Cmd: ['node', '-e', ECHO_CLIENT, addr] })).start();
      for (let i = 0; i < 50 && (await clientState()) !== 'echoed'; i++) await sleep(100);
      assert.equal(await clientState(), 'echoed', `the client is connected to ${addr} and got its echo`);
    };
    try {
      await connectClient();

      const refused = await migrate('closer');
      t.diagnostic(`without --tcp-close: ${refused.report.state}, ${JSON.stringify(refused.report.error)}`);
      assert.match(refused.report.error?.message ?? '', /1 established TCP connection\(s\) and no service address/);
      assert.equal(refused.report.downtimeMs, null, 'no freeze');
      assert.equal(refused.report.rounds.length, 0, 'no round');
      assert.equal(await clientState(), 'echoed', 'the refusal left the connection alone');

      const dry = await lab.cli(['migrate', 'closer', '--from', 'a', '--to', 'b', '--dry-run', '--tcp-close', '--json'], 120_000);
      const plan = JSON.parse(dry.stdout) as { ok: boolean; network: { establishedTcp: number; connectionsClosed?: boolean }; warnings: string[] };
      assert.equal(plan.ok, true, dry.stdout);
      assert.equal(plan.network.connectionsClosed, true);
      assert.equal(plan.network.establishedTcp, 1);

      // A failure after the freeze: the source restores its tcp-close dump (which needs the
      // option too) and the service runs on a again; its client was reset all the same.
      const failed = await lab.cli(['migrate', 'closer', '--from', 'a', '--to', 'b', '--tcp-close', '--inject', 'before-restore', '--json'], 300_000);
      const rolled = JSON.parse(failed.stdout) as Report & { tcpClose?: { reset: number } };
      t.diagnostic(`--tcp-close, failed before the restore: ${rolled.state}, ${JSON.stringify(rolled.tcpClose)}, client: ${await clientState()}`);
      assert.equal(rolled.state, 'rolled-back', failed.stdout);
      assert.match(rolled.error?.message ?? '', /injected fault/);
      assert.equal(rolled.tcpClose?.reset, 1);
      assert.equal(await clientState(), 'error ECONNRESET');
      assert.equal((await a.getContainer('closer').inspect()).State.Running, true, 'restored on a');
      assert.ok(await gone(b, 'closer'), 'nothing left on b');
      const afterRollback = await readCounter(a, 'closer');
      await sleep(400);
      assert.ok((await readCounter(a, 'closer')) > afterRollback, 'counting on a again');
      // A client connects to the restored server on a, and the next handoff resets that one.
      await connectClient();

      const r = await lab.cli(['migrate', 'closer', '--from', 'a', '--to', 'b', '--tcp-close', '--json'], 300_000);
      const report = JSON.parse(r.stdout) as Report & { tcpClose?: { atPrepare: number; reset: number; ms: number } };
      t.diagnostic(`--tcp-close: ${report.state}, downtime ${report.downtimeMs} ms, ${JSON.stringify(report.tcpClose)}, client: ${await clientState()}`);
      assert.equal(report.state, 'done', r.stdout);
      assert.equal(report.tcpClose?.atPrepare, 1);
      assert.equal(report.tcpClose?.reset, 1, 'the one connection was reset before the freeze');
      assert.equal(await clientState(), 'error ECONNRESET', 'the client was told at once, not left to time out');
      assert.equal((await b.getContainer('closer').inspect()).State.Running, true);
      await counterContinued('closer', before);
      // The restored listener takes new connections on b.
      const echo = await execIn(b, 'closer', ['sh', '-c', 'echo ping | timeout 3 nc 127.0.0.1 9000']);
      assert.equal(echo.trim(), 'ping');
    } finally {
      await a
        .getContainer('closer-client')
        .remove({ force: true })
        .catch(() => undefined);
      for (const d of [a, b])
        await d
          .getContainer('closer')
          .remove({ force: true })
          .catch(() => undefined);
    }
  });

  test('a bind mount (outside the destination policy roots): refused before the freeze, naming HostConfig.Binds', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'cltest-bind-'));
    const before = await startOnA({
      name: 'bound',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', `echo bound > /data/file; ${BUSYBOX_COUNTER_SCRIPT}`],
      HostConfig: { NetworkMode: 'none', Binds: [`${dir}:/data`] },
    });
    const { report, code, stdout } = await migrate('bound');
    t.diagnostic(`bound: state ${report.state}; ${JSON.stringify(report.error)}`);
    assert.notEqual(code, 0);
    assert.equal(report.state, 'rolled-back', stdout);
    assert.equal(report.error?.code, 'policy_denied');
    assert.match(report.error?.message ?? '', /binds\[0\]\.source \(HostConfig\.Binds\[0\]\).*containerPolicy\.bindMountRoots/);
    assert.equal((await readFile(join(dir, 'file'), 'utf8')).trim(), 'bound');
    await refusedBeforeFreeze('bound', report, before);
    await rm(dir, { recursive: true, force: true });
  });
});
