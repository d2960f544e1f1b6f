// What the two sides of a handoff by migration send each other (the destination's requests
// and answers), and how the destination checks a prepare request. Byte-for-byte the wire
// format of the peers' HTTP API (routes-migrations.ts): changing a field changes the protocol.
import type { SourceEngine } from '../../engine/engine-adapter.js';
import { z } from 'zod';
import type { PacketHoldStats } from '../../network/packet-hold.js';
import type { HolderSpec } from '../../network/netns-holder.js';
import { ContainerSpecSchema, type ContainerSpec } from '../../api/schemas/container-spec.js';
import type { PrepareCheckSchema, RefusalSchema } from '../../api/schemas/migrations.js';
import { UsageError } from '../../util/errors.js';
import { NODE_NAME } from '../../util/names.js';

export interface PrepareRequest {
  id: string;
  from: string;
  container: {
    name: string;
    imageId: string;
    imageName: string;
    /** What the twin is created with: typed, allow-listed, checked against the destination's policy. */
    spec: ContainerSpec;
    volumes: string[];
    /**
     * The container's address on the service network: the twin gets it too, its established
     * TCP connections are restored, and the destination announces it when it restores.
     */
    serviceAddress?: string | null;
    /**
     * The network namespace holder the container joins: started here at prepare (same name,
     * image, network and address), so that the restore finds its namespace ready.
     */
    netnsHolder?: HolderSpec | null;
    /** The source's engine: a destination whose image store differs refuses (engine-adapter.ts). */
    sourceEngine?: SourceEngine;
  };
  /** The source leaves out of its pre-copy rounds the pages this cloudlet's page cache offers. */
  pageCache?: boolean;
  /** The final dump closes the container's connections (tcp-close): the restore needs the same option. */
  tcpClose?: boolean;
}

/** POST /v1/incoming/check: what a prepare would find here; nothing is made (a dry run asks it). */
export type PrepareCheck = z.infer<typeof PrepareCheckSchema>;
/** One reason a handoff would be refused before the freeze. */
export type Refusal = z.infer<typeof RefusalSchema>;

export interface PrepareResponse {
  twinId: string;
  /** Where the twin's network namespace holder came from: the spare, a copy started now, or none. */
  holder: 'spare' | 'started' | null;
  /**
   * Asked with `pageCache`: the hashes of the pages this cloudlet holds for the container's
   * image (sorted xxh64, u64 little-endian, base64), null when it keeps no page cache.
   */
  cachedPages?: { count: number; hashes: string } | null;
}

/** POST /v1/incoming/:id/address: the service address is held and routed here. */
export interface AddressTaken {
  /** Starting the hold (queue bound, rule in place) and running the announce command. */
  holdSetupMs: number;
  announceMs: number;
}

/** GET /v1/incoming/:id: what a restarted source asks before it commits or rolls back. */
export interface IncomingStatus {
  id: string;
  /** The destination's journal state (prepared, precopy, final, restoring, done, aborted). */
  state: string;
  twinId: string | null;
  twinRunning: boolean;
}

export interface RoundResponse {
  applyMs: number;
  rebuildMs: number;
  fsMs: number;
  /** Final round only: engine start from the checkpoint, and the container's state after it. */
  restoreMs: number | null;
  /**
   * Routing the service address here after the restore: only when the source did not move it
   * before its freeze (POST /v1/incoming/:id/address); null otherwise and without an address.
   */
  announceMs: number | null;
  /**
   * Final round: ms from the round's first byte to the moment the restored service was
   * reachable (the packets held for its address let through, or the address routed here).
   * The source ends the downtime there: what follows (closing the hold, a lazy restore's
   * post-copy) is not downtime.
   */
  reachableMs: number | null;
  /** What the hold of the service address kept while the service was away (null: no hold). */
  hold: PacketHoldStats | null;
  /**
   * Lazy restore only: from the service's address being routed here (the service runs and
   * answers) to the last page copied in by CRIU's lazy-pages daemon. The round is answered
   * after it; it is not downtime. Null for an eager restore.
   */
  postCopyMs: number | null;
  running: boolean | null;
  /** Milestones from the round's first byte: everything received, filesystem applied, base ready. */
  receivedMs: number;
  fsDoneMs: number;
  baseReadyMs: number | null;
  /** Final round: milestones from its first byte (images built, engine started, inspected, reachable). Absent from older peers. */
  spans?: Record<string, number>;
}

const ID_RE = /^[a-z0-9][a-z0-9-]{7,63}$/;

// What a peer may ask for: names as Docker and our own id scheme allow them, a digest for
// the image. The container's configuration is a ContainerSpec (src/api/schemas/container-spec.ts):
// typed and allow-listed, unknown fields refused, what only a policy allows checked at prepare
// (../container-policy.ts); Docker's options are rebuilt from it, never taken from the peer.
// Shared by both handoff strategies' prepare requests (recreate-destination.ts too).
const DOCKER_NAME = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
export const handoffIdentityFields = {
  id: z.string().regex(ID_RE, 'a migration id: lower-case letters, digits and dashes, 8..64'),
  from: z.string().regex(NODE_NAME, 'a node name'),
};
export const incomingContainerSchema = z.object({
  name: z.string().regex(DOCKER_NAME, 'a container name'),
  imageId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256 digest'),
  imageName: z.string().min(1).max(512),
  spec: ContainerSpecSchema,
  volumes: z.array(z.string().regex(DOCKER_NAME, 'a volume name')).max(256),
});
const holderSpecSchema = z
  .object({
    name: z.string().regex(DOCKER_NAME, 'a container name'),
    imageId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256 digest'),
    imageName: z.string().min(1).max(512),
    spec: ContainerSpecSchema,
  })
  .strict();
const prepareSchema = z
  .object({
    ...handoffIdentityFields,
    container: incomingContainerSchema
      .extend({
        serviceAddress: z.string().ip({ version: 'v4' }).nullable().optional(),
        netnsHolder: holderSpecSchema.nullable().optional(),
        sourceEngine: z
          .object({ version: z.string().max(100), imageStore: z.enum(['overlay2', 'containerd']) })
          .strict()
          .optional(),
      })
      .strict(),
    pageCache: z.boolean().optional(),
    tcpClose: z.boolean().optional(),
  })
  .strict();

export function parsePrepare(body: unknown): PrepareRequest {
  const r = prepareSchema.safeParse(body);
  if (!r.success) {
    throw new UsageError(`invalid prepare request: ${r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`);
  }
  return r.data as unknown as PrepareRequest;
}
