// `lab up --userns-remap`: every engine of the lab runs with Docker's --userns-remap USER, so
// that CRIU can dump and restore non-root containers where root lacks CAP_SYS_RESOURCE (see
// docs/userns-remap.md). Docker needs USER in /etc/passwd and a range of USER's in /etc/subuid
// AND /etc/subgid (20.10 looks both up by the user's name). The lab uses a system user named
// for it (PREFIX + "remap") and a range of its own; whatever of that it had to add it records
// in the lab's state before adding it, and `lab down` removes exactly that, nothing else.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { UsageError } from '../util/errors.js';
import { run, tryRun } from '../util/exec.js';

export const SUBUID_FILE = process.env.CLOUDLET_SUBUID_FILE ?? '/etc/subuid';
export const SUBGID_FILE = process.env.CLOUDLET_SUBGID_FILE ?? '/etc/subgid';
/** Ids per container (Docker maps 0..65535 of the container onto the range). */
export const REMAP_RANGE = 65536;
const FIRST_START = 100_000;

/** The lab's remap, as the state records it: the user, its range, and what the lab added. */
export interface LabUsernsRemap {
  user: string;
  /** Start of the range in /etc/subuid and /etc/subgid: the host ids of the containers' root. */
  uid: number;
  gid: number;
  count: number;
  /** What `lab up` added (and so `lab down` removes); what was there before stays. */
  added: { user: boolean; subuid: boolean; subgid: boolean };
}

/** The lab's remap user: PREFIX + "remap", as a user name may be (32 characters at most). */
export function remapUserFor(prefix: string): string {
  const name = `${prefix}remap`.toLowerCase().replace(/[^a-z0-9_-]/g, '-');
  if (!/^[a-z_]/.test(name) || name.length > 32) throw new UsageError(`lab prefix '${prefix}' makes no valid user name for --userns-remap (${name})`);
  return name;
}

export interface SubidEntry {
  name: string;
  start: number;
  count: number;
}

/** The entries of an /etc/subuid-like text (comments and malformed lines skipped). */
export function parseSubids(text: string): SubidEntry[] {
  const out: SubidEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^([^:#\s]+):(\d+):(\d+)\s*$/.exec(line.trim());
    if (m) out.push({ name: m[1]!, start: Number(m[2]), count: Number(m[3]) });
  }
  return out;
}

/** A start for a new range of `count` ids that overlaps no entry of these files (multiples of 65536 from 100000 up). */
export function freeRangeStart(entries: readonly SubidEntry[], count = REMAP_RANGE): number {
  let start = FIRST_START;
  const overlaps = (s: number) => entries.some((e) => s < e.start + e.count && e.start < s + count);
  while (overlaps(start)) start += REMAP_RANGE;
  return start;
}

const readText = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8') : '');

/** Writes a file whole (a temporary file renamed over it), world-readable as these files are. */
function writeText(file: string, text: string): void {
  writeFileSync(`${file}.cloudlet-tmp`, text, { mode: 0o644 });
  renameSync(`${file}.cloudlet-tmp`, file);
}

function entryLine(user: string, start: number, count: number): string {
  return `${user}:${start}:${count}`;
}

/**
 * The remap the lab will use for `user`: its ranges if it has (large enough) ones, else a free
 * start, with what must be added. Nothing is changed yet (the state records this first).
 */
export async function planRemap(user: string): Promise<LabUsernsRemap> {
  const hasUser = (await tryRun('getent', ['passwd', user])).exitCode === 0;
  const uids = parseSubids(readText(SUBUID_FILE));
  const gids = parseSubids(readText(SUBGID_FILE));
  const ownU = uids.find((e) => e.name === user && e.count >= REMAP_RANGE);
  const ownG = gids.find((e) => e.name === user && e.count >= REMAP_RANGE);
  const start = freeRangeStart([...uids, ...gids]);
  return {
    user,
    uid: ownU?.start ?? start,
    gid: ownG?.start ?? start,
    count: REMAP_RANGE,
    added: { user: !hasUser, subuid: !ownU, subgid: !ownG },
  };
}

/** Makes what the plan says is missing: the system user (no home, no login), the subuid and subgid entries. */
export async function applyRemap(r: LabUsernsRemap): Promise<void> {
  if (r.added.user) await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', r.user]);
  if (r.added.subuid) writeText(SUBUID_FILE, appendLine(readText(SUBUID_FILE), entryLine(r.user, r.uid, r.count)));
  if (r.added.subgid) writeText(SUBGID_FILE, appendLine(readText(SUBGID_FILE), entryLine(r.user, r.gid, r.count)));
}

function appendLine(text: string, line: string): string {
  return `${text}${text === '' || text.endsWith('\n') ? '' : '\n'}${line}\n`;
}

/** Removes the lines the lab added (exactly those) and the user it added; returns what it removed. */
export async function removeRemap(r: LabUsernsRemap): Promise<string[]> {
  const removed: string[] = [];
  const drop = (file: string, line: string) => {
    const text = readText(file);
    const lines = text.split('\n');
    const kept = lines.filter((l) => l.trim() !== line);
    if (kept.length === lines.length) return;
    writeText(file, kept.join('\n'));
    removed.push(`${file}: ${line}`);
  };
  if (r.added.subuid) drop(SUBUID_FILE, entryLine(r.user, r.uid, r.count));
  if (r.added.subgid) drop(SUBGID_FILE, entryLine(r.user, r.gid, r.count));
  if (r.added.user && (await tryRun('getent', ['passwd', r.user])).exitCode === 0) {
    await run('userdel', [r.user]);
    removed.push(`user ${r.user}`);
  }
  return removed;
}
