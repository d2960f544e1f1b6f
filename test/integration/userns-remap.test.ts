// On a lab whose engines run with Docker's --userns-remap (docs/userns-remap.md): root owns
// each container's user namespace, so CRIU dumps and restores a non-root container although
// root lacks CAP_SYS_RESOURCE here. A service then needs a network namespace of its own on
// the service network (its fixed address): one joining a netns holder cannot be restored
// under remap and is refused before the freeze.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { useLab, readCounter, execIn } from '../helpers/lab.js';
import { BUSYBOX_COUNTER_SCRIPT } from '../../src/workloads/stateful-service.js';
import { LAB_SERVICE_NETWORK } from '../../src/lab/lab.js';
import { SUBGID_FILE, SUBUID_FILE } from '../../src/lab/userns-remap.js';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Report {
  state: string;
  error: { code: string; message: string } | null;
  downtimeMs: number | null;
  rounds: unknown[];
}

describe('a remapped lab: non-root services in their own namespace move, holder-joined ones are refused', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('remp', { usernsRemap: true });

  async function migrate(name: string): Promise<{ code: number; report: Report; stdout: string }> {
    const r = await lab.cli(['migrate', name, '--from', 'a', '--to', 'b', '--json'], 300_000);
    return { code: r.code, report: JSON.parse(r.stdout) as Report, stdout: r.stdout };
  }

  test('lab status says the lab is remapped; its range is in /etc/subuid and /etc/subgid', async () => {
    const st = await lab.cliJson<{ usernsRemap: { user: string; uid: number; gid: number } | null; cloudlets: { dockerRoot: string }[] }>([
      'lab',
      'status',
      '--json',
    ]);
    assert.ok(st.usernsRemap, 'usernsRemap in lab status');
    const { user, uid, gid } = st.usernsRemap;
    assert.match(await readFile(SUBUID_FILE, 'utf8'), new RegExp(`^${user}:${uid}:65536$`, 'm'));
    assert.match(await readFile(SUBGID_FILE, 'utf8'), new RegExp(`^${user}:${gid}:65536$`, 'm'));
    for (const c of st.cloudlets) assert.match(c.dockerRoot, new RegExp(`/${uid}\\.${gid}$`), 'the remapped docker root');
  });

  test('a uid-1000 busybox counter in its own namespace on the service network: handed off a -> b, counter on, R/W file kept', async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const address = '10.240.1.77';
    await (
      await a.createContainer({
        name: 'remapped',
        Image: 'cloudlet/busybox:1',
        User: '1000:1000',
        Cmd: ['sh', '-c', `echo in-rw-layer > /tmp/kept; ${BUSYBOX_COUNTER_SCRIPT}`],
        HostConfig: { NetworkMode: LAB_SERVICE_NETWORK.name },
        NetworkingConfig: { EndpointsConfig: { [LAB_SERVICE_NETWORK.name]: { IPAMConfig: { IPv4Address: address } } } },
      })
    ).start();
    await sleep(1500);
    const before = await readCounter(a, 'remapped');
    assert.equal((await execIn(a, 'remapped', ['id', '-u'])).trim(), '1000');
    const { report, stdout } = await migrate('remapped');
    t.diagnostic(`remapped: state ${report.state}, downtime ${report.downtimeMs} ms, ${report.rounds.length} rounds`);
    assert.equal(report.state, 'done', stdout);
    const twin = await b.getContainer('remapped').inspect();
    assert.equal(twin.State.Running, true);
    assert.equal(twin.NetworkSettings.Networks[LAB_SERVICE_NETWORK.name]?.IPAddress, address, 'the address kept');
    assert.equal((await execIn(b, 'remapped', ['id', '-u'])).trim(), '1000', 'the restored process runs as uid 1000');
    assert.equal((await execIn(b, 'remapped', ['cat', '/tmp/kept'])).trim(), 'in-rw-layer', 'the R/W layer kept');
    const after1 = await readCounter(b, 'remapped');
    await sleep(400);
    const after2 = await readCounter(b, 'remapped');
    assert.ok(after1 >= before && after2 > after1, `counter continued on b: ${before} -> ${after1} -> ${after2}`);
    assert.ok(!(await a.listContainers({ all: true })).some((x) => x.Names.includes('/remapped')), 'gone from a');
    await b.getContainer('remapped').remove({ force: true });
  });

  test('a uid-1000 counter joining a netns holder: refused before the freeze, still running on a', async () => {
    const a = lab.docker('a');
    await (await a.createContainer({ name: 'holder', Image: 'cloudlet/busybox:1', Cmd: ['sleep', '2147483647'], HostConfig: { NetworkMode: 'none' } })).start();
    await (
      await a.createContainer({
        name: 'joined',
        Image: 'cloudlet/busybox:1',
        User: '1000:1000',
        Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT],
        HostConfig: { NetworkMode: 'container:holder' },
      })
    ).start();
    await sleep(1500);
    const before = await readCounter(a, 'joined');
    const { code, report, stdout } = await migrate('joined');
    assert.notEqual(code, 0);
    assert.equal(report.state, 'rolled-back', stdout);
    assert.equal(report.error?.code, 'conflict');
    assert.match(report.error?.message ?? '', /user namespace \(userns-remap\).*cannot join that network namespace/);
    assert.equal(report.downtimeMs, null, 'no freeze');
    assert.equal(report.rounds.length, 0, 'no round');
    const info = await a.getContainer('joined').inspect();
    assert.equal(info.State.Running, true);
    assert.equal(info.State.Paused, false);
    const after = await readCounter(a, 'joined');
    assert.ok(after > before, `still counting on a: ${before} -> ${after}`);
    assert.ok(!(await lab.docker('b').listContainers({ all: true })).some((x) => x.Names.includes('/joined')), 'nothing on b');
    for (const n of ['joined', 'holder']) await a.getContainer(n).remove({ force: true });
  });
});
