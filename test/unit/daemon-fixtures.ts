// Shared set-up for the daemon tests: a real configuration whose Docker socket does not
// exist (engine unreachable) and a fresh data directory per test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseDaemonConfig, type DaemonConfig, type DaemonConfigInput } from '../../src/daemon/config.js';

export interface Fixture {
  dir: string;
  config: DaemonConfig;
  cleanup(): void;
}

export function makeFixture(overrides: Partial<DaemonConfigInput> = {}): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'cloudletd-test-'));
  const config = parseDaemonConfig({
    node: 'alpha',
    token: randomBytes(24).toString('hex'),
    dockerSocket: join(dir, 'no-such-docker.sock'),
    dataDir: join(dir, 'data'),
    listen: [{ host: '127.0.0.1', port: 0 }],
    logLevel: 'warn',
    ...overrides,
  });
  return { dir, config, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
