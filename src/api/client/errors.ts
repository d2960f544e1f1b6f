// How a failed call of cloudletd's API becomes an ApiError: an error answer keeps the
// server's code, message and hint, and its kind comes from the status (kindFromHttpStatus,
// inside ApiError); no answer at all (refused, reset, silent, TLS refused) is status 0,
// kind upstream, with what to check. Who was called decides the wording: an operator's
// client names cloudletd and says to check the daemon, a peer's names the peer.
import { STATUS_CODES } from 'node:http';
import type { ZodError } from 'zod';
import { ApiError, errorMessage } from '../../util/errors.js';
import { tlsHint } from '../../util/tls.js';

/** Who the client calls: the wording of its errors (and the codes tests and the CLI know). */
export type Callee = 'cloudletd' | 'peer';

const UNREACHABLE_HINT = 'is the daemon running? `cloudlet lab status`';

/** undici's own timeouts (silence while waiting for the answer or its body, or the connect). */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

export interface CallSite {
  url: string;
  baseUrl: string;
  method: string;
  callee: Callee;
}

/** An answer with a status outside 2xx: the body is cloudletd's `{error, message, hint}` when it is one. */
export function answerError(at: CallSite, status: number, text: string): ApiError {
  let body: { error?: unknown; message?: unknown; hint?: unknown } = {};
  try {
    const parsed: unknown = text ? JSON.parse(text) : null;
    if (parsed && typeof parsed === 'object') body = parsed as typeof body;
  } catch {
    // not JSON (a proxy's error page): the text goes into the message below
  }
  const serverMessage = typeof body.message === 'string' ? body.message : undefined;
  const message =
    at.callee === 'peer'
      ? `peer answered ${status}: ${serverMessage ?? (text.slice(0, 500) || 'no message')}`
      : (serverMessage ?? `HTTP ${status} ${STATUS_CODES[status] ?? ''}: ${text.slice(0, 200)}`);
  return new ApiError(at.url, status, message, {
    ...(typeof body.error === 'string' ? { code: body.error } : {}),
    ...(typeof body.hint === 'string' ? { hint: body.hint } : {}),
  });
}

/** A 2xx whose body is not JSON, or not the shape the API's schema says: we are not talking to cloudletd (or to another version). */
export function badAnswer(at: CallSite, status: number, why: string, cause?: unknown): ApiError {
  return new ApiError(at.url, status, `${at.method} ${at.url}: ${why}`, { code: 'bad_response', kind: 'upstream', cause });
}

export function schemaMismatch(at: CallSite, status: number, err: ZodError): ApiError {
  const issues = err.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    .join('; ');
  return badAnswer(at, status, `answer does not match the API's schema (${issues})`, err);
}

/** No answer: refused, reset, timed out or the certificate refused. */
export function transportError(at: CallSite, err: unknown, o: { timedOut: boolean; timeoutMs: number | undefined }): ApiError {
  const code = (err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code;
  const timedOut = o.timedOut || (typeof code === 'string' && TIMEOUT_CODES.has(code));
  const tls = tlsHint(err);
  const detail = timedOut ? `no answer within ${o.timeoutMs ?? '?'} ms` : typeof code === 'string' ? `${code}: ${errorMessage(err)}` : errorMessage(err);
  if (at.callee === 'peer') {
    return new ApiError(at.url, 0, `peer ${at.baseUrl} unreachable: ${detail}`, { code: 'peer_unreachable', cause: err, ...(tls ? { hint: tls } : {}) });
  }
  if (timedOut) {
    return new ApiError(at.url, 0, `cloudletd at ${at.baseUrl} did not answer within ${o.timeoutMs ?? '?'} ms`, {
      code: 'timeout',
      hint: UNREACHABLE_HINT,
      cause: err,
    });
  }
  return new ApiError(at.url, 0, `cannot reach cloudletd at ${at.baseUrl}: ${detail}${tls ? ' (TLS: certificate not verified)' : ''}`, {
    code: tls ? 'tls_untrusted' : 'unreachable',
    hint: tls ?? UNREACHABLE_HINT,
    cause: err,
  });
}

/** A kept-alive connection the server (or the lab's forwarder) closed just as it was reused. */
export function isStaleConnection(err: unknown): boolean {
  const code = (err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code;
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET';
}
