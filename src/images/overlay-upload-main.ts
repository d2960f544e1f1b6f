// Entry point of an upload run in another network namespace (`nsenter --net=... node THIS`):
// argv[2] is a JSON object {url, file, path, method?, contentType}; the token comes from
// $CLOUDLET_TOKEN (never on a command line). Prints the UploadResult (or the error) as JSON.
import { CloudletError, errorMessage } from '../util/errors.js';
import { uploadFile } from './overlay-upload.js';

const spec = JSON.parse(process.argv[2] ?? '{}') as { url: string; file: string; path: string; method?: 'PUT' | 'POST'; contentType: string };
try {
  const r = await uploadFile({ ...spec, token: process.env.CLOUDLET_TOKEN });
  process.stdout.write(JSON.stringify({ ok: true, ...r }) + '\n');
} catch (err) {
  const e = err instanceof CloudletError ? { ...err.toJSON(), status: err.httpStatus } : { error: 'internal', message: errorMessage(err) };
  process.stdout.write(JSON.stringify({ ok: false, ...e }) + '\n');
  process.exitCode = 1;
}
