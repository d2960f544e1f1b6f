// CRIU discovery. Checkpointing needs CRIU >= 4.2 on current kernels (see scripts/setup.sh),
// so callers need the version, and "not installed" is an answer, not an error.
import { run } from '../util/exec.js';
import { CommandError } from '../util/errors.js';

/** Minimum CRIU version that can dump on the kernels we target. */
export const MIN_CRIU_VERSION = '4.2';

/**
 * Returns CRIU's version ("4.2"), or null when the binary is not installed.
 * A criu that exists but fails or prints something unexpected throws: that is a broken setup.
 */
export async function criuVersion(bin = 'criu'): Promise<string | null> {
  let stdout: string;
  try {
    ({ stdout } = await run(bin, ['--version'], { timeoutMs: 10_000 }));
  } catch (err) {
    if (err instanceof CommandError && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return null;
    throw err;
  }
  const v = parseCriuVersion(stdout);
  if (v === null) throw new CommandError(bin, ['--version'], 0, `unexpected output: ${stdout.trim().slice(0, 200)}`);
  return v;
}

/** Parses `criu --version` output ("Version: 4.2\n[GitID: ...]"). */
export function parseCriuVersion(output: string): string | null {
  const m = /^Version:\s*(\S+)/m.exec(output);
  return m ? m[1]! : null;
}

/** Numeric comparison of dotted versions: compareVersions('4.10', '4.2') > 0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  const pb = b.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
