// `cloudlet bench overlay`: overlays created on cloudlet a, pushed to cloudlet b over the
// lab link, synthesized and started there on the first request; with two baselines measured
// in the same run on the same cloudlet:
//   (a) the 2016 prototype's synthesis: untar the saved base image, lay the overlay's layers
//       on it, re-tar the whole image and `docker load` it;
//   (b) shipping the whole app image: docker save | gzip, push over the lab link, gunzip | load.
// Workloads (src/workloads/overlay-apps.ts): ~200 MB of app files on the ~106 MB node base,
// and ~2 MB of app files. Every figure is measured here; nothing is estimated.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { CloudletError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { DockerEngine } from '../engine/docker.js';
import { probeEngineAdapter } from '../engine/engine-adapter.js';
import { ApiClient } from '../api/client/client.js';
import { IMAGE_CACHE_DIR } from '../lab/lab.js';
import { onLab } from './lab-session.js';
import { netnsPath } from '../lab/netns.js';
import { labCaFile, type LabCloudlet, type LabState } from '../lab/state.js';
import type { CodecName } from '../transfer/codecs.js';
import { FrameReader } from '../transfer/frame-reader.js';
import { loadImageArchive, NODE_IMAGE } from '../images/base-images.js';
import { createOverlay } from '../images/overlay-create.js';
import { digestHex, loadManifest, readHeader, type OverlayHeader } from '../images/overlay.js';
import { uploadFileInNamespace } from '../images/overlay-upload.js';
import { OVERLAY_CONTENT_TYPE, type ServiceReply } from '../daemon/routes-overlays.js';
import { buildAppArchive, LARGE_APP, SMALL_APP, type AppSpec } from '../workloads/overlay-apps.js';

export interface CodecRun {
  codec: CodecName;
  overlayBytes: number;
  overlayRawBytes: number;
  createMs: number;
  pushMs: number;
  pushMbitPerSec: number;
  synthesisMs: number;
  decompressMs: number;
  loadMs: number;
  createContainerMs: number;
  startMs: number;
  firstRequestMs: number;
  imageIdMatches: boolean;
  serviceAnswered: boolean;
}

export interface PrototypeBaseline {
  synthesisMs: number;
  untarBaseMs: number;
  layOverlayMs: number;
  retarMs: number;
  loadMs: number;
  archiveBytes: number;
  imageIdMatches: boolean;
}

export interface FullImageBaseline {
  bytes: number;
  saveGzipMs: number;
  pushAndLoadMs: number;
  totalMs: number;
  imageIdMatches: boolean;
}

export interface WorkloadResult {
  name: 'large' | 'small';
  image: string;
  /** The app's id on the engines (its manifest's digest on the containerd store). */
  appImageId: string;
  /** The sha256 of the app's config (its id on the classic store). */
  appConfigDigest: string;
  appBytes: number;
  baseBytes: number;
  /** The headline codec's figures (the first of --codecs). */
  codec: CodecName;
  overlayRawBytes: number;
  overlayBytes: number;
  fullImageBytes: number;
  synthesisMs: number;
  baselinePrototypeSynthesisMs: number;
  /** baselinePrototypeSynthesisMs / synthesisMs. */
  synthesisSpeedup: number;
  imageIdMatches: boolean;
  codecs: CodecRun[];
  baselines: { prototype: PrototypeBaseline; fullImage: FullImageBaseline };
}

export interface OverlayBenchResult {
  bench: 'overlay';
  date: string;
  /** The engine of both cloudlets (the lab's kind of a, and what its engine reports). */
  engine: { kind: string; version: string; imageStore: string };
  machine: { cores: number; memoryGiB: number; kernel: string; loadAverage: number[] };
  link: { bandwidth: string; latency: string };
  workloads: WorkloadResult[];
  /** The 2016 prototype's published figures, for comparison (not measured here). */
  reference2016: { large: { overlayMB: number; synthesisS: number }; small: { overlayMB: number; synthesisS: number } };
}

export interface OverlayBenchOptions {
  codecs: CodecName[];
  workloads: ('large' | 'small')[];
  progress: (msg: string) => void;
}

const SPECS: Record<'large' | 'small', AppSpec> = { large: LARGE_APP, small: SMALL_APP };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runOverlayBench(opts: OverlayBenchOptions): Promise<OverlayBenchResult> {
  return onLab(opts.progress, async (lab) => {
    const work = join(os.tmpdir(), `cloudlet-bench-overlay-${process.pid}`);
    try {
      await mkdir(work, { recursive: true });
      return await runOnLab(lab, work, opts);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
}

function engineOf(cl: LabCloudlet): DockerEngine {
  return new DockerEngine(cl.engine.socket, { timeoutMs: 120_000 });
}

/** Removes the app image (and containers made from it) so that the next run starts equal. */
async function removeApp(engine: DockerEngine, imageId: string): Promise<void> {
  for (const c of await engine.listContainers(true)) {
    if (c.image === imageId || c.name.startsWith('bench-ovl-')) await engine.removeContainer(c.id, { force: true });
  }
  await engine.removeImage(imageId, { force: true });
}

/** The lab as the bench uses it: overlays are created on `a` and pushed to `b`, which provisions them. */
interface BenchLab {
  lab: LabState;
  a: LabCloudlet;
  b: LabCloudlet;
  ea: DockerEngine;
  eb: DockerEngine;
  clientB: ApiClient;
  /** Where the overlays and baseline archives are written. */
  work: string;
  progress: (msg: string) => void;
}

export async function runOnLab(lab: LabState, work: string, opts: OverlayBenchOptions): Promise<OverlayBenchResult> {
  if (lab.cloudlets.length < 2) throw new CloudletError('bench_failed', 'the lab needs at least 2 cloudlets', { kind: 'internal' });
  const [a, b] = [lab.cloudlets[0]!, lab.cloudlets[1]!];
  const bench: BenchLab = {
    lab,
    a,
    b,
    ea: engineOf(a),
    eb: engineOf(b),
    clientB: new ApiClient({ baseUrl: b.daemon.apiUrl, token: lab.token, timeoutMs: 15 * 60_000 }),
    work,
    progress: opts.progress,
  };
  const adapter = await probeEngineAdapter(bench.ea);
  const engine = { kind: a.engine.kind ?? 'docker20', version: adapter.engineVersion, imageStore: adapter.imageStore };
  const workloads: WorkloadResult[] = [];
  for (const wl of opts.workloads) workloads.push(await benchWorkload(bench, { wl, codecs: opts.codecs }));
  return {
    bench: 'overlay',
    date: new Date().toISOString(),
    engine,
    machine: {
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      kernel: os.release(),
      loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
    },
    link: b.link,
    workloads,
    reference2016: { large: { overlayMB: 69, synthesisS: 18 }, small: { overlayMB: 0.69, synthesisS: 4 } },
  };
}

/** One workload: an overlay per codec, created, pushed and provisioned, then the two baselines. */
async function benchWorkload(bench: BenchLab, opts: { wl: 'large' | 'small'; codecs: CodecName[] }): Promise<WorkloadResult> {
  const { lab, a, b, ea, eb, work, progress } = bench;
  const { wl } = opts;
  const spec = SPECS[wl];
  progress(`${wl}: building the app image ${spec.name} (cached after the first run)`);
  const app = await buildAppArchive(IMAGE_CACHE_DIR, spec);
  // The app's id on a's engine: its config's digest (app.imageId) on the classic store, its
  // manifest's on the containerd store; found by name, then the same id is expected on b.
  if (!(await ea.inspectImage(spec.name))) {
    progress(`${wl}: loading ${spec.name} on ${a.name}`);
    await loadImageArchive(a.engine.socket, app.archivePath);
  }
  const appImg = await ea.inspectImage(spec.name);
  if (!appImg) throw new CloudletError('bench_failed', `${spec.name} is not on ${a.name} after loading it`, { kind: 'internal' });
  const appId = appImg.id;
  await removeApp(eb, appId);
  const baseImg = (await ea.inspectImage(NODE_IMAGE))!;

  const runs: CodecRun[] = [];
  const files = new Map<CodecName, { path: string; header: OverlayHeader }>();
  for (const codec of opts.codecs) {
    const { result, file } = await codecRun(bench, { wl, spec, codec, appImageId: appId });
    runs.push(result);
    files.set(codec, file);
  }

  const headline = opts.codecs[0]!;
  progress(`${wl}: baseline (a), the 2016 prototype's synthesis on ${b.name} (${headline} overlay)`);
  const prototype = await prototypeSynthesis(eb, app.base.archivePath, files.get(headline)!, join(work, `${wl}-prototype`), appId);
  await removeApp(eb, appId);

  progress(`${wl}: baseline (b), docker save | gzip | push | load of the whole image`);
  const fullImage = await shipWholeImage(lab, a, b, ea, eb, appId, join(work, `${wl}-full.tar.gz`));
  await removeApp(eb, appId);

  const h = runs[0]!;
  return {
    name: wl,
    image: spec.name,
    appImageId: appId,
    appConfigDigest: app.imageId,
    appBytes: appImg.size,
    baseBytes: baseImg.size,
    codec: headline,
    overlayRawBytes: h.overlayRawBytes,
    overlayBytes: h.overlayBytes,
    fullImageBytes: fullImage.bytes,
    synthesisMs: h.synthesisMs,
    baselinePrototypeSynthesisMs: prototype.synthesisMs,
    synthesisSpeedup: Math.round((prototype.synthesisMs / Math.max(1, h.synthesisMs)) * 100) / 100,
    imageIdMatches: runs.every((r) => r.imageIdMatches) && prototype.imageIdMatches && fullImage.imageIdMatches,
    codecs: runs,
    baselines: { prototype, fullImage },
  };
}

/**
 * One codec: the overlay created on a, pushed to b, provisioned there on the first request
 * and asked until the app answers; b is left without the app image and the overlay.
 */
async function codecRun(
  bench: BenchLab,
  opts: { wl: 'large' | 'small'; spec: AppSpec; codec: CodecName; appImageId: string },
): Promise<{ result: CodecRun; file: { path: string; header: OverlayHeader } }> {
  const { lab, a, b, ea, eb, clientB, work, progress } = bench;
  const { wl, spec, codec } = opts;
  progress(`${wl}/${codec}: create on ${a.name}`);
  const file = join(work, `${wl}-${codec}.ovl`);
  const created = await createOverlay({ engine: ea, base: NODE_IMAGE, app: spec.name, out: file, codec });

  progress(`${wl}/${codec}: push ${(created.fileBytes / 1e6).toFixed(1)} MB ${a.name} -> ${b.name} over the lab link`);
  const push = await uploadFileInNamespace<{ id: string }>(netnsPath(a.namespace), {
    url: b.daemon.peerUrl,
    token: lab.token,
    ca: labCaFile(lab),
    file,
    path: '/v1/overlays',
    contentType: OVERLAY_CONTENT_TYPE,
  });

  progress(`${wl}/${codec}: first request on ${b.name} (synthesize, create, start)`);
  const svc = await clientB.post<ServiceReply>('/v1/services', {
    overlay: push.body.id,
    name: `bench-ovl-${wl}-${codec}`,
    port: 8080,
    env: [`APP_NAME=${wl}`],
  });
  let answered = false;
  for (let i = 0; i < 50 && !answered; i++) {
    const r = await eb.exec(svc.id, ['wget', '-qO-', 'http://127.0.0.1:8080/']);
    answered = r.exitCode === 0 && r.stdout.includes(`"files":${spec.files}`);
    if (!answered) await sleep(100);
  }
  const result: CodecRun = {
    codec,
    overlayBytes: created.fileBytes,
    overlayRawBytes: created.layerBytes,
    createMs: created.totalMs,
    pushMs: push.ms,
    pushMbitPerSec: Math.round(((push.bytes * 8) / 1e6 / (push.ms / 1000)) * 10) / 10,
    synthesisMs: svc.timings.decompressMs + svc.timings.loadMs,
    decompressMs: svc.timings.decompressMs,
    loadMs: svc.timings.loadMs,
    createContainerMs: svc.timings.createMs,
    startMs: svc.timings.startMs,
    firstRequestMs: svc.timings.totalMs,
    imageIdMatches: svc.imageIdMatches && svc.imageId === opts.appImageId,
    serviceAnswered: answered,
  };
  await removeApp(eb, opts.appImageId);
  await clientB.delete(`/v1/overlays/${push.body.id}`);
  return { result, file: { path: file, header: created.header } };
}

/**
 * The 2016 prototype's method, on the cloudlet's engine: untar the saved base image, lay the
 * overlay's layers (decompressed) and the app's config and manifest on it, re-tar the whole
 * image and load it.
 */
async function prototypeSynthesis(
  engine: DockerEngine,
  baseArchive: string,
  overlay: { path: string; header: OverlayHeader },
  dir: string,
  expectedImageId: string,
): Promise<PrototypeBaseline> {
  const tree = join(dir, 'image');
  const whole = join(dir, 'image.tar');
  await rm(dir, { recursive: true, force: true });
  await mkdir(tree, { recursive: true });
  try {
    const t0 = performance.now();
    await run('tar', ['-xf', baseArchive, '-C', tree], { timeoutMs: 600_000 });
    const t1 = performance.now();
    const { rest } = await readHeader(createReadStream(overlay.path, { highWaterMark: 1 << 20 }));
    let out: ReturnType<typeof createWriteStream> | null = null;
    let closing: Promise<void>[] = [];
    for await (const ev of new FrameReader(rest)) {
      if (ev.type === 'begin') {
        const name = ev.artifact.name;
        let target: string;
        if (name === 'manifest.json') target = join(tree, 'manifest.json');
        else if (name === 'config.json') target = join(tree, `${digestHex(overlay.header.app.imageId)}.json`);
        else {
          await mkdir(join(tree, name.slice('layer/'.length)), { recursive: true });
          target = join(tree, name.slice('layer/'.length), 'layer.tar');
        }
        out = createWriteStream(target);
        const o = out;
        closing.push(
          new Promise((res, rej) => {
            o.on('close', () => res());
            o.on('error', rej);
          }),
        );
      } else if (ev.type === 'data') {
        if (!out!.write(ev.chunk)) await new Promise<void>((r) => out!.once('drain', () => r()));
      } else if (ev.type === 'end') {
        out!.end();
      }
    }
    await Promise.all(closing);
    closing = [];
    // The base's own manifest is replaced by the app's (which lists the base layers too).
    await writeFile(join(tree, 'manifest.json'), loadManifest(overlay.header));
    await rm(join(tree, 'repositories'), { force: true });
    const t2 = performance.now();
    await run('tar', ['-cf', whole, '-C', tree, '.'], { timeoutMs: 600_000 });
    const t3 = performance.now();
    await engine.loadImage(createReadStream(whole));
    const t4 = performance.now();
    const img = await engine.inspectImage(expectedImageId);
    return {
      synthesisMs: Math.round(t4 - t0),
      untarBaseMs: Math.round(t1 - t0),
      layOverlayMs: Math.round(t2 - t1),
      retarMs: Math.round(t3 - t2),
      loadMs: Math.round(t4 - t3),
      archiveBytes: (await stat(whole)).size,
      imageIdMatches: img?.id === expectedImageId,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** docker save (a) | gzip > file, then the file pushed from a to b over the lab link, gunzip | docker load on b. */
async function shipWholeImage(
  lab: LabState,
  a: LabCloudlet,
  b: LabCloudlet,
  ea: DockerEngine,
  eb: DockerEngine,
  imageId: string,
  file: string,
): Promise<FullImageBaseline> {
  const t0 = performance.now();
  await pipeline(await ea.saveImage(imageId), createGzip(), createWriteStream(file));
  const t1 = performance.now();
  const bytes = (await stat(file)).size;
  await uploadFileInNamespace(netnsPath(a.namespace), {
    url: b.daemon.peerUrl,
    token: lab.token,
    ca: labCaFile(lab),
    file,
    path: '/v1/images',
    contentType: 'application/gzip',
  });
  const t2 = performance.now();
  const img = await eb.inspectImage(imageId);
  await rm(file, { force: true });
  return { bytes, saveGzipMs: Math.round(t1 - t0), pushAndLoadMs: Math.round(t2 - t1), totalMs: Math.round(t2 - t0), imageIdMatches: img?.id === imageId };
}
