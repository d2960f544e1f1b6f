// Deterministic tar files from a staging directory, written with node-tar.
//
// Why: a Docker image id is the sha256 of its config, and the config lists the sha256 of each
// uncompressed layer tar (diff_ids). If two builds of the same inputs produced tars that differ
// in a single header byte (mtime, atime, owner name, readdir order...), the image ids would
// differ and an engine could not recognise a layer another engine already has. So every
// header field that depends on the machine or on time is fixed here:
//   - entries in sorted pre-order (never readdir order), one explicit list, no recursion;
//   - mtime fixed, atime/ctime omitted, uid/gid 0, uname/gname empty, no PAX headers;
//   - the mode comes from the staging tree, which the callers chmod explicitly (no umask).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { create as tarCreate, type WriteEntry } from 'tar';
import { ImageError } from './errors.js';

/** The timestamp of every entry and of every image config: the Unix epoch. */
export const FIXED_TIME = new Date(0);

/** ustar's name field is 100 bytes; longer paths would need PAX headers or a prefix. */
const MAX_PATH = 99;

/** Relative paths of everything under root, directories before their contents, names sorted. */
export async function sortedTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort(compareBytes);
    for (const name of names) {
      const child = rel === '' ? name : `${rel}/${name}`;
      out.push(child);
      const st = await lstat(join(root, child));
      if (st.isDirectory()) await walk(child);
    }
  };
  await walk('');
  return out;
}

/** Byte order (not locale order), so that the sort is the same on every machine. */
export function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * Writes `entries` (paths relative to `cwd`, in the given order) to `file` as a tar whose
 * bytes depend only on the entries' names, types, modes, link targets and contents.
 */
export async function writeDeterministicTar(cwd: string, entries: readonly string[], file: string): Promise<void> {
  for (const e of entries) {
    const isDir = (await lstat(join(cwd, e))).isDirectory();
    if (e.length + (isDir ? 1 : 0) > MAX_PATH || e.startsWith('/') || e.split('/').includes('..')) {
      throw new ImageError('tar_path_unsupported', `cannot put '${e}' in a deterministic tar`, {
        context: { cwd, entry: e, maxLength: MAX_PATH },
      });
    }
  }
  await tarCreate(
    {
      cwd,
      file,
      noDirRecurse: true,
      portable: false, // portable mode would rewrite modes (drops /tmp's 1777 to 1755)
      noPax: true,
      mtime: FIXED_TIME,
      onWriteEntry: normalizeEntry,
    },
    [...entries],
  );
}

/** Called by node-tar just before it encodes an entry's header. */
function normalizeEntry(entry: WriteEntry): void {
  const st = entry.stat as unknown as Record<string, unknown> | undefined;
  if (!st) return;
  // A plain copy with the machine-dependent fields fixed; node-tar reads only data fields
  // (mode, size, uid, gid, atime, ctime, mtime) after this point, the type is already known.
  const fixed: Record<string, unknown> = {
    mode: st.mode,
    size: st.size,
    uid: 0,
    gid: 0,
    mtime: FIXED_TIME,
    atime: undefined,
    ctime: undefined,
    nlink: 1,
    dev: 0,
    ino: 0,
  };
  entry.stat = fixed as unknown as typeof entry.stat;
  // uname is written only when the file's uid equals node-tar's idea of our uid: never.
  entry.myuid = -1;
  entry.myuser = '';
}

/** sha256 of a file's bytes, as 'sha256:<hex>'. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}
