// Real getfattr dumps for the dump parser's tests (fssync-xattr-dump, fuzz-xattr-dump): a
// temporary tree whose file names hold what getfattr escapes (newline, backslash) and what
// it leaves raw (space, '=', a control character, UTF-8), user.* xattrs on them, and a file
// capability set with setcap when it is installed (security.* needs root).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

export const CAP_NET_RAW = '0x0100000200200000000000000000000000000000';

/** File names below the tree's root (relative), each given a user.t xattr. */
export const ODD_NAMES = ['plain', 'sp ace', 'eq=ual', 'nl\nx', 'back\\slash', 'ctl\u0001y', 'ümlaut', 'deep/er/file'];

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const HAVE_GETFATTR = has('getfattr') && has('setfattr');

export interface RealDumps {
  root: string;
  /** `getfattr -R -h -P -d -e hex -m -` (all namespaces, the encoding fssync uses). */
  hex: Buffer;
  text: Buffer;
  base64: Buffer;
  /** The fssync producer's own command: security.capability only (empty without setcap). */
  caps: Buffer;
  withCaps: boolean;
}

/** Builds the tree under `root` (created) and dumps it with the real getfattr. */
export function makeRealDumps(root: string): RealDumps {
  mkdirSync(join(root, 'deep', 'er'), { recursive: true });
  for (const n of ODD_NAMES) {
    writeFileSync(join(root, n), `content of ${n}\n`);
    execFileSync('setfattr', ['-n', 'user.t', '-v', '0x' + Buffer.from(n).toString('hex'), join(root, n)]);
  }
  execFileSync('setfattr', ['-n', 'user.empty', join(root, 'plain')]);
  execFileSync('setfattr', ['-n', 'user.we ird=n\\x', '-v', '0x00ff0a3d', join(root, 'plain')]);
  execFileSync('setfattr', ['-n', 'user.dir', '-v', 'on-a-dir', join(root, 'deep')]);
  symlinkSync('plain', join(root, 'link'));
  let withCaps = false;
  if (has('setcap') && process.getuid?.() === 0) {
    writeFileSync(join(root, 'ping'), 'not really ping\n');
    try {
      execFileSync('setcap', ['cap_net_raw+ep', join(root, 'ping')], { stdio: 'ignore' });
      withCaps = true;
    } catch {
      withCaps = false;
    }
  }
  const dump = (args: string[]) => execFileSync('getfattr', ['-R', '-h', '-P', '-d', ...args, '.'], { cwd: root, env: { ...process.env, LC_ALL: 'C' } });
  return {
    root,
    hex: dump(['-e', 'hex', '-m', '-']),
    text: dump(['-e', 'text', '-m', '-']),
    base64: dump(['-e', 'base64', '-m', '-']),
    caps: withCaps ? dump(['-e', 'hex', '-m', '^security\\.capability$']) : Buffer.alloc(0),
    withCaps,
  };
}
