// The engine's own CRIU configuration file, extended for one restore at a time.
//
// runc gives CRIU the engine's configuration file (the lab mounts an engine's own directory
// over /etc/criu, see lab/engines.ts), whose options override what runc asks over RPC. Docker
// has no way to pass CRIU options per restore, so options that only one restore needs are
// added to that file for that restore and taken out right after it: `lazy-pages` (a lazy
// restore, lazy-pages.ts) and `tcp-close` (connections that were closed before the dump, see
// network/tcp-reset.ts). Every restore through one file is serialized, so no other restore
// ever sees another's options; a restore that needs none still waits its turn.
import { readFile, writeFile } from 'node:fs/promises';
import { CloudletError } from '../util/errors.js';

/** The options a single restore may add to the engine's CRIU configuration. */
export type CriuRestoreOption = 'lazy-pages' | 'tcp-close';
const RESTORE_OPTIONS: readonly CriuRestoreOption[] = ['lazy-pages', 'tcp-close'];

const configLocks = new Map<string, Promise<void>>();

/** Runs `fn` when no other restore through the same CRIU configuration file runs. */
async function serializedOnConfig<T>(configFile: string, fn: () => Promise<T>): Promise<T> {
  const prev = configLocks.get(configFile) ?? Promise.resolve();
  let release!: () => void;
  const chained = prev.then(() => new Promise<void>((r) => (release = r)));
  configLocks.set(configFile, chained);
  await prev;
  try {
    return await fn();
  } finally {
    release();
    if (configLocks.get(configFile) === chained) configLocks.delete(configFile);
  }
}

/**
 * Runs `fn` (the engine's restore) with `options` added to the engine's CRIU configuration,
 * one restore per configuration file at a time; the file is put back as it was before the
 * next restore may start, even if `fn` fails. No options: only serialized. No file known
 * (null): the restore runs at once, and asking for options is refused.
 */
export function withRestoreOptions<T>(configFile: string | null, options: readonly CriuRestoreOption[], fn: () => Promise<T>): Promise<T> {
  if (configFile === null) {
    if (options.length > 0)
      return Promise.reject(
        new CloudletError('criu_config_unknown', `no CRIU configuration file of the engine to add ${options.join(', ')} to`, { kind: 'internal' }),
      );
    return fn();
  }
  return serializedOnConfig(configFile, async () => {
    if (options.length === 0) return fn();
    const original = await readFile(configFile, 'utf8');
    const lines = original.split('\n').filter((l) => l.trim() !== '');
    await writeFile(configFile, [...lines, ...options, ''].join('\n'));
    try {
      return await fn();
    } finally {
      await writeFile(configFile, original);
    }
  });
}

/**
 * Takes out the per-restore options a killed cloudletd left in the engine's CRIU
 * configuration (withRestoreOptions puts the file back in a finally, which a SIGKILL skips):
 * with `lazy-pages` left in, every later restore would wait for a daemon that is not there;
 * with `tcp-close`, every later restore would close the connections it should keep.
 * Returns the options it took out.
 */
export async function clearLeftRestoreOptions(configFile: string): Promise<CriuRestoreOption[]> {
  const text = await readFile(configFile, 'utf8');
  const lines = text.split('\n');
  const left = RESTORE_OPTIONS.filter((o) => lines.some((l) => l.trim() === o));
  if (left.length === 0) return [];
  await writeFile(configFile, lines.filter((l) => !(RESTORE_OPTIONS as readonly string[]).includes(l.trim())).join('\n'));
  return left;
}

/** Why a cloudlet cannot take part in a handoff whose connections are closed (network/tcp-reset.ts): no file to add tcp-close to. */
export function tcpCloseUnsupported(node: string): CloudletError {
  return new CloudletError(
    'tcp_close_unsupported',
    `${node} cannot restore closed connections (--tcp-close): its cloudletd knows no CRIU configuration file of its engine to add tcp-close to`,
    { kind: 'conflict', hint: "set criuConfigFile in that cloudletd.json to the file the engine's runc passes to CRIU (the lab sets it)" },
  );
}
