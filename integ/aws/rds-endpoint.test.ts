/**
 * The local RDS endpoint, driven by the real @aws-sdk/client-rds client (so the Query
 * protocol, XML shapes and error shapes are the ones the SDK parses from real RDS), and the
 * proxy's RdsDiscovery listing an Aurora-like cluster and named instances through it.
 */
import { DescribeDBClustersCommand, DescribeDBInstancesCommand, RDSClient } from '@aws-sdk/client-rds';
import { RdsDiscovery } from '../../runtime/discovery/rds-discovery';
import type { TargetDescription } from '../../runtime/pool/target-group';
import { LocalRdsEndpoint, startLocalRdsEndpoint } from './rds-endpoint';

const ACCESS_KEY = 'AKIDTESTRDS';
let endpoint: LocalRdsEndpoint;

function client(accessKeyId = ACCESS_KEY): RDSClient {
  return new RDSClient({
    region: endpoint.region,
    endpoint: endpoint.url,
    credentials: { accessKeyId, secretAccessKey: 'test-secret' },
    maxAttempts: 1,
  });
}

function quietLog(): { info: jest.Mock; warn: jest.Mock } {
  return { info: jest.fn(), warn: jest.fn() };
}

beforeEach(async () => {
  endpoint = await startLocalRdsEndpoint();
  endpoint.putCluster('orders', 'aurora-postgresql');
  endpoint.putInstance({ id: 'orders-1', host: '10.0.0.1', port: 5432, clusterId: 'orders', isClusterWriter: true });
  endpoint.putInstance({ id: 'orders-2', host: '10.0.0.2', port: 5432, clusterId: 'orders' });
  endpoint.putInstance({ id: 'reporting', host: '10.0.1.1', port: 5433 });
});

afterEach(async () => {
  await endpoint.close();
});

test('DescribeDBClusters answers in the shape the SDK parses: members with IsClusterWriter', async () => {
  const rds = client();
  const answer = await rds.send(new DescribeDBClustersCommand({ DBClusterIdentifier: 'orders' }));
  expect(answer.DBClusters).toHaveLength(1);
  const cluster = answer.DBClusters![0]!;
  expect(cluster.DBClusterIdentifier).toBe('orders');
  expect(cluster.Engine).toBe('aurora-postgresql');
  expect(cluster.ClusterCreateTime).toBeInstanceOf(Date);
  expect(cluster.DBClusterMembers).toEqual([
    expect.objectContaining({ DBInstanceIdentifier: 'orders-1', IsClusterWriter: true, PromotionTier: 1 }),
    expect.objectContaining({ DBInstanceIdentifier: 'orders-2', IsClusterWriter: false }),
  ]);
  endpoint.setClusterWriter('orders', 'orders-2');
  const flipped = await rds.send(new DescribeDBClustersCommand({ DBClusterIdentifier: 'orders' }));
  expect(flipped.DBClusters![0]!.DBClusterMembers!.map((m) => [m.DBInstanceIdentifier, m.IsClusterWriter])).toEqual([
    ['orders-1', false],
    ['orders-2', true],
  ]);
  expect(endpoint.calls.at(-1)?.params.get('Version')).toBe('2014-10-31');
  rds.destroy();
});

test('DescribeDBInstances: endpoints, statuses, filters and pagination', async () => {
  const rds = client();
  const one = await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'reporting' }));
  expect(one.DBInstances).toEqual([
    expect.objectContaining({ DBInstanceIdentifier: 'reporting', DBInstanceStatus: 'available', Endpoint: expect.objectContaining({ Address: '10.0.1.1', Port: 5433 }) }),
  ]);
  endpoint.setStatus('orders-2', 'rebooting');
  const byCluster = await rds.send(new DescribeDBInstancesCommand({ Filters: [{ Name: 'db-cluster-id', Values: ['orders'] }] }));
  expect(byCluster.DBInstances!.map((i) => [i.DBInstanceIdentifier, i.DBInstanceStatus, i.DBClusterIdentifier])).toEqual([
    ['orders-1', 'available', 'orders'],
    ['orders-2', 'rebooting', 'orders'],
  ]);
  const byId = await rds.send(new DescribeDBInstancesCommand({ Filters: [{ Name: 'db-instance-id', Values: ['orders-2', 'gone'] }] }));
  expect(byId.DBInstances!.map((i) => i.DBInstanceIdentifier)).toEqual(['orders-2']);

  for (let i = 0; i < 25; i++) endpoint.putInstance({ id: `extra-${i}`, host: `10.0.2.${i}`, port: 5432 });
  const first = await rds.send(new DescribeDBInstancesCommand({ MaxRecords: 20 }));
  expect(first.DBInstances).toHaveLength(20);
  expect(first.Marker).toEqual(expect.any(String));
  const second = await rds.send(new DescribeDBInstancesCommand({ MaxRecords: 20, Marker: first.Marker }));
  expect(second.DBInstances).toHaveLength(28 - 20);
  expect(second.Marker).toBeUndefined();
  rds.destroy();
});

test("errors come back in RDS's XML error shape, as the SDK's typed faults", async () => {
  const rds = client();
  await expect(rds.send(new DescribeDBClustersCommand({ DBClusterIdentifier: 'nope' }))).rejects.toMatchObject({
    name: 'DBClusterNotFoundFault',
    message: 'DBCluster nope not found.',
    $metadata: expect.objectContaining({ httpStatusCode: 404 }),
  });
  await expect(rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: 'nope' }))).rejects.toMatchObject({
    name: 'DBInstanceNotFoundFault',
    $metadata: expect.objectContaining({ httpStatusCode: 404 }),
  });
  await expect(rds.send(new DescribeDBInstancesCommand({ Filters: [{ Name: 'colour', Values: ['blue'] }] }))).rejects.toMatchObject({ name: 'InvalidParameterValue' });
  endpoint.failNext(1, 'Throttling');
  await expect(rds.send(new DescribeDBInstancesCommand({}))).rejects.toMatchObject({ name: 'Throttling', $metadata: expect.objectContaining({ httpStatusCode: 400 }) });
  const stranger = client('AKIDSOMEONEELSE');
  await expect(stranger.send(new DescribeDBInstancesCommand({}))).rejects.toMatchObject({ name: 'InvalidClientTokenId' });
  rds.destroy();
  stranger.destroy();
});

test('RdsDiscovery lists a cluster (writer as a hint) plus named instances; unavailable statuses are marked', async () => {
  const listings: TargetDescription[][] = [];
  const discovery = new RdsDiscovery({
    client: client(),
    dbClusterIdentifier: 'orders',
    dbInstanceIdentifiers: ['reporting', 'orders-2'],
    refreshIntervalSeconds: 30,
    defaultPort: 5432,
    log: quietLog(),
    onTargets: (targets) => listings.push(targets),
  });
  expect(await discovery.list()).toEqual([
    { host: '10.0.0.1', port: 5432, instanceId: 'orders-1', writerHint: true },
    { host: '10.0.0.2', port: 5432, instanceId: 'orders-2' },
    { host: '10.0.1.1', port: 5433, instanceId: 'reporting' },
  ]);
  endpoint.setClusterWriter('orders', 'orders-2');
  endpoint.setStatus('orders-1', 'rebooting');
  endpoint.putInstance({ id: 'orders-3', host: '10.0.0.3', port: 5432, clusterId: 'orders', status: 'creating' });
  endpoint.setStatus('reporting', 'incompatible-replica');
  expect(await discovery.list()).toEqual([
    { host: '10.0.0.1', port: 5432, instanceId: 'orders-1', unavailable: { reason: 'UNREACHABLE', description: 'DB instance orders-1 is rebooting' } },
    { host: '10.0.0.2', port: 5432, instanceId: 'orders-2', writerHint: true },
    { host: '10.0.0.3', port: 5432, instanceId: 'orders-3', unavailable: { reason: 'UNREACHABLE', description: 'DB instance orders-3 is creating' } },
    { host: '10.0.1.1', port: 5433, instanceId: 'reporting', unavailable: { reason: 'INVALID_REPLICATION_STATE', description: 'DB instance reporting is incompatible-replica' } },
  ]);
  endpoint.removeInstance('orders-1');
  endpoint.removeInstance('reporting');
  expect((await discovery.list()).map((t) => t.instanceId)).toEqual(['orders-2', 'orders-3']);
  discovery.stop();
});

test('RdsDiscovery keeps the last good list when a listing fails, and reports each failure', async () => {
  const listings: TargetDescription[][] = [];
  const log = quietLog();
  const discovery = new RdsDiscovery({
    client: client(),
    dbClusterIdentifier: 'orders',
    refreshIntervalSeconds: 30,
    defaultPort: 5432,
    log,
    onTargets: (targets) => listings.push(targets),
  });
  await discovery.refresh();
  expect(listings).toHaveLength(1);
  endpoint.failNext(1, 'InternalFailure');
  await discovery.refresh();
  expect(listings).toHaveLength(1);
  expect(discovery.targets?.map((t) => t.instanceId)).toEqual(['orders-1', 'orders-2']);
  expect(log.warn).toHaveBeenCalledWith(expect.objectContaining({ event: 'rds-discovery-failed', error: 'InternalFailure', keptTargets: 2 }), expect.any(String));
  endpoint.removeInstance('orders-2');
  await discovery.refresh();
  expect(listings.at(-1)?.map((t) => t.instanceId)).toEqual(['orders-1']);
  discovery.stop();
});
