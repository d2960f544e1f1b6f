// Streaming uploads of overlay files (and whole image archives) to a cloudletd: the file is
// sent as the request body as it is read, never buffered whole (the API client's upload).
// Used by `cloudlet overlay push`, the benchmarks and tests; overlay-upload-main.ts runs it
// inside a lab namespace, so that the bytes cross the lab's shaped links. (A migrating
// container's image goes through the migration's PeerTransport instead: migration/image-ship.ts.)
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { ApiClient } from '../api/client/client.js';
import { ApiError } from '../util/errors.js';

/** A large image on a slow link, and the server's verification after the last byte. */
const UPLOAD_SILENCE_MS = 30 * 60_000;

export interface UploadResult<T = unknown> {
  status: number;
  body: T;
  /** Bytes of the file sent. */
  bytes: number;
  /** From the first byte sent to the reply read. */
  ms: number;
}

/** One file sent to a cloudletd route. */
export interface FileUpload {
  url: string;
  token: string | undefined;
  file: string;
  path: string;
  method?: 'PUT' | 'POST';
  contentType: string;
}

export async function uploadFile<T = unknown>(
  opts: FileUpload & {
    /** Give up on a server silent this long (default 30 min). */
    timeoutMs?: number;
  },
): Promise<UploadResult<T>> {
  const size = (await stat(opts.file)).size;
  // https: the server's certificate is verified against the deployment's CA (util/tls.ts).
  const client = new ApiClient({ baseUrl: opts.url, token: opts.token, silenceMs: opts.timeoutMs ?? UPLOAD_SILENCE_MS });
  const up = await client.upload<T>({
    path: opts.path,
    method: opts.method ?? 'PUT',
    body: createReadStream(opts.file, { highWaterMark: 1 << 20 }),
    contentType: opts.contentType,
    contentLength: size,
  });
  return { status: up.status, body: up.response, bytes: size, ms: Math.round(up.ms) };
}

/**
 * The same upload, run by a child process inside the network namespace `netnsPath` (e.g. a
 * lab cloudlet's), so that it leaves through that namespace's links.
 */
export async function uploadFileInNamespace<T = unknown>(
  netnsPath: string,
  opts: FileUpload & {
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
