// A lab of a test's own (own directories and namespace prefix), brought up through the real
// CLI and always taken down again, even when the test fails.
import { after, before, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import Docker from 'dockerode';
import { cliJson, runCli, type CliResult } from './cli.js';
import { readLabState, type EngineKind, type LabState } from '../../src/lab/state.js';
import { BUSYBOX_COUNTER_SCRIPT } from '../../src/workloads/stateful-service.js';
import { GAP_SLACK_MS, type HandoffBenchResult } from '../../src/bench/handoff.js';

export interface TestLab {
  env: NodeJS.ProcessEnv;
  state: () => LabState;
  docker: (node: string) => Docker;
  cli: (args: readonly string[], timeoutMs?: number) => Promise<CliResult>;
  cliJson: <T = any>(args: readonly string[], timeoutMs?: number) => Promise<T>;
}

/** Registers before/after hooks that bring a lab up and down; `name` keeps labs apart. */
export function useLab(
  name: string,
  opts: {
    cloudlets?: number;
    bandwidth?: string;
    latency?: string;
    restore?: 'lazy' | 'eager';
    /** `lab up --engine`: every cloudlet's engine (test/helpers/lab-engine.ts's LAB_ENGINE). */ engine?: EngineKind;
    /** `lab up --engines`, e.g. a=docker20,b=docker28 */ engines?: string;
    /** `lab up --userns-remap`: every engine with Docker's --userns-remap. */ usernsRemap?: boolean;
  } = {},
): TestLab {
  const env = {
    CLOUDLET_LAB_DIR: `/var/lib/cloudlet/test-${name}`,
    CLOUDLET_LAB_RUN_DIR: `/run/cltest-${name}`,
    CLOUDLET_LAB_PREFIX: `clt${name.slice(0, 4)}-`,
  };
  let state: LabState | null = null;
  const lab: TestLab = {
    env,
    state: () => {
      assert.ok(state, 'the lab is not up');
      return state;
    },
    docker: (node) => {
      const cl = lab.state().cloudlets.find((c) => c.name === node);
      assert.ok(cl, `no cloudlet ${node}`);
      return new Docker({ socketPath: cl.engine.socket, timeout: 60_000 });
    },
    cli: (args, timeoutMs) => runCli(args, { env, ...(timeoutMs ? { timeoutMs } : {}) }),
    cliJson: (args, timeoutMs) => cliJson(args, { env, ...(timeoutMs ? { timeoutMs } : {}) }),
  };
  before(async () => {
    await runCli(['lab', 'down'], { env });
    await cliJson(
      [
        'lab',
        'up',
        '--cloudlets',
        String(opts.cloudlets ?? 2),
        '--bandwidth',
        opts.bandwidth ?? '100mbit',
        '--latency',
        opts.latency ?? '5ms',
        ...(opts.restore ? ['--restore', opts.restore] : []),
        ...(opts.engine ? ['--engine', opts.engine] : []),
        ...(opts.engines ? ['--engines', opts.engines] : []),
        ...(opts.usernsRemap ? ['--userns-remap'] : []),
      ],
      { env, timeoutMs: 600_000 },
    );
    state = readLabState(env.CLOUDLET_LAB_DIR);
    const kinds = state?.cloudlets.map((c) => c.engine.kind);
    if (opts.engine)
      assert.deepEqual(
        kinds,
        kinds?.map(() => opts.engine),
        `every cloudlet on ${opts.engine}`,
      );
  });
  after(async () => {
    const r = await runCli(['lab', 'down'], { env });
    assert.equal(r.code, 0, `lab down: ${r.stderr}`);
  });
  return lab;
}

/**
 * The busybox counter's value (BUSYBOX_COUNTER_SCRIPT). The loop truncates /tmp/counter and
 * writes it again every 0.1 s, and a checkpoint can catch the file in between: an empty read
 * is retried (1 s at most). NaN if it stays empty, so that a comparison fails.
 */
export async function readCounter(docker: Docker, container: string): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const text = (await execIn(docker, container, ['cat', '/tmp/counter'])).trim();
    if (text !== '') return Number(text);
    if (attempt === 10) return Number.NaN;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs a command in a container and returns its stdout (fails on a non-zero exit). */
export async function execIn(docker: Docker, container: string, cmd: string[]): Promise<string> {
  const exec = await docker.getContainer(container).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({});
  const out: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    docker.modem.demuxStream(stream, { write: (b: Buffer) => out.push(b) } as never, { write: () => undefined } as never);
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  const info = await exec.inspect();
  if (info.ExitCode !== 0) throw new Error(`${cmd.join(' ')} in ${container} exited ${info.ExitCode}: ${Buffer.concat(out).toString()}`);
  return Buffer.concat(out).toString();
}

/** A busybox counter (BUSYBOX_COUNTER_SCRIPT) joining a network namespace holder of its own; both started. */
export async function startCounterInHolder(docker: Docker, o: { holder: string; name: string; binds?: string[] }): Promise<void> {
  await (
    await docker.createContainer({ name: o.holder, Image: 'cloudlet/busybox:1', Cmd: ['sleep', '2147483647'], HostConfig: { NetworkMode: 'none' } })
  ).start();
  await (
    await docker.createContainer({
      name: o.name,
      Image: 'cloudlet/busybox:1',
      Cmd: ['sh', '-c', BUSYBOX_COUNTER_SCRIPT],
      HostConfig: { NetworkMode: `container:${o.holder}`, ...(o.binds ? { Binds: o.binds } : {}) },
    })
  ).start();
}

/** Removes these containers from these cloudlets; one that is not there is not an error. */
export async function removeContainers(lab: TestLab, nodes: readonly string[], names: readonly string[]): Promise<void> {
  for (const node of nodes) {
    for (const name of names) {
      await lab
        .docker(node)
        .getContainer(name)
        .remove({ force: true })
        .catch(() => undefined);
    }
  }
}

/**
 * `bench handoff --scenario direct --netns-holder --repeat 2` as the engine tests read it: two
 * handoffs a -> b -> a, each done, the client's gap within the downtime's slack, one TCP and
 * one HTTP connection through both, nothing lost.
 */
export function assertRoundTripHandoff(t: TestContext, r: HandoffBenchResult, label: string): void {
  const d = r.direct!;
  const runs = d.runs ?? [];
  t.diagnostic(`${label}: ${JSON.stringify(runs.map((x) => ({ downtimeMs: x.downtimeMs, clientGapMs: x.clientGapMs, restoreMs: x.restoreMs })))}`);
  assert.equal(runs.length, 2);
  for (const m of d.migrations ?? []) assert.equal(m.state, 'done', m.error?.message);
  assert.deepEqual(
    (d.migrations ?? []).map((m) => `${m.from}->${m.to}`),
    ['a->b', 'b->a'],
  );
  for (const run of runs) {
    assert.ok(run.clientGapMs! <= run.downtimeMs! + GAP_SLACK_MS, `client gap ${run.clientGapMs} ms <= downtime ${run.downtimeMs} + ${GAP_SLACK_MS} ms`);
  }
  assert.equal(r.tcpConnectionSurvived, true, 'one TCP connection through both handoffs');
  assert.equal(r.httpKeepAliveSurvived, true, 'one HTTP keep-alive connection through both handoffs');
  assert.equal(r.messagesLost, 0);
}
