// TLS of cloudletd's listeners: HTTPS with the certificate and key from its configuration.
// The clients' side (CA per peer origin, request options, hints) is in util/tls.ts, which
// the migration core and the CLI use too; it is re-exported here for the daemon's modules.
import type { SecureContextOptions } from 'node:tls';
import { readPem } from '../util/tls.js';

export { authHeadersFor, caFor, clientCertFor, dispatcherFor, httpsOptionsFor, presentClientCert, readPem, tlsHint, trustOrigins } from '../util/tls.js';

export interface TlsFiles {
  cert: string;
  key: string;
  ca?: string | undefined;
}

/** Options for https.createServer from the configured files. */
export function serverTlsOptions(files: TlsFiles): SecureContextOptions {
  return {
    cert: readPem(files.cert, 'tls.cert'),
    key: readPem(files.key, 'tls.key'),
    ...(files.ca ? { ca: readPem(files.ca, 'tls.ca') } : {}),
    minVersion: 'TLSv1.2',
  };
}
