// Output conventions shared by every CLI command: --json prints one JSON document on stdout;
// otherwise human-readable tables. Errors go to stderr with a non-zero exit code.
import { CloudletError, UsageError, errorMessage } from '../util/errors.js';

export interface OutputOptions {
  json?: boolean;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Prints rows as an aligned text table with the given columns (header = column key). */
export function printTable(rows: readonly Record<string, unknown>[], columns: readonly string[]): void {
  const cells = rows.map((r) => columns.map((c) => formatCell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: readonly string[]) =>
    vals
      .map((v, i) => (i === vals.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  process.stdout.write(line(columns.map((c) => c.toUpperCase())) + '\n');
  for (const row of cells) process.stdout.write(line(row) + '\n');
}

function formatCell(v: unknown): string {
  if (v === undefined || v === null) return '-';
  if (Array.isArray(v)) return v.join(',');
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** Progress for long work: to stderr, so that stdout stays clean for --json. */
export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Reports an error the way every command does and returns the exit code to use. */
export function reportError(err: unknown, json: boolean): number {
  if (json) {
    const body = err instanceof CloudletError ? err.toJSON() : { error: 'internal', message: errorMessage(err) };
    process.stdout.write(JSON.stringify(body, null, 2) + '\n');
  }
  if (err instanceof CloudletError) {
    process.stderr.write(`error: ${err.message}\n`);
    if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
    return err.code === 'usage' || err.code === 'not_found' ? 2 : 1;
  }
  process.stderr.write(`error: ${errorMessage(err)}\n`);
  if (process.env.CLOUDLET_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
  return 1;
}

/**
 * Wraps a command action: runs it, turns thrown errors into a message and exit code.
 * The action's last argument from commander is the Command; options are read from it.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const cmd = args[args.length - 1] as { optsWithGlobals?: () => Record<string, unknown> } | undefined;
    const json = Boolean(cmd?.optsWithGlobals?.().json);
    try {
      const code = await fn(...args);
      process.exitCode = code ?? 0;
    } catch (err) {
      process.exitCode = reportError(err, json);
    }
  };
}

/** Commands that drive namespaces, engines and mounts need root; say so before trying. */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new UsageError(`${what} needs root`, { hint: 'run it with sudo' });
}
