// cloudletd's HTTP API: one Fastify app, served on every configured listener (TCP and unix
// sockets). buildServer() makes the app without listening (tests use app.inject);
// startDaemon() also listens, records the start in the database and returns a closer.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CloudletError, ConflictError, errorMessage, kindToHttpStatus } from '../util/errors.js';
import { DockerEngine, type EngineInfo, type EngineVersion } from '../engine/docker.js';
import { MIN_CRIU_VERSION, compareVersions, criuVersion } from '../engine/criu.js';
import { logSafeRequest } from './auth.js';
import { insecureWarnings, mutualTls, type DaemonConfig } from './config.js';
import { authenticate, checkFrom } from './peer-auth.js';
import { DaemonDb } from './db.js';
import { createMetrics } from './metrics.js';
import { checkPeer } from './peers.js';
import type { DaemonContext, EngineStatus, NodeInfo, PeerStatus } from './context.js';
import { registerMigrationRoutes } from './routes-migrations.js';
import { registerOverlayRoutes } from './routes-overlays.js';
import { registerRecreateRoutes } from './routes-recreate.js';
import { registerDashboardRoutes } from './routes-dashboard.js';
import { registerOpenApiRoute } from './openapi.js';
import { presentClientCert, readPem, serverTlsOptions, trustOrigins } from './tls.js';
import { ServiceNetwork } from '../network/service-network.js';

export interface ServerDeps {
  config: DaemonConfig;
  /** Default: a DockerEngine on config.dockerSocket. */
  engine?: DockerEngine;
  /** Default: dataDir/cloudletd.db, opened here and closed with the app. */
  db?: DaemonDb;
  /** Default: { level: config.logLevel } on stdout; false silences (tests). */
  logger?: FastifyServerOptions['logger'];
}

export function buildServer(deps: ServerDeps): FastifyInstance {
  const { config } = deps;
  // Read before anything is opened: an unreadable CA file fails the start cleanly.
  const peerCaPem = config.peerCa ? readPem(config.peerCa, 'peerCa') : config.tls?.ca ? readPem(config.tls.ca, 'tls.ca') : null;
  let handler: http.RequestListener | undefined;
  const app = Fastify({
    logger: deps.logger ?? { level: config.logLevel, serializers: { req: logSafeRequest } },
    // Capture Fastify's handler so that startDaemon can attach it to several servers.
    serverFactory: (h) => {
      handler = h as http.RequestListener;
      return http.createServer(h);
    },
    ajv: { customOptions: { removeAdditional: false } },
    bodyLimit: config.limits.requestBodyBytes,
  });
  const ownsDb = deps.db === undefined;
  const ctx: DaemonContext = {
    config,
    engine: deps.engine ?? new DockerEngine(config.dockerSocket),
    db: deps.db ?? DaemonDb.open(config.dataDir),
    metrics: createMetrics(config.node),
    serviceNetwork: null,
    version: packageVersion(),
    handler: handler!,
  };
  if (config.serviceNetwork) ctx.serviceNetwork = new ServiceNetwork(ctx.engine, config.serviceNetwork);
  app.decorate('cloudlet', ctx);
  addPeerTls(app, config, peerCaPem);
  addLifecycleHooks(app, { ctx, ownsDb });
  addRequestHooks(app, ctx);
  setErrorHandlers(app, config);

  // First of the routes: it collects every route registered after it (the test of the document).
  registerOpenApiRoute(app);
  registerNodeRoutes(app, ctx);
  const migrations = registerMigrationRoutes(app, ctx);
  registerOverlayRoutes(app, ctx);
  registerRecreateRoutes(app, ctx);
  registerDashboardRoutes(app, ctx, migrations.source);

  return app;
}

/** Trusts the deployment's CA for the https peers, and presents this cloudlet's certificate to them under mutual TLS. */
function addPeerTls(app: FastifyInstance, config: DaemonConfig, peerCaPem: Buffer | null): void {
  // Outgoing calls to https peers verify their certificates against the deployment's CA.
  if (peerCaPem) {
    const untrust = trustOrigins(
      config.peers.map((p) => p.url),
      peerCaPem,
    );
    app.addHook('onClose', async () => untrust());
  }
  // Mutual TLS: this cloudlet presents its own certificate when it calls its https peers.
  if (config.tls && mutualTls(config)) {
    const unpresent = presentClientCert(
      config.peers.map((p) => p.url),
      { cert: readPem(config.tls.cert, 'tls.cert'), key: readPem(config.tls.key, 'tls.key') },
    );
    app.addHook('onClose', async () => unpresent());
  }
}

/** Readies the service network at start; at close marks the node down and closes the db if it was opened here. */
function addLifecycleHooks(app: FastifyInstance, opts: { ctx: DaemonContext; ownsDb: boolean }): void {
  const { ctx, ownsDb } = opts;
  // The service network exists before any request can provision or receive a service.
  app.addHook('onReady', async () => {
    if (ctx.serviceNetwork) app.log.info({ notes: await ctx.serviceNetwork.ensure() }, 'service network ready');
  });
  app.addHook('onClose', async () => {
    ctx.metrics.up.set({ node: ctx.config.node }, 0);
    if (ownsDb) ctx.db.close();
  });
}

/** Authentication and authorization of every request, and its metrics once answered. */
function addRequestHooks(app: FastifyInstance, ctx: DaemonContext): void {
  const { config } = ctx;
  // Operators by their token, peers by their certificate under mutual TLS (peer-auth.ts).
  app.decorateRequest('peer', null);
  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.config.public === true) return;
    authenticate(req, config);
  });
  app.addHook('preHandler', async (req) => checkFrom(req, config));
  app.addHook('onResponse', async (req, reply) => {
    // Route templates ("/v1/containers"), not raw URLs, keep label cardinality bounded.
    const labels = { method: req.method, route: req.routeOptions.url ?? '(unmatched)', status: String(reply.statusCode) };
    ctx.metrics.httpRequests.inc(labels);
    ctx.metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
  });
}

/** The JSON error answers: CloudletErrors by their kind, Fastify's own errors, unknown routes. */
function setErrorHandlers(app: FastifyInstance, config: DaemonConfig): void {
  app.setErrorHandler((err: FastifyError | CloudletError, req, reply) => {
    // Every status here comes from an error kind (util/error-kinds.ts), but for Fastify's
    // own client errors below, whose 4xx status is passed on as Fastify chose it.
    if (err instanceof CloudletError) {
      const status = kindToHttpStatus(err.errorKind);
      if (status >= 500) req.log.warn({ err: err.message, code: err.code, kind: err.errorKind, context: err.context }, 'request failed');
      return reply.status(status).send(err.toJSON());
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = config.limits.requestBodyBytes;
      return reply.status(kindToHttpStatus('too-large')).send({
        error: 'body_too_large',
        message: `request body exceeds this cloudlet's limit of ${limit} bytes (limits.requestBodyBytes)`,
        context: { limit },
      });
    }
    if (err.validation) {
      return reply.status(kindToHttpStatus('invalid-argument')).send({ error: 'usage', message: `invalid request: ${err.message}` });
    }
    // Fastify's own client errors (bad JSON, unsupported media type...) carry a 4xx status.
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.status(err.statusCode).send({ error: err.code ?? 'bad_request', message: err.message });
    }
    req.log.error({ err }, 'unexpected error');
    return reply.status(kindToHttpStatus('internal')).send({ error: 'internal', message: err.message });
  });
  app.setNotFoundHandler((req, reply) => {
    return reply.status(kindToHttpStatus('not-found')).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
}

/** The node's own routes: health, metrics, info, its containers and its peers. */
function registerNodeRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const { config } = ctx;
  app.get('/healthz', { config: { public: true } }, async () => ({ ok: true, node: config.node }));

  app.get('/metrics', async (_req, reply) => {
    const text = await ctx.metrics.registry.metrics();
    return reply.type(ctx.metrics.registry.contentType).send(text);
  });

  app.get('/v1/info', async (): Promise<NodeInfo> => nodeInfo(ctx));

  app.get<{ Querystring: { all: boolean } }>(
    '/v1/containers',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: { all: { type: 'boolean', default: false } },
          additionalProperties: false,
        },
      },
    },
    async (req) => ctx.engine.listContainers(req.query.all),
  );

  app.get('/v1/peers', async (): Promise<PeerStatus[]> => {
    const results = await Promise.all(config.peers.map((p) => checkPeer(p, config.token)));
    return results.map((r) => {
      ctx.db.recordPeerCheck(r.name, r.url, r.ok ? { ok: true } : { ok: false, error: r.error ?? 'unknown error' });
      return { ...r, lastSeen: ctx.db.peer(r.name)?.lastSeen ?? null };
    });
  });
}

// ---------------------------------------------------------------- /v1/info

const CRIU_CACHE_MS = 60_000;
let criuCache: { at: number; value: Promise<{ version: string | null; error?: string }> } | null = null;

/** criu --version costs a process spawn; its answer changes only when someone reinstalls. */
function cachedCriu(): Promise<{ version: string | null; error?: string }> {
  if (criuCache && Date.now() - criuCache.at < CRIU_CACHE_MS) return criuCache.value;
  const value = criuVersion().then(
    (version) => ({ version }),
    (err: unknown) => ({ version: null, error: errorMessage(err) }),
  );
  criuCache = { at: Date.now(), value };
  return value;
}

async function engineStatus(engine: DockerEngine): Promise<EngineStatus> {
  let v: EngineVersion;
  let i: EngineInfo;
  try {
    [v, i] = await Promise.all([engine.version(), engine.info()]);
  } catch (err) {
    // An unreachable engine is part of the node's status, not a failure of /v1/info.
    if (!(err instanceof CloudletError)) throw err;
    return {
      socket: engine.socketPath,
      reachable: false,
      version: null,
      apiVersion: null,
      experimental: false,
      storageDriver: null,
      error: err.message,
    };
  }
  return {
    socket: engine.socketPath,
    reachable: true,
    version: v.version,
    apiVersion: v.apiVersion,
    experimental: i.experimental,
    storageDriver: i.storageDriver,
  };
}

export async function nodeInfo(ctx: DaemonContext): Promise<NodeInfo> {
  const [engine, criu] = await Promise.all([engineStatus(ctx.engine), cachedCriu()]);
  const blockers: string[] = [];
  if (!engine.reachable) blockers.push('engine unreachable');
  else if (!engine.experimental) blockers.push('engine not started with --experimental');
  if (criu.version === null) blockers.push(criu.error ? `criu unusable: ${criu.error}` : 'criu not installed');
  else if (compareVersions(criu.version, MIN_CRIU_VERSION) < 0) blockers.push(`criu ${criu.version} < ${MIN_CRIU_VERSION}`);
  return {
    node: ctx.config.node,
    version: ctx.version,
    engine,
    criu,
    capabilities: { checkpoint: blockers.length === 0, checkpointBlockers: blockers },
    peers: ctx.config.peers.map((p) => p.name),
  };
}

// ---------------------------------------------------------------- listening

export interface RunningDaemon {
  app: FastifyInstance;
  /** "http://127.0.0.1:7070", "unix:/run/cloudlet/a.sock" - with the real port for port 0. */
  addresses: string[];
  /** Stops accepting, lets in-flight requests finish (bounded), records daemon.stop, closes the db. */
  close(): Promise<void>;
}

const CLOSE_GRACE_MS = 5000;

export async function startDaemon(deps: ServerDeps): Promise<RunningDaemon> {
  // With mutual TLS the listeners ask every client for a certificate but let the handshake
  // finish without one (operators, browsers): peer-auth.ts decides per route.
  const tls = deps.config.tls
    ? { ...serverTlsOptions(deps.config.tls), ...(mutualTls(deps.config) ? { requestCert: true, rejectUnauthorized: false } : {}) }
    : null;
  const app = buildServer(deps);
  await app.ready();
  const { config, handler, db } = app.cloudlet;
  const servers: http.Server[] = [];
  const sockets: string[] = [];
  const addresses: string[] = [];

  const closeServers = async () => {
    await Promise.all(servers.map((s) => closeServer(s)));
    for (const path of sockets) removeIfPresent(path);
  };

  try {
    for (const [i, entry] of config.listen.entries()) {
      // The first listener is Fastify's own server; the others share its handler. With TLS,
      // TCP listeners are HTTPS servers of their own (unix sockets stay plain: mode 0600).
      const server =
        tls && !('socket' in entry)
          ? (https.createServer(tls, handler) as unknown as http.Server)
          : i === 0
            ? (app.server as http.Server)
            : http.createServer(handler);
      if ('socket' in entry) {
        await prepareSocketPath(entry.socket);
        await listen(server, { path: entry.socket }, `unix:${entry.socket}`);
        sockets.push(entry.socket);
        servers.push(server);
        // The socket grants the full API: only its owner may connect.
        chmodSync(entry.socket, 0o600);
        addresses.push(`unix:${entry.socket}`);
      } else {
        await listen(server, { host: entry.host, port: entry.port }, `${entry.host}:${entry.port}`);
        servers.push(server);
        const a = server.address() as net.AddressInfo;
        const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        addresses.push(`${tls ? 'https' : 'http'}://${host}:${a.port}`);
      }
    }
  } catch (err) {
    await closeServers();
    await app.close();
    throw err;
  }

  db.recordEvent('daemon.start', { pid: process.pid, version: app.cloudlet.version, addresses });
  app.log.info({ node: config.node, addresses, version: app.cloudlet.version, mutualTls: mutualTls(config) }, 'cloudletd listening');
  for (const w of insecureWarnings(config)) app.log.warn({ insecure: true }, w);

  let closing: Promise<void> | null = null;
  return {
    app,
    addresses,
    close: () => {
      closing ??= (async () => {
        await closeServers();
        db.recordEvent('daemon.stop', { pid: process.pid });
        await app.close();
        app.log.info({ node: config.node }, 'cloudletd stopped');
      })();
      return closing;
    },
  };
}

function listen(server: http.Server, opts: net.ListenOptions, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      reject(
        new CloudletError('listen_failed', `cannot listen on ${what}: ${err.message}`, {
          kind: 'internal',
          context: { address: what },
          cause: err,
        }),
      );
    };
    server.once('error', onError);
    server.listen(opts, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    // Keep-alive connections that never send another request would hold close() forever.
    const force = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/**
 * Makes a unix socket path usable: creates its directory, removes a stale socket left by a
 * crashed daemon, but refuses to steal a live one or to delete something that is not a socket.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) {
    throw new ConflictError(`${path} exists and is not a unix socket`, {
      context: { path },
      hint: 'choose another listen.socket path or remove the file',
    });
  }
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect({ path });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    // ECONNREFUSED is the expected answer of a stale socket; anything else is treated the same
    // because nobody can be serving on it.
    c.once('error', () => resolve(false));
  });
  if (alive) {
    throw new ConflictError(`another process is listening on ${path}`, {
      context: { path },
      hint: 'is another cloudletd running with this configuration?',
    });
  }
  unlinkSync(path);
}

function removeIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    // Node may already have removed it while closing the server.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

let cachedVersion: string | undefined;

/** The version in package.json, found by walking up from this file (works from src/ and dist/). */
export function packageVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'cloudlet' && pkg.version) return (cachedVersion = pkg.version);
    }
    const parent = dirname(dir);
    if (parent === dir)
      throw new CloudletError('no_package_json', 'cannot find cloudlet package.json above ' + fileURLToPath(import.meta.url), { kind: 'internal' });
    dir = parent;
  }
}
