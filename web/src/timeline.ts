// The timeline of a migration as a hand-made SVG chart: one row per round (pre-copy rounds,
// then the final one), the time each phase took - memory capture, hashing, compress+send,
// apply at the destination, restore (final round) - stacked along the row, the time the
// service was frozen drawn under it, and the bytes the round sent (over the raw bytes) on
// the right. Phases partly overlap in reality (hashing runs while the dump is written), so
// the stack shows where time went, not a wall-clock schedule.
import { fmtBytes, fmtMs, s } from './dom.js';
import type { MigrationReport, RoundReport } from './types.js';

export const PHASES = [
  { key: 'capture', label: 'capture (dump/scan)' },
  { key: 'hash', label: 'hash' },
  { key: 'send', label: 'compress + send' },
  { key: 'apply', label: 'apply at destination' },
  { key: 'restore', label: 'restore' },
] as const;
type PhaseKey = (typeof PHASES)[number]['key'];

const W = 860;
const LABEL_W = 80;
const TIME_W = 520;
const GAP = 20;
const BYTES_W = W - LABEL_W - TIME_W - GAP - 10;
const ROW_H = 30;
const TOP = 34;

function phases(r: RoundReport, report: MigrationReport): Record<PhaseKey, number> {
  // The final round's apply time includes the restore; the report has the restore apart.
  const restore = r.final ? Math.min(report.restoreMs ?? 0, r.applyMs) : 0;
  return { capture: r.dumpMs, hash: r.hashMs, send: r.sendMs, apply: Math.max(0, r.applyMs - restore), restore };
}

/** Round numbers for the tick labels: 1, 2, 5 x 10^n steps. */
function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw) ?? 10 * p;
}

export function renderTimeline(report: MigrationReport): SVGSVGElement {
  const rounds = report.rounds;
  const height = TOP + Math.max(rounds.length, 1) * ROW_H + 34;
  const svg = s('svg', {
    class: 'timeline',
    viewBox: `0 0 ${W} ${height}`,
    width: W,
    height,
    role: 'img',
    'aria-label': `timeline of migration ${report.id}: ${rounds.length} round(s)`,
    'data-rounds': rounds.length,
  });

  // Legend.
  let lx = LABEL_W;
  for (const p of [...PHASES, { key: 'stall', label: 'service frozen' }]) {
    svg.append(s('rect', { x: lx, y: 6, width: 12, height: 12, class: `phase-${p.key}` }), s('text', { x: lx + 16, y: 16, class: 'legend' }, p.label));
    lx += 26 + p.label.length * 6.1;
  }
  svg.append(s('text', { x: LABEL_W + TIME_W + GAP, y: 30, class: 'axis' }, 'bytes sent / raw'));

  if (rounds.length === 0) {
    svg.append(s('text', { x: LABEL_W, y: TOP + 18, class: 'empty' }, report.finishedAt ? 'no round was sent' : 'waiting for the first round...'));
    return svg;
  }

  const per = rounds.map((r) => phases(r, report));
  const maxMs = Math.max(1, report.downtimeMs ?? 0, ...per.map((p) => PHASES.reduce((sum, ph) => sum + p[ph.key], 0)));
  const maxBytes = Math.max(1, ...rounds.map((r) => Math.max(r.rawBytes, r.sentBytes)));
  const xs = TIME_W / maxMs;

  rounds.forEach((r, i) => {
    const y = TOP + i * ROW_H;
    const g = s('g', { class: `round${r.final ? ' final' : ''}`, 'data-index': r.index });
    g.append(
      s(
        'title',
        {},
        `round ${r.index}${r.final ? ' (final)' : ''}: capture ${fmtMs(r.dumpMs)}, hash ${fmtMs(r.hashMs)}, send ${fmtMs(r.sendMs)}, ` +
          `apply ${fmtMs(r.applyMs)}, frozen ${fmtMs(r.final && report.downtimeMs !== null ? report.downtimeMs : r.stallMs)}; ${r.pagesChanged}/${r.pagesScanned} pages, ` +
          `${fmtBytes(r.sentBytes)} sent of ${fmtBytes(r.rawBytes)} (${r.codec})`,
      ),
      s('text', { x: 4, y: y + 18, class: 'round-label' }, r.final ? `${r.index} final` : `round ${r.index}`),
    );
    let x = LABEL_W;
    for (const ph of PHASES) {
      const w = per[i]![ph.key] * xs;
      if (w <= 0) continue;
      g.append(s('rect', { x, y: y + 4, width: Math.max(w, 0.5), height: ROW_H - 14, class: `phase-${ph.key}` }));
      x += w;
    }
    // Frozen time, a strip under the row: a pre-copy round's stall (CRIU's frozen time, 0 for a
    // /proc scan); for the final round the downtime, from the freeze until the restored
    // service answered at the destination.
    const frozen = r.final && report.downtimeMs !== null ? report.downtimeMs : r.stallMs;
    if (frozen > 0) g.append(s('rect', { x: LABEL_W, y: y + ROW_H - 9, width: Math.max(frozen * xs, 1), height: 4, class: 'phase-stall' }));
    const bx = LABEL_W + TIME_W + GAP;
    g.append(
      s('rect', { x: bx, y: y + 4, width: (r.rawBytes / maxBytes) * BYTES_W, height: ROW_H - 14, class: 'bytes-raw' }),
      s('rect', { x: bx, y: y + 4, width: Math.max((r.sentBytes / maxBytes) * BYTES_W, 1), height: ROW_H - 14, class: 'bytes-sent' }),
      s('text', { x: bx + 4, y: y + 15, class: 'bytes-label' }, fmtBytes(r.sentBytes)),
    );
    svg.append(g);
  });

  // Time axis.
  const axisY = TOP + rounds.length * ROW_H + 4;
  svg.append(s('line', { x1: LABEL_W, y1: axisY, x2: LABEL_W + TIME_W, y2: axisY, class: 'axis-line' }));
  const step = niceStep(maxMs, 5);
  for (let t = 0; t <= maxMs + 1e-9; t += step) {
    const x = LABEL_W + t * xs;
    svg.append(
      s('line', { x1: x, y1: axisY, x2: x, y2: axisY + 4, class: 'axis-line' }),
      s('text', { x, y: axisY + 16, class: 'axis', 'text-anchor': 'middle' }, fmtMs(t)),
    );
  }
  return svg;
}
