// The Node.js app of `cloudlet bench apps`: the host's node in an image from the host running
// the server-sent-events service of src/workloads/apps/sse-service.ts; its client holds one
// event stream across the handoff and checks every event arrives once, in order, and that
// the service's sha256 of what it sent equals the sha256 of what arrived.
import { realpath } from 'node:fs/promises';
import type { HostImageSpec } from '../../images/host-image.js';
import { SSE_SERVICE_JS } from '../../workloads/apps/sse-service.js';
import { startPythonClient } from './client-process.js';
import type { AppDef } from './types.js';

async function nodeImage(): Promise<HostImageSpec> {
  const node = await realpath(process.execPath);
  return {
    name: 'cloudlet-apps/node-sse:1',
    binaries: [node],
    files: [{ path: '/app/server.js', content: SSE_SERVICE_JS, mode: 0o644 }],
    cmd: [node, '/app/server.js'],
    config: { env: ['PORT=8080', 'INTERVAL_MS=20'], exposedPorts: ['8080/tcp'], workingDir: '/app' },
  };
}

export const NODE_SSE: AppDef = {
  name: 'node-sse',
  description:
    "the host's node (http module) streaming server-sent events every 20 ms; client: one stream across the handoff, every event once and in order, sha256 of the events against the service's",
  port: 8080,
  image: nodeImage,
  startClient: (ctx) => startPythonClient(ctx.lab, 'sse', [ctx.address, 8080, '/events']),
};
