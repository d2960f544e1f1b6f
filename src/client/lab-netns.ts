// Where the client runs: a mobile user lives in the lab's client namespace, so when a lab is
// up the client re-executes itself there (`nsenter --net=/run/netns/<prefix>client`), with
// the same arguments, stdio and signals. An environment marker stops the child from doing
// it again.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CloudletError, NotFoundError, UsageError } from '../util/errors.js';
import { netnsExists, nsenterArgs } from '../lab/netns.js';
import { labDir, readLabState, statePath } from '../lab/state.js';

/** Set in the re-executed child: it already runs in the namespace named here. */
export const CLIENT_NETNS_ENV = 'CLOUDLET_CLIENT_NETNS';

export function isLoopback(target: string): boolean {
  return target === 'localhost' || target === '::1' || /^127\.\d+\.\d+\.\d+$/.test(target);
}

/**
 * The namespace to run in, or null to run right here. inLab: true (--in-lab) requires a lab;
 * false (--no-in-lab) never; undefined: the lab's client namespace when a lab is up and the
 * target is not loopback.
 */
export function clientNamespace(target: string, inLab: boolean | undefined): string | null {
  if (process.env[CLIENT_NETNS_ENV]) return null;
  if (inLab === false) return null;
  if (inLab === undefined && (isLoopback(target) || !existsSync(statePath(labDir())))) return null;
  if (process.getuid?.() !== 0) {
    throw new UsageError("the client runs in the lab's client namespace, which needs root", {
      hint: 'run it with sudo, or pass --no-in-lab to stay in this namespace',
    });
  }
  const state = readLabState(labDir());
  if (!state) throw new NotFoundError('lab', labDir(), { hint: 'bring one up with `cloudlet lab up`, or drop --in-lab' });
  const ns = state.client.namespace;
  if (!netnsExists(ns)) {
    throw new NotFoundError('network namespace', ns, { hint: 'the lab state names it but it is gone: `cloudlet lab down` and up again' });
  }
  return ns;
}

/** Runs this very command again inside namespace ns; resolves with its exit code. */
export function reexecInNamespace(ns: string): Promise<number> {
  const args = nsenterArgs(ns, process.execPath, [...process.execArgv, ...process.argv.slice(1)]);
  const child = spawn('nsenter', args, { stdio: 'inherit', env: { ...process.env, [CLIENT_NETNS_ENV]: ns } });
  // nsenter execs node in place (no --fork), so the child is the client: pass stops on to it.
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const onInt = forward('SIGINT');
  const onTerm = forward('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
    };
    child.once('error', (err) => {
      cleanup();
      reject(new CloudletError('command_failed', `nsenter into ${ns} failed: ${err.message}`, { kind: 'internal', context: { ns }, cause: err }));
    });
    child.once('exit', (code, signal) => {
      cleanup();
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}
