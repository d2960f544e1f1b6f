// A small SVG chart writer for the benchmark report: grouped bars and lines, each value a
// median with a min-max whisker, axes with units, a legend. No dependency: the output is
// plain SVG 1.1 text that any browser and GitHub renders.
import type { Summary } from '../stats.js';

export interface BarChart {
  kind: 'bars';
  title: string;
  xLabel: string;
  yLabel: string;
  groups: string[];
  series: { name: string; values: (Summary | null)[] }[];
}

export interface LineChart {
  kind: 'lines';
  title: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  series: { name: string; dashed?: boolean; points: { x: number; y: Summary }[] }[];
}

export type Chart = BarChart | LineChart;

const W = 860;
const H = 480;
const M = { left: 78, right: 220, top: 48, bottom: 70 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const f = (x: number) => (Math.round(x * 10) / 10).toString();

/** A round axis maximum and its tick step (1, 2 or 5 times a power of ten). */
export function niceScale(max: number, ticks = 5): { max: number; step: number } {
  if (!(max > 0)) return { max: 1, step: 0.2 };
  const raw = max / ticks;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * pow).find((s) => s >= raw)!;
  return { max: Math.ceil(max / step) * step, step };
}

function tickLabel(v: number, step: number): string {
  const decimals = step >= 1 ? 0 : Math.min(4, Math.ceil(-Math.log10(step)));
  return v.toFixed(decimals);
}

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${f(x)}" y="${f(y)}" ${attrs}>${escapeXml(s)}</text>`;
}

function frame(c: Chart, yMax: number, yStep: number): string[] {
  const out: string[] = [];
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(text(W / 2 - M.right / 2, 26, c.title, 'text-anchor="middle" font-size="16" font-weight="bold"'));
  out.push('<g class="grid" stroke="#e0e0e0" stroke-width="1">');
  for (let v = 0; v <= yMax + yStep / 2; v += yStep) {
    const y = M.top + PH - (v / yMax) * PH;
    out.push(`<line x1="${M.left}" y1="${f(y)}" x2="${M.left + PW}" y2="${f(y)}"/>`);
  }
  out.push('</g>');
  out.push('<g class="axis y-axis" font-size="12" text-anchor="end">');
  out.push(`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + PH}" stroke="#000"/>`);
  for (let v = 0; v <= yMax + yStep / 2; v += yStep) {
    const y = M.top + PH - (v / yMax) * PH;
    out.push(`<line x1="${M.left - 5}" y1="${f(y)}" x2="${M.left}" y2="${f(y)}" stroke="#000"/>`);
    out.push(text(M.left - 8, y + 4, tickLabel(v, yStep)));
  }
  out.push(text(18, M.top + PH / 2, c.yLabel, `text-anchor="middle" font-size="13" transform="rotate(-90 18 ${f(M.top + PH / 2)})"`));
  out.push('</g>');
  return out;
}

function legend(names: { name: string; color: string; dashed?: boolean; line?: boolean }[]): string[] {
  const out = ['<g class="legend" font-size="12">'];
  const x = M.left + PW + 16;
  names.forEach((n, i) => {
    const y = M.top + 8 + i * 20;
    if (n.line)
      out.push(`<line x1="${x}" y1="${y}" x2="${x + 18}" y2="${y}" stroke="${n.color}" stroke-width="2.5"${n.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
    else out.push(`<rect x="${x}" y="${y - 6}" width="14" height="12" fill="${n.color}"/>`);
    out.push(text(x + 24, y + 4, n.name));
  });
  out.push('</g>');
  return out;
}

function whisker(x: number, yLo: number, yHi: number): string {
  return `<path d="M${f(x)} ${f(yLo)}V${f(yHi)}M${f(x - 4)} ${f(yLo)}H${f(x + 4)}M${f(x - 4)} ${f(yHi)}H${f(x + 4)}" stroke="#222" stroke-width="1" fill="none"/>`;
}

function bars(c: BarChart): string[] {
  const all = c.series.flatMap((s) => s.values.filter((v): v is Summary => v !== null).map((v) => v.max));
  const { max, step } = niceScale(Math.max(0, ...all));
  const out = frame(c, max, step);
  const gw = PW / Math.max(1, c.groups.length);
  const bw = (gw * 0.8) / Math.max(1, c.series.length);
  const y = (v: number) => M.top + PH - (v / max) * PH;
  out.push('<g class="data">');
  c.series.forEach((s, si) => {
    s.values.forEach((v, gi) => {
      if (!v) return;
      const x = M.left + gi * gw + gw * 0.1 + si * bw;
      out.push(
        `<rect x="${f(x)}" y="${f(y(v.median))}" width="${f(bw * 0.92)}" height="${f(M.top + PH - y(v.median))}" fill="${COLORS[si % COLORS.length]}"><title>${escapeXml(`${s.name}, ${c.groups[gi]}: median ${f(v.median)} (min ${f(v.min)}, max ${f(v.max)}, n=${v.n})`)}</title></rect>`,
      );
      if (v.max > v.min) out.push(whisker(x + bw * 0.46, y(v.min), y(v.max)));
    });
  });
  out.push('</g>');
  out.push('<g class="axis x-axis" font-size="12" text-anchor="middle">');
  out.push(`<line x1="${M.left}" y1="${M.top + PH}" x2="${M.left + PW}" y2="${M.top + PH}" stroke="#000"/>`);
  // A group label may have two lines ('\n'): long labels stay apart.
  c.groups.forEach((g, gi) => g.split('\n').forEach((line, li) => out.push(text(M.left + gi * gw + gw / 2, M.top + PH + 18 + li * 14, line))));
  out.push(text(M.left + PW / 2, H - 12, c.xLabel, 'font-size="13"'));
  out.push('</g>');
  out.push(...legend(c.series.map((s, i) => ({ name: s.name, color: COLORS[i % COLORS.length]! }))));
  return out;
}

function lines(c: LineChart): string[] {
  const pts = c.series.flatMap((s) => s.points);
  const { max, step } = niceScale(Math.max(0, ...pts.map((p) => p.y.max)));
  const out = frame(c, max, step);
  const xs = [...new Set(pts.map((p) => p.x))].sort((a, b) => a - b);
  const tx = (v: number) => (c.logX ? Math.log10(v) : v);
  const lo = tx(xs[0] ?? 1);
  const hi = tx(xs[xs.length - 1] ?? 10);
  const span = hi - lo || 1;
  const x = (v: number) => M.left + 20 + ((tx(v) - lo) / span) * (PW - 40);
  const y = (v: number) => M.top + PH - (v / max) * PH;
  out.push('<g class="data">');
  c.series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length]!;
    const sorted = [...s.points].sort((a, b) => a.x - b.x);
    if (sorted.length > 1) {
      out.push(
        `<polyline points="${sorted.map((p) => `${f(x(p.x))},${f(y(p.y.median))}`).join(' ')}" fill="none" stroke="${color}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
      );
    }
    for (const p of sorted) {
      if (p.y.max > p.y.min) out.push(whisker(x(p.x), y(p.y.min), y(p.y.max)));
      out.push(
        `<circle cx="${f(x(p.x))}" cy="${f(y(p.y.median))}" r="4" fill="${color}"><title>${escapeXml(`${s.name}, ${p.x}: median ${f(p.y.median)} (min ${f(p.y.min)}, max ${f(p.y.max)}, n=${p.y.n})`)}</title></circle>`,
      );
    }
  });
  out.push('</g>');
  out.push('<g class="axis x-axis" font-size="12" text-anchor="middle">');
  out.push(`<line x1="${M.left}" y1="${M.top + PH}" x2="${M.left + PW}" y2="${M.top + PH}" stroke="#000"/>`);
  for (const v of xs) {
    out.push(`<line x1="${f(x(v))}" y1="${M.top + PH}" x2="${f(x(v))}" y2="${M.top + PH + 5}" stroke="#000"/>`);
    out.push(text(x(v), M.top + PH + 19, String(v)));
  }
  out.push(text(M.left + PW / 2, H - 22, c.xLabel + (c.logX ? ' (log scale)' : ''), 'font-size="13"'));
  out.push('</g>');
  out.push(...legend(c.series.map((s, i) => ({ name: s.name, color: COLORS[i % COLORS.length]!, dashed: s.dashed, line: true }))));
  return out;
}

export function renderSvg(c: Chart): string {
  const body = c.kind === 'bars' ? bars(c) : lines(c);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<title>${escapeXml(c.title)}</title>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
