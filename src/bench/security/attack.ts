// What one attack of `cloudlet bench security` is and what it yields. An attack is refused
// only when the defence meant for it answered (the expected status and error code): a request
// that got past it and failed later (e.g. at the unreachable engine, 503) is not a refusal.
import type { Stage } from './setup.js';
import { fingerprint } from './stand-ins.js';

export interface Outcome {
  /** HTTP status, or null when no HTTP answer came (TLS refusal, an fssync apply). */
  status: number | null;
  /** The error code of the answer (CloudletError code, or the transport's). */
  error: string | null;
  message: string;
}

export interface Attack {
  name: string;
  /** Who attacks and what it tries, in one line. */
  tried: string;
  expect: { status: number | null; error: string };
  run(stage: Stage): Promise<Outcome>;
  /** A further check once it ran (e.g. nothing journalled): a reason it was not refused, or null. */
  check?(stage: Stage): Promise<string | null>;
}

export interface AttackResult {
  name: string;
  tried: string;
  refused: boolean;
  status: number | null;
  error: string | null;
  hostChanged: boolean;
  note: string;
}

const clip = (s: string, n = 200) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/** Runs one attack between two fingerprints of the host stand-ins. */
export async function runAttack(stage: Stage, attack: Attack): Promise<AttackResult> {
  const before = fingerprint(stage.host);
  let outcome: Outcome;
  try {
    outcome = await attack.run(stage);
  } catch (err) {
    const e = err as { code?: unknown; message?: string };
    outcome = { status: null, error: typeof e.code === 'string' ? e.code : 'exception', message: e.message ?? String(err) };
  }
  const problem = attack.check ? await attack.check(stage) : null;
  const hostChanged = fingerprint(stage.host) !== before;
  const expected = outcome.status === attack.expect.status && outcome.error === attack.expect.error;
  const notes = [
    clip(outcome.message),
    ...(expected ? [] : [`expected ${attack.expect.status ?? 'no HTTP answer'} ${attack.expect.error}`]),
    ...(problem ? [problem] : []),
  ];
  return {
    name: attack.name,
    tried: attack.tried,
    refused: expected && problem === null,
    status: outcome.status,
    error: outcome.error,
    hostChanged,
    note: notes.join('; '),
  };
}
