// Entry point of the lab's forwarder process: forwarder-main.js SPEC_FILE PORTS_OUT_FILE.
// Writes the ports it bound (by node name) to PORTS_OUT_FILE once all are listening.
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { startForwarding, type ForwardSpec } from './forwarder.js';

const [specFile, portsFile] = process.argv.slice(2);
if (!specFile || !portsFile) {
  process.stderr.write('usage: forwarder-main.js SPEC_FILE PORTS_OUT_FILE\n');
  process.exit(2);
}
const specs = JSON.parse(readFileSync(specFile, 'utf8')) as ForwardSpec[];
const { servers, ports } = await startForwarding(specs);
writeFileSync(portsFile + '.tmp', JSON.stringify(ports));
renameSync(portsFile + '.tmp', portsFile);
process.stdout.write(`forwarding ${JSON.stringify(ports)}\n`);
const stop = () => {
  for (const s of servers) s.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
