// One chart per scenario, built from the raw rows of a results.json.
import { summarize, type Summary } from '../stats.js';
import type { Chart } from './svg.js';
import type { BenchAllResult, MigrationRow } from './types.js';

const s = (ms: number) => ms / 1000;
const fixed = (v: number): Summary => ({ n: 0, median: v, p95: v, min: v, max: v });
const range = (lo: number, hi: number): Summary => ({ n: 0, median: (lo + hi) / 2, p95: hi, min: lo, max: hi });

export function pick(rows: readonly MigrationRow[], where: (r: MigrationRow) => boolean, value: (r: MigrationRow) => number): Summary | null {
  return summarize(rows.filter(where).map(value));
}

export function distinct<T>(xs: readonly T[]): T[] {
  return [...new Set(xs)];
}

export function shortWorkload(w: string): string {
  return w.startsWith('busybox') ? 'counter' : w.startsWith('activity') ? 'activity' : w.startsWith('random') ? 'random' : w;
}

export function overlayChart(r: BenchAllResult): Chart {
  const groups = distinct(r.overlay.map((o) => o.workload));
  const of = (w: string, v: (o: BenchAllResult['overlay'][number]) => number) => summarize(r.overlay.filter((o) => o.workload === w).map(v));
  return {
    kind: 'bars',
    title: 'Scenario 1: overlay synthesis time',
    xLabel: 'workload (large ~200 MB of app files, small ~2 MB)',
    yLabel: 'synthesis time (s)',
    groups,
    series: [
      { name: 'ours (decompress + load)', values: groups.map((w) => of(w, (o) => s(o.synthesisMs))) },
      { name: '2016 method, same run', values: groups.map((w) => of(w, (o) => s(o.prototypeSynthesisMs))) },
      { name: '2016 published', values: groups.map((w) => fixed(r.published.overlay2016[w as 'large' | 'small'].synthesisS)) },
    ],
  };
}

export function compressionChart(r: BenchAllResult): Chart {
  const workloads = distinct(r.compression.map((c) => c.workload));
  const codecs = distinct(r.compression.map((c) => c.codec));
  const mbits = r.plan.compression.mbits.map(String);
  const groups = workloads.flatMap((w) => mbits.map((m) => ({ w, m, label: `${shortWorkload(w)}\n${m}` })));
  return {
    kind: 'bars',
    title: 'Scenario 2: memory transfer time per codec, relative to none',
    xLabel: 'workload, link bandwidth (Mbit/s)',
    yLabel: 'transfer time (% of uncompressed)',
    groups: groups.map((g) => g.label),
    series: codecs.map((codec) => ({
      name: codec,
      values: groups.map((g) => {
        const rows = r.compression.filter((c) => c.workload === g.w);
        const reps = distinct(rows.map((c) => c.rep));
        return summarize(
          reps.map((rep) => {
            const mine = rows.find((c) => c.rep === rep && c.codec === codec)?.transferS[g.m];
            const none = rows.find((c) => c.rep === rep && c.codec === 'none')?.transferS[g.m];
            return mine !== undefined && none ? (100 * mine) / none : Number.NaN;
          }),
        );
      }),
    })),
  };
}

export function roundsChart(r: BenchAllResult): Chart {
  const ns = distinct(r.rounds.map((x) => Number(x.params.n)));
  const rounds = distinct(r.rounds.map((x) => Number(x.params.rounds)));
  return {
    kind: 'bars',
    title: `Scenario 3: forced pre-copy rounds at ${r.plan.activity.mbit} Mbit/s`,
    xLabel: 'pre-copy rounds (0 = stop-and-copy)',
    yLabel: 'time (s)',
    groups: rounds.map(String),
    series: ns.flatMap((n) => [
      {
        name: `total, n=${n}`,
        values: rounds.map((k) =>
          pick(
            r.rounds,
            (x) => x.params.n === n && x.params.rounds === k,
            (x) => s(x.totalMs),
          ),
        ),
      },
      {
        name: `downtime, n=${n}`,
        values: rounds.map((k) =>
          pick(
            r.rounds,
            (x) => x.params.n === n && x.params.rounds === k,
            (x) => s(x.downtimeMs),
          ),
        ),
      },
    ]),
  };
}

export function alphaChart(r: BenchAllResult): Chart {
  const ns = distinct(r.alpha.map((x) => Number(x.params.n)));
  const alphas = distinct(r.alpha.map((x) => Number(x.params.alpha)));
  return {
    kind: 'bars',
    title: `Scenario 4: alpha rule at ${r.plan.activity.mbit} Mbit/s`,
    xLabel: 'client requests during the migration (n)',
    yLabel: 'time (s)',
    groups: ns.map((n) => `n=${n}`),
    series: alphas.flatMap((a) => [
      {
        name: `total, alpha=${a}`,
        values: ns.map((n) =>
          pick(
            r.alpha,
            (x) => x.params.n === n && x.params.alpha === a,
            (x) => s(x.totalMs),
          ),
        ),
      },
      {
        name: `downtime, alpha=${a}`,
        values: ns.map((n) =>
          pick(
            r.alpha,
            (x) => x.params.n === n && x.params.alpha === a,
            (x) => s(x.downtimeMs),
          ),
        ),
      },
    ]),
  };
}

export function bandwidthChart(r: BenchAllResult): Chart {
  const workloads = distinct(r.bandwidth.map((x) => x.workload));
  const mbits = distinct(r.bandwidth.map((x) => Number(x.params.mbit))).sort((a, b) => a - b);
  const line = (w: string, what: 'totalMs' | 'downtimeMs') => ({
    name: `${shortWorkload(w)} ${what === 'totalMs' ? 'total' : 'downtime'}`,
    points: mbits.flatMap((m) => {
      const y = pick(
        r.bandwidth,
        (x) => x.workload === w && x.params.mbit === m,
        (x) => s(x[what]),
      );
      return y ? [{ x: m, y }] : [];
    }),
  });
  const ma = r.published;
  return {
    kind: 'lines',
    title: 'Scenario 5: migration time vs link bandwidth',
    xLabel: 'link bandwidth (Mbit/s)',
    yLabel: 'time (s)',
    logX: true,
    series: [
      ...workloads.flatMap((w) => [line(w, 'totalMs'), line(w, 'downtimeMs')]),
      { name: 'Ma et al. OpenFace total', dashed: true, points: Object.entries(ma.maOpenFace.totalS).map(([m, v]) => ({ x: Number(m), y: fixed(v) })) },
      { name: 'Ma et al. busybox total', dashed: true, points: mbits.map((m) => ({ x: m, y: range(...ma.maBusybox.totalS) })) },
      { name: 'Ma et al. busybox down', dashed: true, points: mbits.map((m) => ({ x: m, y: range(...ma.maBusybox.downtimeS) })) },
    ],
  };
}

export function decisionChart(r: BenchAllResult): Chart {
  const policies = distinct(r.decision.map((x) => x.policy));
  const workloads = distinct(r.decision.map((x) => x.workload));
  return {
    kind: 'bars',
    title: `Scenario 6: decision models at ${r.plan.decision.mbit} Mbit/s`,
    xLabel: 'stop rule',
    yLabel: 'time (s)',
    groups: policies,
    series: workloads.flatMap((w) => [
      {
        name: `${shortWorkload(w)} total`,
        values: policies.map((p) =>
          pick(
            r.decision,
            (x) => x.workload === w && x.policy === p,
            (x) => s(x.totalMs),
          ),
        ),
      },
      {
        name: `${shortWorkload(w)} downtime`,
        values: policies.map((p) =>
          pick(
            r.decision,
            (x) => x.workload === w && x.policy === p,
            (x) => s(x.downtimeMs),
          ),
        ),
      },
    ]),
  };
}

export const CHARTS: { file: string; build: (r: BenchAllResult) => Chart }[] = [
  { file: 'overlay.svg', build: overlayChart },
  { file: 'compression.svg', build: compressionChart },
  { file: 'rounds.svg', build: roundsChart },
  { file: 'alpha.svg', build: alphaChart },
  { file: 'bandwidth.svg', build: bandwidthChart },
  { file: 'decision.svg', build: decisionChart },
];
