// This cloudlet and its peers: GET /v1/info, /v1/peers, /v1/containers, /v1/cloudlets.
import { z } from './zod.js';

export const EngineStatusSchema = z.object({
  socket: z.string(),
  reachable: z.boolean(),
  version: z.string().nullable(),
  apiVersion: z.string().nullable(),
  experimental: z.boolean(),
  storageDriver: z.string().nullable(),
  error: z.string().optional(),
});

export const NodeInfoSchema = z
  .object({
    node: z.string(),
    version: z.string(),
    engine: EngineStatusSchema,
    criu: z.object({ version: z.string().nullable(), error: z.string().optional() }),
    capabilities: z.object({ checkpoint: z.boolean(), checkpointBlockers: z.array(z.string()) }),
    peers: z.array(z.string()),
  })
  .openapi('NodeInfo');
export type NodeInfo = z.infer<typeof NodeInfoSchema>;

export const PeerStatusSchema = z
  .object({
    name: z.string(),
    url: z.string(),
    ok: z.boolean(),
    latencyMs: z.number(),
    error: z.string().optional(),
    node: z.string().optional(),
    version: z.string().optional(),
    engineReachable: z.boolean().optional(),
    lastSeen: z.string().datetime().nullable(),
  })
  .openapi('PeerStatus');
export type PeerStatus = z.infer<typeof PeerStatusSchema>;

export const CloudletViewSchema = z
  .object({
    name: z.string(),
    self: z.boolean().describe('the cloudlet answering'),
    url: z.string().nullable(),
    ok: z.boolean(),
    latencyMs: z.number(),
    error: z.string().optional(),
    info: NodeInfoSchema.nullable(),
  })
  .openapi('Cloudlet', { description: 'a cloudlet of the deployment as the dashboard shows it: this one, or a peer with its own /v1/info' });
export type CloudletView = z.infer<typeof CloudletViewSchema>;

export const ContainerSummarySchema = z
  .object({
    id: z.string(),
    name: z.string(),
    image: z.string(),
    state: z.string(),
    status: z.string(),
    created: z.string().datetime(),
    networkMode: z.string(),
  })
  .openapi('ContainerSummary');
export type ContainerSummary = z.infer<typeof ContainerSummarySchema>;

export const HealthzSchema = z.object({ ok: z.boolean(), node: z.string() });
