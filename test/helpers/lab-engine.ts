// The engine of the migration, handoff and overlay tests' labs (issue 18.7). They run on the
// default engine; CLOUDLET_TEST_LAB_ENGINE, read here and nowhere else, names another kind
// (scripts/test.sh runs those three files a second time with docker28). CI runs docker20 and
// docker28; docker28-containerd has tests of its own (engines-containerd.test.ts).
//
// Docker 28 cannot restore a container with a network namespace of its own (the engine
// adapter's restoreRefusal; docs/engines-docker28.md): on such an engine the tests run every
// scenario whose container would have a namespace of its own the way users on 28 run their
// services, in a netns holder (`cloudlet run --netns-holder`), and assert the refusal where
// the namespace of its own is the point.
import type Docker from 'dockerode';
import { DEFAULT_ENGINE_KIND, parseEngineKind, type EngineKind } from '../../src/lab/engines.js';
import { holderCreateOptions, holderNameFor, joiningHolder } from '../../src/network/netns-holder.js';

export const LAB_ENGINE: EngineKind = parseEngineKind(process.env.CLOUDLET_TEST_LAB_ENGINE?.trim() || DEFAULT_ENGINE_KIND, 'CLOUDLET_TEST_LAB_ENGINE');

/** Whether the lab's engine restores a container with a network namespace of its own (Docker 20.10 only). */
export const RESTORES_OWN_NETNS = LAB_ENGINE === 'docker20';

/** Services run in netns holders on this lab: the engine cannot restore a namespace of their own. */
export const IN_HOLDERS = !RESTORES_OWN_NETNS;

/** How the tests name what they ran, e.g. `on docker28 (services in netns holders)`. */
export const LAB_ENGINE_LABEL = `on ${LAB_ENGINE}${IN_HOLDERS ? ' (services in netns holders)' : ''}`;

/** The container's network: `none` (a namespace of its own), or joined to its holder. */
export type ServiceNetwork = 'own' | 'holder';

/** The network the lab's engine can hand a service off with. */
export const HANDOFF_NETWORK: ServiceNetwork = IN_HOLDERS ? 'holder' : 'own';

/**
 * Creates and starts `options` (a container with NetworkMode none) with a network namespace of
 * its own, or, with 'holder', joined to a holder of its own (NAME-netns, network none, as
 * Cloudlet makes them) started first. Returns the holder's name, or null.
 */
export async function startService(
  docker: Docker,
  options: Docker.ContainerCreateOptions & { name: string },
  network: ServiceNetwork = HANDOFF_NETWORK,
): Promise<string | null> {
  if (network === 'own') {
    await (await docker.createContainer({ ...options, HostConfig: { ...options.HostConfig, NetworkMode: 'none' } })).start();
    return null;
  }
  const holder = holderNameFor(options.name);
  await (await docker.createContainer(holderCreateOptions({ name: holder, image: 'cloudlet/busybox:1', network: 'none' }))).start();
  await (await docker.createContainer(joiningHolder(options, holder))).start();
  return holder;
}

/** The holder a handoff of service `name` must report moving: its holder on this lab, none otherwise. */
export function expectedHolder(name: string): string | null {
  return IN_HOLDERS ? holderNameFor(name) : null;
}

/** Removes a service and its holder from these engines; what is not there is not an error. */
export async function removeWithHolder(engines: readonly Docker[], name: string): Promise<void> {
  for (const d of engines) {
    for (const c of [name, holderNameFor(name)]) {
      await d
        .getContainer(c)
        .remove({ force: true })
        .catch(() => undefined);
    }
  }
}

/** The names of the containers on an engine (without Docker's leading slash). */
export async function containerNames(docker: Docker): Promise<string[]> {
  return (await docker.listContainers({ all: true })).flatMap((c) => c.Names.map((n) => n.replace(/^\//, '')));
}
