// The host paths the security bench's attacks aim at, played by stand-ins in its temp dir (the
// bench never touches the real /etc or /dev): a passwd file, a device, and the neighbours of
// the fssync targets. Each is fingerprinted (contents hash and every xattr) before and after
// an attack: any difference, or a file appearing or vanishing, is a host change.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, lstatSync, readlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export interface StandIns {
  /** Root of the host stand-ins: <tmp>/host. */
  root: string;
  /** Stands for /etc (a bind mount source outside bindMountRoots). */
  etc: string;
  /** Stands for /etc/passwd: the absolute path a capability dump names. */
  passwd: string;
  /** Stands for /dev/sda. */
  device: string;
  /** The fssync targets' outside neighbours: a `..` path or a symlink lands here. */
  outside: string;
  /** A file in `outside` a dump aims at. */
  victim: string;
  /** Where fssync targets are made (siblings of `outside`). */
  targets: string;
  /** The only root the victim's policy allows bind mounts under. */
  volumes: string;
}

/** Makes the stand-ins under `dir`, each with a user.* xattr to be kept. */
export function makeStandIns(dir: string): StandIns {
  const root = join(dir, 'host');
  const s: StandIns = {
    root,
    etc: join(root, 'etc'),
    passwd: join(root, 'etc', 'passwd'),
    device: join(root, 'dev', 'sda'),
    outside: join(root, 'outside'),
    victim: join(root, 'outside', 'victim'),
    targets: join(root, 'targets'),
    volumes: join(root, 'volumes'),
  };
  for (const d of [s.etc, join(root, 'dev'), s.outside, s.targets, s.volumes]) mkdirSync(d, { recursive: true });
  writeFileSync(s.passwd, 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(s.device, 'stands for a block device\n');
  writeFileSync(s.victim, 'not yours\n');
  writeFileSync(join(s.outside, 'neighbour'), 'next door\n');
  for (const f of [s.passwd, s.device, s.victim]) execFileSync('setfattr', ['-n', 'user.keep', '-v', 'me', f]);
  return s;
}

/** Every xattr of a path (not following a symlink), as getfattr prints them. */
function xattrs(path: string): string {
  return execFileSync('getfattr', ['-h', '-d', '-e', 'hex', '-m', '-', path], {
    env: { ...process.env, LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString();
}

/** One line per path below the watched dirs: type, mode, contents hash, xattrs. */
export function fingerprint(s: StandIns, watched: readonly string[] = [s.etc, join(s.root, 'dev'), s.outside]): string {
  const lines: string[] = [];
  const walk = (p: string): void => {
    const st = lstatSync(p);
    const what = st.isSymbolicLink()
      ? `link:${readlinkSync(p)}`
      : st.isFile()
        ? `file:${createHash('sha256').update(readFileSync(p)).digest('hex')}`
        : st.isDirectory()
          ? 'dir'
          : 'other';
    lines.push(
      `${relative(s.root, p)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${what} ${xattrs(p)
        .replace(/^# file:.*\n/, '')
        .trim()}`,
    );
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(join(p, n));
  };
  for (const w of watched) walk(w);
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}
