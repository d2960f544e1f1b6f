// The Python apps of `cloudlet bench apps`: Debian's python3 and its standard library in an
// image from the host, running the services of src/workloads/apps/python-services.ts, with
// the counters client of client-py.ts.
import { realpath } from 'node:fs/promises';
import type { GeneratedFile, HostImageSpec } from '../../images/host-image.js';
import { PYTHON_KV_PY, PYTHON_WORKERS_PY } from '../../workloads/apps/python-services.js';
import { HOST_PYTHON, startPythonClient } from './client-process.js';
import type { AppDef } from './types.js';

/** A client request every (ms). */
const INTERVAL_MS = 10;
/** Bound of a client run: far more than the run needs; it is stopped after the handoff. */
const MAX_OPS = 100_000;

/** Parts of the standard library no service here imports (and that hold paths too long for ustar). */
const STDLIB_EXCLUDE = [
  '__pycache__',
  'test',
  'tests',
  'idlelib',
  'tkinter',
  'turtledemo',
  'ensurepip',
  'lib2to3',
  'pydoc_data',
  'distutils',
  'site-packages',
  'dist-packages',
  // A symlink into the host's /etc.
  'sitecustomize.py',
];

/** /etc/passwd and /etc/group with a non-root user `app` (uid/gid 1000). */
export const APP_USER_FILES: GeneratedFile[] = [
  {
    path: '/etc/passwd',
    content: 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    mode: 0o644,
  },
  { path: '/etc/group', content: 'root:x:0:\napp:x:1000:\nnobody:x:65534:\n', mode: 0o644 },
];

export async function pythonImage(o: { name: string; script: string; env: string[]; user?: string }): Promise<HostImageSpec> {
  const python = await realpath(HOST_PYTHON);
  const version = /python(3\.\d+)$/.exec(python)?.[1] ?? '3.11';
  return {
    name: o.name,
    binaries: [python],
    trees: [{ path: `/usr/lib/python${version}`, exclude: STDLIB_EXCLUDE }],
    files: [...APP_USER_FILES, { path: '/app/server.py', content: o.script, mode: 0o644 }],
    dirs: [{ path: '/home/app', mode: 0o1777 }],
    symlinks: [{ path: '/usr/bin/python3', target: `python${version}` }],
    cmd: ['python3', '/app/server.py'],
    config: { env: ['PYTHONDONTWRITEBYTECODE=1', ...o.env], exposedPorts: ['8080/tcp'], workingDir: '/app', ...(o.user ? { user: o.user } : {}) },
  };
}

export const PYTHON_KV: AppDef = {
  name: 'python-kv',
  description: "Debian's python3 http.server (one process, 16 MiB of counters in memory); client: keep-alive POSTs every 10 ms, each answer checked",
  port: 8080,
  image: () => pythonImage({ name: 'cloudlet-apps/python-kv:1', script: PYTHON_KV_PY, env: ['STATE_MB=16', 'PORT=8080'] }),
  startClient: (ctx) => startPythonClient(ctx.lab, 'counters', [ctx.address, 8080, INTERVAL_MS, MAX_OPS, 0]),
};

export const PYTHON_WORKERS: AppDef = {
  name: 'python-workers',
  description:
    'python3 pre-fork server as user app (uid 1000): a parent and 3 worker children sharing 8 MiB of counters (shared mapping) and one socket; client: a connection per request',
  port: 8080,
  image: () => pythonImage({ name: 'cloudlet-apps/python-workers:1', script: PYTHON_WORKERS_PY, env: ['STATE_MB=8', 'PORT=8080', 'WORKERS=3'], user: 'app' }),
  startClient: (ctx) => startPythonClient(ctx.lab, 'counters', [ctx.address, 8080, INTERVAL_MS, MAX_OPS, 1]),
};

/**
 * The same pre-fork server as root: the several-processes part (fork tree, shared mapping,
 * shared socket) on its own, apart from what a non-root user adds.
 */
export const PYTHON_WORKERS_ROOT: AppDef = {
  ...PYTHON_WORKERS,
  name: 'python-workers-root',
  description: 'the python-workers pre-fork server (a parent and 3 worker children, shared mapping and socket) as root; client: a connection per request',
  image: () => pythonImage({ name: 'cloudlet-apps/python-workers-root:1', script: PYTHON_WORKERS_PY, env: ['STATE_MB=8', 'PORT=8080', 'WORKERS=3'] }),
};
