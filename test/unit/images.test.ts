// Pure parts of the images module and of the private-engine helper.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLddOutput, sharedLibraries } from '../../src/images/base-images.js';
import { compareBytes } from '../../src/images/det-tar.js';
import { mountsUnder } from '../helpers/private-engine.js';

test('parseLddOutput keeps libraries and the loader, drops the vDSO, reports missing ones', () => {
  const out = parseLddOutput(
    '\tlinux-vdso.so.1 (0x00007ffd)\n' +
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1e)\n' +
      '\tlibfoo.so.1 => not found\n' +
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007f1e800cd000)\n',
  );
  assert.deepEqual(out.paths, ['/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2']);
  assert.deepEqual(out.missing, ['libfoo.so.1']);
});

test("the running node's libraries (real ldd) include libc and a loader", async () => {
  const libs = await sharedLibraries(process.execPath);
  assert.ok(
    libs.some((l) => /\/libc\.so\.6$/.test(l)),
    libs.join(' '),
  );
  assert.ok(
    libs.some((l) => /\/ld-linux[^/]*\.so\.\d+$/.test(l)),
    libs.join(' '),
  );
});

test('compareBytes is byte order, not locale order', () => {
  assert.deepEqual(['b', 'B', 'a', '[', '_'].sort(compareBytes), ['B', '[', '_', 'a', 'b']);
});

test('mountsUnder finds nested and escaped mount points, deepest first', () => {
  const info = [
    '22 1 0:21 / /proc rw - proc proc rw',
    '90 1 0:50 / /tmp/e/data/overlay2/x/merged rw - overlay overlay rw',
    '91 1 0:51 / /tmp/e/exec/netns\\040a rw - nsfs nsfs rw',
    '92 1 0:52 / /tmp/e rw - tmpfs tmpfs rw',
    '93 1 0:53 / /tmp/ee rw - tmpfs tmpfs rw',
  ].join('\n');
  assert.deepEqual(mountsUnder('/tmp/e', info), ['/tmp/e/data/overlay2/x/merged', '/tmp/e/exec/netns a', '/tmp/e']);
});
