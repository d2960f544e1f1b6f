// Attacks on the victim's API: a hostile peer asking for a twin the policy forbids, callers
// with missing, foreign or wrong certificates, the token and a certificate each on the other's
// routes, plain HTTP to the TLS listener, an oversized and a malformed body.
import type { Attack } from './attack.js';
import { call, plainHttp } from './http.js';
import type { Stage } from './setup.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
let seq = 0;

/** A prepare (POST /v1/incoming) from `from` for a twin with `spec`; its id is fresh each time. */
function prepare(from: string, spec: Record<string, unknown>): { id: string; from: string; container: Record<string, unknown> } {
  seq += 1;
  const id = `m20261206-5ec${String(seq).padStart(5, '0')}`;
  return { id, from, container: { name: `evil-${seq}`, imageId: DIGEST, imageName: 'evil:1', spec: { network: { mode: 'none' }, ...spec }, volumes: [] } };
}

/** Refused before anything was recorded: alpha knows no incoming migration of that id. */
async function notJournalled(stage: Stage, id: string): Promise<string | null> {
  const r = await call(stage, { path: `/v1/incoming/${id}`, token: stage.victim.config.token });
  return r.status === 404 ? null : `alpha journalled incoming migration ${id} (GET answered ${r.status})`;
}

/** A policy attack: beta (a configured peer, its own certificate) asks alpha for a twin. */
function policyAttack(name: string, tried: string, spec: (s: Stage) => Record<string, unknown>): Attack {
  let id = '';
  return {
    name,
    tried,
    expect: { status: 403, error: 'policy_denied' },
    run: async (s) => {
      const body = prepare('beta', spec(s));
      id = body.id;
      return call(s, { method: 'POST', path: '/v1/incoming', cert: s.pki.beta, body });
    },
    check: (s) => notJournalled(s, id),
  };
}

export const POLICY_ATTACKS: Attack[] = [
  policyAttack('privileged-twin', 'peer beta prepares a twin with privileged: true', () => ({ privileged: true })),
  policyAttack('host-bind-mount', "peer beta prepares a twin bind-mounting the host's /etc (outside bindMountRoots)", (s) => ({
    binds: [{ source: s.host.etc, target: '/host-etc' }],
  })),
  policyAttack('cap-sys-admin', 'peer beta prepares a twin with capAdd SYS_ADMIN', () => ({ capAdd: ['SYS_ADMIN'] })),
  policyAttack('pid-host', "peer beta prepares a twin in the host's pid namespace", () => ({ pidMode: 'host' })),
  {
    name: 'privileged-recreate',
    tried: 'peer beta asks for a privileged twin by re-creation (POST /v1/recreate)',
    expect: { status: 403, error: 'policy_denied' },
    run: (s) => {
      const body = prepare('beta', { privileged: true });
      const container = { ...body.container, serviceAddress: null };
      return call(s, {
        method: 'POST',
        path: '/v1/recreate',
        cert: s.pki.beta,
        body: { ...body, container, health: { tcp: { port: 80 } }, healthTimeoutMs: 1000 },
      });
    },
  },
  policyAttack('host-device', "peer beta prepares a twin with the host's /dev/sda", (s) => ({
    devices: [{ pathOnHost: s.host.device, pathInContainer: '/dev/sda' }],
  })),
];

/** Peer identity: who may call a peer route, and in whose name. */
export const IDENTITY_ATTACKS: Attack[] = [
  {
    name: 'no-client-cert',
    tried: 'a caller without a client certificate prepares a migration as beta',
    expect: { status: 401, error: 'peer_unauthenticated' },
    run: (s) => call(s, { method: 'POST', path: '/v1/incoming', body: prepare('beta', {}) }),
  },
  {
    name: 'other-ca-cert',
    tried: 'a caller with a certificate named beta from another CA prepares as beta',
    expect: { status: 401, error: 'peer_unauthenticated' },
    run: (s) => call(s, { method: 'POST', path: '/v1/incoming', cert: s.pki.forgedBeta, body: prepare('beta', {}) }),
  },
  {
    name: 'unknown-peer-cert',
    tried: "gamma (the deployment's CA, not in alpha's peers) prepares as gamma",
    expect: { status: 403, error: 'peer_unknown' },
    run: (s) => call(s, { method: 'POST', path: '/v1/incoming', cert: s.pki.gamma, body: prepare('gamma', {}) }),
  },
  {
    name: 'from-mismatch',
    tried: "peer beta, with its own certificate, prepares in gamma's name (from: gamma)",
    expect: { status: 403, error: 'peer_mismatch' },
    run: (s) => call(s, { method: 'POST', path: '/v1/incoming', cert: s.pki.beta, body: prepare('gamma', {}) }),
  },
  {
    name: 'token-on-peer-route',
    tried: "the operator's token, no certificate, on a peer route (POST /v1/incoming)",
    expect: { status: 401, error: 'peer_unauthenticated' },
    run: (s) => call(s, { method: 'POST', path: '/v1/incoming', token: s.victim.config.token, body: prepare('beta', {}) }),
  },
  {
    name: 'peer-cert-on-operator-route',
    tried: "peer beta's certificate, no token, starts a migration (POST /v1/migrations)",
    expect: { status: 403, error: 'operator_route' },
    run: (s) => call(s, { method: 'POST', path: '/v1/migrations', cert: s.pki.beta, body: { container: 'web', to: 'beta' } }),
  },
  {
    name: 'plain-http-to-tls',
    tried: "plain HTTP (no TLS) to alpha's TLS listener: a prepare as beta",
    expect: { status: null, error: 'ECONNRESET' },
    run: (s) => plainHttp(s, { method: 'POST', path: '/v1/incoming', body: prepare('beta', {}) }),
  },
];

/** Bodies: size limit and JSON parsing, on a peer route with beta's valid certificate. */
export const BODY_ATTACKS: Attack[] = [
  {
    name: 'oversized-body',
    tried: 'peer beta sends a 2 MiB prepare (limits.requestBodyBytes is 64 KiB)',
    expect: { status: 413, error: 'body_too_large' },
    run: (s) => {
      const body = prepare('beta', { env: ['PAD=' + 'x'.repeat(2 << 20)] });
      return call(s, { method: 'POST', path: '/v1/incoming', cert: s.pki.beta, body });
    },
  },
  {
    name: 'malformed-json',
    tried: 'peer beta sends a prepare that is not JSON',
    expect: { status: 400, error: 'FST_ERR_CTP_INVALID_JSON_BODY' },
    run: (s) => call(s, { method: 'POST', path: '/v1/incoming', cert: s.pki.beta, raw: '{"id": "m1", "from": "beta", "container": {' }),
  },
];
