// HTTP client of cloudletd for the CLI. Every failure becomes an ApiError carrying the
// server's own message (and hint), or, when nobody answers, a hint on what to check.
import { fetch, type Response } from 'undici';
import { ApiError, errorMessage } from '../util/errors.js';
import { dispatcherFor, readPem, tlsHint } from '../daemon/tls.js';

export const DEFAULT_TIMEOUT_MS = 30_000;
const UNREACHABLE_HINT = 'is the daemon running? `cloudlet lab status`';

export class CloudletClient {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    readonly token: string | undefined,
    readonly opts: { timeoutMs?: number; /** PEM file of the CA for an https URL (default: $CLOUDLET_CA). */ ca?: string } = {},
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    if (opts.ca) this.ca = readPem(opts.ca, 'CA file');
  }

  private readonly ca: Buffer | undefined;

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  delete<T>(path: string): Promise<T> {
    return this.request<T>('DELETE', path);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = this.baseUrl + (path.startsWith('/') ? path : `/${path}`);
    const timeoutMs = this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const signal = AbortSignal.timeout(timeoutMs);
    const send = () =>
      fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        // https: the certificate is verified against the CA (--ca / $CLOUDLET_CA), never skipped.
        dispatcher: dispatcherFor(url, this.ca),
      });
    let res: Response;
    try {
      try {
        res = await send();
      } catch (err) {
        // A kept-alive connection the server (or the lab's forwarder) closed just as we reused
        // it: a GET changes nothing, so it is sent once more on a fresh connection.
        if (method !== 'GET' || !isStaleConnection(err)) throw err;
        res = await send();
      }
    } catch (err) {
      throw transportError(url, this.baseUrl, err, timeoutMs);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        // A 2xx that is not JSON means we are not talking to cloudletd (proxy, wrong port).
        if (res.ok) throw new ApiError(url, res.status, `${method} ${url}: answer is not JSON: ${errorMessage(err)}`, { code: 'bad_response' });
      }
    }
    if (!res.ok) {
      const b = (parsed ?? {}) as { error?: unknown; message?: unknown; hint?: unknown };
      const message = typeof b.message === 'string' ? b.message : `HTTP ${res.status} ${res.statusText}: ${text.slice(0, 200)}`;
      throw new ApiError(url, res.status, message, {
        code: typeof b.error === 'string' ? b.error : undefined,
        hint: typeof b.hint === 'string' ? b.hint : undefined,
      });
    }
    return parsed as T;
  }
}

function isStaleConnection(err: unknown): boolean {
  const code = (err as { cause?: { code?: unknown } }).cause?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET';
}

function transportError(url: string, baseUrl: string, err: unknown, timeoutMs: number): ApiError {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return new ApiError(url, 0, `cloudletd at ${baseUrl} did not answer within ${timeoutMs} ms`, {
      code: 'timeout',
      hint: UNREACHABLE_HINT,
      cause: err,
    });
  }
  // undici reports "fetch failed" and hides the system error (ECONNREFUSED...) in `cause`.
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  const detail = cause && typeof cause.code === 'string' ? cause.code : errorMessage(cause ?? err);
  const tls = tlsHint(err);
  return new ApiError(url, 0, `cannot reach cloudletd at ${baseUrl}: ${detail}${tls ? ` (TLS: certificate not verified)` : ''}`, {
    code: tls ? 'tls_untrusted' : 'unreachable',
    hint: tls ?? UNREACHABLE_HINT,
    cause: err,
  });
}
