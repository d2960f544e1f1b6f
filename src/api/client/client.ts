// The one HTTP client of cloudletd's API, for everyone who calls it: the CLI, a daemon calling
// its peers (the migration core through its PeerTransport interface, peer health, the
// dashboard's views), overlay uploads, the benchmarks and the tests. Built on undici's
// request(): bodies stream both ways with backpressure (a round or an overlay file is never
// held whole in memory), JSON answers are parsed with the API's zod schema when the caller
// gives one, and every failure is an ApiError (errors.ts).
//
// Where it sits: src/api is the contract layer (schemas, OpenAPI), which any layer may import;
// the client speaks that contract, so it lives here too, and the CLI, the daemon, the bench
// and the images module use it directly. The migration core does not: it defines what it needs
// from a peer (migration/peer-transport.ts) and the daemon hands it clients of this module.
// That keeps the core free of HTTP, tokens and TLS (the daemon owns the deployment's token,
// CA and - soon - client certificates) and lets a test give the core a transport of its own.
//
// TLS: the connection pool for an origin comes from util/tls.ts (dispatcherFor), which knows
// the CA to trust for it (and the client certificate to show, when there is one): what that
// module learns reaches every caller here without a change.
//
// Two timeouts, because two kinds of caller need them:
// - timeoutMs: a deadline for the whole exchange (an operator's command waits this long at most);
// - silenceMs: give up when the server is silent this long - takes no byte of the body, sends
//   no answer, or stops in the middle of one - however long a busy exchange takes (a round of
//   a large service on a slow link takes minutes; a cut link must not hold a handoff forever).
import type { Readable } from 'node:stream';
import type { IncomingHttpHeaders } from 'node:http';
import { request, type Dispatcher } from 'undici';
import type { ZodType, ZodTypeDef } from 'zod';
import { authHeadersFor, dispatcherFor } from '../../util/tls.js';
import { answerError, badAnswer, isStaleConnection, schemaMismatch, transportError, type CallSite, type Callee } from './errors.js';

export type { Callee } from './errors.js';

/** An operator's call (the CLI, a benchmark) waits this long unless it says otherwise. */
export const OPERATOR_TIMEOUT_MS = 30_000;

/** The API's schema of an answer (input unknown: it is what came over the wire). */
export type AnswerSchema<T> = ZodType<T, ZodTypeDef, unknown>;

/** A request body that is sent as it is produced. */
export type StreamBody = Readable | AsyncIterable<Uint8Array>;

export interface ApiClientOptions {
  /** http(s)://host:port of a cloudletd (a trailing slash is ignored). */
  baseUrl: string;
  /** The deployment's bearer token; none for the unauthenticated routes. */
  token?: string | undefined;
  /** Deadline of one whole exchange, in ms. */
  timeoutMs?: number;
  /** Give up on a server silent this long, in ms (undici's headers and body timeouts). */
  silenceMs?: number;
  /** PEM of the CA for an https URL; default: the one util/tls.ts knows for the origin. */
  ca?: Buffer;
  /** Who is called: the wording and codes of the errors (default cloudletd). */
  callee?: Callee;
}

export interface RequestOptions<T> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  /** Sent as JSON. */
  json?: unknown;
  schema?: AnswerSchema<T>;
}

export interface UploadOptions<T> {
  path: string;
  body: StreamBody;
  method?: 'PUT' | 'POST';
  contentType: string;
  /** Sent as content-length when known (a file); else the body goes chunked. */
  contentLength?: number;
  schema?: AnswerSchema<T>;
  /** This upload's own silence limit (a server that loads the file before it answers). */
  silenceMs?: number;
}

export interface Uploaded<T> {
  response: T;
  status: number;
  /** Bytes of the body sent. */
  bytes: number;
  /** Until the last byte was handed to the socket: excludes the server's work after it. */
  uploadMs: number;
  /** Until the answer was read. */
  ms: number;
}

export interface StreamedAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  /** Read it to the end (or destroy it): the connection is not reused before. */
  body: Readable;
}

/** One exchange as sent. */
interface Exchange {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string | StreamBody | undefined;
  silenceMs?: number | undefined;
}

export class ApiClient {
  readonly baseUrl: string;
  readonly token: string | undefined;
  readonly timeoutMs: number | undefined;
  readonly silenceMs: number | undefined;
  private readonly ca: Buffer | undefined;
  private readonly callee: Callee;

  constructor(o: ApiClientOptions) {
    const u = new URL(o.baseUrl); // refuses a malformed URL here, not at the first call
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`not an http(s) URL: ${o.baseUrl}`);
    this.baseUrl = o.baseUrl.replace(/\/+$/, '');
    this.token = o.token;
    this.timeoutMs = o.timeoutMs;
    this.silenceMs = o.silenceMs;
    this.ca = o.ca;
    this.callee = o.callee ?? 'cloudletd';
  }

  url(path: string): string {
    return this.baseUrl + (path.startsWith('/') ? path : `/${path}`);
  }

  get<T = unknown>(path: string, schema?: AnswerSchema<T>): Promise<T> {
    return this.request<T>({ method: 'GET', path, ...(schema ? { schema } : {}) });
  }

  post<T = unknown>(path: string, json: unknown, schema?: AnswerSchema<T>): Promise<T> {
    return this.request<T>({ method: 'POST', path, json, ...(schema ? { schema } : {}) });
  }

  delete<T = unknown>(path: string, schema?: AnswerSchema<T>): Promise<T> {
    return this.request<T>({ method: 'DELETE', path, ...(schema ? { schema } : {}) });
  }

  /** A JSON call. A GET on a connection closed under it is sent once more (it changes nothing). */
  async request<T>(o: RequestOptions<T>): Promise<T> {
    const body = o.json === undefined ? undefined : JSON.stringify(o.json);
    const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
    const send = () => this.send({ method: o.method, path: o.path, headers, body });
    const { at, res, text } = await send().catch((err: unknown) => {
      if (o.method !== 'GET' || !isStaleConnection(err)) throw err;
      return send();
    });
    return this.answer(at, res.statusCode, text, o.schema);
  }

  /** Streams `body` to the server as it is produced; the answer is JSON. */
  async upload<T = unknown>(o: UploadOptions<T>): Promise<Uploaded<T>> {
    const t0 = performance.now();
    const counted = countingBody(o.body);
    const headers: Record<string, string> = { 'content-type': o.contentType };
    if (o.contentLength !== undefined) headers['content-length'] = String(o.contentLength);
    try {
      const { at, res, text } = await this.send({ method: o.method ?? 'PUT', path: o.path, headers, body: counted.iterable, silenceMs: o.silenceMs });
      // The server may answer before it read it all (a refusal): that answer is the result.
      const response = this.answer(at, res.statusCode, text, o.schema);
      const ms = performance.now() - t0;
      return { response, status: res.statusCode, bytes: counted.bytes(), uploadMs: counted.doneAt() === null ? ms : counted.doneAt()! - t0, ms };
    } catch (err) {
      // The body's own failure (a half-written round) is the cause to report, not the aborted request.
      throw counted.failure() ?? err;
    } finally {
      counted.release();
    }
  }

  /** A call whose answer is read as a stream (server-sent events, a large download). */
  async stream(o: { method?: 'GET' | 'POST'; path: string; json?: unknown }): Promise<StreamedAnswer> {
    const body = o.json === undefined ? undefined : JSON.stringify(o.json);
    const headers: Record<string, string> = { accept: '*/*', ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
    const { at, res, signal } = await this.dispatch({ method: o.method ?? 'GET', path: o.path, headers, body });
    if (res.statusCode < 200 || res.statusCode >= 300) throw answerError(at, res.statusCode, await this.readText(at, res, signal));
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  /** One exchange, its answer read whole (JSON answers are small). */
  private async send(o: Exchange) {
    const { at, res, signal } = await this.dispatch(o);
    return { at, res, text: await this.readText(at, res, signal) };
  }

  private async dispatch(o: Exchange) {
    const url = this.url(o.path);
    const at: CallSite = { url, baseUrl: this.baseUrl, method: o.method, callee: this.callee };
    const silenceMs = o.silenceMs ?? this.silenceMs;
    const signal = this.timeoutMs === undefined ? undefined : AbortSignal.timeout(this.timeoutMs);
    const headers: Record<string, string> = { accept: 'application/json', ...o.headers };
    Object.assign(headers, authHeadersFor(url, this.token));
    try {
      const res = await request(url, {
        method: o.method as Dispatcher.HttpMethod,
        headers,
        // undici takes async iterables too (its types list only Readable): a generator's
        // next chunk is pulled once the last one was written to the socket.
        body: o.body as string | Readable | undefined,
        // https: verified against the CA util/tls.ts gives for this origin (never skipped).
        dispatcher: dispatcherFor(url, this.ca),
        ...(silenceMs === undefined ? {} : { headersTimeout: silenceMs, bodyTimeout: silenceMs }),
        ...(signal ? { signal } : {}),
      });
      return { at, res, signal };
    } catch (err) {
      throw transportError(at, err, { timedOut: signal?.aborted === true, timeoutMs: this.timeoutMs ?? silenceMs });
    }
  }

  private async readText(at: CallSite, res: Dispatcher.ResponseData, signal: AbortSignal | undefined): Promise<string> {
    try {
      return await res.body.text();
    } catch (err) {
      // Silent, cut or out of time in the middle of the answer.
      throw transportError(at, err, { timedOut: signal?.aborted === true, timeoutMs: this.timeoutMs ?? this.silenceMs });
    }
  }

  private answer<T>(at: CallSite, status: number, text: string, schema: AnswerSchema<T> | undefined): T {
    if (status < 200 || status >= 300) throw answerError(at, status, text);
    let parsed: unknown = undefined;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw badAnswer(at, status, `answer is not JSON: ${(err as Error).message}`, err);
      }
    }
    if (!schema) return parsed as T;
    const checked = schema.safeParse(parsed);
    if (!checked.success) throw schemaMismatch(at, status, checked.error);
    return checked.data;
  }
}

/**
 * The body as undici pulls it, counting bytes and noting when the last one was taken (undici
 * takes the next chunk once the previous one was written to the socket). A body that fails
 * is remembered, so that its error - not the aborted request's - is the one reported; a body
 * the server did not read to the end (it answered first) is destroyed, so its producer stops.
 */
function countingBody(body: StreamBody) {
  let bytes = 0;
  let doneAt: number | null = null;
  let failure: unknown = null;
  async function* iterable(): AsyncGenerator<Uint8Array> {
    try {
      for await (const chunk of body as AsyncIterable<Uint8Array | string>) {
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        bytes += buf.byteLength;
        yield buf;
      }
    } catch (err) {
      failure = err;
      throw err;
    }
    doneAt = performance.now();
  }
  return {
    iterable: iterable(),
    bytes: () => bytes,
    doneAt: () => doneAt,
    failure: () => failure,
    release: () => {
      const r = body as Partial<Readable>;
      if (doneAt === null && typeof r.destroy === 'function' && !r.destroyed) r.destroy();
    },
  };
}
