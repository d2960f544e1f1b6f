// The new instance's own health check, run by the destination of a handoff by re-creation
// (see recreate-destination.ts). It runs from cloudletd, which lives in the cloudlet's
// network namespace and reaches the service network's bridge directly - before the address
// is routed here.
import http from 'node:http';
import net from 'node:net';
import { CloudletError, errorMessage } from '../util/errors.js';
import type { DockerEngine } from '../engine/docker.js';
import { formatHealth, type HealthCheck } from './recreate.js';

const PROBE_TIMEOUT_MS = 1000;
const PROBE_INTERVAL_MS = 100;

/** One health probe: an HTTP 2xx answer, or a TCP connect. Resolves with why it failed, or null. */
export function probeOnce(address: string, h: HealthCheck, timeoutMs = PROBE_TIMEOUT_MS): Promise<string | null> {
  return new Promise((resolve) => {
    if ('http' in h) {
      const req = http.get({ host: address, port: h.http.port, path: h.http.path, timeout: timeoutMs, agent: false }, (res) => {
        res.resume();
        const ok = (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300;
        resolve(ok ? null : `HTTP ${res.statusCode}`);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (err) => resolve(errorMessage(err)));
    } else {
      const s = net.connect({ host: address, port: h.tcp.port, timeout: timeoutMs });
      s.once('connect', () => {
        s.destroy();
        resolve(null);
      });
      s.once('timeout', () => s.destroy(new Error(`no connection within ${timeoutMs} ms`)));
      s.once('error', (err) => resolve(errorMessage(err)));
    }
  });
}

/** Polls the health check until it passes; fails when the container stops or time runs out. */
export async function waitHealthy(o: {
  engine: DockerEngine;
  containerId: string;
  address: string;
  health: HealthCheck;
  timeoutMs: number;
}): Promise<{ ms: number; checks: number }> {
  const { engine, containerId, address, health: h, timeoutMs } = o;
  const t0 = performance.now();
  let checks = 0;
  let last = 'not probed';
  for (;;) {
    checks++;
    const why = await probeOnce(address, h);
    if (why === null) return { ms: performance.now() - t0, checks };
    last = why;
    if (!(await engine.inspectContainer(containerId)).running) {
      throw new CloudletError('health_check_failed', `the new instance stopped before its health check ${formatHealth(h)} passed (last probe: ${last})`, {
        kind: 'upstream',
        context: { containerId, checks },
        hint: `see its logs: docker logs ${containerId.slice(0, 12)} on the destination`,
      });
    }
    if (performance.now() - t0 > timeoutMs) {
      throw new CloudletError(
        'health_check_failed',
        `the new instance did not pass its health check ${formatHealth(h)} at ${address} within ${timeoutMs} ms (${checks} probes; last: ${last})`,
        {
          kind: 'deadline-exceeded',
          context: { containerId, checks },
        },
      );
    }
    await new Promise((r) => setTimeout(r, PROBE_INTERVAL_MS));
  }
}
