/**
 * Shared pieces of the PostgreSQL end-to-end tests: a server with an application user,
 * clients pointed at a proxy, raw-socket helpers for what drivers never send, and
 * running the real psql / pgbench binaries.
 */
import { execFile } from 'node:child_process';
import { Socket, connect } from 'node:net';
import { Client, ClientConfig } from 'pg';
import { PgServer, startPostgres } from '../harness/postgres';
import type { TidepoolProcess } from '../harness/tidepool';

export const APP_USER = 'app';
export const APP_PASSWORD = 'app-password';

export async function startServerWithAppUser(options: { maxConnections?: number } = {}): Promise<PgServer> {
  const server = await startPostgres({ maxConnections: options.maxConnections });
  await server.createUser(APP_USER, APP_PASSWORD, { superuser: true });
  return server;
}

export function proxyClient(proxy: TidepoolProcess, overrides: Partial<ClientConfig> = {}): Client {
  const client = new Client({
    host: proxy.host,
    port: proxy.port,
    user: APP_USER,
    password: APP_PASSWORD,
    database: 'postgres',
    ...overrides,
  });
  // Tests that provoke errors wait for them explicitly (nextClientError); pg also emits a
  // second "Connection terminated" error that would otherwise crash the test run.
  client.on('error', () => undefined);
  return client;
}

export async function connectedClient(proxy: TidepoolProcess, overrides: Partial<ClientConfig> = {}): Promise<Client> {
  const client = proxyClient(proxy, overrides);
  await client.connect();
  return client;
}

/** Resolves with the first error the client emits (e.g. a FATAL the proxy sends unprompted). */
export function nextClientError(client: Client): Promise<Error & { code?: string }> {
  return new Promise((resolve) => client.once('error', resolve));
}

/** The raw socket under a connected pg Client, to send what a driver never would. */
export function rawSocketOf(client: Client): Socket {
  return (client as unknown as { connection: { stream: Socket } }).connection.stream;
}

export interface CommandOutput {
  code: number;
  stdout: string;
  stderr: string;
}

export function runBinary(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<CommandOutput> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      args,
      { env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

export function psqlThroughProxy(
  proxy: TidepoolProcess,
  sql: string,
  env: Record<string, string> = {},
  input?: string,
): Promise<CommandOutput> {
  return runBinary('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', proxy.host, '-p', String(proxy.port), '-U', APP_USER, '-d', 'postgres', '-c', sql], {
    env: { PGPASSWORD: APP_PASSWORD, PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10', ...env },
    input,
  });
}

/** Sends a CancelRequest for the given backend key, as libpq does. */
export function sendCancelRequest(host: string, port: number, processId: number, secretKey: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port }, () => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(80877102, 4);
      packet.writeInt32BE(processId, 8);
      packet.writeInt32BE(secretKey, 12);
      socket.end(packet);
    });
    socket.on('error', reject);
    socket.on('close', () => resolve());
  });
}

/** Number of connections the given user has open on the server right now. */
export async function serverConnectionCount(server: PgServer, user = APP_USER): Promise<number> {
  const out = await server.psql(`SELECT count(*) FROM pg_stat_activity WHERE usename = '${user}' AND backend_type = 'client backend'`);
  return Number(out.trim());
}
