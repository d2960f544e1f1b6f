// Shaped links. This kernel has no netem, so a lab link is two TAP devices joined by a
// userspace wire (native/cl-wire.c) that adds the one-way delay; bandwidth is a tbf qdisc on
// the egress of each TAP, so a link's bandwidth and latency hold in both directions.
import { writeFileSync } from 'node:fs';
import { UsageError } from '../util/errors.js';
import { run } from '../util/exec.js';
import type { LinkSpec } from './state.js';

const RATE = /^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)$/i;
const DELAY = /^(\d+(?:\.\d+)?)(us|ms|s)$/i;
const RATE_UNIT: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 };
const DELAY_UNIT: Record<string, number> = { us: 1e-3, ms: 1, s: 1e3 };

/** "100mbit" -> 100e6 bits per second; throws a UsageError naming the bad value. */
export function parseBandwidth(text: string): number {
  const m = RATE.exec(text.trim());
  if (!m) throw new UsageError(`invalid bandwidth '${text}'`, { hint: 'use e.g. 100mbit, 20mbit, 1gbit, 512kbit' });
  const bps = Number(m[1]) * RATE_UNIT[m[2]!.toLowerCase()]!;
  if (bps < 8_000 || bps > 10e9) throw new UsageError(`bandwidth '${text}' is out of range (8kbit..10gbit)`);
  return bps;
}

/** "5ms" -> 5 (milliseconds); throws a UsageError naming the bad value. */
export function parseLatency(text: string): number {
  const m = DELAY.exec(text.trim());
  if (!m) throw new UsageError(`invalid latency '${text}'`, { hint: 'use e.g. 0ms, 5ms, 40ms' });
  const ms = Number(m[1]) * DELAY_UNIT[m[2]!.toLowerCase()]!;
  if (ms > 10_000) throw new UsageError(`latency '${text}' is out of range (at most 10s)`);
  return ms;
}

export function validateLink(spec: LinkSpec): LinkSpec {
  parseBandwidth(spec.bandwidth);
  parseLatency(spec.latency);
  return { bandwidth: spec.bandwidth.toLowerCase(), latency: spec.latency.toLowerCase() };
}

/**
 * Token bucket sized for the rate: at least 64 KiB, and 10 ms worth of data at high rates so
 * that the bucket does not starve the link. The queue holds 100 ms at the link rate: enough
 * for TCP to fill the pipe, short enough not to bloat the RTT of interactive traffic.
 */
function tbfParams(bps: number): string[] {
  const burst = Math.max(64 * 1024, Math.ceil(bps / 8 / 100));
  return ['rate', `${Math.round(bps)}bit`, 'burst', String(burst), 'latency', '100ms'];
}

/** Applies (or replaces) the rate limit on one interface inside a namespace. */
export async function shapeRate(ns: string, ifname: string, bandwidth: string): Promise<void> {
  await run('tc', ['-n', ns, 'qdisc', 'replace', 'dev', ifname, 'root', 'tbf', ...tbfParams(parseBandwidth(bandwidth))]);
}

/** Writes the wire's delay file (microseconds); the wire reads it at start and on SIGHUP. */
export function writeDelayFile(path: string, latency: string): void {
  writeFileSync(path, `${Math.round(parseLatency(latency) * 1000)}\n`);
}
