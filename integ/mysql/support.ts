/**
 * Shared pieces of the MySQL end-to-end tests: a MariaDB with an application user and
 * database, mysql2 clients pointed at a proxy, and the real mariadb CLI and sysbench.
 */
import { Socket, connect } from 'node:net';
import * as mysql from 'mysql2/promise';
import { nativePasswordToken } from '../../runtime/protocol/mysql/auth';
import { AuthPlugin, CapabilityFlag } from '../../runtime/protocol/mysql/constants';
import { MysqlPacketFramer, encodePacket } from '../../runtime/protocol/mysql/framing';
import { MysqlResponseTracker, encodeHandshakeResponse41, parseHandshakeV10 } from '../../runtime/protocol/mysql/packets';
import { MariadbServer, startMariadb } from '../harness/mariadb';
import type { TidepoolProcess } from '../harness/tidepool';
import { CommandOutput, runBinary } from '../pg/support';

export { runBinary };
export type { CommandOutput };

export const APP_USER = 'app';
export const APP_PASSWORD = 'app-password';
export const APP_DB = 'appdb';

export async function startServerWithAppUser(options: { maxConnections?: number; settings?: Record<string, string> } = {}): Promise<MariadbServer> {
  const server = await startMariadb({ maxConnections: options.maxConnections, settings: options.settings });
  await server.createUser(APP_USER, APP_PASSWORD, { superuser: true });
  await server.mysql(`CREATE DATABASE ${APP_DB}; CREATE DATABASE otherdb;`);
  return server;
}

export type ClientOptions = Partial<mysql.ConnectionOptions>;

export function connectThroughProxy(proxy: TidepoolProcess, overrides: ClientOptions = {}): Promise<mysql.Connection> {
  return mysql.createConnection({
    host: proxy.host,
    port: proxy.port,
    user: APP_USER,
    password: APP_PASSWORD,
    database: APP_DB,
    connectTimeout: 10_000,
    ...overrides,
  });
}

/** Resolves with the error a connection attempt fails with (or null when it connects). */
export async function connectError(proxy: TidepoolProcess, overrides: ClientOptions = {}): Promise<(Error & { errno?: number; sqlState?: string; code?: string }) | null> {
  try {
    const connection = await connectThroughProxy(proxy, overrides);
    await connection.end();
    return null;
  } catch (error) {
    return error as Error & { errno?: number; sqlState?: string };
  }
}

export async function queryValue<T = unknown>(connection: mysql.Connection, sql: string, values?: unknown[]): Promise<T> {
  const [rows] = await connection.query<mysql.RowDataPacket[]>({ sql, rowsAsArray: true }, values);
  return rows[0]![0] as T;
}

export function mariadbThroughProxy(proxy: TidepoolProcess, sql: string, extraArgs: string[] = [], user = APP_USER, password = APP_PASSWORD): Promise<CommandOutput> {
  return runBinary(
    'mariadb',
    ['--no-defaults', '--protocol=TCP', `--host=${proxy.host}`, `--port=${proxy.port}`, `--user=${user}`, '--batch', '--skip-column-names', '--connect-timeout=10', `--database=${APP_DB}`, ...extraArgs, '-e', sql],
    { env: { MYSQL_PWD: password } },
  );
}

/** Connections the given user has open on the server right now. */
export async function serverConnectionCount(server: MariadbServer, user = APP_USER): Promise<number> {
  const out = await server.mysql(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '${user}'`);
  return Number(out.trim());
}

/** A raw TCP connection to the proxy, to send what drivers never would. Resolves once the proxy's handshake arrived. */
export function rawConnection(proxy: TidepoolProcess): Promise<{ socket: Socket; received: () => Buffer; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: proxy.host, port: proxy.port });
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((resolveClosed) => socket.on('close', () => resolveClosed()));
    socket.on('error', reject);
    socket.once('data', (first: Buffer) => {
      chunks.push(first);
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      resolve({ socket, received: () => Buffer.concat(chunks), closed });
    });
  });
}

export interface SysbenchResult {
  transactions: number;
  queries: number;
  errors: number;
  tps: number;
  qps: number;
  output: CommandOutput;
}

export async function sysbench(
  endpoint: { host: string; port: number },
  test: string,
  args: string[],
  command: 'prepare' | 'run' | 'cleanup',
  credentials: { user: string; password: string; database: string } = { user: APP_USER, password: APP_PASSWORD, database: APP_DB },
  timeoutMs = 120_000,
): Promise<SysbenchResult> {
  const output = await runBinary(
    'sysbench',
    [
      test,
      '--db-driver=mysql',
      `--mysql-host=${endpoint.host}`,
      `--mysql-port=${endpoint.port}`,
      `--mysql-user=${credentials.user}`,
      `--mysql-password=${credentials.password}`,
      `--mysql-db=${credentials.database}`,
      ...args,
      command,
    ],
    { timeoutMs },
  );
  const number = (pattern: RegExp) => Number(pattern.exec(output.stdout)?.[1] ?? 0);
  return {
    transactions: number(/transactions:\s+(\d+)/),
    queries: number(/queries:\s+(\d+)/),
    errors: number(/ignored errors:\s+(\d+)/),
    tps: number(/transactions:\s+\d+\s+\(([\d.]+) per sec/),
    qps: number(/queries:\s+\d+\s+\(([\d.]+) per sec/),
    output,
  };
}

/**
 * A minimal protocol-level client for what drivers do not expose (server-side cursors,
 * hand-made packets): logs in with mysql_native_password, then sends one command at a
 * time and collects its whole response, using the proxy's own response tracker to know
 * where it ends.
 */
export class RawMysqlClient {
  private readonly framer = new MysqlPacketFramer();
  private readonly queue: Buffer[] = [];
  private waiter: (() => void) | null = null;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const packet of this.framer.pushPackets(chunk)) this.queue.push(Buffer.from(packet.payload));
      this.waiter?.();
    });
  }

  static readonly CAPABILITIES =
    CapabilityFlag.CLIENT_PROTOCOL_41 |
    CapabilityFlag.CLIENT_SECURE_CONNECTION |
    CapabilityFlag.CLIENT_PLUGIN_AUTH |
    CapabilityFlag.CLIENT_LONG_PASSWORD |
    CapabilityFlag.CLIENT_TRANSACTIONS |
    CapabilityFlag.CLIENT_CONNECT_WITH_DB;

  static async connect(proxy: TidepoolProcess, database = APP_DB): Promise<RawMysqlClient> {
    const socket = connect({ host: proxy.host, port: proxy.port });
    const client = new RawMysqlClient(socket);
    const handshake = parseHandshakeV10(await client.nextPacket());
    socket.write(
      encodePacket(
        encodeHandshakeResponse41({
          capabilityFlags: RawMysqlClient.CAPABILITIES,
          characterSet: 45,
          username: APP_USER,
          authResponse: nativePasswordToken(APP_PASSWORD, handshake.scramble),
          database,
          authPluginName: AuthPlugin.MYSQL_NATIVE_PASSWORD,
        }),
        1,
      ),
    );
    const answer = await client.nextPacket();
    if (answer[0] !== 0) throw new Error(`login failed: ${answer.toString('utf8', 9)}`);
    return client;
  }

  /** Sends a command and resolves with every payload of its response. */
  async command(payload: Buffer): Promise<{ payloads: Buffer[]; tracker: MysqlResponseTracker }> {
    const tracker = new MysqlResponseTracker(RawMysqlClient.CAPABILITIES).start(payload[0]!, payload);
    this.socket.write(encodePacket(payload, 0));
    const payloads: Buffer[] = [];
    while (!tracker.isComplete) {
      const packet = await this.nextPacket();
      payloads.push(packet);
      tracker.feed(packet);
    }
    return { payloads, tracker };
  }

  /** Sends a command that has no response (COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE). */
  send(payload: Buffer): void {
    this.socket.write(encodePacket(payload, 0));
  }

  close(): void {
    this.socket.destroy();
  }

  private async nextPacket(): Promise<Buffer> {
    while (this.queue.length === 0) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no packet from the proxy within 10 s')), 10_000);
        this.waiter = () => {
          clearTimeout(timer);
          this.waiter = null;
          resolve();
        };
      });
    }
    return this.queue.shift()!;
  }
}
