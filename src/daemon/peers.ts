// Health of the other cloudlets of the deployment, as seen from this one: each peer's
// /v1/info with our shared token. A dead peer is a result ("ok: false"), never a failure.
import { fetch } from 'undici';
import { errorMessage } from '../util/errors.js';
import { authHeadersFor, dispatcherFor, tlsHint } from './tls.js';
import type { DaemonConfig } from './config.js';

export const PEER_TIMEOUT_MS = 2000;

export interface PeerHealth {
  name: string;
  url: string;
  ok: boolean;
  /** Round trip of the /v1/info request. */
  latencyMs: number;
  error?: string;
  /** What the peer reported about itself, when it answered. */
  node?: string;
  version?: string;
  engineReachable?: boolean;
}

type Peer = DaemonConfig['peers'][number];

export async function checkPeer(peer: Peer, token: string, timeoutMs = PEER_TIMEOUT_MS): Promise<PeerHealth> {
  const url = peer.url.replace(/\/+$/, '') + '/v1/info';
  const started = performance.now();
  const base = { name: peer.name, url: peer.url };
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const res = await fetch(url, {
      headers: { ...authHeadersFor(url, token), accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
      // https peers: verified against the deployment's CA (tls.ts).
      dispatcher: dispatcherFor(url),
    });
    const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
    if (!res.ok) {
      const msg = body && typeof body.message === 'string' ? body.message : res.statusText;
      return { ...base, ok: false, latencyMs: elapsed(), error: `HTTP ${res.status}: ${msg}` };
    }
    if (!body || typeof body.node !== 'string') {
      return { ...base, ok: false, latencyMs: elapsed(), error: 'answer is not a cloudletd /v1/info document' };
    }
    const engine = body.engine as { reachable?: unknown } | undefined;
    const health: PeerHealth = {
      ...base,
      ok: true,
      latencyMs: elapsed(),
      node: body.node,
      version: typeof body.version === 'string' ? body.version : undefined,
      engineReachable: engine?.reachable === true,
    };
    // A URL pointing at the wrong cloudlet is a configuration error worth surfacing.
    if (body.node !== peer.name) {
      return { ...health, ok: false, error: `peer URL answers as node '${body.node}', expected '${peer.name}'` };
    }
    return health;
  } catch (err) {
    return { ...base, ok: false, latencyMs: elapsed(), error: fetchErrorMessage(err, timeoutMs) };
  }
}

/** fetch hides the useful part ("ECONNREFUSED") in err.cause; surface it. */
export function fetchErrorMessage(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
    return `no answer within ${timeoutMs} ms`;
  }
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  const hint = tlsHint(err);
  if (cause && typeof cause.code === 'string') return `${cause.code}: ${String(cause.message ?? '')}`.trim() + (hint ? ` (${hint})` : '');
  return errorMessage(err);
}
