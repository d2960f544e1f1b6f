// Live migrations: what an operator sends (StartMigration), the report a migration keeps
// (MigrationReport, mirrored from src/migration/types.ts, where the code that fills it lives),
// and the peer calls of the incoming side.
import { z } from './zod.js';
import { ContainerSpecSchema } from './container-spec.js';

/**
 * Test hooks (daemons with allowFaultInjection only), all on the final round; what each one
 * does is told at src/migration/types.ts.
 */
export const FAULT_POINTS = ['before-restore', 'stall-before-restore', 'stall-after-final-dump', 'stall-before-commit', 'corrupt-frame'] as const;
/** How a service moves: live migration, re-creation at the destination, or chosen per service. */
export const HANDOFF_STRATEGIES = ['migrate', 'recreate', 'auto'] as const;
export const CODEC_CHOICES = ['none', 'lz4', 'zstd', 'gzip', 'auto'] as const;
export const MIGRATION_STATES = ['preparing', 'precopy', 'final', 'restoring', 'committing', 'done', 'rolling-back', 'rolled-back', 'failed'] as const;

export const MigrationStateSchema = z.enum(MIGRATION_STATES);
export type MigrationState = z.infer<typeof MigrationStateSchema>;

/** POST /v1/migrations: validated by the route (unknown fields refused). */
export const StartMigrationSchema = z
  .object({
    // A Docker name or id: dockerode puts it into API paths unescaped ('/', '?' must not pass).
    container: z
      .string()
      .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/, 'a container name or id')
      .describe('name or id on this cloudlet'),
    to: z.string().min(1).max(64).describe('a peer of this cloudlet'),
    rounds: z.number().int().min(0).max(50).optional().describe('exactly N pre-copy rounds (0: stop-and-copy)'),
    alpha: z.number().positive().max(600).optional().describe('stop when a round sends in less than alpha seconds'),
    /** Named baseline rules, for experiments. */
    rule: z.enum(['model', 'alpha', 'rounds', 'phaul', 'lxd']).optional(),
    maxDowntimeMs: z
      .number()
      .positive()
      .optional()
      .describe(
        'model rule: the downtime bound; stated, a handoff predicted to exceed it is refused before the freeze unless force. Absent: a target of 1000 ms, a miss is only told',
      ),
    maxRounds: z.number().int().min(1).max(50).default(8),
    maxTimeMs: z.number().positive().default(300_000),
    maxTotalMs: z
      .number()
      .positive()
      .optional()
      .describe(
        'model rule: bound on the whole handoff (request to service running at the destination); when --max-downtime cannot be met within it, the handoff is refused before the freeze unless force',
      ),
    force: z.boolean().optional().describe('model rule: hand off even when neither maxDowntimeMs nor maxTotalMs can be met'),
    codec: z.enum(CODEC_CHOICES).default('auto'),
    precopy: z.enum(['scan', 'dump']).default('scan'),
    inject: z.enum(FAULT_POINTS).optional().describe('test hook; daemons with allowFaultInjection only'),
    restore: z
      .enum(['lazy', 'eager', 'auto'])
      .optional()
      .describe(
        'lazy: post-copy restore where the destination is configured for it; eager: every page restored before the service runs; auto (the default): lazy from 128 MiB of memory',
      ),
    strategy: z.enum(HANDOFF_STRATEGIES).optional().describe("handoff strategy; default: the container's cloudlet.handoff label, else migrate"),
    peerTimeoutMs: z.number().int().min(1000).max(600_000).optional().describe('give up a silent call to the destination after this long (default 120000)'),
    pageCache: z.boolean().default(true).describe("leave out of pre-copy the pages the destination's page cache already holds"),
    tcpClose: z
      .boolean()
      .optional()
      .describe(
        'no service address: reset its established TCP connections just before the freeze and restore their sockets closed, instead of refusing the handoff; their clients must reconnect',
      ),
  })
  .strict()
  .openapi('StartMigration');
/** The body as a client writes it (defaults may be left out). */
export type StartMigration = z.input<typeof StartMigrationSchema>;
/** The body as the route reads it (defaults filled in). */
export type StartMigrationOptions = z.output<typeof StartMigrationSchema>;

/** What the destination's hold of the service address kept (src/network/packet-hold.ts). */
export const PacketHoldStatsSchema = z
  .object({
    verdict: z.enum(['release', 'discard', 'none']),
    held: z.number().int(),
    heldBytes: z.number().int(),
    holdMs: z.number(),
    passed: z.number().int(),
    dropped: z.number().int(),
  })
  .describe("what the destination's hold of the service address kept while the service was away");

/** The source's gate on new connections before the address moved (src/network/syn-gate.ts). */
export const SynGateReportSchema = z
  .object({
    settleMs: z.number().int(),
    unsettled: z.number().int(),
    gateMs: z.number().int().nullable(),
    forwarded: z.boolean().nullable(),
    held: z.number().int().nullable(),
  })
  .describe(
    'the source held new SYNs for the address from before it moved: handshakes under way given time to finish (settleMs), left unfinished (unsettled), SYNs held for gateMs, then sent on to the destination (forwarded) or dropped; held: how many',
  );

export const RoundReportSchema = z
  .object({
    index: z.number().int(),
    final: z.boolean(),
    dumpMs: z.number().describe('memory capture (runc/CRIU dump or /proc scan) wall time'),
    stallMs: z.number().describe('time the service was frozen by this round'),
    hashMs: z.number(),
    pagesScanned: z.number().int(),
    pagesChanged: z.number().int(),
    pagesZero: z.number().int(),
    rawBytes: z.number().int(),
    sentBytes: z.number().int().describe('bytes on the wire'),
    fsBytes: z.number().int(),
    codec: z.string(),
    sendMs: z.number(),
    bandwidthBps: z.number(),
    applyMs: z.number().describe('destination: first byte received to its answer (final round: includes the restore)'),
    fsBatchMs: z.number(),
    fsApplyMs: z.number(),
    rebuildMs: z.number(),
    destination: z.object({ receivedMs: z.number(), fsDoneMs: z.number(), baseReadyMs: z.number().nullable() }).nullable(),
    decision: z.string().nullable(),
    predictedDowntimeMs: z.number().nullable(),
    predictedTotalMs: z.number().nullable().optional().describe('model rule: the predicted total had pre-copy stopped after this round'),
    pagesFromCache: z.number().int().optional().describe("changed pages left out because the destination's page cache holds them"),
    spans: z.record(z.number()).optional().describe('final round: milestones on the downtime path (ms after the freeze; destination.* after its first byte)'),
  })
  .openapi('RoundReport');
export type RoundReportBody = z.infer<typeof RoundReportSchema>;

/** The model rule's bounds and its last prediction before the freeze (src/migration/types.ts ObjectiveReport). */
export const ObjectiveReportSchema = z
  .object({
    maxDowntimeMs: z.number(),
    maxTotalMs: z.number().nullable(),
    force: z.boolean(),
    predictedDowntimeMs: z.number().nullable(),
    predictedTotalMs: z.number().nullable(),
    unmet: z.enum(['refuse', 'forced']).nullable().describe('neither bound could be met: refused before the freeze, or gone on with force'),
  })
  .describe("the model rule's bounds and its last prediction before the freeze");

/** The phases of a handoff by re-creation (src/migration/types.ts RecreatePhases). */
export const RecreatePhasesSchema = z.object({
  volumes: z.array(z.string()),
  volumeSyncMs: z.number(),
  volumeBytes: z.number().int(),
  createMs: z.number(),
  startMs: z.number(),
  healthyMs: z.number(),
  healthChecks: z.number().int(),
  health: z.string(),
  drainMs: z.number().nullable(),
  drainedConnections: z.number().int().nullable(),
  removeOldMs: z.number().nullable(),
});

export const MigrationReportSchema = z
  .object({
    id: z.string(),
    container: z.string(),
    from: z.string(),
    to: z.string(),
    state: MigrationStateSchema,
    policy: z.string(),
    codec: z.enum(CODEC_CHOICES),
    rounds: z.array(RoundReportSchema),
    precopyRounds: z.number().int(),
    stopReason: z.string().nullable(),
    decision: z.string().nullable(),
    objective: ObjectiveReportSchema.nullable().optional(),
    totalMs: z.number().int().nullable(),
    commitMs: z.number().int().nullable(),
    downtimeMs: z.number().int().nullable(),
    restoreMs: z.number().int().nullable(),
    serviceAddress: z.string().nullable().describe("the container's address on the service network (kept by the handoff)"),
    netnsHolder: z.string().nullable().optional(),
    netnsHolderFrom: z.enum(['spare', 'started']).nullable().optional(),
    announceMs: z.number().nullable().describe('routing the service address to the destination (before the freeze)'),
    holdSetupMs: z.number().nullable().optional().describe("starting the destination's hold of the address's packets (before the freeze)"),
    hold: PacketHoldStatsSchema.nullable().optional(),
    synGate: SynGateReportSchema.nullable().optional(),
    postCopyMs: z.number().nullable().describe('lazy restore: from the service answering at the destination to its last page copied in (not downtime)'),
    restoreMode: z.enum(['lazy', 'eager']).nullable().optional().describe('how the destination restored (null before the final round)'),
    imageShipped: z.object({ bytes: z.number().int(), layers: z.number().int(), ms: z.number() }).nullable(),
    bytesSent: z.number().int(),
    destinationContainerId: z.string().nullable(),
    warnings: z.array(z.string()),
    startedAt: z.string().datetime(),
    finishedAt: z.string().datetime().nullable(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    strategy: z.enum(['migrate', 'recreate']).optional(),
    strategyReason: z.string().optional(),
    recreate: RecreatePhasesSchema.nullable().optional(),
    pageCache: z
      .object({
        offeredPages: z.number().int().nullable(),
        pagesFromCache: z.number().int(),
        keptPages: z.number().int().nullable(),
        keepMs: z.number().nullable(),
      })
      .nullable()
      .optional()
      .describe('what the page caches did: pages the destination offered, pages left out of the rounds, pages of the final dump kept here'),
    tcpClose: z
      .object({ atPrepare: z.number().int(), reset: z.number().int(), ms: z.number() })
      .nullable()
      .optional()
      .describe('asked with tcpClose: established connections at prepare, and those reset just before the freeze (their sockets restored closed)'),
  })
  .openapi('MigrationReport');
export type MigrationReportBody = z.infer<typeof MigrationReportSchema>;

/**
 * POST /v1/incoming, as documented. The destination validates it with its own schema
 * (src/migration/destination/wire.ts), which is stricter on names and digests and uses the
 * same ContainerSpec; what the spec asks is checked against the destination's container
 * policy (403 naming the field and the policy key).
 */
export const PrepareRequestSchema = z
  .object({
    id: z.string(),
    from: z.string(),
    container: z
      .object({
        name: z.string(),
        imageId: z.string(),
        imageName: z.string(),
        spec: ContainerSpecSchema,
        volumes: z.array(z.string()),
        serviceAddress: z.string().nullable().optional(),
        netnsHolder: z.object({ name: z.string(), imageId: z.string(), imageName: z.string(), spec: ContainerSpecSchema }).strict().nullable().optional(),
        sourceEngine: z
          .object({ version: z.string(), imageStore: z.enum(['overlay2', 'containerd']) })
          .strict()
          .optional()
          .describe("the source's engine: a destination with another image store refuses the prepare"),
      })
      .strict(),
    pageCache: z.boolean().optional().describe("offer the hashes of the pages this cloudlet's page cache holds for the image"),
    tcpClose: z.boolean().optional().describe("the final dump closes the container's connections: restore with CRIU's tcp-close"),
  })
  .strict()
  .openapi('PrepareRequest');

export const PrepareAnswerSchema = z
  .object({
    twinId: z.string(),
    cachedPages: z
      .object({ count: z.number().int(), hashes: z.string().describe('sorted xxh64 of the pages, u64 little-endian, base64') })
      .nullable()
      .describe("asked with pageCache: the pages this cloudlet's page cache holds for the image"),
  })
  .partial();

/** One reason a handoff would be refused before the freeze (a dry run lists them all). */
export const RefusalSchema = z.object({ code: z.string(), message: z.string(), hint: z.string().optional() }).openapi('Refusal');

/** POST /v1/incoming/check: what a prepare would find at the destination; nothing is made. */
export const PrepareCheckSchema = z
  .object({
    engine: z.string().describe("the destination engine's version"),
    imageHere: z.boolean().describe('if not, a handoff ships the missing layers first'),
    refusals: z.array(RefusalSchema),
  })
  .openapi('PrepareCheck');

/** POST /v1/migrations/plan: a dry run of a handoff (src/migration/source/plan.ts). */
export const MigrationPlanSchema = z
  .object({
    container: z.string(),
    from: z.string(),
    to: z.string(),
    strategy: z.enum(['migrate', 'recreate']),
    strategyReason: z.string(),
    network: z.object({
      mode: z.string(),
      netnsHolder: z.string().nullable(),
      serviceAddress: z.string().nullable().describe('kept across the handoff; null: the twin gets another address'),
      establishedTcp: z.number().int(),
      connectionsKept: z.boolean(),
      connectionsClosed: z.boolean().optional().describe('tcpClose asked and no service address: the connections are reset just before the freeze'),
    }),
    memoryBytes: z.number().int().nullable(),
    restore: z.enum(['lazy', 'eager']),
    policy: z.string(),
    decision: z.string().describe("the decision model's first call, before a round has measured the link"),
    volumes: z.array(z.string()),
    image: z.object({ name: z.string(), id: z.string(), atDestination: z.boolean().nullable() }),
    destinationEngine: z.string().nullable(),
    refusals: z.array(RefusalSchema).describe('every reason the handoff would be refused before the freeze'),
    warnings: z.array(z.string()),
    ok: z.boolean().describe('no refusal: the handoff would start'),
  })
  .openapi('MigrationPlan');

/** PUT /v1/incoming/:id/rounds/:k: the destination's answer. */
export const RoundResponseSchema = z
  .object({
    applyMs: z.number(),
    rebuildMs: z.number(),
    fsMs: z.number(),
    restoreMs: z.number().nullable(),
    announceMs: z.number().nullable().describe('only when the source did not move the address before its freeze'),
    reachableMs: z.number().nullable().describe('final round: from its first byte to the restored service being reachable (held packets let through)'),
    hold: PacketHoldStatsSchema.nullable(),
    postCopyMs: z.number().nullable().describe('lazy restore: from the service answering to its last page copied in'),
    running: z.boolean().nullable(),
    receivedMs: z.number(),
    fsDoneMs: z.number(),
    baseReadyMs: z.number().nullable(),
    spans: z.record(z.number()).describe('final round: milestones after its first byte (images built, engine started, reachable)'),
  })
  .partial()
  .openapi('RoundResponse');

export const AddressTakenSchema = z.object({ holdSetupMs: z.number(), announceMs: z.number() });

export const IncomingStatusSchema = z.object({ id: z.string(), state: z.string(), twinId: z.string().nullable(), twinRunning: z.boolean() });
