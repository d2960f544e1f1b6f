// Who may call which route. Operator routes take the operator's bearer token. Peer routes -
// what a source cloudlet calls on the destination of its handoff - take, when TLS is mutual
// (tls.ca configured), only the client certificate of a configured peer: a peer is known by
// its certificate and never needs the operator's token; the token alone no longer opens them.
// Without mutual TLS every route takes the token, as before, and peers send it.
//
// The table below is the one list of routes peers call (src/migration/*: handoffs, image
// shipping; daemon/peers.ts and the dashboard's views across cloudlets: reads). A route not in
// it is an operator route: a new peer route missing here fails loudly (403), never open.
import type { TLSSocket } from 'node:tls';
import type { FastifyRequest } from 'fastify';
import { CloudletError } from '../util/errors.js';
import { checkAuthorization, queryTokenOf } from './auth.js';
import { mutualTls, peerCertName, type DaemonConfig } from './config.js';

/** peer: a configured peer's certificate only; both: that or the operator's token. */
export type RouteAccess = 'operator' | 'peer' | 'both';

const ROUTE_ACCESS: ReadonlyMap<string, RouteAccess> = new Map<string, RouteAccess>([
  // handoff by checkpoint/restore (migration/source -> this destination)
  ['POST /v1/incoming', 'peer'],
  ['POST /v1/incoming/check', 'peer'],
  ['PUT /v1/incoming/:id/rounds/:k', 'peer'],
  ['POST /v1/incoming/:id/address', 'peer'],
  ['POST /v1/incoming/:id/commit', 'peer'],
  ['DELETE /v1/incoming/:id', 'peer'],
  // a status: also readable by the operator (bench faults watches a destination's state)
  ['GET /v1/incoming/:id', 'both'],
  // handoff by re-creation (migration/recreate-source)
  ['POST /v1/recreate', 'peer'],
  ['PUT /v1/recreate/:id/volumes', 'peer'],
  ['POST /v1/recreate/:id/start', 'peer'],
  ['POST /v1/recreate/:id/switch', 'peer'],
  ['POST /v1/recreate/:id/drained', 'peer'],
  ['DELETE /v1/recreate/:id', 'peer'],
  // image shipping before a handoff (migration/image-ship): operators upload images too
  ['POST /v1/images/layers', 'both'],
  ['PUT /v1/images', 'both'],
  ['PUT /v1/overlays', 'both'],
  ['POST /v1/overlays', 'both'],
  ['POST /v1/overlays/:id/synthesize', 'both'],
  ['DELETE /v1/overlays/:id', 'both'],
  // peer health and the dashboard's views across cloudlets
  ['GET /v1/info', 'both'],
  ['GET /v1/containers', 'both'],
  ['GET /v1/overlays', 'both'],
]);

/** Requests whose body names the source (`from`): it must be the authenticated peer. */
const FROM_CHECKED = new Set(['POST /v1/incoming', 'POST /v1/incoming/check', 'POST /v1/recreate']);

export function routeAccess(method: string, url: string | undefined): RouteAccess {
  return (url !== undefined && ROUTE_ACCESS.get(`${method} ${url}`)) || 'operator';
}

/** The routes peers may call, for the docs' test. */
export function peerRoutes(): string[] {
  return [...ROUTE_ACCESS.keys()];
}

function unauthenticated(message: string, hint: string, context: Record<string, unknown> = {}): CloudletError {
  return new CloudletError('peer_unauthenticated', message, { kind: 'unauthenticated', hint, context });
}

function denied(code: string, message: string, hint: string, context: Record<string, unknown> = {}): CloudletError {
  return new CloudletError(code, message, { kind: 'permission-denied', hint, context });
}

type PeerIdentity = { peer: string } | { error: CloudletError; certName: string | null };

/** The configured peer this connection's client certificate belongs to, or why there is none. */
export function peerOfConnection(req: FastifyRequest, config: DaemonConfig): PeerIdentity {
  const what = `${req.method} ${req.routeOptions.url ?? req.url}`;
  const socket = req.raw.socket as Partial<TLSSocket>;
  const fix = "call it from a peer cloudlet configured with its certificate (tls.cert/tls.key issued by the deployment's CA: cloudlet ca issue)";
  if (socket.encrypted !== true || typeof socket.getPeerCertificate !== 'function') {
    return { certName: null, error: unauthenticated(`${what} is a peer route: it needs a peer's client certificate, and this connection is not TLS`, fix) };
  }
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) {
    return { certName: null, error: unauthenticated(`${what} is a peer route: no client certificate was presented`, fix) };
  }
  const cn = Array.isArray(cert.subject?.CN) ? cert.subject.CN[0] : cert.subject?.CN;
  const certName = typeof cn === 'string' ? cn : null;
  if (!socket.authorized) {
    const why = String(socket.authorizationError ?? 'not verified');
    return {
      certName,
      error: unauthenticated(`${what}: the client certificate${certName ? ` '${certName}'` : ''} is not from the deployment's CA (${why})`, fix, {
        certificate: certName,
        reason: why,
      }),
    };
  }
  const peer = config.peers.find((p) => peerCertName(p) === certName);
  if (!peer) {
    const known = config.peers.map((p) => `${p.name} (certificate ${peerCertName(p)})`).join(', ') || 'none';
    return {
      certName,
      error: denied('peer_unknown', `${what}: certificate '${certName}' is not the certificate of a configured peer`, `add it to peers (known: ${known})`, {
        certificate: certName,
      }),
    };
  }
  return { peer: peer.name };
}

/** The onRequest check of every non-public route; sets req.peer for a peer's request. */
export function authenticate(req: FastifyRequest, config: DaemonConfig): void {
  const token = () =>
    checkAuthorization(config.token, req.headers.authorization, req.routeOptions.config.queryToken === true ? queryTokenOf(req.query) : undefined);
  if (!mutualTls(config)) return token();
  const access = routeAccess(req.method, req.routeOptions.url);
  const id = peerOfConnection(req, config);
  if ('peer' in id && access !== 'operator') {
    req.peer = id.peer;
    return;
  }
  if (access === 'peer') throw (id as { error: CloudletError }).error;
  if ('peer' in id && req.headers.authorization === undefined) {
    throw denied(
      'operator_route',
      `${req.method} ${req.routeOptions.url ?? req.url} is an operator route: peer ${id.peer}'s certificate does not open it`,
      'operators pass the bearer token (--token, $CLOUDLET_TOKEN)',
      { peer: id.peer },
    );
  }
  return token();
}

/**
 * The preHandler check of a prepare: its `from` must be a configured peer and, when the peer
 * is known by its certificate, that very peer (a peer cannot start a handoff in another's name).
 */
export function checkFrom(req: FastifyRequest, config: DaemonConfig): void {
  if (!FROM_CHECKED.has(`${req.method} ${req.routeOptions.url}`)) return;
  const from = (req.body as { from?: unknown } | null | undefined)?.from;
  if (typeof from !== 'string') return; // malformed: the route's validation names it
  if (req.peer !== null && from !== req.peer) {
    throw denied(
      'peer_mismatch',
      `a prepare from '${from}' came with the certificate of peer '${req.peer}'`,
      `peer ${req.peer} may only hand off its own services`,
      {
        from,
        peer: req.peer,
      },
    );
  }
  if (!config.peers.some((p) => p.name === from)) {
    throw denied('peer_unknown', `'${from}' is not a peer of ${config.node}`, `add it to peers in ${config.node}'s configuration`, {
      from,
      peers: config.peers.map((p) => p.name),
    });
  }
}
