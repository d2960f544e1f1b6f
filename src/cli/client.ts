// The CLI's client of cloudletd: the API client (src/api/client) with an operator's defaults -
// a deadline of 30 s per call unless a command asks for more, the CA file of --ca /
// $CLOUDLET_CA for an https URL, and errors that say what to check when nobody answers.
import { ApiClient, OPERATOR_TIMEOUT_MS } from '../api/client/client.js';
import { readPem } from '../util/tls.js';

export const DEFAULT_TIMEOUT_MS = OPERATOR_TIMEOUT_MS;

export class CloudletClient extends ApiClient {
  constructor(
    baseUrl: string,
    token: string | undefined,
    opts: { timeoutMs?: number; /** PEM file of the CA for an https URL (default: $CLOUDLET_CA). */ ca?: string } = {},
  ) {
    super({ baseUrl, token, timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, ...(opts.ca ? { ca: readPem(opts.ca, 'CA file') } : {}) });
  }
}
