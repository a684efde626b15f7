import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as sns from 'aws-cdk-lib/aws-sns';
import { DatabaseProxy, IDatabaseProxy, ProxyTarget } from '../../constructs';
import { awsSolutionsFindings, newFixture, TEST_IMAGE } from './support';

const PROXY_DIMENSION = [{ Name: 'ProxyName', Value: 'orders-proxy' }];
const WRITER_ROLE_DIMENSIONS = [
  { Name: 'ProxyName', Value: 'orders-proxy' },
  { Name: 'TargetGroup', Value: 'default' },
  { Name: 'TargetRole', Value: 'READWRITE' },
];

/** A proxy imported into a monitoring stack of its own: the alarms need only its name and namespace. */
function importedProxy(stack: Stack, metricsNamespace?: string): IDatabaseProxy {
  return DatabaseProxy.fromDatabaseProxyAttributes(stack, 'Proxy', {
    dbProxyName: 'orders-proxy',
    endpoint: 'orders-proxy-0123456789.elb.us-east-1.amazonaws.com',
    port: 5432,
    securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-12345678')],
    ...(metricsNamespace !== undefined && { metricsNamespace }),
  });
}

function monitoringStack(): Stack {
  return new Stack(new App(), 'Monitoring', { env: { account: '123456789012', region: 'us-east-1' } });
}

describe('addDefaultAlarms()', () => {
  let stack: Stack;
  let template: Template;
  let topic: sns.Topic;

  beforeAll(() => {
    // GIVEN
    stack = monitoringStack();
    topic = new sns.Topic(stack, 'Pager');
    const proxy = importedProxy(stack);
    // WHEN
    proxy.addDefaultAlarms({ alarmActions: [new cloudwatchActions.SnsAction(topic)] });
    template = Template.fromStack(stack);
  });

  test('creates exactly three alarms', () => {
    template.resourceCountIs('AWS::CloudWatch::Alarm', 3);
  });

  test('writer unavailable: writer-role AvailabilityPercentage below 50 for 2 of 2 minutes, silence breaching', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Tidepool',
      MetricName: 'AvailabilityPercentage',
      Dimensions: WRITER_ROLE_DIMENSIONS,
      Statistic: 'Average',
      Unit: 'Percent',
      Period: 60,
      Threshold: 50,
      ComparisonOperator: 'LessThanThreshold',
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
      TreatMissingData: 'breaching',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('^Pager') }],
    });
  });

  test('borrow timeouts: any DatabaseConnectionsBorrowTimeouts in a minute, cleared by three quiet minutes', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'Tidepool',
      MetricName: 'DatabaseConnectionsBorrowTimeouts',
      Dimensions: PROXY_DIMENSION,
      Statistic: 'Sum',
      Unit: 'Count',
      Period: 60,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 1,
      TreatMissingData: 'notBreaching',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('^Pager') }],
    });
  });

  test('session pinning: pinned share of database connections above 50% for 5 of 5 minutes', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Threshold: 50,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 5,
      DatapointsToAlarm: 5,
      TreatMissingData: 'notBreaching',
      AlarmActions: [{ Ref: Match.stringLikeRegexp('^Pager') }],
      Metrics: [
        {
          Id: 'expr_1',
          Expression: 'IF(connections > 0, 100 * pinned / connections, 0)',
          Label: 'Pinned database connections (%)',
          ReturnData: true,
        },
        {
          Id: 'pinned',
          ReturnData: false,
          MetricStat: {
            Metric: { Namespace: 'Tidepool', MetricName: 'DatabaseConnectionsCurrentlySessionPinned', Dimensions: PROXY_DIMENSION },
            Period: 60,
            Stat: 'Sum',
            Unit: 'Count',
          },
        },
        {
          Id: 'connections',
          ReturnData: false,
          MetricStat: {
            Metric: { Namespace: 'Tidepool', MetricName: 'DatabaseConnections', Dimensions: PROXY_DIMENSION },
            Period: 60,
            Stat: 'Sum',
            Unit: 'Count',
          },
        },
      ],
    });
  });

  test('names the proxy in every description', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
    for (const alarm of alarms) expect(alarm.Properties.AlarmDescription).toContain('orders-proxy');
  });

  test('leaves cdk-nag with nothing to report', () => {
    // The topic is the test's, not the construct's; encryption at rest is not what is under test.
    expect(awsSolutionsFindings(stack).filter((finding) => !finding.includes('/Pager/'))).toEqual([]);
  });
});

describe('addDefaultAlarms() options', () => {
  test('thresholds, periods, OK actions and the namespace follow the options', () => {
    const stack = monitoringStack();
    const topic = new sns.Topic(stack, 'Pager');
    const alarms = importedProxy(stack, 'Orders/Tidepool').addDefaultAlarms({
      okActions: [new cloudwatchActions.SnsAction(topic)],
      writerAvailabilityThresholdPercent: 90,
      writerUnavailableEvaluationPeriods: 3,
      borrowTimeoutsThreshold: 10,
      sessionPinnedThresholdPercent: 80,
      sessionPinningEvaluationPeriods: 15,
    });
    const resolve = (alarm: cloudwatch.Alarm) => stack.resolve((alarm.node.defaultChild as cloudwatch.CfnAlarm)._toCloudFormation());
    const props = (alarm: cloudwatch.Alarm) => Object.values(resolve(alarm).Resources as Record<string, { Properties: any }>)[0].Properties;
    expect(props(alarms.writerUnavailable)).toMatchObject({
      Namespace: 'Orders/Tidepool',
      Threshold: 90,
      EvaluationPeriods: 3,
      DatapointsToAlarm: 3,
      OKActions: [{ Ref: expect.stringMatching(/^Pager/) }],
    });
    expect(props(alarms.writerUnavailable).AlarmActions).toBeUndefined();
    expect(props(alarms.borrowTimeouts)).toMatchObject({ Namespace: 'Orders/Tidepool', Threshold: 10 });
    expect(props(alarms.sessionPinning)).toMatchObject({ Threshold: 80, EvaluationPeriods: 15, DatapointsToAlarm: 15 });
  });

  test('a second call fails with a clear message instead of a construct ID clash', () => {
    const proxy = importedProxy(monitoringStack());
    proxy.addDefaultAlarms();
    expect(() => proxy.addDefaultAlarms()).toThrow(/addDefaultAlarms\(\) was already called/);
  });

  test.each([
    [{ writerAvailabilityThresholdPercent: 101 }, /writerAvailabilityThresholdPercent must be between 0 and 100, got 101/],
    [{ borrowTimeoutsThreshold: 0 }, /borrowTimeoutsThreshold must be between 1 and/],
    [{ sessionPinnedThresholdPercent: -1 }, /sessionPinnedThresholdPercent must be between 0 and 100/],
    [{ writerUnavailableEvaluationPeriods: 0 }, /writerUnavailableEvaluationPeriods must be a whole number of minutes from 1 to 60, got 0/],
    [{ sessionPinningEvaluationPeriods: 1.5 }, /sessionPinningEvaluationPeriods must be a whole number/],
  ])('rejects %p', (options, message) => {
    expect(() => importedProxy(monitoringStack()).addDefaultAlarms(options)).toThrow(message);
  });

  test('works on a proxy defined in the same stack, with stable construct IDs', () => {
    const fixture = newFixture();
    const proxy = new DatabaseProxy(fixture.stack, 'Proxy', {
      proxyTarget: ProxyTarget.fromCluster(fixture.cluster),
      secrets: [fixture.cluster.secret!],
      vpc: fixture.vpc,
      image: TEST_IMAGE,
    });
    const alarms = proxy.addDefaultAlarms();
    expect(alarms.writerUnavailable.node.path).toBe('TestStack/Proxy/DefaultAlarms/WriterUnavailable');
    expect(alarms.borrowTimeouts.node.path).toBe('TestStack/Proxy/DefaultAlarms/BorrowTimeouts');
    expect(alarms.sessionPinning.node.path).toBe('TestStack/Proxy/DefaultAlarms/SessionPinning');
    Template.fromStack(fixture.stack).hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'AvailabilityPercentage',
      Dimensions: [
        { Name: 'ProxyName', Value: proxy.dbProxyName },
        { Name: 'TargetGroup', Value: 'default' },
        { Name: 'TargetRole', Value: 'READWRITE' },
      ],
    });
  });
});

/** The metrics of every graph on a dashboard, as `Namespace MetricName Dim=Value,...`. */
function dashboardMetrics(template: Template): { body: any; metrics: string[] } {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  const bodySource = dashboards[0].Properties.DashboardBody;
  // Alarm ARNs are intrinsics inside the body; they become `<GetAtt:LogicalId.Arn>` placeholders here.
  const placeholder = (part: any): string => {
    if (typeof part === 'string') return part;
    if ('Ref' in part) return `<Ref:${part.Ref}>`;
    return `<GetAtt:${part['Fn::GetAtt'].join('.')}>`;
  };
  const body = JSON.parse(typeof bodySource === 'string' ? bodySource : bodySource['Fn::Join'][1].map(placeholder).join(''));
  const metrics: string[] = [];
  for (const widget of body.widgets) {
    for (const metric of widget.properties.metrics ?? []) {
      const parts = metric.filter((part: unknown) => typeof part === 'string') as string[];
      const [namespace, name, ...dims] = parts;
      const pairs: string[] = [];
      for (let i = 0; i < dims.length; i += 2) pairs.push(`${dims[i]}=${dims[i + 1]}`);
      metrics.push(`${namespace} ${name} ${pairs.join(',')}`);
    }
  }
  return { body, metrics };
}

describe('addDashboard()', () => {
  test('graphs connections, latencies, availability and logins, under the default alarms', () => {
    const stack = monitoringStack();
    const proxy = importedProxy(stack);
    const alarms = proxy.addDefaultAlarms();
    const dashboard = proxy.addDashboard('Dashboard', { dashboardName: 'orders-proxy', defaultInterval: Duration.hours(6) });
    expect(dashboard.node.path).toBe('Monitoring/Proxy/Dashboard');
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'orders-proxy' });
    const { body, metrics } = dashboardMetrics(template);
    expect(body.start).toBe('-PT6H');
    const titles = body.widgets.map((widget: any) => widget.properties.title).filter(Boolean);
    expect(titles).toEqual([
      'Alarms',
      'Client connections',
      'Database connections',
      'Query latency (µs)',
      'Borrow latency (µs) and timeouts',
      'Writer availability (%)',
      'Logins',
      'Database connection setup',
    ]);
    const alarmWidget = body.widgets.find((widget: any) => widget.properties.title === 'Alarms');
    expect(alarmWidget.properties.alarms).toEqual(
      Object.values(alarms).map((alarm) => `<GetAtt:${stack.getLogicalId(alarm.node.defaultChild as cloudwatch.CfnAlarm)}.Arn>`),
    );
    const proxyOnly = (name: string) => `Tidepool ${name} ProxyName=orders-proxy`;
    expect(new Set(metrics)).toEqual(
      new Set([
        proxyOnly('ClientConnections'),
        proxyOnly('ClientConnectionsTLS'),
        proxyOnly('ClientConnectionsNoTLS'),
        proxyOnly('ClientConnectionsReceived'),
        proxyOnly('ClientConnectionsClosed'),
        proxyOnly('DatabaseConnections'),
        proxyOnly('DatabaseConnectionsCurrentlyBorrowed'),
        proxyOnly('DatabaseConnectionsCurrentlySessionPinned'),
        proxyOnly('DatabaseConnectionsCurrentlyInTransaction'),
        proxyOnly('MaxDatabaseConnectionsAllowed'),
        proxyOnly('QueryResponseLatency'),
        proxyOnly('QueryDatabaseResponseLatency'),
        proxyOnly('QueryRequests'),
        proxyOnly('DatabaseConnectionsBorrowLatency'),
        proxyOnly('DatabaseConnectionsBorrowTimeouts'),
        'Tidepool AvailabilityPercentage ProxyName=orders-proxy,TargetGroup=default,TargetRole=READWRITE',
        proxyOnly('ClientConnectionsSetupSucceeded'),
        proxyOnly('ClientConnectionsSetupFailedAuth'),
        proxyOnly('DatabaseConnectionsSetupSucceeded'),
        proxyOnly('DatabaseConnectionsSetupFailed'),
        proxyOnly('DatabaseConnectionRequests'),
      ]),
    );
    // Latency tails use the maximum: statistic sets, which the runtime publishes, carry no percentiles.
    expect(JSON.stringify(body)).not.toMatch(/"p\d+"/);
  });

  test('without default alarms there is no alarm row; given alarms are shown instead', () => {
    const stack = monitoringStack();
    const proxy = importedProxy(stack);
    proxy.addDashboard('Plain');
    const other = new Stack(new App(), 'Other', { env: { account: '123456789012', region: 'us-east-1' } });
    const otherProxy = importedProxy(other);
    const alarm = otherProxy.metricClientConnections().createAlarm(other, 'Many', { threshold: 1000, evaluationPeriods: 1 });
    otherProxy.addDashboard('WithAlarm', { alarms: [alarm] });
    const plain = dashboardMetrics(Template.fromStack(stack)).body;
    expect(plain.widgets.some((widget: any) => widget.properties.title === 'Alarms')).toBe(false);
    const withAlarm = dashboardMetrics(Template.fromStack(other)).body;
    expect(withAlarm.widgets.find((widget: any) => widget.properties.title === 'Alarms').properties.alarms).toHaveLength(1);
  });
});
