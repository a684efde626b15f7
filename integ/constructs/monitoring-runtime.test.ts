/**
 * The default alarms and the dashboard watch series the runtime really publishes: the bundled proxy runs
 * in front of a real PostgreSQL with its CloudWatch push pointed at the local PutMetricData endpoint, a
 * workload pins a session and runs the pool dry, and every metric (namespace, name and exact dimension set)
 * the synthesized alarms and dashboard reference must have arrived there. A dimension spelled differently
 * from the runtime's (TargetRole READ_WRITE instead of READWRITE, say) leaves an alarm with no data at all,
 * which template assertions alone cannot see.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Client } from 'pg';
import { DatabaseProxy } from '../../constructs';
import { LocalCloudWatchEndpoint, RecordedDatum } from '../aws/cloudwatch-endpoint';
import { PgServer } from '../harness/postgres';
import { startTidepool, TidepoolProcess } from '../harness/tidepool';
import { APP_PASSWORD, APP_USER, connectedClient, startServerWithAppUser } from '../pg/support';

const PROXY_NAME = 'orders-proxy';
const NAMESPACE = 'TidepoolMonitoringTest';

interface MetricIdentity {
  readonly namespace: string;
  readonly name: string;
  readonly dimensions: Record<string, string>;
}

let cloudWatch: LocalCloudWatchEndpoint;
let server: PgServer;
let proxy: TidepoolProcess;
const clients: Client[] = [];

beforeAll(async () => {
  cloudWatch = await LocalCloudWatchEndpoint.start();
  // 20 × 10% = a pool ceiling of 2 server connections, so a third concurrent transaction waits.
  server = await startServerWithAppUser({ maxConnections: 20 });
  proxy = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    env: { AWS_ACCESS_KEY_ID: 'AKIDTESTMONITORING', AWS_SECRET_ACCESS_KEY: 'test-secret-key', AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' },
    config: {
      proxyName: PROXY_NAME,
      metrics: { enabled: true, publishIntervalSeconds: 1, namespace: NAMESPACE },
      aws: { region: 'us-east-1', cloudWatchEndpoint: cloudWatch.url },
      connectionPoolConfig: { maxConnectionsPercent: 10, connectionBorrowTimeout: 1 },
    },
  });
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.end().catch(() => undefined)));
  await proxy?.stop();
  await server?.stop();
  await cloudWatch?.stop();
});

/** Polls until `condition` holds or `timeoutMs` passes; returns whether it held. */
async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

function total(data: RecordedDatum[]): number {
  return data.reduce((sum, datum) => sum + (datum.Value ?? datum.StatisticValues?.Sum ?? 0), 0);
}

/** Every metric the stack's alarms and dashboards reference, from the synthesized template. */
function referencedMetrics(template: Template): MetricIdentity[] {
  const found: MetricIdentity[] = [];
  const fromDimensions = (dimensions: Array<{ Name: string; Value: string }> = []) =>
    Object.fromEntries(dimensions.map((dimension) => [dimension.Name, dimension.Value]));
  for (const alarm of Object.values(template.findResources('AWS::CloudWatch::Alarm'))) {
    const props = alarm.Properties;
    if (props.MetricName) {
      found.push({ namespace: props.Namespace, name: props.MetricName, dimensions: fromDimensions(props.Dimensions) });
    }
    for (const query of props.Metrics ?? []) {
      const metric = query.MetricStat?.Metric;
      if (metric) found.push({ namespace: metric.Namespace, name: metric.MetricName, dimensions: fromDimensions(metric.Dimensions) });
    }
  }
  for (const dashboard of Object.values(template.findResources('AWS::CloudWatch::Dashboard'))) {
    const source = dashboard.Properties.DashboardBody;
    // Intrinsics in the body (the alarm row's ARNs) never sit inside a metric; any string stands in for them.
    const text = typeof source === 'string' ? source : source['Fn::Join'][1].map((part: unknown) => (typeof part === 'string' ? part : 'intrinsic')).join('');
    const body = JSON.parse(text);
    for (const widget of body.widgets) {
      for (const metric of widget.properties.metrics ?? []) {
        const [namespace, name, ...pairs] = (metric as unknown[]).filter((part): part is string => typeof part === 'string');
        const dimensions: Record<string, string> = {};
        for (let i = 0; i < pairs.length; i += 2) dimensions[pairs[i]] = pairs[i + 1];
        found.push({ namespace, name, dimensions });
      }
    }
  }
  return found;
}

test('every metric the default alarms and the dashboard watch is one the runtime publishes, with the same dimensions', async () => {
  // Workload: one session pinned by SET, then transactions held open until the pool (a ceiling of 2,
  // part of it the writer probe's) runs dry and one waits the 1 s borrow timeout and fails.
  const pinned = await connectedClient(proxy);
  clients.push(pinned);
  await pinned.query("SET work_mem = '8MB'");
  const holders: Client[] = [];
  let borrowError: { code?: string } | undefined;
  while (borrowError === undefined && holders.length < 5) {
    const holder = await connectedClient(proxy);
    clients.push(holder);
    borrowError = await holder.query('BEGIN').then(
      () => {
        holders.push(holder);
        return undefined;
      },
      (error: { code?: string }) => error,
    );
  }
  expect(borrowError?.code).toBe('53300');

  const proxyDimension = { ProxyName: PROXY_NAME };
  const published = await waitFor(
    () =>
      total(cloudWatch.find('DatabaseConnectionsBorrowTimeouts', proxyDimension)) >= 1 &&
      cloudWatch.find('DatabaseConnectionsCurrentlySessionPinned', proxyDimension).some((datum) => (datum.Value ?? 0) >= 1),
    15_000,
  );
  expect(published).toBe(true);
  for (const holder of holders) await holder.query('COMMIT');

  // WHEN: a monitoring stack watches the proxy by name
  const stack = new Stack(new App(), 'Monitoring', { env: { account: '123456789012', region: 'us-east-1' } });
  const watched = DatabaseProxy.fromDatabaseProxyAttributes(stack, 'Proxy', {
    dbProxyName: PROXY_NAME,
    endpoint: proxy.host,
    port: proxy.port,
    securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-12345678')],
    metricsNamespace: NAMESPACE,
  });
  watched.addDefaultAlarms();
  watched.addDashboard('Dashboard');
  const referenced = referencedMetrics(Template.fromStack(stack));

  // THEN: each referenced series has data in the namespace the proxy pushed to
  expect(referenced.length).toBeGreaterThan(20);
  expect(new Set(cloudWatch.requests.map((request) => request.namespace))).toEqual(new Set([NAMESPACE]));
  const unpublished = referenced
    .filter((metric) => metric.namespace !== NAMESPACE || cloudWatch.find(metric.name, metric.dimensions).length === 0)
    .map((metric) => `${metric.namespace} ${metric.name} ${JSON.stringify(metric.dimensions)}`);
  expect(unpublished).toEqual([]);

  // And the alarm conditions read the data as intended: the writer was there, the borrow timeout was not missed.
  const writerAvailability = cloudWatch.find('AvailabilityPercentage', { ...proxyDimension, TargetGroup: 'default', TargetRole: 'READWRITE' });
  expect(Math.max(...writerAvailability.map((datum) => datum.Value ?? 0))).toBeGreaterThanOrEqual(50);
  expect(total(cloudWatch.find('DatabaseConnectionsBorrowTimeouts', proxyDimension))).toBeGreaterThanOrEqual(1);
});
