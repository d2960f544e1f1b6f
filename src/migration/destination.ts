// The destination side of a handoff. The source drives; the destination answers its requests,
// one module per phase (see destination/incoming.ts for the states and their transitions):
//   prepare  - destination/prepare.ts: checks the twin's spec against this cloudlet's container
//              policy (container-policy.ts) and that the image is here, creates the named
//              volumes and a twin container (not started) from the source container's spec;
//   address  - destination/address.ts: holds the service address's packets, routes it here;
//   round k  - destination/round.ts: applies the filesystem batches to the twin's R/W layer
//              and volumes, and keeps a base image directory of the pages received so far;
//   final    - the same, then destination/restore.ts builds the final image directory on top
//              of the base (CRIU parent images), starts the twin from it, checks that it runs;
//   commit   - destination/commit.ts: removes its staging data;
//   abort    - destination/abort.ts: removes the twin, volumes and staging;
//   recovery - destination/recovery.ts: after a daemon restart.
// Every step is journalled, so a restarted daemon knows which migrations it held.
import { CloudletError, ConflictError, NotFoundError } from '../util/errors.js';
import { checkpointName, type DestinationDeps, type Incoming } from './destination/incoming.js';
import { checkPolicy, checkPrepare, createTwin, newIncoming, prepareProblems } from './destination/prepare.js';
import { offerCachedPages } from './destination/page-cache.js';
import { takeAddress } from './destination/address.js';
import { applyRound, type IncomingRound } from './destination/round.js';
import { commitIncoming, markCommitted } from './destination/commit.js';
import { abortIncoming } from './destination/abort.js';
import { recoverIncoming } from './destination/recovery.js';
import {
  parsePrepare,
  type AddressTaken,
  type IncomingStatus,
  type PrepareCheck,
  type PrepareRequest,
  type PrepareResponse,
  type Refusal,
  type RoundResponse,
} from './destination/wire.js';

export type { DestinationDeps } from './destination/incoming.js';
export type { IncomingRound } from './destination/round.js';
export {
  handoffIdentityFields,
  incomingContainerSchema,
  type AddressTaken,
  type IncomingStatus,
  type PrepareCheck,
  type PrepareRequest,
  type PrepareResponse,
  type Refusal,
  type RoundResponse,
} from './destination/wire.js';

export class MigrationDestination {
  private readonly incoming = new Map<string, Incoming>();

  constructor(private readonly deps: DestinationDeps) {}

  checkpointName(id: string): string {
    return checkpointName(id);
  }

  async prepare(body: PrepareRequest): Promise<PrepareResponse> {
    const req = parsePrepare(body);
    if (this.incoming.has(req.id)) throw new ConflictError(`migration ${req.id} is already prepared here`);
    await checkPolicy(this.deps, req);
    await checkPrepare(this.deps, req);
    const c = req.container;
    this.deps.db.insertMigration({ id: req.id, role: 'destination', container: c.name, fromNode: req.from, toNode: '', state: 'preparing', options: {} });
    const inc = newIncoming(this.deps, req);
    this.incoming.set(req.id, inc);
    try {
      await createTwin(this.deps, inc, req);
      return { twinId: inc.twinId, holder: inc.holderFrom, cachedPages: await offerCachedPages(this.deps, inc, req) };
    } catch (err) {
      await this.abort(req.id, String((err as Error).message));
      throw err;
    }
  }

  /** What a prepare of `body` would find here (all refusals, the image), making nothing: a dry run. */
  async check(body: PrepareRequest): Promise<PrepareCheck> {
    const req = parsePrepare(body);
    const refusals: Refusal[] = [];
    await checkPolicy(this.deps, req).catch((err: unknown) => refusals.push(refusalOf(err)));
    const { engineVersion, problems } = await prepareProblems(this.deps, req);
    refusals.push(...problems.filter((p) => p.code !== 'image_missing').map(refusalOf));
    return { engine: engineVersion, imageHere: !problems.some((p) => p.code === 'image_missing'), refusals };
  }

  /** Before the source freezes: the address's packets are held here and it is routed here (address.ts). */
  async takeAddress(id: string): Promise<AddressTaken> {
    return takeAddress(this.deps, this.get(id));
  }

  /** One round of the source's (round.ts); the final one restores the twin. */
  async round(id: string, round: IncomingRound): Promise<RoundResponse> {
    return applyRound(this.deps, this.get(id), round);
  }

  /** Where a migration stands here, from the journal and the engine (also after a restart). */
  async status(id: string): Promise<IncomingStatus> {
    const row = this.deps.db.migration(id, 'destination');
    if (!row) throw new NotFoundError('incoming migration', id);
    const twinId = (row.report as { twinId?: string } | null)?.twinId ?? null;
    const twinRunning = twinId !== null && (await this.deps.engine.containerExists(twinId)) && (await this.deps.engine.inspectContainer(twinId)).running;
    return { id, state: row.state, twinId, twinRunning };
  }

  /** The source removed its copy: the twin is now the service. Drop staging data. */
  async commit(id: string): Promise<void> {
    const inc = this.get(id);
    await commitIncoming(this.deps, inc);
    this.incoming.delete(id);
    markCommitted(this.deps, inc);
  }

  /** Removes everything this migration made here: twin, created volumes, staging data. */
  async abort(id: string, reason: string): Promise<{ removed: string[] }> {
    const inc = this.incoming.get(id);
    if (!inc) return { removed: [] };
    const out = await abortIncoming(this.deps, inc, () => this.incoming.delete(id));
    inc.state = 'aborted';
    if (this.deps.db.migration(id, 'destination')) {
      this.deps.db.updateMigration(id, 'destination', { state: 'aborted', error: reason });
    }
    return out;
  }

  /** Migrations held when the daemon stopped: their twins were never started; remove them. */
  async recoverAfterRestart(): Promise<string[]> {
    return recoverIncoming(this.deps);
  }

  private get(id: string): Incoming {
    const inc = this.incoming.get(id);
    if (!inc) throw new NotFoundError('incoming migration', id);
    return inc;
  }
}

/** A refusal as a dry run reports it; an error that is not a CloudletError is a bug and is thrown. */
export function refusalOf(err: unknown): Refusal {
  if (!(err instanceof CloudletError)) throw err;
  return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
}
