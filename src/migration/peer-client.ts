// HTTP client from one cloudletd to a peer: JSON calls, and streaming uploads for rounds.
// Uses node:http directly (not fetch) so that a round's body is streamed with backpressure
// and the upload's progress and duration can be measured.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ApiError, errorMessage } from '../util/errors.js';
import { authHeadersFor, httpsOptionsFor, tlsHint } from '../util/tls.js';

export class PeerClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
    private readonly timeoutMs = 120_000,
  ) {}

  get<T>(path: string): Promise<T> {
    return this.json<T>('GET', path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.json<T>('POST', path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.json<T>('DELETE', path);
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const res = await this.send(method, path, payload === undefined ? null : { 'content-type': 'application/json' }, async (req) => {
      req.end(payload);
    });
    return (await readJson(res, this.url(path))) as T;
  }

  /**
   * PUT of a stream body; resolves with the peer's JSON answer, and the time the body took
   * to leave (until the last byte was handed to the socket), which excludes the peer's work.
   */
  async upload<T>(path: string, body: Readable): Promise<{ response: T; uploadMs: number }> {
    const t0 = performance.now();
    let uploadMs = 0;
    const res = await this.send('PUT', path, { 'content-type': 'application/octet-stream' }, async (req) => {
      await pipeline(body, req);
      uploadMs = performance.now() - t0;
    });
    const response = (await readJson(res, this.url(path))) as T;
    if (uploadMs === 0) uploadMs = performance.now() - t0; // the peer answered before reading it all
    return { response, uploadMs };
  }

  private url(path: string): string {
    return new URL(path, this.baseUrl).toString();
  }

  private send(
    method: string,
    path: string,
    headers: Record<string, string> | null,
    write: (req: ReturnType<typeof httpRequest>) => Promise<void>,
  ): Promise<IncomingMessage> {
    const url = this.url(path);
    return new Promise((resolve, reject) => {
      const opts = {
        method,
        headers: { ...authHeadersFor(url, this.token), ...(headers ?? {}) },
        timeout: this.timeoutMs,
      };
      // https peers: certificate verified against the deployment's CA (daemon/tls.ts).
      const req = url.startsWith('https:') ? httpsRequest(url, { ...opts, ...httpsOptionsFor(url) }) : httpRequest(url, opts);
      req.on('response', resolve);
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) =>
        reject(new ApiError(url, 0, `peer ${this.baseUrl} unreachable: ${errorMessage(err)}`, { code: 'peer_unreachable', cause: err, hint: tlsHint(err) })),
      );
      write(req).catch((err: unknown) => {
        req.destroy(err as Error);
      });
    });
  }
}

async function readJson(res: IncomingMessage, url: string): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { message: text.slice(0, 500) }; // not JSON (a proxy's error page): keep the text
  }
  const status = res.statusCode ?? 0;
  if (status < 200 || status >= 300) {
    const b = (body ?? {}) as { error?: string; message?: string; hint?: string };
    throw new ApiError(url, status, `peer answered ${status}: ${b.message ?? 'no message'}`, {
      ...(b.error ? { code: b.error } : {}),
      ...(b.hint ? { hint: b.hint } : {}),
    });
  }
  return body;
}
