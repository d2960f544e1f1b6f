// The deployment's certificates: one CA, and one certificate per cloudlet that it presents as a
// TLS server (to the CLI and its peers) and as a TLS client (to its peers, mutual TLS). Keys
// are made by Node (written 0600 from the start); signing is done by the machine's openssl
// (3.0) with a configuration of our own, so the system's openssl.cnf does not change the
// extensions. File layout in DIR: ca.key, ca.pem; NAME.key, NAME.pem per cloudlet.
import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { ConflictError, NotFoundError, UsageError } from './errors.js';
import { run } from './exec.js';
import { NODE_NAME } from './names.js';

/** What `ca init` and `ca issue` report. */
export interface CertInfo {
  /** The certificate's name: its CN (and, for a cloudlet's, a DNS SAN). */
  name: string;
  cert: string;
  key: string;
  subject: string;
  issuer: string;
  subjectAltName: string | null;
  serial: string;
  validFrom: string;
  validTo: string;
  fingerprint256: string;
}

export interface CaPaths {
  key: string;
  cert: string;
}

export function caPaths(dir: string): CaPaths {
  return { key: join(dir, 'ca.key'), cert: join(dir, 'ca.pem') };
}

export function certPaths(dir: string, name: string): CaPaths {
  return { key: join(dir, `${name}.key`), cert: join(dir, `${name}.pem`) };
}

const CA_DAYS = 3650;
const CERT_DAYS = 825;
// One config for both steps; `req` needs a distinguished_name section even with -subj.
const OPENSSL_CNF = `[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;

/** A DNS name as a SAN may carry it (letters, digits, dashes, dots; no wildcards). */
const DNS_NAME = /^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

function refuseExisting(paths: string[], force: boolean, what: string): void {
  const present = paths.filter((p) => existsSync(p));
  if (present.length > 0 && !force) {
    throw new ConflictError(`${what}: ${present.join(', ')} already exist${present.length === 1 ? 's' : ''}`, {
      context: { files: present },
      hint: 'pass --force to replace them (certificates issued by a replaced CA are no longer trusted)',
    });
  }
}

/** A new EC P-256 private key, written readable by its owner only. */
function writeKey(path: string): void {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  rmSync(path, { force: true }); // a replaced key file keeps no looser mode of its own
  writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run('openssl', args, { cwd });
}

export function describeCert(name: string, paths: CaPaths): CertInfo {
  const x = new X509Certificate(readFileSync(paths.cert));
  return {
    name,
    cert: paths.cert,
    key: paths.key,
    subject: x.subject,
    issuer: x.issuer,
    subjectAltName: x.subjectAltName ?? null,
    serial: x.serialNumber,
    validFrom: new Date(x.validFrom).toISOString(),
    validTo: new Date(x.validTo).toISOString(),
    fingerprint256: x.fingerprint256,
  };
}

/** `cloudlet ca init`: the deployment's CA (self-signed, valid 10 years) in `dir`. */
export async function initCa(opts: { dir: string; name?: string; force?: boolean }): Promise<CertInfo> {
  const name = opts.name ?? 'cloudlet deployment CA';
  if (!/^[\w .-]{1,64}$/.test(name)) throw new UsageError(`invalid CA name '${name}': letters, digits, spaces, dots, dashes, at most 64`);
  const dir = resolve(opts.dir); // openssl runs in a temporary directory below it
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const paths = caPaths(dir);
  refuseExisting([paths.key, paths.cert], opts.force === true, `a CA is already in ${dir}`);
  const tmp = mkdtempSync(join(dir, '.ca-'));
  try {
    writeFileSync(join(tmp, 'openssl.cnf'), OPENSSL_CNF);
    writeKey(paths.key);
    await openssl(
      ['req', '-x509', '-new', '-key', paths.key, '-out', paths.cert, '-days', String(CA_DAYS), '-sha256'].concat([
        '-subj',
        `/CN=${name}`,
        '-config',
        'openssl.cnf',
        '-extensions',
        'ca_ext',
      ]),
      tmp,
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return describeCert(name, paths);
}

export interface IssueOptions {
  dir: string;
  /** The cloudlet's name: CN and DNS SAN. */
  name: string;
  /** Addresses it is reached at (IP SANs): what peers' URLs name. */
  ips?: readonly string[];
  /** Further DNS names (SANs). */
  dns?: readonly string[];
  force?: boolean;
}

/** The subjectAltName value of a cloudlet's certificate, its inputs checked. */
export function subjectAltName(name: string, ips: readonly string[] = [], dns: readonly string[] = []): string {
  for (const ip of ips) if (isIP(ip) === 0) throw new UsageError(`--ip ${ip} is not an IP address`);
  for (const d of dns) if (!DNS_NAME.test(d)) throw new UsageError(`--dns ${d} is not a DNS name`);
  const names = [name, ...dns.filter((d) => d !== name)];
  return [...names.map((d) => `DNS:${d}`), ...ips.map((ip) => `IP:${ip}`)].join(',');
}

/** `cloudlet ca issue NAME`: key + certificate for cloudlet NAME signed by the CA in `dir`. */
export async function issueCert(opts: IssueOptions): Promise<CertInfo> {
  if (!NODE_NAME.test(opts.name)) throw new UsageError(`invalid cloudlet name '${opts.name}': lower-case letters, digits and dashes, starting with a letter`);
  if (opts.name === 'ca') throw new UsageError("'ca' names the CA's own files: choose another cloudlet name");
  const san = subjectAltName(opts.name, opts.ips, opts.dns);
  const dir = resolve(opts.dir);
  const ca = caPaths(dir);
  for (const p of [ca.key, ca.cert]) {
    if (!existsSync(p)) throw new NotFoundError('CA file', p, { hint: `make the deployment's CA first: cloudlet ca init --dir ${opts.dir}` });
  }
  const paths = certPaths(dir, opts.name);
  refuseExisting([paths.key, paths.cert], opts.force === true, `a certificate for ${opts.name} is already in ${dir}`);
  const tmp = mkdtempSync(join(dir, `.issue-${opts.name}-`));
  try {
    // Usable both ways: cloudletd's HTTPS listener (serverAuth) and its calls to peers (clientAuth).
    writeFileSync(
      join(tmp, 'ext.cnf'),
      `[cl_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = ${san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
`,
    );
    writeFileSync(join(tmp, 'openssl.cnf'), OPENSSL_CNF);
    writeKey(paths.key);
    await openssl(['req', '-new', '-key', paths.key, '-out', 'cert.csr', '-subj', `/CN=${opts.name}`, '-config', 'openssl.cnf'], tmp);
    const serial = '0x' + randomBytes(16).toString('hex').replace(/^./, '1'); // positive, 128 bits
    await openssl(
      ['x509', '-req', '-in', 'cert.csr', '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial, '-days', String(CERT_DAYS), '-sha256'].concat([
        '-extfile',
        'ext.cnf',
        '-extensions',
        'cl_ext',
        '-out',
        paths.cert,
      ]),
      tmp,
    );
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return describeCert(opts.name, paths);
}
