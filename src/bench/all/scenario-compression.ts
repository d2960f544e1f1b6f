// Scenario 2: the codecs on the memory of the running workloads. The measurement itself is
// the codec micro-benchmark (src/transfer/bench-codecs.ts, run as its own process on the
// container's pid: it reads the private writable mappings like a CRIU pages image); the
// transfer time per link rate is the codec-choice model's prediction from those rates.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError } from '../../util/errors.js';
import type { LabState } from '../../lab/state.js';
import { chooseCodec, type CodecMeasurement } from '../../transfer/codec-choice.js';
import { mbitToBytesPerSecond } from '../../transfer/meter.js';
import type { CodecName } from '../../transfer/codecs.js';
import { engineOf, removeIfPresent, waitForService } from '../lab-migrate.js';
import { BUSYBOX_COUNTER_SCRIPT, STATEFUL_SERVICE_SCRIPT } from '../../workloads/stateful-service.js';
import { HANDOFF_SERVICE_SCRIPT } from '../../workloads/handoff-service.js';
import type { BenchPlan, CompressionRow } from './types.js';

const BENCH_CODECS = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'transfer', 'bench-codecs.js');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface CodecSample {
  sampleBytes: number;
  zeroPagesPercent: number;
  codecs: { codec: CodecName; ratio: number; compressMBps: number | null; decompressMBps: number | null }[];
}

/** Parses bench-codecs' text output (its first table; the reference rows are skipped). */
export function parseBenchCodecs(text: string): CodecSample {
  const s = /^sample: .*, ([\d.]+) MiB, ([\d.]+)% zero pages$/m.exec(text);
  if (!s) throw new CloudletError('bench_failed', `bench-codecs printed no sample line: ${text.slice(0, 300)}`, { kind: 'internal' });
  const codecs: CodecSample['codecs'] = [];
  for (const m of text.matchAll(/^(none|lz4|zstd|gzip)\s+([\d.]+)\s+(\S+)\s+(\S+)$/gm)) {
    const rate = (x: string) => (x === '-' ? null : Number(x));
    codecs.push({ codec: m[1] as CodecName, ratio: Number(m[2]), compressMBps: rate(m[3]!), decompressMBps: rate(m[4]!) });
  }
  if (codecs.length === 0) throw new CloudletError('bench_failed', `bench-codecs printed no codec rows: ${text.slice(0, 300)}`, { kind: 'internal' });
  return { sampleBytes: Math.round(Number(s[1]) * 2 ** 20), zeroPagesPercent: Number(s[2]), codecs };
}

async function benchCodecsOnPid(pid: number, maxMiB: number): Promise<CodecSample> {
  const child = spawn(process.execPath, [BENCH_CODECS, '--pid', String(pid), '--max-mib', String(maxMiB)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearTimeout(timer);
  if (code !== 0) throw new CloudletError('bench_failed', `bench-codecs --pid ${pid} exited ${code}: ${err.trim().slice(-300)}`, { kind: 'internal' });
  return parseBenchCodecs(out);
}

/** Predicted transfer seconds of the sample per link rate (codec-choice.ts's pipeline model). */
export function transferSeconds(sample: CodecSample, mbits: readonly number[]): Record<string, Record<string, number>> {
  const ms: CodecMeasurement[] = sample.codecs.map((c) => ({
    codec: c.codec,
    sampleBytes: sample.sampleBytes,
    ratio: c.ratio,
    compressBps: c.compressMBps === null ? Infinity : c.compressMBps * 1e6,
    decompressBps: c.decompressMBps === null ? Infinity : c.decompressMBps * 1e6,
  }));
  const out: Record<string, Record<string, number>> = {};
  for (const mbit of mbits) {
    for (const p of chooseCodec(ms, mbitToBytesPerSecond(mbit), { bytes: sample.sampleBytes }).candidates) {
      (out[p.codec] ??= {})[String(mbit)] = Math.round(p.predictedSeconds * 1000) / 1000;
    }
  }
  return out;
}

interface Workload {
  name: string;
  container: string;
  create: () => Promise<void>;
}

export async function runCompressionScenario(lab: LabState, plan: BenchPlan['compression'], progress: (m: string) => void): Promise<CompressionRow[]> {
  const a = lab.cloudlets[0]!.name;
  const ea = engineOf(lab, a);
  const node = (name: string, script: string, env: string[]) => async () => {
    await ea.createContainer({ name, Image: 'cloudlet/node:20', Cmd: ['node', '-e', script], Env: env, HostConfig: { NetworkMode: 'none' } });
    await ea.startContainer(name);
  };
  const workloads: Workload[] = [
    {
      name: 'busybox counter',
      container: 'bench-all-c-counter',
      create: async () => {
        await ea.createContainer({
          name: 'bench-all-c-counter',
          Image: 'cloudlet/busybox:1',
          Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT],
          HostConfig: { NetworkMode: 'none' },
        });
        await ea.startContainer('bench-all-c-counter');
        await sleep(1000);
      },
    },
    {
      name: `activity service ${plan.stateMb} MiB`,
      container: 'bench-all-c-handoff',
      create: async () => {
        await node('bench-all-c-handoff', HANDOFF_SERVICE_SCRIPT, [`STATE_MB=${plan.stateMb}`, 'DIRTY_KB_PER_REQUEST=64'])();
        await sleep(2000);
      },
    },
    {
      name: `random-state service ${plan.stateMb} MiB`,
      container: 'bench-all-c-svc',
      create: async () => {
        await node('bench-all-c-svc', STATEFUL_SERVICE_SCRIPT, [`STATE_MB=${plan.stateMb}`, 'PORT=8080'])();
        await waitForService(ea, 'bench-all-c-svc');
      },
    },
  ];
  const rows: CompressionRow[] = [];
  for (const w of workloads) {
    await removeIfPresent(ea, w.container);
    progress(`[compression] ${w.name}: start on ${a}`);
    await w.create();
    try {
      const { pid } = await ea.inspectContainer(w.container);
      for (let rep = 1; rep <= plan.reps; rep++) {
        progress(`[compression] ${w.name}: codecs on its memory (pid ${pid}), repetition ${rep}/${plan.reps}`);
        const sample = await benchCodecsOnPid(pid, plan.maxMiB);
        const t = transferSeconds(sample, plan.mbits);
        for (const c of sample.codecs) {
          rows.push({ rep, workload: w.name, sampleBytes: sample.sampleBytes, zeroPagesPercent: sample.zeroPagesPercent, ...c, transferS: t[c.codec] ?? {} });
        }
      }
    } finally {
      await removeIfPresent(ea, w.container);
    }
  }
  return rows;
}
