// `cloudlet ca init|issue`: the deployment's CA and one certificate per cloudlet, for cloudletd's
// HTTPS listener and mutual TLS between peers (see src/util/pki.ts and the README).
import type { Command } from 'commander';
import { initCa, issueCert, type CertInfo } from '../../util/pki.js';
import { action, printJson } from '../output.js';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function printHuman(what: string, c: CertInfo): void {
  process.stdout.write(
    `${what}\n  certificate ${c.cert}\n  key         ${c.key}\n  subject     ${c.subject.replace(/\n/g, ', ')}\n` +
      (c.subjectAltName ? `  names       ${c.subjectAltName}\n` : '') +
      `  valid until ${c.validTo}\n  sha256      ${c.fingerprint256}\n`,
  );
}

export function registerCaCommands(program: Command): void {
  const ca = program.command('ca').description("the deployment's CA and the cloudlets' certificates (mutual TLS between cloudlets)");

  ca.command('init')
    .description('make the deployment CA: DIR/ca.key (0600) and DIR/ca.pem')
    .requiredOption('--dir <dir>', 'directory of the CA and the certificates it issues')
    .option('--name <cn>', "the CA's common name", 'cloudlet deployment CA')
    .option('--force', 'replace an existing CA (certificates it issued stop being trusted)')
    .option('--json', 'print the CA certificate as JSON')
    .action(
      action(async (o: { dir: string; name: string; force?: boolean; json?: boolean }) => {
        const c = await initCa({ dir: o.dir, name: o.name, force: o.force === true });
        if (o.json) printJson(c);
        else printHuman('CA made', c);
      }),
    );

  ca.command('issue')
    .description("issue cloudlet NAME's key and certificate (DIR/NAME.key, DIR/NAME.pem), signed by the CA in DIR: TLS server and client")
    .argument('<name>', "the cloudlet's name (its node name; the certificate's CN and a DNS name)")
    .requiredOption('--dir <dir>', 'directory holding the CA (cloudlet ca init)')
    .option('--ip <address>', 'an address the cloudlet is reached at (repeatable): the host of its peers URL', collect, [])
    .option('--dns <host>', 'a further DNS name of the cloudlet (repeatable)', collect, [])
    .option('--force', "replace the cloudlet's existing key and certificate")
    .option('--json', 'print the certificate as JSON')
    .action(
      action(async (name: string, o: { dir: string; ip: string[]; dns: string[]; force?: boolean; json?: boolean }) => {
        const c = await issueCert({ dir: o.dir, name, ips: o.ip, dns: o.dns, force: o.force === true });
        if (o.json) printJson(c);
        else printHuman(`certificate issued for ${name}`, c);
      }),
    );
}
