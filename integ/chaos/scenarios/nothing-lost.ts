/**
 * Nothing lost: ~20 clients run transactions (insert a unique id, bump a counter row) while
 * random faults hit the server (server connections killed, the primary restarted) and, at the
 * end, a failover to a synchronous standby / semi-synchronous replica. Afterwards every
 * acknowledged commit is in the database exactly once, the counter equals the number of rows (no
 * transaction half applied), no id appears twice (no statement ran twice), and a COMMIT that did
 * not succeed says its outcome is unknown (08007 / 1180 with SQLSTATE 08007) and nothing else.
 */
import {
  Checks,
  DbClient,
  Engine,
  ScenarioContext,
  ScenarioOutcome,
  appConnectionIds,
  connectToProxy,
  describeError,
  formatError,
  killServerConnection,
  sleep,
  startPrimaryAndStandby,
  startProxy,
  waitForWriter,
  withCleanup,
  type ClientError,
  type DbServer,
} from '../kit';
import type { TidepoolProcess } from '../../harness/tidepool';

const SETUP = {
  postgresql: 'CREATE TABLE ledger (id text NOT NULL); CREATE TABLE counter (k int PRIMARY KEY, n bigint NOT NULL); INSERT INTO counter VALUES (1, 0);',
  mysql: 'CREATE TABLE ledger (id VARCHAR(64) NOT NULL) ENGINE=InnoDB; CREATE TABLE counter (k INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB; INSERT INTO counter VALUES (1, 0);',
};

function outcomeUnknownCode(engine: Engine): string {
  return engine === 'postgresql' ? '08007' : '1180';
}

interface WriterLog {
  acknowledged: string[];
  /** Transactions whose COMMIT failed: they may or may not be in the database. */
  commitFailures: { id: string; error: ClientError }[];
  /** Failures before COMMIT: the transaction must not be in the database. */
  earlyFailures: { id: string; error: ClientError }[];
  reconnects: number;
}

function startWriter(engine: Engine, proxy: TidepoolProcess, writer: number, first: DbClient): { stop: () => Promise<WriterLog>; acknowledgedSoFar: () => number } {
  const log: WriterLog = { acknowledged: [], commitFailures: [], earlyFailures: [], reconnects: 0 };
  const insert = engine === 'postgresql' ? 'INSERT INTO ledger (id) VALUES ($1)' : 'INSERT INTO ledger (id) VALUES (?)';
  let running = true;
  let client = first;
  const loop = (async () => {
    for (let n = 1; running; n++) {
      const id = `w${writer}-${n}`;
      let step = 'BEGIN';
      try {
        await client.query('BEGIN');
        step = 'INSERT';
        await client.query(insert, [id]);
        step = 'UPDATE';
        await client.query('UPDATE counter SET n = n + 1 WHERE k = 1');
        step = 'COMMIT';
        await client.query('COMMIT');
        log.acknowledged.push(id);
      } catch (error) {
        const described = describeError(error);
        if (step === 'COMMIT') log.commitFailures.push({ id, error: described });
        else log.earlyFailures.push({ id, error: described });
        if (described.code === undefined) {
          // The client's connection is gone (not expected from the proxy; counted above): start over.
          client.destroy();
          for (;;) {
            try {
              client = await connectToProxy(engine, proxy, { connectTimeoutMs: 30_000 });
              log.reconnects++;
              break;
            } catch {
              await sleep(200);
              if (!running) return;
            }
          }
        } else {
          await client.query('ROLLBACK').catch(() => undefined);
        }
      }
    }
  })();
  return {
    acknowledgedSoFar: () => log.acknowledged.length,
    stop: async () => {
      running = false;
      await loop;
      await client.end();
      return log;
    },
  };
}

/** MariaDB forgets SET GLOBAL on restart: turn semi-synchronous replication back on so acknowledged commits stay on the replica. */
async function restoreSemiSync(primary: DbServer): Promise<void> {
  if (primary.engine !== 'mysql') return;
  await primary.sql("SET GLOBAL rpl_semi_sync_master_wait_point = 'AFTER_SYNC', rpl_semi_sync_master_timeout = 60000, rpl_semi_sync_master_enabled = 1;");
  for (let i = 0; i < 100 && (await primary.sql("SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'")).split('\t')[1] !== '1'; i++) {
    await sleep(100);
  }
}

export async function nothingLost(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { engine } = ctx;
  const checks = new Checks();
  const writerCount = ctx.size === 'full' ? 20 : 10;
  const faultPhaseMs = ctx.size === 'full' ? 20_000 : 8_000;
  return withCleanup(async (defer) => {
    const { primary, standby } = await startPrimaryAndStandby(engine, SETUP[engine]);
    defer(() => primary.stop());
    defer(() => standby.stop());
    const proxy = await startProxy(engine, [primary, standby], { connectionPoolConfig: { maxConnectionsPercent: 50, connectionBorrowTimeout: 30 } });
    defer(() => proxy.stop());
    await waitForWriter(proxy, primary);
    const clients = await Promise.all(Array.from({ length: writerCount }, () => connectToProxy(engine, proxy)));
    const writers = clients.map((client, index) => startWriter(engine, proxy, index + 1, client));

    // Random faults on the primary, then a failover, then more faults on the new writer.
    const faults: string[] = [];
    const started = Date.now();
    let failedOver = false;
    let current = primary;
    let restarts = 0;
    let acknowledgedAtFailover = 0;
    while (Date.now() - started < faultPhaseMs) {
      await sleep(400 + Math.random() * 800);
      if (!failedOver && Date.now() - started > faultPhaseMs * 0.6) {
        await current.kill9();
        acknowledgedAtFailover = writers.reduce((sum, w) => sum + w.acknowledgedSoFar(), 0);
        await sleep(200);
        await standby.promote();
        current = standby;
        failedOver = true;
        faults.push('failover');
        await waitForWriter(proxy, standby, 30_000).catch(() => checks.that(false, 'the proxy finds the promoted writer'));
        continue;
      }
      if (!failedOver && restarts < 2 && Math.random() < 0.25) {
        await current.restart();
        await restoreSemiSync(current);
        restarts++;
        faults.push('restart');
        continue;
      }
      const ids = await appConnectionIds(current).catch(() => [] as number[]);
      if (ids.length === 0) continue;
      await killServerConnection(current, ids[Math.floor(Math.random() * ids.length)]!);
      faults.push('kill');
    }
    // Writers run a moment longer, so commits after the last fault are counted too.
    await sleep(1_000);
    const logs = await Promise.all(writers.map((w) => w.stop()));

    const rowsOut = await current.sql('SELECT id, count(*) FROM ledger GROUP BY id');
    const counts = new Map<string, number>();
    for (const line of rowsOut.split('\n').filter(Boolean)) {
      const [id, count] = line.split(/\t|\|/);
      counts.set(id!, Number(count));
    }
    const totalRows = [...counts.values()].reduce((a, b) => a + b, 0);
    const counter = Number((await current.sql('SELECT n FROM counter WHERE k = 1')).trim());
    const acknowledged = logs.flatMap((l) => l.acknowledged);
    const missing = acknowledged.filter((id) => counts.get(id) !== 1);
    const twice = [...counts].filter(([, n]) => n > 1);
    const earlyButPresent = logs.flatMap((l) => l.earlyFailures).filter((f) => counts.has(f.id));
    const commitFailures = logs.flatMap((l) => l.commitFailures);
    // A COMMIT that failed says "outcome unknown", or, when the proxy knows the transaction was
    // rolled back (the server connection died before COMMIT was sent), a plain error: then the
    // transaction must indeed be absent.
    const commitRefused = commitFailures.filter((f) => f.error.code !== outcomeUnknownCode(engine));
    const unclearCommitFailures = commitRefused.filter((f) => f.error.code === undefined || counts.has(f.id) || !/rolled back/.test(f.error.message));
    const connectionsDropped = logs.flatMap((l) => [...l.earlyFailures, ...l.commitFailures]).filter((f) => f.error.code === undefined);
    const earlyCodes = new Map<string, number>();
    for (const failure of logs.flatMap((l) => l.earlyFailures)) earlyCodes.set(failure.error.code ?? 'none', (earlyCodes.get(failure.error.code ?? 'none') ?? 0) + 1);
    const acknowledgedAfterFailover = failedOver && acknowledged.length > acknowledgedAtFailover;

    checks.record('faults', `${faults.filter((f) => f === 'kill').length} kills, ${restarts} restarts, ${failedOver ? 1 : 0} failover`);
    checks.record('commits acknowledged', acknowledged.length);
    checks.record('COMMIT outcome unknown', commitFailures.length - commitRefused.length);
    checks.record('COMMIT refused, rolled back', commitRefused.length);
    checks.record('failed before COMMIT', [...earlyCodes].map(([code, n]) => `${code}×${n}`).join(' ') || '0');
    checks.record('rows/counter', `${totalRows}/${counter}`);
    checks.that(missing.length === 0, `every acknowledged commit is in the database once (${missing.length} missing, e.g. ${missing.slice(0, 3).join(', ')})`);
    checks.that(twice.length === 0, `no id twice (${twice.length}, e.g. ${twice.slice(0, 3).map(([id, n]) => `${id}×${n}`).join(', ')})`);
    checks.that(counter === totalRows, `the counter equals the number of rows: no transaction half applied (${counter} vs ${totalRows})`);
    checks.that(earlyButPresent.length === 0, `a transaction that failed before COMMIT is not in the database (${earlyButPresent.length})`);
    checks.that(unclearCommitFailures.length === 0, `a failed COMMIT says "outcome unknown" (${outcomeUnknownCode(engine)}) or "rolled back" truthfully: ${unclearCommitFailures.slice(0, 3).map((f) => `${f.id} ${counts.has(f.id) ? 'PRESENT' : 'absent'} ${formatError(f.error)}`).join('; ')}`);
    checks.that(connectionsDropped.length === 0, `no client connection is dropped without an error code (${connectionsDropped.length}: ${connectionsDropped.slice(0, 2).map((f) => f.error.message).join('; ')})`);
    checks.record('commits after failover', acknowledged.length - acknowledgedAtFailover);
    checks.that(acknowledgedAfterFailover, 'writes go on after the failover');
    checks.that(acknowledged.length > writerCount * 5, `the workload made progress (${acknowledged.length} commits)`);
    return checks.outcome();
  });
}
