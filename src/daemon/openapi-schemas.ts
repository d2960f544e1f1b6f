// Component schemas of the OpenAPI document (see openapi.ts): the shapes of src/migration/types.ts,
// server.ts (NodeInfo, PeerStatus), the engine's container summary and the overlay routes.
// A field added to those types and not here is simply undocumented (additionalProperties is
// left open); a field removed there should be removed here.
import { FAULT_POINTS } from '../migration/types.js';

type Schema = Record<string, unknown>;

const str: Schema = { type: 'string' };
const strOrNull: Schema = { type: 'string', nullable: true };
const int: Schema = { type: 'integer' };
const intOrNull: Schema = { type: 'integer', nullable: true };
const num: Schema = { type: 'number' };
const bool: Schema = { type: 'boolean' };
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });

const MIGRATION_STATES = ['preparing', 'precopy', 'final', 'restoring', 'committing', 'done', 'rolling-back', 'rolled-back', 'failed'];
const CODECS = ['none', 'lz4', 'zstd', 'gzip', 'auto'];
/** PacketHoldStats (network/packet-hold.ts). */
const holdStats: Schema = {
  type: 'object',
  description: "what the destination's hold of the service address kept while the service was away",
  properties: { verdict: { type: 'string', enum: ['release', 'discard', 'none'] }, held: int, heldBytes: int, holdMs: num, passed: int, dropped: int },
};

export function openApiSchemas(): Record<string, Schema> {
  return {
    Error: {
      type: 'object',
      required: ['error', 'message'],
      properties: { error: { ...str, description: 'stable code' }, message: str, hint: str, context: { type: 'object', additionalProperties: true } },
    },
    Ok: { type: 'object', required: ['ok'], properties: { ok: bool } },
    NodeInfo: {
      type: 'object',
      required: ['node', 'version', 'engine', 'criu', 'capabilities', 'peers'],
      properties: {
        node: str,
        version: str,
        engine: {
          type: 'object',
          properties: {
            socket: str,
            reachable: bool,
            version: strOrNull,
            apiVersion: strOrNull,
            experimental: bool,
            storageDriver: strOrNull,
            error: str,
          },
        },
        criu: { type: 'object', properties: { version: strOrNull, error: str } },
        capabilities: { type: 'object', properties: { checkpoint: bool, checkpointBlockers: { type: 'array', items: str } } },
        peers: { type: 'array', items: str },
      },
    },
    PeerStatus: {
      type: 'object',
      required: ['name', 'url', 'ok', 'latencyMs', 'lastSeen'],
      properties: {
        name: str,
        url: str,
        ok: bool,
        latencyMs: num,
        error: str,
        node: str,
        version: str,
        engineReachable: bool,
        lastSeen: { ...strOrNull, format: 'date-time' },
      },
    },
    Cloudlet: {
      type: 'object',
      description: 'a cloudlet of the deployment as the dashboard shows it: this one, or a peer with its own /v1/info',
      required: ['name', 'self', 'url', 'ok', 'latencyMs', 'info'],
      properties: {
        name: str,
        self: { ...bool, description: 'the cloudlet answering' },
        url: strOrNull,
        ok: bool,
        latencyMs: num,
        error: str,
        info: { allOf: [ref('NodeInfo')], nullable: true },
      },
    },
    ContainerSummary: {
      type: 'object',
      required: ['id', 'name', 'image', 'state', 'status', 'created'],
      properties: { id: str, name: str, image: str, state: str, status: str, created: { ...str, format: 'date-time' } },
    },
    StartMigration: {
      type: 'object',
      required: ['container', 'to'],
      additionalProperties: false,
      properties: {
        container: { ...str, pattern: '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$', description: 'name or id on this cloudlet' },
        to: { ...str, minLength: 1, maxLength: 64, description: 'a peer of this cloudlet' },
        rounds: { ...int, minimum: 0, maximum: 50, description: 'exactly N pre-copy rounds (0: stop-and-copy)' },
        alpha: { ...num, minimum: 0, exclusiveMinimum: true, maximum: 600, description: 'stop when a round sends in less than alpha seconds' },
        rule: { type: 'string', enum: ['model', 'alpha', 'rounds', 'phaul', 'lxd'] },
        maxDowntimeMs: { ...num, default: 1000 },
        maxRounds: { ...int, minimum: 1, maximum: 50, default: 8 },
        maxTimeMs: { ...num, default: 300000 },
        codec: { type: 'string', enum: CODECS, default: 'auto' },
        precopy: { type: 'string', enum: ['scan', 'dump'], default: 'scan' },
        inject: { type: 'string', enum: [...FAULT_POINTS], description: 'test hook; daemons with allowFaultInjection only' },
        restore: {
          type: 'string',
          enum: ['lazy', 'eager', 'auto'],
          default: 'auto',
          description: 'lazy: post-copy restore where the destination is configured for it; eager: every page restored before the service runs; auto: lazy from 128 MiB of memory',
        },
        peerTimeoutMs: { ...int, minimum: 1000, maximum: 600000, description: 'give up a silent call to the destination after this long (default 120000)' },
      },
    },
    RoundReport: {
      type: 'object',
      required: ['index', 'final', 'dumpMs', 'stallMs', 'hashMs', 'rawBytes', 'sentBytes', 'codec', 'sendMs', 'applyMs'],
      properties: {
        index: int,
        final: bool,
        dumpMs: { ...num, description: 'memory capture (runc/CRIU dump or /proc scan) wall time' },
        stallMs: { ...num, description: 'time the service was frozen by this round' },
        hashMs: num,
        pagesScanned: int,
        pagesChanged: int,
        pagesZero: int,
        rawBytes: int,
        sentBytes: { ...int, description: 'bytes on the wire' },
        fsBytes: int,
        codec: str,
        sendMs: num,
        bandwidthBps: num,
        applyMs: { ...num, description: 'destination: first byte received to its answer (final round: includes the restore)' },
        fsBatchMs: num,
        fsApplyMs: num,
        rebuildMs: num,
        destination: {
          type: 'object',
          nullable: true,
          properties: { receivedMs: num, fsDoneMs: num, baseReadyMs: { ...num, nullable: true } },
        },
        decision: strOrNull,
        predictedDowntimeMs: { ...num, nullable: true },
      },
    },
    MigrationReport: {
      type: 'object',
      required: ['id', 'container', 'from', 'to', 'state', 'rounds', 'startedAt'],
      properties: {
        id: str,
        container: str,
        from: str,
        to: str,
        state: { type: 'string', enum: MIGRATION_STATES },
        policy: str,
        codec: { type: 'string', enum: CODECS },
        rounds: { type: 'array', items: ref('RoundReport') },
        precopyRounds: int,
        stopReason: strOrNull,
        decision: strOrNull,
        totalMs: intOrNull,
        commitMs: intOrNull,
        downtimeMs: intOrNull,
        restoreMs: intOrNull,
        imageShipped: { type: 'object', nullable: true, properties: { bytes: int, layers: int, ms: num } },
        serviceAddress: { ...strOrNull, description: "the container's address on the service network (kept by the handoff)" },
        announceMs: { ...num, nullable: true, description: 'routing the service address to the destination (before the freeze)' },
        holdSetupMs: { ...num, nullable: true, description: "starting the destination's hold of the address's packets (before the freeze)" },
        hold: { ...holdStats, nullable: true },
        postCopyMs: { ...num, nullable: true, description: 'lazy restore: from the service answering at the destination to its last page copied in (not downtime)' },
        restoreMode: { type: 'string', enum: ['lazy', 'eager'], nullable: true, description: 'how the destination restored (null before the final round)' },
        bytesSent: int,
        destinationContainerId: strOrNull,
        warnings: { type: 'array', items: str },
        startedAt: { ...str, format: 'date-time' },
        finishedAt: { ...strOrNull, format: 'date-time' },
        error: { type: 'object', nullable: true, properties: { code: str, message: str } },
      },
    },
    PrepareRequest: {
      type: 'object',
      required: ['id', 'from', 'container'],
      properties: {
        id: str,
        from: str,
        container: {
          type: 'object',
          properties: { name: str, imageId: str, imageName: str, createOptions: { type: 'object', additionalProperties: true }, volumes: { type: 'array', items: str } },
        },
      },
    },
    RoundResponse: {
      type: 'object',
      properties: {
        applyMs: num,
        rebuildMs: num,
        fsMs: num,
        restoreMs: { ...num, nullable: true },
        announceMs: { ...num, nullable: true, description: 'only when the source did not move the address before its freeze' },
        reachableMs: { ...num, nullable: true, description: "final round: from its first byte to the restored service being reachable (held packets let through)" },
        hold: { ...holdStats, nullable: true },
        postCopyMs: { ...num, nullable: true, description: 'lazy restore: from the service answering to its last page copied in' },
        running: { ...bool, nullable: true },
        receivedMs: num,
        fsDoneMs: num,
        baseReadyMs: { ...num, nullable: true },
      },
    },
    Overlay: {
      type: 'object',
      required: ['id', 'appImageId', 'baseImageId', 'codec', 'fileBytes', 'rawBytes', 'layers'],
      properties: {
        id: str,
        appImageId: str,
        appName: strOrNull,
        baseImageId: str,
        baseName: strOrNull,
        codec: str,
        fileBytes: int,
        rawBytes: int,
        layers: int,
        receiveMs: num,
        received: { ...str, format: 'date-time' },
        synthesized: { ...strOrNull, format: 'date-time' },
        header: { type: 'object', additionalProperties: true, description: 'GET /v1/overlays/{id} only' },
        tarEntries: { ...int, description: 'upload answer only' },
      },
    },
    Synthesis: { type: 'object', additionalProperties: true, properties: { imageId: str, imageIdMatches: bool, synthesized: bool, decompressMs: num, loadMs: num } },
    ServiceRequest: {
      type: 'object',
      required: ['overlay'],
      properties: {
        overlay: { ...str, pattern: '^[0-9a-f]{12}$' },
        name: str,
        env: { type: 'array', items: str },
        port: { ...int, minimum: 1, maximum: 65535 },
        cmd: { type: 'array', items: str },
        serviceNetwork: bool,
        handoff: { ...str, enum: ['migrate', 'recreate', 'auto'] },
        stateless: bool,
        health: { type: 'object', description: '{ http: { port, path } } or { tcp: { port } }' },
        netnsHolder: { ...bool, description: 'run in a network namespace holder of its own (needs cloudletd netnsSpare; migrate only)' },
      },
    },
    ServiceReply: {
      type: 'object',
      properties: {
        container: str,
        id: str,
        overlay: str,
        imageId: str,
        imageIdMatches: bool,
        synthesized: bool,
        endpoint: strOrNull,
        address: strOrNull,
        ports: { type: 'object', additionalProperties: int },
        timings: { type: 'object', additionalProperties: num },
      },
    },
    LayersQuery: {
      type: 'object',
      required: ['imageId', 'diffIds'],
      properties: { imageId: { ...str, pattern: '^sha256:[0-9a-f]{64}$' }, diffIds: { type: 'array', maxItems: 1024, items: { ...str, pattern: '^sha256:[0-9a-f]{64}$' } } },
    },
    LayersAnswer: {
      type: 'object',
      properties: {
        imagePresent: bool,
        present: { type: 'array', items: str },
        base: { type: 'object', nullable: true, properties: { name: strOrNull, imageId: str, diffIds: { type: 'array', items: str } } },
      },
    },
    ImageLoad: { type: 'object', properties: { loaded: { description: "the engine's answer: the images it loaded" }, wireBytes: int, ms: num } },
  };
}
