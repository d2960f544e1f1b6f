// The getfattr/setfattr dump format, read from an untrusted peer (issue 19, item 3).
//
// Every fssync batch carries a `getfattr -R -h -P -d -e hex -m ^security\.capability$ .`
// dump of its source tree (see index.ts for why), which the destination re-applies with
// `setfattr -h --restore` as root, with its cwd at the target. setfattr itself applies a
// path as written: `# file: /etc/passwd` or `# file: ../x` would set an extended attribute
// (security.capability: a file capability) on any host file, and `# file: lnk/x`, where the
// batch made `lnk` a symlink to /usr/bin, would follow it (-h spares only the last
// component). So the destination parses the dump here, refuses anything that could leave
// the target, checks the paths against the tree rsync left (confinedXattrDump), and hands
// setfattr its own canonical rendering of what passed (renderXattrDump): setfattr never sees
// the peer's bytes.
//
// The format, as attr 2.5.1 writes and reads it (tools/getfattr.c, tools/setfattr.c
// restore(), libmisc/quote.c, unquote.c, next_line.c):
//  - blocks separated by empty lines; a block is `# file: PATH` then `NAME=VALUE` lines;
//  - PATH and NAME are quoted: `\` and newline/CR (and `=` in NAME) become `\ooo` (three
//    octal digits); other bytes, even spaces, control characters and non-UTF-8, stay raw.
//    setfattr's unquote decodes exactly `\` + three octal digits and leaves any other
//    backslash as it is;
//  - VALUE is `0x` + hex (-e hex), `0s` + base64 (-e base64) or `"text"` with \\, \" and
//    octal escapes (-e text); setfattr splits a line at its first raw `=`.
// This parser is stricter than setfattr wherever getfattr never writes something (a lone
// backslash, a raw CR, a name line without `=`, a value in no encoding): an ambiguity is
// refused rather than guessed.
import { lstat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FsSyncError } from './errors.js';

/** One `NAME=VALUE` line. */
export interface XattrDumpAttr {
  /** 1-based line number in the dump. */
  line: number;
  /** Attribute name, unquoted (bytes: names need not be UTF-8). */
  name: Buffer;
  value: Buffer;
}

/** One `# file:` block. */
export interface XattrDumpEntry {
  /** 1-based line number of the `# file:` header. */
  line: number;
  /**
   * The path's components below the target, unquoted, `.` components dropped (an empty
   * list is the target itself). Never empty strings, `..`, a NUL or a slash.
   */
  components: Buffer[];
  attrs: XattrDumpAttr[];
}

/** Linux limits (XATTR_NAME_MAX, XATTR_SIZE_MAX, PATH_MAX incl. the NUL, NAME_MAX). */
const NAME_MAX_BYTES = 255;
const VALUE_MAX_BYTES = 65536;
const PATH_MAX_BYTES = 4095;
const COMPONENT_MAX_BYTES = 255;
const HEADER = Buffer.from('# file: ', 'latin1');
const NAMESPACES = ['user.', 'trusted.', 'security.', 'system.'].map((p) => Buffer.from(p, 'latin1'));
const SLASH = 0x2f;
const BACKSLASH = 0x5c;

/** A path or name for messages: printable ASCII kept, every other byte as \ooo (like getfattr, stricter). */
export function printable(b: Buffer): string {
  let s = '';
  for (const c of b) s += c >= 0x20 && c < 0x7f && c !== BACKSLASH ? String.fromCharCode(c) : '\\' + c.toString(8).padStart(3, '0');
  return s;
}

function refuse(kind: 'invalid' | 'unsafe', line: number, path: string | null, reason: string): FsSyncError {
  return new FsSyncError(
    kind === 'unsafe' ? 'fssync_xattr_dump_unsafe' : 'fssync_xattr_dump_invalid',
    `xattr dump line ${line}${path !== null ? ` (path "${path}")` : ''}: ${reason}`,
    {
      context: { step: 'caps', line, path, reason },
      hint: kind === 'unsafe' ? 'the peer sent a capability dump that reaches outside the target directory: it was not applied' : undefined,
    },
  );
}

/** attr's unquote(), strict: `\` must start a three-digit octal escape of one byte. */
function unquote(raw: Buffer, line: number, what: string): Buffer {
  if (!raw.includes(BACKSLASH)) return raw;
  const out = Buffer.alloc(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== BACKSLASH) {
      out[n++] = c;
      continue;
    }
    const d = raw.subarray(i + 1, i + 4);
    if (d.length !== 3 || !d.every((x) => x >= 0x30 && x <= 0x37)) {
      throw refuse('invalid', line, printable(raw), `${what}: a backslash not followed by three octal digits (getfattr writes \\134 for a backslash)`);
    }
    const v = ((d[0]! - 0x30) << 6) | ((d[1]! - 0x30) << 3) | (d[2]! - 0x30);
    // setfattr would keep only the low byte of \777; getfattr never writes above \377.
    if (v > 0xff) throw refuse('invalid', line, printable(raw), `${what}: octal escape \\${d.toString('latin1')} is not a byte`);
    out[n++] = v;
    i += 3;
  }
  return out.subarray(0, n);
}

function parsePath(raw: Buffer, line: number): { components: Buffer[]; shown: string } {
  const path = unquote(raw, line, 'path');
  const shown = printable(path);
  // NUL first: C would cut the string there, so what follows it is what a human reads but
  // not what setfattr uses (and `ok\000/../../x` must not look harmless either way).
  if (path.includes(0)) throw refuse('unsafe', line, shown, 'NUL byte in the path');
  if (path.length === 0) throw refuse('invalid', line, shown, 'empty path');
  if (path[0] === SLASH) throw refuse('unsafe', line, shown, 'absolute path');
  if (path.length > PATH_MAX_BYTES) throw refuse('invalid', line, shown, `path longer than ${PATH_MAX_BYTES} bytes`);
  const components: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== SLASH) continue;
    const comp = path.subarray(start, i);
    start = i + 1;
    if (comp.length === 2 && comp[0] === 0x2e && comp[1] === 0x2e) throw refuse('unsafe', line, shown, "'..' component");
    // getfattr writes `a/b`, never `a//b` or `a/`: refused rather than normalised.
    if (comp.length === 0) throw refuse('invalid', line, shown, 'empty path component');
    if (comp.length > COMPONENT_MAX_BYTES) throw refuse('invalid', line, shown, `path component longer than ${COMPONENT_MAX_BYTES} bytes`);
    if (comp.length === 1 && comp[0] === 0x2e) continue;
    components.push(Buffer.from(comp));
  }
  return { components, shown };
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function decodeValue(raw: Buffer, line: number, path: string): Buffer {
  const bad = (why: string) => refuse('invalid', line, path, `attribute value: ${why}`);
  if (raw.length >= 2 && raw[0] === 0x30 && (raw[1] === 0x78 || raw[1] === 0x58)) {
    const hex = raw.subarray(2);
    if (hex.length % 2 !== 0 || !hex.every(isHex)) throw bad('0x must be followed by pairs of hex digits');
    return Buffer.from(hex.toString('latin1'), 'hex');
  }
  if (raw.length >= 2 && raw[0] === 0x30 && (raw[1] === 0x73 || raw[1] === 0x53)) {
    const b64 = raw.subarray(2).toString('latin1');
    const v = Buffer.from(b64, 'base64');
    // Node's decoder skips junk; only a canonical encoding is taken.
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0 || v.toString('base64') !== b64) throw bad('0s must be followed by base64');
    return v;
  }
  if (raw.length >= 2 && raw[0] === 0x22 && raw[raw.length - 1] === 0x22) {
    // setfattr's text decoding: \\ and \" escape, \o to \ooo octal (low byte), other \c is c.
    const t = raw.subarray(1, raw.length - 1);
    const out = Buffer.alloc(t.length);
    let n = 0;
    for (let i = 0; i < t.length; i++) {
      if (t[i] !== BACKSLASH) {
        out[n++] = t[i]!;
        continue;
      }
      if (i + 1 >= t.length) throw bad('text ends with a backslash');
      const c = t[i + 1]!;
      if (c >= 0x30 && c <= 0x37) {
        let v = 0;
        let k = i + 1;
        for (let digits = 0; digits < 3 && k < t.length && t[k]! >= 0x30 && t[k]! <= 0x37; digits++, k++) v = (v << 3) | (t[k]! - 0x30);
        out[n++] = v & 0xff;
        i = k - 1;
      } else {
        out[n++] = c;
        i++;
      }
    }
    return out.subarray(0, n);
  }
  throw bad('not 0x (hex), 0s (base64) or "text"');
}

function parseName(raw: Buffer, line: number, path: string): Buffer {
  const name = unquote(raw, line, 'attribute name');
  if (name.length === 0) throw refuse('invalid', line, path, 'empty attribute name');
  if (name.includes(0)) throw refuse('unsafe', line, path, `NUL byte in attribute name "${printable(name)}"`);
  if (name.length > NAME_MAX_BYTES) throw refuse('invalid', line, path, `attribute name longer than ${NAME_MAX_BYTES} bytes`);
  if (!NAMESPACES.some((p) => name.length > p.length && name.subarray(0, p.length).equals(p))) {
    throw refuse('invalid', line, path, `attribute name "${printable(name)}" is not user.*, trusted.*, security.* or system.*`);
  }
  return Buffer.from(name);
}

/**
 * Parses a getfattr dump. Refuses, with FsSyncError `fssync_xattr_dump_unsafe` naming the
 * line and path, any path that is absolute or has a `..` component, and NUL bytes in a path
 * or name; with `fssync_xattr_dump_invalid`, anything getfattr would not have written (empty
 * paths or names, bad escapes, raw CR, unknown value encodings, names outside the four
 * namespaces or not in `allowedNames` when given, Linux's size limits exceeded).
 * Never throws anything else. Symlinks are not looked at here: see confinedXattrDump.
 */
export function parseXattrDump(dump: Buffer, opts: { allowedNames?: readonly string[] } = {}): XattrDumpEntry[] {
  const allowed = opts.allowedNames?.map((n) => Buffer.from(n, 'latin1'));
  const entries: XattrDumpEntry[] = [];
  let cur: XattrDumpEntry | null = null;
  let shown = '';
  let lineNo = 0;
  for (let start = 0; start < dump.length;) {
    let end = dump.indexOf(0x0a, start);
    if (end < 0) end = dump.length;
    const line = dump.subarray(start, end);
    start = end + 1;
    lineNo++;
    // A raw NUL: C's fgets/strlen and setfattr's line reader disagree on where such a line
    // ends. A raw CR: setfattr strips it at a line's end only; getfattr escapes both.
    if (line.includes(0)) throw refuse('unsafe', lineNo, cur ? shown : null, 'NUL byte in the dump');
    if (line.includes(0x0d)) throw refuse('invalid', lineNo, cur ? shown : null, 'raw carriage return (getfattr writes \\015)');
    if (line.length === 0) {
      cur = null;
      continue;
    }
    if (cur === null) {
      if (!line.subarray(0, HEADER.length).equals(HEADER)) throw refuse('invalid', lineNo, null, "expected '# file: PATH'");
      const p = parsePath(line.subarray(HEADER.length), lineNo);
      cur = { line: lineNo, components: p.components, attrs: [] };
      shown = p.shown;
      entries.push(cur);
      continue;
    }
    // Inside a block every non-empty line is NAME=VALUE, as in setfattr (a `# file:` line
    // there would be an attribute name, refused below for its namespace).
    const eq = line.indexOf(0x3d);
    if (eq < 0) throw refuse('invalid', lineNo, shown, "attribute line without '='");
    const name = parseName(line.subarray(0, eq), lineNo, shown);
    if (allowed && !allowed.some((a) => a.equals(name))) {
      throw refuse('invalid', lineNo, shown, `attribute "${printable(name)}" is not one this dump may carry (${opts.allowedNames!.join(', ')})`);
    }
    const value = decodeValue(line.subarray(eq + 1), lineNo, shown);
    if (value.length > VALUE_MAX_BYTES) throw refuse('invalid', lineNo, shown, `attribute value longer than ${VALUE_MAX_BYTES} bytes`);
    cur.attrs.push({ line: lineNo, name, value });
  }
  return entries;
}

/** attr's quote(), escaping more than getfattr does (every byte outside printable ASCII, `\` and `=`): unquote() reads it back exactly. */
function quote(b: Buffer): string {
  let s = '';
  for (const c of b) s += c > 0x20 && c < 0x7f && c !== BACKSLASH && c !== 0x3d ? String.fromCharCode(c) : '\\' + c.toString(8).padStart(3, '0');
  return s;
}

/** The canonical dump of parsed entries, for `setfattr -h --restore` run in the target (pure ASCII, values in hex). */
export function renderXattrDump(entries: readonly XattrDumpEntry[]): Buffer {
  let s = '';
  for (const e of entries) {
    s += `# file: ${e.components.length === 0 ? '.' : e.components.map(quote).join('/')}\n`;
    for (const a of e.attrs) s += `${quote(a.name)}=0x${a.value.toString('hex')}\n`;
    s += '\n';
  }
  return Buffer.from(s, 'latin1');
}

/**
 * Checks, on the tree as it is now, that every entry's path stays in `targetDir` when the
 * kernel resolves it for `setfattr -h` (lsetxattr: every component but the last followed):
 * each component but the last is lstat'ed, and a symlink there is refused
 * (`fssync_xattr_dump_unsafe`, naming the line, path and component). A component that does
 * not exist, or is not a directory, ends the walk: the kernel then fails that path
 * (ENOENT/ENOTDIR) without leaving the target. The last component is not followed.
 * Sound only while nothing else changes the tree between this check and setfattr: true of
 * an fssync target (a twin's upperdir or a volume no container runs on yet, our own shadow).
 */
export async function confinedXattrDump(targetDir: string, entries: readonly XattrDumpEntry[]): Promise<void> {
  const root = Buffer.from(resolve(targetDir).replace(/\/+$/, ''), 'utf8');
  // Directories already seen: 'dir', 'stop' (missing or not a directory).
  const seen = new Map<string, 'dir' | 'stop'>();
  for (const e of entries) {
    let abs = root;
    for (let i = 0; i < e.components.length - 1; i++) {
      abs = Buffer.concat([abs, Buffer.from('/'), e.components[i]!]);
      const key = abs.toString('hex');
      let kind = seen.get(key);
      if (kind === undefined) {
        let st;
        try {
          st = await lstat(abs);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ENOENT' && code !== 'ENOTDIR') {
            throw new FsSyncError('fssync_caps_check_failed', `cannot check ${printable(abs)}: ${(err as Error).message}`, {
              context: { step: 'caps', line: e.line, targetDir },
              cause: err,
            });
          }
        }
        if (st?.isSymbolicLink()) {
          const path = e.components.map(printable).join('/');
          throw refuse(
            'unsafe',
            e.line,
            path,
            `component "${e.components
              .slice(0, i + 1)
              .map(printable)
              .join('/')}" is a symlink in the target: setfattr would follow it`,
          );
        }
        kind = st?.isDirectory() ? 'dir' : 'stop';
        seen.set(key, kind);
      }
      if (kind === 'stop') break;
    }
  }
}
