// Errors of the fssync module: writing or applying a filesystem batch failed.
import { CloudletError, type ErrorContext, type ErrorKind } from '../util/errors.js';

/**
 * Writing or applying a filesystem sync batch failed. `context` names the step
 * (write-batch, apply-shadow, apply, caps, trailer...), the directories involved, rsync's
 * exit code and the tail of its stderr. A failed step is this side's failure (internal)
 * unless the caller names another kind.
 */
export class FsSyncError extends CloudletError {
  constructor(code: string, message: string, opts: { context?: ErrorContext; hint?: string; cause?: unknown; kind?: ErrorKind } = {}) {
    super(code, message, { ...opts, kind: opts.kind ?? 'internal' });
  }
}

/** Last lines of a program's stderr, for messages and error context. */
export function stderrTail(stderr: string, lines = 8): string {
  return stderr.trim().split('\n').slice(-lines).join('\n');
}
