// Opt-in measurement (CLOUDLET_STREAM_PERF=1, root, criu): a Node.js workload holding MIB
// MiB of random bytes (CLOUDLET_STREAM_PERF_MIB, default 256) dumped with `criu dump`,
// HOT pages rewritten between rounds. Wall time of dump + writeDelta (sequential) against
// dumpAndDelta (hashing overlapped with CRIU's memwrite), interleaved, on
// --leave-running rounds; then one final (non leave-running) dump of each kind, on two
// workloads. Prints one JSON line as a diagnostic. Skipped by default (it takes ~30 s).
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { writeDelta } from '../../src/checkpoint/delta-write.js';
import type { PageIndex } from '../../src/checkpoint/page-index.js';
import { dumpAndDelta } from '../../src/checkpoint/stream-delta.js';
import { readCriuStats } from '../../src/engine/criu-stats.js';
import { CriuLab, criuSkipReason } from '../helpers/criu-fixtures.js';

const enabled = process.env.CLOUDLET_STREAM_PERF === '1';
const skip = enabled ? criuSkipReason() : 'set CLOUDLET_STREAM_PERF=1 to measure';
const MIB = Number(process.env.CLOUDLET_STREAM_PERF_MIB ?? 256);
const REPS = Number(process.env.CLOUDLET_STREAM_PERF_REPS ?? 4);

const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const r0 = (x: number): number => Math.round(x);

describe('dumpAndDelta against dump + writeDelta (perf)', { skip: skip ?? false, timeout: 300_000 }, () => {
  const labs: CriuLab[] = [];
  let tmp = '';
  after(async () => {
    for (const l of labs) await l.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it(`${MIB} MiB: wall ms`, async (t) => {
    tmp = await mkdtemp(join(tmpdir(), 'cloudlet-stream-perf-'));
    const mk = async (name: string) => {
      const lab = new CriuLab(join(tmp, name));
      labs.push(lab);
      await mkdir(lab.workDir, { recursive: true });
      return lab.startWorkload({ mib: MIB, hot: 1280, zeroMib: 4, random: true });
    };
    const wa = await mk('a');
    const wb = await mk('b');
    const wc = await mk('c');
    let n = 0;
    const dirOf = () => join(tmp, `d${++n}`);
    const seq = { wall: [] as number[], dump: [] as number[], hash: [] as number[], frozen: [] as number[] };
    const mkStr = () => ({
      wall: [] as number[],
      dump: [] as number[],
      tail: [] as number[],
      overlap: [] as number[],
      during: [] as number[],
      frozen: [] as number[],
    });
    const strs = { main: mkStr(), worker: mkStr() };
    const frozenMs = async (d: string) => ((await readCriuStats(join(d, 'stats-dump')))?.dump?.frozenTimeUs ?? 0) / 1000;
    const prev: Record<'a' | 'b' | 'c', PageIndex | null> = { a: null, b: null, c: null };
    const sequential = async (w: typeof wa, key: 'a' | 'b' | 'c', final: boolean) => {
      const d = dirOf();
      const t0 = performance.now();
      await w.dump(d, !final);
      const t1 = performance.now();
      const delta = await writeDelta(prev[key], d);
      const t2 = performance.now();
      prev[key] = delta.index;
      return { d, delta, wall: t2 - t0, dump: t1 - t0, hash: t2 - t1 };
    };
    const streamed = async (w: typeof wa, key: 'a' | 'b' | 'c', final: boolean, hasher: 'main' | 'worker') => {
      const d = dirOf();
      const t0 = performance.now();
      let tDumped = 0;
      const r = await dumpAndDelta({
        dump: async () => {
          await w.dump(d, !final);
          tDumped = performance.now();
        },
        dir: d,
        prev: prev[key],
        hasher,
      });
      const t2 = performance.now();
      prev[key] = r.delta.index;
      return {
        d,
        delta: r.delta,
        wall: t2 - t0,
        dump: tDumped - t0,
        tail: r.stats.tailMs,
        overlap: r.overlapMs,
        during: r.stats.bytesDuringDump / (r.stats.bytesTotal || 1),
      };
    };
    // round 1 of each workload (full delta), not counted
    for (const [w, k] of [
      [wa, 'a'],
      [wb, 'b'],
      [wc, 'c'],
    ] as const)
      await rm((await sequential(w, k, false)).d, { recursive: true });
    const orders = [
      ['s', 'main', 'worker'],
      ['worker', 's', 'main'],
      ['main', 'worker', 's'],
    ];
    for (let i = 0; i < REPS; i++) {
      for (const w of [wa, wb, wc]) await w.mutate();
      for (const o of orders[i % 3]!) {
        if (o === 's') {
          const x = await sequential(wa, 'a', false);
          seq.wall.push(x.wall);
          seq.dump.push(x.dump);
          seq.hash.push(x.hash);
          seq.frozen.push(await frozenMs(x.d));
          await rm(x.d, { recursive: true });
        } else {
          const hasher = o as 'main' | 'worker';
          const str = strs[hasher];
          const x = await streamed(hasher === 'main' ? wb : wc, hasher === 'main' ? 'b' : 'c', false, hasher);
          str.wall.push(x.wall);
          str.dump.push(x.dump);
          str.tail.push(x.tail);
          str.overlap.push(x.overlap);
          str.during.push(x.during);
          str.frozen.push(await frozenMs(x.d));
          await rm(x.d, { recursive: true });
        }
      }
    }
    for (const w of [wa, wb, wc]) await w.mutate();
    const fs = await sequential(wa, 'a', true);
    const fm = await streamed(wb, 'b', true, 'main');
    const fw = await streamed(wc, 'c', true, 'worker');
    for (const w of [wa, wb, wc]) await w.waitExit();
    const strOut = (str: ReturnType<typeof mkStr>) => ({
      wallMs: str.wall.map(r0),
      dumpMs: str.dump.map(r0),
      frozenMs: str.frozen.map(r0),
      tailMs: str.tail.map(r0),
      overlapMs: str.overlap.map(r0),
      hashedDuringDump: str.during.map((x) => Math.round(x * 100) / 100),
      medianWallMs: r0(med(str.wall)),
      medianFrozenMs: r0(med(str.frozen)),
    });
    const finOut = async (fp: Awaited<ReturnType<typeof streamed>>) => ({
      wallMs: r0(fp.wall),
      dumpMs: r0(fp.dump),
      frozenMs: r0(await frozenMs(fp.d)),
      tailMs: r0(fp.tail),
      overlapMs: r0(fp.overlap),
      hashedDuringDump: Math.round(fp.during * 100) / 100,
    });
    const out = {
      mib: MIB,
      reps: REPS,
      leaveRunning: {
        sequential: {
          wallMs: seq.wall.map(r0),
          dumpMs: seq.dump.map(r0),
          writeDeltaMs: seq.hash.map(r0),
          frozenMs: seq.frozen.map(r0),
          medianWallMs: r0(med(seq.wall)),
          medianFrozenMs: r0(med(seq.frozen)),
        },
        streamedMain: strOut(strs.main),
        streamedWorker: strOut(strs.worker),
      },
      final: {
        sequential: { wallMs: r0(fs.wall), dumpMs: r0(fs.dump), writeDeltaMs: r0(fs.hash), frozenMs: r0(await frozenMs(fs.d)) },
        streamedMain: await finOut(fm),
        streamedWorker: await finOut(fw),
      },
    };
    t.diagnostic(JSON.stringify(out));
    console.log(JSON.stringify(out));
  });
});
