// Typed errors: every failure carries a stable code and the context needed to act on it.
// The CLI prints `message` (and `hint` when present); the daemon maps `httpStatus` to replies.

export type ErrorContext = Record<string, unknown>;

export class CloudletError extends Error {
  readonly code: string;
  readonly context: ErrorContext;
  readonly hint: string | undefined;
  readonly httpStatus: number;

  constructor(
    code: string,
    message: string,
    opts: { context?: ErrorContext; hint?: string; cause?: unknown; httpStatus?: number } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.context = opts.context ?? {};
    this.hint = opts.hint;
    this.httpStatus = opts.httpStatus ?? 500;
  }

  toJSON(): Record<string, unknown> {
    return { error: this.code, message: this.message, hint: this.hint, context: this.context };
  }
}

/** The caller asked for something malformed or impossible: fix the input. */
export class UsageError extends CloudletError {
  constructor(message: string, opts: { context?: ErrorContext; hint?: string } = {}) {
    super('usage', message, { ...opts, httpStatus: 400 });
  }
}

/** A named thing (node, container, lab) does not exist. */
export class NotFoundError extends CloudletError {
  constructor(what: string, name: string, opts: { hint?: string; context?: ErrorContext } = {}) {
    super('not_found', `${what} '${name}' not found`, {
      ...opts,
      context: { what, name, ...opts.context },
      httpStatus: 404,
    });
  }
}

/** The request conflicts with current state (lab already up, migration already running...). */
export class ConflictError extends CloudletError {
  constructor(message: string, opts: { context?: ErrorContext; hint?: string } = {}) {
    super('conflict', message, { ...opts, httpStatus: 409 });
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
    super(
      'command_failed',
      `${command} ${args.join(' ')} failed` +
        (exitCode === null ? '' : ` (exit ${exitCode})`) +
        (tail ? `: ${tail}` : ''),
      { context: { command, args, exitCode }, cause },
    );
  }
}

/** A remote cloudletd answered with an error, or could not be reached. */
export class ApiError extends CloudletError {
  constructor(
    readonly url: string,
    readonly status: number,
    message: string,
    opts: { code?: string; hint?: string; cause?: unknown } = {},
  ) {
    super(opts.code ?? 'api_error', message, {
      context: { url, status },
      httpStatus: status >= 400 ? status : 502,
      ...(opts.hint === undefined ? {} : { hint: opts.hint }),
      cause: opts.cause,
    });
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
