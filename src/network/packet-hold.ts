// Holding a service address's packets while its sockets are not there, and letting them
// through the moment they are.
//
// A client's TCP segment that arrives while the service is frozen or being restored used to
// be dropped; the client sends it again only when its retransmission timer fires (0.2, 0.6,
// 1.4 s... after the first send, doubling), so after the restore the connection waited for
// that timer: on the lab, client gap minus downtime was ~0 in some handoffs and ~450 ms in
// others. Held in a netfilter queue instead (iptables NFQUEUE, kept by native/cl-hold.c) and
// let through right after the restore, the segment reaches the restored socket at once, and
// its answer leaves one round trip later, whatever the client's timers were doing.
//
// Safety: the rule has no --queue-bypass, so with no cl-hold bound to the queue (it died,
// or was never started) the kernel drops the packets. A packet is never let through to a
// network namespace that has the address but not yet the sockets (the kernel would answer it
// with a reset).
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError, UsageError, errorMessage } from '../util/errors.js';
import { run } from '../util/exec.js';
import { startTracked, type Program } from '../util/spawner.js';

/** Built by scripts/setup.sh from native/cl-hold.c. */
export const HOLD_BIN = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'native', 'cl-hold');

/** Marks the rules of a hold, so that one left by a daemon that died is found and removed. */
export const HOLD_COMMENT = 'cloudlet-hold';
/** The kernel's list of bound netfilter queues (this network namespace's). */
const QUEUES_FILE = '/proc/net/netfilter/nfnetlink_queue';
/** Queue numbers used for holds; one per hold in flight on this network namespace. */
const QUEUE_BASE = 4100;
const QUEUE_COUNT = 800;
/** Packets kept at most per hold (the kernel drops beyond it; the client then retransmits). */
const MAX_PACKETS = 8192;
const BIND_TIMEOUT_MS = 3000;

export interface PacketHoldStats {
  /** What the held packets got: let through (release), dropped (discard), or none. */
  verdict: 'release' | 'discard' | 'none';
  /** Packets that arrived while holding, their bytes, and first arrival to verdict. */
  held: number;
  heldBytes: number;
  holdMs: number;
  /** After the verdict, until the rule was removed: packets let through or dropped at once. */
  passed: number;
  dropped: number;
}

export class PacketHoldError extends CloudletError {
  constructor(message: string, context: Record<string, unknown>, cause?: unknown) {
    super('packet_hold_failed', message, {
      kind: 'internal',
      context,
      hint: 'needs iptables with the NFQUEUE target and native/cl-hold (scripts/setup.sh builds it)',
      ...(cause !== undefined ? { cause } : {}),
    });
  }
}

/**
 * The rule that queues the address: in the raw table's PREROUTING chain, before connection
 * tracking. Queued later (FORWARD, where Docker's own rules are), each held segment of a
 * flow new to this host carried an unconfirmed conntrack entry of its own; on release the
 * first was confirmed and the others, same tuple, failed their insert and were dropped
 * (conntrack's insert_failed/drop counters rose, the client waited for its next
 * retransmission). Queued before conntrack, the held packets meet it one by one on release.
 */
function holdRule(h: { address: string; queue: number; synOnly?: boolean }): string[] {
  const { address, queue } = h;
  const syn = h.synOnly ? ['-p', 'tcp', '--syn'] : [];
  return [
    '-t',
    'raw',
    '-I',
    'PREROUTING',
    '-d',
    `${address}/32`,
    ...syn,
    '-m',
    'comment',
    '--comment',
    HOLD_COMMENT,
    '-j',
    'NFQUEUE',
    '--queue-num',
    String(queue),
  ];
}

function deleteRule(rule: string[]): string[] {
  return rule.map((a) => (a === '-I' ? '-D' : a));
}

/** Queue numbers bound by some process in this network namespace. */
async function boundQueues(): Promise<Set<number>> {
  const text = await readFile(QUEUES_FILE, 'utf8').catch(() => '');
  return new Set(
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => Number(l.trim().split(/\s+/)[0])),
  );
}

let nextQueue = 0;

async function freeQueue(): Promise<number> {
  const bound = await boundQueues();
  for (let i = 0; i < QUEUE_COUNT; i++) {
    const q = QUEUE_BASE + ((nextQueue + i) % QUEUE_COUNT);
    if (!bound.has(q)) {
      nextQueue = (q - QUEUE_BASE + 1) % QUEUE_COUNT;
      return q;
    }
  }
  throw new PacketHoldError(`no free netfilter queue among ${QUEUE_BASE}..${QUEUE_BASE + QUEUE_COUNT - 1}`, {});
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Packets routed here for one address, kept until `release` (they go on) or `discard` (they
 * are dropped). `close` removes the rule and ends the keeper; until then packets arriving
 * after the verdict get the same verdict at once.
 */
export class PacketHold {
  private verdict: PacketHoldStats['verdict'] = 'none';
  private closed: Promise<PacketHoldStats | null> | null = null;

  private constructor(
    readonly address: string,
    readonly queue: number,
    private readonly keeper: Program,
    private readonly rule: string[],
  ) {}

  /**
   * Starts holding: the keeper bound to a queue of its own, then the rule in place.
   * `synOnly`: only connection requests (TCP SYN) are held (the source's gate, syn-gate.ts).
   */
  static async start(address: string, o: { synOnly?: boolean } = {}): Promise<PacketHold> {
    if (!isIPv4(address)) throw new UsageError(`not an IPv4 address: '${address}'`);
    const queue = await freeQueue();
    const keeper = startTracked(HOLD_BIN, [String(queue), String(MAX_PACKETS)]);
    const rule = holdRule({ address, queue, synOnly: o.synOnly });
    const hold = new PacketHold(address, queue, keeper, rule);
    try {
      await keeper.pid;
      const deadline = performance.now() + BIND_TIMEOUT_MS;
      let exited = false;
      void keeper.exited.then(
        () => (exited = true),
        () => (exited = true),
      );
      while (!(await boundQueues()).has(queue)) {
        if (exited) {
          const x = await keeper.exited;
          throw new PacketHoldError(`cl-hold could not bind netfilter queue ${queue}: ${x.stderr.trim() || `exit ${x.code}`}`, { queue, address });
        }
        if (performance.now() > deadline)
          throw new PacketHoldError(`cl-hold did not bind netfilter queue ${queue} within ${BIND_TIMEOUT_MS} ms`, { queue, address });
        await sleep(2);
      }
      await run('iptables', ['-w', ...rule]);
      return hold;
    } catch (err) {
      keeper.kill('SIGTERM');
      await keeper.exited.catch(() => undefined);
      if (err instanceof PacketHoldError) throw err;
      throw new PacketHoldError(`holding packets for ${address} failed: ${errorMessage(err)}`, { queue, address }, err);
    }
  }

  /**
   * The held packets go on, and so does every later one (the sockets are back). A keeper
   * that has died took its packets with it (the kernel drops them; their senders
   * retransmit): close() then says so.
   */
  release(): void {
    this.signal('SIGUSR1', 'release');
  }

  /** The held packets are dropped, and so is every later one; their senders retransmit. */
  discard(): void {
    this.signal('SIGUSR2', 'discard');
  }

  private signal(sig: NodeJS.Signals, verdict: PacketHoldStats['verdict']): void {
    if (this.verdict !== 'none') return;
    this.verdict = verdict;
    this.keeper.kill(sig);
  }

  /**
   * Removes the rule, then ends the keeper (packets still held without a verdict are dropped)
   * and returns what it saw: null when it died before (its packets were dropped by the
   * kernel). Throws when the rule could not be removed: the address's packets would then be
   * dropped for good. Idempotent.
   */
  close(): Promise<PacketHoldStats | null> {
    this.closed ??= (async () => {
      let ruleError: unknown = null;
      await run('iptables', ['-w', ...deleteRule(this.rule)]).catch((e: unknown) => (ruleError = e));
      this.keeper.kill('SIGTERM');
      const x = await this.keeper.exited.catch(() => null);
      if (ruleError)
        throw new PacketHoldError(
          `removing the hold on ${this.address} (iptables raw PREROUTING) failed: ${errorMessage(ruleError)}`,
          { queue: this.queue },
          ruleError,
        );
      try {
        return JSON.parse(x?.stdout.toString('utf8') ?? '') as PacketHoldStats;
      } catch {
        return null;
      }
    })();
    return this.closed;
  }
}

/** A hold rule found in the raw table: its address, queue, and whether it holds SYNs only. */
export interface LeftOverHold {
  address: string;
  queue: number;
  synOnly: boolean;
}

/** Hold rules (any queue) in `iptables -S` output. */
export function parseHoldRules(rules: string): LeftOverHold[] {
  const out: LeftOverHold[] = [];
  for (const line of rules.split('\n')) {
    const m = / -d (\d+\.\d+\.\d+\.\d+)\/32 .*--comment "?cloudlet-hold"? -j NFQUEUE --queue-num (\d+)/.exec(line);
    if (m) out.push({ address: m[1]!, queue: Number(m[2]), synOnly: / --tcp-flags \S+ SYN /.test(line) });
  }
  return out;
}

/** Hold rules (any queue) of this network namespace. */
export async function leftOverHolds(): Promise<LeftOverHold[]> {
  const { stdout } = await run('iptables', ['-w', '-t', 'raw', '-S', 'PREROUTING']);
  return parseHoldRules(stdout);
}

/** Removes a hold rule found by leftOverHolds (its keeper died with the daemon: the queue drops). */
export async function removeLeftOverHold(h: LeftOverHold): Promise<void> {
  await run('iptables', ['-w', ...deleteRule(holdRule(h))]);
}
