// Create options for a container's twin, derived from `docker inspect`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { tagOf, twinCreateOptions, twinImageRef, type DockerEngine, type ImageDetails } from '../../src/engine/docker.js';

const ID = '0123456789ab' + 'c'.repeat(52);

function inspect(over: { HostConfig?: object; Mounts?: object[]; Networks?: object }): Docker.ContainerInspectInfo {
  return {
    Id: ID,
    Name: '/web',
    Image: 'sha256:abc',
    Config: { Hostname: '0123456789ab', Image: 'cloudlet/node:20', Cmd: ['node', 'server.js'], Env: ['A=1'], Labels: {} },
    HostConfig: { NetworkMode: 'none', ContainerIDFile: '/host/only/file', ...over.HostConfig },
    Mounts: over.Mounts ?? [],
    NetworkSettings: { Networks: over.Networks ?? {} },
  } as unknown as Docker.ContainerInspectInfo;
}

test('twin options keep name, hostname, command and host config; drop ContainerIDFile', () => {
  const o = twinCreateOptions(inspect({}));
  assert.equal(o.name, 'web');
  assert.equal(o.Hostname, '0123456789ab');
  assert.equal(o.Image, 'cloudlet/node:20');
  assert.deepEqual(o.Cmd, ['node', 'server.js']);
  assert.equal(o.HostConfig?.NetworkMode, 'none');
  assert.equal(o.HostConfig?.ContainerIDFile, undefined);
  assert.equal(o.NetworkingConfig, undefined);
});

test('anonymous volumes become named binds; declared binds stay as they are', () => {
  const o = twinCreateOptions(
    inspect({
      HostConfig: { Binds: ['data:/data'] },
      Mounts: [
        { Type: 'volume', Name: 'data', Source: '/v/data/_data', Destination: '/data', RW: true },
        { Type: 'volume', Name: 'f00d', Source: '/v/f00d/_data', Destination: '/cache', RW: false },
        { Type: 'bind', Source: '/etc/x', Destination: '/x', RW: true },
      ],
    }),
  );
  assert.deepEqual(o.HostConfig?.Binds, ['data:/data', 'f00d:/cache:ro']);
});

test('user-defined networks: address pinned, own short-id alias dropped', () => {
  const o = twinCreateOptions(
    inspect({
      HostConfig: { NetworkMode: 'svc' },
      Networks: { svc: { IPAMConfig: null, IPAddress: '172.30.0.5', Aliases: ['0123456789ab', 'web'], NetworkID: 'n' } },
    }),
  );
  assert.deepEqual(o.NetworkingConfig, { EndpointsConfig: { svc: { IPAMConfig: { IPv4Address: '172.30.0.5' }, Aliases: ['web'] } } });
  const b = twinCreateOptions(inspect({ HostConfig: { NetworkMode: 'default' }, Networks: { bridge: { IPAddress: '172.17.0.2' } } }));
  assert.equal(b.NetworkingConfig, undefined);
});

test("a twin in another container's network namespace drops the hostname Docker copied from it (Docker refuses one with container: mode)", () => {
  const o = twinCreateOptions(inspect({ HostConfig: { NetworkMode: `container:${'f'.repeat(64)}` } }));
  assert.equal(o.Hostname, undefined);
  assert.equal(o.HostConfig?.NetworkMode, `container:${'f'.repeat(64)}`);
  assert.equal(o.NetworkingConfig, undefined);
});

test('tagOf: repository and tag of a reference; null for digests and ids', () => {
  assert.deepEqual(tagOf('busybox'), { repo: 'busybox', tag: 'latest' });
  assert.deepEqual(tagOf('cloudlet/node:20'), { repo: 'cloudlet/node', tag: '20' });
  assert.deepEqual(tagOf('registry.local:5000/shop/web'), { repo: 'registry.local:5000/shop/web', tag: 'latest' });
  assert.deepEqual(tagOf('registry.local:5000/shop/web:2.1'), { repo: 'registry.local:5000/shop/web', tag: '2.1' });
  assert.equal(tagOf(`shop/web@sha256:${'e'.repeat(64)}`), null);
  assert.equal(tagOf(`sha256:${'e'.repeat(64)}`), null);
});

/** An engine that only knows images by reference (names and full ids), and records tags. */
function imagesEngine(refs: Record<string, string>): Pick<DockerEngine, 'inspectImage' | 'tagImage'> & { tags: string[] } {
  const tags: string[] = [];
  return {
    tags,
    async inspectImage(ref: string): Promise<ImageDetails | null> {
      const id = refs[ref] ?? (Object.values(refs).includes(ref) ? ref : undefined);
      return id ? { id, repoTags: [], diffIds: [], size: 0 } : null;
    },
    async tagImage(ref: string, t: { repo: string; tag: string }): Promise<void> {
      tags.push(`${ref} ${t.repo}:${t.tag}`);
      refs[`${t.repo}:${t.tag}`] = ref;
    },
  };
}

// Issue 17 (4): a service that had come to b by overlay left its image there by id only; a
// container of the same image started on a by name (`docker run IMAGE:TAG`) then could not
// move to b: "create ... failed: No such image: IMAGE:TAG".
test('twinImageRef: an image here by id only gets the name first; the twin is created by the name', async () => {
  const img = `sha256:${'1'.repeat(64)}`;
  const e = imagesEngine({ [img]: img });
  assert.equal(await twinImageRef(e, img, 'shop/web:2'), 'shop/web:2');
  assert.deepEqual(e.tags, [`${img} shop/web:2`]);
  assert.equal(await twinImageRef(e, img, 'shop/web:2'), 'shop/web:2');
  assert.equal(e.tags.length, 1, 'tagged once');
});

test('twinImageRef: a name meaning another image here, a digest reference or an id: the twin is created by the id, nothing tagged', async () => {
  const img = `sha256:${'1'.repeat(64)}`;
  const other = `sha256:${'2'.repeat(64)}`;
  const e = imagesEngine({ [img]: img, 'shop/web:2': other });
  assert.equal(await twinImageRef(e, img, 'shop/web:2'), img, 'the name is not moved off the other image');
  assert.equal(await twinImageRef(e, img, `shop/web@sha256:${'e'.repeat(64)}`), img);
  assert.equal(await twinImageRef(e, img, img), img);
  // (The engine resolves a short id of an image it has; this fake does not.)
  assert.equal(await twinImageRef(e, img, '111111111111'), img, 'a short id of the image is not made a repository');
  assert.deepEqual(e.tags, []);
});
