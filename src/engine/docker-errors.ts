// The Docker engine's failures as CloudletErrors that name the socket, so that a caller can
// tell "engine down" (unavailable: retry later) from "engine said no" (upstream, or not-found).
import { CloudletError, errorMessage } from '../util/errors.js';

/** The engine's socket is missing, refuses connections or does not answer in time. */
export class EngineUnavailableError extends CloudletError {
  constructor(
    readonly socketPath: string,
    cause: unknown,
  ) {
    super('engine_unavailable', `Docker engine at ${socketPath} is unreachable: ${errorMessage(cause)}`, {
      context: { socketPath },
      hint: 'is the engine running? (`cloudlet lab status` or `cloudlet doctor`)',
      kind: 'unavailable',
      cause,
    });
  }
}

/** The engine answered, but with an error (bad request, missing container, conflict...). */
export class EngineError extends CloudletError {
  constructor(
    readonly socketPath: string,
    operation: string,
    readonly engineStatus: number | null,
    cause: unknown,
  ) {
    super('engine_error', `Docker engine at ${socketPath}: ${operation} failed: ${engineMessage(cause)}`, {
      context: { socketPath, operation, engineStatus },
      // A missing object stays a 404 for our clients; everything else is a bad gateway.
      kind: engineStatus === 404 ? 'not-found' : 'upstream',
      cause,
    });
  }
}

// Errors that mean "nobody is answering on that socket" rather than "the engine refused".
const UNREACHABLE_CODES = new Set(['ENOENT', 'ECONNREFUSED', 'EACCES', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTSOCK']);

/** A dockerode failure of `operation` as EngineUnavailableError or EngineError. */
export function mapEngineError(socketPath: string, operation: string, err: unknown): CloudletError {
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (typeof e.statusCode === 'number') return new EngineError(socketPath, operation, e.statusCode, err);
  if (typeof e.code === 'string' && UNREACHABLE_CODES.has(e.code)) return new EngineUnavailableError(socketPath, err);
  // docker-modem reports its own request timeout as a plain Error.
  if (/timeout/i.test(String(e.message ?? ''))) return new EngineUnavailableError(socketPath, err);
  return new EngineError(socketPath, operation, null, err);
}

function engineMessage(err: unknown): string {
  // docker-modem puts the engine's JSON reply ({message}) in `json`.
  const json = (err as { json?: { message?: unknown } }).json;
  if (json && typeof json.message === 'string') return json.message;
  return errorMessage(err);
}
