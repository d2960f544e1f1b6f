// Bearer-token authentication for every route except those marked public (health checks).
import { createHash, timingSafeEqual } from 'node:crypto';
import { CloudletError } from '../util/errors.js';

export class UnauthorizedError extends CloudletError {
  constructor(message: string) {
    super('unauthorized', message, {
      kind: 'unauthenticated',
      hint: 'pass the deployment token: --token, $CLOUDLET_TOKEN or the lab token',
    });
  }
}

/** Extracts the token from an Authorization header; null when absent or not a Bearer one. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}

/**
 * Constant-time comparison. Both sides are hashed first so that the comparison does not
 * leak the expected token's length either (timingSafeEqual needs equal lengths).
 */
export function tokenMatches(expected: string, presented: string): boolean {
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(presented).digest();
  return timingSafeEqual(a, b);
}

/**
 * Throws UnauthorizedError unless the header carries the expected token. `queryToken` is the
 * `token` query parameter, passed ONLY for routes that allow it (server-sent events: a
 * browser's EventSource cannot send headers); the header wins when both are present.
 */
export function checkAuthorization(expected: string, header: string | undefined, queryToken?: string): void {
  if (header === undefined && queryToken !== undefined) {
    if (!tokenMatches(expected, queryToken)) throw new UnauthorizedError('invalid token (query parameter)');
    return;
  }
  const presented = bearerToken(header);
  if (presented === null) throw new UnauthorizedError('missing bearer token (Authorization: Bearer <token>)');
  if (!tokenMatches(expected, presented)) throw new UnauthorizedError('invalid bearer token');
}

/** The `token` query parameter of a request (a repeated or non-string one counts as absent). */
export function queryTokenOf(query: unknown): string | undefined {
  const t = query && typeof query === 'object' ? (query as Record<string, unknown>).token : undefined;
  return typeof t === 'string' ? t : undefined;
}

/** A URL with its token query parameter masked: request URLs are logged. */
export function redactUrlToken(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1REDACTED');
}

/** Fastify's default request log fields, with the URL's token masked. */
export function logSafeRequest(req: { method: string; url: string; host?: string; ip?: string; socket?: { remotePort?: number } }): Record<string, unknown> {
  return { method: req.method, url: redactUrlToken(req.url), host: req.host, remoteAddress: req.ip, remotePort: req.socket?.remotePort };
}
