/**
 * The floor for any Node.js proxy: a pipe with no pooling and no parsing, one server socket per
 * client, optionally terminating TLS from PostgreSQL clients (SSLRequest, then a TLS socket).
 * `npm run bench` and `integ/bench/profile.ts` (PROFILE_NAIVE=1) measure it beside PgBouncer and
 * Tidepool, so Tidepool's CPU per transaction can be read against what Node itself costs.
 *
 *   node -r ts-node/register/transpile-only integ/bench/naive-pipe.ts <targetHost> <targetPort> [certFile keyFile]
 *
 * Prints the port it listens on, then runs until killed.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Socket, connect, createServer } from 'node:net';
import { join } from 'node:path';
import { TLSSocket, createSecureContext } from 'node:tls';

export interface NaivePipe {
  host: string;
  port: number;
  pid: number;
  stop: () => void;
}

/** Starts the pipe in its own process (so its CPU time can be read from /proc). */
export async function startNaivePipe(target: { host: string; port: number }, cert?: { certFile: string; keyFile: string }): Promise<NaivePipe> {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', join(__dirname, 'naive-pipe.ts'), target.host, String(target.port), ...(cert ? [cert.certFile, cert.keyFile] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', (code) => reject(new Error(`naive pipe exited with ${code}`)));
  });
  return { host: '127.0.0.1', port, pid: child.pid!, stop: () => child.kill('SIGKILL') };
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

function serve(targetHost: string, targetPort: string, secureContext: ReturnType<typeof createSecureContext> | undefined): void {
  const listener = createServer((client) => {
    client.once('data', (first: Buffer) => {
      const server = connect({ host: targetHost, port: Number(targetPort) });
      if (first.length === 8 && first.equals(SSL_REQUEST)) {
        if (!secureContext) {
          client.write('N');
          pipeBoth(client, server);
          return;
        }
        client.write('S');
        pipeBoth(new TLSSocket(client, { isServer: true, secureContext }), server);
        return;
      }
      server.write(first);
      pipeBoth(client, server);
    });
  });
  listener.listen(0, '127.0.0.1', () => {
    const address = listener.address();
    process.stdout.write(`${typeof address === 'object' && address ? address.port : 0}\n`);
  });
}

function pipeBoth(client: Socket, server: Socket): void {
  client.setNoDelay(true);
  server.setNoDelay(true);
  client.pipe(server);
  server.pipe(client);
  const close = () => {
    client.destroy();
    server.destroy();
  };
  client.on('error', close).on('close', close);
  server.on('error', close).on('close', close);
}

if (require.main === module) {
  const [targetHost = '127.0.0.1', targetPort = '5432', certFile, keyFile] = process.argv.slice(2);
  serve(targetHost, targetPort, certFile && keyFile ? createSecureContext({ cert: readFileSync(certFile), key: readFileSync(keyFile) }) : undefined);
}
