// What cloudletd's route modules share with server.ts: the context every route reads and the
// shapes of /v1/info and /v1/peers. A module of its own so that server.ts and the routes-*.ts
// it registers do not import each other.
import type http from 'node:http';
import type { DockerEngine } from '../engine/docker.js';
import type { ServiceNetwork } from '../network/service-network.js';
import type { DaemonConfig } from './config.js';
import type { DaemonDb } from './db.js';
import type { DaemonMetrics } from './metrics.js';
import type { PeerHealth } from './peers.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Route needs no bearer token (health checks for load balancers and the lab). */
    public?: boolean;
    /** Route also accepts the token as `?token=` (server-sent events: EventSource sends no headers). */
    queryToken?: boolean;
  }
  interface FastifyInstance {
    cloudlet: DaemonContext;
  }
  interface FastifyRequest {
    /** The configured peer whose client certificate this request came with (mutual TLS), else null. */
    peer: string | null;
  }
}

export interface DaemonContext {
  config: DaemonConfig;
  engine: DockerEngine;
  db: DaemonDb;
  metrics: DaemonMetrics;
  /** Where services get addresses that move with them (null: not configured). */
  serviceNetwork: ServiceNetwork | null;
  version: string;
  /** The raw node request handler, to serve the same app on further servers. */
  handler: http.RequestListener;
}

export interface EngineStatus {
  socket: string;
  reachable: boolean;
  version: string | null;
  apiVersion: string | null;
  experimental: boolean;
  storageDriver: string | null;
  error?: string;
}

export interface NodeInfo {
  node: string;
  version: string;
  engine: EngineStatus;
  criu: { version: string | null; error?: string };
  capabilities: { checkpoint: boolean; checkpointBlockers: string[] };
  peers: string[];
}

export type PeerStatus = PeerHealth & { lastSeen: string | null };
