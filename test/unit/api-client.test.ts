// The API client (src/api/client) against a real HTTP server on loopback: streamed uploads
// that never hold the body whole, error answers that keep their kind, silent servers given up
// on, answers checked against the API's schemas, and streamed answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { ApiClient } from '../../src/api/client/client.js';
import { NodeInfoSchema } from '../../src/api/schemas/node.js';
import { ApiError } from '../../src/util/errors.js';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

async function serve(t: { after: (fn: () => Promise<void> | void) => void }, handler: Handler): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

test('a large upload is streamed: the sender never runs far ahead of what the server read', { timeout: 60_000 }, async (t) => {
  const MiB = 1 << 20;
  const total = 128 * MiB;
  let received = 0;
  const url = await serve(t, (req, res) => {
    assert.equal(req.headers.authorization, 'Bearer tok');
    assert.equal(req.headers['content-type'], 'application/octet-stream');
    // A slow reader: a pause every 8 MiB, so a client that buffered would race ahead.
    let sincePause = 0;
    req.on('data', (d: Buffer) => {
      received += d.length;
      sincePause += d.length;
      if (sincePause >= 8 * MiB) {
        sincePause = 0;
        req.pause();
        setTimeout(() => req.resume(), 20);
      }
    });
    req.on('end', () => json(res, 200, { bytes: received }));
  });
  let produced = 0;
  let maxLead = 0;
  async function* body(): AsyncGenerator<Uint8Array> {
    const chunk = Buffer.alloc(MiB, 0x5a);
    while (produced < total) {
      maxLead = Math.max(maxLead, produced - received);
      produced += chunk.length;
      yield chunk;
    }
  }
  const client = new ApiClient({ baseUrl: url + '/', token: 'tok', silenceMs: 10_000 });
  const up = await client.upload<{ bytes: number }>({ path: '/v1/x', body: body(), contentType: 'application/octet-stream' });
  assert.equal(up.response.bytes, total);
  assert.equal(up.bytes, total);
  assert.equal(up.status, 200);
  assert.ok(up.uploadMs > 0 && up.uploadMs <= up.ms, `uploadMs ${up.uploadMs}, ms ${up.ms}`);
  // Socket buffers on both sides hold a few MiB; a body held whole would lead by ~128 MiB.
  assert.ok(maxLead < 24 * MiB, `the sender ran ${Math.round(maxLead / MiB)} MiB ahead of the reader`);
});

test('an error answer becomes an ApiError with its code, hint and the kind of its status', async (t) => {
  const url = await serve(t, (req, res) => {
    if (req.url === '/conflict') return json(res, 409, { error: 'image_missing', message: 'no such image here', hint: 'ship it first' });
    if (req.url === '/teapot') return json(res, 418, { error: 'odd', message: 'odd status' });
    res.writeHead(502, { 'content-type': 'text/html' });
    res.end('<html>bad gateway</html>');
  });
  const cli = new ApiClient({ baseUrl: url, timeoutMs: 5000 });
  await assert.rejects(cli.post('/conflict', { a: 1 }), (err: unknown) => {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 409);
    assert.equal(err.code, 'image_missing');
    assert.equal(err.errorKind, 'conflict');
    assert.equal(err.hint, 'ship it first');
    assert.equal(err.message, 'no such image here');
    return true;
  });
  await assert.rejects(cli.get('/teapot'), (err: unknown) => err instanceof ApiError && err.errorKind === 'invalid-argument' && err.code === 'odd');
  // Not cloudletd's error body (a proxy's page): the text is kept, the kind still from the status.
  await assert.rejects(cli.get('/proxy'), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.errorKind, 'upstream');
    assert.match(err.message, /HTTP 502 Bad Gateway: <html>bad gateway/);
    return true;
  });
  // A peer's wording: what the faults matrix and the handoff's report show.
  const peer = new ApiClient({ baseUrl: url, silenceMs: 5000, callee: 'peer' });
  await assert.rejects(peer.delete('/conflict'), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.message, 'peer answered 409: no such image here');
    assert.equal(err.errorKind, 'conflict');
    return true;
  });
});

test('a refusal answered before the body was read wins, and the body stops being produced', async (t) => {
  const url = await serve(t, (req, res) => {
    // Refused on its headers alone, as a size limit does; the body is never read.
    json(res, 413, { error: 'overlay_too_large', message: `${req.headers['content-length']} bytes is over the limit` });
  });
  const body = Readable.from(
    (function* () {
      for (let i = 0; i < 4096; i++) yield Buffer.alloc(64 * 1024, i);
    })(),
  );
  const client = new ApiClient({ baseUrl: url, silenceMs: 5000 });
  await assert.rejects(
    client.upload({ path: '/v1/overlays', body, contentType: 'application/octet-stream', contentLength: 4096 * 64 * 1024 }),
    (err: unknown) => {
      assert.ok(err instanceof ApiError, String(err));
      assert.equal(err.status, 413);
      assert.equal(err.errorKind, 'too-large');
      assert.equal(err.code, 'overlay_too_large');
      return true;
    },
  );
  assert.ok(body.destroyed, 'the body is destroyed once the answer is in');
});

test('a silent server is given up on after silenceMs, also in the middle of an upload', { timeout: 30_000 }, async (t) => {
  const held: http.ServerResponse[] = [];
  const url = await serve(t, (req, res) => {
    held.push(res); // never answered
    if (req.url === '/stall-upload') req.pause(); // never read either
  });
  const peer = new ApiClient({ baseUrl: url, silenceMs: 1000, callee: 'peer' });
  let t0 = performance.now();
  await assert.rejects(peer.get('/v1/info'), (err: unknown) => {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 0);
    assert.equal(err.code, 'peer_unreachable');
    assert.equal(err.errorKind, 'upstream');
    assert.match(err.message, /unreachable: no answer within 1000 ms/);
    return true;
  });
  let waited = performance.now() - t0;
  assert.ok(waited >= 900 && waited < 5000, `gave up after ${Math.round(waited)} ms`);

  // An endless body the server stops reading: the upload stalls, then is given up.
  async function* endless(): AsyncGenerator<Uint8Array> {
    for (;;) yield Buffer.alloc(256 * 1024);
  }
  t0 = performance.now();
  await assert.rejects(peer.upload({ path: '/stall-upload', body: endless(), contentType: 'application/octet-stream' }), (err: unknown) => {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.code, 'peer_unreachable');
    return true;
  });
  waited = performance.now() - t0;
  assert.ok(waited >= 900 && waited < 5000, `upload given up after ${Math.round(waited)} ms`);

  // An operator's client: a deadline for the whole call, and the hint on what to check.
  const cli = new ApiClient({ baseUrl: url, timeoutMs: 300 });
  await assert.rejects(cli.get('/v1/info'), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, 'timeout');
    assert.match(err.message, /did not answer within 300 ms/);
    assert.match(err.hint ?? '', /daemon running/);
    return true;
  });
});

test('an answer that does not match its schema is refused, naming the field', async (t) => {
  const url = await serve(t, (req, res) => {
    if (req.url === '/v1/info') return json(res, 200, { node: 5, version: '1' });
    if (req.url === '/text') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('hello');
    }
    json(res, 200, { ok: true });
  });
  const client = new ApiClient({ baseUrl: url, timeoutMs: 5000 });
  await assert.rejects(client.get('/v1/info', NodeInfoSchema), (err: unknown) => {
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.code, 'bad_response');
    assert.equal(err.errorKind, 'upstream');
    assert.equal(err.status, 200);
    assert.match(err.message, /schema \(node: Expected string, received number/);
    return true;
  });
  await assert.rejects(client.get('/text'), /answer is not JSON/);
  // Without a schema the answer is taken as it is.
  assert.deepEqual(await client.get('/other'), { ok: true });
});

test('an answer can be read as a stream, chunk by chunk', async (t) => {
  let release: () => void = () => undefined;
  const url = await serve(t, (req, res) => {
    if (req.url !== '/events') return json(res, 404, { error: 'not_found', message: 'no route' });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: one\n\n');
    release = () => res.end('data: two\n\n');
  });
  const client = new ApiClient({ baseUrl: url, silenceMs: 5000 });
  const answer = await client.stream({ path: '/events' });
  assert.equal(answer.status, 200);
  const it = answer.body[Symbol.asyncIterator]();
  // The first event arrives while the server still holds the rest back.
  assert.equal(String((await it.next()).value), 'data: one\n\n');
  release();
  assert.equal(String((await it.next()).value), 'data: two\n\n');
  assert.equal((await it.next()).done, true);
  await assert.rejects(client.stream({ path: '/nope' }), (err: unknown) => err instanceof ApiError && err.errorKind === 'not-found');
});
