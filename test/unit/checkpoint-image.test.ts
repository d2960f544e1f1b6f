// Image codec, pagemap validation, page index and delta on synthetic image directories
// (no CRIU needed). The real-CRIU tests are in checkpoint-criu.test.ts.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { applyDeltaInPlace } from '../../src/checkpoint/delta-apply.js';
import { BASE_EXTRA_FILE, BASE_INDEX_FILE, readBaseIndex } from '../../src/checkpoint/delta-base.js';
import { rebuildImageDir } from '../../src/checkpoint/delta-rebuild.js';
import { decodeDelta, encodeDelta } from '../../src/checkpoint/delta-wire.js';
import { writeDelta } from '../../src/checkpoint/delta-write.js';
import {
  decodeFields,
  encodeFields,
  ImageFormatError,
  IMG_COMMON_MAGIC,
  PAGEMAP_MAGIC,
  parseImage,
  pushVarint,
  WIRE_VARINT,
} from '../../src/checkpoint/image-file.js';
import { diffPageIndex, indexDump } from '../../src/checkpoint/page-index.js';
import {
  encodePagemap,
  encodePagemapSlow,
  PAGE_SIZE,
  PE_LAZY,
  PE_PARENT,
  PE_PRESENT,
  pagesPath,
  readPagemap,
  writePagemap,
  type PagemapEntry,
} from '../../src/checkpoint/pagemap.js';

const P = PAGE_SIZE;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

function isFormatError(re: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof ImageFormatError, `expected ImageFormatError, got ${String(err)}`);
    assert.equal(err.code, 'image_format');
    assert.match(err.message, re);
    assert.equal(typeof err.context.file, 'string');
    return true;
  };
}

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'cloudlet-ckpt-unit-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A synthetic image dir: pagemap-ID.img + pages-N.img from a list of runs of page contents. */
async function makeDump(dir: string, id: string, pagesId: number, runs: Array<{ vaddr: number; pages: Buffer[]; flags?: number }>) {
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  const entries: PagemapEntry[] = runs.map((r) => ({ vaddr: r.vaddr, nrPages: r.pages.length, flags: r.flags ?? PE_PRESENT }));
  await writePagemap(dir, { id, pagesId, entries });
  const data = runs.filter((r) => (r.flags ?? PE_PRESENT) & PE_PRESENT).flatMap((r) => r.pages);
  await writeFile(pagesPath(dir, pagesId), Buffer.concat(data, data.length * P));
}

function page(fill: number): Buffer {
  return Buffer.alloc(P, fill);
}

describe('protobuf wire codec', () => {
  it('round-trips varints up to 2^64-1', () => {
    for (const v of [0n, 1n, 127n, 128n, 300n, 2n ** 53n - 1n, 2n ** 63n, 2n ** 64n - 1n]) {
      const enc = encodeFields([{ field: 7, wire: WIRE_VARINT, value: v }]);
      const dec = decodeFields(enc, { file: 'x', offset: 0 });
      assert.deepEqual(dec, [{ field: 7, wire: WIRE_VARINT, value: v }]);
    }
    const out: number[] = [];
    pushVarint(out, 300);
    assert.deepEqual(out, [0xac, 0x02]);
  });

  it('rejects unknown wire types and truncated varints', () => {
    assert.throws(() => decodeFields(Buffer.from([(1 << 3) | 3]), { file: 'm', offset: 10 }), isFormatError(/unknown protobuf wire type 3/));
    assert.throws(() => decodeFields(Buffer.from([0x08, 0x80]), { file: 'm', offset: 0 }), isFormatError(/truncated varint/));
  });
});

describe('pagemap image', () => {
  it('encodes like criu 4.x and reads back normalized entries', async () => {
    const dir = join(tmp, 'pm1');
    await makeDump(dir, '42', 3, [
      { vaddr: 0x400000, pages: [page(1), page(2)] },
      { vaddr: 0x7ffd0000_0000, pages: [page(3)], flags: PE_PRESENT | PE_LAZY },
      { vaddr: 0x7ffe0000_0000, pages: [page(4)], flags: PE_PARENT },
    ]);
    const pm = await readPagemap(dir, 42);
    assert.equal(pm.pagesId, 3);
    assert.deepEqual(pm.entries, [
      { vaddr: 0x400000, nrPages: 2, flags: PE_PRESENT },
      { vaddr: 0x7ffd0000_0000, nrPages: 1, flags: PE_PRESENT | PE_LAZY },
      { vaddr: 0x7ffe0000_0000, nrPages: 1, flags: PE_PARENT },
    ]);
    // header + head entry (08 03) + first entry: vaddr, compat 0, flags, nr_pages (field 5)
    const bytes = await readFile(join(dir, 'pagemap-42.img'));
    assert.equal(bytes.readUInt32LE(0), IMG_COMMON_MAGIC);
    assert.equal(bytes.readUInt32LE(4), PAGEMAP_MAGIC);
    assert.deepEqual([...bytes.subarray(8, 14)], [2, 0, 0, 0, 0x08, 0x03]);
  });

  it('the fast pagemap encoder writes the same bytes as the generic protobuf one', () => {
    const entries: PagemapEntry[] = [
      { vaddr: 0, nrPages: 1, flags: PE_PRESENT },
      { vaddr: 0x7f, nrPages: 127, flags: PE_PARENT },
      { vaddr: 0x80 * P, nrPages: 128, flags: PE_PRESENT | PE_LAZY },
      { vaddr: 0x7ffd_ffff_f000, nrPages: 2 ** 31 + 5, flags: PE_LAZY },
      { vaddr: 2 ** 52, nrPages: 300, flags: PE_PRESENT },
    ];
    for (const pagesId of [0, 1, 127, 128, 2 ** 32 - 1]) {
      assert.deepEqual(encodePagemap({ pagesId, entries }), encodePagemapSlow({ pagesId, entries }));
      assert.deepEqual(encodePagemap({ pagesId, entries: [] }), encodePagemapSlow({ pagesId, entries: [] }));
    }
  });

  it('normalizes old-style entries: no flags means PRESENT, in_parent means PARENT', async () => {
    const dir = join(tmp, 'pm-old');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir);
    const head = encodeFields([{ field: 1, wire: WIRE_VARINT, value: 1n }]);
    const e1 = encodeFields([
      { field: 1, wire: WIRE_VARINT, value: 0x1000n },
      { field: 2, wire: WIRE_VARINT, value: 2n },
    ]);
    const e2 = encodeFields([
      { field: 1, wire: WIRE_VARINT, value: 0x5000n },
      { field: 2, wire: WIRE_VARINT, value: 1n },
      { field: 3, wire: WIRE_VARINT, value: 1n },
    ]);
    const img = Buffer.concat([u32(IMG_COMMON_MAGIC), u32(PAGEMAP_MAGIC), u32(head.length), head, u32(e1.length), e1, u32(e2.length), e2]);
    await writeFile(join(dir, 'pagemap-7.img'), img);
    await writeFile(join(dir, 'pages-1.img'), Buffer.alloc(2 * P));
    const pm = await readPagemap(dir, 7);
    assert.deepEqual(pm.entries, [
      { vaddr: 0x1000, nrPages: 2, flags: PE_PRESENT },
      { vaddr: 0x5000, nrPages: 1, flags: PE_PARENT },
    ]);
  });

  it('rejects bad magic, truncation, huge lengths, unknown wire types', () => {
    const good = encodePagemap({ pagesId: 1, entries: [{ vaddr: 0x1000, nrPages: 1, flags: PE_PRESENT }] });
    const bad = Buffer.from(good);
    bad.writeUInt32LE(0xdeadbeef, 0);
    assert.throws(() => parseImage(bad, 'bad.img'), isFormatError(/bad\.img @0: bad magic 0xdeadbeef/));
    const wrongType = Buffer.from(good);
    wrongType.writeUInt32LE(0x12345678, 4);
    assert.throws(() => parseImage(wrongType, 't.img', { expectMagic: PAGEMAP_MAGIC }), isFormatError(/bad type magic/));
    assert.throws(() => parseImage(good.subarray(0, good.length - 2), 'cut.img'), isFormatError(/truncated entry: length \d+ but only/));
    assert.throws(() => parseImage(good.subarray(0, 10), 'cut2.img'), isFormatError(/truncated entry length/));
    assert.throws(() => parseImage(Buffer.from([0x19, 0x43]), 'tiny.img'), isFormatError(/truncated header/));
    const huge = Buffer.concat([good.subarray(0, 8), u32(0xfffffff0), Buffer.alloc(16)]);
    assert.throws(
      () => parseImage(huge, 'huge.img'),
      (err: unknown) => {
        isFormatError(/entry length 4294967280 over the limit/)(err);
        assert.equal((err as ImageFormatError).offset, 8);
        return true;
      },
    );
  });

  it('rejects malformed pagemap files on disk with file and offset', async () => {
    const dir = join(tmp, 'pm-bad');
    await makeDump(dir, '1', 1, [{ vaddr: 0x1000, pages: [page(1), page(2), page(3)] }]);
    const file = join(dir, 'pagemap-1.img');
    const good = await readFile(file);
    // pages file one page short
    await writeFile(pagesPath(dir, 1), Buffer.alloc(2 * P));
    await assert.rejects(readPagemap(dir, 1), isFormatError(/page count inconsistent with pages file size: .* 3 present pages/));
    await writeFile(pagesPath(dir, 1), Buffer.alloc(3 * P));
    // unknown wire type inside an entry
    const wt = Buffer.concat([good, u32(2), Buffer.from([(1 << 3) | 4, 0])]);
    await writeFile(file, wt);
    await assert.rejects(readPagemap(dir, 1), isFormatError(/unknown protobuf wire type 4/));
    // entry length over the pagemap limit
    await writeFile(file, Buffer.concat([good, u32(1 << 20)]));
    await assert.rejects(readPagemap(dir, 1), isFormatError(/over the limit of 1024 bytes/));
    // vaddr beyond 2^53
    const far = encodeFields([
      { field: 1, wire: WIRE_VARINT, value: 2n ** 60n },
      { field: 2, wire: WIRE_VARINT, value: 0n },
      { field: 5, wire: WIRE_VARINT, value: 1n },
    ]);
    await writeFile(file, Buffer.concat([good, u32(far.length), far]));
    await assert.rejects(readPagemap(dir, 1), isFormatError(/above 2\^53/));
    // overlapping entries
    await writeFile(
      file,
      encodePagemap({
        pagesId: 1,
        entries: [
          { vaddr: 0x1000, nrPages: 2, flags: 4 },
          { vaddr: 0x2000, nrPages: 1, flags: 4 },
        ],
      }),
    );
    await assert.rejects(readPagemap(dir, 1), isFormatError(/not sorted or overlapping/));
  });
});

describe('page index, delta and rebuild (synthetic dumps)', () => {
  it('diffs two dumps, sends only changed/new non-zero pages and rebuilds the second dump exactly', async () => {
    const a = [randomBytes(P), randomBytes(P), page(0), randomBytes(P)];
    const b = [randomBytes(P), randomBytes(P)];
    const d1 = join(tmp, 'syn-d1');
    await makeDump(d1, '100', 1, [
      { vaddr: 0x10000, pages: a },
      { vaddr: 0x40000, pages: b },
    ]);
    await writeFile(join(d1, 'core-100.img'), 'core v1');
    // dump 2: page a[1] changed, a[2] zero stays zero, a[3] became zero, b grew by one page,
    // a new pagemap 'shmem-5' appeared.
    const a2 = [a[0]!, randomBytes(P), page(0), page(0)];
    const b2 = [...b, randomBytes(P)];
    const d2 = join(tmp, 'syn-d2');
    await makeDump(d2, '100', 1, [
      { vaddr: 0x10000, pages: a2 },
      { vaddr: 0x40000, pages: b2, flags: PE_PRESENT | PE_LAZY },
    ]);
    await makeDump(d2, 'shmem-5', 2, [{ vaddr: 0, pages: [randomBytes(P)] }]);
    await writeFile(join(d2, 'core-100.img'), 'core v2');

    const idx1 = await indexDump(d1);
    const idx2 = await indexDump(d2);
    assert.equal(idx1.get('100')!.vaddrs.length, 6);
    assert.deepEqual([...idx1.get('100')!.zero], [0, 0, 1, 0, 0, 0]);
    const diff = diffPageIndex(idx1, idx2);
    assert.deepEqual(
      { scanned: diff.scanned, unchanged: diff.unchanged, changed: diff.changed, zero: diff.zero, new: diff.new },
      { scanned: 8, unchanged: 3, changed: 1, zero: 2, new: 2 },
    );
    assert.deepEqual(
      diff.toSend.map((p) => [p.id, p.vaddr]),
      [
        ['100', 0x11000],
        ['100', 0x42000],
        ['shmem-5', 0],
      ],
    );

    // round 1 (everything) into a pages-only dir, round 2 (delta) with small images
    const delta1 = decodeDelta(encodeDelta(await writeDelta(null, d1)));
    assert.equal(delta1.pages.length, 5);
    const r1 = join(tmp, 'syn-r1');
    const s1 = await rebuildImageDir({ baseDir: null, delta: delta1, smallImagesDir: null, outDir: r1 });
    assert.deepEqual([s1.fromDelta, s1.fromBase, s1.zeroFilled], [5, 0, 1]);
    assert.deepEqual(await readFile(pagesPath(r1, 1)), await readFile(pagesPath(d1, 1)));

    const delta2 = decodeDelta(encodeDelta(await writeDelta(idx1, d2)));
    assert.equal(delta2.pages.length, 3);
    assert.deepEqual(delta2.counts, { scanned: 8, unchanged: 3, changed: 1, zero: 2, new: 2 });
    const r2 = join(tmp, 'syn-r2');
    const s2 = await rebuildImageDir({ baseDir: r1, delta: delta2, smallImagesDir: d2, outDir: r2 });
    assert.deepEqual([s2.fromDelta, s2.fromBase, s2.zeroFilled, s2.smallFiles], [3, 3, 2, 1]);
    for (const f of ['pagemap-100.img', 'pagemap-shmem-5.img', 'pages-1.img', 'pages-2.img', 'core-100.img']) {
      assert.deepEqual(await readFile(join(r2, f)), await readFile(join(d2, f)), f);
    }

    // any base holding the unchanged pages works (here dump 2 itself)...
    await rebuildImageDir({ baseDir: d2, delta: delta2, smallImagesDir: d2, outDir: join(tmp, 'syn-r2b') });
    // ...but a base that is not the previous round is detected by hash
    const staleBase = join(tmp, 'syn-stale');
    await makeDump(staleBase, '100', 1, [
      { vaddr: 0x10000, pages: [randomBytes(P), randomBytes(P), page(0), randomBytes(P)] },
      { vaddr: 0x40000, pages: b },
    ]);
    await assert.rejects(
      rebuildImageDir({ baseDir: staleBase, delta: delta2, smallImagesDir: d2, outDir: join(tmp, 'syn-r2c') }),
      isFormatError(/does not match the delta's hash/),
    );
    // missing base: the unchanged pages cannot be found
    await assert.rejects(
      rebuildImageDir({ baseDir: null, delta: delta2, smallImagesDir: null, outDir: join(tmp, 'syn-nobase') }),
      /neither in the delta nor in the base/,
    );
  });

  it('rejects malformed deltas', async () => {
    const d1 = join(tmp, 'syn-m1');
    await makeDump(d1, '9', 1, [{ vaddr: 0x1000, pages: [randomBytes(P), randomBytes(P)] }]);
    const wire = encodeDelta(await writeDelta(null, d1));
    assert.throws(() => decodeDelta(wire.subarray(0, wire.length - 1), 'd'), isFormatError(/truncated or trailing/));
    assert.throws(() => decodeDelta(wire.subarray(0, 20), 'd'), isFormatError(/truncated delta: header/));
    const magic = Buffer.from(wire);
    magic[0] = 0;
    assert.throws(() => decodeDelta(magic, 'd'), isFormatError(/bad delta magic/));
    const flipped = Buffer.from(wire);
    flipped[flipped.length - 1]! ^= 0xff;
    assert.throws(() => decodeDelta(flipped, 'd'), isFormatError(/data does not match its hash/));
    const manyPages = Buffer.from(wire);
    manyPages.writeUInt32LE(1_000_000, 16);
    assert.throws(() => decodeDelta(manyPages, 'd'), isFormatError(/truncated delta: page table/));
  });

  it('v2: a delta against the index the receiver holds inherits unchanged hashes, decodes to the same delta, and is refused without that index', async () => {
    const unchanged = Array.from({ length: 64 }, () => randomBytes(P));
    const d1 = join(tmp, 'syn-v2-1');
    const d2 = join(tmp, 'syn-v2-2');
    await makeDump(d1, '7', 1, [{ vaddr: 0x10000, pages: [...unchanged, randomBytes(P)] }]);
    // round 2: page 64 changed, one page added further up, one zero page
    await makeDump(d2, '7', 1, [
      { vaddr: 0x10000, pages: [...unchanged, randomBytes(P)] },
      { vaddr: 0x90000, pages: [randomBytes(P), page(0)] },
    ]);
    const idx1 = await indexDump(d1);
    const delta2 = await writeDelta(idx1, d2);
    const v1 = encodeDelta(delta2);
    const v2 = encodeDelta(delta2, { against: idx1 });
    assert.equal(v2.readUInt16LE(4), 2, 'version 2 on the wire');
    // 64 inherited hashes of 8 bytes each, for a bitmap of 9 bytes (67 pages) and a count of 4
    assert.equal(v1.length - v2.length, 64 * 8 - 9 - 4);
    const a = decodeDelta(v1, 'v1');
    const b = decodeDelta(v2, 'v2', { against: idx1 });
    assert.deepEqual([...b.index.get('7')!.hashes], [...a.index.get('7')!.hashes]);
    assert.deepEqual([...b.index.get('7')!.zero], [...a.index.get('7')!.zero]);
    assert.deepEqual(
      b.pages.map((p) => [p.vaddr, p.data.equals(a.pages.find((q) => q.vaddr === p.vaddr)!.data)]),
      a.pages.map((p) => [p.vaddr, true]),
    );
    assert.deepEqual(b.counts, a.counts);
    // without the base index, or with one that lacks an inherited page, it is refused
    assert.throws(() => decodeDelta(v2, 'v2'), isFormatError(/no base index was given/));
    const other = await indexDump(d2);
    other.get('7')!.vaddrs = other.get('7')!.vaddrs.map((v) => v + 0x100000);
    assert.throws(() => decodeDelta(v2, 'v2', { against: other }), isFormatError(/inherits a hash the base index does not have/));
    // a count of explicit hashes that disagrees with the bitmap
    const badCount = Buffer.from(v2);
    const countAt = 40 + 2 + 1 + 12 + 2 * 16 + Math.ceil(67 / 8);
    assert.equal(badCount.readUInt32LE(countAt), 3, 'the changed page and the two new ones');
    badCount.writeUInt32LE(2, countAt);
    assert.throws(() => decodeDelta(badCount, 'v2', { against: idx1 }), isFormatError(/more pages without an inherited hash|announced/));
  });
});

describe('parent-image rebuild and in-place base update (synthetic dumps)', () => {
  const A = [randomBytes(P), randomBytes(P), randomBytes(P), randomBytes(P), page(0), randomBytes(P)];
  const B = [randomBytes(P), randomBytes(P)];

  async function round1(name: string) {
    const d1 = join(tmp, `${name}-d1`);
    await makeDump(d1, '7', 1, [
      { vaddr: 0x10000, pages: A },
      { vaddr: 0x80000, pages: B },
    ]);
    const idx1 = await indexDump(d1);
    const delta1 = decodeDelta(encodeDelta(await writeDelta(null, d1)));
    const base = join(tmp, name, 'base');
    await rebuildImageDir({ baseDir: null, delta: delta1, smallImagesDir: null, outDir: base });
    return { d1, idx1, base };
  }

  it('parent mode writes only changed and newly zero pages, the rest as PE_PARENT runs', async () => {
    const { idx1, base } = await round1('par');
    assert.ok(await readBaseIndex(base), 'a base gets an index');
    // round 2: A[1] changed, A[3] became zero, A[4] stays zero, B[0] changed; new pagemap
    const d2 = join(tmp, 'par-d2');
    const A2 = [A[0]!, randomBytes(P), A[2]!, page(0), page(0), A[5]!];
    const B2 = [randomBytes(P), B[1]!];
    await makeDump(d2, '7', 1, [
      { vaddr: 0x10000, pages: A2 },
      { vaddr: 0x80000, pages: B2 },
    ]);
    await makeDump(d2, 'shmem-3', 2, [{ vaddr: 0, pages: [randomBytes(P)] }]);
    await writeFile(join(d2, 'core-7.img'), 'core');
    const delta2 = decodeDelta(encodeDelta(await writeDelta(idx1, d2)));
    const out = join(tmp, 'par', 'final');
    const st = await rebuildImageDir({ delta: delta2, smallImagesDir: d2, outDir: out, parent: { dir: base, link: '../base' } });
    assert.deepEqual([st.fromDelta, st.zeroFilled, st.inParent, st.fromBase, st.pages], [3, 1, 5, 0, 9]);
    assert.equal(await readlink(join(out, 'parent')), '../base');
    const pm = await readPagemap(out, 7);
    assert.deepEqual(pm.entries, [
      { vaddr: 0x10000, nrPages: 1, flags: PE_PARENT },
      { vaddr: 0x11000, nrPages: 1, flags: PE_PRESENT },
      { vaddr: 0x12000, nrPages: 1, flags: PE_PARENT },
      { vaddr: 0x13000, nrPages: 1, flags: PE_PRESENT },
      { vaddr: 0x14000, nrPages: 2, flags: PE_PARENT },
      { vaddr: 0x80000, nrPages: 1, flags: PE_PRESENT },
      { vaddr: 0x81000, nrPages: 1, flags: PE_PARENT },
    ]);
    assert.deepEqual(await readFile(pagesPath(out, 1)), Buffer.concat([A2[1]!, page(0), B2[0]!]));
    assert.deepEqual(await readFile(join(out, 'core-7.img')), Buffer.from('core'));
    await assert.rejects(stat(join(out, BASE_INDEX_FILE)), { code: 'ENOENT' });

    // absolute links are refused (CRIU cannot follow them under runc)
    await assert.rejects(rebuildImageDir({ delta: delta2, smallImagesDir: d2, outDir: join(tmp, 'par', 'x'), parent: { dir: base, link: base } }), /relative/);
    // a base that is not the previous round: caught by the index, and without it by reading
    const stale = join(tmp, 'par', 'stale');
    await makeDump(stale, '7', 1, [
      { vaddr: 0x10000, pages: [randomBytes(P), ...A.slice(1)] },
      { vaddr: 0x80000, pages: B },
    ]);
    await assert.rejects(
      rebuildImageDir({ delta: delta2, smallImagesDir: d2, outDir: join(tmp, 'par', 'y'), parent: { dir: stale, link: '../stale' } }),
      isFormatError(/does not match the delta's hash/),
    );
    await rm(join(base, BASE_INDEX_FILE));
    const st2 = await rebuildImageDir({ delta: delta2, smallImagesDir: d2, outDir: join(tmp, 'par', 'z'), parent: { dir: base, link: '../base' } });
    // without the index, zero pages cannot be matched: both are written
    assert.deepEqual([st2.fromDelta, st2.zeroFilled, st2.inParent], [3, 2, 4]);
  });

  it('applyDeltaInPlace writes changed pages at their offsets, keeps new pages as extras, rewrites past the limit', async () => {
    const { d1, idx1, base } = await round1('inpl');
    const pagesFile = pagesPath(base, 1);
    const ino = (await stat(pagesFile)).ino;
    // same layout, A[1] changed, A[3] zero
    const d2 = join(tmp, 'inpl-d2');
    const A2 = [A[0]!, randomBytes(P), A[2]!, page(0), page(0), A[5]!];
    await makeDump(d2, '7', 1, [
      { vaddr: 0x10000, pages: A2 },
      { vaddr: 0x80000, pages: B },
    ]);
    const idx2 = await indexDump(d2);
    const st = await applyDeltaInPlace(base, decodeDelta(encodeDelta(await writeDelta(idx1, d2))));
    assert.deepEqual([st.inPlacePagemaps, st.rewrittenPagemaps, st.pagesWritten, st.zeroWritten, st.extraPages], [1, 0, 2, 1, 0]);
    assert.equal((await stat(pagesFile)).ino, ino, 'same file, written in place');
    assert.deepEqual(await readFile(pagesFile), await readFile(pagesPath(d2, 1)));

    // layout grows: a new page in the middle and a new run; B[1] gone
    const d3 = join(tmp, 'inpl-d3');
    const n1 = randomBytes(P);
    const n2 = randomBytes(P);
    await makeDump(d3, '7', 1, [
      { vaddr: 0x10000, pages: [...A2, n1] },
      { vaddr: 0x40000, pages: [n2] },
      { vaddr: 0x80000, pages: [B[0]!] },
    ]);
    const idx3 = await indexDump(d3);
    const st3 = await applyDeltaInPlace(base, decodeDelta(encodeDelta(await writeDelta(idx2, d3))));
    assert.deepEqual([st3.inPlacePagemaps, st3.rewrittenPagemaps, st3.pagesWritten, st3.extraPages], [1, 0, 0, 2]);
    assert.equal((await stat(pagesFile)).ino, ino);
    await stat(join(base, BASE_EXTRA_FILE));
    // a full rebuild and a parent-mode rebuild from this base both see round 3
    const d4 = join(tmp, 'inpl-d4');
    await makeDump(d4, '7', 1, [
      { vaddr: 0x10000, pages: [...A2, n1] },
      { vaddr: 0x40000, pages: [n2] },
      { vaddr: 0x80000, pages: [randomBytes(P)] },
    ]);
    const delta4 = decodeDelta(encodeDelta(await writeDelta(idx3, d4)));
    const full = join(tmp, 'inpl', 'full');
    const fst = await rebuildImageDir({ baseDir: base, delta: delta4, smallImagesDir: null, outDir: full });
    assert.equal(fst.fromExtra, 2);
    assert.deepEqual(await readFile(pagesPath(full, 1)), await readFile(pagesPath(d4, 1)));
    const par = join(tmp, 'inpl', 'par');
    const pst = await rebuildImageDir({ delta: delta4, smallImagesDir: null, outDir: par, parent: { dir: base, link: '../base' } });
    assert.deepEqual([pst.fromDelta, pst.fromExtra, pst.inParent], [1, 2, 6]);
    assert.deepEqual(await readFile(pagesPath(par, 1)), Buffer.concat([n1, n2, await readFile(pagesPath(d4, 1)).then((b) => b.subarray(8 * P))]));

    // past maxExtraPages the pagemap is rewritten (new file, exact layout, no extras)
    const st4 = await applyDeltaInPlace(base, delta4, { maxExtraPages: 1 });
    assert.deepEqual([st4.inPlacePagemaps, st4.rewrittenPagemaps, st4.extraPages], [0, 1, 0]);
    assert.notEqual((await stat(pagesFile)).ino, ino);
    assert.deepEqual(await readFile(pagesFile), await readFile(pagesPath(d4, 1)));
    assert.deepEqual(await readFile(join(base, 'pagemap-7.img')), await readFile(join(d4, 'pagemap-7.img')));
    await assert.rejects(stat(join(base, BASE_EXTRA_FILE)), { code: 'ENOENT' });

    // a delta that is not on top of this base is refused before anything is written
    const before = await readFile(pagesFile);
    const other = decodeDelta(encodeDelta(await writeDelta(idx1, d1)));
    await assert.rejects(applyDeltaInPlace(base, { ...other, pages: [] }), isFormatError(/not the previous round/));
    assert.deepEqual(await readFile(pagesFile), before);
  });
});
