// The daemon's calls to its peers, all through the API client (src/api/client): the migration
// core's PeerTransport (peerConnector, with the deployment's token), and the health of the
// other cloudlets as seen from this one (each peer's /v1/info). A dead peer is a health
// result ("ok: false"), never a failure.
import { ApiClient } from '../api/client/client.js';
import { NodeInfoSchema } from '../api/schemas/node.js';
import type { PeerConnector } from '../migration/peer-transport.js';
import { ApiError, errorMessage } from '../util/errors.js';
import type { DaemonConfig } from './config.js';

export const PEER_TIMEOUT_MS = 2000;

/** The migration core's way to a peer: the API client as a peer, with our token (TLS: util/tls.ts). */
export function peerConnector(token: string): PeerConnector {
  return ({ url, silenceMs }) => new ApiClient({ baseUrl: url, token, silenceMs, callee: 'peer' });
}

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
  const started = performance.now();
  const base = { name: peer.name, url: peer.url };
  const elapsed = () => Math.round(performance.now() - started);
  try {
    // Worded as a client of cloudletd: an error answer's message is the peer's own.
    const info = await new ApiClient({ baseUrl: peer.url, token, timeoutMs }).get('/v1/info', NodeInfoSchema);
    const health: PeerHealth = { ...base, ok: true, latencyMs: elapsed(), node: info.node, version: info.version, engineReachable: info.engine.reachable };
    // A URL pointing at the wrong cloudlet is a configuration error worth surfacing.
    if (info.node !== peer.name) {
      return { ...health, ok: false, error: `peer URL answers as node '${info.node}', expected '${peer.name}'` };
    }
    return health;
  } catch (err) {
    return { ...base, ok: false, latencyMs: elapsed(), error: healthError(err) };
  }
}

/** One line for the peers' table. */
function healthError(err: unknown): string {
  if (!(err instanceof ApiError)) return errorMessage(err);
  if (err.code === 'bad_response') return `answer is not a cloudletd /v1/info document: ${err.message}`;
  if (err.status > 0) return `HTTP ${err.status}: ${err.message}`;
  // What to do about a refused certificate belongs in the one line shown.
  return err.code === 'tls_untrusted' && err.hint ? `${err.message} (${err.hint})` : err.message;
}
