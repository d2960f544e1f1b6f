// The rest of a failed request body is read before the error is answered (daemon/drain-request.ts),
// within a byte and a time bound; past either bound the request is destroyed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { consumeRequestBody, drainRequest } from '../../src/daemon/drain-request.js';

test('a body that ends within the bounds is read to its end and not destroyed', async () => {
  // autoDestroy off, so that a destroy could only come from drainRequest.
  const body = new PassThrough({ autoDestroy: false });
  const drained = drainRequest(body, { maxBytes: 1024, timeoutMs: 5_000 });
  body.write(Buffer.alloc(500));
  body.end(Buffer.alloc(500));
  await drained;
  assert.equal(body.readableEnded, true);
  assert.equal(body.destroyed, false);
});

test('a body longer than maxBytes is destroyed once past the bound', async () => {
  const body = new PassThrough();
  const drained = drainRequest(body, { maxBytes: 1024, timeoutMs: 5_000 });
  body.write(Buffer.alloc(1000));
  body.write(Buffer.alloc(1000));
  await drained;
  assert.equal(body.destroyed, true);
  assert.equal(body.readableEnded, false);
});

test('a body that stops sending is destroyed after timeoutMs', async () => {
  const body = new PassThrough();
  const started = Date.now();
  body.write(Buffer.alloc(10));
  await drainRequest(body, { maxBytes: 1024, timeoutMs: 200 });
  assert.equal(body.destroyed, true);
  assert.ok(Date.now() - started >= 190, 'not before the timeout');
});

test('consumeRequestBody: the sender of a large body reads the error, over a real connection', async () => {
  const server = createServer((req, res) => {
    consumeRequestBody(req, { maxBytes: 64 * 2 ** 20, timeoutMs: 10_000 }, async (chunks) => {
      for await (const _chunk of chunks) throw new Error('bad frame in the first chunk');
      return 'unreachable';
    }).then(
      () => res.end('ok'),
      (e: Error) => {
        res.statusCode = 400;
        res.end(e.message);
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    // Resolves when the request is closed, so that a reset after the answer is seen too.
    const answer = await new Promise<{ status: number; text: string; error?: string }>((resolve) => {
      const seen: { status: number; text: string; error?: string } = { status: 0, text: '' };
      const req = request({ host: '127.0.0.1', port, method: 'PUT', path: '/', agent: false }, (res) => {
        seen.status = res.statusCode ?? 0;
        res.setEncoding('utf8');
        res.on('data', (c: string) => (seen.text += c));
      });
      req.on('error', (e) => (seen.error = e.message));
      req.on('close', () => resolve(seen));
      // 16 MiB: far more than the socket buffers hold, so the server's error comes while the
      // client is still sending.
      const block = Buffer.alloc(2 ** 20, 7);
      let sent = 0;
      const pump = () => {
        while (sent < 16) {
          sent++;
          if (!req.write(block)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    assert.equal(answer.error, undefined, 'the connection was not reset');
    assert.equal(answer.status, 400);
    assert.equal(answer.text, 'bad frame in the first chunk');
  } finally {
    server.close();
  }
});
