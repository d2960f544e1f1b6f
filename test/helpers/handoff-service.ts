// The handoff service script run as a plain child process on loopback, for unit tests of the
// client: ports 0 pick free ports, read back from the service's "listening" lines. Every
// started service is killed (by its PID) after the test file.
import { spawn, type ChildProcess } from 'node:child_process';
import { after } from 'node:test';
import { HANDOFF_SERVICE_SCRIPT } from '../../src/workloads/handoff-service.js';

export interface LocalService {
  child: ChildProcess;
  tcpPort: number;
  httpPort: number;
}

const started: ChildProcess[] = [];
after(() => {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

export async function startLocalService(opts: { tcpPort?: number; httpPort?: number } = {}): Promise<LocalService> {
  const child = spawn(process.execPath, ['-e', HANDOFF_SERVICE_SCRIPT], {
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      TCP_PORT: String(opts.tcpPort ?? 0),
      HTTP_PORT: String(opts.httpPort ?? 0),
      INSTANCE_ID: `test-${Date.now()}-${Math.random().toString(16).slice(2, 8)}`,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  started.push(child);
  let out = '';
  child.stdout!.setEncoding('utf8');
  const ports = await new Promise<{ tcp: number; http: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not listen within 5 s: ${out}`)), 5000);
    child.once('exit', (code) => reject(new Error(`service exited (${code}): ${out}`)));
    child.stdout!.on('data', (c: string) => {
      out += c;
      const t = /tcp listening on [^:]+:(\d+)/.exec(out);
      const h = /http listening on [^:]+:(\d+)/.exec(out);
      if (t && h) {
        clearTimeout(timer);
        resolve({ tcp: Number(t[1]), http: Number(h[1]) });
      }
    });
  });
  return { child, tcpPort: ports.tcp, httpPort: ports.http };
}
