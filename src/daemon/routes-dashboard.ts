// The web dashboard of cloudletd, on the daemon's own port:
//   GET /, /dashboard             redirect to /dashboard/
//   GET /dashboard/               the page (public: it holds no data; its API calls need the token)
//   GET /dashboard/:file          its script modules (dist/web, compiled from web/src by
//                                 tsconfig.web.json) and style sheet (web/)
//   GET /v1/cloudlets             this cloudlet and every peer, each with its own /v1/info
//   GET /v1/cloudlets/:name/containers|overlays   a cloudlet's containers and overlays; a peer's
//                                 are fetched by this cloudlet (the browser reaches only this one)
//   GET /v1/migrations/:id/events live progress (server-sent events); the only route that also
//                                 takes the token as ?token=, since EventSource sends no headers
import type { FastifyInstance, FastifyReply } from 'fastify';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { ApiError, CloudletError, NotFoundError, errorMessage, kindFromHttpStatus } from '../util/errors.js';
import { ApiClient } from '../api/client/client.js';
import type { MigrationSource } from '../migration/source.js';
import type { MigrationReport } from '../migration/types.js';
import { migrationEvents } from './events.js';
import type { DaemonConfig } from './config.js';
import type { DaemonContext, NodeInfo } from './context.js';

// Paths from the compiled file (dist/src/daemon/): the daemon always runs from dist/.
const WEB_DIST = fileURLToPath(new URL('../../web/', import.meta.url));
const WEB_STATIC = fileURLToPath(new URL('../../../web/', import.meta.url));

/** Peers answer the dashboard's views within this time, or are shown as unreachable. */
const PEER_VIEW_TIMEOUT_MS = 3000;
/** Comment line on idle event streams (keeps proxies from closing them; notices lost ends). */
const HEARTBEAT_MS = 5000;

const ASSET_RE = /^[a-z][a-z0-9-]*\.(js|css)$/;
const CONTENT_TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};
// Everything the page loads comes from this origin; no inline script or style at all.
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export class DashboardNotBuiltError extends CloudletError {
  constructor(missing: string) {
    super('dashboard_not_built', `the dashboard's scripts are not built (${missing} missing)`, {
      kind: 'unavailable',
      context: { missing },
      hint: 'run `npm run build` (or `npx tsc -p tsconfig.web.json`)',
    });
  }
}

export interface CloudletView {
  name: string;
  self: boolean;
  url: string | null;
  ok: boolean;
  latencyMs: number;
  error?: string;
  info: NodeInfo | null;
}

export function registerDashboardRoutes(app: FastifyInstance, ctx: DaemonContext, source: MigrationSource): void {
  const stopLogging = migrationEvents.onListenerError((err) => app.log.warn({ err: errorMessage(err) }, 'migration event stream failed'));
  app.addHook('onClose', async () => stopLogging());
  registerDashboardPage(app);
  registerCloudletViews(app, ctx);
  registerMigrationEvents(app, source);
}

// ---------------------------------------------------------------- static page

async function sendAsset(reply: FastifyReply, path: string, ext: string) {
  let body: Buffer;
  try {
    body = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    if (ext === 'js' && !existsSync(join(WEB_DIST, 'app.js'))) throw new DashboardNotBuiltError(join(WEB_DIST, 'app.js'));
    throw new NotFoundError('dashboard file', path.split('/').pop() ?? path);
  }
  return reply
    .header('content-type', CONTENT_TYPES[ext]!)
    .header('cache-control', 'no-cache')
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('content-security-policy', CSP)
    .send(body);
}

/** The page and its files (public routes). */
function registerDashboardPage(app: FastifyInstance): void {
  const pub = { config: { public: true } };
  app.get('/', pub, async (_req, reply) => reply.redirect('/dashboard/'));
  app.get('/dashboard', pub, async (_req, reply) => reply.redirect('/dashboard/'));
  app.get('/dashboard/', pub, async (_req, reply) => sendAsset(reply, join(WEB_STATIC, 'index.html'), 'html'));
  app.get<{ Params: { file: string } }>('/dashboard/:file', pub, async (req, reply) => {
    const file = req.params.file;
    const m = ASSET_RE.exec(file);
    if (!m) throw new NotFoundError('dashboard file', file);
    return sendAsset(reply, join(m[1] === 'js' ? WEB_DIST : WEB_STATIC, file), m[1]!);
  });
}

// ---------------------------------------------------------------- views across cloudlets

/** This cloudlet's own answer to one of its GET routes, through the same handlers. */
async function local<T>(app: FastifyInstance, config: DaemonConfig, url: string): Promise<T> {
  const res = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${config.token}` } });
  const body = res.json() as T & { error?: string; message?: string };
  if (res.statusCode !== 200) {
    throw new CloudletError(body.error ?? 'internal', body.message ?? `GET ${url} answered ${res.statusCode}`, {
      kind: kindFromHttpStatus(res.statusCode),
      context: { url },
    });
  }
  return body;
}

/** A peer's answer; its failures become 502 here (a peer's 401 is not the browser's). */
async function remote<T>(config: DaemonConfig, peer: { name: string; url: string }, path: string): Promise<T> {
  try {
    return await new ApiClient({ baseUrl: peer.url, token: config.token, silenceMs: PEER_VIEW_TIMEOUT_MS, callee: 'peer' }).get<T>(path);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    throw new CloudletError('peer_error', `cloudlet '${peer.name}': ${err.message}`, {
      kind: 'upstream',
      context: { peer: peer.name, url: peer.url, status: err.status },
      cause: err,
    });
  }
}

/** The answer of the cloudlet named `name`: this one's own, or a peer's. */
function fromCloudlet<T>(app: FastifyInstance, config: DaemonConfig, name: string, path: string): Promise<T> {
  if (name === config.node) return local<T>(app, config, path);
  const peer = config.peers.find((p) => p.name === name);
  if (!peer) throw new NotFoundError('cloudlet', name, { hint: `known: ${[config.node, ...config.peers.map((p) => p.name)].join(', ')}` });
  return remote<T>(config, peer, path);
}

/** This cloudlet and every peer, each with its own /v1/info (a peer that does not answer is shown down). */
async function cloudletViews(app: FastifyInstance, ctx: DaemonContext): Promise<CloudletView[]> {
  const { config } = ctx;
  const t0 = performance.now();
  const self: CloudletView = { name: config.node, self: true, url: null, ok: true, latencyMs: 0, info: await local<NodeInfo>(app, config, '/v1/info') };
  self.latencyMs = Math.round(performance.now() - t0);
  const peers = await Promise.all(
    config.peers.map(async (p): Promise<CloudletView> => {
      const started = performance.now();
      const base = { name: p.name, self: false, url: p.url };
      try {
        const info = await remote<NodeInfo>(config, p, '/v1/info');
        ctx.db.recordPeerCheck(p.name, p.url, { ok: true });
        return { ...base, ok: true, latencyMs: Math.round(performance.now() - started), info };
      } catch (err) {
        // An unreachable peer is part of the view (shown as down), not a failure of it.
        if (!(err instanceof CloudletError)) throw err;
        ctx.db.recordPeerCheck(p.name, p.url, { ok: false, error: err.message });
        return { ...base, ok: false, latencyMs: Math.round(performance.now() - started), error: err.message, info: null };
      }
    }),
  );
  return [self, ...peers];
}

/** /v1/cloudlets and a cloudlet's containers and overlays. */
function registerCloudletViews(app: FastifyInstance, ctx: DaemonContext): void {
  const { config } = ctx;
  app.get('/v1/cloudlets', async (): Promise<CloudletView[]> => cloudletViews(app, ctx));

  app.get<{ Params: { name: string }; Querystring: { all?: string } }>('/v1/cloudlets/:name/containers', async (req) => {
    const all = req.query.all === 'true' || req.query.all === '1';
    return fromCloudlet<unknown[]>(app, config, req.params.name, `/v1/containers${all ? '?all=true' : ''}`);
  });

  app.get<{ Params: { name: string } }>('/v1/cloudlets/:name/overlays', async (req) => fromCloudlet<unknown[]>(app, config, req.params.name, '/v1/overlays'));
}

// ---------------------------------------------------------------- live progress

/** GET /v1/migrations/:id/events: a migration's reports as server-sent events, until it ends. */
function registerMigrationEvents(app: FastifyInstance, source: MigrationSource): void {
  app.get<{ Params: { id: string } }>('/v1/migrations/:id/events', { config: { queryToken: true } }, async (req, reply) => {
    const id = req.params.id;
    const first = source.get(id);
    if (!first) throw new NotFoundError('migration', id);
    const res = reply.raw;
    let seq = 0;
    let closed = false;
    let heartbeat: NodeJS.Timeout | null = null;
    const send = (event: string, data: unknown) => {
      if (closed) return;
      res.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const finish = (report: MigrationReport) => {
      send('report', report);
      send('end', { id, state: report.state });
      close();
    };
    // No await between subscribing and sending the snapshot: no update can slip in between.
    const unsubscribe = migrationEvents.subscribe(id, (r) => (r.finishedAt ? finish(r) : send('report', r)));
    const close = () => {
      if (closed) return;
      closed = true;
      unsubscribe();
      if (heartbeat) clearInterval(heartbeat);
      res.end();
    };
    reply.hijack();
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-store',
      connection: 'keep-alive',
      'x-content-type-options': 'nosniff',
    });
    res.on('close', close);
    if (first.finishedAt) return finish(first);
    send('report', first);
    heartbeat = setInterval(() => {
      // A migration that ended without a journal write (a bug path in the source) must not
      // hold the stream open forever: its stored report says it is over.
      const now = source.get(id);
      if (now?.finishedAt) finish(now);
      else if (!closed) res.write(': keep-alive\n\n');
    }, HEARTBEAT_MS);
  });
}
