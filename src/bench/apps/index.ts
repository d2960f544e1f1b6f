// The apps of `cloudlet bench apps`, in the order they run.
import { PYTHON_KV, PYTHON_WORKERS, PYTHON_WORKERS_ROOT } from './python-apps.js';
import { NGINX } from './nginx-app.js';
import { NODE_SSE } from './node-app.js';
import { POSTGRES } from './postgres-app.js';
import type { AppDef } from './types.js';

export const APPS: AppDef[] = [PYTHON_KV, PYTHON_WORKERS_ROOT, PYTHON_WORKERS, NGINX, POSTGRES, NODE_SSE];
