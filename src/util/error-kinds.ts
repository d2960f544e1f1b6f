// The closed set of error kinds and the one place that maps them to HTTP statuses.
// A CloudletError's `code` is the fine-grained detail (image_missing, transfer_crc...); its
// kind says what a caller can do about it (fix the input, retry later, wait for a peer...).
// The daemon answers with kindToHttpStatus(kind); API clients turn a status back into a kind
// with kindFromHttpStatus, so a failure keeps its kind across cloudlets.

/** Every kind, in status order; the union type below is derived from it. */
export const ERROR_KINDS = [
  'invalid-argument', // the request is malformed or impossible: fix the input
  'unauthenticated', // no or a wrong deployment token, no or an unverified client certificate
  'permission-denied', // who is asking is known, but may not do this (a container policy; a peer on an operator route or not configured)
  'not-found', // a named thing (container, migration, overlay, image) does not exist
  'conflict', // the request conflicts with current state or misses a precondition (already running, image absent...)
  'too-large', // the request exceeds a configured size limit
  'invalid-data', // well-formed request, but its content is damaged or malformed (a stream, an image file)
  'internal', // a failure on this side: a program failed, a state that should not happen
  'upstream', // something this side depends on (a peer, the Docker engine) answered with an error
  'unavailable', // a dependency is down or a capacity is used up: retry later
  'deadline-exceeded', // an operation did not finish in time
] as const;

export type ErrorKind = (typeof ERROR_KINDS)[number];

// One status per kind, and one kind per status: the mapping is its own inverse.
const KIND_STATUS: { readonly [K in ErrorKind]: number } = {
  'invalid-argument': 400,
  unauthenticated: 401,
  'permission-denied': 403,
  'not-found': 404,
  conflict: 409,
  'too-large': 413,
  'invalid-data': 422,
  internal: 500,
  upstream: 502,
  unavailable: 503,
  'deadline-exceeded': 504,
};

const STATUS_KIND: ReadonlyMap<number, ErrorKind> = new Map(ERROR_KINDS.map((k) => [KIND_STATUS[k], k]));

/** The HTTP status cloudletd answers an error of this kind with. */
export function kindToHttpStatus(kind: ErrorKind): number {
  return KIND_STATUS[kind];
}

/**
 * The kind of an error answer with this HTTP status. A status outside the mapping falls back
 * by class (other 4xx: invalid-argument, other 5xx: internal); a status that is no error at
 * all, or 0 for no answer, means the far side failed us: upstream.
 */
export function kindFromHttpStatus(status: number): ErrorKind {
  const exact = STATUS_KIND.get(status);
  if (exact) return exact;
  if (status >= 400 && status < 500) return 'invalid-argument';
  if (status >= 500 && status < 600) return 'internal';
  return 'upstream';
}

export function isErrorKind(value: unknown): value is ErrorKind {
  return typeof value === 'string' && (ERROR_KINDS as readonly string[]).includes(value);
}
