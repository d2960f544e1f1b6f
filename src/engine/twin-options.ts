// A twin of a container on another engine: its create options from an inspection, and the
// image reference to create it by. Pure functions of inspected data (and, for the image
// reference, two engine calls), apart from the engine client.
import type Docker from 'dockerode';
import type { ContainerCreateOptions } from './docker-types.js';
import type { DockerEngine } from './docker.js';

/**
 * Create options for a twin of an inspected container: the same Config (hostname included:
 * the restored processes saw it; a container in another's network namespace gets that one's)
 * and HostConfig, plus the endpoint settings of its networks.
 * - Volumes without a name in Binds/Mounts (anonymous volumes) become named binds
 *   `NAME:DEST`, so the twin uses a volume of the same name that the caller creates and fills.
 * - On user-defined networks the address is pinned (IPAMConfig) to the one the container
 *   has: restored TCP sockets need it. The default bridge cannot take a fixed address.
 * - Aliases equal to the source's short id are dropped (Docker adds the twin's own).
 * - ContainerIDFile names a file on the source host and is dropped.
 * Image stays Config.Image (the reference); callers compare imageId on the destination.
 */
export function twinCreateOptions(i: Docker.ContainerInspectInfo): ContainerCreateOptions {
  const config = { ...(i.Config as unknown as Record<string, unknown>) } as Docker.ContainerCreateOptions;
  const host = { ...(i.HostConfig as Docker.HostConfig) } as Docker.HostConfig & Record<string, unknown>;
  delete host.ContainerIDFile;
  // A container joining another's network namespace takes that one's hostname (Docker copies
  // it at create and refuses one given with the container: mode).
  if ((host.NetworkMode ?? '').startsWith('container:')) {
    delete config.Hostname;
    delete config.Domainname;
  }
  const binds = [...(host.Binds ?? [])];
  const covered = new Set<string>([...binds.map((b) => b.split(':')[1] ?? ''), ...((host.Mounts ?? []) as Array<{ Target: string }>).map((m) => m.Target)]);
  for (const m of i.Mounts ?? []) {
    if (m.Type === 'volume' && m.Name && !covered.has(m.Destination)) {
      binds.push(`${m.Name}:${m.Destination}${m.RW ? '' : ':ro'}`);
    }
  }
  if (binds.length > 0) host.Binds = binds;
  const opts: Docker.ContainerCreateOptions = { ...config, name: i.Name.replace(/^\//, ''), HostConfig: host };
  const endpoints: Docker.EndpointsConfig = {};
  const shortId = i.Id.slice(0, 12);
  const mode = host.NetworkMode ?? '';
  const special = mode === '' || mode === 'default' || mode === 'bridge' || mode === 'none' || mode === 'host' || mode.startsWith('container:');
  if (!special) {
    for (const [net, ep] of Object.entries(i.NetworkSettings?.Networks ?? {})) {
      if (net === 'bridge' || net === 'none' || net === 'host') continue;
      const e: Docker.EndpointSettings = {};
      const ipam = (ep.IPAMConfig ?? {}) as { IPv4Address?: string; IPv6Address?: string };
      const v4 = ipam.IPv4Address || ep.IPAddress;
      const v6 = ipam.IPv6Address || ep.GlobalIPv6Address;
      if (v4 || v6) e.IPAMConfig = { ...(v4 ? { IPv4Address: v4 } : {}), ...(v6 ? { IPv6Address: v6 } : {}) };
      const aliases = ((ep.Aliases ?? []) as string[]).filter((a) => a !== shortId);
      if (aliases.length > 0) e.Aliases = aliases;
      if (Array.isArray(ep.Links) && ep.Links.length > 0) e.Links = ep.Links as string[];
      endpoints[net] = e;
    }
  }
  if (Object.keys(endpoints).length > 0) opts.NetworkingConfig = { EndpointsConfig: endpoints };
  return opts;
}

/**
 * `repo` and `tag` of a reference that can name an image by `docker tag` (`name`, `name:tag`,
 * `host:port/name[:tag]`; no tag means `latest`); null for a digest reference (`name@sha256:..`,
 * which only a registry gives) or an image id.
 */
export function tagOf(ref: string): { repo: string; tag: string } | null {
  if (ref.includes('@') || /^sha256:/.test(ref) || ref === '') return null;
  // A colon after the last slash separates the tag; one before it is a registry's port.
  const colon = ref.lastIndexOf(':');
  if (colon > ref.lastIndexOf('/')) return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repo: ref, tag: 'latest' };
}

/**
 * The reference to create a twin of a container by on this engine, which holds the
 * container's image `imageId`: the name the container was created from (`name`, its
 * Config.Image) whenever it can be, since `docker ps` shows Config.Image only while that name
 * resolves to the container's image (the id otherwise).
 * - The name means this image here: the name.
 * - The name is unknown here: it is tagged on the image first, then used. An image can arrive
 *   by id only (shipped for a container created by id, as overlay provisioning does, or
 *   loaded from an archive saved by id): a create by the name then failed with "No such
 *   image", though the image was here.
 * - The name means another image here, or cannot be a tag (digest reference): the id. The
 *   twin must run the very image its source ran; re-pointing the name would change what
 *   others run by it.
 */
export async function twinImageRef(engine: Pick<DockerEngine, 'inspectImage' | 'tagImage'>, imageId: string, name: string): Promise<string> {
  if (name === imageId) return name;
  const here = await engine.inspectImage(name);
  if (here) return here.id === imageId ? name : imageId;
  // A short id (`docker run 0123456789ab`) is never made a repository name.
  const target = imageId.startsWith(`sha256:${name}`) ? null : tagOf(name);
  if (!target) return imageId;
  await engine.tagImage(imageId, target);
  return name;
}
