// Network namespaces of the lab, driven through iproute2. Commands run inside a namespace
// with `nsenter --net=/run/netns/NAME` rather than `ip netns exec`: the latter remounts /sys,
// which breaks dockerd ("Devices cgroup isn't mounted", see docs/SETUP.md).
import { existsSync } from 'node:fs';
import { run, type RunOptions, type RunResult } from '../util/exec.js';

export function netnsPath(ns: string): string {
  return `/run/netns/${ns}`;
}

/** Arguments that make `nsenter` run a program inside the namespace. */
export function nsenterArgs(ns: string, cmd: string, args: readonly string[]): string[] {
  return [`--net=${netnsPath(ns)}`, '--', cmd, ...args];
}

export function nsRun(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<RunResult> {
  return run('nsenter', nsenterArgs(ns, cmd, args), opts);
}

export async function listNetns(): Promise<string[]> {
  const { stdout } = await run('ip', ['-json', 'netns', 'list']);
  if (!stdout.trim()) return [];
  return (JSON.parse(stdout) as { name: string }[]).map((n) => n.name);
}

export function netnsExists(ns: string): boolean {
  return existsSync(netnsPath(ns));
}

export async function addNetns(ns: string): Promise<void> {
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

export async function deleteNetns(ns: string): Promise<void> {
  if (netnsExists(ns)) await run('ip', ['netns', 'delete', ns]);
}

/**
 * A persistent TAP device inside a namespace, with its address, up. The lab joins two of
 * them with a cl-wire process (see native/cl-wire.c) to make one delayed link.
 */
export async function addTap(ns: string, ifname: string, address: string): Promise<void> {
  await run('ip', ['-n', ns, 'tuntap', 'add', 'dev', ifname, 'mode', 'tap']);
  await run('ip', ['-n', ns, 'addr', 'add', address, 'dev', ifname]);
  await run('ip', ['-n', ns, 'link', 'set', ifname, 'up']);
}

export async function setDefaultRoute(ns: string, gateway: string): Promise<void> {
  await run('ip', ['-n', ns, 'route', 'replace', 'default', 'via', gateway]);
}

export async function sysctl(ns: string, key: string, value: string): Promise<void> {
  await nsRun(ns, 'sysctl', ['-q', '-w', `${key}=${value}`]);
}
