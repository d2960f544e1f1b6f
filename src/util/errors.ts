// Typed errors: every failure carries a kind from a closed set (error-kinds.ts), a stable
// code and the context needed to act on it. The CLI prints `message` (and `hint` when
// present); the daemon answers with `httpStatus`, which only the kind decides.
import { kindFromHttpStatus, kindToHttpStatus, type ErrorKind } from './error-kinds.js';

export { ERROR_KINDS, isErrorKind, kindFromHttpStatus, kindToHttpStatus, type ErrorKind } from './error-kinds.js';

export type ErrorContext = Record<string, unknown>;

/** What every CloudletError is made with; `kind` is required so that no error goes without one. */
export interface CloudletErrorOptions {
  kind: ErrorKind;
  context?: ErrorContext;
  hint?: string;
  cause?: unknown;
}

export class CloudletError extends Error {
  /**
   * Not `kind`: subclasses such as TransferError already name their own finer kind so, and
   * tests and callers read it.
   */
  readonly errorKind: ErrorKind;
  readonly code: string;
  readonly context: ErrorContext;
  readonly hint: string | undefined;
  /** The status cloudletd answers this error with: derived from the kind, never set apart. */
  readonly httpStatus: number;

  constructor(code: string, message: string, opts: CloudletErrorOptions) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.errorKind = opts.kind;
    this.code = code;
    this.context = opts.context ?? {};
    this.hint = opts.hint;
    this.httpStatus = kindToHttpStatus(opts.kind);
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, hint: this.hint, context: this.context };
  }
}

/** The caller asked for something malformed or impossible: fix the input. */
export class UsageError extends CloudletError {
  constructor(message: string, opts: { context?: ErrorContext; hint?: string } = {}) {
    super('usage', message, { ...opts, kind: 'invalid-argument' });
  }
}

/** A named thing (node, container, lab) does not exist. */
export class NotFoundError extends CloudletError {
  constructor(what: string, name: string, opts: { hint?: string; context?: ErrorContext } = {}) {
    super('not_found', `${what} '${name}' not found`, {
      ...opts,
      context: { what, name, ...opts.context },
      kind: 'not-found',
    });
  }
}

/** The request conflicts with current state (lab already up, migration already running...). */
export class ConflictError extends CloudletError {
  constructor(message: string, opts: { context?: ErrorContext; hint?: string } = {}) {
    super('conflict', message, { ...opts, kind: 'conflict' });
  }
}

/** An external program exited non-zero or could not be started. */
export class CommandError extends CloudletError {
  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    cause?: unknown,
  ) {
    const tail = stderr.trim().split('\n').slice(-5).join('\n');
    super('command_failed', `${command} ${args.join(' ')} failed` + (exitCode === null ? '' : ` (exit ${exitCode})`) + (tail ? `: ${tail}` : ''), {
      kind: 'internal',
      context: { command, args, exitCode },
      cause,
    });
  }
}

/**
 * A remote cloudletd answered with an error, or could not be reached (status 0). Its kind is
 * the answer's, read back from the status, unless the client knows better.
 */
export class ApiError extends CloudletError {
  constructor(
    readonly url: string,
    readonly status: number,
    message: string,
    opts: { code?: string; hint?: string; cause?: unknown; kind?: ErrorKind } = {},
  ) {
    super(opts.code ?? 'api_error', message, {
      context: { url, status },
      kind: opts.kind ?? kindFromHttpStatus(status),
      ...(opts.hint === undefined ? {} : { hint: opts.hint }),
      cause: opts.cause,
    });
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
