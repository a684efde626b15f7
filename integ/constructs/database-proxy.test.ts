import { Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DatabaseProxy, DatabaseProxyProps, EngineFamily, ProxyTarget, ProxyTlsCertificate } from '../../constructs';
import { Fixture, newFixture, renderedConfig, TEST_IMAGE } from './support';

// Logical IDs are part of the contract: renaming a construct replaces the resource on the next deploy.
const ROLE = 'ProxyIAMRole2FE8AB0F';
const ENDPOINT_SG = 'ProxyProxySecurityGroupC42FC3CE';
const SERVICE_SG = 'ProxyServiceSecurityGroup5164B361';
const TARGET_GROUP = 'ProxyTargetGroup16A83C42';
const LOAD_BALANCER = 'ProxyLoadBalancer296BF129';
const LOG_GROUP = 'ProxyLogGroup29A2C131';
const ECS_CLUSTER = 'ProxyCluster29DC0C5A';
const DATABASE = 'DatabaseB269D8BB';
const DATABASE_SG = 'DatabaseSecurityGroup5C91FDCB';
const DATABASE_SECRET = 'DatabaseSecretAttachmentE5D1B020';

function clusterProxy(fixture: Fixture, props: Partial<DatabaseProxyProps> = {}): DatabaseProxy {
  return new DatabaseProxy(fixture.stack, 'Proxy', {
    proxyTarget: ProxyTarget.fromCluster(fixture.cluster),
    secrets: [fixture.cluster.secret!],
    vpc: fixture.vpc,
    image: TEST_IMAGE,
    ...props,
  });
}

describe('DatabaseProxy with default props in front of Aurora PostgreSQL', () => {
  let fixture: Fixture;
  let proxy: DatabaseProxy;
  let template: Template;

  beforeAll(() => {
    // GIVEN
    fixture = newFixture();
    // WHEN
    proxy = clusterProxy(fixture);
    template = Template.fromStack(fixture.stack);
  });

  test('exposes the engine port, the load balancer DNS name and a lowercase generated name', () => {
    // THEN
    expect(proxy.port).toBe(5432);
    expect(proxy.engineFamily).toBe(EngineFamily.POSTGRESQL);
    expect(fixture.stack.resolve(proxy.endpoint)).toEqual({ 'Fn::GetAtt': [LOAD_BALANCER, 'DNSName'] });
    expect(proxy.dbProxyName).toBe('teststackproxydcb2321b');
  });

  test('puts an internal, cross-zone NLB in the private subnets with a TCP listener on 5432', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Type: 'network',
      Scheme: 'internal',
      Subnets: [{ Ref: 'VpcPrivateSubnet1Subnet536B997A' }, { Ref: 'VpcPrivateSubnet2Subnet3788AAA1' }],
      SecurityGroups: [{ 'Fn::GetAtt': [ENDPOINT_SG, 'GroupId'] }],
      LoadBalancerAttributes: Match.arrayWith([{ Key: 'load_balancing.cross_zone.enabled', Value: 'true' }]),
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      LoadBalancerArn: { Ref: LOAD_BALANCER },
      Port: 5432,
      Protocol: 'TCP',
      DefaultActions: [{ Type: 'forward', TargetGroupArn: { Ref: TARGET_GROUP } }],
      // 30 min idle client timeout + 60 s, so the proxy, not the NLB, closes idle clients.
      ListenerAttributes: [{ Key: 'tcp.idle_timeout.seconds', Value: '1860' }],
    });
  });

  test('health-checks the admin port and drains a leaving task for 30 s', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      Port: 5432,
      Protocol: 'TCP',
      TargetType: 'ip',
      HealthCheckProtocol: 'HTTP',
      HealthCheckPort: '8080',
      HealthCheckPath: '/healthz',
      TargetGroupAttributes: Match.arrayWith([
        { Key: 'deregistration_delay.timeout_seconds', Value: '30' },
        { Key: 'preserve_client_ip.enabled', Value: 'false' },
      ]),
    });
  });

  test('runs two tasks in private subnets, keeps capacity during deployments and rolls back failed ones', () => {
    template.hasResourceProperties('AWS::ECS::Service', {
      Cluster: { Ref: ECS_CLUSTER },
      LaunchType: 'FARGATE',
      DesiredCount: 2,
      DeploymentConfiguration: Match.objectLike({
        DeploymentCircuitBreaker: { Enable: true, Rollback: true },
        MinimumHealthyPercent: 100,
        MaximumPercent: 200,
      }),
      LoadBalancers: [{ ContainerName: 'tidepool', ContainerPort: 5432, TargetGroupArn: { Ref: TARGET_GROUP } }],
      NetworkConfiguration: {
        AwsvpcConfiguration: {
          AssignPublicIp: 'DISABLED',
          SecurityGroups: [{ 'Fn::GetAtt': [SERVICE_SG, 'GroupId'] }],
          Subnets: [{ Ref: 'VpcPrivateSubnet1Subnet536B997A' }, { Ref: 'VpcPrivateSubnet2Subnet3788AAA1' }],
        },
      },
    });
    // The tasks must not start before they may read their secrets.
    template.hasResource('AWS::ECS::Service', { DependsOn: Match.arrayWith(['ProxyTaskPolicy6836DB82']) });
  });

  test('defines one container with the image, both ports, an init process and a drain-aware stop timeout', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: '512',
      Memory: '1024',
      RuntimePlatform: { CpuArchitecture: 'X86_64', OperatingSystemFamily: 'LINUX' },
      TaskRoleArn: { 'Fn::GetAtt': [ROLE, 'Arn'] },
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'tidepool',
          Image: 'public.ecr.aws/tidepool/runtime:test',
          PortMappings: [
            { ContainerPort: 5432, Name: 'proxy', Protocol: 'tcp' },
            { ContainerPort: 8080, Name: 'admin', Protocol: 'tcp' },
          ],
          LinuxParameters: Match.objectLike({ InitProcessEnabled: true }),
          StopTimeout: 40,
          LogConfiguration: {
            LogDriver: 'awslogs',
            Options: Match.objectLike({ 'awslogs-group': { Ref: LOG_GROUP }, mode: 'non-blocking' }),
          },
        }),
      ],
    });
  });

  test('scales between 2 and 4 tasks on CPU', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 2,
      MaxCapacity: 4,
      ScalableDimension: 'ecs:service:DesiredCount',
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: {
        PredefinedMetricSpecification: { PredefinedMetricType: 'ECSServiceAverageCPUUtilization' },
        TargetValue: 50,
        ScaleInCooldown: 300,
        ScaleOutCooldown: 60,
      },
    });
  });

  test('lets nobody in by default, and lets only the load balancer reach the tasks, on the engine and admin ports', () => {
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: Match.stringLikeRegexp('^Endpoint of the Tidepool proxy'),
      SecurityGroupIngress: Match.absent(),
    });
    const taskIngress = Object.values(
      template.findResources('AWS::EC2::SecurityGroupIngress', {
        Properties: { GroupId: { 'Fn::GetAtt': [SERVICE_SG, 'GroupId'] } },
      }),
    ).map((rule) => [rule.Properties.FromPort, rule.Properties.SourceSecurityGroupId]);
    expect(taskIngress).toEqual([
      [5432, { 'Fn::GetAtt': [ENDPOINT_SG, 'GroupId'] }],
      [8080, { 'Fn::GetAtt': [ENDPOINT_SG, 'GroupId'] }],
    ]);
  });

  test('lets the tasks reach the database on its port and AWS APIs on 443, nothing else', () => {
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: { 'Fn::GetAtt': [DATABASE_SG, 'GroupId'] },
      SourceSecurityGroupId: { 'Fn::GetAtt': [SERVICE_SG, 'GroupId'] },
      FromPort: { 'Fn::GetAtt': [DATABASE, 'Endpoint.Port'] },
      ToPort: { 'Fn::GetAtt': [DATABASE, 'Endpoint.Port'] },
    });
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: Match.stringLikeRegexp('^Tasks of the Tidepool proxy'),
      SecurityGroupEgress: [Match.objectLike({ CidrIp: '0.0.0.0/0', FromPort: 443, ToPort: 443 })],
    });
    const taskEgress = Object.values(
      template.findResources('AWS::EC2::SecurityGroupEgress', {
        Properties: { GroupId: { 'Fn::GetAtt': [SERVICE_SG, 'GroupId'] } },
      }),
    ).map((rule) => rule.Properties.DestinationSecurityGroupId);
    expect(taskEgress).toEqual([{ 'Fn::GetAtt': [DATABASE_SG, 'GroupId'] }]);
  });

  test('gives the task role exactly what the runtime needs', () => {
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({
            Principal: { Service: 'ecs-tasks.amazonaws.com' },
            Condition: Match.objectLike({ StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } }),
          }),
        ],
      },
    });
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: ROLE }],
      PolicyDocument: {
        Statement: [
          { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: { Ref: DATABASE_SECRET } },
          {
            Effect: 'Allow',
            Action: 'cloudwatch:PutMetricData',
            Resource: '*',
            Condition: { StringEquals: { 'cloudwatch:namespace': 'Tidepool' } },
          },
          // Instance discovery: this cluster only, then the instances of the account in the cluster's region.
          {
            Effect: 'Allow',
            Action: 'rds:DescribeDBClusters',
            Resource: {
              'Fn::Join': [
                '',
                ['arn:', { Ref: 'AWS::Partition' }, ':rds:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':cluster:', { Ref: DATABASE }],
              ],
            },
          },
          {
            Effect: 'Allow',
            Action: 'rds:DescribeDBInstances',
            Resource: {
              'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':rds:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':db:*']],
            },
          },
        ],
      },
    });
    // Nothing else may grant the task role anything.
    const taskPolicies = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: ROLE }] } });
    expect(Object.keys(taskPolicies)).toHaveLength(1);
  });

  test('keeps logs for a month', () => {
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  test('renders the runtime config from the props, with the pool budget split among maxCapacity tasks', () => {
    expect(renderedConfig(template)).toEqual({
      proxyName: 'teststackproxydcb2321b',
      engineFamily: 'POSTGRESQL',
      listen: { host: '0.0.0.0', port: 5432 },
      // The cluster's instances come from the RDS API; the cluster (writer) endpoint stays as a static fallback.
      rdsTargets: { dbClusterIdentifier: `<Ref:${DATABASE}>`, refreshInterval: 30 },
      aws: { region: '<Ref:AWS::Region>' },
      targets: [{ host: `<GetAtt:${DATABASE}.Endpoint.Address>`, port: `<GetAtt:${DATABASE}.Endpoint.Port>` }],
      auth: [{ secretArn: `<Ref:${DATABASE_SECRET}>`, iamAuth: 'DISABLED' }],
      requireTls: true,
      tls: { minVersion: 'TLSv1.2' },
      targetTls: { mode: 'FOLLOW_CLIENT' },
      idleClientTimeout: 1800,
      connectionPoolConfig: {
        maxConnectionsPercent: 25,
        maxIdleConnectionsPercent: 12,
        connectionBorrowTimeout: 120,
        sessionPinningFilters: [],
      },
      limits: { shutdownTimeout: 30 },
      debugLogging: false,
      admin: { port: 8080 },
      metrics: { namespace: 'Tidepool', publishIntervalSeconds: 60 },
      iam: { allowList: [] },
    });
  });

  test('warns about nothing', () => {
    Annotations.fromStack(fixture.stack).hasNoWarning('*', Match.anyValue());
  });
});

describe('DatabaseProxy in front of Aurora MySQL', () => {
  test('listens on 3306 and speaks the MYSQL family', () => {
    // GIVEN
    const fixture = newFixture('mysql');
    // WHEN
    const proxy = clusterProxy(fixture, { clientPasswordAuthType: rds.ClientPasswordAuthType.MYSQL_CACHING_SHA2_PASSWORD });
    // THEN
    const template = Template.fromStack(fixture.stack);
    expect(proxy.port).toBe(3306);
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', { Port: 3306, Protocol: 'TCP' });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', { Port: 3306, HealthCheckPort: '8080' });
    const config = renderedConfig(template);
    expect(config.engineFamily).toBe('MYSQL');
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 3306 });
    expect(config.auth[0].clientPasswordAuthType).toBe('MYSQL_CACHING_SHA2_PASSWORD');
  });
});

describe('DatabaseProxy props', () => {
  test('pool, timeout and auth props reach the runtime config', () => {
    // GIVEN
    const fixture = newFixture();
    // WHEN
    clusterProxy(fixture, {
      dbProxyName: 'orders-proxy',
      maxConnectionsPercent: 60,
      maxIdleConnectionsPercent: 30,
      maxCapacity: 3,
      borrowTimeout: Duration.seconds(30),
      idleClientTimeout: Duration.hours(8),
      sessionPinningFilters: [rds.SessionPinningFilter.EXCLUDE_VARIABLE_SETS],
      initQuery: 'SET ROLE app',
      debugLogging: true,
      requireTLS: false,
      iamAuth: true,
      clientPasswordAuthType: rds.ClientPasswordAuthType.POSTGRES_MD5,
      drainTimeout: Duration.seconds(60),
    });
    // THEN
    const template = Template.fromStack(fixture.stack);
    const config = renderedConfig(template);
    expect(config).toMatchObject({
      proxyName: 'orders-proxy',
      requireTls: false,
      debugLogging: true,
      idleClientTimeout: 28800,
      auth: [{ iamAuth: 'REQUIRED', clientPasswordAuthType: 'POSTGRES_MD5' }],
      connectionPoolConfig: {
        maxConnectionsPercent: 20,
        maxIdleConnectionsPercent: 10,
        connectionBorrowTimeout: 30,
        sessionPinningFilters: ['EXCLUDE_VARIABLE_SETS'],
        initQuery: 'SET ROLE app',
      },
      limits: { shutdownTimeout: 60 },
    });
    // 8 h is past the NLB's 6000 s ceiling, so the NLB gets its maximum.
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::Listener', {
      ListenerAttributes: [{ Key: 'tcp.idle_timeout.seconds', Value: '6000' }],
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::TargetGroup', {
      TargetGroupAttributes: Match.arrayWith([{ Key: 'deregistration_delay.timeout_seconds', Value: '60' }]),
    });
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          StopTimeout: 70,
          LogConfiguration: Match.objectLike({ Options: Match.objectLike({ 'awslogs-stream-prefix': 'orders-proxy' }) }),
        }),
      ],
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 2, MaxCapacity: 3 });
  });

  test('Fargate size, architecture, counts, log retention and metrics namespace are configurable', () => {
    const fixture = newFixture();
    clusterProxy(fixture, {
      cpu: 1024,
      memoryLimitMiB: 2048,
      cpuArchitecture: ecs.CpuArchitecture.ARM64,
      minCapacity: 3,
      desiredCount: 4,
      maxCapacity: 6,
      cpuTargetUtilizationPercent: 70,
      logRetention: logs.RetentionDays.ONE_WEEK,
      metricsNamespace: 'Acme/Tidepool',
    });
    const template = Template.fromStack(fixture.stack);
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: '1024',
      Memory: '2048',
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
    });
    template.hasResourceProperties('AWS::ECS::Service', { DesiredCount: 4 });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 3, MaxCapacity: 6 });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({ TargetValue: 70 }),
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 7 });
    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Action: 'cloudwatch:PutMetricData', Condition: { StringEquals: { 'cloudwatch:namespace': 'Acme/Tidepool' } } }),
        ]),
      },
    });
    expect(renderedConfig(template).metrics).toEqual({ namespace: 'Acme/Tidepool', publishIntervalSeconds: 60 });
  });

  test('uses the given role, security groups and ECS cluster instead of creating them', () => {
    // GIVEN
    const fixture = newFixture();
    const role = new iam.Role(fixture.stack, 'MyRole', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });
    const securityGroup = new ec2.SecurityGroup(fixture.stack, 'MySecurityGroup', { vpc: fixture.vpc });
    const cluster = new ecs.Cluster(fixture.stack, 'MyCluster', { vpc: fixture.vpc });
    // WHEN
    const proxy = clusterProxy(fixture, { role, securityGroups: [securityGroup], cluster });
    // THEN
    const template = Template.fromStack(fixture.stack);
    expect(proxy.role).toBe(role);
    expect(template.findResources('AWS::IAM::Role', { Properties: { Description: Match.stringLikeRegexp('Tidepool') } })).toEqual({});
    template.resourceCountIs('AWS::ECS::Cluster', 1);
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^MyRole') }],
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'secretsmanager:GetSecretValue' })]) },
    });
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      SecurityGroups: [{ 'Fn::GetAtt': [Match.stringLikeRegexp('^MySecurityGroup'), 'GroupId'] }],
    });
    template.hasResourceProperties('AWS::ECS::Service', { Cluster: { Ref: Match.stringLikeRegexp('^MyCluster') } });
  });

  test('a TLS certificate secret and KMS-encrypted secrets are readable by the task role and nothing more', () => {
    // GIVEN
    const fixture = newFixture();
    const key = new kms.Key(fixture.stack, 'Key');
    const appSecret = new secretsmanager.Secret(fixture.stack, 'AppUser', { encryptionKey: key });
    const certificate = secretsmanager.Secret.fromSecretNameV2(fixture.stack, 'Certificate', 'tidepool/tls');
    // WHEN
    clusterProxy(fixture, {
      secrets: [fixture.cluster.secret!, appSecret],
      tlsCertificate: ProxyTlsCertificate.fromSecret(certificate),
    });
    // THEN
    const template = Template.fromStack(fixture.stack);
    const config = renderedConfig(template);
    expect(config.auth).toHaveLength(2);
    expect(config.tls).toEqual({ minVersion: 'TLSv1.2', secretArn: expect.stringContaining(':secret:tidepool/tls') });
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: ROLE }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Allow',
            Action: 'secretsmanager:GetSecretValue',
            Resource: [
              { Ref: DATABASE_SECRET },
              { Ref: Match.stringLikeRegexp('^AppUser') },
              { 'Fn::Join': ['', Match.arrayWith([':secret:tidepool/tls-??????'])] },
            ],
          },
          {
            Effect: 'Allow',
            Action: 'kms:Decrypt',
            Resource: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Key'), 'Arn'] },
            Condition: { StringEquals: { 'kms:ViaService': Match.anyValue() } },
          },
        ]),
      },
    });
  });

  test('connections default to the engine port, so allowDefaultPortFrom works (aws-cdk#37635)', () => {
    const fixture = newFixture();
    const proxy = clusterProxy(fixture);
    proxy.connections.allowDefaultPortFrom(ec2.Peer.ipv4('10.1.0.0/16'), 'Application subnet');
    Template.fromStack(fixture.stack).hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: Match.stringLikeRegexp('^Endpoint of the Tidepool proxy'),
      SecurityGroupIngress: [{ CidrIp: '10.1.0.0/16', FromPort: 5432, ToPort: 5432, IpProtocol: 'tcp', Description: 'Application subnet' }],
    });
  });
});

describe('grantConnect', () => {
  test('records the principal and database user in the allow-list without touching IAM policies', () => {
    // GIVEN
    const fixture = newFixture();
    const proxy = clusterProxy(fixture, { iamAuth: true });
    const role = new iam.Role(fixture.stack, 'AppRole', { assumedBy: new iam.AccountRootPrincipal() });
    // WHEN
    const grant = proxy.grantConnect(role, 'app_user');
    // THEN
    expect(grant.principalStatements).toEqual([]);
    const template = Template.fromStack(fixture.stack);
    expect(renderedConfig(template).iam).toEqual({
      allowList: [
        { principalArn: `<GetAtt:${fixture.stack.getLogicalId(role.node.defaultChild as iam.CfnRole)}.Arn>`, dbUser: 'app_user' },
      ],
    });
    // A self-hosted proxy verifies callers itself; an rds-db:connect policy would mean nothing.
    expect(template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^AppRole') }] } })).toEqual({});
  });

  test("defaults the database user to the only secret's username", () => {
    const fixture = newFixture();
    const proxy = clusterProxy(fixture, { iamAuth: true });
    proxy.grantConnect(new iam.ArnPrincipal('arn:aws:iam::123456789012:role/reporting'));
    const { allowList } = renderedConfig(Template.fromStack(fixture.stack)).iam;
    expect(allowList).toHaveLength(1);
    const [entry] = allowList;
    expect(entry.principalArn).toBe('arn:aws:iam::123456789012:role/reporting');
    expect(entry.dbUser).toMatch(/^\{\{resolve:secretsmanager:<Ref:DatabaseSecret.*>:SecretString:username::\}\}$/);
  });

  test("lets a connectable grantee's security group in on the proxy port (aws-cdk#20789)", () => {
    const fixture = newFixture();
    const proxy = clusterProxy(fixture, { iamAuth: true });
    const fn = new lambda.Function(fixture.stack, 'Client', {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('exports.handler = async () => 1;'),
      vpc: fixture.vpc,
    });
    proxy.grantConnect(fn, 'app_user');
    Template.fromStack(fixture.stack).hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: { 'Fn::GetAtt': [ENDPOINT_SG, 'GroupId'] },
      SourceSecurityGroupId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ClientSecurityGroup'), 'GroupId'] },
      FromPort: 5432,
      ToPort: 5432,
    });
  });

  test('warns that it does nothing while iamAuth is off', () => {
    const fixture = newFixture();
    const proxy = clusterProxy(fixture);
    proxy.grantConnect(new iam.ArnPrincipal('arn:aws:iam::123456789012:role/reporting'), 'app_user');
    Annotations.fromStack(fixture.stack).hasWarning('/TestStack/Proxy', Match.stringLikeRegexp('no effect while iamAuth is false'));
  });

  test('fails without a dbUser when the proxy has several secrets', () => {
    const fixture = newFixture();
    const proxy = clusterProxy(fixture, {
      iamAuth: true,
      secrets: [fixture.cluster.secret!, new secretsmanager.Secret(fixture.stack, 'Other')],
    });
    expect(() => proxy.grantConnect(new iam.ArnPrincipal('arn:aws:iam::123456789012:role/x'))).toThrow(
      /several secrets \(it has 2\), pass a dbUser to grantConnect\(\)/,
    );
  });

  test('fails for a grantee that is not an IAM role or user', () => {
    const fixture = newFixture();
    const proxy = clusterProxy(fixture, { iamAuth: true });
    expect(() => proxy.grantConnect(new iam.ServicePrincipal('lambda.amazonaws.com'), 'app_user')).toThrow(
      /needs a grantee whose principal is an IAM role or user/,
    );
  });
});

describe('ProxyTarget', () => {
  test('fromCluster without discovery renders the cluster endpoint first, then every instance endpoint, and opens the cluster once', () => {
    // GIVEN: an Aurora MySQL cluster with a writer and a reader
    const fixture = newFixture('mysql');
    const cluster = new rds.DatabaseCluster(fixture.stack, 'Orders', {
      engine: rds.DatabaseClusterEngine.auroraMysql({ version: rds.AuroraMysqlEngineVersion.VER_3_08_2 }),
      writer: rds.ClusterInstance.serverlessV2('Writer'),
      readers: [rds.ClusterInstance.serverlessV2('Reader', { scaleWithWriter: true })],
      vpc: fixture.vpc,
    });
    // WHEN
    new DatabaseProxy(fixture.stack, 'Proxy', {
      proxyTarget: ProxyTarget.fromCluster(cluster, { discoverInstances: false }),
      secrets: [cluster.secret!],
      vpc: fixture.vpc,
      image: TEST_IMAGE,
    });
    // THEN
    const template = Template.fromStack(fixture.stack);
    const clusterId = fixture.stack.getLogicalId(cluster.node.defaultChild as rds.CfnDBCluster);
    const instanceId = (name: string) => fixture.stack.getLogicalId(cluster.node.findChild(name).node.defaultChild as rds.CfnDBInstance);
    const port = `<GetAtt:${clusterId}.Endpoint.Port>`;
    const config = renderedConfig(template);
    expect(config.rdsTargets).toBeUndefined();
    expect(config.targets).toEqual([
      { host: `<GetAtt:${clusterId}.Endpoint.Address>`, port },
      { host: `<GetAtt:${instanceId('Writer')}.Endpoint.Address>`, port },
      { host: `<GetAtt:${instanceId('Reader')}.Endpoint.Address>`, port },
    ]);
    const databaseIngress = template.findResources('AWS::EC2::SecurityGroupIngress', {
      Properties: { GroupId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^OrdersSecurityGroup'), 'GroupId'] } },
    });
    expect(Object.values(databaseIngress).map((rule) => rule.Properties.SourceSecurityGroupId)).toEqual([
      { 'Fn::GetAtt': [SERVICE_SG, 'GroupId'] },
    ]);
    const statements = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: ROLE }] } });
    expect(JSON.stringify(statements)).not.toContain('rds:');
  });

  test('fromCluster without discovery renders the instance endpoints an imported cluster was given', () => {
    const fixture = newFixture();
    const cluster = rds.DatabaseCluster.fromDatabaseClusterAttributes(fixture.stack, 'Imported', {
      clusterIdentifier: 'orders',
      clusterEndpointAddress: 'orders.cluster-abc.us-east-1.rds.amazonaws.com',
      instanceEndpointAddresses: ['orders-1.abc.us-east-1.rds.amazonaws.com', 'orders-2.abc.us-east-1.rds.amazonaws.com'],
      port: 5432,
      engine: rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_16_8 }),
      securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(fixture.stack, 'ImportedSg', 'sg-0d0d0d0d0d0d0d0d0')],
    });
    new DatabaseProxy(fixture.stack, 'Proxy', {
      proxyTarget: ProxyTarget.fromCluster(cluster, { discoverInstances: false }),
      secrets: [fixture.cluster.secret!],
      vpc: fixture.vpc,
      image: TEST_IMAGE,
    });
    expect(renderedConfig(Template.fromStack(fixture.stack)).targets).toEqual([
      { host: 'orders.cluster-abc.us-east-1.rds.amazonaws.com', port: 5432 },
      { host: 'orders-1.abc.us-east-1.rds.amazonaws.com', port: 5432 },
      { host: 'orders-2.abc.us-east-1.rds.amazonaws.com', port: 5432 },
    ]);
  });

  test('fromInstance serves an RDS instance and opens its security group, without RDS API permissions', () => {
    // GIVEN
    const fixture = newFixture();
    const instance = new rds.DatabaseInstance(fixture.stack, 'Instance', {
      engine: rds.DatabaseInstanceEngine.postgres({ version: rds.PostgresEngineVersion.VER_16 }),
      vpc: fixture.vpc,
      storageEncrypted: true,
    });
    // WHEN
    new DatabaseProxy(fixture.stack, 'Proxy', {
      proxyTarget: ProxyTarget.fromInstance(instance),
      secrets: [instance.secret!],
      vpc: fixture.vpc,
      image: TEST_IMAGE,
    });
    // THEN
    const template = Template.fromStack(fixture.stack);
    const instanceId = fixture.stack.getLogicalId(instance.node.defaultChild as rds.CfnDBInstance);
    expect(renderedConfig(template).targets).toEqual([
      { host: `<GetAtt:${instanceId}.Endpoint.Address>`, port: `<GetAtt:${instanceId}.Endpoint.Port>` },
    ]);
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^InstanceSecurityGroup'), 'GroupId'] },
      SourceSecurityGroupId: { 'Fn::GetAtt': [SERVICE_SG, 'GroupId'] },
    });
    const statements = template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: ROLE }] } });
    expect(JSON.stringify(statements)).not.toContain('rds:');
  });

  test('fromEndpoints serves self-managed servers and opens their security group on each port', () => {
    // GIVEN
    const fixture = newFixture();
    const databaseSecurityGroup = new ec2.SecurityGroup(fixture.stack, 'SelfManagedDb', { vpc: fixture.vpc });
    const secret = new secretsmanager.Secret(fixture.stack, 'Credentials');
    // WHEN
    new DatabaseProxy(fixture.stack, 'Proxy', {
      proxyTarget: ProxyTarget.fromEndpoints({
        engineFamily: EngineFamily.MYSQL,
        endpoints: [new rds.Endpoint('primary.db.internal', 3306), new rds.Endpoint('replica.db.internal', 3307)],
        connections: databaseSecurityGroup,
      }),
      secrets: [secret],
      vpc: fixture.vpc,
      image: TEST_IMAGE,
    });
    // THEN
    const template = Template.fromStack(fixture.stack);
    expect(renderedConfig(template).targets).toEqual([
      { host: 'primary.db.internal', port: 3306 },
      { host: 'replica.db.internal', port: 3307 },
    ]);
    for (const port of [3306, 3307]) {
      template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
        GroupId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^SelfManagedDb'), 'GroupId'] },
        SourceSecurityGroupId: { 'Fn::GetAtt': [SERVICE_SG, 'GroupId'] },
        FromPort: port,
      });
    }
  });

  test('fromEndpoints without security groups lets the tasks out on the port and warns', () => {
    const fixture = newFixture();
    new DatabaseProxy(fixture.stack, 'Proxy', {
      proxyTarget: ProxyTarget.fromEndpoints({ engineFamily: EngineFamily.POSTGRESQL, endpoints: [new rds.Endpoint('10.0.9.9', 5433)] }),
      secrets: [new secretsmanager.Secret(fixture.stack, 'Credentials')],
      vpc: fixture.vpc,
      image: TEST_IMAGE,
    });
    Template.fromStack(fixture.stack).hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: Match.stringLikeRegexp('^Tasks of the Tidepool proxy'),
      SecurityGroupEgress: Match.arrayWith([Match.objectLike({ CidrIp: '0.0.0.0/0', FromPort: 5433, ToPort: 5433 })]),
    });
    Annotations.fromStack(fixture.stack).hasWarning('/TestStack/Proxy', Match.stringLikeRegexp('allow 5433 from the proxy'));
  });
});

describe('fromDatabaseProxyAttributes', () => {
  test('imports a proxy whose connections default to its port and whose metrics carry its name', () => {
    // GIVEN
    const stack = new Stack();
    const securityGroup = ec2.SecurityGroup.fromSecurityGroupId(stack, 'Sg', 'sg-12345678');
    // WHEN
    const proxy = DatabaseProxy.fromDatabaseProxyAttributes(stack, 'Imported', {
      dbProxyName: 'orders-proxy',
      endpoint: 'internal-orders-123.elb.us-east-1.amazonaws.com',
      port: 3306,
      securityGroups: [securityGroup],
    });
    // THEN
    expect(proxy.connections.defaultPort?.toString()).toBe('3306');
    expect(proxy.metricsNamespace).toBe('Tidepool');
    expect(stack.resolve(proxy.metricQueryRequests().dimensions)).toEqual({ ProxyName: 'orders-proxy' });
  });

  test('fails to grantConnect, because the allow-list belongs to the defining stack', () => {
    const stack = new Stack();
    const proxy = DatabaseProxy.fromDatabaseProxyAttributes(stack, 'Imported', {
      dbProxyName: 'orders-proxy',
      endpoint: 'internal-orders-123.elb.us-east-1.amazonaws.com',
      port: 5432,
      securityGroups: [],
    });
    expect(() => proxy.grantConnect(new iam.ArnPrincipal('arn:aws:iam::123456789012:role/x'), 'app')).toThrow(
      /not available on an imported Tidepool proxy/,
    );
  });
});
