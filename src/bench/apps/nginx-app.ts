// nginx (Debian's nginx-light) serving a large file: its start script writes BIG_MB MiB of
// random bytes into /srv (the container's R/W layer) and their sha256 beside them, then runs
// nginx in the foreground. The client downloads the file at a bounded rate, so that the
// download is in progress across the handoff, and requests /small on a kept-alive connection
// beside it: the download must complete with the sha256 nginx's side computed.
import type { HostImageSpec } from '../../images/host-image.js';
import { startPythonClient } from './client-process.js';
import type { AppDef } from './types.js';

const BIG_MB = 48;
/** Download rate (KiB/s): BIG_MB MiB take ~32 s, longer than the handoff. */
const RATE_KBPS = 1536;

// Workers as root: a non-root process cannot be checkpointed on a host whose root lacks
// CAP_SYS_RESOURCE (see python-workers in docs/results/apps.md); nginx's default is nobody.
const NGINX_CONF = `user root root;
worker_processes 2;
pid /run/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  keepalive_timeout 600s;
  keepalive_requests 1000000;
  server {
    listen 8080;
    root /srv;
    location / { }
  }
}
`;

const START_SH = `#!/bin/sh
set -e
head -c ${BIG_MB}m /dev/urandom > /srv/big.bin
sha256sum /srv/big.bin > /srv/big.bin.sha256
echo small > /srv/small
exec nginx -g 'daemon off;'
`;

async function nginxImage(): Promise<HostImageSpec> {
  return {
    name: 'cloudlet-apps/nginx:1',
    binaries: ['/usr/sbin/nginx'],
    files: [
      { path: '/etc/nginx/nginx.conf', content: NGINX_CONF, mode: 0o644 },
      { path: '/app/start.sh', content: START_SH, mode: 0o755 },
      { path: '/etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n', mode: 0o644 },
      { path: '/etc/group', content: 'root:x:0:\nnogroup:x:65534:\n', mode: 0o644 },
    ],
    dirs: [
      { path: '/srv', mode: 0o755 },
      { path: '/var/lib/nginx', mode: 0o755 },
      { path: '/var/log/nginx', mode: 0o755 },
      { path: '/run', mode: 0o755 },
    ],
    cmd: ['/app/start.sh'],
    config: { exposedPorts: ['8080/tcp'] },
  };
}

export const NGINX: AppDef = {
  name: 'nginx',
  description: `nginx-light serving a ${BIG_MB} MiB file from the R/W layer; client: one download at ${RATE_KBPS} KiB/s across the handoff (sha256 checked) and keep-alive GET /small every 20 ms`,
  port: 8080,
  image: nginxImage,
  startClient: (ctx) => startPythonClient(ctx.lab, 'download', [ctx.address, 8080, '/big.bin', RATE_KBPS, 20]),
  downtimeVsCounter: 2,
};
