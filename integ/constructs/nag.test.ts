import { App, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DatabaseProxy, EngineFamily, ProxyTarget } from '../../constructs';
import { acknowledgements, awsSolutionsFindings, TEST_IMAGE } from './support';

describe('cdk-nag AwsSolutions checks', () => {
  test('a proxy in front of existing resources leaves no finding, and every acknowledgement has a reason', () => {
    // GIVEN: only the proxy's own resources are in the stack
    const stack = new Stack(new App(), 'NagStack', { env: { account: '123456789012', region: 'us-east-1' } });
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
      vpcId: 'vpc-0a1b2c3d4e5f60718',
      availabilityZones: ['us-east-1a', 'us-east-1b'],
      privateSubnetIds: ['subnet-0aaa1111aaaa1111a', 'subnet-0bbb2222bbbb2222b'],
    });
    const cluster = rds.DatabaseCluster.fromDatabaseClusterAttributes(stack, 'Database', {
      clusterIdentifier: 'orders',
      clusterEndpointAddress: 'orders.cluster-abc.us-east-1.rds.amazonaws.com',
      port: 5432,
      engine: rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_16_8 }),
      securityGroups: [ec2.SecurityGroup.fromSecurityGroupId(stack, 'DatabaseSg', 'sg-0db0db0db0db0db0d')],
    });
    const secret = secretsmanager.Secret.fromSecretCompleteArn(
      stack,
      'Secret',
      'arn:aws:secretsmanager:us-east-1:123456789012:secret:orders-AbCdEf',
    );
    // WHEN
    const proxy = new DatabaseProxy(stack, 'Proxy', { proxyTarget: ProxyTarget.fromCluster(cluster), secrets: [secret], vpc, image: TEST_IMAGE });
    proxy.connections.allowDefaultPortFrom(ec2.Peer.ipv4('10.0.0.0/16'));
    // THEN
    expect(awsSolutionsFindings(stack)).toEqual([]);
    const acks = acknowledgements(stack);
    expect(acks.map((ack) => ack.id).sort()).toEqual([
      'AwsSolutions-ECS2',
      'AwsSolutions-ECS4',
      'AwsSolutions-ELB2',
      'AwsSolutions-IAM5[Resource::*]',
      // Instance discovery: DescribeDBInstances cannot be scoped to one cluster's instances.
      'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:rds:us-east-1:123456789012:db:*]',
    ]);
    for (const ack of acks) expect(ack.reason.length).toBeGreaterThan(40);
  });

  test('a proxy opened to the whole internet is flagged, so the check above can fail', () => {
    const stack = new Stack(new App(), 'NagStack');
    const vpc = new ec2.Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 1 });
    Validations.of(vpc).acknowledge({ id: 'AwsSolutions-VPC7', reason: 'Not under test here: only the proxy is.' });
    const proxy = new DatabaseProxy(stack, 'Proxy', {
      proxyTarget: ProxyTarget.fromEndpoints({ engineFamily: EngineFamily.POSTGRESQL, endpoints: [new rds.Endpoint('db.internal', 5432)] }),
      secrets: [secretsmanager.Secret.fromSecretNameV2(stack, 'Secret', 'orders')],
      vpc,
      image: TEST_IMAGE,
    });
    proxy.connections.allowDefaultPortFrom(ec2.Peer.anyIpv4());
    // CDK's built-in template check flags the same rule; it is the point of this test, so keep the log quiet.
    Validations.of(proxy).acknowledge({ id: 'CloudFormation-Validate::W2508', reason: 'Deliberately open, to prove cdk-nag reports it.' });
    expect(awsSolutionsFindings(stack)).toEqual(['AwsSolutions-EC23 at NagStack/Proxy/ProxySecurityGroup/Resource']);
  });
});
