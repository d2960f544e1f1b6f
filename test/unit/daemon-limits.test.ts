// Size limits of cloudletd (DaemonConfig.limits): JSON bodies, overlay and image uploads,
// migration rounds (as sent, and per decoded artifact), frames. Each is exceeded through the
// real routes of a real server on 127.0.0.1 and must be refused with 413 naming the limit.
// The Docker engine is a stub that records what reached it (nothing may, when refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { startDaemon } from '../../src/daemon/server.js';
import { parseDaemonConfig } from '../../src/daemon/config.js';
import type { DockerEngine } from '../../src/engine/docker.js';
import { OVERLAY_CONTENT_TYPE } from '../../src/daemon/routes-overlays.js';
import { FrameReader } from '../../src/transfer/frame-reader.js';
import { FrameWriter } from '../../src/transfer/frame-writer.js';
import { TransferError } from '../../src/transfer/errors.js';
import { receiveRound } from '../../src/migration/round-transport.js';
import { makeFixture } from './daemon-fixtures.js';
import { makeOverlay } from './overlay-fixtures.js';

/** Just enough engine for the overlay and incoming-migration routes to reach the body. */
function stubEngine(upperDir: string) {
  const reached: string[] = [];
  const engine = {
    socketPath: '/stub.sock',
    // Prepare asks which engine family this is (engine/engine-adapter.ts).
    version: async () => ({ version: '20.10.24+dfsg1' }),
    info: async () => ({ storageDriver: 'overlay2' }),
    inspectImage: async () => null,
    imageExists: async () => true,
    // The twin's image is here by id only: prepare names it (twinImageRef).
    tagImage: async () => undefined,
    containerExists: async () => false,
    volumeExists: async () => false,
    createContainer: async () => 'f'.repeat(64),
    inspectContainer: async () => ({ id: 'f'.repeat(64), upperDir, state: { running: false } }),
    removeContainer: async () => true,
    removeVolume: async () => true,
    listContainers: async () => [],
    loadImage: async (s: NodeJS.ReadableStream) => {
      for await (const _ of s) reached.push('load');
      return [];
    },
  };
  return { engine: engine as unknown as DockerEngine, reached };
}

interface Reply {
  status: number;
  body: { error?: string; message?: string };
}

/** A real request over TCP; `body` chunks are sent chunked (no Content-Length) unless told. */
function request(url: string, opts: { method: string; path: string; token: string; type: string; body: Buffer | Buffer[]; length?: boolean }): Promise<Reply> {
  const target = new URL(opts.path, url);
  const parts = Array.isArray(opts.body) ? opts.body : [opts.body];
  const total = parts.reduce((n, p) => n + p.length, 0);
  return new Promise((resolve, reject) => {
    const req = http.request(target, {
      method: opts.method,
      headers: {
        authorization: `Bearer ${opts.token}`,
        'content-type': opts.type,
        ...(opts.length ? { 'content-length': String(total) } : {}),
      },
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Reply['body']) : {} }));
    });
    // The server may answer and close before the whole body is sent: the answer counts.
    req.on('error', (err) => setTimeout(() => reject(err), 500));
    Readable.from(parts).pipe(req);
  });
}

test('the API listens on loopback unless configured otherwise; limits have defaults', () => {
  const c = parseDaemonConfig({ node: 'alpha', token: 'a'.repeat(32), dataDir: '/tmp/x' });
  assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 7070 }]);
  assert.equal(c.tls, undefined);
  assert.deepEqual(c.limits, { requestBodyBytes: 1 << 20, overlayBytes: 8 * 2 ** 30, roundBytes: 4 * 2 ** 30, roundArtifactBytes: 2 ** 32 });
  assert.throws(() => parseDaemonConfig({ node: 'alpha', token: 'a'.repeat(32), dataDir: '/tmp/x', limits: { roundBytes: 0 } }), /limits\.roundBytes/);
  assert.throws(() => parseDaemonConfig({ node: 'alpha', token: 'a'.repeat(32), dataDir: '/tmp/x', limits: { frames: 1 } }), /frames/);
});

test('bodies over the configured limits are refused with 413 naming the limit', async (t) => {
  const fx = makeFixture({
    // the prepare below comes from beta: a prepare's `from` must be a configured peer
    peers: [{ name: 'beta', url: 'http://127.0.0.1:1' }],
    limits: { requestBodyBytes: 2048, overlayBytes: 1024, roundBytes: 64 * 1024, roundArtifactBytes: 16 * 1024 },
  });
  const ovl = await makeOverlay();
  t.after(() => {
    fx.cleanup();
    ovl.cleanup();
  });
  const upper = join(fx.dir, 'upper');
  mkdirSync(upper);
  const { engine, reached } = stubEngine(upper);
  const d = await startDaemon({ config: fx.config, engine, logger: false });
  t.after(() => d.close());
  const url = d.addresses[0]!;
  const token = fx.config.token;

  // JSON body: Fastify's parser stops at limits.requestBodyBytes.
  const big = Buffer.from(JSON.stringify({ container: 'x'.repeat(4000), to: 'beta' }));
  for (const length of [true, false]) {
    const r = await request(url, { method: 'POST', path: '/v1/migrations', token, type: 'application/json', body: big, length });
    assert.equal(r.status, 413, JSON.stringify(r.body));
    assert.equal(r.body.error, 'body_too_large');
    assert.match(r.body.message ?? '', /limit of 2048 bytes \(limits\.requestBodyBytes\)/);
  }

  // Overlay upload: refused from its Content-Length, or while streaming when it has none.
  assert.ok(ovl.bytes.length > 1024, `fixture overlay of ${ovl.bytes.length} bytes`);
  for (const length of [true, false]) {
    const r = await request(url, {
      method: 'PUT',
      path: '/v1/overlays',
      token,
      type: OVERLAY_CONTENT_TYPE,
      body: [ovl.bytes.subarray(0, 512), ovl.bytes.subarray(512)],
      length,
    });
    assert.equal(r.status, 413, JSON.stringify(r.body));
    assert.equal(r.body.error, 'overlay_too_large');
    assert.match(r.body.message ?? '', /limit of 1024 bytes \(limits\.overlayBytes\)/);
  }
  // Whole image archives share the overlay limit.
  const img = await request(url, { method: 'PUT', path: '/v1/images', token, type: 'application/x-tar', body: randomBytes(4096), length: true });
  assert.equal(img.status, 413, JSON.stringify(img.body));
  assert.match(img.body.message ?? '', /limits\.overlayBytes/);

  // A migration round: prepared through the real route, then a round over limits.roundBytes.
  const id = 'mig-limits-0001';
  const prep = await request(url, {
    method: 'POST',
    path: '/v1/incoming',
    token,
    type: 'application/json',
    body: Buffer.from(
      JSON.stringify({
        id,
        from: 'beta',
        container: { name: 'web', imageId: `sha256:${'a'.repeat(64)}`, imageName: 'web:1', spec: { network: { mode: 'none' } }, volumes: [] },
      }),
    ),
    length: true,
  });
  assert.equal(prep.status, 200, JSON.stringify(prep.body));
  // Ten artifacts of 10 KiB: each under the artifact limit, together over the round limit.
  const round = await framedStream(
    Array.from({ length: 10 }, (_, i): [string, Buffer] => [`img/core-${i}.img`, randomBytes(10 * 1024)]),
    'none',
  );
  const r = await request(url, {
    method: 'PUT',
    path: `/v1/incoming/${id}/rounds/1?final=0`,
    token,
    type: 'application/octet-stream',
    body: chunks(round, 8192),
  });
  assert.equal(r.status, 413, JSON.stringify(r.body));
  assert.equal(r.body.error, 'transfer_oversize');
  assert.match(r.body.message ?? '', /limit of 65536 bytes \(limits\.roundBytes\)/);
  // One decoded artifact over limits.roundArtifactBytes (it compresses well: small on the wire).
  const bomb = await framedStream([['fs/upper', Buffer.alloc(40 * 1024)]], 'zstd');
  assert.ok(bomb.length < 64 * 1024);
  const r2 = await request(url, { method: 'PUT', path: `/v1/incoming/${id}/rounds/1?final=0`, token, type: 'application/octet-stream', body: bomb });
  assert.equal(r2.status, 413, JSON.stringify(r2.body));
  assert.match(r2.body.message ?? '', /limit of 16384 bytes \(limits\.roundArtifactBytes\)/);
  assert.deepEqual(reached, [], 'nothing refused may reach the engine');
});

async function framedStream(artifacts: [string, Buffer][], codec: 'none' | 'zstd'): Promise<Buffer> {
  const { writer, stream } = FrameWriter.toReadable();
  const parts: Buffer[] = [];
  const done = (async () => {
    for await (const c of stream) parts.push(c as Buffer);
  })();
  for (const [name, data] of artifacts) await writer.writeArtifact(name, codec, data);
  await writer.finish({ endSink: true });
  await done;
  return Buffer.concat(parts);
}

function chunks(b: Buffer, n: number): Buffer[] {
  const out = [];
  for (let i = 0; i < b.length; i += n) out.push(b.subarray(i, i + n));
  return out;
}

test('receiveRound and FrameReader enforce their limits as bytes arrive (413 errors)', async () => {
  const wire = await framedStream([['delta', randomBytes(50_000)]], 'none');
  let pulled = 0;
  async function* source() {
    for (const c of chunks(wire, 4096)) {
      pulled += c.length;
      yield c;
    }
  }
  await assert.rejects(
    (async () => {
      for await (const _ of receiveRound(source(), { roundBytes: 10_000, roundArtifactBytes: 1 << 20 })) void _;
    })(),
    (err: unknown) => {
      assert.ok(err instanceof TransferError);
      assert.equal(err.kind, 'oversize');
      assert.equal(err.httpStatus, 413);
      assert.match(err.message, /limits\.roundBytes/);
      return true;
    },
  );
  assert.ok(pulled <= 10_000 + 4096, `read ${pulled} bytes past a 10000-byte limit`);
  // A frame larger than the reader's frame limit, and a frame-level artifact limit.
  await assert.rejects(
    (async () => {
      for await (const _ of new FrameReader(Readable.from([wire]), { maxBlockSize: 1024 })) void _;
    })(),
    (err: unknown) => err instanceof TransferError && err.kind === 'oversize' && err.httpStatus === 413 && /exceeds the limit/.test(err.message),
  );
});
