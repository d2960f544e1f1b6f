// Overlays, the services provisioned from them, and image layers.
import { z } from './zod.js';
import { HANDOFF_STRATEGIES } from './migrations.js';

export const OVERLAY_CONTENT_TYPE = 'application/vnd.cloudlet.overlay';

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const port = z.number().int().min(1).max(65535);

/** A service's own health check: `{http: {port, path}}` (a 2xx answer) or `{tcp: {port}}` (a connect). */
export const HealthCheckSchema = z.union([
  z.object({ http: z.object({ port, path: z.string().regex(/^\/[\x21-\x7e]{0,255}$/, 'an absolute path without spaces') }).strict() }).strict(),
  z.object({ tcp: z.object({ port }).strict() }).strict(),
]);
export type HealthCheck = z.infer<typeof HealthCheckSchema>;

/** POST /v1/images/layers. */
export const LayersQuerySchema = z
  .object({
    imageId: z.string().regex(DIGEST_RE, 'a sha256 digest'),
    diffIds: z.array(z.string().regex(DIGEST_RE, 'a sha256 digest')).max(1024),
  })
  .strict()
  .openapi('LayersQuery');
export type LayersQuery = z.infer<typeof LayersQuerySchema>;

export const LayersAnswerSchema = z
  .object({
    imagePresent: z.boolean(),
    present: z.array(z.string()),
    base: z.object({ name: z.string().nullable(), imageId: z.string(), diffIds: z.array(z.string()) }).nullable(),
  })
  .openapi('LayersAnswer');
export type LayersAnswer = z.infer<typeof LayersAnswerSchema>;

/** POST /v1/services: first-request provisioning. */
export const ServiceRequestSchema = z
  .object({
    overlay: z.string().regex(/^[0-9a-f]{12}$/, 'an overlay id: 12 hex digits'),
    name: z
      .string()
      .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/)
      .optional(),
    env: z
      .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*=/, 'K=V'))
      .max(256)
      .default([]),
    port: port.optional().describe('container port to publish on the cloudlet (TCP)'),
    cmd: z.array(z.string()).max(256).optional(),
    serviceNetwork: z.boolean().default(true).describe("attach to the cloudlet's service network (address kept across handoffs) when it has one"),
    // Stored as labels, so they travel with the container.
    handoff: z.enum(HANDOFF_STRATEGIES).default('migrate').describe('how the service is handed off'),
    stateless: z.boolean().default(false).describe('declared to keep no state in memory (auto then recreates instead of migrating)'),
    health: HealthCheckSchema.optional().describe('{ http: { port, path } } or { tcp: { port } }: a recreated instance serves once it passes'),
    // Its handoffs restore into a namespace prepared before the freeze (src/network/netns-holder.ts).
    netnsHolder: z.boolean().default(false).describe('run in a network namespace holder of its own (needs cloudletd netnsSpare; migrate only)'),
  })
  .strict()
  .openapi('ServiceRequest');
/** The body as a client writes it (defaults may be left out). */
export type ServiceRequest = z.input<typeof ServiceRequestSchema>;

export const ServiceReplySchema = z
  .object({
    container: z.string(),
    id: z.string(),
    overlay: z.string(),
    imageId: z.string(),
    imageIdMatches: z.boolean(),
    synthesized: z.boolean(),
    endpoint: z.string().nullable(),
    address: z.string().nullable(),
    ports: z.record(z.number().int()),
    timings: z.record(z.number()),
  })
  .partial()
  .openapi('ServiceReply');

/** An overlay of the catalog (the row without its path on disk). */
export const OverlaySchema = z
  .object({
    id: z.string(),
    appImageId: z.string(),
    appName: z.string().nullable(),
    baseImageId: z.string(),
    baseName: z.string().nullable(),
    codec: z.string(),
    fileBytes: z.number().int(),
    rawBytes: z.number().int(),
    layers: z.number().int(),
    receiveMs: z.number().optional(),
    received: z.string().datetime().optional(),
    synthesized: z.string().datetime().nullable(),
    header: z.record(z.unknown()).optional().describe('GET /v1/overlays/{id} only'),
    tarEntries: z.number().int().optional().describe('upload answer only'),
  })
  .openapi('Overlay');
export type OverlaySummary = z.infer<typeof OverlaySchema>;

export const OverlayDeletedSchema = z.object({ ok: z.boolean(), id: z.string() });

export const SynthesisSchema = z
  .object({ imageId: z.string(), imageIdMatches: z.boolean(), synthesized: z.boolean(), decompressMs: z.number(), loadMs: z.number() })
  .partial()
  .passthrough()
  .openapi('Synthesis');

export const ImageLoadSchema = z
  .object({ loaded: z.unknown().describe("the engine's answer: the images it loaded"), wireBytes: z.number().int(), ms: z.number() })
  .partial()
  .openapi('ImageLoad');
export type ImageLoad = z.infer<typeof ImageLoadSchema>;
