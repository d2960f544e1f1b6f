// Overlay routes of cloudletd.
//   PUT|POST /v1/overlays           upload an overlay file (streamed, verified whole before it
//                                   is kept; body type application/vnd.cloudlet.overlay)
//   GET      /v1/overlays           the catalog
//   GET      /v1/overlays/:id       one overlay with its header
//   DELETE   /v1/overlays/:id       forget it (file and catalog row)
//   POST     /v1/overlays/:id/synthesize   make the app image now (no-op if present)
//   POST     /v1/services           first-request provisioning: synthesize if needed, create
//                                   and start the container, answer with its endpoint and a
//                                   timing breakdown
//   PUT      /v1/images             load a whole `docker save` archive (gzip allowed): the
//                                   "ship the whole image" baseline of the benchmark
//   POST     /v1/images/layers      {imageId, diffIds}: whether the image is here, and which of
//                                   its layers (as a local image's layer prefix, the base an
//                                   overlay can be built on); used by a migration's source
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { ConflictError, NotFoundError, UsageError } from '../util/errors.js';
import { ImageError } from '../images/errors.js';
import { validateHeader, type OverlayHeader } from '../images/overlay.js';
import { DEFAULT_LIMITS, receiveOverlay, type ReceiveLimits } from '../images/overlay-verify.js';
import { requireBase, synthesize, type SynthesisResult } from '../images/overlay-synthesize.js';
import { findLayers } from '../migration/image-ship.js';
import { handoffLabels } from '../migration/recreate.js';
import { LayersQuerySchema, OVERLAY_CONTENT_TYPE, ServiceRequestSchema, type ServiceRequest } from '../api/schemas/overlays.js';
import { type HandoffStrategy } from '../migration/types.js';
import { holderCreateOptions, holderNameFor, joiningHolder } from '../network/netns-holder.js';
import type { ContainerCreateOptions, DockerEngine } from '../engine/docker.js';
import type { ServiceNetwork } from '../network/service-network.js';
import type { OverlayRow } from './db.js';
import type { DaemonContext } from './context.js';

export { OVERLAY_CONTENT_TYPE };

const layersSchema = LayersQuerySchema;
const serviceSchema = ServiceRequestSchema;

export type { ServiceRequest };

export interface ServiceTimings {
  /** Receiving the overlay (when it was pushed; 0 if the image was already here before). */
  transferMs: number;
  decompressMs: number;
  loadMs: number;
  createMs: number;
  startMs: number;
  /** Routing the service address to this cloudlet (0 without a service network). */
  announceMs: number;
  /** This request, from its start to the container running. */
  totalMs: number;
}

export interface ServiceReply {
  container: string;
  id: string;
  overlay: string;
  imageId: string;
  imageIdMatches: boolean;
  synthesized: boolean;
  endpoint: string | null;
  address: string | null;
  ports: Record<string, number>;
  timings: ServiceTimings;
}

/** The catalog row as the API shows it (header only on the single-overlay route). */
function publicRow(r: OverlayRow, withHeader = false): Record<string, unknown> {
  const { header, path: _path, ...rest } = r;
  return withHeader ? { ...rest, header } : rest;
}

/** limits.overlayBytes of the config; $CLOUDLET_OVERLAY_MAX_BYTES still overrides it (benchmarks). */
function overlayLimits(configured: number): ReceiveLimits {
  const env = Number(process.env.CLOUDLET_OVERLAY_MAX_BYTES);
  const n = Number.isSafeInteger(env) && env > 0 ? env : configured;
  return { maxFileBytes: n, maxRawBytes: Math.max(n * 4, DEFAULT_LIMITS.maxRawBytes) };
}

/** What the overlay routes share: the daemon, where overlays are kept, the upload limits and the syntheses under way. */
interface OverlayRoutes {
  ctx: DaemonContext;
  dir: string;
  limits: ReceiveLimits;
  // One synthesis per overlay at a time: a second first request waits for the first.
  inflight: Map<string, Promise<SynthesisResult>>;
}

export function registerOverlayRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  const { config } = ctx;
  const routes: OverlayRoutes = {
    ctx,
    dir: join(config.dataDir, 'overlays'),
    limits: overlayLimits(config.limits.overlayBytes),
    inflight: new Map(),
  };

  // Overlay and image bodies are streams consumed by the route (never buffered whole).
  for (const type of [OVERLAY_CONTENT_TYPE, 'application/gzip', 'application/x-tar']) {
    app.addContentTypeParser(type, (_req, payload, done) => done(null, payload));
  }

  registerOverlayCatalogRoutes(app, routes);
  registerServiceRoute(app, routes);
  registerImageRoutes(app, routes);
}

/** The image of a new service's network namespace holder (the spare's), or a clear refusal. */
function holderImageFor(ctx: DaemonContext, handoff: HandoffStrategy): string {
  if (handoff !== 'migrate') {
    throw new UsageError(`a service in a network namespace holder is handed off by migration only (handoff '${handoff}' asked)`, {
      hint: 'drop netnsHolder, or use handoff migrate',
    });
  }
  const image = ctx.config.netnsSpare?.image;
  if (!image) throw new UsageError('netnsHolder needs the holder image: set netnsSpare in the cloudletd configuration');
  return image;
}

function overlayOr404(ctx: DaemonContext, id: string): OverlayRow {
  const row = ctx.db.overlay(id);
  if (!row) throw new NotFoundError('overlay', id, { hint: `\`cloudlet overlays --node ${ctx.config.node}\` lists the overlays of this cloudlet` });
  return row;
}

function checkLength(raw: string | undefined, limit: number): void {
  const len = raw === undefined ? NaN : Number(raw);
  if (Number.isFinite(len) && len > limit) {
    throw new ImageError('overlay_too_large', `upload of ${len} bytes exceeds this cloudlet's limit of ${limit} bytes (limits.overlayBytes)`, {
      context: { size: len, limit },
    });
  }
}

/** Receives an uploaded overlay, verified whole, and records it in the catalog. */
async function upload(routes: OverlayRoutes, req: { headers: Record<string, string | string[] | undefined>; body: unknown }) {
  const { dir, limits } = routes;
  const { config, engine, db } = routes.ctx;
  checkLength(req.headers['content-length'] as string | undefined, limits.maxFileBytes);
  const body = req.body as Readable | undefined;
  if (!body || typeof (body as Readable)[Symbol.asyncIterator] !== 'function') {
    throw new UsageError(`send the overlay file as the request body (Content-Type: ${OVERLAY_CONTENT_TYPE})`);
  }
  const r = await receiveOverlay({
    source: body,
    dir,
    limits,
    beforeBody: (header) => requireBase(engine, header, config.node),
  });
  const row: Omit<OverlayRow, 'synthesized'> = {
    id: r.id,
    appImageId: r.header.app.imageId,
    appName: r.header.app.name,
    baseImageId: r.header.base.imageId,
    baseName: r.header.base.name,
    codec: r.header.codec,
    path: r.path,
    fileBytes: r.fileBytes,
    rawBytes: r.rawBytes,
    layers: r.header.layers.length,
    header: r.header as unknown as Record<string, unknown>,
    receiveMs: r.receiveMs,
    received: new Date().toISOString(),
  };
  db.upsertOverlay(row);
  db.recordEvent('overlay.received', { id: r.id, app: r.header.app.imageId, fileBytes: r.fileBytes, receiveMs: r.receiveMs });
  return { ...publicRow({ ...row, synthesized: null }), tarEntries: r.tarEntries };
}

/** Makes the overlay's app image, or joins the synthesis of it already under way. */
function synth(routes: OverlayRoutes, row: OverlayRow): Promise<SynthesisResult> {
  const { inflight } = routes;
  const { config, engine, db } = routes.ctx;
  const running = inflight.get(row.id);
  if (running) return running;
  const header: OverlayHeader = validateHeader(row.header);
  const p = synthesize({ engine, path: row.path, header, node: config.node }).then((r) => {
    if (r.synthesized) {
      db.markOverlaySynthesized(row.id);
      db.recordEvent('overlay.synthesized', { id: row.id, imageId: r.imageId, decompressMs: r.decompressMs, loadMs: r.loadMs });
    }
    return r;
  });
  inflight.set(row.id, p);
  const clear = () => inflight.delete(row.id);
  p.then(clear, clear);
  return p;
}

/** Upload, catalog, delete and synthesis of overlays (/v1/overlays...). */
function registerOverlayCatalogRoutes(app: FastifyInstance, routes: OverlayRoutes): void {
  const { ctx, inflight } = routes;
  const { db } = ctx;

  app.put('/v1/overlays', async (req, reply) => reply.status(201).send(await upload(routes, req)));
  app.post('/v1/overlays', async (req, reply) => reply.status(201).send(await upload(routes, req)));

  app.get('/v1/overlays', async () => db.overlays().map((r) => publicRow(r)));

  app.get<{ Params: { id: string } }>('/v1/overlays/:id', async (req) => publicRow(overlayOr404(ctx, req.params.id), true));

  app.delete<{ Params: { id: string } }>('/v1/overlays/:id', async (req) => {
    const row = overlayOr404(ctx, req.params.id);
    if (inflight.has(row.id)) throw new ConflictError(`overlay ${row.id} is being synthesized`);
    await rm(row.path, { force: true });
    db.deleteOverlay(row.id);
    return { ok: true, id: row.id };
  });

  app.post<{ Params: { id: string } }>('/v1/overlays/:id/synthesize', async (req) => synth(routes, overlayOr404(ctx, req.params.id)));
}

/** POST /v1/services: first-request provisioning. */
function registerServiceRoute(app: FastifyInstance, routes: OverlayRoutes): void {
  app.post('/v1/services', async (req, reply): Promise<ServiceReply> => {
    const result = await provisionService(routes, req);
    return reply.status(201).send(result);
  });
}

/** The create options of a new service's containers: the app's, and the holder's whose network it joins (netnsHolder). */
function serviceContainers(opts: {
  name: string;
  row: OverlayRow;
  /** The synthesized image's id on this engine (not the config's digest on the containerd store). */
  imageId: string;
  request: ServiceRequest;
  labels: Record<string, string>;
  holderImage: string | null;
  portKey: string | null;
  svcNet: ServiceNetwork | null;
  address: string | null;
}) {
  const { name, row, imageId, request: o, labels, holderImage, portKey, svcNet, address } = opts;
  const ports = portKey ? { ExposedPorts: { [portKey]: {} }, PortBindings: { [portKey]: [{ HostPort: '' }] } } : null;
  const network = {
    ...(ports ? { ExposedPorts: ports.ExposedPorts } : {}),
    HostConfig: { ...(ports ? { PortBindings: ports.PortBindings } : {}), NetworkMode: svcNet?.name ?? 'default' },
    ...(svcNet && address ? { NetworkingConfig: { EndpointsConfig: { [svcNet.name]: { IPAMConfig: { IPv4Address: address } } } } } : {}),
  };
  const app: ContainerCreateOptions = {
    name,
    Image: imageId,
    Env: o.env,
    ...(o.cmd ? { Cmd: o.cmd } : {}),
    Labels: { 'cloudlet.overlay': row.id, ...labels },
  };
  // In a holder, the network (address, published port) is the holder's and the app joins it.
  const holderBase = holderImage ? holderCreateOptions({ name: holderNameFor(name), image: holderImage, network: network.HostConfig.NetworkMode }) : null;
  const holder = holderBase ? { ...holderBase, ...network, HostConfig: { ...holderBase.HostConfig, ...network.HostConfig } } : null;
  return { app, network, holder };
}

/** Creates and starts the holder (if any), then creates and starts the app; `made` collects what was created. */
async function createAndStart(opts: {
  engine: DockerEngine;
  containers: ReturnType<typeof serviceContainers>;
  made: string[];
}): Promise<{ id: string; createdAt: number }> {
  const { engine, made } = opts;
  const { app, network, holder } = opts.containers;
  if (holder) {
    made.push(await engine.createContainer(holder));
    await engine.startContainer(made[0]!);
  }
  const id = await engine.createContainer(holder ? joiningHolder(app, holder.name!) : { ...app, ...network });
  made.push(id);
  const createdAt = performance.now();
  await engine.startContainer(id);
  return { id, createdAt };
}

/** Provisions a service from an overlay: synthesis if needed, its containers, its address; removes what it made on failure. */
async function provisionService(routes: OverlayRoutes, req: { body: unknown; log: FastifyBaseLogger }): Promise<ServiceReply> {
  const { ctx } = routes;
  const { config, engine, db } = ctx;
  const parsed = serviceSchema.safeParse(req.body ?? {});
  if (!parsed.success) {
    throw new UsageError(`invalid service request: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`);
  }
  const o = parsed.data;
  const started = performance.now();
  const row = overlayOr404(ctx, o.overlay);
  const labels = handoffLabels(o); // refuses recreate without a health check, before any work
  const holderImage = o.netnsHolder ? holderImageFor(ctx, o.handoff) : null;
  const name = o.name ?? `ovl-${row.id}-${Math.random().toString(16).slice(2, 8)}`;
  if (await engine.containerExists(name))
    throw new ConflictError(`a container named '${name}' already exists on ${config.node}`, { hint: 'choose another --name' });
  const s = await synth(routes, row);
  const t1 = performance.now();
  const portKey = o.port !== undefined ? `${o.port}/tcp` : null;
  const svcNet = o.serviceNetwork ? ctx.serviceNetwork : null;
  // Chosen by us, not the engine's IPAM: see ServiceNetwork.allocate.
  const address = svcNet ? await svcNet.allocate(db.movedAddresses()) : null;
  let id: string;
  let t2: number;
  const containers = serviceContainers({ name, row, imageId: s.imageId, request: o, labels, holderImage, portKey, svcNet, address });
  const { holder } = containers;
  const made: string[] = [];
  const removeMade = async () => {
    for (const c of made.splice(0).reverse()) {
      await engine
        .removeContainer(c, { force: true })
        .catch((e: unknown) => req.log.warn({ err: e, container: c }, 'removing a container of a failed provisioning failed'));
    }
  };
  try {
    ({ id, createdAt: t2 } = await createAndStart({ engine, containers, made }));
  } catch (err) {
    await removeMade();
    throw err;
  } finally {
    if (svcNet && address) svcNet.release(address);
  }
  const t3 = performance.now();
  const net = await engine.containerNetwork(holder ? holder.name! : id, svcNet?.name);
  let announceMs = 0;
  if (svcNet && net.ip) {
    try {
      announceMs = await svcNet.announce(net.ip);
    } catch (err) {
      await removeMade();
      throw err;
    }
  }
  const host = config.listen.find((l): l is { host: string; port: number } => 'host' in l)?.host ?? null;
  const hostPort = portKey ? net.ports[portKey] : undefined;
  const endpoint = hostPort && host ? `http://${host}:${hostPort}` : net.ip && o.port ? `http://${net.ip}:${o.port}` : null;
  const result: ServiceReply = {
    container: name,
    id,
    overlay: row.id,
    imageId: s.imageId,
    imageIdMatches: s.imageIdMatches,
    synthesized: s.synthesized,
    endpoint,
    address: net.ip,
    ports: net.ports,
    timings: {
      transferMs: s.synthesized ? row.receiveMs : 0,
      decompressMs: s.decompressMs,
      loadMs: s.loadMs,
      createMs: Math.round(t2 - t1),
      startMs: Math.round(t3 - t2),
      announceMs: Math.round(announceMs),
      totalMs: Math.round(t3 - started),
    },
  };
  db.recordEvent('service.started', { container: name, overlay: row.id, timings: result.timings });
  return result;
}

/** What a migration's source asks of the images here (/v1/images/layers), and the whole-image upload (PUT /v1/images). */
function registerImageRoutes(app: FastifyInstance, routes: OverlayRoutes): void {
  const { limits } = routes;
  const { engine } = routes.ctx;

  app.post('/v1/images/layers', async (req) => {
    const parsed = layersSchema.safeParse(req.body ?? {});
    if (!parsed.success) {
      throw new UsageError(`invalid layers query: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ')}`);
    }
    return findLayers(engine, parsed.data);
  });

  app.put('/v1/images', async (req) => {
    checkLength(req.headers['content-length'], limits.maxFileBytes);
    const body = req.body as Readable | undefined;
    if (!body || typeof body[Symbol.asyncIterator] !== 'function') throw new UsageError('send a docker-save archive as the request body');
    const gz = req.headers['content-type'] === 'application/gzip' || req.headers['content-encoding'] === 'gzip';
    const started = performance.now();
    let wireBytes = 0;
    body.on('data', (c: Buffer) => {
      wireBytes += c.length;
      if (wireBytes > limits.maxFileBytes)
        body.destroy(new ImageError('overlay_too_large', `upload exceeds this cloudlet's limit of ${limits.maxFileBytes} bytes (limits.overlayBytes)`));
    });
    const archive = gz ? body.pipe(createGunzip()) : body;
    if (gz) body.on('error', (e) => archive.destroy(e));
    const loaded = await engine.loadImage(archive);
    return { loaded, wireBytes, ms: Math.round(performance.now() - started) };
  });
}
