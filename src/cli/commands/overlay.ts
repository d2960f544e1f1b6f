// `cloudlet overlay create|inspect|push`, `cloudlet overlays`, `cloudlet run`: application
// overlays (app image minus base image), shipped to cloudlets and synthesized there on the
// first request.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { UsageError } from '../../util/errors.js';
import { DockerEngine } from '../../engine/docker.js';
import { parseCodec } from '../../transfer/codecs.js';
import { labCaFile, readLabState } from '../../lab/state.js';
import { netnsPath } from '../../lab/netns.js';
import { createOverlay } from '../../images/overlay-create.js';
import { inspectOverlayFile, overlayRawBytes } from '../../images/overlay.js';
import { uploadFile, uploadFileInNamespace, type UploadResult } from '../../images/overlay-upload.js';
import type { ServiceReply, ServiceRequest } from '../../daemon/routes-overlays.js';
import { OVERLAY_CONTENT_TYPE } from '../../daemon/routes-overlays.js';
import { CloudletClient } from '../client.js';
import { parseHealth } from '../../migration/recreate.js';
import { HANDOFF_STRATEGIES, type HandoffStrategy } from '../../migration/types.js';
import { action, printJson, printTable, progress } from '../output.js';
import { resolveNode, resolveToken, type GlobalOptions } from '../nodes.js';

const mb = (b: number) => (b / 1e6).toFixed(2);

/** The engine to create overlays on: --docker-host, a lab node's engine (--node), $DOCKER_HOST, the default socket. */
export function engineSocket(o: { dockerHost?: string; node?: string }, env: NodeJS.ProcessEnv = process.env): string {
  if (o.dockerHost) return o.dockerHost.replace(/^unix:\/\//, '');
  if (o.node) {
    const lab = readLabState();
    const cl = lab?.cloudlets.find((c) => c.name === o.node);
    if (!cl)
      throw new UsageError(`no lab cloudlet named '${o.node}'`, {
        hint: lab ? `lab cloudlets: ${lab.cloudlets.map((c) => c.name).join(', ')}` : 'no lab is up: pass --docker-host',
      });
    return cl.engine.socket;
  }
  if (env.DOCKER_HOST) {
    if (!env.DOCKER_HOST.startsWith('unix://')) throw new UsageError(`DOCKER_HOST ${env.DOCKER_HOST}: only unix:// sockets are supported`);
    return env.DOCKER_HOST.slice('unix://'.length);
  }
  return '/var/run/docker.sock';
}

/** Parses -e K=V options. */
export function parseEnv(list: readonly string[]): string[] {
  for (const e of list) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(e)) throw new UsageError(`-e ${e}: expected K=V`);
  }
  return [...list];
}

/** `cloudlet run`'s --handoff, --stateless, --health as the API's fields (issue 9). */
export function handoffOptions(o: { handoff: string; stateless?: boolean; health?: string }): Pick<ServiceRequest, 'handoff' | 'stateless' | 'health'> {
  if (!(HANDOFF_STRATEGIES as readonly string[]).includes(o.handoff)) {
    throw new UsageError(`--handoff must be one of ${HANDOFF_STRATEGIES.join(', ')} (got '${o.handoff}')`);
  }
  const health = o.health === undefined ? undefined : parseHealth(o.health);
  // Checked here too, so that the mistake is named after the CLI's flags.
  if (o.handoff === 'recreate' && !health) throw new UsageError('--handoff recreate needs --health http:PORT/PATH or tcp:PORT');
  return { handoff: o.handoff as HandoffStrategy, stateless: Boolean(o.stateless), ...(health ? { health } : {}) };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** Pushes an overlay file to a node; with `via`, from inside that lab cloudlet (over the lab links). */
export async function pushOverlay(file: string, nodeName: string, opts: GlobalOptions & { via?: string }): Promise<UploadResult<Record<string, unknown>>> {
  const spec = { file: resolve(file), path: '/v1/overlays', method: 'PUT' as const, contentType: OVERLAY_CONTENT_TYPE };
  if (opts.via) {
    const lab = readLabState();
    const from = lab?.cloudlets.find((c) => c.name === opts.via);
    const to = lab?.cloudlets.find((c) => c.name === nodeName);
    if (!lab || !from || !to) throw new UsageError(`--via needs a lab with cloudlets '${opts.via}' and '${nodeName}'`);
    return uploadFileInNamespace(netnsPath(from.namespace), {
      ...spec,
      url: to.daemon.peerUrl,
      token: resolveToken(opts, lab.token),
      ca: process.env.CLOUDLET_CA ?? labCaFile(lab),
    });
  }
  const node = await resolveNode(nodeName, opts);
  return uploadFile({ ...spec, url: node.client.baseUrl, token: node.client.token });
}

export function registerOverlayCommands(program: Command): void {
  const overlay = program.command('overlay').description('application overlays: app image minus its base image');
  registerOverlayCreate(overlay);
  registerOverlayInspect(overlay);
  registerOverlayPush(overlay);
  registerOverlaysList(program);
  registerOverlayRun(program);
}

function registerOverlayCreate(overlay: Command): void {
  overlay
    .command('create')
    .description('make an overlay of an app image on the base image it is built on')
    .requiredOption('--base <image>', 'base image (name or id)')
    .requiredOption('--app <image>', 'app image (name or id), built FROM the base')
    .requiredOption('-o, --output <file>', 'overlay file to write')
    .option('--codec <codec>', 'lz4, zstd, gzip or none', 'lz4')
    .option('--node <name>', "use this lab cloudlet's engine")
    .option('--docker-host <socket>', 'engine socket (unix://PATH); default $DOCKER_HOST or /var/run/docker.sock')
    .option('--json', 'print JSON')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const o = cmd.optsWithGlobals<{ base: string; app: string; output: string; codec: string; node?: string; dockerHost?: string; json?: boolean }>();
        const codec = parseCodec(o.codec);
        const engine = new DockerEngine(engineSocket(o), { timeoutMs: 60_000 });
        const r = await createOverlay({ engine, base: o.base, app: o.app, out: resolve(o.output), codec });
        if (o.json) return printJson({ ...r, header: r.header });
        process.stdout.write(
          `overlay ${r.id} -> ${r.path}\n` +
            `  app ${r.header.app.name ?? r.header.app.imageId}: ${mb(r.appBytes)} MB; base ${r.header.base.name ?? r.header.base.imageId}\n` +
            `  ${r.header.layers.length} layer(s), ${mb(r.layerBytes)} MB raw -> ${mb(r.fileBytes)} MB (${codec})\n` +
            `  ${r.totalMs} ms (engine save ${r.saveMs} ms, compress and write ${r.writeMs} ms)\n`,
        );
      }),
    );
}

function registerOverlayInspect(overlay: Command): void {
  overlay
    .command('inspect')
    .description("print an overlay file's header")
    .argument('<file>', 'overlay file')
    .option('--json', 'print JSON')
    .action(
      action(async (file: string, _opts: unknown, cmd: Command) => {
        const o = cmd.optsWithGlobals<{ json?: boolean }>();
        const { header, fileBytes, id } = await inspectOverlayFile(file);
        if (o.json) return printJson({ id, fileBytes, rawBytes: overlayRawBytes(header), header });
        process.stdout.write(
          `overlay ${id} (${header.format} v${header.version}, codec ${header.codec}, created ${header.created})\n` +
            `  app  ${header.app.name ?? '-'} ${header.app.imageId} (${header.app.diffIds.length} layers)\n` +
            `  base ${header.base.name ?? '-'} ${header.base.imageId} (${header.base.diffIds.length} layers)\n` +
            `  file ${mb(fileBytes)} MB, raw ${mb(overlayRawBytes(header))} MB\n\n`,
        );
        printTable(
          header.layers.map((l) => ({ diff_id: l.diffId, mb: mb(l.size) })),
          ['diff_id', 'mb'],
        );
      }),
    );
}

function registerOverlayPush(overlay: Command): void {
  overlay
    .command('push')
    .description('send an overlay file to a cloudlet (verified there before it is kept)')
    .argument('<file>', 'overlay file')
    .requiredOption('--node <name>', 'cloudlet to send it to')
    .option('--via <name>', 'lab only: send it from inside this cloudlet, over the lab links')
    .option('--json', 'print JSON')
    .action(
      action(async (file: string, _opts: unknown, cmd: Command) => {
        const o = cmd.optsWithGlobals<GlobalOptions & { node: string; via?: string; json?: boolean }>();
        const r = await pushOverlay(file, o.node, o);
        if (o.json) return printJson({ ...r.body, pushMs: r.ms, bytes: r.bytes });
        const b = r.body as { id: string; receiveMs: number };
        process.stdout.write(
          `overlay ${b.id} on ${o.node}: ${mb(r.bytes)} MB in ${r.ms} ms (${((r.bytes * 8) / 1e6 / (r.ms / 1000)).toFixed(1)} Mbit/s), verified\n`,
        );
      }),
    );
}

function registerOverlaysList(program: Command): void {
  program
    .command('overlays')
    .description('the overlays a cloudlet holds')
    .requiredOption('--node <name>', 'cloudlet')
    .option('--json', 'print JSON')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const o = cmd.optsWithGlobals<GlobalOptions & { node: string; json?: boolean }>();
        const node = await resolveNode(o.node, o);
        const list = await node.client.get<Record<string, unknown>[]>('/v1/overlays');
        if (o.json) return printJson(list);
        printTable(
          list.map((r) => ({
            id: r.id,
            app: r.appName ?? r.appImageId,
            base: r.baseName ?? r.baseImageId,
            codec: r.codec,
            mb: mb(Number(r.fileBytes)),
            received: r.received,
            synthesized: r.synthesized,
          })),
          ['id', 'app', 'base', 'codec', 'mb', 'received', 'synthesized'],
        );
      }),
    );
}

function registerOverlayRun(program: Command): void {
  program
    .command('run')
    .description('start a service from an overlay on a cloudlet (synthesizing the image on first use)')
    .requiredOption('--node <name>', 'cloudlet')
    .requiredOption('--overlay <id>', 'overlay id (cloudlet overlays --node N)')
    .option('--name <name>', 'container name')
    .option('-e, --env <K=V>', 'environment variable (repeatable)', collect, [])
    .option('--port <port>', 'container TCP port to publish on the cloudlet')
    .option('--handoff <strategy>', 'how the service follows its user: migrate (live), recreate (fresh instance, switched to when healthy) or auto', 'migrate')
    .option('--stateless', 'the service keeps no state in memory (auto then recreates it)')
    .option('--health <check>', "the service's health check: http:PORT/PATH or tcp:PORT (needed by recreate)")
    .option('--netns-holder', 'run it in a network namespace holder of its own: its handoffs restore into a namespace made before the freeze (migrate only)')
    .option('--json', 'print JSON')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const o = cmd.optsWithGlobals<
          GlobalOptions & {
            node: string;
            overlay: string;
            name?: string;
            env: string[];
            port?: string;
            handoff: string;
            stateless?: boolean;
            health?: string;
            netnsHolder?: boolean;
            json?: boolean;
          }
        >();
        const body: ServiceRequest = { overlay: o.overlay, env: parseEnv(o.env), ...handoffOptions(o), ...(o.netnsHolder ? { netnsHolder: true } : {}) };
        if (o.name) body.name = o.name;
        if (o.port !== undefined) {
          const p = Number(o.port);
          if (!(Number.isInteger(p) && p >= 1 && p <= 65535)) throw new UsageError(`--port must be 1..65535 (got ${o.port})`);
          body.port = p;
        }
        const node = await resolveNode(o.node, o);
        if (!o.json) progress(`starting a service from overlay ${o.overlay} on ${node.name}`);
        const client = new CloudletClient(node.client.baseUrl, node.client.token, { timeoutMs: 15 * 60_000 });
        const r = await client.post<ServiceReply>('/v1/services', body);
        if (o.json) return printJson(r);
        const t = r.timings;
        process.stdout.write(
          `${r.container} running on ${node.name}${r.address ? `, address ${r.address}` : ''}${r.endpoint ? `, endpoint ${r.endpoint}` : ''} (image ${r.imageId.slice(7, 19)}, ${r.synthesized ? 'synthesized now' : 'already synthesized'}${r.imageIdMatches ? '' : ', IMAGE ID MISMATCH'})\n` +
            `  transfer ${t.transferMs} ms, decompress ${t.decompressMs} ms, load ${t.loadMs} ms, create ${t.createMs} ms, start ${t.startMs} ms; request ${t.totalMs} ms\n`,
        );
        return r.imageIdMatches ? 0 : 1;
      }),
    );
}
