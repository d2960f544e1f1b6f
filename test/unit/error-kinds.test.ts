// The closed set of error kinds: one status per kind and back, and every error made in the
// sources carries a kind (the compiler refuses one without; the scans below catch a class
// or a construction that slips past it, e.g. through a cast).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ApiError,
  CloudletError,
  CommandError,
  ConflictError,
  ERROR_KINDS,
  NotFoundError,
  UsageError,
  isErrorKind,
  kindFromHttpStatus,
  kindToHttpStatus,
} from '../../src/util/errors.js';
import { TransferError } from '../../src/transfer/errors.js';
import { ImageError } from '../../src/images/errors.js';
import { FsSyncError } from '../../src/fssync/errors.js';

// Compiled to dist/test/unit: the sources are three levels up.
const repo = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The text from `open` (an index of '(' or '{') to its matching close; strings and comments skipped (roughly: no nested templates). */
function balanced(text: string, open: number): string {
  const close = text[open] === '(' ? ')' : '}';
  let depth = 0;
  let quote: string | null = null;
  for (let i = open; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
      continue;
    }
    if (c === '/' && text[i + 1] === '/') i = text.indexOf('\n', i);
    else if (c === '/' && text[i + 1] === '*') i = text.indexOf('*/', i) + 1;
    else if (c === "'" || c === '"' || c === '`') quote = c;
    else if (c === text[open]) depth++;
    else if (c === close && --depth === 0) return text.slice(open, i + 1);
  }
  throw new Error(`unbalanced from offset ${open}`);
}

test('every kind maps to its own error status, and that status maps back to it', () => {
  const statuses = new Set<number>();
  for (const kind of ERROR_KINDS) {
    const status = kindToHttpStatus(kind);
    assert.ok(status >= 400 && status <= 599, `${kind} -> ${status}`);
    assert.equal(kindFromHttpStatus(status), kind, `${kind} -> ${status} -> back`);
    statuses.add(status);
  }
  assert.equal(statuses.size, ERROR_KINDS.length, 'two kinds share a status');
});

test('a status outside the mapping falls back by class; no error status means the far side failed', () => {
  assert.equal(kindFromHttpStatus(415), 'invalid-argument');
  assert.equal(kindFromHttpStatus(501), 'internal');
  assert.equal(kindFromHttpStatus(0), 'upstream');
  assert.equal(kindFromHttpStatus(200), 'upstream');
  assert.ok(isErrorKind('not-found'));
  assert.ok(!isErrorKind('not_found'));
});

test("the status of an error is its kind's, and ApiError reads its kind from the answer", () => {
  const made: CloudletError[] = [
    new UsageError('x'),
    new NotFoundError('container', 'c'),
    new ConflictError('x'),
    new CommandError('ls', [], 1, ''),
    new ApiError('http://p', 409, 'x'),
    new ApiError('http://p', 0, 'x', { code: 'unreachable' }),
    new ApiError('http://p', 500, 'x', { kind: 'unavailable' }),
    new TransferError('oversize', 'x'),
    new TransferError('crc', 'x'),
    new ImageError('overlay_too_large', 'x'),
    new ImageError('bad_image_archive', 'x'),
    new FsSyncError('fssync_busy', 'x'),
  ];
  for (const e of made) {
    assert.ok(isErrorKind(e.errorKind), `${e.code}: ${String(e.errorKind)}`);
    assert.equal(e.httpStatus, kindToHttpStatus(e.errorKind), e.code);
  }
  assert.deepEqual(
    made.map((e) => [e.code, e.httpStatus]),
    [
      ['usage', 400],
      ['not_found', 404],
      ['conflict', 409],
      ['command_failed', 500],
      ['api_error', 409],
      ['unreachable', 502],
      ['api_error', 503],
      ['transfer_oversize', 413],
      ['transfer_crc', 422],
      ['overlay_too_large', 413],
      ['bad_image_archive', 500],
      ['fssync_busy', 500],
    ],
  );
  const noKind = () => {
    // @ts-expect-error: a CloudletError cannot be made without a kind.
    throw new CloudletError('x', 'y', {});
  };
  assert.throws(noKind, (e: unknown) => e instanceof CloudletError);
});

test('every CloudletError made in src names its kind', () => {
  const missing: string[] = [];
  for (const file of tsFiles(join(repo, 'src'))) {
    const text = readFileSync(file, 'utf8');
    const where = relative(repo, file);
    for (const m of text.matchAll(/new CloudletError\(/g)) {
      const args = balanced(text, m.index + m[0].length - 1);
      if (!/\bkind:/.test(args)) missing.push(`${where}: ${args.slice(0, 80)}`);
    }
    // A subclass names the kind in its super call (or takes one with a default).
    for (const m of text.matchAll(/class (\w+) extends CloudletError \{/g)) {
      const body = balanced(text, m.index + m[0].length - 1);
      const superCall = /super\(/.exec(body);
      if (!superCall || !/\bkind\b/.test(balanced(body, superCall.index + 'super'.length))) missing.push(`${where}: class ${m[1]}`);
    }
  }
  assert.deepEqual(missing, []);
});
