// Measures the bulk TCP throughput between two lab nodes with a real transfer across the
// router (both links shaped), e.g. to check that a 100mbit link carries ~95 Mbit/s.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError, UsageError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { nsenterArgs } from './netns.js';
import type { LabHost, LabState } from './state.js';

const WORKER = join(fileURLToPath(new URL('.', import.meta.url)), 'throughput-worker.js');
const PORT = 5201;

export interface ThroughputResult {
  from: string;
  to: string;
  bytes: number;
  seconds: number;
  mbitPerSecond: number;
}

export function labHost(state: LabState, name: string): LabHost {
  const h = name === 'client' ? state.client : state.cloudlets.find((c) => c.name === name);
  if (!h) {
    throw new UsageError(`unknown lab node '${name}'`, {
      hint: `lab nodes: client, ${state.cloudlets.map((c) => c.name).join(', ')}`,
    });
  }
  return h;
}

export async function measureThroughput(
  state: LabState,
  fromName: string,
  toName: string,
  opts: { bytes: number; maxSeconds: number },
): Promise<ThroughputResult> {
  const from = labHost(state, fromName);
  const to = labHost(state, toName);
  if (from.name === to.name) throw new UsageError('--from and --to must be different nodes');
  const sink = spawn('nsenter', nsenterArgs(to.namespace, process.execPath, [WORKER, 'sink', to.address, String(PORT)]), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  sink.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    sink.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening')) resolve();
    });
    sink.on('exit', (code) => reject(new CloudletError('throughput_failed', `sink exited (${code}): ${err.trim()}`, { kind: 'internal' })));
  });
  const done = new Promise<number | null>((resolve) => sink.on('exit', resolve));
  try {
    await ready;
    await run(
      'nsenter',
      nsenterArgs(from.namespace, process.execPath, [WORKER, 'source', to.address, String(PORT), String(opts.bytes), String(opts.maxSeconds)]),
      { timeoutMs: (opts.maxSeconds + 30) * 1000 },
    );
    const code = await done;
    if (code !== 0) throw new CloudletError('throughput_failed', `sink exited with ${code}: ${err.trim()}`, { kind: 'internal' });
  } finally {
    if (sink.exitCode === null) sink.kill('SIGKILL');
  }
  const r = JSON.parse(out.trim()) as { bytes: number; seconds: number; bitsPerSecond: number };
  return { from: from.name, to: to.name, bytes: r.bytes, seconds: r.seconds, mbitPerSecond: r.bitsPerSecond / 1e6 };
}
