// `cloudlet bench security`: every attack of the list against a fresh stage (two real
// cloudletd on loopback, a fresh CA, stand-ins for the host's files), one after the other.
// The bench passes when every attack was refused by its defence and no stand-in changed.
import os from 'node:os';
import { runAttack, type Attack, type AttackResult } from './attack.js';
import { BODY_ATTACKS, IDENTITY_ATTACKS, POLICY_ATTACKS } from './attacks-api.js';
import { FSSYNC_ATTACKS } from './attacks-fssync.js';
import { call } from './http.js';
import { makeStage, type Stage } from './setup.js';

export const ATTACKS: readonly Attack[] = [...POLICY_ATTACKS, ...FSSYNC_ATTACKS, ...IDENTITY_ATTACKS, ...BODY_ATTACKS];

export interface SecurityBenchResult {
  startedAt: string;
  machine: { host: string; cpu: string; cpus: number; kernel: string; node: string };
  attacks: AttackResult[];
  /** The victim still answers its operator after all attacks (the service kept running). */
  victimUp: boolean;
  ok: boolean;
}

async function victimUp(stage: Stage): Promise<boolean> {
  const r = await call(stage, { path: '/v1/info', token: stage.victim.config.token }).catch(() => null);
  return r?.status === 200;
}

export async function runSecurityBench(opts: { attacks?: readonly Attack[]; progress?: (msg: string) => void } = {}): Promise<SecurityBenchResult> {
  const startedAt = new Date().toISOString();
  const stage = await makeStage();
  const results: AttackResult[] = [];
  let up = false;
  try {
    for (const attack of opts.attacks ?? ATTACKS) {
      opts.progress?.(`attack ${attack.name}`);
      results.push(await runAttack(stage, attack));
    }
    up = await victimUp(stage);
  } finally {
    await stage.close();
  }
  const cpus = os.cpus();
  return {
    startedAt,
    machine: { host: os.hostname(), cpu: cpus[0]?.model ?? 'unknown', cpus: cpus.length, kernel: os.release(), node: process.version },
    attacks: results,
    victimUp: up,
    ok: up && results.length > 0 && results.every((r) => r.refused && !r.hostChanged),
  };
}

/** Table rows (the CLI's table and docs/results/security.md). */
export function securityRows(r: SecurityBenchResult): Record<string, string>[] {
  return r.attacks.map((a) => ({
    attack: a.name,
    refused: String(a.refused),
    status: a.status === null ? '-' : String(a.status),
    error: a.error ?? '-',
    hostChanged: String(a.hostChanged),
  }));
}

export const SECURITY_COLUMNS = ['attack', 'refused', 'status', 'error', 'hostChanged'] as const;
