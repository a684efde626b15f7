/**
 * Writer failover with a real MariaDB primary and a semi-synchronous replica: kill -9 the
 * primary, promote the replica. Idle clients keep their connections and notice nothing,
 * in-flight work fails with an error (never a false success; a COMMIT whose answer never
 * came says its outcome is unknown), every acknowledged commit is on the new writer exactly
 * once, and the old primary, restarted writable and stale, is never written to.
 */
import type { Connection } from 'mysql2/promise';
import { MariadbServer, startReplica } from '../harness/mariadb';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { APP_DB, APP_PASSWORD, APP_USER, connectThroughProxy, queryValue, startServerWithAppUser } from './support';

let primary: MariadbServer;
let replica: MariadbServer;
let proxy: TidepoolProcess;

beforeAll(async () => {
  primary = await startServerWithAppUser({ maxConnections: 50 });
  await primary.mysql(`CREATE TABLE ${APP_DB}.writes (client INT NOT NULL, n INT NOT NULL) ENGINE=InnoDB`);
  replica = await startReplica(primary);
  // Semi-synchronous from here on (AFTER_SYNC: lossless), so a commit the primary acknowledged is on the replica.
  await replica.mysql('SET GLOBAL rpl_semi_sync_slave_enabled = 1; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD;');
  await primary.mysql("SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC', rpl_semi_sync_master_timeout = 60000, rpl_semi_sync_master_enabled = 1;");
  for (let i = 0; i < 100 && (await primary.mysql("SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'")).split('\t')[1] !== '1'; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  proxy = await startTidepool({
    engineFamily: 'MYSQL',
    targets: [
      { host: primary.host, port: primary.port },
      { host: replica.host, port: replica.port },
    ],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 40, connectionBorrowTimeout: 30 } },
  });
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await replica?.stop();
  await primary?.stop();
});

interface Failure {
  n: number;
  errno?: number;
  sqlState?: string;
  message: string;
}

interface WriterOutcome {
  acknowledged: number[];
  failed: Failure[];
}

/** One client inserting (client, n) for n = 1, 2, … in its own transactions until `stop()`. */
function startWriter(connection: Connection, id: number): { stop: () => Promise<WriterOutcome> } {
  const outcome: WriterOutcome = { acknowledged: [], failed: [] };
  let running = true;
  const loop = (async () => {
    for (let n = 1; running; n++) {
      try {
        await connection.query('START TRANSACTION');
        await connection.query('INSERT INTO writes (client, n) VALUES (?, ?)', [id, n]);
        await connection.query('COMMIT');
        outcome.acknowledged.push(n);
      } catch (error) {
        const { errno, sqlState, message } = error as Error & { errno?: number; sqlState?: string };
        outcome.failed.push({ n, ...(errno !== undefined ? { errno } : {}), ...(sqlState !== undefined ? { sqlState } : {}), message });
        // A client whose connection was closed cannot go on; the assertions below catch it.
        if (errno === undefined) return;
        await connection.query('ROLLBACK').catch(() => undefined);
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return outcome;
    },
  };
}

async function rowCounts(server: MariadbServer): Promise<Map<string, number>> {
  const rows = await server.mysql(`SELECT client, n, COUNT(*) FROM ${APP_DB}.writes GROUP BY client, n`);
  const counts = new Map<string, number>();
  for (const line of rows.split('\n').filter(Boolean)) {
    const [client, n, count] = line.split('\t');
    counts.set(`${client}:${n}`, Number(count));
  }
  return counts;
}

test('kill -9 the writer and promote the replica: idle clients kept, acknowledged commits kept once, errors not successes, stale writer fenced', async () => {
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${primary.host}:${primary.port}`);
  const idleClients = await Promise.all(Array.from({ length: 20 }, () => connectThroughProxy(proxy)));
  for (const idle of idleClients) expect(await queryValue(idle, 'SELECT 1')).toBe(1);
  const idleIds = idleClients.map((c) => c.threadId);
  // A client with an open transaction, idle at the moment of the failover.
  const inTransaction = await connectThroughProxy(proxy);
  await inTransaction.query('START TRANSACTION');
  await inTransaction.query('INSERT INTO writes (client, n) VALUES (99, 1)');
  const writerClients = await Promise.all(Array.from({ length: 5 }, () => connectThroughProxy(proxy)));
  const writers = writerClients.map((client, index) => startWriter(client, index + 1));

  await new Promise((r) => setTimeout(r, 500));
  // The replica stops acknowledging: every writer's next COMMIT waits on the primary for the
  // semi-synchronous ack, so the kill below catches each of them with a COMMIT in flight.
  await replica.mysql('STOP SLAVE IO_THREAD');
  await new Promise((r) => setTimeout(r, 500));
  await primary.kill9();
  await new Promise((r) => setTimeout(r, 300));
  await replica.promote();
  const promotedAt = Date.now();
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${replica.host}:${replica.port}`, 30_000);
  const writerFoundAfterMs = Date.now() - promotedAt;

  // The former writer comes back, writable and stale: it must never be written to.
  await primary.restart();
  const staleRowsAtRestart = Number(await primary.mysql(`SELECT COUNT(*) FROM ${APP_DB}.writes`));
  await new Promise((r) => setTimeout(r, 1500));
  const outcomes = await Promise.all(writers.map((w) => w.stop()));

  // Idle clients kept their connections (same proxy connection ids) and notice nothing.
  for (const [index, idle] of idleClients.entries()) {
    expect(idle.threadId).toBe(idleIds[index]);
    expect(await queryValue(idle, 'SELECT 1 AS one')).toBe(1);
  }
  // The open transaction is gone: its COMMIT gets an error saying so, and the client goes on.
  const commitError = await inTransaction.query('COMMIT').then(
    () => null,
    (e: Error & { errno?: number }) => e,
  );
  expect(commitError?.errno).toBe(1317);
  expect(commitError?.message).toMatch(/the transaction was rolled back/);
  expect(await queryValue(inTransaction, 'SELECT 2')).toBe(2);
  // Every acknowledged commit is on the new writer exactly once, and nothing ran twice.
  const counts = await rowCounts(replica);
  for (const [index, outcome] of outcomes.entries()) {
    expect(outcome.acknowledged.length).toBeGreaterThan(0);
    for (const n of outcome.acknowledged) expect(counts.get(`${index + 1}:${n}`)).toBe(1);
    // Failed attempts are reported with a MySQL error, never silently lost as a success,
    // and the client's connection goes on.
    for (const failure of outcome.failed) expect(failure).toEqual({ n: failure.n, errno: expect.any(Number), sqlState: expect.any(String), message: expect.any(String) });
  }
  for (const count of counts.values()) expect(count).toBe(1);
  // Writes went on after the failover, on the new writer only.
  const lastBeforeRestart = outcomes.map((o) => Math.max(0, ...o.acknowledged));
  expect(lastBeforeRestart.some((n) => n > 0)).toBe(true);
  expect(Number(await primary.mysql(`SELECT COUNT(*) FROM ${APP_DB}.writes`))).toBe(staleRowsAtRestart);
  const failures = outcomes.flatMap((o) => o.failed);
  for (const failure of failures) expect([1317, 1180, 1053, 1927]).toContain(failure.errno);
  // A COMMIT whose answer never came is reported as of unknown outcome, not as rolled back.
  for (const failure of failures.filter((f) => /COMMIT/.test(f.message))) {
    expect(failure.sqlState).toBe('08007');
    expect(failure.errno).toBe(1180);
    expect(failure.message).toMatch(/outcome is unknown/);
  }
  // Each writer was waiting for its COMMIT when the primary died.
  for (const outcome of outcomes) expect(outcome.failed.filter((f) => f.sqlState === '08007')).toHaveLength(1);
  expect(counts.has('99:1')).toBe(false);

  process.stdout.write(
    `mysql failover: the promoted replica was taken as the writer ${writerFoundAfterMs} ms after it accepted writes; ` +
      `${outcomes.reduce((sum, o) => sum + o.acknowledged.length, 0)} commits acknowledged, failures: ${JSON.stringify(failures.map((f) => `${f.errno}/${f.sqlState}: ${f.message}`))}\n`,
  );
  await Promise.all([...idleClients, ...writerClients, inTransaction].map((c) => c.end()));
}, 120_000);
