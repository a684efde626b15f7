/**
 * What a user's own app does: import the package, point a proxy at an Aurora cluster that already exists
 * (created outside CDK or in another app), and synthesize.
 */
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as tidepool from '../../constructs';
import { configSchema, parseConfig } from '../../runtime/config/schema';
import { renderedConfig } from './support';

const SUBNETS = ['subnet-0aaa1111aaaa1111a', 'subnet-0bbb2222bbbb2222b', 'subnet-0ccc3333cccc3333c'];
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:111122223333:secret:orders/app-AbCdEf';

describe('a separate app using the package', () => {
  let stack: Stack;
  let template: Template;

  beforeAll(() => {
    // GIVEN: an existing VPC, Aurora PostgreSQL cluster and secret, known only by their identifiers
    const app = new App();
    stack = new Stack(app, 'OrdersService', { env: { account: '111122223333', region: 'eu-west-1' } });
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
      vpcId: 'vpc-0a1b2c3d4e5f60718',
      availabilityZones: ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
      privateSubnetIds: SUBNETS,
    });
    const cluster = rds.DatabaseCluster.fromDatabaseClusterAttributes(stack, 'Orders', {
      clusterIdentifier: 'orders',
      clusterEndpointAddress: 'orders.cluster-c1x2y3.eu-west-1.rds.amazonaws.com',
      port: 5432,
      engine: rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_16_8 }),
      securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'OrdersSg', 'sg-0d0d0d0d0d0d0d0d0')],
    });
    const secret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'AppSecret', SECRET_ARN);
    const api = new lambda.Function(stack, 'Api', {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('exports.handler = async () => 1;'),
      vpc,
    });

    // WHEN
    const proxy = new tidepool.DatabaseProxy(stack, 'OrdersProxy', {
      proxyTarget: tidepool.ProxyTarget.fromCluster(cluster),
      secrets: [secret],
      vpc,
      dbProxyName: 'orders',
      iamAuth: true,
      image: ecs.ContainerImage.fromRegistry('public.ecr.aws/tidepool/runtime:test'),
    });
    proxy.grantConnect(api, 'orders_app');
    template = Template.fromStack(stack);
  });

  test('renders a complete, literal config', () => {
    expect(renderedConfig(template)).toMatchObject({
      proxyName: 'orders',
      engineFamily: 'POSTGRESQL',
      // The instances come from the RDS API; the cluster endpoint, whose DNS record follows failovers, is the fallback.
      rdsTargets: { dbClusterIdentifier: 'orders', refreshInterval: 30 },
      aws: { region: 'eu-west-1' },
      targets: [{ host: 'orders.cluster-c1x2y3.eu-west-1.rds.amazonaws.com', port: 5432 }],
      auth: [{ secretArn: SECRET_ARN, iamAuth: 'REQUIRED' }],
      iam: { allowList: [{ principalArn: expect.stringMatching(/^<GetAtt:ApiServiceRole.*\.Arn>$/), dbUser: 'orders_app' }] },
    });
  });

  test("renders a config the runtime's own parser accepts", () => {
    const config = renderedConfig(template);
    // The only value left to deployment is the Lambda role's ARN; give it the shape CloudFormation resolves it to.
    expect(config.iam.allowList).toHaveLength(1);
    config.iam.allowList[0].principalArn = 'arn:aws:iam::111122223333:role/OrdersService-ApiServiceRole';
    // Every rendered field is part of the runtime's contract: nothing is dropped before parsing.
    expect(Object.keys(config).every((key) => key in configSchema.shape)).toBe(true);
    const parsed = parseConfig(config);
    expect(parsed).toMatchObject({
      admin: { host: '0.0.0.0', port: 8080 },
      metrics: { enabled: true, namespace: 'Tidepool', publishIntervalSeconds: 60 },
      iam: { allowList: [{ principalArn: 'arn:aws:iam::111122223333:role/OrdersService-ApiServiceRole', dbUser: 'orders_app' }] },
      tls: { minVersion: 'TLSv1.2' },
      targetTls: { mode: 'FOLLOW_CLIENT', verifyHostname: true },
      rdsTargets: { dbClusterIdentifier: 'orders', refreshInterval: 30 },
      aws: { region: 'eu-west-1' },
    });
  });

  test('opens the existing cluster security group to the proxy tasks on 5432', () => {
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      GroupId: 'sg-0d0d0d0d0d0d0d0d0',
      IpProtocol: 'tcp',
      FromPort: 5432,
      ToPort: 5432,
      SourceSecurityGroupId: { 'Fn::GetAtt': [Match.stringLikeRegexp('^OrdersProxyServiceSecurityGroup'), 'GroupId'] },
    });
  });

  test('places the load balancer and tasks in the existing private subnets', () => {
    template.hasResourceProperties('AWS::ElasticLoadBalancingV2::LoadBalancer', {
      Scheme: 'internal',
      Subnets: SUBNETS,
    });
    template.hasResourceProperties('AWS::ECS::Service', {
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ Subnets: SUBNETS }) },
    });
  });

  test("scopes secret reads to the existing secret and RDS reads to listing this cluster and its region's instances", () => {
    const taskPolicies = template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: Match.stringLikeRegexp('^OrdersProxyIAMRole') }] },
    });
    expect(Object.keys(taskPolicies)).toHaveLength(1);
    const rdsArn = (resource: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:rds:eu-west-1:111122223333:${resource}`]] });
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: Match.stringLikeRegexp('^OrdersProxyIAMRole') }],
      PolicyDocument: {
        Statement: [
          { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: SECRET_ARN },
          {
            Effect: 'Allow',
            Action: 'cloudwatch:PutMetricData',
            Resource: '*',
            Condition: { StringEquals: { 'cloudwatch:namespace': 'Tidepool' } },
          },
          { Effect: 'Allow', Action: 'rds:DescribeDBClusters', Resource: rdsArn('cluster:orders') },
          { Effect: 'Allow', Action: 'rds:DescribeDBInstances', Resource: rdsArn('db:*') },
        ],
      },
    });
  });
});
