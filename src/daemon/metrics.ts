// Prometheus metrics. Each server instance owns its registry (not prom-client's global one)
// so that several daemons in one process - tests, the lab - do not mix their numbers.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface DaemonMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  up: Gauge<'node'>;
}

export function createMetrics(node: string): DaemonMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const httpRequests = new Counter({
    name: 'cloudlet_http_requests_total',
    help: 'HTTP requests served, by route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: 'cloudlet_http_request_duration_seconds',
    help: 'HTTP request duration, by route template and status code',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const up = new Gauge({
    name: 'cloudlet_up',
    help: '1 while this cloudletd is serving',
    labelNames: ['node'] as const,
    registers: [registry],
  });
  up.set({ node }, 1);
  return { registry, httpRequests, httpDuration, up };
}
