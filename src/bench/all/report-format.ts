// Number and table formatting shared by the `bench all` report's sections.
import type { Summary } from '../stats.js';

export const num = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');
/** "median (min-max)" with d decimals; a single measurement prints alone. */
export function fmt(v: Summary | null, d = 2): string {
  if (!v) return '-';
  return v.max > v.min ? `${num(v.median, d)} (${num(v.min, d)}-${num(v.max, d)})` : num(v.median, d);
}

export const sec = (ms: number) => ms / 1000;

export function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((x) => `| ${x.join(' | ')} |`)].join('\n');
}
