// `cloudlet doctor`: is this machine able to run cloudlets? Each check says what it found,
// whether Cloudlet cannot work without it (required) and, when something is wrong, the
// concrete command that fixes it.
//
// Split: parsers and the functions that turn probe results into CheckResults are pure (unit
// tested with this machine's real outputs); probing (files, programs, engines) is in
// probe*() / runDoctor() below.
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { DockerEngine } from '../engine/docker.js';
import { selectEngineAdapter, UnsupportedEngineError } from '../engine/engine-adapter.js';
import { tryRun } from '../util/exec.js';
import { CommandError, UsageError, errorMessage } from '../util/errors.js';
import { readLabState } from '../lab/state.js';

export type CheckStatus = 'ok' | 'missing' | 'warn' | 'skipped';

export interface CheckResult {
  id: string;
  title: string;
  status: CheckStatus;
  /** Cloudlet cannot work without it: a 'missing' required check fails the doctor. */
  required: boolean;
  detail: string;
  fix?: string;
}

export interface DoctorReport {
  ok: boolean;
  checks: CheckResult[];
}

export const SETUP_FIX = 'run as root: bash scripts/setup.sh';
export const MIN_CRIU = '4.2';
export const MIN_NODE_MAJOR = 20;

/** Overall verdict: only required checks that are missing fail; warn and skipped never do. */
export function summarize(checks: CheckResult[]): DoctorReport {
  return { ok: !checks.some((c) => c.required && c.status === 'missing'), checks };
}

// ------------------------------------------------------------------------------ kernel config

/** Kernel config text -> option values ('y', 'm', a value, or 'n' for "is not set"). */
export function parseKernelConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const set = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (set) {
      out.set(set[1]!, set[2]!.replace(/^"(.*)"$/, '$1'));
      continue;
    }
    const unset = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (unset) out.set(unset[1]!, 'n');
  }
  return out;
}

export function kernelOptionEnabled(config: Map<string, string>, option: string): boolean {
  const v = config.get(option);
  return v === 'y' || v === 'm';
}

export interface KernelConfigSource {
  /** null when neither /proc/config.gz nor /boot/config-RELEASE could be read. */
  config: Map<string, string> | null;
  source: string;
  error?: string;
}

/** Reads the running kernel's config: /proc/config.gz first, then /boot/config-$(uname -r). */
export function readKernelConfig(procPath = '/proc/config.gz', bootPath = `/boot/config-${release()}`): KernelConfigSource {
  const errors: string[] = [];
  if (existsSync(procPath)) {
    try {
      return { config: parseKernelConfig(gunzipSync(readFileSync(procPath)).toString('utf8')), source: procPath };
    } catch (err) {
      errors.push(`${procPath}: ${errorMessage(err)}`);
    }
  } else errors.push(`${procPath}: absent`);
  if (existsSync(bootPath)) {
    try {
      return { config: parseKernelConfig(readFileSync(bootPath, 'utf8')), source: bootPath };
    } catch (err) {
      errors.push(`${bootPath}: ${errorMessage(err)}`);
    }
  } else errors.push(`${bootPath}: absent`);
  return { config: null, source: '', error: errors.join('; ') };
}

interface KernelOptionSpec {
  id: string;
  option: string;
  title: string;
  required: boolean;
  /** Detail when the option is absent. */
  absentDetail: string;
  absentFix?: string;
}

export const KERNEL_OPTIONS: readonly KernelOptionSpec[] = [
  {
    id: 'kernel-checkpoint-restore',
    option: 'CONFIG_CHECKPOINT_RESTORE',
    title: 'kernel: checkpoint/restore',
    required: true,
    absentDetail: 'absent: CRIU cannot checkpoint or restore any process',
    absentFix: 'boot a kernel built with CONFIG_CHECKPOINT_RESTORE=y',
  },
  {
    id: 'kernel-soft-dirty',
    option: 'CONFIG_MEM_SOFT_DIRTY',
    title: 'kernel: soft-dirty bits',
    required: false,
    absentDetail: "absent: Cloudlet's content-hash pre-copy is used instead",
  },
  {
    id: 'kernel-userfaultfd',
    option: 'CONFIG_USERFAULTFD',
    title: 'kernel: userfaultfd',
    required: false,
    absentDetail: 'absent: lazy (post-copy) restore is unavailable, pre-copy still works',
    absentFix: 'boot a kernel built with CONFIG_USERFAULTFD=y to allow lazy restore',
  },
];

export function kernelOptionCheck(spec: KernelOptionSpec, src: KernelConfigSource): CheckResult {
  const base = { id: spec.id, title: spec.title, required: spec.required };
  if (!src.config) {
    return {
      ...base,
      status: 'warn',
      detail: `kernel config unreadable (${src.error ?? 'unknown'}); ${spec.option} not verified`,
      fix: 'load the configs module (modprobe configs) or install /boot/config-$(uname -r)',
    };
  }
  const value = src.config.get(spec.option) ?? 'n';
  if (kernelOptionEnabled(src.config, spec.option)) {
    return { ...base, status: 'ok', detail: `${spec.option}=${value} (${src.source})` };
  }
  return {
    ...base,
    status: spec.required ? 'missing' : 'warn',
    detail: spec.absentDetail,
    ...(spec.absentFix ? { fix: spec.absentFix } : {}),
  };
}

// ------------------------------------------------------------------------------ filesystems

export function hasFilesystem(procFilesystems: string, fs: string): boolean {
  return procFilesystems.split('\n').some((l) => l.trim().split(/\s+/).pop() === fs);
}

export function overlayCheck(procFilesystems: string, config: Map<string, string> | null): CheckResult {
  const base = { id: 'overlayfs', title: 'overlayfs', required: true };
  if (hasFilesystem(procFilesystems, 'overlay')) return { ...base, status: 'ok', detail: 'overlay in /proc/filesystems' };
  if (config?.get('CONFIG_OVERLAY_FS') === 'm') {
    return { ...base, status: 'missing', detail: 'built as a module, not loaded', fix: 'run: sudo modprobe overlay' };
  }
  return { ...base, status: 'missing', detail: 'overlay not in /proc/filesystems', fix: 'boot a kernel with CONFIG_OVERLAY_FS (Docker overlay2 needs it)' };
}

// ------------------------------------------------------------------------------ versions

/** "Version: 4.2.1" (first lines of `criu --version`) -> "4.2.1"; null when absent. */
export function parseCriuVersion(text: string): string | null {
  const m = /^Version:\s*(\d+(?:\.\d+)*)/m.exec(text);
  return m ? m[1]! : null;
}

/** First dotted number in a text ("runc version 1.1.5+ds1" -> "1.1.5"). */
export function firstVersion(text: string): string | null {
  const m = /(\d+\.\d+(?:\.\d+)*)/.exec(text);
  return m ? m[1]! : null;
}

/** Numeric comparison of dotted versions; missing parts count as 0 ("4.2" == "4.2.0"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => parseInt(x, 10));
  const pb = b.split('.').map((x) => parseInt(x, 10));
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (Number.isNaN(x) || Number.isNaN(y)) throw new RangeError(`not a dotted version: '${a}' or '${b}'`);
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

// ------------------------------------------------------------------------------ programs

/** What running a program told us; `found` is false when it could not be started at all. */
export interface ProbeResult {
  found: boolean;
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

export function criuVersionCheck(p: ProbeResult): CheckResult {
  const base = { id: 'criu-version', title: `CRIU >= ${MIN_CRIU}`, required: true };
  const fix = `${SETUP_FIX} (installs CRIU ${MIN_CRIU} in a private prefix with /usr/local/sbin/criu)`;
  if (!p.found) return { ...base, status: 'missing', detail: 'criu not on PATH', fix };
  const v = parseCriuVersion(p.stdout + p.stderr);
  if (!v) return { ...base, status: 'missing', detail: `criu --version printed no version (exit ${p.exitCode})`, fix };
  if (compareVersions(v, MIN_CRIU) < 0) {
    return { ...base, status: 'missing', detail: `criu ${v} is too old for kernels >= 6.13/6.16`, fix };
  }
  return { ...base, status: 'ok', detail: `criu ${v}` };
}

export function criuCheckCheck(p: ProbeResult): CheckResult {
  const base = { id: 'criu-check', title: 'criu check', required: true };
  if (!p.found) return { ...base, status: 'missing', detail: 'criu not on PATH', fix: SETUP_FIX };
  const out = (p.stdout + p.stderr).trim();
  if (p.exitCode === 0) return { ...base, status: 'ok', detail: lastLine(out) || 'passed' };
  return {
    ...base,
    status: 'missing',
    detail: `criu check failed (exit ${p.exitCode}): ${lastLine(out)}`,
    fix: `${SETUP_FIX} (run as root; a criu older than ${MIN_CRIU} fails on this kernel)`,
  };
}

/** A program that only has to be there (and say its version when it can). */
export function programCheck(
  spec: { id: string; title: string; required: boolean; fix: string; minVersion?: string; hasVersion?: boolean },
  p: ProbeResult,
): CheckResult {
  const base = { id: spec.id, title: spec.title, required: spec.required };
  if (!p.found) return { ...base, status: spec.required ? 'missing' : 'warn', detail: 'not found on PATH', fix: spec.fix };
  if (p.exitCode !== 0) {
    return {
      ...base,
      status: spec.required ? 'missing' : 'warn',
      detail: `exit ${p.exitCode}: ${lastLine((p.stderr || p.stdout).trim())}`,
      fix: spec.fix,
    };
  }
  // Some probes (ip netns list, crit -h) only prove the program works: no version to parse.
  const v = spec.hasVersion === false ? null : firstVersion(p.stdout + '\n' + p.stderr);
  if (spec.minVersion && v && compareVersions(v, spec.minVersion) < 0) {
    return { ...base, status: spec.required ? 'missing' : 'warn', detail: `version ${v} < ${spec.minVersion}`, fix: spec.fix };
  }
  return { ...base, status: 'ok', detail: v ? `version ${v}` : 'works' };
}

export function nodeVersionCheck(version: string): CheckResult {
  const major = parseInt(version.replace(/^v/, '').split('.')[0] ?? '', 10);
  const base = { id: 'node', title: `Node.js >= ${MIN_NODE_MAJOR}`, required: true };
  if (major >= MIN_NODE_MAJOR) return { ...base, status: 'ok', detail: `node ${version}` };
  return { ...base, status: 'missing', detail: `node ${version}`, fix: `install Node.js ${MIN_NODE_MAJOR}` };
}

function lastLine(s: string): string {
  return (
    s
      .split('\n')
      .filter((l) => l.trim())
      .pop()
      ?.trim() ?? ''
  );
}

// ------------------------------------------------------------------------------ engines

export interface EngineTarget {
  name: string;
  /** Path of the engine's unix socket. */
  socket: string;
}

export interface EngineProbe {
  target: EngineTarget;
  reachable: boolean;
  experimental: boolean;
  version?: string;
  /** /info Driver: which image store (overlay2: the classic one). */
  storageDriver?: string;
  error?: string;
}

export const LAB_UP_FIX = 'cloudlet lab up (starts one engine per cloudlet)';

export function engineChecks(probes: EngineProbe[] | null, labError?: string): CheckResult[] {
  if (labError) {
    return [
      {
        id: 'docker-engine',
        title: 'Docker engine',
        required: true,
        status: 'missing',
        detail: `lab state unreadable: ${labError}`,
        fix: 'cloudlet lab down, then cloudlet lab up',
      },
    ];
  }
  if (!probes) {
    return [
      { id: 'docker-engine', title: 'Docker engine', required: false, status: 'skipped', detail: 'no lab is up and no --docker-host given', fix: LAB_UP_FIX },
    ];
  }
  return probes.map((p) => {
    const base = { id: `docker-engine:${p.target.name}`, title: `Docker engine ${p.target.name}`, required: true };
    if (!p.reachable) {
      return {
        ...base,
        status: 'missing' as const,
        detail: `${p.target.socket}: ${p.error ?? 'unreachable'}`,
        fix: 'cloudlet lab down, then cloudlet lab up (or start that dockerd)',
      };
    }
    if (!p.experimental) {
      return {
        ...base,
        status: 'missing' as const,
        detail: `${p.target.socket}: ${p.version ?? ''} without experimental features`,
        fix: 'start dockerd with --experimental (needed for checkpoint/restore)',
      };
    }
    try {
      const adapter = selectEngineAdapter({ version: p.version ?? '', storageDriver: p.storageDriver ?? '' });
      return {
        ...base,
        status: 'ok' as const,
        detail: `${p.target.socket}: Docker ${p.version ?? '?'} (${adapter.family}, ${adapter.imageStore} image store), experimental: ${adapter.restoreScope}`,
      };
    } catch (err) {
      if (!(err instanceof UnsupportedEngineError)) throw err;
      return {
        ...base,
        status: 'missing' as const,
        detail: `${p.target.socket}: ${err.message}`,
        fix: err.hint ?? 'use Docker 20.10 with overlay2 or Docker 28',
      };
    }
  });
}

// ------------------------------------------------------------------------------ probing

/** Runs a program; a program that cannot be started is `found: false`, not an exception. */
export async function probe(cmd: string, args: readonly string[], timeoutMs = 15_000): Promise<ProbeResult> {
  try {
    const r = await tryRun(cmd, args, { timeoutMs });
    return { found: true, exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const cause = err instanceof CommandError ? (err.cause as NodeJS.ErrnoException | undefined) : undefined;
    if (cause?.code === 'ENOENT') return { found: false, exitCode: null, stdout: '', stderr: `${cmd}: not found` };
    // Started but killed (timeout, signal): report it as a failed run with the reason.
    return { found: true, exitCode: null, stdout: '', stderr: errorMessage(err) };
  }
}

export async function probeEngine(target: EngineTarget, timeoutMs = 5_000): Promise<EngineProbe> {
  const engine = new DockerEngine(target.socket, { timeoutMs });
  try {
    const [info, version] = await Promise.all([engine.info(), engine.version()]);
    return { target, reachable: true, experimental: info.experimental, version: version.version, storageDriver: info.storageDriver };
  } catch (err) {
    // An engine that does not answer is a finding of the doctor, not a failure of it.
    return { target, reachable: false, experimental: false, error: errorMessage(err) };
  }
}

/** Engines to check: --docker-host if given, else the lab's engines, else none (null). */
export function engineTargets(dockerHost: string | undefined): { targets: EngineTarget[] | null; labError?: string } {
  if (dockerHost) {
    const m = /^unix:\/\/(\/.+)$/.exec(dockerHost);
    if (!m) throw new UsageError(`--docker-host must be unix:///path, got '${dockerHost}'`, { context: { dockerHost } });
    return { targets: [{ name: 'docker-host', socket: m[1]! }] };
  }
  try {
    const lab = readLabState();
    if (!lab || lab.cloudlets.length === 0) return { targets: null };
    return { targets: lab.cloudlets.map((c) => ({ name: c.name, socket: c.engine.socket })) };
  } catch (err) {
    return { targets: null, labError: errorMessage(err) };
  }
}

export interface DoctorOptions {
  dockerHost?: string;
}

/** Runs every check (independent probes in parallel) and returns them in a stable order. */
export async function runDoctor(opts: DoctorOptions = {}): Promise<DoctorReport> {
  const kernel = readKernelConfig();
  const filesystems = readFileSync('/proc/filesystems', 'utf8');
  const { targets, labError } = engineTargets(opts.dockerHost);
  const [criuVersion, criuCheck, crit, runc, dockerd, netns, tc, iptables, nsenter, engines] = await Promise.all([
    probe('criu', ['--version']),
    probe('criu', ['check'], 60_000),
    probe('crit', ['-h']),
    probe('runc', ['--version']),
    probe('dockerd', ['--version']),
    probe('ip', ['netns', 'list']),
    probe('tc', ['-V']),
    probe('iptables', ['--version']),
    probe('nsenter', ['--version']),
    targets ? Promise.all(targets.map((t) => probeEngine(t))) : Promise.resolve(null),
  ]);
  const checks: CheckResult[] = [
    ...KERNEL_OPTIONS.map((k) => kernelOptionCheck(k, kernel)),
    overlayCheck(filesystems, kernel.config),
    criuVersionCheck(criuVersion),
    criuCheckCheck(criuCheck),
    programCheck(
      { id: 'crit', title: 'crit (decodes CRIU images)', required: true, hasVersion: false, fix: `${SETUP_FIX} (Debian package criu provides crit)` },
      crit,
    ),
    programCheck({ id: 'runc', title: 'runc', required: true, fix: `${SETUP_FIX} (Debian package runc)` }, runc),
    programCheck({ id: 'dockerd', title: 'dockerd', required: true, fix: `${SETUP_FIX} (Debian package docker.io)` }, dockerd),
    ...engineChecks(engines, labError),
    programCheck(
      { id: 'netns', title: 'network namespaces (ip netns)', required: true, hasVersion: false, fix: `${SETUP_FIX} (Debian package iproute2)` },
      netns,
    ),
    programCheck({ id: 'tc', title: 'tc (link shaping)', required: true, fix: `${SETUP_FIX} (Debian package iproute2)` }, tc),
    programCheck({ id: 'iptables', title: 'iptables', required: true, fix: `${SETUP_FIX} (Debian package iptables)` }, iptables),
    programCheck({ id: 'nsenter', title: 'nsenter', required: true, fix: `${SETUP_FIX} (Debian package util-linux)` }, nsenter),
    nodeVersionCheck(process.version),
  ];
  return summarize(checks);
}
