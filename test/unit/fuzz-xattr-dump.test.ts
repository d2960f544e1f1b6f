// Fuzz of the capability dump parser (src/fssync/xattr-dump.ts), what a peer's fssync batch
// carries and the destination applies as root. Seeds are real getfattr dumps (hex, text and
// base64 encodings, and fssync's own security.capability listing) of a tree with odd file
// names (test/unit/xattr-dump-fixtures.ts). 10,000 mutated inputs: fuzz-kit's byte damage,
// plus line-aware damage (a header's path replaced by escaping ones, in raw or escaped form;
// lines swapped, dropped, duplicated; blank lines added or removed). Each must parse or be
// refused with FsSyncError (fssync_xattr_dump_invalid/_unsafe); a parsed dump must hold no
// path that leaves the target, and its canonical rendering must parse back to the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { FsSyncError } from '../../src/fssync/errors.js';
import { parseXattrDump, renderXattrDump, type XattrDumpEntry } from '../../src/fssync/xattr-dump.js';
import { FUZZ_CASES, FUZZ_SEED, describe, mutate, prng, runFuzz, type Rnd } from './fuzz-kit.js';
import { HAVE_GETFATTR, makeRealDumps } from './xattr-dump-fixtures.js';

const HOSTILE_PATHS = [
  '../x',
  '/etc/passwd',
  'a/../../b',
  'a/..',
  '..',
  '\\056\\056/x',
  '\\057etc/shadow',
  'ok\\000/../../x',
  'a//b',
  '',
  './../x',
  'a/./../..',
  '.\\057..',
  '\\134..',
  '..\\057x',
  'x/\\056\\056',
];

/** Where a parsed dump's paths end up from a target at /t: never above it. */
function assertConfined(es: XattrDumpEntry[], what: string): void {
  for (const e of es) {
    for (const c of e.components) {
      assert.ok(c.length > 0 && !c.includes(0) && !c.includes(0x2f), `${what}: bad component ${JSON.stringify(c.toString('latin1'))}`);
      assert.ok(!(c.length === 2 && c[0] === 0x2e && c[1] === 0x2e), `${what}: '..' accepted`);
    }
    const p = posix.resolve('/t', ...e.components.map((c) => c.toString('latin1')));
    assert.ok(p === '/t' || p.startsWith('/t/'), `${what}: ${p} escapes /t`);
  }
}

const summary = (es: XattrDumpEntry[]) =>
  es.map((e) => [e.components.map((c) => c.toString('hex')), e.attrs.map((a) => [a.name.toString('hex'), a.value.toString('hex')])]);

/** Line-aware damage: hostile paths in headers, lines moved, dropped, duplicated, blank lines changed. */
function mutateLines(seed: Buffer, rnd: Rnd): { buf: Buffer; what: string } {
  const lines = seed.toString('latin1').split('\n');
  const pick = () => rnd(lines.length);
  switch (rnd(5)) {
    case 0: {
      const headers = lines.map((l, i) => (l.startsWith('# file: ') ? i : -1)).filter((i) => i >= 0);
      const i = headers[rnd(headers.length)] ?? 0;
      const h = HOSTILE_PATHS[rnd(HOSTILE_PATHS.length)]!;
      // Whole path replaced, or the hostile part put in front of / behind the real one.
      const old = (lines[i] ?? '').slice(8);
      const path = [h, `${h}/${old}`, `${old}/${h}`][rnd(3)]!;
      lines[i] = `# file: ${path}`;
      return { buf: Buffer.from(lines.join('\n'), 'latin1'), what: `header ${i} -> ${JSON.stringify(path)}` };
    }
    case 1: {
      const a = pick();
      const b = pick();
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return { buf: Buffer.from(lines.join('\n'), 'latin1'), what: `lines ${a} and ${b} swapped` };
    }
    case 2: {
      const a = pick();
      lines.splice(a, 1);
      return { buf: Buffer.from(lines.join('\n'), 'latin1'), what: `line ${a} dropped` };
    }
    case 3: {
      const a = pick();
      const b = pick();
      lines.splice(b, 0, lines[a]!);
      return { buf: Buffer.from(lines.join('\n'), 'latin1'), what: `line ${a} copied to ${b}` };
    }
    default: {
      const a = pick();
      if (lines[a] === '') lines.splice(a, 1);
      else lines.splice(a, 0, '');
      return { buf: Buffer.from(lines.join('\n'), 'latin1'), what: `blank line toggled at ${a}` };
    }
  }
}

test(
  `xattr dump: ${FUZZ_CASES} mutated getfattr dumps -> confined entries or FsSyncError`,
  { timeout: 120_000, skip: HAVE_GETFATTR ? false : 'needs getfattr/setfattr (attr)' },
  async (t) => {
    const tmp = mkdtempSync(join(tmpdir(), 'fuzz-xattr-dump-'));
    t.after(() => rmSync(tmp, { recursive: true, force: true }));
    const d = makeRealDumps(join(tmp, 'tree'));
    const seeds = [d.hex, d.text, d.base64, ...(d.withCaps ? [d.caps] : [])];
    for (const s of seeds) assertConfined(parseXattrDump(s), 'seed'); // the seeds themselves parse
    const rnd = prng(FUZZ_SEED + 40);
    let accepted = 0;
    let hostileAccepted = 0;
    let lastWhat = '';
    const stats = await runFuzz({
      name: 'xattr dump',
      cases: FUZZ_CASES,
      seed: FUZZ_SEED + 40,
      gen: () => {
        const k = rnd(seeds.length);
        const m = rnd(2) === 0 ? mutateLines(seeds[k]!, rnd) : mutate(seeds[k]!, rnd, { others: seeds });
        lastWhat = m.what;
        return { input: m.buf, what: m.what };
      },
      parse: (buf) => {
        const capsOnly = rnd(4) === 0;
        const es = parseXattrDump(buf, capsOnly ? { allowedNames: ['security.capability'] } : {});
        assertConfined(es, lastWhat);
        // What setfattr is given parses back to exactly what was checked.
        assert.deepEqual(summary(parseXattrDump(renderXattrDump(es))), summary(es), lastWhat);
        accepted++;
        if (lastWhat.startsWith('header')) hostileAccepted++;
      },
      typed: (err) => (err instanceof FsSyncError ? err.code : null),
    });
    t.diagnostic(describe('xattr dump', stats, FUZZ_SEED + 40));
    t.diagnostic(`accepted ${accepted}, of which ${hostileAccepted} with a hostile header path (in a harmless form, e.g. inside a name)`);
    assert.ok(stats.maxCaseMs < 2000, `slowest case ${stats.maxCaseMs} ms`);
    const codes = Object.keys(stats.outcomes);
    for (const c of codes) assert.ok(['ok', 'fssync_xattr_dump_invalid', 'fssync_xattr_dump_unsafe'].includes(c), `unexpected outcome ${c}`);
    assert.ok((stats.outcomes['fssync_xattr_dump_unsafe'] ?? 0) > FUZZ_CASES / 20, JSON.stringify(stats.outcomes));
    assert.ok((stats.outcomes['ok'] ?? 0) > FUZZ_CASES / 50, JSON.stringify(stats.outcomes));
  },
);
