// The byte meter: counts what flows through, times first byte to last.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ByteMeter, mbitToBytesPerSecond } from '../../src/transfer/meter.js';

test('with an injected clock the rate is exact and leaves out the first chunk', async () => {
  let now = 10;
  const meter = new ByteMeter({ clock: () => now });
  assert.deepEqual(meter.reading(), { bytes: 0, elapsedSeconds: 0, bytesPerSecond: 0, bitsPerSecond: 0 });
  meter.write(Buffer.alloc(1000));
  now = 11;
  meter.write(Buffer.alloc(500));
  now = 12;
  meter.write(Buffer.alloc(1500));
  const r = meter.reading();
  assert.equal(r.bytes, 3000);
  assert.equal(r.elapsedSeconds, 2);
  assert.equal(r.bytesPerSecond, 1000);
  assert.equal(r.bitsPerSecond, 8000);
  now = 14;
  meter.markEnd();
  assert.equal(meter.reading().elapsedSeconds, 4);
  assert.equal(mbitToBytesPerSecond(100), 12.5e6);
});

test('a meter in a real pipeline passes every byte through unchanged', async () => {
  const meter = new ByteMeter({ startNow: true });
  const data = Buffer.from('x'.repeat(100_000));
  let out = 0;
  await pipeline(
    Readable.from([data.subarray(0, 30_000), data.subarray(30_000)]),
    meter,
    new Writable({
      write(c: Buffer, _e, cb) {
        out += c.length;
        setTimeout(cb, 5);
      },
    }),
  );
  assert.equal(out, data.length);
  const r = meter.reading();
  assert.equal(r.bytes, data.length);
  assert.ok(r.elapsedSeconds > 0 && r.bytesPerSecond > 0, JSON.stringify(r));
});
