#!/usr/bin/env node
// cloudletd: the per-cloudlet daemon. Loads its configuration, serves the HTTP API on every
// configured listener and shuts down gracefully on SIGTERM/SIGINT.
import { Command } from 'commander';
import { CloudletError, errorMessage } from '../util/errors.js';
import { checkFaultInjection, LAB_FAULTS_ENV, loadDaemonConfig } from './config.js';
import { startDaemon } from './server.js';
import { startSpawner, stopSpawner } from '../util/spawner.js';

const program = new Command()
  .name('cloudletd')
  .description('Cloudlet daemon: HTTP API of one cloudlet (engine, checkpoints, handoffs)')
  .requiredOption('-c, --config <file>', 'configuration file (JSON, see src/daemon/config.ts)')
  .showHelpAfterError();

async function main(): Promise<void> {
  program.parse(process.argv);
  const { config: configPath } = program.opts<{ config: string }>();
  const config = loadDaemonConfig(configPath);
  checkFaultInjection(config, configPath);
  // Before anything grows this process: programs (runc, rsync, CRIU...) are started by a
  // small spawner process, whose fork stays cheap (see util/spawner.ts).
  await startSpawner();
  const daemon = await startDaemon({ config });
  if (config.allowFaultInjection) {
    daemon.app.log.warn(
      { allowFaultInjection: true, [LAB_FAULTS_ENV]: process.env[LAB_FAULTS_ENV] },
      'fault injection is ON: migration requests may make this cloudlet fail on purpose (lab and tests only)',
    );
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal means "now": skip the graceful path.
      daemon.app.log.warn({ signal }, 'second signal, exiting immediately');
      process.exit(1);
    }
    stopping = true;
    daemon.app.log.info({ signal }, 'shutting down');
    daemon.close().then(
      () => {
        stopSpawner();
        process.exit(0);
      },
      (err: unknown) => {
        daemon.app.log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  // Before the logger exists (bad config, socket in use) errors go to stderr as text.
  process.stderr.write(`cloudletd: ${errorMessage(err)}\n`);
  if (err instanceof CloudletError && err.hint) process.stderr.write(`hint: ${err.hint}\n`);
  process.exit(err instanceof CloudletError && err.code === 'usage' ? 2 : 1);
});
