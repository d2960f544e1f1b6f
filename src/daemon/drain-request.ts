// What is left of a request body when a route fails part-way through reading it. Destroying
// the request would close the connection with unread bytes in its receive queue, and the
// kernel then answers with a reset, which can reach the sender before it has read our error
// answer (over TLS it did: the fault matrix's corrupt frame came back as ECONNRESET instead
// of the CRC error). So the rest is read and thrown away first, up to a bound in bytes and
// time that a hostile peer cannot stretch; past the bound the request is destroyed after all.
import { Readable } from 'node:stream';
import { UsageError } from '../util/errors.js';

export interface DrainBounds {
  maxBytes: number;
  timeoutMs: number;
}

/** Reads `body` to its end and discards it; resolves once ended, destroyed, or past a bound. */
export function drainRequest(body: Readable, bounds: DrainBounds): Promise<void> {
  if (body.destroyed || body.readableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    let bytes = 0;
    const finish = (giveUp: boolean) => {
      clearTimeout(timer);
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('close', onEnd);
      body.off('error', onEnd);
      if (giveUp) body.destroy();
      resolve();
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > bounds.maxBytes) finish(true);
    };
    const onEnd = () => finish(false);
    const timer = setTimeout(() => finish(true), bounds.timeoutMs);
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('close', onEnd);
    body.once('error', onEnd);
    body.resume();
  });
}

/** Iterates `body` without destroying it when the reader stops early (see drainRequest). */
function keepOnReturn(body: Readable): AsyncIterable<Buffer> {
  return { [Symbol.asyncIterator]: () => body.iterator({ destroyOnReturn: false }) as AsyncIterator<Buffer> };
}

/**
 * Runs `consume` over the request body; when it fails, the unread rest of the body is drained
 * (within `bounds`) before the error goes on to become the answer the sender reads.
 */
export async function consumeRequestBody<T>(body: unknown, bounds: DrainBounds, consume: (chunks: AsyncIterable<Buffer>) => Promise<T>): Promise<T> {
  // Only an application/octet-stream body reaches a route as a stream (routes-migrations.ts).
  if (!(body instanceof Readable)) throw new UsageError('the body must be a framed stream sent as application/octet-stream');
  try {
    return await consume(keepOnReturn(body));
  } catch (e) {
    await drainRequest(body, bounds);
    throw e;
  }
}

/** How long a failed round's remaining body is read before the connection is cut. */
const ROUND_DRAIN_MS = 10_000;

/** The drain bound of a framed round upload: its configured size limit, and ten seconds. */
export function roundDrainBounds(limits: { roundBytes: number }): DrainBounds {
  return { maxBytes: limits.roundBytes, timeoutMs: ROUND_DRAIN_MS };
}
