// Choosing the engine adapter by the engine's version and storage driver, and what each
// adapter answers. The version strings are the ones Debian's engines report (20.10.24+dfsg1 on
// bookworm, 28.5.2+dfsg4 from sid; docs/engines-docker28.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { engineRuncRoot } from '../../src/engine/runc.js';
import { checkpointPaths } from '../../src/engine/checkpoint-install.js';
import { parseEngineVersion, probeEngineAdapter, selectEngineAdapter, UnsupportedEngineError } from '../../src/engine/engine-adapter.js';

const ID = 'cd'.repeat(32);

test('parseEngineVersion reads Debian and upstream version strings', () => {
  assert.deepEqual(parseEngineVersion('20.10.24+dfsg1'), [20, 10, 24]);
  assert.deepEqual(parseEngineVersion('28.5.2+dfsg4'), [28, 5, 2]);
  assert.deepEqual(parseEngineVersion('v29.0.1'), [29, 0, 1]);
  assert.deepEqual(parseEngineVersion('26.1'), [26, 1, 0]);
  assert.deepEqual(parseEngineVersion('28.0.0-rc.1'), [28, 0, 0]);
  assert.equal(parseEngineVersion('dev'), null);
  assert.equal(parseEngineVersion(''), null);
});

test('20.10 and 28 engines with overlay2 get their family', () => {
  const a = selectEngineAdapter({ version: '20.10.24+dfsg1', storageDriver: 'overlay2' });
  assert.equal(a.family, 'docker20');
  assert.equal(a.engineVersion, '20.10.24+dfsg1');
  for (const v of ['28.5.2+dfsg4', '28.0.0', '28.2.2']) {
    assert.equal(selectEngineAdapter({ version: v, storageDriver: 'overlay2' }).family, 'docker28', v);
  }
});

test('unmeasured versions, unreadable versions and other image stores are refused by name', () => {
  for (const v of ['26.1.5+dfsg1', '27.5.1', '29.0.0', '19.03.15', '20.11.0', 'dev']) {
    assert.throws(
      () => selectEngineAdapter({ version: v, storageDriver: 'overlay2' }),
      (err: unknown) => err instanceof UnsupportedEngineError && err.errorKind === 'conflict' && err.message.includes(v),
      v,
    );
  }
  // 20.10 with the containerd store, and stores no adapter knows, are refused by name.
  for (const [version, driver] of [
    ['20.10.24+dfsg1', 'overlayfs'],
    ['28.5.2+dfsg4', 'btrfs'],
    ['28.5.2+dfsg4', 'vfs'],
  ] as const) {
    assert.throws(
      () => selectEngineAdapter({ version, storageDriver: driver }),
      (err: unknown) => err instanceof UnsupportedEngineError && err.message.includes(driver) && err.message.includes(version),
      `${version} ${driver}`,
    );
  }
});

test('Docker 28 with the containerd image store (driver overlayfs) gets its own family', async () => {
  const a = selectEngineAdapter({ version: '28.5.2+dfsg4', storageDriver: 'overlayfs' });
  assert.equal(a.family, 'docker28-containerd');
  assert.equal(a.imageStore, 'containerd');
  assert.deepEqual(a.asSource, { version: '28.5.2+dfsg4', imageStore: 'containerd' });
  // Restores as Docker 28 does: holders only.
  assert.equal(a.restoreRefusal({ networkMode: 'container:h' }), null);
  assert.match(a.restoreRefusal({ networkMode: 'bridge' }) ?? '', /network namespace of its own/);
  // No containerd to ask: no R/W layer named (the classic store's GraphDriver answer is not used).
  assert.equal(await a.rwLayerDir({ containerId: ID, graphDriverUpperDir: '/x/upper', execRoot: null }), null);
  const classic = selectEngineAdapter({ version: '28.5.2+dfsg4', storageDriver: 'overlay2' });
  assert.equal(await classic.rwLayerDir({ containerId: ID, graphDriverUpperDir: '/x/upper', execRoot: '/run/x' }), '/x/upper');
});

test('a handoff between the two image stores is refused, naming both engines and why', () => {
  const c = selectEngineAdapter({ version: '28.5.2+dfsg4', storageDriver: 'overlayfs' });
  const o20 = selectEngineAdapter({ version: '20.10.24+dfsg1', storageDriver: 'overlay2' });
  const o28 = selectEngineAdapter({ version: '28.5.2+dfsg4', storageDriver: 'overlay2' });
  assert.equal(c.handoffRefusalFrom(c.asSource), null);
  assert.equal(o28.handoffRefusalFrom(o20.asSource), null, '20.10 -> 28 on overlay2 is a store match');
  const why = c.handoffRefusalFrom(o20.asSource) ?? '';
  assert.match(why, /from Docker 20\.10\.24\+dfsg1 \(overlay2 image store\) to Docker 28\.5\.2\+dfsg4 \(containerd image store\)/);
  assert.match(why, /config's digest.*manifest's/);
  assert.match(o20.handoffRefusalFrom(c.asSource) ?? '', /from Docker 28\.5\.2\+dfsg4 \(containerd image store\) to Docker 20\.10\.24\+dfsg1/);
});

test('both families keep the runc root, checkpoint dir and staging of 20.10', () => {
  for (const version of ['20.10.24+dfsg1', '28.5.2+dfsg4']) {
    const a = selectEngineAdapter({ version, storageDriver: 'overlay2' });
    assert.equal(a.runcRoot('/run/x/exec'), engineRuncRoot('/run/x/exec'));
    assert.equal(a.runcRoot('/run/x/exec'), '/run/x/exec/runtime-runc/moby');
    const opts = { dataRoot: '/var/lib/x/docker', containerId: ID, name: 'final', xdgRuntimeDir: '/run/x/xdg' };
    assert.deepEqual(a.checkpointPaths(opts), checkpointPaths(opts));
    assert.equal(a.checkpointPaths(opts).checkpointDir, `/var/lib/x/docker/containers/${ID}/checkpoints/final`);
  }
});

test('Docker 28 refuses restores of containers with a network namespace of their own', () => {
  const a = selectEngineAdapter({ version: '28.5.2+dfsg4', storageDriver: 'overlay2' });
  assert.equal(a.restoreRefusal({ networkMode: 'container:cl-holder-web' }), null);
  assert.equal(a.restoreRefusal({ networkMode: 'host' }), null);
  assert.equal(a.restoreRefusal({ networkMode: 'none', networkDisabled: true }), null);
  for (const mode of ['none', 'bridge', 'cloudlet-svc', 'default', '']) {
    const why = a.restoreRefusal({ networkMode: mode });
    assert.ok(why !== null, mode);
    assert.match(why, /28\.5\.2\+dfsg4/);
    assert.match(why, /netns-holder/);
  }
  // 'container:' without a name is not a holder.
  assert.notEqual(a.restoreRefusal({ networkMode: 'container:' }), null);
});

test('Docker 20.10 restores every network mode', () => {
  const a = selectEngineAdapter({ version: '20.10.24+dfsg1', storageDriver: 'overlay2' });
  for (const mode of ['none', 'bridge', 'cloudlet-svc', 'host', 'container:h']) assert.equal(a.restoreRefusal({ networkMode: mode }), null, mode);
});

test('probeEngineAdapter asks the engine for its version and storage driver', async () => {
  const engine = (version: string, storageDriver: string) => ({
    version: async () => ({ version }),
    info: async () => ({ storageDriver }),
  });
  assert.equal((await probeEngineAdapter(engine('28.5.2+dfsg4', 'overlay2'))).family, 'docker28');
  assert.equal((await probeEngineAdapter(engine('20.10.24+dfsg1', 'overlay2'))).family, 'docker20');
  await assert.rejects(probeEngineAdapter(engine('29.1.0', 'overlayfs')), UnsupportedEngineError);
  const down = { version: async () => Promise.reject(new Error('ECONNREFUSED')), info: async () => ({ storageDriver: 'overlay2' }) };
  await assert.rejects(probeEngineAdapter(down), /ECONNREFUSED/);
});

test('routed service networks: Docker 28 gets the gateway mode without the raw-table filter, 20.10 nothing', () => {
  const d28 = selectEngineAdapter({ version: '28.5.2+dfsg4', storageDriver: 'overlay2' });
  assert.deepEqual(d28.routedBridgeOptions(), { 'com.docker.network.bridge.gateway_mode_ipv4': 'nat-unprotected' });
  const d20 = selectEngineAdapter({ version: '20.10.24+dfsg1', storageDriver: 'overlay2' });
  assert.deepEqual(d20.routedBridgeOptions(), {});
});
