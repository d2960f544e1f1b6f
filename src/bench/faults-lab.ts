// Faults done to a running lab, for the fault matrix (bench/faults.ts): cut and restore a
// link, kill and restart a cloudlet's daemon or engine, shrink a cloudlet's scratch tmpfs.
// Every process is signalled by the PID in the lab's state file, after its command line was
// checked (isOurProcess): a PID reused by someone else is never touched.
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CloudletError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { DEFAULT_ENGINE_KIND, startEngine } from '../lab/engines.js';
import { spawnDaemon, waitForDaemon } from '../lab/lab.js';
import { isOurProcess } from '../lab/processes.js';
import { readLabState, writeLabState, type LabCloudlet, type LabHost, type LabState } from '../lab/state.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The lab's state as it is on disk now (a restart below changes PIDs in it). */
export function freshState(dir: string): LabState {
  const s = readLabState(dir);
  if (!s) throw new CloudletError('lab_down', `no lab state in ${dir}`, { kind: 'not-found', hint: 'run `cloudlet lab up` first' });
  return s;
}

function host(state: LabState, node: string): LabHost {
  const h = node === 'client' ? state.client : state.cloudlets.find((c) => c.name === node);
  if (!h) throw new CloudletError('no_such_node', `no lab node '${node}'`, { kind: 'not-found' });
  return h;
}

export function cloudletOf(state: LabState, node: string): LabCloudlet {
  const c = state.cloudlets.find((x) => x.name === node);
  if (!c) throw new CloudletError('no_such_node', `no cloudlet '${node}' in the lab`, { kind: 'not-found' });
  return c;
}

function signalOurs(pid: number, marker: string, signal: NodeJS.Signals, what: string): void {
  if (!isOurProcess(pid, marker)) throw new CloudletError('not_running', `${what} (pid ${pid}) is not running`, { kind: 'conflict' });
  process.kill(pid, signal);
}

/**
 * Cuts a node's link: its cl-wire process is stopped (SIGSTOP), so no frame crosses in either
 * direction; TCP sees silence, not a reset, as with a pulled cable or a radio gone.
 */
export function cutLink(state: LabState, node: string): void {
  const h = host(state, node);
  signalOurs(h.wire.pid, h.wire.delayFile, 'SIGSTOP', `the wire of ${node}`);
}

export function restoreLink(state: LabState, node: string): void {
  const h = host(state, node);
  signalOurs(h.wire.pid, h.wire.delayFile, 'SIGCONT', `the wire of ${node}`);
}

async function waitGone(pid: number, marker: string, what: string): Promise<void> {
  for (let i = 0; i < 200 && isOurProcess(pid, marker); i++) await sleep(50);
  if (isOurProcess(pid, marker)) throw new CloudletError('kill_failed', `${what} (pid ${pid}) did not exit after SIGKILL`, { kind: 'internal' });
}

/** SIGKILL of a cloudlet's cloudletd: no clean-up of its own runs. */
export async function killDaemon(state: LabState, node: string): Promise<void> {
  const cl = cloudletOf(state, node);
  signalOurs(cl.daemon.pid, cl.daemon.configPath, 'SIGKILL', `cloudletd of ${node}`);
  await waitGone(cl.daemon.pid, cl.daemon.configPath, `cloudletd of ${node}`);
}

/**
 * Starts cloudletd again with its existing config (as `lab up` started it) and records the
 * new PID in the lab's state file. Its start-up runs the journal recovery, which may talk to
 * peers: up to timeoutMs.
 */
export async function restartDaemon(dir: string, node: string, timeoutMs = 180_000): Promise<number> {
  const state = freshState(dir);
  const cl = cloudletOf(state, node);
  if (isOurProcess(cl.daemon.pid, cl.daemon.configPath))
    throw new CloudletError('still_running', `cloudletd of ${node} is still running`, { kind: 'conflict' });
  const pid = spawnDaemon(cl);
  cl.daemon.pid = pid;
  writeLabState(state, dir);
  await waitForDaemon(cl, timeoutMs);
  return pid;
}

/** SIGKILL of a cloudlet's dockerd (its containerd goes with it; shims may stay). */
export async function killEngine(state: LabState, node: string): Promise<void> {
  const cl = cloudletOf(state, node);
  signalOurs(cl.engine.pid, cl.engine.dataRoot, 'SIGKILL', `dockerd of ${node}`);
  await waitGone(cl.engine.pid, cl.engine.dataRoot, `dockerd of ${node}`);
}

/** Starts the cloudlet's engine again on the same directories and records its new PID. */
export async function restartEngine(dir: string, node: string): Promise<number> {
  const state = freshState(dir);
  const cl = cloudletOf(state, node);
  const { pid: _old, kind, ...layout } = cl.engine;
  cl.engine = await startEngine({ name: cl.name, namespace: cl.namespace, layout, kind: kind ?? DEFAULT_ENGINE_KIND });
  writeLabState(state, dir);
  return cl.engine.pid;
}

/** The cloudlet's scratch tmpfs (staging, containerd's checkpoint copies; see lab.ts scratchOf). */
export function scratchDirOf(cl: LabCloudlet): string {
  return dirname(cl.engine.xdgRuntimeDir);
}

/** The size `lab up` gives every scratch tmpfs (lab.ts mountScratch). */
const SCRATCH_SIZE = '8g';

/** Leaves `freeBytes` free on the cloudlet's scratch tmpfs: its disk is (nearly) full. */
export async function shrinkScratch(state: LabState, node: string, freeBytes: number): Promise<void> {
  const dir = scratchDirOf(cloudletOf(state, node));
  const st = await statfs(dir);
  const used = (st.blocks - st.bfree) * st.bsize;
  await run('mount', ['-o', `remount,size=${used + freeBytes}`, dir]);
}

export async function restoreScratch(state: LabState, node: string): Promise<void> {
  await run('mount', ['-o', `remount,size=${SCRATCH_SIZE}`, scratchDirOf(cloudletOf(state, node))]);
}
