import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { DatabaseProxy, IDatabaseProxy } from '../../constructs';
import { PROXY_METRICS, TIDEPOOL_METRICS } from '../../constructs/lib/metric-catalog';
import { METRIC_DEFINITIONS } from '../../runtime/metrics/definitions';

/** The metrics Amazon RDS Proxy documents today, with the statistic AWS calls most useful and the unit. */
const RDS_PROXY_METRICS: Array<[string, string, string]> = [
  ['AvailabilityPercentage', 'Average', 'Percent'],
  ['ClientConnections', 'Sum', 'Count'],
  ['ClientConnectionsClosed', 'Sum', 'Count'],
  ['ClientConnectionsNoTLS', 'Sum', 'Count'],
  ['ClientConnectionsReceived', 'Sum', 'Count'],
  ['ClientConnectionsSetupFailedAuth', 'Sum', 'Count'],
  ['ClientConnectionsSetupSucceeded', 'Sum', 'Count'],
  ['ClientConnectionsTLS', 'Sum', 'Count'],
  ['DatabaseConnectionRequests', 'Sum', 'Count'],
  ['DatabaseConnectionRequestsWithTLS', 'Sum', 'Count'],
  ['DatabaseConnections', 'Sum', 'Count'],
  ['DatabaseConnectionsBorrowLatency', 'Average', 'Microseconds'],
  ['DatabaseConnectionsCurrentlyBorrowed', 'Sum', 'Count'],
  ['DatabaseConnectionsCurrentlyInTransaction', 'Sum', 'Count'],
  ['DatabaseConnectionsCurrentlySessionPinned', 'Sum', 'Count'],
  ['DatabaseConnectionsSetupFailed', 'Sum', 'Count'],
  ['DatabaseConnectionsSetupSucceeded', 'Sum', 'Count'],
  ['DatabaseConnectionsWithTLS', 'Sum', 'Count'],
  ['MaxDatabaseConnectionsAllowed', 'Sum', 'Count'],
  ['QueryDatabaseResponseLatency', 'Average', 'Microseconds'],
  ['QueryRequests', 'Sum', 'Count'],
  ['QueryRequestsNoTLS', 'Sum', 'Count'],
  ['QueryRequestsTLS', 'Sum', 'Count'],
  ['QueryResponseLatency', 'Average', 'Microseconds'],
];

describe('proxy metrics', () => {
  let stack: Stack;
  let proxy: IDatabaseProxy;

  beforeAll(() => {
    stack = new Stack();
    proxy = DatabaseProxy.fromDatabaseProxyAttributes(stack, 'Proxy', {
      dbProxyName: 'orders-proxy',
      endpoint: 'internal-orders.elb.amazonaws.com',
      port: 5432,
      securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-12345678')],
    });
  });

  test('the catalog holds exactly the 24 RDS Proxy metrics', () => {
    expect(PROXY_METRICS.map((m) => [m.name, m.statistic, m.unit])).toEqual(RDS_PROXY_METRICS);
  });

  test.each(RDS_PROXY_METRICS)('metric%s() has the RDS Proxy name, statistic, unit and a one-minute period', (name, statistic, unit) => {
    const helper = (proxy as unknown as Record<string, (props?: cloudwatch.MetricOptions) => cloudwatch.Metric>)[`metric${name}`];
    expect(typeof helper).toBe('function');
    const metric = helper.call(proxy);
    expect(metric.namespace).toBe('Tidepool');
    expect(metric.metricName).toBe(name);
    expect(metric.statistic).toBe(statistic);
    expect(metric.unit).toBe(unit);
    expect(metric.period.toSeconds()).toBe(60);
    const dimensions = stack.resolve(metric.dimensions);
    expect(dimensions).toEqual(
      name === 'AvailabilityPercentage'
        ? // CloudWatch's spelling of the writer role, which the runtime publishes (not the RDS API's READ_WRITE).
          { ProxyName: 'orders-proxy', TargetGroup: 'default', TargetRole: 'READWRITE' }
        : { ProxyName: 'orders-proxy' },
    );
  });

  test.each([
    ['DatabaseConnectionsBorrowTimeouts', 'Sum', 'Count'],
    ['TargetGroupWriterAvailableDuration', 'Average', 'Seconds'],
  ])('metric%s(), a metric RDS Proxy lacks, has the runtime statistic, unit and the ProxyName dimension only', (name, statistic, unit) => {
    const helper = (proxy as unknown as Record<string, (props?: cloudwatch.MetricOptions) => cloudwatch.Metric>)[`metric${name}`];
    const metric = helper.call(proxy);
    expect([metric.metricName, metric.statistic, metric.unit, metric.period.toSeconds()]).toEqual([name, statistic, unit, 60]);
    expect(stack.resolve(metric.dimensions)).toEqual({ ProxyName: 'orders-proxy' });
  });

  test("the construct's catalog agrees with the runtime's metric definitions on every name, statistic, unit and dimension set", () => {
    const constructSide = [...PROXY_METRICS, ...TIDEPOOL_METRICS].map((metric) => ({
      name: metric.name,
      statistic: metric.statistic,
      unit: metric.unit,
      // What the helpers query: ProxyName alone, or ProxyName+TargetGroup+TargetRole.
      queried: metric.perTargetRoleOnly ? 'targetRole' : 'proxy',
    }));
    const runtimeSide = METRIC_DEFINITIONS.map((definition) => ({
      name: definition.name,
      statistic: definition.statistic,
      unit: definition.unit,
      queried: definition.dimensionSets.includes('proxy') ? 'proxy' : definition.dimensionSets.join(','),
    }));
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    expect(constructSide.sort(byName)).toEqual(runtimeSide.sort(byName));
  });

  test('metric options override the defaults', () => {
    const metric = proxy.metricQueryResponseLatency({ statistic: 'p95', period: Duration.minutes(5) });
    expect(metric.statistic).toBe('p95');
    expect(metric.period.toMinutes()).toBe(5);
  });

  test('metric() with a name outside the catalog keeps CloudWatch defaults but the proxy dimension', () => {
    const metric = proxy.metric('SomethingNew');
    expect(metric.statistic).toBe('Average');
    expect(metric.unit).toBeUndefined();
    expect(stack.resolve(metric.dimensions)).toEqual({ ProxyName: 'orders-proxy' });
  });

  test('helpers can build alarms', () => {
    const alarm = proxy.metricDatabaseConnectionsCurrentlySessionPinned().createAlarm(stack, 'Pinned', {
      threshold: 0,
      evaluationPeriods: 5,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    });
    expect(stack.resolve((alarm.node.defaultChild as cloudwatch.CfnAlarm).namespace)).toBe('Tidepool');
  });
});
