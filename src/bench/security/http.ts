// Requests of the security bench's attackers to the victim cloudletd: over TLS (undici) with
// or without a client certificate and the token, raw bodies included; or plain HTTP.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { Agent, fetch } from 'undici';
import type { CertInfo } from '../../util/pki.js';
import type { Outcome } from './attack.js';
import type { Stage } from './setup.js';

export interface CallOptions {
  method?: string;
  path: string;
  /** The client certificate to present (none: no certificate). */
  cert?: CertInfo;
  token?: string;
  /** JSON to send, or raw bytes sent as application/json. */
  body?: unknown;
  raw?: Buffer | string;
}

function outcomeOf(status: number, text: string): Outcome {
  try {
    const b = JSON.parse(text) as { error?: string; message?: string };
    return { status, error: b.error ?? null, message: b.message ?? text };
  } catch {
    return { status, error: null, message: text };
  }
}

/** One request to the victim with a TLS client of its own (trusting the deployment's CA). */
export async function call(stage: Stage, o: CallOptions): Promise<Outcome> {
  const agent = new Agent({
    connect: {
      ca: readFileSync(stage.pki.ca.cert),
      ...(o.cert ? { cert: readFileSync(o.cert.cert), key: readFileSync(o.cert.key) } : {}),
      rejectUnauthorized: true,
    },
  });
  const body = o.raw ?? (o.body !== undefined ? JSON.stringify(o.body) : undefined);
  try {
    const res = await fetch(stage.victim.url + o.path, {
      method: o.method ?? 'GET',
      dispatcher: agent,
      headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body } : {}),
    });
    return outcomeOf(res.status, await res.text());
  } finally {
    await agent.close();
  }
}

/** Plain HTTP to the victim's TLS port: whatever comes back, or the transport's error code. */
export function plainHttp(stage: Stage, o: { method: string; path: string; body: unknown }): Promise<Outcome> {
  const target = new URL(o.path, stage.victim.url.replace(/^https:/, 'http:'));
  const payload = JSON.stringify(o.body);
  return new Promise((resolve) => {
    const req = http.request(target, {
      method: o.method,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      timeout: 10_000,
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve(outcomeOf(res.statusCode ?? 0, text)));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('no answer in 10 s'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ status: null, error: err.code ?? 'error', message: `connection ended without an HTTP answer: ${err.message}` }),
    );
    req.end(payload);
  });
}
