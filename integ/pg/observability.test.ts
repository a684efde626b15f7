/**
 * Observability end to end, with the bundled proxy in front of real PostgreSQL and real
 * clients: the admin port (/healthz, /readyz, /status, /metrics) while work is going on and
 * across a writer failover, and the CloudWatch push (PutMetricData to a local endpoint)
 * after a scripted workload.
 */
import { Client } from 'pg';
import { LocalCloudWatchEndpoint, RecordedDatum } from '../aws/cloudwatch-endpoint';
import { freePort } from '../harness/ports';
import { PgServer, startStandby } from '../harness/postgres';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { APP_PASSWORD, APP_USER, connectedClient, serverConnectionCount, startServerWithAppUser } from './support';

const OBS_USER = 'obs';
const OBS_PASSWORD = 'obs-password';

let server: PgServer;
let proxy: TidepoolProcess;
const extraProxies: TidepoolProcess[] = [];
const extraServers: PgServer[] = [];
const openClients: Client[] = [];

interface StatusDocument {
  DBProxyName: string;
  Status: string;
  Targets: { Endpoint: string; Port: number; Role: string; TargetHealth: { State: string; Reason?: string } }[];
  Pools: { User: string; Database: string; Idle: number; Borrowed: number; Pinned: number; Other: number; Waiting: number; Size: number }[];
  Clients: { Total: number; TLS: number; NoTLS: number };
  StatementCache?: { Entries: number; TextBytes: number };
}

async function get(p: TidepoolProcess, path: string): Promise<{ status: number; body: string; contentType: string }> {
  const response = await fetch(`${p.adminUrl}${path}`);
  return { status: response.status, body: await response.text(), contentType: response.headers.get('content-type') ?? '' };
}

async function status(p: TidepoolProcess): Promise<StatusDocument> {
  const response = await get(p, '/status');
  expect(response.status).toBe(200);
  return JSON.parse(response.body) as StatusDocument;
}

/** Polls `condition` every 100 ms until it holds or `timeoutMs` passes; returns whether it held. Never asserts on time. */
async function waitFor(condition: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await condition()) return true;
    } catch {
      // Not there yet.
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function obsClient(p: TidepoolProcess): Promise<Client> {
  const client = await connectedClient(p, { user: OBS_USER, password: OBS_PASSWORD });
  openClients.push(client);
  return client;
}

async function closeClients(): Promise<void> {
  await Promise.all(openClients.splice(0).map((c) => c.end().catch(() => undefined)));
}

beforeAll(async () => {
  server = await startServerWithAppUser({ maxConnections: 60 });
  await server.createUser(OBS_USER, OBS_PASSWORD);
  proxy = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    // APP_USER first: the writer probe logs in with the first secret, so the obs pool is only clients'.
    users: [
      { name: APP_USER, password: APP_PASSWORD },
      { name: OBS_USER, password: OBS_PASSWORD },
    ],
  });
});

afterEach(closeClients);

afterAll(async () => {
  await closeClients();
  for (const p of [proxy, ...extraProxies]) await p?.stop().catch(() => undefined);
  for (const s of [server, ...extraServers]) await s?.stop().catch(() => undefined);
});

test('/healthz answers 200 "ok"; /readyz answers 200 once a writer is known, 503 while none is', async () => {
  const health = await get(proxy, '/healthz');
  expect(health).toMatchObject({ status: 200 });
  expect(health.body.trim()).toBe('ok');

  expect(await waitFor(async () => (await get(proxy, '/readyz')).status === 200)).toBe(true);
  expect((await get(proxy, '/readyz')).body.trim()).toBe('ready');

  // A proxy whose only target does not answer is alive but not ready.
  const deadPort = await freePort();
  const orphan = await startTidepool({ targets: [{ host: '127.0.0.1', port: deadPort }], users: [{ name: APP_USER, password: APP_PASSWORD }] });
  extraProxies.push(orphan);
  expect((await get(orphan, '/healthz')).status).toBe(200);
  const notReady = await get(orphan, '/readyz');
  expect(notReady.status).toBe(503);
  expect(notReady.body).toContain('no writer target is available');
  const orphanStatus = await status(orphan);
  expect(orphanStatus.Status).toBe('unavailable');
  expect(orphanStatus.Targets[0]?.TargetHealth.State).not.toBe('AVAILABLE');
});

test('/status lists the writer AVAILABLE and counts a held transaction (Borrowed) and a pinned client (Pinned)', async () => {
  expect(
    await waitFor(async () => {
      const doc = await status(proxy);
      return doc.Targets[0]?.TargetHealth.State === 'AVAILABLE';
    }),
  ).toBe(true);
  const doc = await status(proxy);
  expect(doc.DBProxyName).toBe('test');
  expect(doc.Status).toBe('available');
  expect(doc.Targets).toEqual([
    { Endpoint: server.host, Port: server.port, Type: 'RDS_INSTANCE', Role: 'READ_WRITE', TargetHealth: { State: 'AVAILABLE' } },
  ]);

  const inTransaction = await obsClient(proxy);
  await inTransaction.query('BEGIN');
  await inTransaction.query('SELECT 1');
  const pinned = await obsClient(proxy);
  await pinned.query("SET work_mem = '8MB'");
  await pinned.query('SELECT 1');

  const pool = (d: StatusDocument) => d.Pools.find((p) => p.User === OBS_USER && p.Database === 'postgres');
  expect(await waitFor(async () => (pool(await status(proxy))?.Pinned ?? 0) >= 1)).toBe(true);
  const during = await status(proxy);
  expect(pool(during)).toBeDefined();
  expect(pool(during)!.Borrowed).toBeGreaterThanOrEqual(1);
  expect(pool(during)!.Pinned).toBeGreaterThanOrEqual(1);
  expect(during.Clients.Total).toBeGreaterThanOrEqual(2);
  expect(during.Clients.NoTLS).toBeGreaterThanOrEqual(2);

  // The held transaction ends and the pinned client leaves: both counts drop back.
  await inTransaction.query('COMMIT');
  await pinned.end();
  expect(
    await waitFor(async () => {
      const p = pool(await status(proxy));
      return p !== undefined && p.Borrowed === 0 && p.Pinned === 0;
    }),
  ).toBe(true);
});

test('/status counts the statement-name cache: one entry per distinct prepared text, however many clients prepare it', async () => {
  const before = (await status(proxy)).StatementCache;
  expect(before).toBeDefined();
  const marker = `statement_cache_${Date.now()}`;
  const texts = [0, 1, 2].map((i) => `SELECT ${i} AS ${marker}`);
  const clients = [await obsClient(proxy), await obsClient(proxy)];
  for (const client of clients) {
    for (const [i, text] of texts.entries()) {
      const result = await client.query({ name: `${marker}_${i}`, text });
      expect(result.rows).toEqual([{ [marker]: i }]);
    }
  }
  const after = (await status(proxy)).StatementCache!;
  expect(after.Entries - before!.Entries).toBe(texts.length);
  // Each key is the Parse body: the text, its terminator and the 2-byte parameter count.
  expect(after.TextBytes - before!.TextBytes).toBe(texts.reduce((sum, text) => sum + Buffer.byteLength(text) + 3, 0));
});

// A pinned connection is counted once: in Pinned, not also in Borrowed (Size = Idle + Borrowed + Pinned + Other).
test('/status pool numbers match the server: Borrowed excludes pinned, Size equals real server connections', async () => {
  const inTransaction = await obsClient(proxy);
  await inTransaction.query('BEGIN');
  await inTransaction.query('SELECT 1');
  const pinned = await obsClient(proxy);
  await pinned.query("SET work_mem = '8MB'");
  await pinned.query('SELECT 1');

  const pool = async () => (await status(proxy)).Pools.find((p) => p.User === OBS_USER && p.Database === 'postgres');
  let last: { size?: number; real?: number } = {};
  const consistent = await waitFor(async () => {
    const p = await pool();
    const real = await serverConnectionCount(server, OBS_USER);
    last = { size: p?.Size, real };
    return p !== undefined && p.Pinned === 1 && p.Other === 0 && p.Size === real;
  }, 5_000);
  expect(last).toEqual({ size: last.real, real: last.real });
  expect(consistent).toBe(true);
  const p = (await pool())!;
  expect(p.Pinned).toBe(1);
  expect(p.Borrowed).toBe(1);
  await inTransaction.query('COMMIT');
});

test('/metrics is valid Prometheus text and carries the proxy metrics', async () => {
  const clients = await Promise.all([obsClient(proxy), obsClient(proxy), obsClient(proxy)]);
  for (const c of clients) await c.query('SELECT 1');
  await clients[0]!.query("SET application_name = 'pinned-for-metrics'");

  const response = await get(proxy, '/metrics');
  expect(response.status).toBe(200);
  expect(response.contentType).toMatch(/^text\/plain; ?version=0\.0\.4/);
  const metricName = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const labelValue = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
  const labels = `\\{(?:[a-zA-Z_][a-zA-Z0-9_]*=${labelValue}(?:,[a-zA-Z_][a-zA-Z0-9_]*=${labelValue})*,?)?\\}`;
  const value = '(?:[-+]?(?:[0-9]+(?:\\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|\\.[0-9]+(?:[eE][-+]?[0-9]+)?)|[-+]?Inf|NaN)';
  const sample = new RegExp(`^${metricName}(?:${labels})? ${value}(?: -?[0-9]+)?$`);
  const help = new RegExp(`^# HELP ${metricName} .*$`);
  const type = new RegExp(`^# TYPE ${metricName} (?:counter|gauge|histogram|summary|untyped)$`);
  const lines = response.body.split('\n');
  expect(lines[lines.length - 1]).toBe('');
  // The text format allows empty lines (prom-client separates families with one).
  const bad = lines.slice(0, -1).filter((l) => !(l === '' || sample.test(l) || help.test(l) || type.test(l)));
  expect(bad).toEqual([]);

  const samples = new Map<string, number[]>();
  for (const line of lines) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[^{ ]+/.exec(line)![0];
    const v = Number(line.slice(line.lastIndexOf(' ') + 1).replace(/^\+?Inf$/, 'Infinity'));
    samples.set(name, [...(samples.get(name) ?? []), v]);
    expect(line).toContain('proxy_name="test"');
  }
  const one = (name: string) => {
    const values = samples.get(name);
    expect({ name, present: values !== undefined }).toEqual({ name, present: true });
    return values!.reduce((a, b) => a + b, 0);
  };
  expect(one('tidepool_client_connections')).toBeGreaterThanOrEqual(3);
  expect(one('tidepool_client_connections_received_total')).toBeGreaterThanOrEqual(3);
  expect(one('tidepool_client_connections_setup_succeeded_total')).toBeGreaterThanOrEqual(3);
  expect(one('tidepool_query_requests_total')).toBeGreaterThanOrEqual(4);
  expect(one('tidepool_database_connections')).toBeGreaterThanOrEqual(1);
  expect(one('tidepool_database_connections_currently_session_pinned')).toBeGreaterThanOrEqual(1);
  expect(one('tidepool_database_connections_borrow_latency_seconds_count')).toBeGreaterThanOrEqual(1);
  // Every TYPE'd family is declared once.
  const declared = lines.filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
  expect(new Set(declared).size).toBe(declared.length);
});

test('a failover shows in /status: old writer UNAVAILABLE, promoted standby READ_WRITE AVAILABLE', async () => {
  const primary = await startServerWithAppUser({ maxConnections: 40 });
  extraServers.push(primary);
  const standby = await startStandby(primary);
  extraServers.push(standby);
  const failoverProxy = await startTidepool({
    targets: [
      { host: primary.host, port: primary.port },
      { host: standby.host, port: standby.port },
    ],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
  });
  extraProxies.push(failoverProxy);
  const byPort = (d: StatusDocument, port: number) => d.Targets.find((t) => t.Port === port);

  expect(
    await waitFor(async () => {
      const d = await status(failoverProxy);
      return byPort(d, primary.port)?.TargetHealth.State === 'AVAILABLE' && byPort(d, standby.port)?.TargetHealth.State === 'AVAILABLE';
    }),
  ).toBe(true);
  const before = await status(failoverProxy);
  expect(byPort(before, primary.port)).toMatchObject({ Role: 'READ_WRITE', TargetHealth: { State: 'AVAILABLE' } });
  expect(byPort(before, standby.port)).toMatchObject({ Role: 'READ_ONLY', TargetHealth: { State: 'AVAILABLE' } });
  const client = await connectedClient(failoverProxy);
  openClients.push(client);
  expect((await client.query('SELECT pg_is_in_recovery() AS r')).rows[0]).toEqual({ r: false });

  await primary.kill9();
  await standby.promote();

  let last: StatusDocument | undefined;
  const settled = await waitFor(async () => {
    last = await status(failoverProxy);
    return (
      byPort(last, primary.port)?.TargetHealth.State === 'UNAVAILABLE' &&
      byPort(last, standby.port)?.Role === 'READ_WRITE' &&
      byPort(last, standby.port)?.TargetHealth.State === 'AVAILABLE'
    );
  }, 30_000);
  expect(last?.Targets).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ Port: primary.port, TargetHealth: expect.objectContaining({ State: 'UNAVAILABLE' }) }),
      expect.objectContaining({ Port: standby.port, Role: 'READ_WRITE', TargetHealth: { State: 'AVAILABLE' } }),
    ]),
  );
  expect(settled).toBe(true);
  expect(last?.Status).toBe('available');
  expect((await get(failoverProxy, '/readyz')).status).toBe(200);
  // New clients land on the promoted standby.
  const after = await connectedClient(failoverProxy);
  openClients.push(after);
  expect((await after.query('SELECT pg_is_in_recovery() AS r')).rows[0]).toEqual({ r: false });
  expect((await after.query('SELECT inet_server_port() AS p')).rows[0]).toEqual({ p: standby.port });
});

// QueryResponseLatency and QueryDatabaseResponseLatency are recorded for every request.
test('/metrics query latency histograms count the queries that ran', async () => {
  const scrapeCount = async (name: string): Promise<number> => {
    const body = (await get(proxy, '/metrics')).body;
    return body
      .split('\n')
      .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
      .reduce((acc, l) => acc + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  };
  const beforeClient = await scrapeCount('tidepool_query_response_latency_seconds_count');
  const beforeDatabase = await scrapeCount('tidepool_query_database_response_latency_seconds_count');
  const client = await obsClient(proxy);
  for (let i = 0; i < 5; i++) await client.query('SELECT pg_sleep(0.01)');
  expect((await scrapeCount('tidepool_query_response_latency_seconds_count')) - beforeClient).toBeGreaterThanOrEqual(5);
  expect((await scrapeCount('tidepool_query_database_response_latency_seconds_count')) - beforeDatabase).toBeGreaterThanOrEqual(5);
});

/** The largest value a datum carries (a gauge's maximum over the period). */
function maxOf(d: RecordedDatum): number {
  if (d.Value !== undefined) return d.Value;
  if (d.StatisticValues !== undefined) return d.StatisticValues.Maximum;
  return Math.max(...(d.Values ?? [0]));
}

/** The total a datum carries (a counter's increments over the period). */
function sumOf(d: RecordedDatum): number {
  if (d.Value !== undefined) return d.Value;
  if (d.StatisticValues !== undefined) return d.StatisticValues.Sum;
  return (d.Values ?? []).reduce((acc, v, i) => acc + v * (d.Counts?.[i] ?? 1), 0);
}

test('CloudWatch: after a scripted workload the pushed data has the expected metrics, values, namespace and ProxyName', async () => {
  const cloudWatch = await LocalCloudWatchEndpoint.start();
  try {
    const cwProxy = await startTidepool({
      targets: [{ host: server.host, port: server.port }],
      users: [
        { name: APP_USER, password: APP_PASSWORD },
        { name: OBS_USER, password: OBS_PASSWORD },
      ],
      env: { AWS_ACCESS_KEY_ID: 'AKIDTESTCLOUDWATCH', AWS_SECRET_ACCESS_KEY: 'test-secret-key', AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' },
      config: {
        proxyName: 'obs-cw',
        metrics: { enabled: true, publishIntervalSeconds: 1, namespace: 'TidepoolTest' },
        aws: { region: 'us-east-1', cloudWatchEndpoint: cloudWatch.url },
      },
    });
    extraProxies.push(cwProxy);

    // Workload: 10 clients, 3 of them pinned by SET, every one queries, and one login fails.
    const clients = await Promise.all(Array.from({ length: 10 }, () => obsClient(cwProxy)));
    for (const [i, c] of clients.entries()) {
      if (i < 3) await c.query(`SET work_mem = '${4 + i}MB'`);
      await c.query('SELECT 1');
      await c.query('SELECT now()');
    }
    const bad = new Client({ host: cwProxy.host, port: cwProxy.port, user: OBS_USER, password: 'wrong', database: 'postgres' });
    bad.on('error', () => undefined);
    const badError = await bad.connect().then(
      () => undefined,
      (e: { code?: string }) => e,
    );
    expect(badError?.code).toBe('28P01');

    const proxyDim = { ProxyName: 'obs-cw' };
    const max = (name: string) => Math.max(-1, ...cloudWatch.find(name, proxyDim).map(maxOf));
    const total = (name: string) => cloudWatch.find(name, proxyDim).reduce((acc, d) => acc + sumOf(d), 0);
    const expectations = () => ({
      ClientConnections: max('ClientConnections') >= 10,
      DatabaseConnections: max('DatabaseConnections') >= 3,
      DatabaseConnectionsCurrentlySessionPinned: max('DatabaseConnectionsCurrentlySessionPinned') >= 3,
      ClientConnectionsSetupFailedAuth: total('ClientConnectionsSetupFailedAuth') >= 1,
      ClientConnectionsSetupSucceeded: total('ClientConnectionsSetupSucceeded') >= 10,
      QueryRequests: total('QueryRequests') >= 20,
    });
    const allMet = await waitFor(() => Object.values(expectations()).every(Boolean), 20_000);
    const allTrue = Object.fromEntries(Object.keys(expectations()).map((k) => [k, true]));
    expect({
      ...expectations(),
      seen: [...new Set(cloudWatch.datums().map((d) => `${d.MetricName}[${d.Dimensions.map((x) => x.Name).join(',')}]`))].sort(),
    }).toEqual({ ...allTrue, seen: expect.any(Array) });
    expect(allMet).toBe(true);

    // Values stay plausible: never more client connections than clients opened, nothing negative.
    expect(max('ClientConnections')).toBeLessThanOrEqual(11);
    expect(max('DatabaseConnectionsCurrentlySessionPinned')).toBeLessThanOrEqual(3);
    expect(total('ClientConnectionsSetupFailedAuth')).toBeLessThanOrEqual(1);
    const negative = cloudWatch
      .datums()
      .filter((d) => (d.StatisticValues?.Minimum ?? Math.min(...(d.Values ?? [d.Value ?? 0]))) < 0)
      .map((d) => d.MetricName);
    expect(negative).toEqual([]);
    expect(new Set(cloudWatch.requests.map((r) => r.namespace))).toEqual(new Set(['TidepoolTest']));
    expect(cloudWatch.datums().every((d) => d.Dimensions.some((x) => x.Name === 'ProxyName' && x.Value === 'obs-cw'))).toBe(true);
    // The database-side metrics also come per target with the writer role.
    const target = `db:${server.host}:${server.port}`;
    expect(cloudWatch.find('DatabaseConnections', { ProxyName: 'obs-cw', TargetGroup: 'default', Target: target }).length).toBeGreaterThan(0);
    expect(cloudWatch.find('DatabaseConnections', { ProxyName: 'obs-cw', TargetGroup: 'default', TargetRole: 'READWRITE' }).length).toBeGreaterThan(0);
  } finally {
    await closeClients();
    await cloudWatch.stop();
  }
});
