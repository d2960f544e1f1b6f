// Measures the checkpoint module on a real dump: a Node.js workload holding MIB MiB of
// random bytes (default 256), dumped three times with criu (--leave-running twice, then
// final), HOT pages (default 1280 = 5 MiB) rewritten between dumps.
// Run as root: node dist/test/perf/checkpoint-perf.js [MIB] [HOT]
// Prints one JSON object: criu dump times, hashing throughput, delta and rebuild times, the
// destination's pre-copy path (base, applyDeltaInPlace, parent-mode final rebuild, restore)
// and, for comparison, the full rebuild of the final round and its restore.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { xxh64 } from '@node-rs/xxhash';
import { applyDeltaInPlace } from '../../src/checkpoint/delta-apply.js';
import { rebuildImageDir } from '../../src/checkpoint/delta-rebuild.js';
import { decodeDelta, encodeDelta } from '../../src/checkpoint/delta-wire.js';
import { writeDelta } from '../../src/checkpoint/delta-write.js';
import { indexDump, indexPageCount } from '../../src/checkpoint/page-index.js';
import { CriuLab, criuSkipReason } from '../helpers/criu-fixtures.js';

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, performance.now() - t0];
}

async function main(): Promise<void> {
  const skip = criuSkipReason();
  if (skip) {
    console.error(`skipped: ${skip}`);
    return;
  }
  const mib = Number(process.argv[2] ?? 256);
  const hot = Number(process.argv[3] ?? 1280);
  const tmp = await mkdtemp(join(tmpdir(), 'cloudlet-ckpt-perf-'));
  const lab = new CriuLab(tmp);
  try {
    const w = await lab.startWorkload({ mib, hot, zeroMib: 4, random: true });
    const d1 = join(tmp, 'd1');
    const d2 = join(tmp, 'd2');
    const d3 = join(tmp, 'd3');
    const [, dump1Ms] = await timed(() => w.dump(d1, true));
    await w.mutate();
    const [, dump2Ms] = await timed(() => w.dump(d2, true));
    await w.mutate();
    const before3 = await w.status();
    const [, dump3Ms] = await timed(() => w.dump(d3, false));
    await w.waitExit();

    // pure in-memory hashing of 4 KiB pages, as a ceiling
    const mem = Buffer.allocUnsafe(64 << 20);
    for (let i = 0; i < mem.length; i += 4096) mem.writeUInt32LE(i, i);
    let x = 0n;
    const t0 = performance.now();
    for (let i = 0; i < mem.length; i += 4096) x ^= xxh64(mem.subarray(i, i + 4096));
    const memMBs = mem.length / 1e6 / ((performance.now() - t0) / 1000);

    const [idx1, indexMs] = await timed(() => indexDump(d1));
    const bytes = indexPageCount(idx1) * 4096;
    const [, index2Ms] = await timed(() => indexDump(d2));
    const [delta1, delta1Ms] = await timed(() => writeDelta(null, d1));
    const [delta2, delta2Ms] = await timed(() => writeDelta(idx1, d2));
    const [wire1, enc1Ms] = await timed(async () => encodeDelta(delta1));
    const [wire2, enc2Ms] = await timed(async () => encodeDelta(delta2));
    const [dd1, dec1Ms] = await timed(async () => decodeDelta(wire1));
    const [dd2, dec2Ms] = await timed(async () => decodeDelta(wire2));
    const r1 = join(tmp, 'r1');
    const r2 = join(tmp, 'r2');
    const [st1] = await timed(() => rebuildImageDir({ baseDir: null, delta: dd1, smallImagesDir: null, outDir: r1 }));
    const [st2] = await timed(() => rebuildImageDir({ baseDir: r1, delta: dd2, smallImagesDir: d2, outDir: r2 }));
    const r2n = join(tmp, 'r2-noverify');
    const [st2n] = await timed(() => rebuildImageDir({ baseDir: r1, delta: dd2, smallImagesDir: d2, outDir: r2n, verify: false }));
    await rm(r2n, { recursive: true, force: true });

    // Destination pre-copy path: r1 is the base (round 1); round 2 updates it in place;
    // the final round is written in parent mode next to it (relative link).
    const idx2 = dd2.index;
    const dd3 = decodeDelta(encodeDelta(await writeDelta(idx2, d3)));
    const applied = await applyDeltaInPlace(r1, dd2);
    const fin = join(tmp, 'final-parent');
    const finSt = await rebuildImageDir({ delta: dd3, smallImagesDir: d3, outDir: fin, parent: { dir: r1, link: '../r1' } });
    // the same again, warm (the first call of a process pays for JIT compilation)
    const finWarm = await rebuildImageDir({ delta: dd3, smallImagesDir: d3, outDir: join(tmp, 'final-parent-2'), parent: { dir: r1, link: '../r1' } });
    const [restored, restoreMs] = await timed(() => lab.restore(fin, w.pid, w.statusFile));
    const s = await restored.status();
    if (s.sum !== before3.sum) throw new Error('parent-mode restore: memory checksum differs');
    process.kill(w.pid, 'SIGKILL');
    await restored.waitExit();
    // For comparison: the final round rebuilt in full from the same base.
    const full = join(tmp, 'final-full');
    const fullSt = await rebuildImageDir({ baseDir: r1, delta: dd3, smallImagesDir: d3, outDir: full });
    await rm(w.statusFile, { force: true }); // the restored process restarts from the same seq
    const [restoredFull, restoreFullMs] = await timed(() => lab.restore(full, w.pid, w.statusFile));
    const sf = await restoredFull.status();
    if (sf.sum !== before3.sum) throw new Error('full restore: memory checksum differs');
    process.kill(w.pid, 'SIGKILL');
    await restoredFull.waitExit();
    console.log(
      JSON.stringify(
        {
          mib,
          presentPages: indexPageCount(idx1),
          pagesFileBytes: (await stat(join(d1, `pages-${[...idx1.values()][0]!.pagesId}.img`))).size,
          criuDumpLeaveRunningMs: Math.round(dump1Ms),
          criuDumpLeaveRunning2Ms: Math.round(dump2Ms),
          criuDumpFinalMs: Math.round(dump3Ms),
          xxh64InMemoryMBs: Math.round(memMBs),
          indexDumpMs: Math.round(indexMs),
          indexDumpMBs: Math.round(bytes / 1e6 / (indexMs / 1000)),
          indexDump2Ms: Math.round(index2Ms),
          writeDeltaFullMs: Math.round(delta1Ms),
          writeDelta2Ms: Math.round(delta2Ms),
          delta2: { pages: delta2.pages.length, wireBytes: wire2.length, counts: delta2.counts },
          delta1WireBytes: wire1.length,
          encodeMs: [Math.round(enc1Ms), Math.round(enc2Ms)],
          decodeVerifyMs: [Math.round(dec1Ms), Math.round(dec2Ms)],
          rebuildFullMs: Math.round(st1.ms),
          rebuildDeltaMs: Math.round(st2.ms),
          rebuildDeltaNoVerifyMs: Math.round(st2n.ms),
          rebuildDeltaStats: st2,
          precopy: {
            applyDeltaInPlace: { ...applied, index: undefined, ms: Math.round(applied.ms) },
            delta3: { pages: dd3.pages.length, counts: dd3.counts },
            finalParentRebuild: { ...finSt, ms: Math.round(finSt.ms) },
            finalParentRebuildWarmMs: Math.round(finWarm.ms),
            criuRestoreParentMs: Math.round(restoreMs),
            finalFullRebuildMs: Math.round(fullSt.ms),
            criuRestoreFullMs: Math.round(restoreFullMs),
          },
          restoredGen: s.gen,
          hashSink: Number(x & 1n),
        },
        null,
        1,
      ),
    );
  } finally {
    await lab.cleanup();
    await rm(tmp, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
