// Micro-benchmark of the transfer codecs on a real sample, through the same block path that
// framed transfers use (1 MiB blocks, stored when incompressible).
//
//   node dist/src/transfer/bench-codecs.js FILE [--max-mib N]
//   node dist/src/transfer/bench-codecs.js --pid PID [--max-mib N]   (a live process's memory:
//       its private writable mappings read through /proc/PID/mem, like a CRIU pages image)
//
// Prints per codec: ratio (wire/raw), compress and decompress MB/s (raw bytes, one core),
// reference rows for zstd level 3 and gzip level 6, and which codec chooseCodec picks for
// the sample's size at 5, 20, 100 and 1000 Mbit/s.
import { open, readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import zlib from 'node:zlib';
import zstdBinding from 'zstd-napi/binding.js';
import { CODEC_NAMES, DEFAULT_BLOCK_SIZE } from './codecs.js';
import { chooseCodec, measureCodecs } from './codec-choice.js';
import { mbitToBytesPerSecond } from './meter.js';

async function readFileSample(path: string, max: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const n = Math.min(size, max);
    const buf = Buffer.allocUnsafe(n);
    // From the middle of large files (skips headers that are not representative).
    const start = size > n ? Math.floor((size - n) / 2) : 0;
    const { bytesRead } = await fh.read(buf, 0, n, start);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function readProcessMemory(pid: number, max: number): Promise<Buffer> {
  const maps = await readFile(`/proc/${pid}/maps`, 'utf8');
  const fh = await open(`/proc/${pid}/mem`, 'r');
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for (const line of maps.split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) rw-p \S+ \S+ (\d+)\s*(.*)$/.exec(line);
      if (!m || total >= max) continue;
      if (m[4]!.startsWith('[v')) continue; // [vvar], [vdso]...
      const start = parseInt(m[1]!, 16);
      const len = Math.min(parseInt(m[2]!, 16) - start, max - total);
      const buf = Buffer.allocUnsafe(len);
      try {
        const { bytesRead } = await fh.read(buf, 0, len, start);
        parts.push(buf.subarray(0, bytesRead));
        total += bytesRead;
      } catch {
        // unreadable mapping: skip
      }
    }
  } finally {
    await fh.close();
  }
  return Buffer.concat(parts, total);
}

function refRow(label: string, data: Buffer, c: (b: Buffer) => Buffer, d: (b: Buffer, n: number) => void): string {
  const blocks: Buffer[] = [];
  for (let o = 0; o < data.length; o += DEFAULT_BLOCK_SIZE) blocks.push(data.subarray(o, o + DEFAULT_BLOCK_SIZE));
  let t = performance.now();
  const enc = blocks.map(c);
  const cs = (performance.now() - t) / 1000;
  t = performance.now();
  enc.forEach((e, i) => d(e, blocks[i]!.length));
  const ds = (performance.now() - t) / 1000;
  const wire = enc.reduce((a, e, i) => a + Math.min(e.length, blocks[i]!.length), 0);
  return row(label, wire / data.length, data.length / cs, data.length / ds);
}

function row(label: string, ratio: number, c: number, d: number): string {
  const f = (x: number): string => (Number.isFinite(x) ? (x / 1e6).toFixed(0) : '-').padStart(10);
  return `${label.padEnd(16)} ${ratio.toFixed(3).padStart(7)} ${f(c)} ${f(d)}`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const maxIdx = args.indexOf('--max-mib');
  const max = (maxIdx >= 0 ? Number(args[maxIdx + 1]) : 64) * (1 << 20);
  const pidIdx = args.indexOf('--pid');
  const file = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--max-mib' && args[i - 1] !== '--pid');
  if (pidIdx < 0 && !file) {
    console.error('usage: bench-codecs FILE [--max-mib N] | --pid PID [--max-mib N]');
    process.exit(2);
  }
  const data = pidIdx >= 0 ? await readProcessMemory(Number(args[pidIdx + 1]), max) : await readFileSample(file!, max);
  const zeroPages = (() => {
    let z = 0;
    for (let o = 0; o + 4096 <= data.length; o += 4096) if (data.subarray(o, o + 4096).every((b) => b === 0)) z++;
    return z / Math.max(1, Math.floor(data.length / 4096));
  })();
  console.log(
    `sample: ${pidIdx >= 0 ? `memory of pid ${args[pidIdx + 1]}` : file}, ${(data.length / 2 ** 20).toFixed(1)} MiB, ${(zeroPages * 100).toFixed(1)}% zero pages`,
  );
  console.log(`${'codec'.padEnd(16)} ${'ratio'.padStart(7)} ${'comp MB/s'.padStart(10)} ${'dec MB/s'.padStart(10)}`);
  const ms = await measureCodecs(data, CODEC_NAMES, { maxSampleBytes: data.length, minSeconds: 0.3, maxRepeats: 5 });
  for (const m of ms) console.log(row(m.codec, m.ratio, m.compressBps, m.decompressBps));
  const cctx = new zstdBinding.CCtx();
  const dctx = new zstdBinding.DCtx();
  const zc =
    (level: number) =>
    (b: Buffer): Buffer => {
      const dst = Buffer.allocUnsafe(zstdBinding.compressBound(b.length));
      return dst.subarray(0, cctx.compress(dst, b, level));
    };
  const zd = (b: Buffer, n: number): void => void dctx.decompress(Buffer.allocUnsafe(n), b);
  console.log(refRow('(zstd level 3)', data, zc(3), zd));
  console.log(
    refRow(
      '(gzip level 6)',
      data,
      (b) => zlib.gzipSync(b, { level: 6 }),
      (b) => void zlib.gunzipSync(b),
    ),
  );
  for (const mbit of [5, 20, 100, 1000]) {
    const d = chooseCodec(ms, mbitToBytesPerSecond(mbit), { bytes: data.length });
    console.log(
      `${String(mbit).padStart(5)} Mbit/s -> ${d.codec.padEnd(5)} ${d.predictedSeconds.toFixed(3)} s | ${d.candidates.map((c) => `${c.codec} ${c.predictedSeconds.toFixed(3)}`).join(', ')}`,
    );
  }
}

await main();
