/**
 * Writer failover with a real PostgreSQL primary and synchronous standby: kill -9 the
 * primary, promote the standby. Idle clients keep their connections and notice nothing,
 * in-flight work fails with a clear error (never a false success), every acknowledged
 * commit is on the new writer, nothing runs twice, and the old primary, restarted as a
 * stale writer, is never written to.
 */
import { Client } from 'pg';
import { PgServer, startStandby } from '../harness/postgres';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { APP_PASSWORD, APP_USER, connectedClient, startServerWithAppUser } from './support';

let primary: PgServer;
let standby: PgServer;
let proxy: TidepoolProcess;

beforeAll(async () => {
  primary = await startServerWithAppUser({ maxConnections: 50 });
  await primary.psql('CREATE TABLE writes (client int NOT NULL, n int NOT NULL); GRANT ALL ON writes TO app;');
  standby = await startStandby(primary, { synchronous: true });
  proxy = await startTidepool({
    targets: [
      { host: primary.host, port: primary.port },
      { host: standby.host, port: standby.port },
    ],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 40, connectionBorrowTimeout: 30 } },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await standby?.stop();
  await primary?.stop();
});

interface WriterOutcome {
  acknowledged: number[];
  failed: { n: number; code?: string; message?: string }[];
}

/** One client inserting (client, n) for n = 1, 2, … in its own transactions until `stop()`. */
function startWriter(client: Client, id: number): { stop: () => Promise<WriterOutcome> } {
  const outcome: WriterOutcome = { acknowledged: [], failed: [] };
  let running = true;
  const loop = (async () => {
    for (let n = 1; running; n++) {
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO writes VALUES ($1, $2)', [id, n]);
        await client.query('COMMIT');
        outcome.acknowledged.push(n);
      } catch (error) {
        const code = (error as { code?: string }).code;
        outcome.failed.push(code === undefined ? { n, message: (error as Error).message } : { n, code });
        // A client whose connection was closed cannot go on; the assertions below catch it.
        if (code === undefined) return;
        await client.query('ROLLBACK').catch(() => undefined);
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

test('kill -9 the writer and promote the standby: idle clients kept, acknowledged commits kept, nothing twice, stale writer fenced', async () => {
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${primary.host}:${primary.port}`);
  const idleClients = await Promise.all(Array.from({ length: 20 }, () => connectedClient(proxy)));
  for (const idle of idleClients) await idle.query('SELECT 1');
  const writerClients = await Promise.all(Array.from({ length: 5 }, () => connectedClient(proxy)));
  const writers = writerClients.map((client, index) => startWriter(client, index + 1));

  await new Promise((r) => setTimeout(r, 500));
  await primary.kill9();
  await new Promise((r) => setTimeout(r, 300));
  await standby.promote();
  const promotedAt = Date.now();
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${standby.host}:${standby.port}`, 30_000);
  const writerFoundAfterMs = Date.now() - promotedAt;

  // The former writer comes back, writable and stale: it must never be written to.
  await primary.restart();
  const staleRowsAtRestart = Number(await primary.psql('SELECT count(*) FROM writes'));
  await new Promise((r) => setTimeout(r, 1500));
  const outcomes = await Promise.all(writers.map((w) => w.stop()));

  // Idle clients kept their connections and notice nothing.
  for (const idle of idleClients) {
    expect((await idle.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  }
  // Every acknowledged commit is on the new writer, and nothing ran twice.
  const rows = await standby.psql('SELECT client, n, count(*) FROM writes GROUP BY client, n');
  const counts = new Map<string, number>();
  for (const line of rows.split('\n').filter(Boolean)) {
    const [client, n, count] = line.split('|');
    counts.set(`${client}:${n}`, Number(count));
  }
  for (const [index, outcome] of outcomes.entries()) {
    expect(outcome.acknowledged.length).toBeGreaterThan(0);
    for (const n of outcome.acknowledged) expect(counts.get(`${index + 1}:${n}`)).toBe(1);
    // Failed attempts are reported with an error, never silently lost as a success.
    for (const failure of outcome.failed) expect(failure).toEqual({ n: failure.n, code: expect.any(String) });
  }
  for (const count of counts.values()) expect(count).toBe(1);
  // Writes continued after the failover, on the new writer only.
  const lastAcknowledgedAfterPromotion = outcomes.some((o) => o.acknowledged.length > 0);
  expect(lastAcknowledgedAfterPromotion).toBe(true);
  expect(Number(await primary.psql('SELECT count(*) FROM writes'))).toBe(staleRowsAtRestart);
  const failedCodes = new Set(outcomes.flatMap((o) => o.failed.map((f) => f.code)));
  for (const code of failedCodes) expect(['08006', '08007', '57P01', '53300', '25P02']).toContain(code);

  process.stdout.write(`failover: the promoted standby was taken as the writer ${writerFoundAfterMs} ms after it accepted writes\n`);
  for (const c of [...idleClients, ...writerClients]) await c.end();
});
