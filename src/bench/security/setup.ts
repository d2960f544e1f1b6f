// The security bench's stage: a fresh CA in a temp dir with real openssl (src/util/pki.ts), a
// victim cloudletd (alpha: mutual TLS, the strict default containerPolicy but for one bind
// mount root, its Docker socket absent) and a hostile peer (beta, configured as alpha's peer
// and holding a certificate of the deployment's CA), both real daemons on 127.0.0.1; plus the
// certificates an attacker may hold: another CA's "beta", and "gamma", not one of alpha's peers.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseDaemonConfig, type DaemonConfig, type DaemonConfigInput } from '../../daemon/config.js';
import { startDaemon, type RunningDaemon } from '../../daemon/server.js';
import { initCa, issueCert, type CertInfo } from '../../util/pki.js';
import { makeStandIns, type StandIns } from './stand-ins.js';

export interface Pki {
  ca: CertInfo;
  alpha: CertInfo;
  beta: CertInfo;
  /** Signed by the deployment's CA, but not a configured peer of alpha. */
  gamma: CertInfo;
  /** beta's name, signed by another CA. */
  forgedBeta: CertInfo;
}

export interface Stage {
  dir: string;
  pki: Pki;
  host: StandIns;
  victim: { url: string; config: DaemonConfig; daemon: RunningDaemon };
  hostile: { url: string; config: DaemonConfig; daemon: RunningDaemon };
  close(): Promise<void>;
}

async function makePki(dir: string): Promise<Pki> {
  const pkiDir = join(dir, 'pki');
  const ca = await initCa({ dir: pkiDir });
  const alpha = await issueCert({ dir: pkiDir, name: 'alpha', ips: ['127.0.0.1'] });
  const beta = await issueCert({ dir: pkiDir, name: 'beta', ips: ['127.0.0.1'] });
  const gamma = await issueCert({ dir: pkiDir, name: 'gamma', ips: ['127.0.0.1'] });
  const otherDir = join(dir, 'other-ca');
  await initCa({ dir: otherDir, name: 'another CA' });
  const forgedBeta = await issueCert({ dir: otherDir, name: 'beta', ips: ['127.0.0.1'] });
  return { ca, alpha, beta, gamma, forgedBeta };
}

/** A daemon config of the bench: loopback, an engine socket that does not exist, its own token. */
function config(dir: string, name: string, cert: CertInfo, ca: CertInfo, more: Partial<DaemonConfigInput>): DaemonConfig {
  return parseDaemonConfig(
    {
      node: name,
      token: randomBytes(24).toString('hex'),
      dockerSocket: join(dir, `${name}-no-docker.sock`),
      dataDir: join(dir, `${name}-data`),
      listen: [{ host: '127.0.0.1', port: 0 }],
      tls: { cert: cert.cert, key: cert.key, ca: ca.cert },
      logLevel: 'error',
      ...more,
    },
    `bench security ${name}`,
  );
}

export async function makeStage(): Promise<Stage> {
  const dir = mkdtempSync(join(tmpdir(), 'cloudlet-bench-security-'));
  const started: RunningDaemon[] = [];
  const close = async () => {
    for (const d of started.reverse()) await d.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const pki = await makePki(dir);
    const host = makeStandIns(dir);
    const hostileConfig = config(dir, 'beta', pki.beta, pki.ca, { peers: [{ name: 'alpha', url: 'https://127.0.0.1:1' }] });
    const hostile = await startDaemon({ config: hostileConfig, logger: false });
    started.push(hostile);
    const victimConfig = config(dir, 'alpha', pki.alpha, pki.ca, {
      peers: [{ name: 'beta', url: hostile.addresses[0]! }],
      // The default (strict) policy, with one root for bind mounts: a bind outside it is the attack.
      containerPolicy: { bindMountRoots: [host.volumes] },
      limits: { requestBodyBytes: 64 * 1024 },
    });
    const victim = await startDaemon({ config: victimConfig, logger: false });
    started.push(victim);
    return {
      dir,
      pki,
      host,
      victim: { url: victim.addresses[0]!, config: victimConfig, daemon: victim },
      hostile: { url: hostile.addresses[0]!, config: hostileConfig, daemon: hostile },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
