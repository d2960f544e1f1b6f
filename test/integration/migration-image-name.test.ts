// Issue 17 (4), on a real lab: two handoffs the engine refused at the destination's create.
//  - A service in a network namespace holder, from an image with EXPOSE: Docker merges the
//    image's ports into the container's Config, and refuses them in a create with
//    NetworkMode container:X ("conflicting options: port exposing and the container type
//    network mode").
//  - A container created by image name whose image the destination holds by id only (it had
//    come for a service created by id): "No such image: NAME", though no layer was missing.
// No registry is reachable from the lab: the images are made on a by `docker commit` of a
// busybox container (the change EXPOSE / LABEL in the commit), as a build would.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { useLab, readCounter } from '../helpers/lab.js';
import { BUSYBOX_COUNTER_SCRIPT } from '../../src/workloads/stateful-service.js';
import { holderCreateOptions, joiningHolder } from '../../src/network/netns-holder.js';

const isRoot = process.getuid?.() === 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A busybox image named `ref` on `docker`, with the Dockerfile instruction `change` applied. */
async function commitImage(docker: Docker, ref: string, change: string): Promise<string> {
  const c = await docker.createContainer({ Image: 'cloudlet/busybox:1', Cmd: ['true'] });
  const [repo, tag] = ref.split(':');
  await c.commit({ repo, tag, changes: change });
  await c.remove();
  return (await docker.getImage(ref).inspect()).Id;
}

describe('handoffs of images the destination engine refused to create from', { skip: !isRoot && 'needs root' }, () => {
  const lab = useLab('h3im');

  test("a service in a holder, from an image with EXPOSE: the twin joins the holder without the ports Docker refuses there, and gets the image's again", async (t) => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    await commitImage(a, 'cltest/exposed:1', 'EXPOSE 8080');
    // Not the spare's command: b starts a copy of this holder, as it does for the pinned
    // service-network holder of `cloudlet run --netns-holder` (the spare stands for neither).
    const holder = { ...holderCreateOptions({ name: 'web-netns', image: 'cloudlet/busybox:1', network: 'none' }), Cmd: ['sleep', '999999'] };
    await (await a.createContainer(holder)).start();
    // As `cloudlet run --netns-holder` creates a service: joining the holder, no ports asked.
    await (await a.createContainer(joiningHolder({ name: 'web', Image: 'cltest/exposed:1', Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT] }, 'web-netns'))).start();
    assert.deepEqual(
      (await a.getContainer('web').inspect()).Config.ExposedPorts,
      { '8080/tcp': {} },
      "Docker merged the image's EXPOSE into the container's Config",
    );
    await sleep(1000);
    const before = await readCounter(a, 'web');

    const r = await lab.cli(['migrate', 'web', '--from', 'a', '--to', 'b', '--rounds', '1', '--json'], 300_000);
    const report = JSON.parse(r.stdout);
    t.diagnostic(`holder + EXPOSE: total ${report.totalMs} ms, downtime ${report.downtimeMs} ms, holder ${report.netnsHolderFrom}`);
    assert.equal(report.state, 'done', JSON.stringify(report.error));
    assert.equal(r.code, 0);
    assert.equal(report.netnsHolderFrom, 'started');

    const twin = await b.getContainer('web').inspect();
    assert.equal(twin.State.Running, true);
    assert.equal(twin.HostConfig.NetworkMode, `container:${(await b.getContainer('web-netns').inspect()).Id}`);
    assert.deepEqual(twin.Config.ExposedPorts, { '8080/tcp': {} }, "the twin has the image's ports again (merged at its create)");
    assert.equal(twin.Config.Image, 'cltest/exposed:1');
    const after1 = await readCounter(b, 'web');
    await sleep(400);
    const after2 = await readCounter(b, 'web');
    assert.ok(after1 >= before && after2 > after1, `counter continued on b: ${before} -> ${after1} -> ${after2}`);
    for (const n of ['web', 'web-netns']) await b.getContainer(n).remove({ force: true });
  });

  test('a container created by image name moves to a cloudlet that holds the image by id only: the name is tagged there, no layer shipped', async () => {
    const a = lab.docker('a');
    const b = lab.docker('b');
    const id = await commitImage(a, 'cltest/byid:1', 'LABEL cltest=byid');
    // b gets the image by id only, as when it came for a service created by id (overlays):
    // saved by id, the archive names no tag.
    const load = await b.loadImage(await a.getImage(id).get());
    await new Promise<void>((resolve, reject) => b.modem.followProgress(load, (err: Error | null) => (err ? reject(err) : resolve())));
    assert.deepEqual((await b.getImage(id).inspect()).RepoTags ?? [], [], 'b holds the image by id only');
    await assert.rejects(b.getImage('cltest/byid:1').inspect(), 'b does not know the name');

    await (
      await a.createContainer({ name: 'plain', Image: 'cltest/byid:1', Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT], HostConfig: { NetworkMode: 'none' } })
    ).start();
    await sleep(1000);
    const before = await readCounter(a, 'plain');
    const r = await lab.cli(['migrate', 'plain', '--from', 'a', '--to', 'b', '--rounds', '1', '--json'], 300_000);
    const report = JSON.parse(r.stdout);
    assert.equal(report.state, 'done', JSON.stringify(report.error));
    assert.equal(report.imageShipped ?? null, null, 'nothing shipped: b had the image');

    const twin = await b.getContainer('plain').inspect();
    assert.equal(twin.State.Running, true);
    assert.equal(twin.Image, id);
    assert.equal(twin.Config.Image, 'cltest/byid:1');
    assert.deepEqual((await b.getImage(id).inspect()).RepoTags, ['cltest/byid:1'], 'b tagged the image with the name');
    // What `docker ps` shows on b: the user's image name, not an id.
    const listed = (await b.listContainers()).find((c) => c.Names.includes('/plain'));
    assert.equal(listed?.Image, 'cltest/byid:1');
    const after = await readCounter(b, 'plain');
    assert.ok(after >= before, `counter continued on b: ${before} -> ${after}`);
    await b.getContainer('plain').remove({ force: true });
  });
});
