// Handoff by re-creation (issue 9): for a service that keeps no state in memory, a fresh
// instance is started at the destination instead of moving the running one. Make-before-break:
//
//   source cloudletd (A)                                  destination cloudletd (B)
//   image layers B lacks ──> (image-ship.ts, as for a migration)
//   POST /v1/recreate ────────────────────────────────────> image here? name free? create the
//                                                           named volumes (empty)
//   named volumes: one rsync batch each (fssync)
//     ──PUT /v1/recreate/ID/volumes (framed stream) ─────> apply the batches
//   POST /v1/recreate/ID/start ───────────────────────────> create the instance with the same name,
//                                                           config, labels and pinned service
//                                                           address; start; poll its own health
//                                                           check until it passes
//   open the drain link's end here (recreate-drain.ts)
//   POST /v1/recreate/ID/switch ──────────────────────────> drain: packets of connections opened at A
//                                                           go back to A; announce the address here
//                                                           (route switch)
//   DRAIN_MS: the old instance finishes the connections it had
//   stop + remove the old instance; POST /v1/recreate/ID/drained; drain link removed here
//   any failure before the switch: DELETE /v1/recreate/ID (new instance and volumes removed),
//   the old instance never stopped serving.
//
// The two sides: recreate-source.ts and recreate-destination.ts (its health check:
// recreate-health.ts; the drain: recreate-drain.ts). This module holds what a service
// declares about its handoff (the cloudlet.* labels, set at provisioning so that they travel
// with the container), the choice of strategy, and what the two sides send each other.
import { z } from 'zod';
import { UsageError } from '../util/errors.js';
import type { ContainerSpec } from '../engine/container-spec.js';
import { HANDOFF_STRATEGIES, type HandoffStrategy } from './types.js';

// ---------------------------------------------------------------- what a service declares

export const HANDOFF_LABELS = {
  handoff: 'cloudlet.handoff',
  stateless: 'cloudlet.stateless',
  health: 'cloudlet.health',
} as const;

export type HealthCheck = { http: { port: number; path: string } } | { tcp: { port: number } };

const port = z.number().int().min(1).max(65535);
export const healthSchema: z.ZodType<HealthCheck> = z.union([
  z.object({ http: z.object({ port, path: z.string().regex(/^\/[\x21-\x7e]{0,255}$/, 'an absolute path without spaces') }).strict() }).strict(),
  z.object({ tcp: z.object({ port }).strict() }).strict(),
]);

/** The label (and CLI) form: `http:8080/healthz` or `tcp:7000`. */
export function formatHealth(h: HealthCheck): string {
  return 'http' in h ? `http:${h.http.port}${h.http.path}` : `tcp:${h.tcp.port}`;
}

export function parseHealth(text: string): HealthCheck {
  const m = /^(http):(\d{1,5})(\/[\x21-\x7e]{0,255})?$|^(tcp):(\d{1,5})$/.exec(text.trim());
  const h: unknown = !m ? null : m[1] ? { http: { port: Number(m[2]), path: m[3] ?? '/' } } : { tcp: { port: Number(m[5]) } };
  const r = healthSchema.safeParse(h);
  if (!r.success) throw new UsageError(`invalid health check '${text}'`, { hint: 'use http:PORT/PATH (an HTTP 2xx answer) or tcp:PORT (a TCP connect)' });
  return r.data;
}

/** The labels a service carries for its handoff (stored at provisioning). */
export function handoffLabels(o: { handoff: HandoffStrategy; stateless: boolean; health?: HealthCheck | undefined }): Record<string, string> {
  // recreate needs to know when the new instance serves: the service's own check says so.
  if (o.handoff === 'recreate' && !o.health) {
    throw new UsageError('handoff "recreate" needs a health check', { hint: 'add --health http:PORT/PATH or tcp:PORT' });
  }
  return {
    [HANDOFF_LABELS.handoff]: o.handoff,
    [HANDOFF_LABELS.stateless]: String(o.stateless),
    ...(o.health ? { [HANDOFF_LABELS.health]: formatHealth(o.health) } : {}),
  };
}

export interface StrategyChoice {
  strategy: 'migrate' | 'recreate';
  reason: string;
  /** The service's health check (null when it declared none). */
  health: HealthCheck | null;
}

/**
 * Which handoff runs: the request's strategy, else the container's cloudlet.handoff label,
 * else migrate. `auto` recreates a service declared stateless that has a health check, and
 * migrates anything else (its memory may hold state). Explicit recreate without a health
 * check is refused: nothing would tell when the new instance serves.
 */
export function chooseStrategy(requested: HandoffStrategy | undefined, labels: Record<string, string> | null | undefined): StrategyChoice {
  const l = labels ?? {};
  const declared = l[HANDOFF_LABELS.handoff];
  if (declared !== undefined && !(HANDOFF_STRATEGIES as readonly string[]).includes(declared)) {
    throw new UsageError(`the container's label ${HANDOFF_LABELS.handoff}=${declared} is not one of ${HANDOFF_STRATEGIES.join(', ')}`);
  }
  const healthText = l[HANDOFF_LABELS.health];
  const health = healthText ? parseHealth(healthText) : null;
  const stateless = l[HANDOFF_LABELS.stateless] === 'true';
  const wanted = requested ?? (declared as HandoffStrategy | undefined) ?? 'migrate';
  const by = requested ? 'the request' : declared ? `the service's label ${HANDOFF_LABELS.handoff}` : 'default (no strategy declared)';
  switch (wanted) {
    case 'migrate':
      return { strategy: 'migrate', reason: `migrate: ${by}`, health };
    case 'recreate':
      if (!health) {
        throw new UsageError('strategy "recreate" needs the service\'s health check, and this container declares none', {
          hint: `provision it with --health (label ${HANDOFF_LABELS.health}), or migrate it`,
        });
      }
      return { strategy: 'recreate', reason: `recreate: ${by}; ready when ${formatHealth(health)} passes`, health };
    case 'auto':
      if (!stateless) return { strategy: 'migrate', reason: `auto (${by}): not declared stateless, its memory may hold state: live migration`, health };
      if (!health)
        return {
          strategy: 'migrate',
          reason: `auto (${by}): declared stateless but has no health check to tell when a new instance serves: live migration`,
          health,
        };
      return {
        strategy: 'recreate',
        reason: `auto (${by}): declared stateless, a fresh instance is started and switched to when ${formatHealth(health)} passes`,
        health,
      };
  }
}

// ---------------------------------------------------------------- the wire between the two sides

export interface RecreatePrepareRequest {
  id: string;
  from: string;
  container: {
    name: string;
    imageId: string;
    imageName: string;
    /** The new instance's container: typed, allow-listed, checked against the destination's policy. */
    spec: ContainerSpec;
    volumes: string[];
    serviceAddress: string | null;
  };
  health: HealthCheck;
  /** How long the new instance may take to pass its health check. */
  healthTimeoutMs: number;
}

export interface RecreateStartResponse {
  containerId: string;
  createMs: number;
  startMs: number;
  healthyMs: number;
  healthChecks: number;
}

export interface RecreateSwitchResponse {
  announceMs: number;
  /** The destination drains the old instance's connections back to the source until told otherwise. */
  drained: boolean;
}

export const RECREATE_HEALTH_TIMEOUT_MS = 60_000;
