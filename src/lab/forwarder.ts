// Loopback port forwarder, run as its own process on the host by `lab up`: each cloudletd
// lives in its cloudlet's network namespace, unreachable from the host's loopback; it also
// listens on a unix socket (a path, so visible across namespaces), and this process exposes
// that socket as 127.0.0.1:PORT for the CLI and the browser.
import { createServer, connect, type Server } from 'node:net';

export interface ForwardSpec {
  name: string;
  socket: string;
  /** Preferred loopback port; another free one is taken when it is in use. */
  port: number;
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, '127.0.0.1');
  });
}

export async function startForwarding(specs: readonly ForwardSpec[]): Promise<{ servers: Server[]; ports: Record<string, number> }> {
  const servers: Server[] = [];
  const ports: Record<string, number> = {};
  for (const spec of specs) {
    const server = createServer((client) => {
      const upstream = connect(spec.socket);
      client.pipe(upstream).pipe(client);
      // A reset on either side ends both; errors here are per-connection and expected
      // (client went away, daemon restarting), so they close the pair instead of crashing.
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    let port: number;
    try {
      port = await listen(server, spec.port);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      port = await listen(server, 0);
    }
    servers.push(server);
    ports[spec.name] = port;
  }
  return { servers, ports };
}
