// `lab down`: everything the lab made removed, also after a crash of `lab up`.
import { existsSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../util/errors.js';
import { FORWARDER_MAIN } from './daemons.js';
import { stopEngine } from './engines.js';
import { mountsUnder, unmountAllUnder } from './mounts.js';
import { deleteNetns, listNetns } from './netns.js';
import { processesMentioning, terminate } from './processes.js';
import { LAB_PREFIX, labDir, labRunDir, readLabState, statePath } from './state.js';
import type { Progress } from './lab.js';
import { removeRemap } from './userns-remap.js';

export interface LabDownReport {
  wasUp: boolean;
  removed: string[];
  errors: string[];
}

/**
 * Removes everything the lab made. Safe to run twice, and after a crash: each step checks
 * what exists, and a failing step does not stop the ones after it (they are reported).
 */
export async function labDown(progress: Progress): Promise<LabDownReport> {
  const dir = labDir();
  const runDir = labRunDir();
  const state = readLabState(dir);
  // The state's prefix wins over the environment's: it names what this lab really made.
  const prefix = state?.prefix ?? LAB_PREFIX;
  const report: LabDownReport = { wasUp: state !== null, removed: [], errors: [] };
  const step = async (what: string, fn: () => Promise<string[] | void>) => {
    try {
      const notes = await fn();
      if (notes) report.removed.push(...notes.map((n) => `${what}: ${n}`));
    } catch (err) {
      report.errors.push(`${what}: ${errorMessage(err)}`);
    }
  };

  if (state) {
    if (state.forwarder) {
      const fwd = state.forwarder;
      await step('forwarder', async () => [`${fwd.pid} ${await terminate(fwd.pid, FORWARDER_MAIN, 5000)}`]);
    }
    for (const cl of state.cloudlets) {
      progress(`stopping ${cl.name}`);
      await step(`cloudletd ${cl.name}`, async () =>
        cl.daemon.pid ? [`${cl.daemon.pid} ${await terminate(cl.daemon.pid, cl.daemon.configPath, 10_000)}`] : [],
      );
    }
    await Promise.all(state.cloudlets.map((cl) => step(`engine ${cl.name}`, () => stopEngine(cl.engine))));
    for (const h of [state.client, ...state.cloudlets]) {
      if (h.wire?.pid) await step(`wire ${h.name}`, async () => [`${h.wire.pid} ${await terminate(h.wire.pid, h.wire.delayFile, 5000)}`]);
    }
  }
  // Anything still naming the lab's directories (a daemon or shim from a crashed `up`).
  await step('processes', async () => {
    const notes: string[] = [];
    for (const pid of processesMentioning([dir + '/', runDir + '/'])) {
      notes.push(`${pid} ${await terminate(pid, [dir + '/', runDir + '/'], 5000)}`);
    }
    return notes;
  });
  await step('mounts', () => unmountAllUnder([dir, runDir]));
  await step('namespaces', async () => {
    const notes: string[] = [];
    for (const ns of (await listNetns()).filter((n) => n.startsWith(prefix))) {
      await deleteNetns(ns);
      notes.push(ns);
    }
    return notes;
  });
  await step('cgroups', async () => removeLabCgroups(prefix));
  await step('files', async () => {
    const notes: string[] = [];
    for (const d of [dir, runDir]) {
      if (!existsSync(d)) continue;
      const left = mountsUnder([d]);
      if (left.length > 0) throw new Error(`still mounted under ${d}: ${left.join(', ')}`);
      rmSync(d, { recursive: true, force: true });
      notes.push(d);
    }
    return notes;
  });
  // After the engines: the user and its range are the lab's own, nothing else uses them.
  if (state?.usernsRemap) {
    const remap = state.usernsRemap;
    await step('userns-remap', () => removeRemap(remap));
  }
  if (existsSync(statePath(dir))) report.errors.push(`state file ${statePath(dir)} is still there`);
  return report;
}

/** Docker creates CGROUP_ROOT/<controller>/<prefix><name>; empty once its containers are gone. */
function removeLabCgroups(prefix: string): string[] {
  const root = '/sys/fs/cgroup';
  const removed: string[] = [];
  if (!existsSync(root)) return removed;
  for (const controller of readdirSync(root)) {
    const cdir = join(root, controller);
    let entries: string[];
    try {
      entries = readdirSync(cdir);
    } catch {
      continue; // a file (cgroup v2 interface file) or an unreadable controller: nothing of ours
    }
    for (const e of entries.filter((n) => n.startsWith(prefix))) {
      rmdirCgroupTree(join(cdir, e));
      removed.push(join(controller, e));
    }
  }
  return removed;
}

/**
 * Removes a cgroup and the cgroups below it, deepest first. A container's cgroup can outlive
 * it (an engine stopped before its runc cleaned up: seen once on a dev lab, empty) and would
 * keep the lab's own from going. The kernel refuses a cgroup that still has processes
 * (EBUSY), so nothing running is ever taken away.
 */
function rmdirCgroupTree(dir: string): void {
  for (const child of readdirSync(dir, { withFileTypes: true })) {
    if (child.isDirectory()) rmdirCgroupTree(join(dir, child.name));
  }
  rmdirSync(dir);
}
