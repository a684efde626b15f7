/**
 * `npm run demo`: Tidepool without AWS, for both engines. For PostgreSQL (a primary and a
 * synchronous standby) and then MariaDB (a primary and a semi-synchronous replica) it puts
 * Tidepool in front with a small pool, drives a few hundred concurrent clients through it (a
 * few of them pinned on purpose), kills the writer with SIGKILL, promotes the standby, and
 * at the end prints one table of what happened to both.
 */
import * as mysql from 'mysql2/promise';
import { Client } from 'pg';
import { MariadbServer, startMariadb, startReplica } from '../harness/mariadb';
import { startPostgres, startStandby } from '../harness/postgres';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';

const CLIENTS = Number(process.env.DEMO_CLIENTS ?? 300);
const PINNED_CLIENTS = 3;
const RUN_MS = 6000;
const KILL_AFTER_MS = 2000;
/** Server max_connections; the pool may use 10 % of it. */
const SERVER_MAX_CONNECTIONS = 100;
const POOL_PERCENT = 10;
const APP_USER = 'app';
const APP_PASSWORD = 'app-password';

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** What one engine's run showed; every field is measured, none assumed. */
interface EngineSummary {
  engine: string;
  clients: number;
  maxServerConnections: number;
  pins: { count: number; reasons: string[] };
  keptConnections: number;
  acknowledged: number;
  /** Acknowledged commits found on the new writer. */
  acknowledgedOnNewWriter: number;
  rowsOnNewWriter: number;
  errors: Map<string, number>;
  killToLastErrorMs: number | null;
  promotionToFirstWriteMs: number | null;
}

/** Tracks the load the clients put through the proxy around the failover. */
class LoadRecorder {
  readonly acknowledged: string[] = [];
  readonly errors = new Map<string, number>();
  lastErrorAt = 0;
  promotedAt = 0;
  firstWriteAfterPromotion = 0;

  commit(key: string): void {
    this.acknowledged.push(key);
    if (this.promotedAt > 0 && this.firstWriteAfterPromotion === 0) this.firstWriteAfterPromotion = Date.now();
  }

  fail(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
    this.lastErrorAt = Date.now();
  }
}

/** Polls `count` every `everyMs` and keeps the highest value until stopped. */
function sampleMax(count: () => Promise<number>, everyMs: number): { stop: () => Promise<number> } {
  let max = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      max = Math.max(max, await count().catch(() => 0));
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return max;
    },
  };
}

function pinsOf(proxy: TidepoolProcess): EngineSummary['pins'] {
  const pins = proxy.logs().filter((line) => line.event === 'pinned');
  return { count: pins.length, reasons: [...new Set(pins.map((p) => String(p.reason)))] };
}

async function runPostgres(): Promise<EngineSummary> {
  say(`PostgreSQL: starting a throwaway PostgreSQL 15 primary (max_connections ${SERVER_MAX_CONNECTIONS}) and a synchronous standby…`);
  const primary = await startPostgres({ maxConnections: SERVER_MAX_CONNECTIONS });
  let standby: Awaited<ReturnType<typeof startStandby>> | undefined;
  let proxy: TidepoolProcess | undefined;
  try {
    await primary.createUser(APP_USER, APP_PASSWORD);
    await primary.psql(`CREATE TABLE writes (client int NOT NULL, n int NOT NULL); GRANT ALL ON writes TO ${APP_USER};`);
    standby = await startStandby(primary, { synchronous: true });
    say(`PostgreSQL: Tidepool in front of both, maxConnectionsPercent ${POOL_PERCENT} → at most ${(SERVER_MAX_CONNECTIONS * POOL_PERCENT) / 100} server connections (one of them the writer probe)…`);
    proxy = await startTidepool({
      targets: [
        { host: primary.host, port: primary.port },
        { host: standby.host, port: standby.port },
      ],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { connectionPoolConfig: { maxConnectionsPercent: POOL_PERCENT, connectionBorrowTimeout: 60 } },
      env: { TIDEPOOL_LOG_LEVEL: 'info' },
    });
    const running = proxy;
    const sampler = sampleMax(async () => Number(await primary.psql(`SELECT count(*) FROM pg_stat_activity WHERE usename = '${APP_USER}'`)), 50);
    say(`PostgreSQL: connecting ${CLIENTS} clients; each runs small transactions for ${RUN_MS / 1000} s…`);
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const client = new Client({ host: running.host, port: running.port, user: APP_USER, password: APP_PASSWORD, database: 'postgres' });
        client.on('error', () => undefined);
        await client.connect();
        return client;
      }),
    );
    const load = new LoadRecorder();
    const started = Date.now();
    const work = Promise.all(
      clients.map(async (client, index) => {
        if (index < PINNED_CLIENTS) await client.query("SET application_name = 'pinned-on-purpose'");
        for (let n = 1; Date.now() - started < RUN_MS; n++) {
          try {
            await client.query('BEGIN');
            await client.query('INSERT INTO writes VALUES ($1, $2)', [index, n]);
            await client.query('COMMIT');
            load.commit(`${index}:${n}`);
          } catch (error) {
            load.fail((error as { code?: string }).code ?? 'no code');
            await client.query('ROLLBACK').catch(() => undefined);
          }
        }
      }),
    );
    await new Promise((r) => setTimeout(r, KILL_AFTER_MS));
    say('PostgreSQL: killing the primary with SIGKILL, then promoting the standby…');
    const killedAt = Date.now();
    await primary.kill9();
    await standby.promote();
    load.promotedAt = Date.now();
    await work;
    const maxServerConnections = await sampler.stop();
    const onNewWriter = new Set((await standby.psql("SELECT client || ':' || n FROM writes")).split('\n').filter(Boolean));
    let keptConnections = 0;
    for (const client of clients) if (await client.query('SELECT 1').then(() => true, () => false)) keptConnections++;
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    return summarise('PostgreSQL 15', load, onNewWriter, maxServerConnections, keptConnections, killedAt, pinsOf(proxy));
  } finally {
    await proxy?.stop();
    await standby?.stop();
    await primary.stop();
  }
}

async function runMariadb(): Promise<EngineSummary> {
  say(`MariaDB: starting a throwaway MariaDB 10.11 primary (max_connections ${SERVER_MAX_CONNECTIONS}) and a semi-synchronous replica…`);
  const primary = await startMariadb({ maxConnections: SERVER_MAX_CONNECTIONS });
  let replica: MariadbServer | undefined;
  let proxy: TidepoolProcess | undefined;
  try {
    await primary.createUser(APP_USER, APP_PASSWORD);
    await primary.mysql(`CREATE DATABASE appdb; CREATE TABLE appdb.writes (client INT NOT NULL, n INT NOT NULL) ENGINE=InnoDB; GRANT ALL ON appdb.* TO '${APP_USER}'@'%';`);
    replica = await startReplica(primary);
    // Semi-synchronous (AFTER_SYNC: lossless), so a commit the primary acknowledged is on the replica.
    await replica.mysql('SET GLOBAL rpl_semi_sync_slave_enabled = 1; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD;');
    await primary.mysql("SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC', rpl_semi_sync_master_timeout = 60000, rpl_semi_sync_master_enabled = 1;");
    for (let i = 0; i < 100 && (await primary.mysql("SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'")).split('\t')[1] !== '1'; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    say(`MariaDB: Tidepool in front of both, maxConnectionsPercent ${POOL_PERCENT}…`);
    proxy = await startTidepool({
      engineFamily: 'MYSQL',
      targets: [
        { host: primary.host, port: primary.port },
        { host: replica.host, port: replica.port },
      ],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { connectionPoolConfig: { maxConnectionsPercent: POOL_PERCENT, connectionBorrowTimeout: 60 } },
      env: { TIDEPOOL_LOG_LEVEL: 'info' },
    });
    const running = proxy;
    await running.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${primary.host}:${primary.port}`);
    const sampler = sampleMax(async () => Number(await primary.mysql(`SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '${APP_USER}'`)), 100);
    say(`MariaDB: connecting ${CLIENTS} mysql2 clients; each runs small transactions for ${RUN_MS / 1000} s…`);
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const connection = await mysql.createConnection({ host: running.host, port: running.port, user: APP_USER, password: APP_PASSWORD, database: 'appdb', connectTimeout: 30_000 });
        connection.on('error', () => undefined);
        return connection;
      }),
    );
    const load = new LoadRecorder();
    const started = Date.now();
    const work = Promise.all(
      clients.map(async (connection, index) => {
        if (index < PINNED_CLIENTS) await connection.query('SET @pinned_on_purpose = 1');
        for (let n = 1; Date.now() - started < RUN_MS; n++) {
          try {
            await connection.query('START TRANSACTION');
            await connection.query('INSERT INTO writes (client, n) VALUES (?, ?)', [index, n]);
            await connection.query('COMMIT');
            load.commit(`${index}:${n}`);
          } catch (error) {
            const { errno, sqlState } = error as { errno?: number; sqlState?: string };
            load.fail(errno === undefined ? 'no code' : `${errno}/${sqlState ?? '?'}`);
            // A client whose connection is gone cannot go on.
            if (errno === undefined) return;
            await connection.query('ROLLBACK').catch(() => undefined);
          }
        }
      }),
    );
    await new Promise((r) => setTimeout(r, KILL_AFTER_MS));
    say('MariaDB: killing the primary with SIGKILL, then promoting the replica…');
    const killedAt = Date.now();
    await primary.kill9();
    await replica.promote();
    load.promotedAt = Date.now();
    await work;
    const maxServerConnections = await sampler.stop();
    const onNewWriter = new Set((await replica.mysql("SELECT CONCAT(client, ':', n) FROM appdb.writes")).split('\n').filter(Boolean));
    let keptConnections = 0;
    for (const connection of clients) if (await connection.query('SELECT 1').then(() => true, () => false)) keptConnections++;
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    return summarise('MariaDB 10.11', load, onNewWriter, maxServerConnections, keptConnections, killedAt, pinsOf(proxy));
  } finally {
    await proxy?.stop();
    await replica?.stop();
    await primary.stop();
  }
}

function summarise(
  engine: string,
  load: LoadRecorder,
  onNewWriter: ReadonlySet<string>,
  maxServerConnections: number,
  keptConnections: number,
  killedAt: number,
  pins: EngineSummary['pins'],
): EngineSummary {
  return {
    engine,
    clients: CLIENTS,
    maxServerConnections,
    pins,
    keptConnections,
    acknowledged: load.acknowledged.length,
    acknowledgedOnNewWriter: load.acknowledged.filter((key) => onNewWriter.has(key)).length,
    rowsOnNewWriter: onNewWriter.size,
    errors: load.errors,
    killToLastErrorMs: load.lastErrorAt > killedAt ? load.lastErrorAt - killedAt : null,
    promotionToFirstWriteMs: load.firstWriteAfterPromotion > 0 ? load.firstWriteAfterPromotion - load.promotedAt : null,
  };
}

function printSummary(runs: EngineSummary[]): void {
  const row = (label: string, value: (s: EngineSummary) => string) => say(`| ${label} | ${runs.map(value).join(' | ')} |`);
  const ms = (value: number | null) => (value === null ? '—' : `${value} ms`);
  say('');
  say(`| what | ${runs.map((s) => s.engine).join(' | ')} |`);
  say(`|---|${runs.map(() => '---').join('|')}|`);
  row('client connections to Tidepool', (s) => String(s.clients));
  row('most server connections the old writer saw from Tidepool (writer probe included)', (s) => String(s.maxServerConnections));
  row('pinned sessions (logged with their reason)', (s) => `${s.pins.count}${s.pins.reasons.length > 0 ? `: ${s.pins.reasons.join(', ')}` : ''}`);
  row('client connections still open and working after the failover', (s) => `${s.keptConnections} of ${s.clients}`);
  row('transactions acknowledged to clients', (s) => String(s.acknowledged));
  row('acknowledged commits found on the new writer', (s) => `${s.acknowledgedOnNewWriter} of ${s.acknowledged} (${s.acknowledgedOnNewWriter === s.acknowledged ? 'all kept' : 'SOME LOST'})`);
  row('rows on the new writer (acknowledged + in doubt at the kill)', (s) => String(s.rowsOnNewWriter));
  row('errors seen by clients (in-flight work at the failover)', (s) => [...s.errors.entries()].map(([code, n]) => `${code}: ${n}`).join(', ') || 'none');
  row('time from the kill to the last client error', (s) => ms(s.killToLastErrorMs));
  row('time from promotion to the first write through Tidepool', (s) => ms(s.promotionToFirstWriteMs));
}

async function main(): Promise<void> {
  const started = Date.now();
  const runs = [await runPostgres()];
  say('');
  runs.push(await runMariadb());
  printSummary(runs);
  say(`\n(demo took ${Math.round((Date.now() - started) / 1000)} s)`);
  if (runs.some((s) => s.acknowledgedOnNewWriter !== s.acknowledged)) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
