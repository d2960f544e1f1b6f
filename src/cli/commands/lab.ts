// `cloudlet lab ...`: the multi-cloudlet lab on this machine (see src/lab/lab.ts).
import { Option, type Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { UsageError } from '../../util/errors.js';
import { labDown, labHealth, labUp, setLink } from '../../lab/lab.js';
import { nsenterArgs } from '../../lab/netns.js';
import { labDir, readLabState, type LabState, type RestoreMode } from '../../lab/state.js';
import { DEFAULT_ENGINE_KIND, ENGINE_KINDS, engineDockerRoot, engineImageStore, parseEngineKind, type EngineKind } from '../../lab/engines.js';
import { labHost, measureThroughput } from '../../lab/throughput.js';
import { DockerEngine } from '../../engine/docker.js';
import { probeEngineAdapter } from '../../engine/engine-adapter.js';
import { action, printJson, printTable, progress, requireRoot } from '../output.js';

function requireLab(): LabState {
  const state = readLabState();
  if (!state) throw new UsageError(`no lab is up (looked in ${labDir()})`, { hint: 'run `cloudlet lab up`' });
  return state;
}

function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(text.trim());
  if (!m) throw new UsageError(`invalid size '${text}'`, { hint: 'use e.g. 40M, 512k, 1G' });
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * mult);
}

/** What each running engine is and can restore, as its adapter says (the one `cloudlet doctor` names). */
async function engineAdapters(state: LabState): Promise<Map<string, { version: string; family: string; checkpoint: string } | { error: string }>> {
  const out = new Map<string, { version: string; family: string; checkpoint: string } | { error: string }>();
  await Promise.all(
    state.cloudlets.map(async (cl) => {
      try {
        const a = await probeEngineAdapter(new DockerEngine(cl.engine.socket, { timeoutMs: 5_000 }));
        out.set(cl.name, { version: a.engineVersion, family: a.family, checkpoint: a.restoreScope });
      } catch (err) {
        out.set(cl.name, { error: (err as Error).message });
      }
    }),
  );
  return out;
}

/** The lab as shown to users: no token (it stays in the root-only state file). */
async function publicView(state: LabState) {
  const health = labHealth(state);
  const adapters = await engineAdapters(state);
  return {
    dir: state.dir,
    createdAt: state.createdAt,
    /** Whether handoffs to these cloudlets may restore lazily. */
    restore: state.restore ?? 'eager',
    /** Docker's --userns-remap on every engine (the lab's user, its id range, what the lab added); null: none. */
    usernsRemap: state.usernsRemap ?? null,
    router: state.router,
    /** The lab's CA (peer URLs are https with mutual TLS); null: a plain-http lab. */
    ca: state.tls?.ca ?? null,
    client: state.client,
    cloudlets: state.cloudlets.map((cl) => ({
      name: cl.name,
      namespace: cl.namespace,
      address: cl.address,
      link: cl.link,
      apiUrl: cl.daemon.apiUrl,
      peerUrl: cl.daemon.peerUrl,
      engine: cl.engine.kind ?? DEFAULT_ENGINE_KIND,
      imageStore: engineImageStore(cl.engine.kind ?? DEFAULT_ENGINE_KIND),
      /** The engine's version, adapter family and what it can checkpoint and restore (or why not known). */
      engineAdapter: adapters.get(cl.name) ?? null,
      engineSocket: cl.engine.socket,
      /** Where the engine keeps containers and checkpoints (DATA_ROOT/UID.GID under remap): cloudletd's dockerDataRoot. */
      dockerRoot: engineDockerRoot(cl.engine),
      dockerHost: `unix://${cl.engine.socket}`,
      engineRunning: health.find((h) => h.name === cl.name)?.engineRunning ?? false,
      daemonRunning: health.find((h) => h.name === cl.name)?.daemonRunning ?? false,
    })),
  };
}

async function printStatus(state: LabState): Promise<void> {
  const view = await publicView(state);
  printTable(
    view.cloudlets.map((c) => ({
      name: c.name,
      namespace: c.namespace,
      address: c.address,
      link: `${c.link.bandwidth}/${c.link.latency}`,
      api: c.apiUrl,
      engine: `${c.engine} ${c.engineRunning ? 'up' : 'DOWN'}`,
      image_store: c.imageStore,
      daemon: c.daemonRunning ? 'up' : 'DOWN',
      docker_host: c.dockerHost,
    })),
    ['name', 'namespace', 'address', 'link', 'api', 'engine', 'image_store', 'daemon', 'docker_host'],
  );
  for (const c of view.cloudlets) {
    const a = c.engineAdapter;
    const what = a && 'family' in a ? `Docker ${a.version} (${a.family}): ${a.checkpoint}` : `engine not usable: ${a?.error ?? 'not probed'}`;
    process.stdout.write(`${c.name}: ${what}\n`);
  }
  const r = state.usernsRemap;
  if (r)
    process.stdout.write(
      `userns-remap: every engine remapped to ${r.user}, ids ${r.uid}-${r.uid + r.count - 1} (gids from ${r.gid}); docker roots ${view.cloudlets.map((c) => c.dockerRoot).join(', ')}\n`,
    );
  process.stdout.write(`client: ${state.client.namespace} ${state.client.address} link ${state.client.link.bandwidth}/${state.client.link.latency}\n`);
}

interface LabUpFlags {
  cloudlets: string;
  bandwidth: string;
  latency: string;
  restore?: RestoreMode;
  engine: EngineKind;
  engines?: string;
  usernsRemap?: boolean;
  json?: boolean;
}

/** `a=docker20,b=docker28` -> { a: 'docker20', b: 'docker28' }. */
export function parseEngineList(text: string): Record<string, EngineKind> {
  const out: Record<string, EngineKind> = {};
  for (const item of text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    const m = /^([a-z])=(.+)$/.exec(item);
    if (!m) throw new UsageError(`--engines: '${item}' is not NAME=ENGINE`, { hint: 'e.g. --engines a=docker20,b=docker28' });
    if (m[1]! in out) throw new UsageError(`--engines: cloudlet '${m[1]}' named twice`);
    out[m[1]!] = parseEngineKind(m[2]!, `--engines ${m[1]}`);
  }
  return out;
}

export function registerLabCommands(program: Command): void {
  const lab = program.command('lab').description('a multi-cloudlet lab on this machine (namespaces, engines, shaped links)');
  registerLabUp(lab);
  registerLabDown(lab);
  registerLabStatus(lab);
  registerLabLink(lab);
  registerLabMeasure(lab);
  registerLabExec(lab);
}

function registerLabUp(lab: Command): void {
  lab
    .command('up')
    .description('create the lab: router, client and N cloudlets, each with a Docker engine and cloudletd')
    .option('--cloudlets <n>', 'number of cloudlets', '2')
    .option('--bandwidth <rate>', 'bandwidth of every link (tc rate)', '100mbit')
    .option('--latency <delay>', 'one-way delay added in each direction of every link', '5ms')
    .addOption(
      new Option(
        '--restore <mode>',
        'lazy: handoffs may restore lazily (post-copy from the received images; by default those of 128 MiB of memory or more); eager: never (default: lazy where CRIU can)',
      ).choices(['eager', 'lazy']),
    )
    .addOption(
      new Option(
        '--engine <kind>',
        'the Docker engine of every cloudlet (docker28, docker28-containerd: Docker 28 with the overlay2 or the containerd image store; scripts/setup-docker28.sh installs it)',
      )
        .choices([...ENGINE_KINDS])
        .default(DEFAULT_ENGINE_KIND),
    )
    .option('--engines <list>', 'per-cloudlet engines overriding --engine, e.g. a=docker20,b=docker28,c=docker28-containerd')
    .option(
      '--userns-remap',
      "every engine with Docker's --userns-remap (a user and id range of the lab's, added to /etc/subuid and /etc/subgid and removed at lab down): non-root services can be handed off, each in a network namespace of its own (docker20 only)",
    )
    .option('--json', 'print the lab as JSON')
    .action(
      action(async (opts: LabUpFlags) => {
        requireRoot('the lab (network namespaces, Docker engines)');
        const t0 = Date.now();
        const state = await labUp(
          {
            cloudlets: Number(opts.cloudlets),
            link: { bandwidth: opts.bandwidth, latency: opts.latency },
            restore: opts.restore,
            engine: opts.engine,
            engines: opts.engines === undefined ? undefined : parseEngineList(opts.engines),
            usernsRemap: opts.usernsRemap === true,
          },
          progress,
        );
        if (opts.json) printJson(await publicView(state));
        else {
          await printStatus(state);
          progress(`lab up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        }
      }),
    );
}

function registerLabDown(lab: Command): void {
  lab
    .command('down')
    .description('remove everything the lab made (safe to run twice or after a crash)')
    .option('--json', 'print what was removed as JSON')
    .action(
      action(async (opts: { json?: boolean }) => {
        requireRoot('the lab (network namespaces, Docker engines)');
        const report = await labDown(progress);
        if (opts.json) printJson(report);
        else if (!report.wasUp && report.removed.length === 0) process.stdout.write('no lab is up: nothing to do\n');
        else process.stdout.write(`lab down: removed ${report.removed.length} item(s)\n`);
        for (const e of report.errors) process.stderr.write(`error: ${e}\n`);
        return report.errors.length > 0 ? 1 : 0;
      }),
    );
}

function registerLabStatus(lab: Command): void {
  lab
    .command('status')
    .description('show the lab: cloudlets, addresses, API URLs, engines')
    .option('--json', 'print as JSON')
    .action(
      action(async (opts: { json?: boolean }) => {
        const state = readLabState();
        if (!state) {
          if (opts.json) printJson({ up: false });
          else process.stdout.write('no lab is up\n');
          return 1;
        }
        if (opts.json) printJson({ up: true, ...(await publicView(state)) });
        else await printStatus(state);
        return 0;
      }),
    );
}

function registerLabLink(lab: Command): void {
  lab
    .command('link')
    .description("change a node's link (both directions), e.g. `lab link b --bandwidth 20mbit`")
    .argument('<node>', 'cloudlet name or "client"')
    .option('--bandwidth <rate>', 'tc rate, e.g. 20mbit')
    .option('--latency <delay>', 'one-way delay, e.g. 40ms')
    .option('--json', 'print the new link as JSON')
    .action(
      action(async (node: string, opts: { bandwidth?: string; latency?: string; json?: boolean }) => {
        requireRoot('the lab (network namespaces, Docker engines)');
        const state = requireLab();
        const host = labHost(state, node);
        const spec = { bandwidth: opts.bandwidth ?? host.link.bandwidth, latency: opts.latency ?? host.link.latency };
        await setLink(state, node, spec);
        if (opts.json) printJson({ node, link: spec });
        else process.stdout.write(`${node}: ${spec.bandwidth}, ${spec.latency}\n`);
      }),
    );
}

function registerLabMeasure(lab: Command): void {
  lab
    .command('measure')
    .description('measure bulk TCP throughput between two lab nodes over their shaped links')
    .requiredOption('--from <node>', 'sending node (cloudlet name or "client")')
    .requiredOption('--to <node>', 'receiving node')
    .option('--bytes <size>', 'bytes to send (e.g. 40M)', '32M')
    .option('--seconds <n>', 'upper bound on the transfer time', '20')
    .option('--json', 'print as JSON')
    .action(
      action(async (opts: { from: string; to: string; bytes: string; seconds: string; json?: boolean }) => {
        requireRoot('the lab (network namespaces, Docker engines)');
        const state = requireLab();
        const seconds = Number(opts.seconds);
        if (!(seconds > 0 && seconds <= 300)) throw new UsageError(`--seconds must be in (0, 300] (got ${opts.seconds})`);
        const r = await measureThroughput(state, opts.from, opts.to, { bytes: parseSize(opts.bytes), maxSeconds: seconds });
        if (opts.json) printJson(r);
        else process.stdout.write(`${r.from} -> ${r.to}: ${r.mbitPerSecond.toFixed(1)} Mbit/s (${r.bytes} bytes in ${r.seconds.toFixed(2)} s)\n`);
      }),
    );
}

function registerLabExec(lab: Command): void {
  lab
    .command('exec')
    .description("run a command in a lab node's network namespace, e.g. `lab exec a -- ip addr`")
    .argument('<node>', 'cloudlet name, "client" or "router"')
    .argument('<command...>', 'the command and its arguments')
    .action(
      action(async (node: string, command: string[]) => {
        requireRoot('the lab (network namespaces, Docker engines)');
        const state = requireLab();
        const ns = node === 'router' ? state.router.namespace : labHost(state, node).namespace;
        const r = spawnSync('nsenter', nsenterArgs(ns, command[0]!, command.slice(1)), { stdio: 'inherit' });
        return r.status ?? 1;
      }),
    );
}
