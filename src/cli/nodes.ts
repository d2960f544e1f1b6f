// Which cloudletd nodes the CLI can talk to: the one given by --url, or the lab's cloudlets.
import { NotFoundError, UsageError, CloudletError } from '../util/errors.js';
import { readLabState } from '../lab/state.js';
import { CloudletClient } from './client.js';

export interface GlobalOptions {
  url?: string;
  token?: string;
}

export interface NodeRef {
  name: string;
  url: string;
  client: CloudletClient;
  /** Where the node came from: the --url flag or the lab state file. */
  source: 'url' | 'lab';
}

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv;
  /** Lab directory; default labDir() (CLOUDLET_LAB_DIR). */
  labDir?: string;
}

/** Precedence: --token, $CLOUDLET_TOKEN, the lab's token. */
export function resolveToken(opts: GlobalOptions, labToken: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return opts.token ?? (env.CLOUDLET_TOKEN || undefined) ?? labToken;
}

/** All known nodes. With --url the single node is named by its own /v1/info ('default' if it does not answer). */
export async function resolveNodes(opts: GlobalOptions, ro: ResolveOptions = {}): Promise<NodeRef[]> {
  const env = ro.env ?? process.env;
  if (opts.url) {
    const client = new CloudletClient(opts.url, resolveToken(opts, undefined, env), { timeoutMs: 5000 });
    let name = 'default';
    try {
      name = (await client.get<{ node: string }>('/v1/info')).node;
    } catch (err) {
      // Naming is cosmetic; the command itself will report the node's error properly.
      if (!(err instanceof CloudletError)) throw err;
    }
    return [{ name, url: client.baseUrl, client, source: 'url' }];
  }
  let lab;
  try {
    lab = ro.labDir === undefined ? readLabState() : readLabState(ro.labDir);
  } catch (err) {
    throw new UsageError(`cannot read the lab state: ${(err as Error).message}`, { hint: 'run `cloudlet lab up` or pass --url' });
  }
  if (!lab || lab.cloudlets.length === 0) {
    throw new UsageError('no cloudletd to talk to: no lab is up and no --url given', {
      hint: 'run `cloudlet lab up` or pass --url',
    });
  }
  const token = resolveToken(opts, lab.token, env);
  return lab.cloudlets.map((c) => ({
    name: c.name,
    url: c.daemon.apiUrl,
    client: new CloudletClient(c.daemon.apiUrl, token),
    source: 'lab' as const,
  }));
}

/**
 * One node by name. Without a name, the only known node is used (a lab of one, or --url);
 * with several, the caller must choose.
 */
export async function resolveNode(name: string | undefined, opts: GlobalOptions, ro: ResolveOptions = {}): Promise<NodeRef> {
  const nodes = await resolveNodes(opts, ro);
  const known = nodes.map((n) => n.name).join(', ');
  if (name === undefined) {
    if (nodes.length === 1) return nodes[0]!;
    throw new UsageError('several nodes are known: choose one with --node', { hint: `known nodes: ${known}` });
  }
  const node = nodes.find((n) => n.name === name);
  if (node) return node;
  // --url names the node itself; a --node that disagrees is accepted only if we could not ask.
  if (opts.url && nodes[0]!.name === 'default') return { ...nodes[0]!, name };
  throw new NotFoundError('node', name, { hint: `known nodes: ${known}` });
}
