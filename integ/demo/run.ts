/**
 * `npm run demo`: Tidepool without AWS. Starts a throwaway PostgreSQL primary and a
 * synchronous standby, puts Tidepool in front of them with a small pool, drives a few
 * hundred concurrent clients through it (a few of them pinned on purpose), then kills the
 * writer with SIGKILL, promotes the standby, and prints what happened.
 */
import { Client } from 'pg';
import { startPostgres, startStandby } from '../harness/postgres';
import { startTidepool } from '../harness/tidepool';

const CLIENTS = Number(process.env.DEMO_CLIENTS ?? 300);
const PINNED_CLIENTS = 3;
const RUN_MS = 6000;
const KILL_AFTER_MS = 2000;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(): Promise<void> {
  say('Starting a throwaway PostgreSQL 15 primary (max_connections 100) and a synchronous standby…');
  const primary = await startPostgres({ maxConnections: 100 });
  await primary.createUser('app', 'app-password');
  await primary.psql('CREATE TABLE counters (id int PRIMARY KEY, hits bigint NOT NULL); INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g; GRANT ALL ON counters TO app;');
  const standby = await startStandby(primary, { synchronous: true });
  say('Starting Tidepool in front of both: maxConnectionsPercent 10 → at most 10 server connections (one of them the writer probe)…');
  const proxy = await startTidepool({
    targets: [
      { host: primary.host, port: primary.port },
      { host: standby.host, port: standby.port },
    ],
    users: [{ name: 'app', password: 'app-password' }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 10, connectionBorrowTimeout: 60 } },
    env: { TIDEPOOL_LOG_LEVEL: 'info' },
  });
  let maxServerConnections = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const count = Number(await primary.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'").catch(() => '0'));
      maxServerConnections = Math.max(maxServerConnections, count);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    say(`Connecting ${CLIENTS} clients; each runs small transactions for ${RUN_MS / 1000} s…`);
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const client = new Client({ host: proxy.host, port: proxy.port, user: 'app', password: 'app-password', database: 'postgres' });
        client.on('error', () => undefined);
        await client.connect();
        return client;
      }),
    );
    let acknowledged = 0;
    const errors = new Map<string, number>();
    let lastErrorAt = 0;
    let firstWriteAfterPromotion = 0;
    let promotedAt = 0;
    const started = Date.now();
    const work = Promise.all(
      clients.map(async (client, index) => {
        if (index < PINNED_CLIENTS) await client.query("SET application_name = 'pinned-on-purpose'");
        while (Date.now() - started < RUN_MS) {
          try {
            await client.query('BEGIN');
            await client.query('UPDATE counters SET hits = hits + 1 WHERE id = $1', [(index % 10) + 1]);
            await client.query('COMMIT');
            acknowledged++;
            if (promotedAt > 0 && firstWriteAfterPromotion === 0) firstWriteAfterPromotion = Date.now();
          } catch (error) {
            const code = (error as { code?: string }).code ?? 'no code';
            errors.set(code, (errors.get(code) ?? 0) + 1);
            lastErrorAt = Date.now();
            await client.query('ROLLBACK').catch(() => undefined);
          }
        }
      }),
    );
    await new Promise((r) => setTimeout(r, KILL_AFTER_MS));
    say('Killing the primary with SIGKILL, then promoting the standby…');
    const killedAt = Date.now();
    await primary.kill9();
    await standby.promote();
    promotedAt = Date.now();
    await work;
    const hits = Number(await standby.psql('SELECT sum(hits) FROM counters'));
    let keptConnections = 0;
    for (const client of clients) {
      if (await client.query('SELECT 1').then(() => true, () => false)) keptConnections++;
    }
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    sampling = false;
    await sampler;
    const pins = proxy.logs().filter((line) => line.event === 'pinned');
    say('');
    say('| what | value |');
    say('|---|---|');
    say(`| client connections to Tidepool | ${CLIENTS} |`);
    say(`| most server connections the old writer saw from the pool | ${maxServerConnections} |`);
    say(`| client connections still open and working after the failover | ${keptConnections} of ${CLIENTS} |`);
    say(`| transactions acknowledged | ${acknowledged} |`);
    say(`| transactions counted on the new writer | ${hits} (every acknowledged commit is there: ${hits >= acknowledged ? 'yes' : 'NO'}) |`);
    say(`| errors seen by clients (in-flight work at the failover), by SQLSTATE | ${[...errors.entries()].map(([code, n]) => `${code}: ${n}`).join(', ') || 'none'} |`);
    say(`| pinned sessions (logged with their reason) | ${pins.length}: ${[...new Set(pins.map((p) => String(p.reason)))].join(', ')} |`);
    say(`| time from the kill to the last client error | ${lastErrorAt > killedAt ? `${lastErrorAt - killedAt} ms` : '—'} |`);
    say(`| time from the standby accepting writes to the first write through Tidepool | ${firstWriteAfterPromotion > 0 ? `${firstWriteAfterPromotion - promotedAt} ms` : '—'} |`);
  } finally {
    sampling = false;
    await sampler;
    await proxy.stop();
    await standby.stop();
    await primary.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
