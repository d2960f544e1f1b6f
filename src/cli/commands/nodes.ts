// `cloudlet nodes`, `cloudlet ps`, `cloudlet info`: read-only views of the cloudletd nodes.
import type { Command } from 'commander';
import { CloudletError, errorMessage } from '../../util/errors.js';
import type { ContainerSummary } from '../../engine/docker.js';
import type { NodeInfo } from '../../daemon/context.js';
import { action, printJson, printTable } from '../output.js';
import { resolveNode, resolveNodes, type GlobalOptions, type NodeRef } from '../nodes.js';

export interface NodeStatus {
  name: string;
  url: string;
  /** up: daemon and engine answer; degraded: daemon answers, engine does not; down: daemon unreachable. */
  status: 'up' | 'degraded' | 'down';
  engine: string | null;
  criu: string | null;
  containers: number | null;
  error?: string;
  info?: NodeInfo;
}

/** Asks every node for its info and container count, in parallel; failures become statuses. */
export async function collectNodeStatus(nodes: readonly NodeRef[]): Promise<NodeStatus[]> {
  return Promise.all(
    nodes.map(async (n): Promise<NodeStatus> => {
      const base = { name: n.name, url: n.url };
      const [info, list] = await Promise.allSettled([n.client.get<NodeInfo>('/v1/info'), n.client.get<ContainerSummary[]>('/v1/containers?all=true')]);
      if (info.status === 'rejected') {
        if (!(info.reason instanceof CloudletError)) throw info.reason;
        return { ...base, status: 'down', engine: null, criu: null, containers: null, error: info.reason.message };
      }
      const i = info.value;
      const containers = list.status === 'fulfilled' ? list.value.length : null;
      const engineUp = i.engine.reachable && list.status === 'fulfilled';
      const error = !i.engine.reachable ? (i.engine.error ?? 'engine unreachable') : list.status === 'rejected' ? errorMessage(list.reason) : undefined;
      return {
        ...base,
        status: engineUp ? 'up' : 'degraded',
        engine: i.engine.reachable ? i.engine.version : null,
        criu: i.criu.version,
        containers,
        ...(error === undefined ? {} : { error }),
        info: i,
      };
    }),
  );
}

/** Exit code of `cloudlet nodes`: failure only when no node at all answers. */
export function nodesExitCode(rows: readonly NodeStatus[]): number {
  return rows.length > 0 && rows.every((r) => r.status === 'down') ? 1 : 0;
}

function globals(cmd: Command): GlobalOptions & { json?: boolean; node?: string; all?: boolean } {
  return cmd.optsWithGlobals();
}

export function registerNodeCommands(program: Command): void {
  registerNodes(program);
  registerPs(program);
  registerInfo(program);
}

function registerNodes(program: Command): void {
  program
    .command('nodes')
    .description('list the known cloudlets with their engine, CRIU and container count')
    .option('--json', 'print JSON')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const o = globals(cmd);
        const rows = await collectNodeStatus(await resolveNodes(o));
        if (o.json) {
          printJson(rows);
        } else {
          printTable(
            rows.map((r) => ({
              name: r.name,
              url: r.url,
              engine: r.engine ?? (r.status === 'down' ? null : 'unreachable'),
              criu: r.criu ?? (r.status === 'down' ? null : 'none'),
              containers: r.containers,
              status: r.error ? `${r.status}: ${r.error}` : r.status,
            })),
            ['name', 'url', 'engine', 'criu', 'containers', 'status'],
          );
        }
        return nodesExitCode(rows);
      }),
    );
}

function registerPs(program: Command): void {
  program
    .command('ps')
    .description('list the containers of one cloudlet')
    .option('--node <name>', 'cloudlet name (default: the only known one)')
    .option('-a, --all', 'include stopped containers')
    .option('--json', 'print JSON')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const o = globals(cmd);
        const node = await resolveNode(o.node, o);
        const list = await node.client.get<ContainerSummary[]>(`/v1/containers?all=${o.all ? 'true' : 'false'}`);
        if (o.json) {
          printJson(list);
          return;
        }
        printTable(
          list.map((c) => ({ ...c, id: c.id.slice(0, 12) })),
          ['id', 'name', 'image', 'state', 'status', 'created'],
        );
      }),
    );
}

function registerInfo(program: Command): void {
  program
    .command('info')
    .description("show one cloudlet's daemon, engine, CRIU and capabilities")
    .option('--node <name>', 'cloudlet name (default: the only known one)')
    .option('--json', 'print JSON')
    .action(
      action(async (_opts: unknown, cmd: Command) => {
        const o = globals(cmd);
        const node = await resolveNode(o.node, o);
        const info = await node.client.get<NodeInfo>('/v1/info');
        if (o.json) {
          printJson(info);
          return;
        }
        const e = info.engine;
        printTable(
          [
            { field: 'node', value: info.node },
            { field: 'url', value: node.url },
            { field: 'cloudletd', value: info.version },
            { field: 'engine', value: e.reachable ? `${e.version} (API ${e.apiVersion})` : `unreachable: ${e.error ?? ''}` },
            { field: 'engine socket', value: e.socket },
            { field: 'experimental', value: e.reachable ? e.experimental : null },
            { field: 'storage driver', value: e.storageDriver },
            { field: 'criu', value: info.criu.version ?? (info.criu.error ? `unusable: ${info.criu.error}` : 'not installed') },
            {
              field: 'checkpoint',
              value: info.capabilities.checkpoint ? 'yes' : `no (${info.capabilities.checkpointBlockers.join('; ')})`,
            },
            { field: 'peers', value: info.peers.length ? info.peers : null },
          ],
          ['field', 'value'],
        );
      }),
    );
}
