// The physical limit of a migration on its link (issue 21, item 4): the bytes that had to
// cross - the unique changed pages after compression that every round sent, the sum of the
// rounds' sentBytes - take bytes * 8 / bandwidth to send however well pre-copy is decided.
// Beside the measured total, it tells how far a handoff was from what the link allows.
import type { BenchAllResult, MigrationRow } from './types.js';

/** Every round's bytes on the wire (falls back to the report's bytesSent for a row without rounds). */
export function bytesToCross(row: Pick<MigrationRow, 'rounds' | 'bytesSent'>): number {
  return row.rounds.length > 0 ? row.rounds.reduce((n, x) => n + x.sentBytes, 0) : row.bytesSent;
}

/** Time to send `bytes` at `mbit` Mbit/s, ms. */
export function wireLimitMs(bytes: number, mbit: number): number {
  return ((bytes * 8) / (mbit * 1e6)) * 1000;
}

/**
 * The link bandwidth a row ran at: recorded in the row (from this version on), else the
 * scenario's setting (bandwidth sweep: params.mbit; decision scenario: the plan's link).
 */
export function linkMbitOf(row: MigrationRow, plan: Pick<BenchAllResult['plan'], 'decision'>): number | null {
  if (typeof row.linkMbit === 'number') return row.linkMbit;
  if (row.scenario === 'bandwidth' && Number.isFinite(Number(row.params.mbit))) return Number(row.params.mbit);
  if (row.scenario === 'decision') return plan.decision.mbit;
  return null;
}

/** The row's bytes to cross and their limit on its link (null where the link is not known). */
export function limitOf(row: MigrationRow, plan: Pick<BenchAllResult['plan'], 'decision'>): { bytes: number; mbit: number | null; limitMs: number | null } {
  const bytes = bytesToCross(row);
  const mbit = linkMbitOf(row, plan);
  return { bytes, mbit, limitMs: mbit === null || !(mbit > 0) ? null : wireLimitMs(bytes, mbit) };
}
