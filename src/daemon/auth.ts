// Bearer-token authentication for every route except those marked public (health checks).
import { createHash, timingSafeEqual } from 'node:crypto';
import { CloudletError } from '../util/errors.js';

export class UnauthorizedError extends CloudletError {
  constructor(message: string) {
    super('unauthorized', message, {
      httpStatus: 401,
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

/** Throws UnauthorizedError unless the header carries the expected token. */
export function checkAuthorization(expected: string, header: string | undefined): void {
  const presented = bearerToken(header);
  if (presented === null) throw new UnauthorizedError('missing bearer token (Authorization: Bearer <token>)');
  if (!tokenMatches(expected, presented)) throw new UnauthorizedError('invalid bearer token');
}
