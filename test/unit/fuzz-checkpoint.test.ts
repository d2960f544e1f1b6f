// Fuzz of the checkpoint parsers: CRIU image files (checkpoint/image-file.ts: framing and
// protobuf fields; pagemap.ts: pagemap validation) and the page delta wire format
// (checkpoint/delta-wire.ts decodeDelta). Seeds are real: dumps of a running Node.js workload by
// the real criu (test/helpers/criu-fixtures.ts), and the deltas the real encoder makes between
// two of its dumps. 10,000 mutated inputs go through each parser; each must give a result or
// an ImageFormatError, within bounded time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeDelta, encodeDelta } from '../../src/checkpoint/delta-wire.js';
import { writeDelta } from '../../src/checkpoint/delta-write.js';
import { decodeFields, parseImage, WIRE_LEN, type PbField } from '../../src/checkpoint/image-file.js';
import { indexDump, type PageIndex } from '../../src/checkpoint/page-index.js';
import { readPagemap } from '../../src/checkpoint/pagemap.js';
import { CriuLab, criuSkipReason } from '../helpers/criu-fixtures.js';
import { FUZZ_CASES, FUZZ_SEED, describe, mutate, prng, runFuzz, type LengthField } from './fuzz-kit.js';

const skip = criuSkipReason();
let tmp = '';
let lab: CriuLab | null = null;
const images = new Map<string, Buffer>();
const deltas: Buffer[] = [];
/** v2 deltas (hashes inherited) with the index each was encoded against. */
const against: { wire: Buffer; base: PageIndex }[] = [];

test.before(async () => {
  if (skip) return;
  tmp = await mkdtemp(join(process.env.FUZZ_TMP ?? tmpdir(), 'fuzz-criu-'));
  lab = new CriuLab(tmp);
  const w = await lab.startWorkload({ mib: 2, hot: 16, zeroMib: 1 });
  const dirs = [join(tmp, 'd1'), join(tmp, 'd2'), join(tmp, 'd3')];
  for (const [i, d] of dirs.entries()) {
    if (i > 0) await w.mutate();
    await w.dump(d, true);
  }
  for (const f of await readdir(dirs[1]!)) {
    if (f.endsWith('.img') && !f.startsWith('pages-')) images.set(f, await readFile(join(dirs[1]!, f)));
  }
  const [i1, i2] = [await indexDump(dirs[0]!), await indexDump(dirs[1]!)];
  deltas.push(encodeDelta(await writeDelta(i1, dirs[1]!)), encodeDelta(await writeDelta(i2, dirs[2]!)));
  against.push(
    { wire: encodeDelta(await writeDelta(i1, dirs[1]!), { against: i1 }), base: i1 },
    { wire: encodeDelta(await writeDelta(i2, dirs[2]!), { against: i2 }), base: i2 },
  );
  await lab.cleanup();
  lab = null;
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test.after(async () => {
  if (lab) await lab.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** The length words of the image framing: one before each entry. */
function imageFields(buf: Buffer): LengthField[] {
  const first = buf.readUInt32LE(0);
  let pos = first === 0x58313116 ? 4 : 8;
  const out: LengthField[] = [];
  while (pos + 4 <= buf.length) {
    out.push({ offset: pos, bytes: 4, le: true });
    pos += 4 + buf.readUInt32LE(pos);
  }
  return out;
}

/** Decodes a message and, like a reader of nested messages would, every length field within. */
function decodeDeep(buf: Buffer, file: string, offset: number, depth: number): number {
  let n = 0;
  const fields: PbField[] = decodeFields(buf, { file, offset });
  for (const f of fields) {
    n++;
    if (f.wire === WIRE_LEN && depth < 4) {
      try {
        n += decodeDeep(f.value as Buffer, file, offset, depth + 1);
      } catch (err) {
        // A bytes/string field is not necessarily a message: only typed refusals are expected.
        if (!(err instanceof Error && err.name === 'ImageFormatError')) throw err;
      }
    }
  }
  return n;
}

test(`CRIU images: ${FUZZ_CASES} mutated image files -> parsed or ImageFormatError`, { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  const names = [...images.keys()].sort();
  const seeds = names.map((n) => images.get(n)!);
  const fields = seeds.map(imageFields);
  assert.ok(names.some((n) => n.startsWith('pagemap-')) && names.includes('inventory.img') && names.some((n) => n.startsWith('core-')), names.join(' '));
  t.diagnostic(`seeds: ${names.length} image files of a real criu dump (${seeds.reduce((a, b) => a + b.length, 0)} bytes): ${names.join(' ')}`);
  // The seeds parse (and pagemaps validate) unmutated.
  const pmDir = join(tmp, 'pm');
  await mkdir(pmDir, { recursive: true });
  const rnd = prng(FUZZ_SEED + 4);
  let name = '';
  const stats = await runFuzz({
    name: 'criu images',
    cases: FUZZ_CASES,
    seed: FUZZ_SEED + 4,
    gen: (i) => {
      const k = i < seeds.length ? i : rnd(seeds.length);
      name = names[k]!;
      if (i < seeds.length) return { input: seeds[k]!, what: `seed ${name}` };
      const m = mutate(seeds[k]!, rnd, { fields: fields[k]!, others: seeds });
      return { input: m.buf, what: `${name}: ${m.what}` };
    },
    parse: async (buf) => {
      const img = parseImage(buf, name);
      img.entries.forEach((e, j) => decodeDeep(e, name, img.offsets[j]! + 4, 0));
      if (name.startsWith('pagemap-')) {
        const id = name.slice('pagemap-'.length, -'.img'.length);
        await writeFile(join(pmDir, name), buf);
        await readPagemap(pmDir, id, { checkPagesFile: false });
      }
    },
  });
  t.diagnostic(describe('criu images', stats, FUZZ_SEED + 4));
  assert.ok(stats.maxCaseMs < 2000, `slowest case ${stats.maxCaseMs} ms`);
  assert.ok((stats.outcomes['image_format'] ?? 0) > FUZZ_CASES / 4, JSON.stringify(stats.outcomes));
});

/** Count and length fields of a delta: header counts, each section's id length and counts, entries. */
function deltaFields(buf: Buffer): LengthField[] {
  const out: LengthField[] = [6, 12, 16].map((offset) => ({ offset, bytes: offset === 6 ? 2 : 4, le: true }) as LengthField);
  let pos = buf.readUInt16LE(6);
  for (let s = 0; s < buf.readUInt32LE(12); s++) {
    out.push({ offset: pos, bytes: 2, le: true });
    pos += 2 + buf.readUInt16LE(pos);
    const nEntries = buf.readUInt32LE(pos + 4);
    const k = buf.readUInt32LE(pos + 8);
    for (const o of [0, 4, 8]) out.push({ offset: pos + o, bytes: 4, le: true });
    pos += 12;
    for (let e = 0; e < nEntries; e++) {
      out.push({ offset: pos, bytes: 8, le: true }, { offset: pos + 8, bytes: 4, le: true }, { offset: pos + 12, bytes: 4, le: true });
      pos += 16;
    }
    pos += 8 * k + Math.ceil(k / 8);
  }
  // The first page records (section, index, vaddr).
  for (let r = 0; r < Math.min(8, buf.readUInt32LE(16)); r++) {
    out.push({ offset: pos + 16 * r, bytes: 4, le: true }, { offset: pos + 16 * r + 4, bytes: 4, le: true }, { offset: pos + 16 * r + 8, bytes: 8, le: true });
  }
  return out;
}

test('delta: an entry claiming 2^32-1 present pages is refused before anything is allocated', { skip: skip ?? false }, () => {
  // Found by the fuzz below: decodeDelta materialised every present page address of the
  // entries (presentVaddrs) before comparing their count with the announced one: a RangeError
  // ("Invalid typed array length") or gigabytes allocated for a few changed bytes.
  const b = Buffer.from(deltas[0]!);
  const section = b.readUInt16LE(6);
  const counts = section + 2 + b.readUInt16LE(section);
  // The section's last entry (so that the entries stay ascending) grows to 2^32-1 pages.
  const lastEntry = counts + 12 + 16 * (b.readUInt32LE(counts + 4) - 1);
  b.writeUInt32LE(0xffffffff, lastEntry + 8); // nr_pages
  b.writeUInt32LE(4, lastEntry + 12); // PE_PRESENT
  assert.throws(
    () => decodeDelta(b, 'damaged'),
    (err: unknown) => err instanceof Error && err.name === 'ImageFormatError' && /present pages announced, entries hold \d+/.test(err.message),
  );
});

test(`delta wire format: ${FUZZ_CASES} mutated deltas -> decoded or ImageFormatError`, { skip: skip ?? false, timeout: 180_000 }, async (t) => {
  for (const d of deltas) decodeDelta(d, 'seed'); // the seeds decode and verify
  t.diagnostic(
    `seeds: ${deltas.length} deltas between real criu dumps (${deltas.map((d) => d.length).join(', ')} bytes, ${deltas.map((d) => decodeDelta(d).pages.length).join(', ')} pages)`,
  );
  const fields = deltas.map(deltaFields);
  const rnd = prng(FUZZ_SEED + 5);
  let verify = true;
  const stats = await runFuzz({
    name: 'delta',
    cases: FUZZ_CASES,
    seed: FUZZ_SEED + 5,
    gen: () => {
      const k = rnd(deltas.length);
      // Field tweaks twice as often: the layout's counts are what a decoder trusts most.
      const m = rnd(3) === 0 ? mutate(deltas[k]!, rnd, { others: deltas }) : mutate(deltas[k]!, rnd, { fields: fields[k]!.concat(fields[k]!), others: deltas });
      verify = rnd(2) === 0;
      return { input: m.buf, what: `${m.what}, verify ${verify}` };
    },
    parse: (buf) => decodeDelta(buf, 'fuzz', { verify }),
  });
  t.diagnostic(describe('delta', stats, FUZZ_SEED + 5));
  assert.ok(stats.maxCaseMs < 2000, `slowest case ${stats.maxCaseMs} ms`);
  assert.ok((stats.outcomes['image_format'] ?? 0) > FUZZ_CASES / 2, JSON.stringify(stats.outcomes));
});

test(
  `delta wire format v2 (hashes inherited from a base index): ${FUZZ_CASES} mutated deltas -> decoded or ImageFormatError`,
  { skip: skip ?? false, timeout: 180_000 },
  async (t) => {
    for (const a of against) decodeDelta(a.wire, 'seed', { against: a.base }); // the seeds decode and verify
    t.diagnostic(`seeds: ${against.length} v2 deltas (${against.map((a) => a.wire.length).join(', ')} bytes; v1: ${deltas.map((d) => d.length).join(', ')})`);
    const rnd = prng(FUZZ_SEED + 6);
    let base: PageIndex = against[0]!.base;
    let verify = true;
    const stats = await runFuzz({
      name: 'delta-v2',
      cases: FUZZ_CASES,
      seed: FUZZ_SEED + 6,
      gen: () => {
        const k = rnd(against.length);
        // Sometimes decoded against the other round's index: a base that does not fit.
        base = against[rnd(4) === 0 ? 1 - k : k]!.base;
        const m = mutate(against[k]!.wire, rnd, { others: against.map((a) => a.wire) });
        verify = rnd(2) === 0;
        return { input: m.buf, what: `${m.what}, verify ${verify}` };
      },
      parse: (buf) => decodeDelta(buf, 'fuzz', { verify, against: base }),
    });
    t.diagnostic(describe('delta-v2', stats, FUZZ_SEED + 6));
    assert.ok(stats.maxCaseMs < 2000, `slowest case ${stats.maxCaseMs} ms`);
    assert.ok((stats.outcomes['image_format'] ?? 0) > 0, JSON.stringify(stats.outcomes));
  },
);
