/**
 * Targets discovered through the RDS API with the MySQL engine: a real MariaDB primary and
 * replica described as an Aurora MySQL cluster by the local RDS endpoint, and the bundled
 * proxy configured with nothing but `rdsTargets.dbClusterIdentifier`.
 *
 * - clients see the target's own server version in the handshake (there is no static target to read it from);
 * - kill -9 + promote + the cluster's writer flipped in the listing: writes go to the new writer;
 * - a listing that fails keeps the last list, and the proxy keeps serving.
 */
import { connect } from 'node:net';
import { MysqlPacketFramer } from '../../runtime/protocol/mysql/framing';
import { parseHandshakeV10 } from '../../runtime/protocol/mysql/packets';
import { MariadbServer, startReplica } from '../harness/mariadb';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { LocalRdsEndpoint, startLocalRdsEndpoint } from '../aws/rds-endpoint';
import { APP_DB, APP_PASSWORD, APP_USER, connectThroughProxy, startServerWithAppUser } from './support';

const CLUSTER = 'inventory';

let primary: MariadbServer;
let replica: MariadbServer;
let endpoint: LocalRdsEndpoint;
let proxy: TidepoolProcess;

/** The server version in the proxy's initial handshake. */
function greetingVersion(): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: proxy.host, port: proxy.port });
    const framer = new MysqlPacketFramer();
    socket.on('data', (chunk: Buffer) => {
      for (const packet of framer.pushPackets(chunk)) {
        socket.destroy();
        resolve(parseHandshakeV10(packet.payload).serverVersion);
        return;
      }
    });
    socket.on('error', reject);
  });
}

beforeAll(async () => {
  [primary, endpoint] = await Promise.all([startServerWithAppUser({ maxConnections: 40 }), startLocalRdsEndpoint()]);
  await primary.mysql(`CREATE TABLE ${APP_DB}.writes (n INT NOT NULL) ENGINE=InnoDB`);
  replica = await startReplica(primary);
  endpoint.putCluster(CLUSTER, 'aurora-mysql');
  endpoint.putInstance({ id: 'inventory-1', host: primary.host, port: primary.port, clusterId: CLUSTER, isClusterWriter: true });
  endpoint.putInstance({ id: 'inventory-2', host: replica.host, port: replica.port, clusterId: CLUSTER });
  proxy = await startTidepool({
    engineFamily: 'MYSQL',
    targets: [],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    env: {
      AWS_ACCESS_KEY_ID: 'AKIDTESTRDS',
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
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await Promise.all([replica?.stop(), endpoint?.close()]);
  await primary?.stop();
});

test('an Aurora MySQL-style cluster listed through the RDS API: handshake, failover, a failing listing', async () => {
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${primary.host}:${primary.port}`);
  expect(await greetingVersion()).toMatch(/MariaDB/);
  const connection = await connectThroughProxy(proxy);
  await connection.query('INSERT INTO writes VALUES (1)');
  await replica.waitForReplication();

  await primary.kill9();
  await replica.promote();
  endpoint.setClusterWriter(CLUSTER, 'inventory-2');
  endpoint.setStatus('inventory-1', 'failing-over');
  await proxy.waitForLog((line) => line.event === 'writer-changed' && line.writer === `${replica.host}:${replica.port}`, 10_000);
  // The client's connection to the proxy survives; its next statement runs on the new writer.
  await connection.query('INSERT INTO writes VALUES (2)');
  expect(await replica.mysql(`SELECT GROUP_CONCAT(n ORDER BY n) FROM ${APP_DB}.writes`)).toBe('1,2');

  // The listing with the old writer failing over arrives at the next refresh; then the API starts failing.
  await proxy.waitForLog(
    (line) => line.event === 'rds-targets' && JSON.stringify(line.targets).includes('DB instance inventory-1 is failing-over'),
    10_000,
  );
  endpoint.failNext(1_000_000, 'Throttling');
  await proxy.waitForLog((line) => line.event === 'rds-discovery-failed' && line.error === 'Throttling', 15_000);
  await connection.query('INSERT INTO writes VALUES (3)');
  const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as { Targets: { Port: number; TargetHealth: { State: string; Description?: string } }[] };
  expect(status.Targets.map((t) => [t.Port, t.TargetHealth.State, t.TargetHealth.Description])).toEqual([
    [primary.port, 'UNAVAILABLE', 'DB instance inventory-1 is failing-over'],
    [replica.port, 'AVAILABLE', undefined],
  ]);
  expect(await replica.mysql(`SELECT GROUP_CONCAT(n ORDER BY n) FROM ${APP_DB}.writes`)).toBe('1,2,3');
  await connection.end();
}, 60_000);
