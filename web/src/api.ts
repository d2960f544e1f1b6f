// Calls to cloudletd's API from the page: the deployment token (sessionStorage, or the URL
// fragment #token=... which never reaches a server), JSON requests with the bearer header,
// and errors that tell a refused token (401) apart from everything else.
import type { ApiErrorBody } from './types.js';

const TOKEN_KEY = 'cloudlet.token';

export class ApiCallError extends Error {
  constructor(
    readonly status: number,
    readonly path: string,
    readonly body: ApiErrorBody,
  ) {
    super(`${path}: ${status === 0 ? 'no answer' : `HTTP ${status}`}${body.message ? `: ${body.message}` : ''}`);
  }
  get unauthorized(): boolean {
    return this.status === 401;
  }
}

/**
 * Takes a token from the fragment (#token=...) into sessionStorage and removes the fragment
 * from the address bar, so that it is neither bookmarked nor shown on screen.
 */
export function adoptFragmentToken(): void {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  setToken(decodeURIComponent(m[1]!));
  history.replaceState(null, '', location.pathname + location.search);
}

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Absolute API path; the page is served at /dashboard/ by the same daemon. */
async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = getToken();
  // Without a token the call is still made: the daemon's 401 is what the page reports.
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch (err) {
    throw new ApiCallError(0, path, { message: err instanceof Error ? err.message : String(err) });
  }
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { message: text.slice(0, 300) };
  }
  if (!res.ok) throw new ApiCallError(res.status, path, (parsed ?? {}) as ApiErrorBody);
  return parsed as T;
}

export const api = {
  get: <T>(path: string) => call<T>('GET', path),
  post: <T>(path: string, body: unknown) => call<T>('POST', path, body),
};

/**
 * URL of a migration's event stream. EventSource cannot send an Authorization header, so the
 * token goes in the query: the daemon accepts that on this route only.
 */
export function eventsUrl(id: string): string {
  const token = getToken();
  return `/v1/migrations/${encodeURIComponent(id)}/events${token ? `?token=${encodeURIComponent(token)}` : ''}`;
}
