/**
 * What every chaos scenario needs, for both engines behind one shape: a real server with an
 * application user, a proxy in front of it, clients (pg / mysql2) that report errors with the
 * protocol's own code (SQLSTATE for PostgreSQL, the error number for MySQL), the server-side
 * id of the connection running a statement, and measurements (RSS, latency percentiles).
 */
import { readFileSync, readdirSync } from 'node:fs';
import * as mysql from 'mysql2/promise';
import { Client } from 'pg';
import type { TidepoolConfigInput } from '../../runtime/config/schema';
import { MariadbServer, startMariadb, startReplica } from '../harness/mariadb';
import { PgServer, startPostgres, startStandby } from '../harness/postgres';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';

export type Engine = 'postgresql' | 'mysql';
export const ENGINES: readonly Engine[] = ['postgresql', 'mysql'];

export const APP_USER = 'app';
export const APP_PASSWORD = 'app-password';
export const APP_DB = 'appdb';

/** How big a scenario runs: `quick` for jest, `full` for `npm run chaos` (10,000 clients, 200 MB). */
export type Size = 'quick' | 'full';

export interface ScenarioContext {
  engine: Engine;
  size: Size;
  /** Progress notes, shown by the runner when a scenario fails. */
  note(text: string): void;
}

export interface ScenarioOutcome {
  pass: boolean;
  /** Key numbers, e.g. `{ 'p99 ms': 4.2 }`, printed in the table. */
  numbers: Record<string, string | number>;
  /** Why it failed: every check that did not hold. */
  failures: string[];
}

export type Scenario = (ctx: ScenarioContext) => Promise<ScenarioOutcome>;

/** Collects checks so that one scenario reports every broken expectation, not just the first. */
export class Checks {
  readonly failures: string[] = [];
  readonly numbers: Record<string, string | number> = {};

  that(condition: boolean, description: string): boolean {
    if (!condition) this.failures.push(description);
    return condition;
  }

  record(name: string, value: string | number): void {
    this.numbers[name] = typeof value === 'number' && !Number.isInteger(value) ? Math.round(value * 10) / 10 : value;
  }

  outcome(): ScenarioOutcome {
    return { pass: this.failures.length === 0, numbers: this.numbers, failures: this.failures };
  }
}

// ---------------------------------------------------------------------------------------------
// Servers.

/** A real database server, whichever engine. */
export interface DbServer {
  readonly engine: Engine;
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  /** Runs SQL as the superuser through the engine's CLI; tab/pipe separated rows. */
  sql(text: string): Promise<string>;
  restart(): Promise<void>;
  kill9(): Promise<void>;
  promote(): Promise<void>;
  waitForReplication(): Promise<void>;
  stop(): Promise<void>;
}

function wrapPg(server: PgServer): DbServer {
  return {
    engine: 'postgresql',
    host: server.host,
    port: server.port,
    get pid() {
      return server.pid;
    },
    sql: (text) => server.psql(text),
    restart: () => server.restart(),
    kill9: () => server.kill9(),
    promote: () => server.promote(),
    waitForReplication: () => server.waitForReplication(),
    stop: () => server.stop(),
  };
}

function wrapMariadb(server: MariadbServer): DbServer {
  return {
    engine: 'mysql',
    host: server.host,
    port: server.port,
    get pid() {
      return server.pid;
    },
    sql: (text) => server.mysql(text, { database: APP_DB }),
    restart: () => server.restart(),
    kill9: () => server.kill9(),
    promote: () => server.promote(),
    waitForReplication: () => server.waitForReplication(),
    stop: () => server.stop(),
  };
}

export async function startServer(engine: Engine, options: { maxConnections?: number } = {}): Promise<DbServer> {
  if (engine === 'postgresql') {
    const server = await startPostgres({ maxConnections: options.maxConnections });
    try {
      await server.createUser(APP_USER, APP_PASSWORD, { superuser: true });
    } catch (error) {
      await server.stop();
      throw error;
    }
    return wrapPg(server);
  }
  const server = await startMariadb({ maxConnections: options.maxConnections });
  try {
    await server.createUser(APP_USER, APP_PASSWORD, { superuser: true });
    await server.mysql(`CREATE DATABASE ${APP_DB};`);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return wrapMariadb(server);
}

/**
 * A primary and a standby (PostgreSQL: synchronous, remote_apply) or a semi-synchronous replica
 * (MariaDB, AFTER_SYNC), so every commit the primary acknowledged survives a failover.
 */
export async function startPrimaryAndStandby(engine: Engine, setupSql: string): Promise<{ primary: DbServer; standby: DbServer }> {
  if (engine === 'postgresql') {
    const primary = await startPostgres({ maxConnections: 60 });
    await primary.createUser(APP_USER, APP_PASSWORD, { superuser: true });
    await primary.psql(setupSql);
    const standby = await startStandby(primary, { synchronous: true });
    return { primary: wrapPg(primary), standby: wrapPg(standby) };
  }
  const primary = await startMariadb({ maxConnections: 60 });
  await primary.createUser(APP_USER, APP_PASSWORD, { superuser: true });
  await primary.mysql(`CREATE DATABASE ${APP_DB}; USE ${APP_DB}; ${setupSql}`);
  const replica = await startReplica(primary);
  await replica.mysql('SET GLOBAL rpl_semi_sync_slave_enabled = 1; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD;');
  await primary.mysql("SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC', rpl_semi_sync_master_timeout = 60000, rpl_semi_sync_master_enabled = 1;");
  for (let i = 0; i < 100 && (await primary.mysql("SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'")).split('\t')[1] !== '1'; i++) {
    await sleep(100);
  }
  return { primary: wrapMariadb(primary), standby: wrapMariadb(replica) };
}

export async function startProxy(
  engine: Engine,
  targets: { host: string; port: number }[],
  config: Partial<TidepoolConfigInput> = {},
): Promise<TidepoolProcess> {
  return startTidepool({
    engineFamily: engine === 'postgresql' ? 'POSTGRESQL' : 'MYSQL',
    targets: targets.map(({ host, port }) => ({ host, port })),
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config,
  });
}

/** Waits until the proxy has found its writer, so a scenario's first client is not the one that waits for it. */
export async function waitForWriter(proxy: TidepoolProcess, target?: { host: string; port: number }, timeoutMs = 30_000): Promise<void> {
  await proxy.waitForLog(
    (line) => line.event === 'writer-changed' && (target === undefined || line.writer === `${target.host}:${target.port}`),
    timeoutMs,
  );
}

// ---------------------------------------------------------------------------------------------
// Clients.

/** An error as a client sees it: `code` is the SQLSTATE (PostgreSQL) or error number (MySQL), absent when the connection just broke. */
export interface ClientError {
  code?: string;
  message: string;
}

export function describeError(error: unknown): ClientError {
  const e = error as { code?: unknown; errno?: unknown; message?: unknown; sqlMessage?: unknown };
  const message = String(e.sqlMessage ?? e.message ?? error);
  // pg: code is the SQLSTATE (5 characters); mysql2: errno is the server's error number.
  if (typeof e.errno === 'number' && e.errno > 0 && e.errno < 100_000) return { code: String(e.errno), message };
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return { code: e.code, message };
  return { message };
}

export function formatError(error: ClientError): string {
  return error.code === undefined ? `(no code) ${error.message}` : `${error.code} ${error.message}`;
}

/** One client connection, either engine: rows as arrays of strings. */
export interface DbClient {
  query(sql: string, params?: unknown[]): Promise<unknown[][]>;
  /** Resolves to the first error the connection reports on its own (a FATAL sent unprompted, a close). */
  readonly broken: Promise<ClientError>;
  /** The socket under the driver, to pause reading (a slow reader). */
  socket(): import('node:net').Socket;
  end(): Promise<void>;
  destroy(): void;
}

export interface ConnectOptions {
  host: string;
  port: number;
  user?: string;
  password?: string;
  connectTimeoutMs?: number;
}

export async function connectClient(engine: Engine, options: ConnectOptions): Promise<DbClient> {
  const user = options.user ?? APP_USER;
  const password = options.password ?? APP_PASSWORD;
  if (engine === 'postgresql') {
    const client = new Client({
      host: options.host,
      port: options.port,
      user,
      password,
      database: 'postgres',
      connectionTimeoutMillis: options.connectTimeoutMs ?? 20_000,
    });
    let reportBroken!: (error: ClientError) => void;
    const broken = new Promise<ClientError>((resolve) => (reportBroken = resolve));
    client.on('error', (error) => reportBroken(describeError(error)));
    client.on('end', () => reportBroken({ message: 'connection ended' }));
    try {
      await client.connect();
    } catch (error) {
      throw Object.assign(new Error((error as Error).message), describeError(error));
    }
    return {
      query: async (sql, params) => {
        const result = await client.query({ text: sql, values: params, rowMode: 'array' });
        return result.rows as unknown[][];
      },
      broken,
      socket: () => (client as unknown as { connection: { stream: import('node:net').Socket } }).connection.stream,
      end: () => client.end().catch(() => undefined),
      destroy: () => (client as unknown as { connection: { stream: import('node:net').Socket } }).connection.stream.destroy(),
    };
  }
  const connection = await mysql.createConnection({
    host: options.host,
    port: options.port,
    user,
    password,
    database: APP_DB,
    connectTimeout: options.connectTimeoutMs ?? 20_000,
    // mysql2's statement cache preallocates for its maximum (16,000 entries, ~400 KB a
    // connection): 10,000 idle connections would need 4 GB in the test process.
    maxPreparedStatements: 8,
  });
  let reportBroken!: (error: ClientError) => void;
  const broken = new Promise<ClientError>((resolve) => (reportBroken = resolve));
  connection.on('error', (error: unknown) => reportBroken(describeError(error)));
  const raw = (connection as unknown as { connection: { stream: import('node:net').Socket } }).connection;
  return {
    query: async (sql, params) => {
      const [rows] = await connection.query({ sql, rowsAsArray: true }, params);
      return Array.isArray(rows) ? (rows as unknown[][]) : [];
    },
    broken,
    socket: () => raw.stream,
    end: () => connection.end().catch(() => undefined),
    destroy: () => connection.destroy(),
  };
}

export function connectToProxy(engine: Engine, proxy: TidepoolProcess, options: Partial<ConnectOptions> = {}): Promise<DbClient> {
  return connectClient(engine, { host: proxy.host, port: proxy.port, ...options });
}

export function connectDirect(server: DbServer, options: Partial<ConnectOptions> = {}): Promise<DbClient> {
  return connectClient(server.engine, { host: server.host, port: server.port, ...options });
}

/** Runs `sql`; resolves to the error it failed with, or undefined when it succeeded. */
export async function queryError(client: DbClient, sql: string, params?: unknown[]): Promise<ClientError | undefined> {
  try {
    await client.query(sql, params);
    return undefined;
  } catch (error) {
    return describeError(error);
  }
}

export async function connectError(engine: Engine, options: ConnectOptions): Promise<ClientError | undefined> {
  try {
    const client = await connectClient(engine, options);
    await client.end();
    return undefined;
  } catch (error) {
    return describeError(error);
  }
}

// ---------------------------------------------------------------------------------------------
// Engine-specific SQL.

/**
 * A result of `rows` rows of `rowBytes` bytes whose production stops after `stallAfterRow` rows
 * (a server-side sleep), so a fault can be injected while the result is mid-stream. The marker
 * makes the statement findable in pg_stat_activity / PROCESSLIST.
 */
export function bigResultSql(engine: Engine, rows: number, rowBytes: number, marker: string, stallAfterRow?: number): string {
  if (engine === 'postgresql') {
    const payload = stallAfterRow === undefined ? `repeat('x', ${rowBytes})` : `CASE WHEN g = ${stallAfterRow} THEN pg_sleep(60)::text ELSE repeat('x', ${rowBytes}) END`;
    return `SELECT g, ${payload} AS payload /* ${marker} */ FROM generate_series(1, ${rows}) AS g`;
  }
  const payload = stallAfterRow === undefined ? `REPEAT('x', ${rowBytes})` : `IF(seq = ${stallAfterRow}, SLEEP(60), REPEAT('x', ${rowBytes}))`;
  return `SELECT seq, ${payload} AS payload /* ${marker} */ FROM seq_1_to_${rows}`;
}

/** Server-side ids of the (non-superuser-tool) connections whose running statement contains `marker`. */
export async function serverIdsRunning(server: DbServer, marker: string): Promise<number[]> {
  const out =
    server.engine === 'postgresql'
      ? await server.sql(`SELECT pid FROM pg_stat_activity WHERE query LIKE '%${marker}%' AND pid <> pg_backend_pid() AND state = 'active'`)
      : await server.sql(`SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%${marker}%' AND ID <> CONNECTION_ID()`);
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map(Number);
}

/** Ids of every connection the application user has open on the server. */
export async function appConnectionIds(server: DbServer): Promise<number[]> {
  const out =
    server.engine === 'postgresql'
      ? await server.sql(`SELECT pid FROM pg_stat_activity WHERE usename = '${APP_USER}' AND backend_type = 'client backend'`)
      : await server.sql(`SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '${APP_USER}'`);
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map(Number);
}

/** Ends a server connection the way a DBA would: pg_terminate_backend / KILL. */
export async function killServerConnection(server: DbServer, id: number): Promise<void> {
  await server.sql(server.engine === 'postgresql' ? `SELECT pg_terminate_backend(${id})` : `KILL ${id}`).catch(() => undefined);
}

/** SET statement that pins a proxy session to its server connection. */
export function pinningSql(engine: Engine): string {
  return engine === 'postgresql' ? 'SET statement_timeout = 0' : 'SET @pinned = 1';
}

// ---------------------------------------------------------------------------------------------
// Measuring.

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Signals a server and every process it forked. A process group would not do: PostgreSQL's
 * backends each call setsid(), so SIGSTOP of the postmaster's group leaves them answering.
 */
export function signalServerTree(pid: number, signal: NodeJS.Signals): void {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {
      // Exited while we looked.
    }
  }
  const pending = [pid];
  while (pending.length > 0) {
    const next = pending.pop()!;
    try {
      process.kill(next, signal);
    } catch {
      // Already gone.
    }
    pending.push(...(children.get(next) ?? []));
  }
}

/** Resident memory of a process in MiB, from /proc. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs `SELECT 1` on `client` back to back until `stop` is called; returns latencies (ms) and errors. */
export function latencyProbe(client: DbClient): { stop: () => Promise<{ latencies: number[]; errors: ClientError[] }> } {
  const latencies: number[] = [];
  const errors: ClientError[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      try {
        await client.query('SELECT 1');
        latencies.push(performance.now() - started);
      } catch (error) {
        errors.push(describeError(error));
        await sleep(20);
      }
      await sleep(5);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { latencies, errors };
    },
  };
}

/** Rejects after `ms` with a message naming what did not finish. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `body` with cleanups registered as it goes, always run in reverse order (servers, proxies, clients). */
export async function withCleanup<T>(body: (defer: (cleanup: () => unknown) => void) => Promise<T>): Promise<T> {
  const cleanups: (() => unknown)[] = [];
  let bodyError: unknown;
  try {
    return await body((cleanup) => cleanups.push(cleanup));
  } catch (error) {
    bodyError = error;
    throw error;
  } finally {
    let cleanupError: unknown;
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (error) {
        cleanupError ??= error;
      }
    }
    // A proxy that hit a bug reports it from stop(); that must fail the scenario unless it already failed.
    if (cleanupError !== undefined && bodyError === undefined) throw cleanupError;
  }
}

/** GET the proxy's /status document. */
export async function proxyStatus(proxy: TidepoolProcess): Promise<{
  Status: string;
  Targets: { Endpoint: string; Port: number; Role: string; TargetHealth: { State: string; Reason?: string; Description?: string } }[];
  Pools: { Idle: number; Borrowed: number; Pinned: number; Waiting: number; Size: number }[];
  Clients: { Total: number };
}> {
  const response = await fetch(`${proxy.adminUrl}/status`);
  return (await response.json()) as never;
}
