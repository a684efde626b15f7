/**
 * The MySQL engine's metrics on the admin endpoint's /metrics: queries, database
 * connections, TLS clients, query latencies and a failed login, after a few mysql2 queries.
 */
import type { MariadbServer } from '../harness/mariadb';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { APP_PASSWORD, APP_USER, connectError, connectThroughProxy, queryValue, startServerWithAppUser } from './support';

let server: MariadbServer;
let proxy: TidepoolProcess;

beforeAll(async () => {
  server = await startServerWithAppUser({ maxConnections: 20 });
  proxy = await startTidepool({
    engineFamily: 'MYSQL',
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 20, connectionBorrowTimeout: 5 } },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await server?.stop();
});

/** Sums of every sample of each metric family in /metrics. */
async function scrape(): Promise<Map<string, number>> {
  const response = await fetch(`${proxy.adminUrl}/metrics`);
  expect(response.status).toBe(200);
  const sums = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[^{ ]+/.exec(line)![0];
    sums.set(name, (sums.get(name) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return sums;
}

test('queries, database connections, TLS and a failed login show in /metrics', async () => {
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${server.host}:${server.port}`);
  const plain = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
  const tls = await connectThroughProxy(proxy, { ssl: { rejectUnauthorized: false } });
  for (const connection of [...plain, tls]) {
    for (let i = 0; i < 3; i++) expect(await queryValue(connection, 'SELECT ?', [i])).toBe(i);
  }
  await plain[0]!.execute('SELECT ? + 1', [1]);
  const denied = await connectError(proxy, { password: 'wrong' });
  expect(denied?.errno).toBe(1045);

  const metrics = await scrape();
  const value = (name: string) => metrics.get(name) ?? -1;
  expect(value('tidepool_query_requests_total')).toBeGreaterThanOrEqual(10);
  expect(value('tidepool_query_requests_tls_total')).toBeGreaterThanOrEqual(3);
  expect(value('tidepool_query_requests_no_tls_total')).toBeGreaterThanOrEqual(7);
  expect(value('tidepool_query_response_latency_seconds_count')).toBeGreaterThanOrEqual(10);
  expect(value('tidepool_query_database_response_latency_seconds_count')).toBeGreaterThanOrEqual(10);
  expect(value('tidepool_client_connections_setup_succeeded_total')).toBeGreaterThanOrEqual(3);
  expect(value('tidepool_client_connections_setup_failed_auth_total')).toBe(1);
  expect(value('tidepool_client_connections_tls')).toBeGreaterThanOrEqual(1);
  expect(value('tidepool_database_connection_requests_total')).toBeGreaterThan(0);
  expect(value('tidepool_database_connections_setup_succeeded_total')).toBeGreaterThan(0);
  expect(value('tidepool_database_connections')).toBeGreaterThan(0);
  expect(value('tidepool_database_connections_borrow_latency_seconds_count')).toBeGreaterThan(0);
  expect(value('tidepool_max_database_connections_allowed')).toBe(3); // 20% of 20, less the writer probe

  await Promise.all([...plain, tls].map((c) => c.end()));
});
