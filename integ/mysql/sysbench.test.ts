/**
 * sysbench through the proxy: 50 threads over 20 server connections (maxConnectionsPercent
 * 20 of max_connections 100). Zero errors, and the server never sees more than 20
 * connections from the proxy's user while the runs go on.
 */
import type { MariadbServer } from '../harness/mariadb';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { APP_PASSWORD, APP_USER, serverConnectionCount, startServerWithAppUser, sysbench } from './support';

const THREADS = 50;
const POOL_SIZE = 20;
const TABLE_ARGS = ['--tables=4', '--table-size=10000'];

let server: MariadbServer;
let proxy: TidepoolProcess;

beforeAll(async () => {
  server = await startServerWithAppUser({ maxConnections: 100 });
  const prepared = await sysbench({ host: server.host, port: server.port }, 'oltp_read_write', TABLE_ARGS, 'prepare');
  if (prepared.output.code !== 0) throw new Error(`sysbench prepare failed: ${prepared.output.stderr}`);
  proxy = await startTidepool({
    engineFamily: 'MYSQL',
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 20, connectionBorrowTimeout: 30 } },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await server?.stop();
});

/** Samples the server-side connection count while `work` runs; resolves with the work's result and the peak seen. */
async function watchingConnections<T>(work: Promise<T>): Promise<{ result: T; peak: number }> {
  let peak = 0;
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, await serverConnectionCount(server));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  try {
    const result = await work;
    return { result, peak };
  } finally {
    running = false;
    await sampler;
  }
}

test.each([
  { test: 'oltp_read_write', psMode: 'disable' },
  { test: 'oltp_point_select', psMode: 'auto' },
])('sysbench $test --db-ps-mode=$psMode, 50 threads over 20 server connections: no errors', async ({ test: name, psMode }) => {
  const { result, peak } = await watchingConnections(
    sysbench({ host: proxy.host, port: proxy.port }, name, [...TABLE_ARGS, `--threads=${THREADS}`, '--time=5', `--db-ps-mode=${psMode}`, '--mysql-ignore-errors=none'], 'run'),
  );
  const fatalLines = result.output.stdout.split('\n').filter((line) => line.startsWith('FATAL'));
  expect(result.output.stderr + fatalLines.join('\n')).toBe('');
  expect(result.output.code).toBe(0);
  expect(result.errors).toBe(0);
  expect(result.transactions).toBeGreaterThan(100);
  expect(peak).toBeGreaterThan(0);
  expect(peak).toBeLessThanOrEqual(POOL_SIZE);
  expect(proxy.logs().filter((line) => line.event === 'pinned')).toHaveLength(0);
});
