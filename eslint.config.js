// ESLint's rules for the whole tree (`npm run lint`, run by scripts/test.sh before the tests).
// Besides typescript-eslint's recommended set, it holds the architecture's one-way layering
// (docs/ARCHITECTURE.md) and forbids import cycles; test/unit/layering.test.ts checks the
// layering a second way. Formatting is Prettier's job (.prettierrc.json), not ESLint's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { importX } from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

/** The core: the handoff and what it is made of. It knows nothing of who drives it. */
const CORE = ['engine', 'checkpoint', 'transfer', 'images', 'network', 'fssync', 'migration'];
/** Hosts, front ends and tools built on the core (the same list as test/unit/layering.test.ts). */
const ABOVE_CORE = ['daemon', 'cli', 'bench', 'lab', 'client', 'workloads', 'doctor', 'mobility'];
/** The daemon serves the API; the CLI, the benchmarks and the lab are its clients. */
const ABOVE_DAEMON = ['cli', 'bench', 'lab'];

const zone = (target, from, why) => ({ target: `./src/${target}`, from: `./src/${from}`, message: why });

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'docs/results/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: ['tsconfig.json', 'tsconfig.web.json'] })],
    },
    rules: {
      // tsc's noUnusedLocals/noUnusedParameters already hold; here only what they miss, and
      // `_name` marks a value left out on purpose (e.g. `const { a: _a, ...rest } = o`).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // `cond ? a.f() : a.g()` as a statement is used for byte-order pairs (fuzz-kit.ts).
      '@typescript-eslint/no-unused-expressions': ['error', { allowTernary: true, allowShortCircuit: true }],
      // A stream stage may be assigned after the closure that uses it is made (codecs.ts).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Patterns that match aligned text columns show their spaces as they are.
      'no-regex-spaces': 'off',
      // A pipeline sink may be an async generator that only consumes (and yields nothing).
      'require-yield': 'off',
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      'import-x/no-self-import': 'error',
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            ...CORE.flatMap((core) =>
              ABOVE_CORE.map((above) =>
                zone(core, above, 'the core (src/' + core + ') must not depend on the layers above it; define an interface in the core that they implement'),
              ),
            ),
            ...ABOVE_DAEMON.map((above) => zone('daemon', above, 'the daemon must not depend on its clients')),
            // The dashboard is browser code: it talks to cloudletd over HTTP only.
            { target: './web', from: './src', message: 'web/ is browser code; it shares no modules with src/' },
            { target: './src', from: './web', message: 'src/ must not import the browser code in web/' },
          ],
        },
      ],
    },
  },
  {
    // No function over 80 lines and no file over 500 (issue 20), code lines counted: a longer
    // function is split into named steps, or says why it is not with
    // `// eslint-disable-next-line max-lines-per-function -- <why>`; a longer file is split by job.
    files: ['src/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
      'max-lines': ['error', { max: 500, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    // Tests read JSON of many shapes (CLI --json output); `any` there is a test's choice.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
