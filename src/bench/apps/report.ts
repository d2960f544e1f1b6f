// The Markdown of a `cloudlet bench apps` run (docs/results/apps.md): one row per app, then
// what each checked and, for a failed one, why.
import type { AppResult, AppsBenchResult } from './types.js';

const cell = (v: number | null | undefined) => (v === null || v === undefined ? '-' : String(v));
const mb = (v: number | null) => (v === null ? '-' : (v / 1e6).toFixed(1));
/** "1.4 (<= 2: met)" */
const ratioCell = (x: AppResult['downtimeVsCounter']) =>
  `${cell(x.ratio)}${x.target === null ? '' : ` (<= ${x.target}: ${x.met === true ? 'met' : '**missed**'})`}`;

export function appsMarkdown(r: AppsBenchResult, jsonPath: string): string {
  const own = r.network === 'own';
  const lines = [
    '# Real applications through a handoff (issue 17)',
    '',
    `Command: \`${r.command}\` (${r.date.slice(0, 16).replace('T', ' ')} UTC) -> \`${jsonPath}\`.`,
    `Machine: ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB, kernel ${r.machine.kernel}; lab links ${r.link.bandwidth}, ${r.link.latency} one way.`,
    ...(r.usernsRemap
      ? [
          `Engines with userns-remap (${r.usernsRemap.user}, container root = host uid ${r.usernsRemap.uid}): every app and the reference counter in a network namespace of its own on the service network with its fixed address, not in a holder (docs/userns-remap.md).`,
        ]
      : []),
    '',
    "Each app runs from an image built at run time from the host's installed Debian programs",
    '(no registry), loaded into the source engine only, created like `docker run IMAGE` (its own',
    `command, user, EXPOSE) ${own ? 'in a network namespace of its own' : 'in a network namespace holder'} on the service network, and handed`,
    'off a -> b once while its own kind of client works against it. `stateOk`: the checksum the',
    "program computes of its state equals the client's reference. `clientGapMs`: the longest",
    'time without a completed client operation around the handoff. `bytes`: what the handoff',
    'sent (memory, file system, image layers). `x counter`: its downtime over that of the',
    `reference handoff of the same run (the busybox counter ${own ? 'in its own namespace' : 'in a holder'}, a -> b just before the`,
    'apps), with the target where the app has one.',
    '',
    `Reference: ${r.reference.workload}: ${r.reference.error ? `FAILED (${r.reference.error})` : `downtime ${cell(r.reference.downtimeMs)} ms, total ${cell(r.reference.totalMs)} ms`}.`,
    '',
    '| app | ok | stateOk | failed ops / ops | clientGapMs | downtimeMs | x counter | totalMs | MB sent | rounds |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...r.apps.map(
      (a) =>
        `| ${a.name} | ${a.ok ? 'yes' : '**no**'} | ${a.stateOk} | ${a.failedOps} / ${a.ops} | ${cell(a.clientGapMs)} | ${cell(a.downtimeMs)} | ${ratioCell(a.downtimeVsCounter)} | ${cell(a.totalMs)} | ${mb(a.bytes)} | ${cell(a.rounds)} |`,
    ),
    '',
    `All apps ok: ${r.allOk}; downtime targets met: ${r.targetsMet}.`,
    '',
    '## The apps',
    '',
  ];
  for (const a of r.apps) {
    lines.push(`- **${a.name}**: ${a.description}.`);
    if (a.failure) lines.push(`  Failed: ${a.failure}`);
    if (a.errors.length > 0) lines.push(`  Client errors: ${a.errors.map((e) => `\`${e}\``).join('; ')}`);
  }
  lines.push('');
  return lines.join('\n');
}
