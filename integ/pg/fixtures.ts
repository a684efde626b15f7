/**
 * Shared plumbing for the PostgreSQL end-to-end tests: one real server per test file, any
 * number of proxies in front of it, and `pg` clients that know which proxy session they are.
 *
 * Pooling is made observable with a small server (`max_connections` 20) and a small
 * `maxConnectionsPercent` (5 → 1 server connection, 15 → 2: the writer probe holds one of the share); `SELECT pg_backend_pid()` tells
 * which server connection ran a statement. Proxy log lines are matched to a client through
 * the `debugLogging` SQL lines (`{event: 'sql', client, sql}`), which `TestBed.proxy` turns on.
 */
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, type Notification, type QueryResultRow } from 'pg';
import type { TidepoolConfigInput } from '../../runtime/config/schema';
import { startPostgres, type PgServer, type StartPostgresOptions } from '../harness/postgres';
import { pollUntil } from '../harness/processes';
import { startTidepool, type TidepoolProcess } from '../harness/tidepool';

/** The application user every proxy knows; a superuser so LOAD, pg_locks etc. need no grants. */
import { APP_PASSWORD, APP_USER } from './support';

export { APP_PASSWORD, APP_USER };

export type LogLine = Record<string, unknown>;

export interface ProxyClientOptions {
  /** Sent as the `application_name` startup parameter. */
  applicationName?: string;
  /** The `options` startup parameter, e.g. `-c statement_timeout=1234`. */
  options?: string;
  /** More StartupMessage parameters, e.g. `{ TimeZone: 'Asia/Tokyo', DateStyle: 'SQL, DMY' }`. */
  startupParams?: Record<string, string>;
  user?: string;
  password?: string;
  database?: string;
}

interface ParameterStatusMessage {
  parameterName: string;
  parameterValue: string;
}

/** pg's Connection has `startup` at runtime; @types/pg does not declare it. */
interface StartupCapable {
  startup(config: Record<string, string>): void;
}

/** A `pg` client connected through a proxy, with what the tests need to observe. */
export class ProxyClient {
  /** ParameterStatus values received before the first ReadyForQuery. */
  readonly startupParameters = new Map<string, string>();
  /** ParameterStatus messages received after startup, in order. */
  readonly laterParameterStatus: { name: string; value: string }[] = [];
  readonly notifications: Notification[] = [];
  /** Errors pg emitted outside any query (e.g. the connection was closed under it). */
  readonly backgroundErrors: Error[] = [];
  private sessionIdValue: number | undefined;
  private ended = false;

  constructor(
    readonly pg: Client,
    readonly proxy: TidepoolProcess,
  ) {
    let started = false;
    pg.connection.on('parameterStatus', (message: ParameterStatusMessage) => {
      if (started) this.laterParameterStatus.push({ name: message.parameterName, value: message.parameterValue });
      else this.startupParameters.set(message.parameterName, message.parameterValue);
    });
    pg.connection.once('readyForQuery', () => (started = true));
    pg.on('notification', (notification) => this.notifications.push(notification));
    pg.on('error', (error) => this.backgroundErrors.push(error));
  }

  /** Rows of a query (simple protocol without values, extended protocol with them). */
  async rows<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<R[]> {
    const result = await this.pg.query<R>(text, values);
    return result.rows;
  }

  /** The first column of the first row as a string (null for SQL NULL or no row). */
  async value(text: string, values?: unknown[]): Promise<string | null> {
    const result = await this.pg.query<unknown[]>({ text, values, rowMode: 'array' });
    const first = result.rows[0]?.[0];
    return first === undefined || first === null ? null : String(first);
  }

  /** The backend pid of the server connection that runs this statement. */
  async pid(): Promise<number> {
    return Number(await this.value('SELECT pg_backend_pid()'));
  }

  /** This client's proxy session id, as in the proxy's log lines (needs debugLogging). */
  async sessionId(): Promise<number> {
    if (this.sessionIdValue === undefined) {
      const line = await runMarker(this);
      this.sessionIdValue = line.client as number;
    }
    return this.sessionIdValue;
  }

  async end(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.pg.end().catch(() => undefined);
  }
}

/** Runs a unique no-op query and resolves with its debug SQL log line. */
async function runMarker(client: ProxyClient): Promise<LogLine> {
  const marker = `tidepool-marker-${randomUUID()}`;
  await client.pg.query(`SELECT '${marker}'`);
  return client.proxy.waitForLog((line) => line.event === 'sql' && typeof line.sql === 'string' && line.sql.includes(marker));
}

/**
 * Resolves once every log line the proxy wrote before now-ish has been received: a marker
 * query is run through `client` and its debug line awaited. The proxy logs in order, so
 * "no pin line before the barrier" means "this statement did not pin".
 */
export async function logBarrier(client: ProxyClient): Promise<void> {
  await runMarker(client);
}

/** Pin log lines, optionally of one session. */
export function pinLines(proxy: TidepoolProcess, sessionId?: number): LogLine[] {
  return proxy.logs().filter((line) => line.event === 'pinned' && (sessionId === undefined || line.client === sessionId));
}

/** Waits for the pin log line of a session. */
export function waitForPin(proxy: TidepoolProcess, sessionId: number): Promise<LogLine> {
  return proxy.waitForLog((line) => line.event === 'pinned' && line.client === sessionId);
}

/** An unconnected `pg` client with the given startup parameters. */
export function newPgClient(host: string, port: number, options: ProxyClientOptions = {}): Client {
  const pg = new Client({
    host,
    port,
    user: options.user ?? APP_USER,
    password: options.password ?? APP_PASSWORD,
    database: options.database ?? 'postgres',
    ...(options.applicationName !== undefined ? { application_name: options.applicationName } : {}),
    ...(options.options !== undefined ? { options: options.options } : {}),
  });
  const extra = options.startupParams;
  if (extra) {
    const connection = pg.connection as unknown as StartupCapable;
    const startup = connection.startup.bind(connection);
    connection.startup = (config) => startup({ ...config, ...extra });
  }
  return pg;
}

/** A client holding one server connection in an open transaction. */
export interface HeldConnection {
  readonly client: ProxyClient;
  readonly pid: number;
  release(): Promise<void>;
}

/** One real PostgreSQL server for a test file, proxies in front of it, and their clients. */
export class TestBed {
  private server: PgServer | undefined;
  private readonly proxies: TidepoolProcess[] = [];
  private readonly clients = new Set<ProxyClient>();

  get pg(): PgServer {
    if (!this.server) throw new Error('TestBed.start() has not run');
    return this.server;
  }

  /** Starts PostgreSQL (default max_connections 20) and creates the app superuser. */
  async start(options: StartPostgresOptions = {}): Promise<PgServer> {
    this.server = await startPostgres({ maxConnections: 20, ...options });
    await this.server.createUser(APP_USER, APP_PASSWORD, { superuser: true });
    return this.server;
  }

  /**
   * Starts a proxy for the app user. `debugLogging` defaults to on (session ids in logs) and
   * `connectionBorrowTimeout` to 5 s, so a pool starved by a wrong pin fails a test instead of hanging it.
   */
  async proxy(config: Partial<TidepoolConfigInput> = {}): Promise<TidepoolProcess> {
    const proxy = await startTidepool({
      targets: [{ host: this.pg.host, port: this.pg.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: {
        debugLogging: true,
        ...config,
        connectionPoolConfig: { connectionBorrowTimeout: 5, ...config.connectionPoolConfig },
      },
    });
    this.proxies.push(proxy);
    return proxy;
  }

  async connect(proxy: TidepoolProcess, options: ProxyClientOptions = {}): Promise<ProxyClient> {
    const client = new ProxyClient(newPgClient(proxy.host, proxy.port, options), proxy);
    await client.pg.connect();
    this.clients.add(client);
    return client;
  }

  /** A `pg` client connected straight to PostgreSQL (the reference behaviour); the caller ends it. */
  async connectDirect(options: ProxyClientOptions = {}): Promise<Client> {
    const client = newPgClient(this.pg.host, this.pg.port, options);
    client.on('error', () => undefined);
    await client.connect();
    return client;
  }

  /** Opens a transaction in a new client, so it keeps one server connection until released. */
  async hold(proxy: TidepoolProcess, options: ProxyClientOptions = {}): Promise<HeldConnection> {
    const client = await this.connect(proxy, options);
    await client.pg.query('BEGIN');
    const pid = await client.pid();
    return {
      client,
      pid,
      release: async () => {
        await client.pg.query('ROLLBACK');
        await this.disconnect(client);
      },
    };
  }

  /**
   * Holds server connections (each in its own open transaction) until one of them is `pid`'s;
   * the others are released. With a pool of N this takes at most N holders.
   */
  async holdBackend(proxy: TidepoolProcess, pid: number, poolSize: number): Promise<HeldConnection> {
    const others: HeldConnection[] = [];
    try {
      for (let i = 0; i < poolSize; i++) {
        const held = await this.hold(proxy);
        if (held.pid === pid) return held;
        others.push(held);
      }
      throw new Error(`no server connection with pid ${pid} among ${others.map((h) => h.pid).join(', ')}`);
    } finally {
      for (const other of others) await other.release();
    }
  }

  async disconnect(client: ProxyClient): Promise<void> {
    this.clients.delete(client);
    await client.end();
  }

  async closeClients(): Promise<void> {
    const open = [...this.clients];
    this.clients.clear();
    await Promise.all(open.map((client) => client.end()));
  }

  /** True while a server process with this pid exists (queried directly, not through a proxy). */
  async backendAlive(pid: number): Promise<boolean> {
    return (await this.pg.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid};`)) !== '0';
  }

  /** Waits until a server process is gone (a proxy closed its connection instead of resetting it). */
  async waitForBackendExit(pid: number): Promise<void> {
    await pollUntil(async () => !(await this.backendAlive(pid)), { what: `server process ${pid} to exit` });
  }

  async stop(): Promise<void> {
    await this.closeClients();
    await Promise.all(this.proxies.splice(0).map((proxy) => proxy.stop().catch(() => null)));
    await this.server?.stop();
  }
}

/** Runs `fn` `count` times in sequence. */
export async function repeat(count: number, fn: (index: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < count; i++) await fn(i);
}

/**
 * Whether the PostgreSQL the harness runs (the newest under /usr/lib/postgresql) ships a
 * loadable module, e.g. `auto_explain`. Synchronous, so it can pick `test` or `test.skip`.
 */
export function postgresModuleAvailable(name: string): boolean {
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return false;
  const versions = fs
    .readdirSync(root)
    .filter((entry) => fs.existsSync(path.join(root, entry, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 && fs.existsSync(path.join(root, versions[0]!, 'lib', `${name}.so`));
}
