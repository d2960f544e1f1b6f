// What a destination lets a peer's handoff create: the container spec (typed and allow-listed
// by its schema, src/api/schemas/container-spec.ts) holds nothing host-reaching unless this
// policy allows it. The core defines it; cloudletd reads it from its configuration
// (`containerPolicy`) and passes it in. Checked at prepare, before the source freezes
// anything: a refused handoff leaves the service running where it is.
import { realpath } from 'node:fs/promises';
import { dirname, posix } from 'node:path';
import { CloudletError } from '../util/errors.js';
import type { ContainerSpec } from '../engine/container-spec.js';

export const HOST_NAMESPACES = ['network', 'pid', 'ipc', 'uts', 'user'] as const;
export type HostNamespace = (typeof HOST_NAMESPACES)[number];

export interface ContainerPolicy {
  /** Privileged containers (every capability, every device, no confinement). */
  privileged: boolean;
  /** Host namespaces a container may share (`--network host`, `--pid host`...). */
  hostNamespaces: readonly HostNamespace[];
  /** Capabilities a container may add (`SYS_ADMIN`, `NET_ADMIN`...; `ALL` for all). Dropping is always allowed. */
  capabilities: readonly string[];
  /** Host device paths a container may be given (`/dev/fuse`...). */
  devices: readonly string[];
  /** Host directories under which bind mounts may be made (their realpath; none: no host binds). */
  bindMountRoots: readonly string[];
  /** Named volumes (created empty here and filled by the handoff). */
  namedVolumes: boolean;
  /** Security options allowed besides `no-new-privileges` (e.g. `seccomp=unconfined`, exactly as written). */
  securityOptions: readonly string[];
}

/** The defaults: nothing that reaches the host; named volumes only. */
export const STRICT_CONTAINER_POLICY: ContainerPolicy = {
  privileged: false,
  hostNamespaces: [],
  capabilities: [],
  devices: [],
  bindMountRoots: [],
  namedVolumes: true,
  securityOptions: [],
};

/** Where cloudletd's configuration holds the policy (named in refusals, so that an operator finds it). */
export const POLICY_CONFIG_KEY = 'containerPolicy';

export interface PolicyViolation {
  /** The spec's field, from the request's root (`container.spec.privileged`). */
  field: string;
  /** Docker's name for it. */
  docker: string;
  value: unknown;
  /** What would allow it (`containerPolicy.privileged: true`), or null when no policy can. */
  allowWith: string | null;
}

const capName = (c: string): string => c.toUpperCase().replace(/^CAP_/, '');
const NO_NEW_PRIVILEGES = /^no-new-privileges([:=]true)?$/;

/** Whether `path` (normalized, absolute) is `root` or below it. */
export function isUnder(path: string, root: string): boolean {
  const r = root.endsWith('/') ? root : `${root}/`;
  return path === root || path.startsWith(r) || root === '/';
}

/** A host path as written, if it is absolute and normal (no `.`, `..`, `//`, trailing `/`). */
function normalHostPath(p: string): boolean {
  return p === '/' || (p.startsWith('/') && posix.normalize(p) === p && !p.endsWith('/'));
}

function hostSourceViolation(field: string, docker: string, source: string, policy: ContainerPolicy): PolicyViolation | null {
  const allowed = normalHostPath(source) && policy.bindMountRoots.some((root) => isUnder(source, root));
  if (allowed) return null;
  return {
    field,
    docker,
    value: source,
    allowWith: normalHostPath(source) ? `${POLICY_CONFIG_KEY}.bindMountRoots containing ${source} or a parent of it` : null,
  };
}

function mountViolations(spec: ContainerSpec, prefix: string, policy: ContainerPolicy): PolicyViolation[] {
  const out: PolicyViolation[] = [];
  const volume = (field: string, docker: string, name: string) =>
    !policy.namedVolumes && out.push({ field, docker, value: name, allowWith: `${POLICY_CONFIG_KEY}.namedVolumes: true` });
  (spec.binds ?? []).forEach((b, i) => {
    const field = `${prefix}.binds[${i}].source`;
    if (!b.source.startsWith('/')) return volume(field, `HostConfig.Binds[${i}]`, b.source);
    const v = hostSourceViolation(field, `HostConfig.Binds[${i}]`, b.source, policy);
    if (v) out.push(v);
  });
  (spec.mounts ?? []).forEach((m, i) => {
    const field = `${prefix}.mounts[${i}].source`;
    if (m.type === 'tmpfs') return;
    if (m.type === 'volume') return volume(field, `HostConfig.Mounts[${i}].Source`, m.source ?? '');
    const v = hostSourceViolation(field, `HostConfig.Mounts[${i}].Source`, m.source ?? '', policy);
    if (v) out.push(v);
  });
  return out;
}

function namespaceViolations(spec: ContainerSpec, prefix: string, policy: ContainerPolicy, holderName: string | null): PolicyViolation[] {
  const out: PolicyViolation[] = [];
  const ns = (ok: boolean, field: string, docker: string, value: unknown, name: HostNamespace) =>
    !ok && !policy.hostNamespaces.includes(name) && out.push({ field, docker, value, allowWith: `${POLICY_CONFIG_KEY}.hostNamespaces containing "${name}"` });
  const mode = spec.network.mode;
  ns(mode !== 'host', `${prefix}.network.mode`, 'HostConfig.NetworkMode', mode, 'network');
  ns(spec.pidMode !== 'host', `${prefix}.pidMode`, 'HostConfig.PidMode', spec.pidMode, 'pid');
  ns(spec.ipcMode !== 'host', `${prefix}.ipcMode`, 'HostConfig.IpcMode', spec.ipcMode, 'ipc');
  ns(spec.utsMode !== 'host', `${prefix}.utsMode`, 'HostConfig.UTSMode', spec.utsMode, 'uts');
  ns(spec.usernsMode !== 'host', `${prefix}.usernsMode`, 'HostConfig.UsernsMode', spec.usernsMode, 'user');
  // Joining another container's network namespace: only the handoff's own holder (any other
  // would put the twin inside a container this cloudlet runs for someone else).
  if (mode.startsWith('container:') && mode !== `container:${holderName ?? ''}`) {
    out.push({ field: `${prefix}.network.mode`, docker: 'HostConfig.NetworkMode', value: mode, allowWith: null });
  }
  return out;
}

/**
 * Everything in `spec` that `policy` does not allow, each named by its field (prefixed with
 * `prefix`, e.g. `container.spec`) and Docker's name. `holderName`: the network namespace
 * holder the handoff brings, the one container whose namespace the spec may join.
 */
export function policyViolations(spec: ContainerSpec, policy: ContainerPolicy, o: { prefix: string; holderName?: string | null }): PolicyViolation[] {
  const { prefix } = o;
  const out: PolicyViolation[] = [];
  if (spec.privileged && !policy.privileged) {
    out.push({ field: `${prefix}.privileged`, docker: 'HostConfig.Privileged', value: true, allowWith: `${POLICY_CONFIG_KEY}.privileged: true` });
  }
  const caps = new Set(policy.capabilities.map(capName));
  for (const c of spec.capAdd ?? []) {
    if (!caps.has(capName(c)) && !caps.has('ALL')) {
      out.push({ field: `${prefix}.capAdd`, docker: 'HostConfig.CapAdd', value: c, allowWith: `${POLICY_CONFIG_KEY}.capabilities containing "${capName(c)}"` });
    }
  }
  (spec.devices ?? []).forEach((d, i) => {
    if (!policy.devices.includes(d.pathOnHost)) {
      out.push({
        field: `${prefix}.devices[${i}].pathOnHost`,
        docker: `HostConfig.Devices[${i}].PathOnHost`,
        value: d.pathOnHost,
        allowWith: `${POLICY_CONFIG_KEY}.devices containing "${d.pathOnHost}"`,
      });
    }
  });
  for (const opt of spec.securityOpt ?? []) {
    if (!NO_NEW_PRIVILEGES.test(opt) && !policy.securityOptions.includes(opt)) {
      out.push({
        field: `${prefix}.securityOpt`,
        docker: 'HostConfig.SecurityOpt',
        value: opt,
        allowWith: `${POLICY_CONFIG_KEY}.securityOptions containing "${opt}"`,
      });
    }
  }
  out.push(...namespaceViolations(spec, prefix, policy, o.holderName ?? null));
  out.push(...mountViolations(spec, prefix, policy));
  return out;
}

/** One refusal for all of a request's violations: 403 (permission-denied), each field named. */
export class PolicyDeniedError extends CloudletError {
  constructor(
    readonly violations: PolicyViolation[],
    node: string | null = null,
  ) {
    const where = node ? `${node}'s` : "the destination's";
    const parts = violations.map(
      (v) => `${v.field} (${v.docker}) = ${JSON.stringify(v.value)}: ${v.allowWith ? `allowed only with ${v.allowWith}` : 'never allowed for a handoff'}`,
    );
    super('policy_denied', `refused by ${where} container policy: ${parts.join('; ')}`, {
      kind: 'permission-denied',
      context: { violations },
      hint: `a cloudlet's ${POLICY_CONFIG_KEY} in cloudletd.json says what a peer's container may ask for; widen it there only for containers you trust`,
    });
  }
}

/** Refuses (PolicyDeniedError) a spec outside the policy; lexical check of the paths. */
export function checkContainerPolicy(spec: ContainerSpec, policy: ContainerPolicy, o: { prefix: string; holderName?: string | null; node?: string }): void {
  const violations = policyViolations(spec, policy, o);
  if (violations.length > 0) throw new PolicyDeniedError(violations, o.node ?? null);
}

/**
 * The realpath of a host path that may not exist yet (Docker creates a missing bind source):
 * its nearest existing ancestor resolved, the rest appended.
 */
async function resolveHostPath(p: string): Promise<string> {
  let existing = p;
  for (;;) {
    try {
      const real = await realpath(existing);
      return posix.join(real, posix.relative(existing, p));
    } catch {
      const up = dirname(existing);
      if (up === existing) return p;
      existing = up;
    }
  }
}

/**
 * The host bind sources that the lexical check let through, resolved (symlinks followed, as
 * Docker follows them): a symlink under an allowed root that points outside it is refused.
 */
export async function checkBindRealPaths(spec: ContainerSpec, policy: ContainerPolicy, o: { prefix: string; node?: string }): Promise<void> {
  if (policy.bindMountRoots.length === 0) return; // nothing passed the lexical check
  const roots = await Promise.all(policy.bindMountRoots.map(resolveHostPath));
  const sources = [
    ...(spec.binds ?? []).map((b, i) => ({ source: b.source, field: `${o.prefix}.binds[${i}].source`, docker: `HostConfig.Binds[${i}]` })),
    ...(spec.mounts ?? []).map((m, i) => ({
      source: m.type === 'bind' ? (m.source ?? '') : '',
      field: `${o.prefix}.mounts[${i}].source`,
      docker: `HostConfig.Mounts[${i}].Source`,
    })),
  ].filter((s) => s.source.startsWith('/'));
  const violations: PolicyViolation[] = [];
  for (const s of sources) {
    const real = await resolveHostPath(s.source);
    if (!roots.some((r) => isUnder(real, r))) {
      violations.push({
        field: s.field,
        docker: s.docker,
        value: `${s.source} (resolves to ${real})`,
        allowWith: `${POLICY_CONFIG_KEY}.bindMountRoots containing ${real}`,
      });
    }
  }
  if (violations.length > 0) throw new PolicyDeniedError(violations, o.node ?? null);
}
