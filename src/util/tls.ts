// TLS for the clients of cloudletd's API: the CLI, and the daemon calling its peers. Calls
// verify the server's certificate against a CA file - never with verification turned off.
//
// Peers are called from several modules (migration source, image shipping, peer health)
// that only know a peer's URL. The daemon registers the CA to trust for its peers' origins
// here once (trustOrigins) and, under mutual TLS, the client certificate it presents to them
// (presentClientCert); callers ask httpsOptionsFor(url) / dispatcherFor(url) for the options
// of a request, and authHeadersFor(url, token) for its credentials.
import { readFileSync } from 'node:fs';
import { Agent } from 'undici';
import { UsageError } from './errors.js';

/** Reads a PEM file, refusing with the config field at fault when it is unreadable or not PEM. */
export function readPem(path: string, field: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read ${field} ${path}: ${(err as Error).message}`, { context: { field, path } });
  }
  if (!data.includes('-----BEGIN ')) throw new UsageError(`${field} ${path} is not a PEM file`, { context: { field, path } });
  return data;
}

// origin ("https://10.0.0.2:7070") -> CA that its certificate must chain to
const trusted = new Map<string, Buffer>();

/** Trust `ca` for https requests to these URLs' origins; returns the undo. */
export function trustOrigins(urls: readonly string[], ca: Buffer): () => void {
  const origins = urls.map((u) => new URL(u).origin);
  for (const o of origins) trusted.set(o, ca);
  return () => {
    for (const o of origins) if (trusted.get(o) === ca) trusted.delete(o);
  };
}

/**
 * The CA for a request to `url`: the one registered for its origin, else the file named by
 * $CLOUDLET_CA (the CLI), else undefined (Node's bundled CAs). Verification stays on in every
 * case; plain http URLs get none.
 */
export function caFor(url: string, env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  const u = new URL(url);
  if (u.protocol !== 'https:') return undefined;
  const registered = trusted.get(u.origin);
  if (registered) return registered;
  return env.CLOUDLET_CA ? readPem(env.CLOUDLET_CA, 'CLOUDLET_CA') : undefined;
}

/** A client certificate (chain) and its key, PEM. */
export interface ClientIdentity {
  cert: Buffer;
  key: Buffer;
}

// origin -> the certificate this process presents there (mutual TLS between cloudlets)
const identities = new Map<string, ClientIdentity>();

/** Present `identity` on https requests to these URLs' origins; returns the undo. */
export function presentClientCert(urls: readonly string[], identity: ClientIdentity): () => void {
  const origins = urls.map((u) => new URL(u).origin).filter((o) => o.startsWith('https:'));
  for (const o of origins) identities.set(o, identity);
  return () => {
    for (const o of origins) if (identities.get(o) === identity) identities.delete(o);
  };
}

/** The client certificate registered for `url`'s origin (https only). */
export function clientCertFor(url: string): ClientIdentity | undefined {
  const u = new URL(url);
  return u.protocol === 'https:' ? identities.get(u.origin) : undefined;
}

/**
 * The credentials of a request to `url`: none when this process presents a client certificate
 * there (a peer is known by its certificate and does not hand its operator token to another
 * cloudlet), else the bearer token.
 */
export function authHeadersFor(url: string, token: string | undefined): { authorization?: string } {
  if (clientCertFor(url) || !token) return {};
  return { authorization: `Bearer ${token}` };
}

/** Options to spread into http(s).request for `url`. */
export function httpsOptionsFor(url: string, ca?: Buffer): { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized: true } {
  const c = ca ?? caFor(url);
  const id = clientCertFor(url);
  return { ...(c ? { ca: c } : {}), ...(id ? { cert: id.cert, key: id.key } : {}), rejectUnauthorized: true };
}

// One connection pool per CA and client certificate (keyed by their PEM text; '' = the
// default CAs, no certificate), reused across requests.
const dispatchers = new Map<string, Agent>();

/**
 * An undici dispatcher for fetch() to `url`, trusting its CA. undici's own header and body
 * timeouts (300 s by default) are off: every caller bounds its whole request with its own
 * AbortSignal, and a `POST /v1/migrations?wait=1` of a large service on a slow link answers
 * only when the handoff is over - after many minutes.
 */
export function dispatcherFor(url: string, ca?: Buffer): Agent {
  const c = ca ?? caFor(url);
  const id = clientCertFor(url);
  const key = (c ? c.toString('latin1') : '') + '\0' + (id ? id.cert.toString('latin1') : '');
  let d = dispatchers.get(key);
  if (!d) {
    const tls = { ...(c ? { ca: c } : {}), ...(id ? { cert: id.cert, key: id.key } : {}) };
    d = new Agent({ headersTimeout: 0, bodyTimeout: 0, ...(c || id ? { connect: { ...tls, rejectUnauthorized: true } } : {}) });
    dispatchers.set(key, d);
  }
  return d;
}

/**
 * Node's TLS errors name the OpenSSL condition ("unable to verify the first certificate");
 * this says what to do about it.
 */
export function tlsHint(err: unknown): string | undefined {
  const code = (err as { code?: unknown; cause?: { code?: unknown } }).code ?? (err as { cause?: { code?: unknown } }).cause?.code;
  if (typeof code !== 'string') return undefined;
  if (/CERT|SELF_SIGNED|VERIFY|ERR_TLS/.test(code)) {
    return `the server's certificate is not trusted (${code}): give the deployment's CA (--ca / $CLOUDLET_CA for the CLI, peerCa or tls.ca in cloudletd's config)`;
  }
  return undefined;
}
