// fssync on real directories, as root: rounds of every kind of change an overlay2 upperdir
// sees, each batch applied to a separate destination and both trees compared exhaustively;
// then a real overlay mount (changes made through the merged view of a mounted source, the
// synced upper mounted on the destination side) and the cost of an initial 100 MB round and
// of a final round after changing 3 files.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, chmod, chown, lchown, link, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyBatch } from '../../src/fssync/apply.js';
import { FsSyncSource } from '../../src/fssync/index.js';
import { run, tryRun } from '../../src/util/exec.js';

const isRoot = process.getuid?.() === 0;

// ------------------------------------------------------------------ tree snapshots

interface Entry {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  mtimeNs?: string;
  target?: string;
  rdev?: string;
}

interface Snapshot {
  entries: Map<string, Entry>;
  /** Hard-link groups: sorted paths (two or more) of the tree sharing an inode. */
  links: string[];
  /** path -> "name=hexvalue" lines, from getfattr (all namespaces, symlinks not followed). */
  xattrs: Map<string, string[]>;
}

function typeOf(mode: number): string {
  switch (mode & 0o170000) {
    case 0o100000:
      return 'file';
    case 0o040000:
      return 'dir';
    case 0o120000:
      return 'symlink';
    case 0o020000:
      return 'chardev';
    case 0o060000:
      return 'blockdev';
    case 0o010000:
      return 'fifo';
    case 0o140000:
      return 'socket';
    default:
      return 'unknown';
  }
}

/** overlayfs bookkeeping that names the source host's lower layers: deliberately not carried. */
const HOST_ONLY_XATTR = /^trusted\.overlay\.(origin|impure|nlink)=/;

async function xattrDump(dir: string): Promise<Map<string, string[]>> {
  const { stdout } = await run('getfattr', ['-R', '-h', '-P', '-d', '-m', '-', '-e', 'hex', '.'], {
    cwd: dir,
    env: { ...process.env, LC_ALL: 'C' },
  });
  const m = new Map<string, string[]>();
  let cur = '';
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = line.slice('# file: '.length);
      m.set(cur, []);
    } else if (line.trim() !== '' && cur && !HOST_ONLY_XATTR.test(line)) {
      m.get(cur)!.push(line);
    }
  }
  for (const [k, v] of m) {
    if (v.length === 0)
      m.delete(k); // only host-only xattrs: nothing that is carried
    else v.sort();
  }
  return m;
}

async function snapshot(dir: string, opts: { mtimes?: boolean } = {}): Promise<Snapshot> {
  const entries = new Map<string, Entry>();
  const inodes = new Map<string, string[]>();
  const walk = async (rel: string): Promise<void> => {
    const abs = rel === '.' ? dir : join(dir, rel);
    const st = await lstat(abs, { bigint: true });
    const type = typeOf(Number(st.mode));
    const e: Entry = {
      type,
      mode: (Number(st.mode) & 0o7777).toString(8),
      uid: Number(st.uid),
      gid: Number(st.gid),
    };
    if (type === 'file') {
      e.size = Number(st.size);
      e.sha256 = createHash('sha256')
        .update(await readFile(abs))
        .digest('hex');
      if (opts.mtimes !== false) e.mtimeNs = st.mtimeNs.toString();
    } else if (type === 'symlink') {
      e.target = await readlink(abs);
    } else if (type === 'chardev' || type === 'blockdev') {
      e.rdev = st.rdev.toString();
    }
    entries.set(rel, e);
    if (type !== 'dir' && st.nlink > 1n) {
      const k = st.ino.toString();
      inodes.set(k, [...(inodes.get(k) ?? []), rel]);
    }
    if (type === 'dir') {
      for (const n of (await readdir(abs)).sort()) await walk(rel === '.' ? n : `${rel}/${n}`);
    }
  };
  await walk('.');
  // Groups within the tree only: the kernel links every whiteout of an overlay to one shared
  // inode in the workdir (nlink 2 in the upper), which is not part of the layer.
  const links = [...inodes.values()]
    .filter((g) => g.length > 1)
    .map((g) => g.sort().join(' = '))
    .sort();
  return { entries, links, xattrs: await xattrDump(dir) };
}

function assertSameTree(a: Snapshot, b: Snapshot, label: string): void {
  const keysA = [...a.entries.keys()].sort();
  const keysB = [...b.entries.keys()].sort();
  assert.deepEqual(keysB, keysA, `${label}: same paths`);
  for (const k of keysA) assert.deepEqual(b.entries.get(k), a.entries.get(k), `${label}: entry ${k}`);
  assert.deepEqual(b.links, a.links, `${label}: hard-link groups`);
  assert.deepEqual([...b.xattrs.entries()].sort(), [...a.xattrs.entries()].sort(), `${label}: xattrs`);
}

// ------------------------------------------------------------------ helpers

const CAP_NET_RAW = '0x0100000200200000000000000000000000000000'; // v2, effective, cap_net_raw

async function mknodWhiteout(path: string): Promise<void> {
  await run('mknod', [path, 'c', '0', '0']);
}
async function setx(path: string, name: string, value: string): Promise<void> {
  await run('setfattr', ['-h', '-n', name, '-v', value, path]);
}
async function delx(path: string, name: string): Promise<void> {
  await run('setfattr', ['-h', '-x', name, path]);
}
async function overwriteAt(path: string, offset: number, data: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offset);
  } finally {
    await fh.close();
  }
}
async function isMounted(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((l) => l.split(' ')[4] === path);
}
async function umountIfMounted(path: string): Promise<void> {
  if (await isMounted(path)) await tryRun('umount', [path]);
}

interface Round {
  n: number;
  bytes: number;
  files: number;
  writeMs: number;
  applyMs: number;
  empty: boolean;
  /** The destination skipped rsync: only an empty batch may be skipped, and the trees still match. */
  skipped: boolean;
}

/** One round: batch from the source, applied to the target, trees compared. */
async function syncRound(src: FsSyncSource, target: string, batchDir: string, n: number, opts: { final?: boolean; compare?: boolean } = {}): Promise<Round> {
  const batch = join(batchDir, `batch-${n}`);
  const st = await src.nextBatch(batch, { final: opts.final === true });
  const ap = await applyBatch(batch, target);
  await rm(batch, { force: true });
  if (opts.compare !== false) assertSameTree(await snapshot(src.sourceDir), await snapshot(target), `round ${n}`);
  assert.equal(ap.skipped, st.empty, `round ${n}: the destination skips a batch exactly when it is empty`);
  return { n, bytes: st.bytes, files: st.files, writeMs: Math.round(st.ms), applyMs: Math.round(ap.ms), empty: st.empty, skipped: ap.skipped };
}

// Rewrites (truncate, write) 1-2 MiB files in DIR without pause, for at most 20 s / 20,000 writes.
const REWRITER = String.raw`
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const dir = process.argv[1];
const end = Date.now() + 20000;
for (let i = 0; i < 20000 && Date.now() < end; i++) {
  fs.writeFileSync(path.join(dir, 'f' + (i % 3)), crypto.randomBytes((1 + (i % 2)) * 1024 * 1024));
}
`;

// ------------------------------------------------------------------ tests

describe('fssync rounds on real directories', { skip: isRoot ? false : 'needs root: devices, owners, trusted.* and security.* xattrs, overlay mounts' }, () => {
  let work = '';
  const mounts: string[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cloudlet-fssync-'));
  });

  after(async () => {
    // Runs also when a test failed: mounts first (deepest last-mounted first), then the files.
    for (const m of mounts.reverse()) await umountIfMounted(m).catch(() => undefined);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('carries new, changed, deleted files, whiteouts, opaque dirs, links, owners, modes and xattrs in rounds', async () => {
    const up = join(work, 'r-upper');
    const tgt = join(work, 'r-target');
    const bd = join(work, 'r-batches');
    await mkdir(bd);
    await mkdir(up);
    await mkdir(tgt);
    const rounds: Round[] = [];
    const src = new FsSyncSource({ sourceDir: up, stateDir: join(work, 'r-state') });
    try {
      // ---- round 1: the base content
      await mkdir(join(up, 'dir/sub'), { recursive: true });
      await mkdir(join(up, 'opq/inner'), { recursive: true });
      await mkdir(join(up, 'olddir/deep'), { recursive: true });
      await writeFile(join(up, 'a.txt'), 'alpha\n');
      await writeFile(join(up, 'dir/b.bin'), randomBytes(256 * 1024));
      await writeFile(join(up, 'dir/sub/c'), 'charlie');
      await writeFile(join(up, 'olddir/deep/x'), 'x');
      await writeFile(join(up, 'empty'), '');
      await writeFile(join(up, 'name with spaces ü'), 'unicode');
      await writeFile(join(up, 'gone-later'), 'soon a whiteout');
      await writeFile(join(up, 'opq/inner/f'), 'in opaque');
      await symlink('a.txt', join(up, 'link'));
      await symlink('/nowhere/at/all', join(up, 'dangling'));
      await writeFile(join(up, 'h1'), 'hard linked');
      await link(join(up, 'h1'), join(up, 'dir/h2')); // across directories
      await mknodWhiteout(join(up, 'wh')); // a base-layer file deleted in the container
      await setx(join(up, 'opq'), 'trusted.overlay.opaque', 'y');
      await setx(join(up, 'a.txt'), 'user.note', 'hello');
      await setx(join(up, 'dir/b.bin'), 'user.big', '0x' + randomBytes(300).toString('hex')); // > rsync's 32-byte abbreviation
      await setx(join(up, 'dir'), 'trusted.overlay.impure', 'y');
      await chown(join(up, 'dir/sub/c'), 12345, 54321);
      await chmod(join(up, 'dir/sub/c'), 0o640);
      await writeFile(join(up, 'suid'), '#!/bin/sh\n');
      await chown(join(up, 'suid'), 0, 0);
      await chmod(join(up, 'suid'), 0o4755);
      await writeFile(join(up, 'ping'), 'pretend binary');
      await chown(join(up, 'ping'), 1000, 1000);
      await setx(join(up, 'ping'), 'security.capability', CAP_NET_RAW); // after chown: chown clears it
      await run('mkfifo', [join(up, 'fifo')]);
      await lchown(join(up, 'link'), 777, 888);
      rounds.push(await syncRound(src, tgt, bd, 1));

      // ---- round 2: changes of every kind
      await appendFile(join(up, 'a.txt'), 'more\n'); // content + size
      await overwriteAt(join(up, 'dir/b.bin'), 100_000, Buffer.from('SAME SIZE CHANGE')); // same size, same second
      await rm(join(up, 'dir/sub/c')); // deleted
      await rm(join(up, 'gone-later'));
      await mknodWhiteout(join(up, 'gone-later')); // file replaced by a whiteout
      await rm(join(up, 'olddir'), { recursive: true });
      await mknodWhiteout(join(up, 'olddir')); // directory replaced by a whiteout
      await delx(join(up, 'opq'), 'trusted.overlay.opaque'); // no longer opaque
      await setx(join(up, 'dir'), 'trusted.overlay.opaque', 'y'); // now opaque
      await writeFile(join(up, 'new.txt'), 'new file');
      await chown(join(up, 'a.txt'), 4242, 2424);
      await chmod(join(up, 'a.txt'), 0o600);
      await chown(join(up, 'ping'), 2000, 3000); // owner change on a file with capabilities...
      await setx(join(up, 'ping'), 'security.capability', CAP_NET_RAW); // ...which is set again
      await link(join(up, 'h1'), join(up, 'h3')); // new member of an unchanged group
      await rm(join(up, 'dir/h2'));
      await writeFile(join(up, 'dir/h2'), 'no longer linked'); // group broken
      await rm(join(up, 'link'));
      await symlink('new.txt', join(up, 'link')); // retargeted
      await setx(join(up, 'a.txt'), 'user.note', 'changed');
      await setx(join(up, 'new.txt'), 'user.other', 'x');
      await delx(join(up, 'dir/b.bin'), 'user.big');
      rounds.push(await syncRound(src, tgt, bd, 2));

      // ---- round 3: nothing changed
      const r3 = await syncRound(src, tgt, bd, 3);
      rounds.push(r3);
      assert.equal(r3.empty, true, JSON.stringify(r3));

      // ---- round 4: more, including a directory replacing a file and a file replacing a dir
      await rm(join(up, 'wh'));
      await mkdir(join(up, 'wh'));
      await writeFile(join(up, 'wh/now-a-dir'), 'dir where a whiteout was');
      await rm(join(up, 'opq'), { recursive: true });
      await writeFile(join(up, 'opq'), 'file where a dir was');
      await overwriteAt(join(up, 'h1'), 0, Buffer.from('HARD')); // changes h1 and h3
      await chmod(join(up, 'suid'), 0o2711);
      await chown(join(up, 'suid'), 99999, 88888);
      rounds.push(await syncRound(src, tgt, bd, 4));

      // ---- round 5: the final one, after the freeze
      await writeFile(join(up, 'last-words'), 'written just before the freeze');
      await overwriteAt(join(up, 'dir/b.bin'), 7, Buffer.from('final'));
      rounds.push(await syncRound(src, tgt, bd, 5, { final: true }));

      // spot checks on top of the exhaustive comparison
      const wo = await lstat(join(tgt, 'gone-later'));
      assert.ok(wo.isCharacterDevice() && wo.rdev === 0, 'whiteout carried');
      assert.equal((await run('getfattr', ['-h', '--only-values', '-n', 'trusted.overlay.opaque', join(tgt, 'dir')])).stdout, 'y');
      const impure = await run('getfattr', ['-h', '-d', '-m', 'trusted.overlay.impure', join(tgt, 'dir')]);
      assert.equal(impure.stdout.trim(), '', 'host-only overlay xattrs are not carried');
      const cap = await run('getfattr', ['-h', '-e', 'hex', '-n', 'security.capability', join(tgt, 'ping')]);
      assert.match(cap.stdout, new RegExp(`security.capability=${CAP_NET_RAW}`));
      assert.equal((await lstat(join(tgt, 'ping'))).uid, 2000);
      console.log('fssync rounds:', JSON.stringify(rounds));
      assert.ok(rounds[4]!.bytes < 64 * 1024, `final round small: ${rounds[4]!.bytes}`);
    } finally {
      await src.dispose();
    }
  });

  it('syncs a mounted overlay upperdir; the destination overlay shows the same merged view', async () => {
    const lower = join(work, 'o-lower');
    const srcUp = join(work, 'o-src-upper');
    const srcWork = join(work, 'o-src-work');
    const srcMerged = join(work, 'o-src-merged');
    const tgtUp = join(work, 'o-tgt-upper');
    const tgtWork = join(work, 'o-tgt-work');
    const tgtMerged = join(work, 'o-tgt-merged');
    const bd = join(work, 'o-batches');
    for (const d of [lower, srcUp, srcWork, srcMerged, tgtUp, tgtWork, tgtMerged, bd]) await mkdir(d, { recursive: true });
    // base layer
    await mkdir(join(lower, 'etc'));
    await mkdir(join(lower, 'olddir'));
    await mkdir(join(lower, 'mopq'));
    await writeFile(join(lower, 'keep.txt'), 'kept from the base');
    await writeFile(join(lower, 'gone.txt'), 'deleted in the container');
    await writeFile(join(lower, 'mgone.txt'), 'deleted by a hand-made whiteout');
    await writeFile(join(lower, 'etc/conf'), 'base=1\n');
    await writeFile(join(lower, 'olddir/x'), 'x');
    await writeFile(join(lower, 'olddir/y'), 'y');
    await writeFile(join(lower, 'mopq/p'), 'p');
    await writeFile(join(lower, 'mopq/q'), 'q');
    // hand-made upper entries, as a layer diff would carry them
    await mknodWhiteout(join(srcUp, 'mgone.txt'));
    await mkdir(join(srcUp, 'mopq'));
    await setx(join(srcUp, 'mopq'), 'trusted.overlay.opaque', 'y');
    await writeFile(join(srcUp, 'mopq/own'), 'only this one');

    const mountOverlay = async (up: string, wk: string, merged: string): Promise<void> => {
      mounts.push(merged);
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${up},workdir=${wk}`, merged]);
    };
    const src = new FsSyncSource({ sourceDir: srcUp, stateDir: join(work, 'o-state') });
    try {
      await mountOverlay(srcUp, srcWork, srcMerged);
      // pre-copy round 1 while "running": changes through the merged view
      await writeFile(join(srcMerged, 'new.txt'), 'created in the container');
      await appendFile(join(srcMerged, 'etc/conf'), 'app=2\n'); // copy-up
      await syncRound(src, tgtUp, bd, 1);
      // round 2: deletions of base files and of a base directory recreated (kernel-made
      // whiteout and opaque dir), a hard link, owner and mode changes
      await rm(join(srcMerged, 'gone.txt'));
      await rm(join(srcMerged, 'olddir'), { recursive: true });
      await mkdir(join(srcMerged, 'olddir'));
      await writeFile(join(srcMerged, 'olddir/fresh'), 'fresh');
      await link(join(srcMerged, 'new.txt'), join(srcMerged, 'new-hl'));
      await chown(join(srcMerged, 'keep.txt'), 31337, 7331); // metadata copy-up
      await chmod(join(srcMerged, 'etc/conf'), 0o600);
      await syncRound(src, tgtUp, bd, 2);
      // final round after the "freeze"
      await writeFile(join(srcMerged, 'etc/conf'), 'base=1\napp=3\n');
      const fin = await syncRound(src, tgtUp, bd, 3, { final: true });
      console.log('overlay final round:', JSON.stringify(fin));

      const wo = await lstat(join(srcUp, 'gone.txt'));
      assert.ok(wo.isCharacterDevice() && wo.rdev === 0, 'the kernel made a whiteout in the source upper');

      await mountOverlay(tgtUp, tgtWork, tgtMerged);
      const names = (await readdir(tgtMerged)).sort();
      assert.ok(!names.includes('gone.txt'), 'whited-out base file absent in the merged view');
      assert.ok(!names.includes('mgone.txt'), 'hand-made whiteout hides the base file');
      assert.deepEqual((await readdir(join(tgtMerged, 'olddir'))).sort(), ['fresh'], 'opaque dir (kernel-made) hides lower content');
      assert.deepEqual((await readdir(join(tgtMerged, 'mopq'))).sort(), ['own'], 'opaque dir (hand-made) hides lower content');
      assert.equal(await readFile(join(tgtMerged, 'keep.txt'), 'utf8'), 'kept from the base');
      assert.equal((await lstat(join(tgtMerged, 'keep.txt'))).uid, 31337);
      assert.equal(await readFile(join(tgtMerged, 'etc/conf'), 'utf8'), 'base=1\napp=3\n');
      // and the whole merged views agree (inode numbers aside: grouping is compared)
      assertSameTree(await snapshot(srcMerged), await snapshot(tgtMerged), 'merged views');
    } finally {
      await src.dispose();
      await umountIfMounted(tgtMerged);
      await umountIfMounted(srcMerged);
    }
  });

  it('pre-copy rounds of a file rewritten while rsync reads it never hang; the final round brings it', async (t) => {
    // The evaluation run once hung a migration for good: the busybox counter rewrote its
    // file while rsync read it, rsync's writer exited 23 and applying that batch waited
    // for a resend. A child process here rewrites 1-2 MiB files without pause (bounded).
    const up = join(work, 'w-upper');
    const tgt = join(work, 'w-target');
    const bd = join(work, 'w-batches');
    await mkdir(bd);
    await mkdir(up);
    const writer = spawn(process.execPath, ['-e', REWRITER, up], { stdio: 'ignore' });
    const src = new FsSyncSource({ sourceDir: up, stateDir: join(work, 'w-state'), timeoutMs: 60_000, nice: 19 });
    let rewrites = 0;
    let deferred = 0;
    try {
      await new Promise((r) => setTimeout(r, 300));
      for (let n = 1; n <= 8; n++) {
        const batch = join(bd, `batch-${n}`);
        const st = await src.nextBatch(batch);
        rewrites += st.rewrites;
        if (st.deferred) deferred++;
        await applyBatch(batch, tgt, { timeoutMs: 60_000 });
        await rm(batch, { force: true });
      }
    } finally {
      if (writer.exitCode === null) {
        const gone = new Promise((r) => writer.once('exit', r));
        writer.kill('SIGKILL');
        await gone;
      }
    }
    try {
      t.diagnostic(`8 live rounds: ${rewrites} batch rewrite(s) after a partial read, ${deferred} round(s) deferred`);
      await syncRound(src, tgt, bd, 9, { final: true });
    } finally {
      await src.dispose();
    }
  });

  it('measures an initial 100 MB round of 1,000 files and a final round after changing 3 files', async () => {
    const up = join(work, 'm-upper');
    const tgt = join(work, 'm-target');
    const bd = join(work, 'm-batches');
    await mkdir(bd);
    const perFile = Math.floor((100 * 1024 * 1024) / 1000);
    for (let d = 0; d < 10; d++) await mkdir(join(up, `d${d}`), { recursive: true });
    for (let i = 0; i < 1000; i++) await writeFile(join(up, `d${i % 10}`, `f${i}`), randomBytes(perFile));
    const src = new FsSyncSource({ sourceDir: up, stateDir: join(work, 'm-state') });
    try {
      const initial = await syncRound(src, tgt, bd, 1, { compare: false });
      for (const i of [1, 502, 999]) await overwriteAt(join(up, `d${i % 10}`, `f${i}`), 50_000, randomBytes(4096));
      const final = await syncRound(src, tgt, bd, 2, { final: true, compare: false });
      assertSameTree(await snapshot(up), await snapshot(tgt), 'after final round');
      console.log(
        `fssync measure: initial 1000 files/${((perFile * 1000) / 1e6).toFixed(1)} MB: batch ${initial.bytes} B, ` +
          `write ${initial.writeMs} ms (incl. shadow), apply ${initial.applyMs} ms; ` +
          `final after 3 changed files: batch ${final.bytes} B, write ${final.writeMs} ms, apply ${final.applyMs} ms, items ${final.files}`,
      );
      assert.ok(initial.bytes > 100 * 1024 * 1024, 'initial round carries all data');
      assert.ok(final.bytes < 256 * 1024, `final round carries only the changes: ${final.bytes}`);
      assert.equal(final.files, 3, 'only the three rewritten files (in-place writes leave directory mtimes alone)');
    } finally {
      await src.dispose();
    }
  });
});
