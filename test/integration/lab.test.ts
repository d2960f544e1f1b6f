// The lab end to end, through the real CLI: namespaces, shaped links, one Docker engine and
// one cloudletd per cloudlet, host access through forwarded ports, and a clean `lab down`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import Docker from 'dockerode';
import { cliJson, runCli } from '../helpers/cli.js';
import { readLabState, labDir, labRunDir, type LabState } from '../../src/lab/state.js';
import { listNetns } from '../../src/lab/netns.js';
import { processesMentioning } from '../../src/lab/processes.js';
import { mountsUnder } from '../../src/lab/mounts.js';

const isRoot = process.getuid?.() === 0;
const prefix = process.env.CLOUDLET_LAB_PREFIX ?? 'cllab-';
let state: LabState | null = null;

before(async () => {
  if (!isRoot) return;
  await runCli(['lab', 'down']); // leftovers of an interrupted run
});

after(async () => {
  if (!isRoot) return;
  const r = await runCli(['lab', 'down']);
  assert.equal(r.code, 0, `lab down in after(): ${r.stderr}`);
});

test('lab: up, nodes, containers, tokens, shaped links, down', { skip: !isRoot && 'needs root' }, async (t) => {
  await t.test('lab up brings 2 cloudlets with engines and daemons', async () => {
    const view = await cliJson(['lab', 'up', '--cloudlets', '2', '--bandwidth', '100mbit', '--latency', '5ms'], {
      timeoutMs: 600_000,
    });
    assert.equal(view.cloudlets.length, 2);
    for (const c of view.cloudlets) {
      assert.match(c.apiUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(c.engineRunning, true);
      assert.equal(c.daemonRunning, true);
    }
    state = readLabState();
    assert.ok(state, 'state file written');
  });

  await t.test('lab up twice says the lab is already up', async () => {
    const r = await runCli(['lab', 'up']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /already up/);
  });

  await t.test('lab status reports both cloudlets', async () => {
    const s = await cliJson(['lab', 'status']);
    assert.equal(s.up, true);
    assert.deepEqual(
      s.cloudlets.map((c: { name: string }) => c.name),
      ['a', 'b'],
    );
    assert.ok(!JSON.stringify(s).includes(state!.token), 'status must not print the token');
  });

  await t.test('both engines answer through cloudletd (`cloudlet nodes`)', async () => {
    const nodes = await cliJson(['nodes']);
    assert.deepEqual(
      nodes.map((n: { name: string }) => n.name),
      ['a', 'b'],
    );
    for (const n of nodes) {
      assert.equal(n.status, 'up', JSON.stringify(n));
      assert.match(n.engine, /^20\./, JSON.stringify(n));
      assert.equal(n.info.engine.experimental, true);
      assert.match(n.info.criu.version, /^4\.[2-9]/);
    }
  });

  await t.test('a container started on cloudlet a is listed by `cloudlet ps --node a` only', async () => {
    const docker = new Docker({ socketPath: state!.cloudlets[0]!.engine.socket });
    const c = await docker.createContainer({
      name: 'labtest-sleeper',
      Image: 'cloudlet/busybox:1',
      Cmd: ['sleep', '600'],
      HostConfig: { NetworkMode: 'none' },
    });
    await c.start();
    const listA = await cliJson(['ps', '--node', 'a']);
    assert.ok(
      listA.some((x: { name: string }) => x.name === 'labtest-sleeper'),
      JSON.stringify(listA),
    );
    const listB = await cliJson(['ps', '--node', 'b']);
    assert.ok(!listB.some((x: { name: string }) => x.name === 'labtest-sleeper'));
    // The same base image has the same id on both engines (deterministic archives).
    const imgA = await docker.getImage('cloudlet/node:20').inspect();
    const imgB = await new Docker({ socketPath: state!.cloudlets[1]!.engine.socket }).getImage('cloudlet/node:20').inspect();
    assert.equal(imgA.Id, imgB.Id);
  });

  await t.test('a wrong token gets 401', async () => {
    const url = state!.cloudlets[0]!.daemon.apiUrl;
    const res = await fetch(`${url}/v1/info`, { headers: { authorization: 'Bearer wrong-token-0123456789' } });
    assert.equal(res.status, 401);
    const none = await fetch(`${url}/v1/containers`);
    assert.equal(none.status, 401);
    const ok = await fetch(`${url}/v1/info`, { headers: { authorization: `Bearer ${state!.token}` } });
    assert.equal(ok.status, 200);
    const r = await runCli(['ps', '--node', 'a', '--token', 'wrong-token-0123456789']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /invalid bearer token|unauthori[sz]ed/i);
  });

  await t.test('the cloudlets are peers over mutual TLS with certificates from the lab CA', async () => {
    const s = state!;
    assert.ok(s.tls && existsSync(s.tls.ca), 'lab CA recorded');
    for (const cl of s.cloudlets) {
      assert.match(cl.daemon.peerUrl, /^https:\/\/10\.250\.\d+\.2:7070$/);
      const config = JSON.parse(readFileSync(cl.daemon.configPath, 'utf8'));
      assert.equal(config.tls.ca, s.tls.ca);
      assert.ok(!config.insecure, 'no insecure flag');
    }
    // a checks b over https, presenting its certificate (no token sent to peers).
    const a = s.cloudlets[0]!.daemon.apiUrl;
    const peers = (await (await fetch(`${a}/v1/peers`, { headers: { authorization: `Bearer ${s.token}` } })).json()) as {
      name: string;
      ok: boolean;
      error?: string;
    }[];
    assert.deepEqual(
      peers.map((p) => [p.name, p.ok, p.error]),
      [['b', true, undefined]],
    );
    // The operator's token does not open a peer route (here over the forwarded unix socket).
    const res = await fetch(`${a}/v1/incoming/m-labtest-0001`, { method: 'DELETE', headers: { authorization: `Bearer ${s.token}` } });
    assert.equal(res.status, 401);
    assert.match(((await res.json()) as { message: string }).message, /peer route/);
  });

  await t.test('an unknown node name gets a clear error', async () => {
    const r = await runCli(['ps', '--node', 'zz']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /node 'zz' not found/);
    assert.match(r.stderr, /a, b/);
  });

  await t.test('doctor reports every required item ok', async () => {
    const r = await runCli(['doctor', '--json']);
    const d = JSON.parse(r.stdout);
    const bad = d.checks.filter((c: { required: boolean; status: string }) => c.required && c.status !== 'ok');
    assert.deepEqual(bad, []);
    assert.equal(d.ok, true);
    assert.equal(r.code, 0);
  });

  await t.test('a 100mbit link carries 85-105 Mbit/s between the cloudlets', async () => {
    const m = await cliJson(['lab', 'measure', '--from', 'a', '--to', 'b', '--bytes', '40M', '--seconds', '20']);
    t.diagnostic(`100mbit: ${m.mbitPerSecond.toFixed(1)} Mbit/s`);
    assert.ok(m.mbitPerSecond >= 85 && m.mbitPerSecond <= 105, `measured ${m.mbitPerSecond} Mbit/s`);
  });

  await t.test('a 20mbit link carries 17-21 Mbit/s', async () => {
    await cliJson(['lab', 'link', 'b', '--bandwidth', '20mbit']);
    const m = await cliJson(['lab', 'measure', '--from', 'a', '--to', 'b', '--bytes', '10M', '--seconds', '20']);
    t.diagnostic(`20mbit: ${m.mbitPerSecond.toFixed(1)} Mbit/s`);
    assert.ok(m.mbitPerSecond >= 17 && m.mbitPerSecond <= 21, `measured ${m.mbitPerSecond} Mbit/s`);
  });

  await t.test('lab down leaves no namespace, process, mount, cgroup or directory behind', async () => {
    // An empty container cgroup that outlived its container (an engine stopped before runc
    // cleaned up) must not keep the lab's cgroup from going.
    const leftover = `/sys/fs/cgroup/pids/${prefix}a/0000-left-over`;
    if (existsSync(`/sys/fs/cgroup/pids/${prefix}a`)) mkdirSync(leftover);
    const r = await runCli(['lab', 'down', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.equal(report.wasUp, true);
    assert.deepEqual(report.errors, []);
    assert.deepEqual(
      (await listNetns()).filter((n) => n.startsWith(prefix)),
      [],
    );
    assert.deepEqual(processesMentioning([labDir() + '/', labRunDir() + '/']), []);
    for (const cl of state!.cloudlets) {
      assert.equal(existsSync(`/proc/${cl.engine.pid}`) && readFileSync(`/proc/${cl.engine.pid}/cmdline`, 'utf8').includes(labDir()), false);
    }
    assert.deepEqual(mountsUnder([labDir(), labRunDir()]), []);
    assert.equal(existsSync(labDir()), false);
    assert.equal(existsSync(labRunDir()), false);
    for (const ctl of readdirSync('/sys/fs/cgroup')) {
      const d = `/sys/fs/cgroup/${ctl}`;
      let entries: string[] = [];
      try {
        entries = readdirSync(d);
      } catch {
        continue; // not a directory
      }
      assert.deepEqual(
        entries.filter((e) => e.startsWith(prefix)),
        [],
        `cgroup ${d}`,
      );
    }
  });

  await t.test('lab down with no lab is a no-op with a message', async () => {
    const r = await runCli(['lab', 'down']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /no lab is up/);
  });
});
