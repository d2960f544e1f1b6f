// Streaming uploads of overlay files (and whole image archives) to a cloudletd: the file is
// sent as the request body as it is read, never buffered whole. Used by `cloudlet overlay
// push` and by the benchmark; overlay-upload-main.ts runs it inside a lab namespace, so that
// the bytes cross the lab's shaped links.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { ApiError } from '../util/errors.js';
import { authHeadersFor, httpsOptionsFor, tlsHint } from '../util/tls.js';

export interface UploadResult<T = unknown> {
  status: number;
  body: T;
  /** Bytes of the file sent. */
  bytes: number;
  /** From the first byte sent to the reply read. */
  ms: number;
}

export async function uploadFile<T = unknown>(opts: {
  url: string;
  token: string | undefined;
  file: string;
  path: string;
  method?: 'PUT' | 'POST';
  contentType: string;
  timeoutMs?: number;
}): Promise<UploadResult<T>> {
  const size = (await stat(opts.file)).size;
  const target = new URL(opts.path, opts.url.replace(/\/+$/, '') + '/');
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      reject(
        err instanceof ApiError
          ? err
          : new ApiError(target.href, 0, `upload to ${target.origin} failed: ${err.message}`, { code: 'unreachable', cause: err, hint: tlsHint(err) }),
      );
    };
    // https: the server's certificate is verified against the deployment's CA (daemon/tls.ts).
    const req = (target.protocol === 'https:' ? https.request : http.request)(
      target,
      {
        ...(target.protocol === 'https:' ? httpsOptionsFor(target.href) : {}),
        method: opts.method ?? 'PUT',
        headers: {
          'content-type': opts.contentType,
          'content-length': String(size),
          accept: 'application/json',
          ...authHeadersFor(target.href, opts.token),
        },
        timeout: opts.timeoutMs ?? 30 * 60_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          if (settled) return;
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : null;
          } catch {
            // not JSON: kept as text for the message below
          }
          const status = res.statusCode ?? 0;
          if (status >= 400) {
            const b = (body ?? {}) as { error?: unknown; message?: unknown; hint?: unknown };
            settled = true;
            reject(
              new ApiError(target.href, status, typeof b.message === 'string' ? b.message : `HTTP ${status}: ${text.slice(0, 200)}`, {
                ...(typeof b.error === 'string' ? { code: b.error } : {}),
                ...(typeof b.hint === 'string' ? { hint: b.hint } : {}),
              }),
            );
            return;
          }
          settled = true;
          resolve({ status, body: body as T, bytes: size, ms: Math.round(performance.now() - started) });
        });
        res.on('error', fail);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    // A server that refuses early (bad header, base absent) answers before the body is sent:
    // its reply wins over the write error that follows.
    req.on('error', (err) => setTimeout(() => fail(err), 200));
    const file = createReadStream(opts.file, { highWaterMark: 1 << 20 });
    file.on('error', (err) => req.destroy(err));
    file.pipe(req);
  });
}

/**
 * The same upload, run by a child process inside the network namespace `netnsPath` (e.g. a
 * lab cloudlet's), so that it leaves through that namespace's links.
 */
export async function uploadFileInNamespace<T = unknown>(
  netnsPath: string,
  opts: {
    url: string;
    token: string | undefined;
    file: string;
    path: string;
    method?: 'PUT' | 'POST';
    contentType: string;
    /** CA file for https */ ca?: string;
  },
): Promise<UploadResult<T>> {
  const { spawn } = await import('node:child_process');
  const main = new URL('./overlay-upload-main.js', import.meta.url).pathname;
  const { token, ca, ...spec } = opts;
  return new Promise((resolve, reject) => {
    const child = spawn('nsenter', [`--net=${netnsPath}`, '--', process.execPath, main, JSON.stringify(spec)], {
      env: { ...process.env, CLOUDLET_TOKEN: token ?? '', ...(ca ? { CLOUDLET_CA: ca } : {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', () => {
      let r: { ok: boolean; status?: number; message?: string; error?: string; hint?: string } & UploadResult<T>;
      try {
        r = JSON.parse(out.trim().split('\n').pop() ?? '') as typeof r;
      } catch {
        reject(new ApiError(opts.url, 0, `upload from ${netnsPath} printed no result: ${err.trim().slice(-500)}`));
        return;
      }
      if (!r.ok) {
        reject(
          new ApiError(opts.url, r.status ?? 0, r.message ?? 'upload failed', { ...(r.error ? { code: r.error } : {}), ...(r.hint ? { hint: r.hint } : {}) }),
        );
        return;
      }
      resolve({ status: r.status, body: r.body, bytes: r.bytes, ms: r.ms });
    });
  });
}
