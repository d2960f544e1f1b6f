#!/usr/bin/env node
// cloudlet: the operator's CLI. A thin client of cloudletd (HTTP API) and of the lab.
// Each command group lives in its own module under commands/ and registers itself here.
import { Command } from 'commander';
import { registerLabCommands } from './commands/lab.js';
import { registerNodeCommands } from './commands/nodes.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerMigrateCommand } from './commands/migrate.js';
import { registerBenchCommands } from './commands/bench.js';
import { registerOverlayCommands } from './commands/overlay.js';
import { registerClientCommand } from './commands/client.js';
import { registerCaCommands } from './commands/ca.js';

const program = new Command();
program
  .name('cloudlet')
  .description('Mobile edge computing on Docker engines: overlays, live handoff, lab, benchmarks')
  .version('0.1.0')
  .showHelpAfterError()
  .option('--url <url>', 'cloudletd API URL (default: the lab node named by --node)')
  .option('--token <token>', 'bearer token (default: $CLOUDLET_TOKEN or the lab token)')
  .option('--ca <file>', "PEM file of the deployment's CA, for https URLs (default: $CLOUDLET_CA)")
  // Every client of cloudletd reads the CA from $CLOUDLET_CA (daemon/tls.ts): --ca sets it.
  .hook('preAction', (cmd) => {
    const { ca } = cmd.opts<{ ca?: string }>();
    if (ca) process.env.CLOUDLET_CA = ca;
  });

registerLabCommands(program);
registerNodeCommands(program);
registerDoctorCommand(program);
registerMigrateCommand(program);
registerBenchCommands(program);
registerOverlayCommands(program);
registerClientCommand(program);
registerCaCommands(program);

await program.parseAsync(process.argv);
