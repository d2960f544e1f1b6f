// The low-priority hasher of dumpAndDelta (stream-delta.ts): a worker thread that lowers its
// own scheduling priority (nice 19 by default) and hashes the pages files of the image
// directory while the dump writes them, until the main thread sets control[0]; then it
// hands its state over (ArrayBuffers transferred) and ends. At nice 19 it only uses CPU that
// CRIU and the rest of the machine leave idle: measured on this 2-vCPU machine under load,
// an un-niced hashing thread made `criu dump` 30-250% slower, a niced one barely (~5%).
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { PageStreamer } from './stream-core.js';

export interface StreamWorkerData {
  dir: string;
  prevHashes: BigUint64Array | null;
  /** Nice value for this thread (null: leave it). */
  nice: number | null;
  pollMs: number;
  /**
   * Int32Array over a SharedArrayBuffer: [0] = 1 when the dump has settled; [1] = this
   * thread's tid (0 until known); [2] = 0 starting, 1 running (set by the worker), 2
   * abandoned (set by the main thread when the dump ended before the worker ran: the
   * worker then ends at once).
   */
  control: SharedArrayBuffer;
}

export interface StreamWorkerMessage {
  state: import('./stream-core.js').StreamerState;
  error: string | null;
  /** The nice value actually set on the thread (null: not set). */
  nice: number | null;
}

const data = workerData as StreamWorkerData;
const control = new Int32Array(data.control);
let nice: number | null = null;
let tid = 0;
try {
  tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
} catch {
  /* no /proc: no nice */
}
if (data.nice !== null && tid > 0) {
  try {
    // On Linux setpriority(PRIO_PROCESS, tid) changes one thread only.
    setPriority(tid, data.nice);
    nice = data.nice;
  } catch {
    /* not permitted: hash at the normal priority */
  }
}
Atomics.store(control, 1, tid);
if (Atomics.compareExchange(control, 2, 0, 1) !== 0) process.exit(0); // abandoned: the main thread hashes
const streamer = new PageStreamer(data.dir, data.prevHashes);
let error: string | null = null;
try {
  const stop = (): boolean => Atomics.load(control, 0) !== 0;
  while (!stop()) {
    if (!streamer.pump(false, stop)) Atomics.wait(control, 0, 0, data.pollMs);
  }
} catch (err) {
  error = err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err);
}
const { state, transfer } = streamer.exportState();
streamer.closeAll();
parentPort!.postMessage({ state, error, nice } satisfies StreamWorkerMessage, transfer);
