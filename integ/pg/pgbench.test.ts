/**
 * pgbench -S with 100 clients over a pool of 20 server connections (maxConnectionsPercent
 * 20 of max_connections 100), in the simple, extended and prepared query modes: zero
 * errors, and the server never sees more than 20 connections from the pool.
 */
import type { PgServer } from '../harness/postgres';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { APP_PASSWORD, APP_USER, runBinary, serverConnectionCount, startServerWithAppUser } from './support';

const TRANSACTIONS_PER_CLIENT = 100;

let server: PgServer;
let proxy: TidepoolProcess;

beforeAll(async () => {
  server = await startServerWithAppUser({ maxConnections: 100 });
  const init = await runBinary('pgbench', ['-i', '-s', '1', '-q', '-h', server.host, '-p', String(server.port), '-U', APP_USER, 'postgres'], {
    env: { PGPASSWORD: APP_PASSWORD },
  });
  expect(init.code).toBe(0);
  proxy = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 20 } },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await server?.stop();
});

test.each(['simple', 'extended', 'prepared'])('pgbench -S -M %s -c 100 over 20 server connections: zero errors', async (mode) => {
  let maxSeen = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      maxSeen = Math.max(maxSeen, await serverConnectionCount(server));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const run = await runBinary(
    'pgbench',
    ['-S', '-M', mode, '-c', '100', '-j', '2', '-t', String(TRANSACTIONS_PER_CLIENT), '-n', '-h', proxy.host, '-p', String(proxy.port), '-U', APP_USER, 'postgres'],
    { env: { PGPASSWORD: APP_PASSWORD, PGSSLMODE: 'disable' } },
  );
  sampling = false;
  await sampler;
  expect(run.stderr).not.toMatch(/error|ERROR|FATAL/);
  expect(run.code).toBe(0);
  const processed = Number(/number of transactions actually processed: (\d+)/.exec(run.stdout)?.[1]);
  const failed = Number(/number of failed transactions: (\d+)/.exec(run.stdout)?.[1] ?? '0');
  expect(processed).toBe(100 * TRANSACTIONS_PER_CLIENT);
  expect(failed).toBe(0);
  expect(maxSeen).toBeGreaterThan(0);
  expect(maxSeen).toBeLessThanOrEqual(20);
  expect(proxy.logs().filter((line) => line.event === 'pinned')).toEqual([]);
});

test('pgbench -S -M prepared -c 50 over 10 server connections: zero errors', async () => {
  const small = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 10 } },
  });
  try {
    const run = await runBinary(
      'pgbench',
      ['-S', '-M', 'prepared', '-c', '50', '-j', '2', '-t', String(TRANSACTIONS_PER_CLIENT), '-n', '-h', small.host, '-p', String(small.port), '-U', APP_USER, 'postgres'],
      { env: { PGPASSWORD: APP_PASSWORD, PGSSLMODE: 'disable' } },
    );
    expect(run.stderr).not.toMatch(/error|ERROR|FATAL/);
    expect(run.code).toBe(0);
    expect(Number(/number of transactions actually processed: (\d+)/.exec(run.stdout)?.[1])).toBe(50 * TRANSACTIONS_PER_CLIENT);
    expect(Number(/number of failed transactions: (\d+)/.exec(run.stdout)?.[1] ?? '0')).toBe(0);
  } finally {
    await small.stop();
  }
});
