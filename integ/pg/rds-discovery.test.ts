/**
 * Targets discovered through the RDS API, end to end: a real PostgreSQL primary and
 * synchronous standby described as an Aurora cluster by the local RDS endpoint, and the
 * bundled proxy configured with nothing but `rdsTargets.dbClusterIdentifier` (it lists the
 * cluster through the real @aws-sdk/client-rds client).
 *
 * - clients work through the writer RDS lists and the probe confirms;
 * - kill -9 + promote + the cluster's writer flipped in the listing: writes go to the new writer;
 * - an instance added to the cluster shows up in /status, a removed one disappears;
 * - a listing that fails keeps the last list (the proxy keeps serving);
 * - the writer removed from the listing is dropped like a lost writer.
 */
import type { Client } from 'pg';
import { PgServer, startStandby } from '../harness/postgres';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { LocalRdsEndpoint, startLocalRdsEndpoint } from '../aws/rds-endpoint';
import { APP_PASSWORD, APP_USER, connectedClient, startServerWithAppUser } from './support';

const ACCESS_KEY = 'AKIDTESTRDS';
const CLUSTER = 'orders';

let primary: PgServer;
let standby: PgServer;
let reader: PgServer | undefined;
let endpoint: LocalRdsEndpoint;
let proxy: TidepoolProcess;

interface StatusTarget {
  Endpoint: string;
  Port: number;
  Role: string;
  TargetHealth: { State: string; Reason?: string; Description?: string };
}

async function statusTargets(): Promise<StatusTarget[]> {
  const response = await fetch(`${proxy.adminUrl}/status`);
  return ((await response.json()) as { Targets: StatusTarget[] }).Targets;
}

async function waitForStatus(predicate: (targets: StatusTarget[]) => boolean, timeoutMs = 8000): Promise<StatusTarget[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const targets = await statusTargets();
    if (predicate(targets)) return targets;
    if (Date.now() > deadline) throw new Error(`/status never matched; last: ${JSON.stringify(targets)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ports = (targets: StatusTarget[]) => targets.map((t) => t.Port).sort();

beforeAll(async () => {
  [primary, endpoint] = await Promise.all([startServerWithAppUser({ maxConnections: 40 }), startLocalRdsEndpoint()]);
  await primary.psql('CREATE TABLE writes (n int NOT NULL); GRANT ALL ON writes TO app;');
  standby = await startStandby(primary, { synchronous: true });
  endpoint.putCluster(CLUSTER, 'aurora-postgresql');
  endpoint.putInstance({ id: 'orders-1', host: primary.host, port: primary.port, clusterId: CLUSTER, isClusterWriter: true });
  endpoint.putInstance({ id: 'orders-2', host: standby.host, port: standby.port, clusterId: CLUSTER });
  proxy = await startTidepool({
    targets: [],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    env: {
      AWS_ACCESS_KEY_ID: ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: 'test-secret-key',
      AWS_REGION: endpoint.region,
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_PROFILE: '',
    },
    config: {
      rdsTargets: { dbClusterIdentifier: CLUSTER, refreshInterval: 1 },
      aws: { region: endpoint.region, rdsEndpoint: endpoint.url },
      connectionPoolConfig: { maxConnectionsPercent: 50, connectionBorrowTimeout: 20 },
    },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await Promise.all([reader?.stop(), standby?.stop(), endpoint?.close()]);
  await primary?.stop();
});

test('a cluster listed through the RDS API: failover, added and removed instances, a failing listing, a vanished writer', async () => {
  // Only the RDS listing names the targets: the writer it hints at is taken once the probe confirms it.
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${primary.host}:${primary.port}`);
  expect(endpoint.calls.some((c) => c.action === 'DescribeDBClusters' && c.params.get('DBClusterIdentifier') === CLUSTER)).toBe(true);
  expect(ports(await waitForStatus((t) => t.length === 2 && t.every((x) => x.TargetHealth.State === 'AVAILABLE')))).toEqual([primary.port, standby.port].sort());
  const client: Client = await connectedClient(proxy);
  await client.query('INSERT INTO writes VALUES (1)');

  // An Aurora-style failover: the writer dies, the standby is promoted, RDS flips IsClusterWriter.
  await primary.kill9();
  await standby.promote();
  const promotedAt = Date.now();
  endpoint.setClusterWriter(CLUSTER, 'orders-2');
  endpoint.setStatus('orders-1', 'rebooting');
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${standby.host}:${standby.port}`, 10_000);
  const recoveredMs = Date.now() - promotedAt;
  // The client's connection to the proxy survives; its next statement runs on the new writer.
  await client.query('INSERT INTO writes VALUES (2)');
  expect(await standby.psql('SELECT string_agg(n::text, \',\' ORDER BY n) FROM writes')).toBe('1,2');
  const afterFailover = await waitForStatus((t) => t.some((x) => x.Port === primary.port && x.TargetHealth.Description === 'DB instance orders-1 is rebooting'));
  expect(afterFailover.find((x) => x.Port === primary.port)?.TargetHealth).toEqual({ State: 'UNAVAILABLE', Reason: 'UNREACHABLE', Description: 'DB instance orders-1 is rebooting' });

  // A reader added to the cluster appears in /status, probed as READ_ONLY; the dead instance deleted from it disappears.
  reader = await startStandby(standby);
  endpoint.putInstance({ id: 'orders-3', host: reader.host, port: reader.port, clusterId: CLUSTER });
  endpoint.removeInstance('orders-1');
  const grown = await waitForStatus((t) => t.some((x) => x.Port === reader!.port && x.Role === 'READ_ONLY') && !t.some((x) => x.Port === primary.port));
  expect(ports(grown)).toEqual([standby.port, reader.port].sort());

  // The RDS API fails from now on: the last good list stays, and so does the service.
  endpoint.failNext(1_000_000, 'InternalFailure');
  await proxy.waitForLog((line) => line.event === 'rds-discovery-failed' && line.error === 'InternalFailure', 10_000);
  await client.query('INSERT INTO writes VALUES (3)');
  expect(ports(await statusTargets())).toEqual([standby.port, reader.port].sort());
  endpoint.failNext(0, 'InternalFailure');

  // The writer itself removed from the listing: dropped like a lost writer (no other writable target).
  endpoint.removeInstance('orders-2');
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === null && line.previous === `${standby.host}:${standby.port}`, 10_000);
  expect(ports(await waitForStatus((t) => t.length === 1))).toEqual([reader.port]);
  expect(await standby.psql('SELECT string_agg(n::text, \',\' ORDER BY n) FROM writes')).toBe('1,2,3');

  process.stdout.write(`rds discovery: the promoted standby was the writer ${recoveredMs} ms after promotion and the topology flip\n`);
  await client.end();
});
