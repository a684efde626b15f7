/**
 * `npm run demo`: Tidepool without AWS. Starts a throwaway PostgreSQL server, puts
 * Tidepool in front of it with a small pool, drives a few hundred concurrent clients
 * through it (a few of them pinned on purpose), and prints what happened.
 */
import { Client } from 'pg';
import { startPostgres } from '../harness/postgres';
import { startTidepool } from '../harness/tidepool';

const CLIENTS = Number(process.env.DEMO_CLIENTS ?? 300);
const TRANSACTIONS_PER_CLIENT = 20;
const PINNED_CLIENTS = 3;

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(): Promise<void> {
  say('Starting a throwaway PostgreSQL 15 server (max_connections 100)…');
  const server = await startPostgres({ maxConnections: 100 });
  await server.createUser('app', 'app-password');
  await server.psql('CREATE TABLE counters (id int PRIMARY KEY, hits bigint NOT NULL); INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g; GRANT ALL ON counters TO app;');
  say('Starting Tidepool in front of it: maxConnectionsPercent 10 → a pool of at most 10 server connections…');
  const proxy = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: 'app', password: 'app-password' }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 10 } },
    env: { TIDEPOOL_LOG_LEVEL: 'info' },
  });
  let maxServerConnections = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const count = Number(await server.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"));
      maxServerConnections = Math.max(maxServerConnections, count);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    say(`Connecting ${CLIENTS} clients and running ${TRANSACTIONS_PER_CLIENT} transactions on each…`);
    const started = Date.now();
    const clients = await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const client = new Client({ host: proxy.host, port: proxy.port, user: 'app', password: 'app-password', database: 'postgres' });
        client.on('error', () => undefined);
        await client.connect();
        return client;
      }),
    );
    let errors = 0;
    await Promise.all(
      clients.map(async (client, index) => {
        if (index < PINNED_CLIENTS) await client.query("SET application_name = 'pinned-on-purpose'");
        for (let t = 0; t < TRANSACTIONS_PER_CLIENT; t++) {
          try {
            await client.query('BEGIN');
            await client.query('UPDATE counters SET hits = hits + 1 WHERE id = $1', [(index % 10) + 1]);
            await client.query('COMMIT');
          } catch {
            errors++;
          }
        }
      }),
    );
    const elapsed = (Date.now() - started) / 1000;
    const hits = Number(await server.psql('SELECT sum(hits) FROM counters'));
    await Promise.all(clients.map((c) => c.end()));
    sampling = false;
    await sampler;
    const pins = proxy.logs().filter((line) => line.event === 'pinned');
    say('');
    say('| what | value |');
    say('|---|---|');
    say(`| client connections to Tidepool | ${CLIENTS} |`);
    say(`| most server connections seen by PostgreSQL | ${maxServerConnections} |`);
    say(`| transactions committed (counted in the database) | ${hits} of ${CLIENTS * TRANSACTIONS_PER_CLIENT} |`);
    say(`| errors seen by clients | ${errors} |`);
    say(`| pinned sessions (logged with their reason) | ${pins.length}: ${[...new Set(pins.map((p) => String(p.reason)))].join(', ')} |`);
    say(`| wall time | ${elapsed.toFixed(1)} s (${Math.round((CLIENTS * TRANSACTIONS_PER_CLIENT) / elapsed)} transactions/s) |`);
  } finally {
    sampling = false;
    await sampler;
    await proxy.stop();
    await server.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
