// The capability dump a peer sends with each fssync batch (src/fssync/xattr-dump.ts): the
// parser on real getfattr output and on every refusal; the path check on a real tree; and
// hostile batches (dump aimed outside the target, through a symlink the batch itself made,
// rsync options the writer never uses) refused with the file outside the target unchanged.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { applyBatch } from '../../src/fssync/apply.js';
import { FsSyncError } from '../../src/fssync/errors.js';
import { FsSyncSource } from '../../src/fssync/index.js';
import { confinedXattrDump, parseXattrDump, renderXattrDump, type XattrDumpEntry } from '../../src/fssync/xattr-dump.js';
import { CAP_NET_RAW, HAVE_GETFATTR, makeRealDumps, ODD_NAMES } from './xattr-dump-fixtures.js';

const isRoot = process.getuid?.() === 0;

function refusal(fn: () => unknown, code: 'fssync_xattr_dump_unsafe' | 'fssync_xattr_dump_invalid', line: number, path: string | null, reason: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FsSyncError, `expected FsSyncError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.context.line, line, e.message);
    assert.equal(e.context.path, path, e.message);
    assert.match(String(e.context.reason), reason);
    assert.match(e.message, new RegExp(`line ${line}`));
    return true;
  });
}

const parse = (s: string | Buffer, allowedNames?: string[]) =>
  parseXattrDump(typeof s === 'string' ? Buffer.from(s, 'latin1') : s, allowedNames ? { allowedNames } : {});
const paths = (es: XattrDumpEntry[]) => es.map((e) => Buffer.concat(e.components.flatMap((c, i) => (i === 0 ? [c] : [Buffer.from('/'), c]))).toString('utf8'));

describe('xattr dump parser', () => {
  it('refuses paths that leave the target: absolute, .., NUL (raw or escaped)', () => {
    refusal(() => parse('# file: /etc/passwd\nsecurity.capability=0x01\n'), 'fssync_xattr_dump_unsafe', 1, '/etc/passwd', /absolute/);
    refusal(() => parse('# file: \\057etc/passwd\nuser.a=0x01\n'), 'fssync_xattr_dump_unsafe', 1, '/etc/passwd', /absolute/);
    refusal(() => parse('# file: ok\nuser.a=0x01\n\n# file: ../x\nuser.a=0x01\n'), 'fssync_xattr_dump_unsafe', 4, '../x', /'\.\.'/);
    refusal(() => parse('# file: a/b/../../../x\nuser.a=0x01\n'), 'fssync_xattr_dump_unsafe', 1, 'a/b/../../../x', /'\.\.'/);
    refusal(() => parse('# file: a/..\nuser.a=0x01\n'), 'fssync_xattr_dump_unsafe', 1, 'a/..', /'\.\.'/);
    refusal(() => parse('# file: a/\\056\\056/x\nuser.a=0x01\n'), 'fssync_xattr_dump_unsafe', 1, 'a/../x', /'\.\.'/);
    refusal(() => parse('# file: ok\\000/../../x\nuser.a=0x01\n'), 'fssync_xattr_dump_unsafe', 1, 'ok\\000/../../x', /NUL/);
    refusal(() => parse(Buffer.from('# file: ok\0/x\nuser.a=0x01\n', 'latin1')), 'fssync_xattr_dump_unsafe', 1, null, /NUL/);
    refusal(() => parse(Buffer.from('# file: ok\nuser.a\0=0x01\n', 'latin1')), 'fssync_xattr_dump_unsafe', 2, 'ok', /NUL/);
    refusal(() => parse('# file: ok\nuser.a\\000b=0x01\n'), 'fssync_xattr_dump_unsafe', 2, 'ok', /NUL byte in attribute name/);
  });

  it('refuses what getfattr never writes: empty names and paths, bad escapes, raw CR, no header', () => {
    refusal(() => parse('# file: \nuser.a=0x01\n'), 'fssync_xattr_dump_invalid', 1, '', /empty path/);
    refusal(() => parse('# file: ok\n=0x01\n'), 'fssync_xattr_dump_invalid', 2, 'ok', /empty attribute name/);
    refusal(() => parse('# file: a//b\nuser.a=0x01\n'), 'fssync_xattr_dump_invalid', 1, 'a//b', /empty path component/);
    refusal(() => parse('# file: a/\nuser.a=0x01\n'), 'fssync_xattr_dump_invalid', 1, 'a/', /empty path component/);
    refusal(() => parse('# file: a\\b\nuser.a=0x01\n'), 'fssync_xattr_dump_invalid', 1, 'a\\134b', /backslash/);
    refusal(() => parse('# file: a\\777\nuser.a=0x01\n'), 'fssync_xattr_dump_invalid', 1, 'a\\134777', /not a byte/);
    refusal(() => parse('# file: a\r\nuser.a=0x01\n'), 'fssync_xattr_dump_invalid', 1, null, /carriage return/);
    refusal(() => parse('user.a=0x01\n'), 'fssync_xattr_dump_invalid', 1, null, /# file:/);
    refusal(() => parse('#file: a\nuser.a=0x01\n'), 'fssync_xattr_dump_invalid', 1, null, /# file:/);
    refusal(() => parse('# file: a\nuser.a\n'), 'fssync_xattr_dump_invalid', 2, 'a', /without '='/);
    refusal(() => parse('# file: a\nuser.a=0x0\n'), 'fssync_xattr_dump_invalid', 2, 'a', /hex/);
    refusal(() => parse('# file: a\nuser.a=0xzz\n'), 'fssync_xattr_dump_invalid', 2, 'a', /hex/);
    refusal(() => parse('# file: a\nuser.a=0sQQ\n'), 'fssync_xattr_dump_invalid', 2, 'a', /base64/);
    refusal(() => parse('# file: a\nuser.a=plain\n'), 'fssync_xattr_dump_invalid', 2, 'a', /not 0x/);
    refusal(() => parse('# file: a\nuser.=0x01\n'), 'fssync_xattr_dump_invalid', 2, 'a', /namespace|not user/);
    refusal(() => parse('# file: a\nfoo.bar=0x01\n'), 'fssync_xattr_dump_invalid', 2, 'a', /not user/);
    // A second header without the blank line is, for setfattr too, an attribute name.
    refusal(() => parse('# file: a\nuser.a=0x01\n# file: /etc/shadow\nuser.b=0x01\n'), 'fssync_xattr_dump_invalid', 3, 'a', /without '='|not user/);
    refusal(() => parse('# file: a\nuser.a=0x01\n', ['security.capability']), 'fssync_xattr_dump_invalid', 2, 'a', /not one this dump may carry/);
    refusal(() => parse(`# file: a\nuser.a=0x${'00'.repeat(65537)}\n`), 'fssync_xattr_dump_invalid', 2, 'a', /longer than 65536/);
    refusal(() => parse(`# file: ${'a'.repeat(256)}\nuser.a=0x01\n`), 'fssync_xattr_dump_invalid', 1, 'a'.repeat(256), /component longer/);
  });

  it('takes the three value encodings, . for the root, and renders a canonical dump that parses the same', () => {
    const es = parse('# file: .\nuser.a=0x00ff\nuser.b=0sAP8=\nuser.c="\\000\\377"\n\n\n# file: ./x/./y\nsecurity.capability=0x\n');
    assert.equal(es.length, 2);
    assert.deepEqual(es[0]!.components, []);
    for (const a of es[0]!.attrs) assert.deepEqual(a.value, Buffer.from([0, 0xff]), a.name.toString());
    assert.deepEqual(paths(es), ['', 'x/y']);
    assert.equal(es[1]!.line, 7);
    assert.deepEqual(
      parse(renderXattrDump(es)).map((e) => [e.components, e.attrs.map((a) => [a.name, a.value])]),
      es.map((e) => [e.components, e.attrs.map((a) => [a.name, a.value])]),
    );
    assert.deepEqual(parse(''), []);
  });

  describe('on real getfattr output', { skip: HAVE_GETFATTR ? false : 'needs getfattr/setfattr (attr)' }, () => {
    let work = '';
    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'cloudlet-xattr-dump-'));
    });
    after(async () => {
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('parses every file name getfattr writes, and setfattr restores our rendering to the same xattrs', async () => {
      const d = makeRealDumps(join(work, 'a'));
      for (const dump of [d.hex, d.text, d.base64]) {
        const es = parse(dump);
        const got = paths(es);
        for (const n of ODD_NAMES) assert.ok(got.includes(n), `${JSON.stringify(n)} in ${JSON.stringify(got)}`);
        const plain = es.find((e) => paths([e])[0] === 'plain')!;
        const weird = plain.attrs.find((a) => a.name.toString('latin1') === 'user.we ird=n\\x');
        assert.deepEqual(weird?.value, Buffer.from([0, 0xff, 0x0a, 0x3d]));
      }
      if (d.withCaps) {
        const caps = parse(d.caps, ['security.capability']);
        assert.deepEqual(paths(caps), ['ping']);
        assert.equal('0x' + caps[0]!.attrs[0]!.value.toString('hex'), CAP_NET_RAW);
      }
      // The same tree without xattrs (same names) gets them back from the rendered dump.
      const b = join(work, 'b');
      execFileSync('cp', ['-a', '--no-preserve=xattr', join(d.root, '.'), b]);
      const before = execFileSync('getfattr', ['-R', '-h', '-P', '-d', '-e', 'hex', '-m', '-', '.'], { cwd: b, env: { ...process.env, LC_ALL: 'C' } });
      assert.ok(!before.includes(Buffer.from('user.t')), 'copy without xattrs');
      const dumpFile = join(work, 'rendered');
      await writeFile(dumpFile, renderXattrDump(parse(d.hex)));
      execFileSync('setfattr', ['-h', `--restore=${dumpFile}`], { cwd: b });
      const again = execFileSync('getfattr', ['-R', '-h', '-P', '-d', '-e', 'hex', '-m', '-', '.'], { cwd: b, env: { ...process.env, LC_ALL: 'C' } });
      assert.deepEqual(again, d.hex);
    });

    it('confinedXattrDump refuses a path through a symlink, allows a symlink as the last component and missing files', async () => {
      const t = join(work, 't');
      const outside = join(work, 'outside');
      await mkdir(join(t, 'dir'), { recursive: true });
      await mkdir(outside, { recursive: true });
      await symlink(outside, join(t, 'out'));
      await symlink('dir', join(t, 'inlink'));
      await confinedXattrDump(t, parse('# file: out\nuser.a=0x01\n\n# file: dir/x\nuser.a=0x01\n\n# file: gone/x/y\nuser.a=0x01\n\n# file: .\nuser.a=0x01\n'));
      await assert.rejects(confinedXattrDump(t, parse('# file: dir/x\nuser.a=0x01\n\n# file: out/victim\nuser.a=0x01\n')), (e: unknown) => {
        assert.ok(e instanceof FsSyncError && e.code === 'fssync_xattr_dump_unsafe', String(e));
        assert.equal(e.context.line, 4);
        assert.equal(e.context.path, 'out/victim');
        assert.match(e.message, /"out" is a symlink/);
        return true;
      });
      // Even a symlink that stays in the tree: lsetxattr would follow it, and the check does not resolve.
      await assert.rejects(confinedXattrDump(t, parse('# file: inlink/x\nuser.a=0x01\n')), /symlink/);
    });
  });
});

/** Rewrites a batch's trailer (see index.ts: JSON, its u32 LE length, "CLFSYNC1"). */
async function withTrailer(batch: string, out: string, edit: (t: Record<string, unknown>) => void, editRsync?: (b: Buffer) => void): Promise<void> {
  const bytes = await readFile(batch);
  const jsonLen = bytes.readUInt32LE(bytes.length - 12);
  const rsync = Buffer.from(bytes.subarray(0, bytes.length - 12 - jsonLen));
  const t = JSON.parse(bytes.subarray(rsync.length, rsync.length + jsonLen).toString('utf8')) as Record<string, unknown>;
  edit(t);
  editRsync?.(rsync);
  const json = Buffer.from(JSON.stringify(t));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  await writeFile(out, Buffer.concat([rsync, json, len, Buffer.from('CLFSYNC1')]));
}

/** Contents hash and every xattr (getfattr, all namespaces) of a file: what must not change. */
function fingerprint(file: string): string {
  const data = execFileSync('sha256sum', [file]).toString().split(' ')[0];
  const xattrs = execFileSync('getfattr', ['-h', '-d', '-e', 'hex', '-m', '-', file], {
    env: { ...process.env, LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'ignore'],
  }).toString();
  return `${data}\n${xattrs}`;
}

describe('hostile batches', { skip: isRoot && HAVE_GETFATTR ? false : 'needs root, rsync and attr' }, () => {
  let work = '';
  let victim = '';
  let victimBefore = '';
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'cloudlet-fssync-hostile-'));
    // The file next to the target a hostile dump aims at.
    await mkdir(join(work, 'outside'));
    victim = join(work, 'outside', 'victim');
    await writeFile(victim, 'not yours\n');
    execFileSync('setfattr', ['-n', 'user.keep', '-v', 'me', victim]);
    victimBefore = fingerprint(victim);
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function realBatch(name: string, fill: (src: string) => Promise<void>): Promise<string> {
    const src = join(work, `src-${name}`);
    await mkdir(src);
    await fill(src);
    const s = new FsSyncSource({ sourceDir: src, stateDir: join(work, `state-${name}`) });
    const b = join(work, `batch-${name}`);
    try {
      await s.nextBatch(b);
    } finally {
      await s.dispose();
    }
    return b;
  }

  const capsOf = (dump: string) => Buffer.from(dump, 'latin1').toString('base64');

  it('a dump aimed outside the target is refused before the target changes; the file there keeps its bytes and xattrs', async () => {
    const b = await realBatch('plain', async (src) => writeFile(join(src, 'f'), 'hello\n'));
    const cases: [string, string][] = [
      ['dotdot', `# file: ../outside/victim\nsecurity.capability=${CAP_NET_RAW}\n`],
      ['abs', `# file: ${victim}\nsecurity.capability=${CAP_NET_RAW}\n`],
      ['escaped', `# file: f\nsecurity.capability=${CAP_NET_RAW}\n\n# file: \\056\\056/outside/victim\nsecurity.capability=${CAP_NET_RAW}\n`],
      ['name', `# file: ../outside/victim\nuser.keep=0x6f776e6564\n`],
    ];
    for (const [name, dump] of cases) {
      const hostile = join(work, `hostile-${name}`);
      await withTrailer(b, hostile, (t) => void (t.caps = capsOf(dump)));
      const tgt = join(work, `tgt-${name}`);
      await assert.rejects(applyBatch(hostile, tgt), (e: unknown) => {
        assert.ok(e instanceof FsSyncError, String(e));
        assert.ok(['fssync_xattr_dump_unsafe', 'fssync_xattr_dump_invalid'].includes(e.code), `${name}: ${e.code} ${e.message}`);
        return true;
      });
      await assert.rejects(stat(tgt), /ENOENT/, `${name}: nothing applied`);
      assert.equal(fingerprint(victim), victimBefore, name);
    }
  });

  it('a dump through a symlink the batch itself made is refused after rsync, before setfattr', async () => {
    const outsideDir = join(work, 'outside');
    const b = await realBatch('link', async (src) => {
      await writeFile(join(src, 'f'), 'hello\n');
      await symlink(outsideDir, join(src, 'lnk'));
    });
    const hostile = join(work, 'hostile-link');
    await withTrailer(
      b,
      hostile,
      (t) => void (t.caps = capsOf(`# file: f\nsecurity.capability=${CAP_NET_RAW}\n\n# file: lnk/victim\nsecurity.capability=${CAP_NET_RAW}\n`)),
    );
    const tgt = join(work, 'tgt-link');
    await assert.rejects(applyBatch(hostile, tgt), (e: unknown) => {
      assert.ok(e instanceof FsSyncError && e.code === 'fssync_xattr_dump_unsafe', String(e));
      assert.equal(e.context.line, 4);
      assert.equal(e.context.path, 'lnk/victim');
      return true;
    });
    assert.equal(fingerprint(victim), victimBefore);
    // rsync did run (the symlink is there) but no capability was set, not even the harmless one.
    assert.equal((await stat(join(tgt, 'f'))).size, 6);
    assert.ok(!fingerprint(join(tgt, 'f')).includes('security.capability'));
  });

  // What fssync relies on rsync's receiver for (see the "Trust" comment in index.ts): batches
  // edited in their file list, keeping every length, so only the name changes.
  it("rsync's receiver refuses a batch whose file list names a path outside the target", async () => {
    const outsideDir = join(work, 'outside');
    for (const [name, evil] of [
      ['dotdot', '../outside/pwned'],
      ['abs', join(outsideDir, 'pwned')],
    ] as const) {
      const stand = 'q'.repeat(evil.length);
      const b = await realBatch(`rs-${name}`, async (src) => writeFile(join(src, stand), 'PWNED\n'));
      const hostile = join(work, `hostile-rs-${name}`);
      await withTrailer(
        b,
        hostile,
        () => undefined,
        (r) => {
          const at = r.indexOf(stand);
          assert.ok(at > 0 && r.indexOf(stand, at + 1) < 0, 'the name is in the file list once');
          r.write(evil, at, 'latin1');
        },
      );
      await assert.rejects(applyBatch(hostile, join(work, `tgt-rs-${name}`)), (e: unknown) => {
        assert.ok(e instanceof FsSyncError && e.code === 'fssync_apply_failed', String(e));
        assert.match(String(e.context.stderrTail), /unsafe pathname from sender/);
        return true;
      });
      await assert.rejects(stat(join(outsideDir, 'pwned')), /ENOENT/, name);
    }
  });

  it("rsync's receiver refuses a file below a symlink of the same batch (parent not a directory of the list)", async () => {
    const outsideDir = join(work, 'outside');
    // Source: symlink `a` (to outside) and directory `ab` holding `x`. In the incremental
    // file list, `ab/x` is written as 2 bytes shared with the previous name `ab` + "/x";
    // sharing 1 byte makes it `a/x`, a file below the symlink.
    const b = await realBatch('rs-link', async (src) => {
      await symlink(outsideDir, join(src, 'a'));
      await mkdir(join(src, 'ab'));
      await writeFile(join(src, 'ab', 'x'), 'PWNED\n');
    });
    const hostile = join(work, 'hostile-rs-link');
    await withTrailer(
      b,
      hostile,
      () => undefined,
      (r) => {
        const pattern = Buffer.from([2, 2, 0x2f, 0x78]);
        const at = r.indexOf(pattern);
        assert.ok(at > 0 && r.indexOf(pattern, at + 1) < 0, 'the encoding of ab/x is as expected (rsync protocol 32)');
        r[at] = 1;
      },
    );
    await assert.rejects(applyBatch(hostile, join(work, 'tgt-rs-link')), (e: unknown) => {
      assert.ok(e instanceof FsSyncError && e.code === 'fssync_apply_failed', String(e));
      assert.match(String(e.context.stderrTail), /invalid path from sender: a\/x/);
      return true;
    });
    await assert.rejects(stat(join(outsideDir, 'x')), /ENOENT/);
    assert.equal(fingerprint(victim), victimBefore);
  });

  it('a batch asking rsync for options nextBatch never writes is refused', async () => {
    const b = await realBatch('flags', async (src) => writeFile(join(src, 'f'), 'hello\n'));
    const hostile = join(work, 'hostile-flags');
    // Bit 12 of the stream flags: --inplace (rsync batch.c).
    await withTrailer(
      b,
      hostile,
      () => undefined,
      (r) => r.writeInt32LE(r.readInt32LE(0) | (1 << 12), 0),
    );
    const tgt = join(work, 'tgt-flags');
    await assert.rejects(
      applyBatch(hostile, tgt),
      (e: unknown) => e instanceof FsSyncError && e.code === 'fssync_batch_options' && /stream flags 0x1cbf/.test(e.message),
    );
    await assert.rejects(stat(tgt), /ENOENT/);
    // The untouched batch applies, capabilities included when the source had one.
    await applyBatch(b, tgt);
    assert.equal(await readFile(join(tgt, 'f'), 'utf8'), 'hello\n');
  });

  it('a capability dump from a real source is applied (the path the checks guard still works)', async () => {
    const b = await realBatch('caps', async (src) => {
      await writeFile(join(src, 'ping'), 'x');
      await mkdir(join(src, 'd'));
      await writeFile(join(src, 'd', 'tool'), 'y');
      execFileSync('setfattr', ['-n', 'security.capability', '-v', CAP_NET_RAW, join(src, 'ping')]);
      execFileSync('setfattr', ['-n', 'security.capability', '-v', CAP_NET_RAW, join(src, 'd', 'tool')]);
    });
    const tgt = join(work, 'tgt-caps');
    await applyBatch(b, tgt);
    for (const f of ['ping', 'd/tool']) {
      const out = execFileSync('getfattr', ['-h', '-e', 'hex', '-n', 'security.capability', join(tgt, f)], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
      assert.match(out, new RegExp(`security.capability=${CAP_NET_RAW}`), f);
    }
  });
});
