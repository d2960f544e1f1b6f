// Data flows one way: cli/bench -> daemon -> migration -> (engine, checkpoint, transfer,
// images, network, fssync). The core's modules import nothing from the layers above them;
// what they need from their host (journal, event sink) they define as interfaces
// (migration/journal.ts) that the daemon implements.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/unit: the sources are three levels up.
const repo = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
const CORE = ['engine', 'checkpoint', 'transfer', 'images', 'network', 'fssync', 'migration'];
const ABOVE = ['daemon', 'cli', 'bench', 'lab', 'client', 'workloads', 'doctor', 'mobility'];

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every module specifier a file imports or re-exports (static and dynamic). */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]/g)) out.push(m[1]!);
  for (const m of source.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!);
  return out;
}

test('importsOf finds static, re-exported and dynamic imports', () => {
  const src =
    "import { a } from '../daemon/db.js';\nexport { b } from './x.js';\nimport type {\n  C,\n} from '../cli/y.js';\nconst m = await import('../lab/z.js');";
  assert.deepEqual(importsOf(src).sort(), ['../cli/y.js', '../daemon/db.js', '../lab/z.js', './x.js']);
});

test('the core imports nothing from the layers above it', () => {
  const offences: string[] = [];
  for (const layer of CORE) {
    for (const file of tsFiles(join(repo, 'src', layer))) {
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        const above = ABOVE.find((a) => spec.startsWith(`../${a}/`) || spec.startsWith(`../../${a}/`));
        if (above) offences.push(`${relative(repo, file)} imports ${spec}`);
      }
    }
  }
  assert.deepEqual(offences, []);
});

/** Which top-level folders of src each folder imports, from the code (type imports too). */
function folderImports(): Map<string, Set<string>> {
  const edges = new Map<string, Set<string>>();
  const src = join(repo, 'src');
  for (const file of tsFiles(src)) {
    const from = relative(src, file).split('/')[0]!;
    if (from.endsWith('.ts')) continue;
    const set = edges.get(from) ?? new Set<string>();
    edges.set(from, set);
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const to = relative(src, join(file, '..', spec)).split('/')[0]!;
      if (to !== from && !to.startsWith('..') && !to.endsWith('.js')) set.add(to);
    }
  }
  return edges;
}

/** The `| folder | imports |` table under "## Layers and imports" in docs/ARCHITECTURE.md. */
function documentedImports(): Map<string, Set<string>> {
  const doc = readFileSync(join(repo, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const section = doc.split(/^## /m).find((s) => s.startsWith('Layers and imports'));
  assert.ok(section, 'docs/ARCHITECTURE.md has no "## Layers and imports" section');
  const edges = new Map<string, Set<string>>();
  for (const m of section.matchAll(/^\| `([a-z]+)` \| ([^|]*)\|/gm)) {
    const to = [...m[2]!.matchAll(/`([a-z]+)`/g)].map((t) => t[1]!);
    edges.set(m[1]!, new Set(to));
  }
  return edges;
}

test('docs/ARCHITECTURE.md lists exactly the imports between folders that the code has', () => {
  const show = (m: Map<string, Set<string>>) =>
    Object.fromEntries(
      [...m.entries()]
        .filter(([, v]) => v.size > 0)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, [...v].sort().join(' ')]),
    );
  assert.deepEqual(show(documentedImports()), show(folderImports()), 'update the table in "## Layers and imports" (and ask whether the new arrow belongs)');
});
