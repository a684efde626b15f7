/**
 * The config fields the runtime contract gained (tls.minVersion, targetTls, rdsTargets, aws.region) as
 * the construct renders them, checked against the runtime's own parser.
 */
import * as fs from 'fs';
import * as path from 'path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import {
  DatabaseProxy,
  DatabaseProxyProps,
  ProxyTarget,
  RDS_GLOBAL_BUNDLE_PATH,
  TargetCertificateAuthority,
  TargetTlsMode,
  TlsVersion,
} from '../../constructs';
import { parseConfig } from '../../runtime/config/schema';
import { awsSolutionsFindings, renderedConfig, TEST_IMAGE } from './support';

const REGION = 'eu-west-1';
const ACCOUNT = '111122223333';
const SECRET_ARN = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:orders/app-AbCdEf`;
const DATABASE_SG = 'sg-0d0d0d0d0d0d0d0d0';

interface Existing {
  readonly stack: Stack;
  readonly vpc: ec2.IVpc;
  readonly secret: secretsmanager.ISecret;
  readonly cluster: rds.IDatabaseCluster;
  readonly instance: rds.IDatabaseInstance;
}

/** Resources known only by identifiers, so every rendered value is a literal the parser can check. */
function existing(): Existing {
  const stack = new Stack(new App(), 'Orders', { env: { account: ACCOUNT, region: REGION } });
  const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: 'vpc-0a1b2c3d4e5f60718',
    availabilityZones: [`${REGION}a`, `${REGION}b`],
    privateSubnetIds: ['subnet-0aaa1111aaaa1111a', 'subnet-0bbb2222bbbb2222b'],
  });
  const securityGroups = [ec2.SecurityGroup.fromSecurityGroupId(stack, 'DatabaseSg', DATABASE_SG)];
  const cluster = rds.DatabaseCluster.fromDatabaseClusterAttributes(stack, 'Cluster', {
    clusterIdentifier: 'orders',
    clusterEndpointAddress: `orders.cluster-c1x2y3.${REGION}.rds.amazonaws.com`,
    instanceEndpointAddresses: [`orders-1.c1x2y3.${REGION}.rds.amazonaws.com`],
    port: 5432,
    engine: rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_16_8 }),
    securityGroups,
  });
  const instance = rds.DatabaseInstance.fromDatabaseInstanceAttributes(stack, 'Instance', {
    instanceIdentifier: 'billing',
    instanceEndpointAddress: `billing.c1x2y3.${REGION}.rds.amazonaws.com`,
    port: 3306,
    engine: rds.DatabaseInstanceEngine.mariaDb({ version: rds.MariaDbEngineVersion.VER_10_11 }),
    securityGroups,
  });
  const secret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Secret', SECRET_ARN);
  return { stack, vpc, secret, cluster, instance };
}

function proxyIn(resources: Existing, props: Partial<DatabaseProxyProps>): { proxy: DatabaseProxy; template: Template; config: Record<string, any> } {
  const proxy = new DatabaseProxy(resources.stack, 'Proxy', {
    proxyTarget: ProxyTarget.fromCluster(resources.cluster),
    secrets: [resources.secret],
    vpc: resources.vpc,
    dbProxyName: 'orders',
    image: TEST_IMAGE,
    ...props,
  });
  const template = Template.fromStack(resources.stack);
  return { proxy, template, config: renderedConfig(template) };
}

function taskPolicyStatements(template: Template): unknown[] {
  const policies = Object.values(template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: 'ProxyIAMRole2FE8AB0F' }] } }));
  expect(policies).toHaveLength(1);
  return policies[0].Properties.PolicyDocument.Statement;
}

const rdsArn = (resource: string) => ({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:rds:${REGION}:${ACCOUNT}:${resource}`]] });

describe('TLS fields', () => {
  test('minimumTlsVersion, targetTlsMode and the RDS CA bundle reach tls and targetTls, and the runtime accepts them', () => {
    const { config } = proxyIn(existing(), {
      minimumTlsVersion: TlsVersion.TLS_V1_3,
      targetTlsMode: TargetTlsMode.REQUIRED,
      targetCertificateAuthority: TargetCertificateAuthority.rdsGlobalBundle(),
    });
    expect(config.tls).toEqual({ minVersion: 'TLSv1.3' });
    expect(config.targetTls).toEqual({ mode: 'REQUIRED', caFile: '/etc/tidepool/rds-global-bundle.pem', verifyHostname: true });
    const parsed = parseConfig(config);
    expect(parsed.tls.minVersion).toBe('TLSv1.3');
    expect(parsed.targetTls).toEqual({ mode: 'REQUIRED', caFile: '/etc/tidepool/rds-global-bundle.pem', verifyHostname: true });
  });

  test('a CA file of a custom image, without host name checks, for self-managed servers', () => {
    const { config } = proxyIn(existing(), {
      minimumTlsVersion: TlsVersion.TLS_V1,
      targetCertificateAuthority: TargetCertificateAuthority.fromFile('/etc/tidepool/corp-ca.pem'),
      verifyTargetHostname: false,
    });
    expect(config.tls).toEqual({ minVersion: 'TLSv1' });
    expect(config.targetTls).toEqual({ mode: 'FOLLOW_CLIENT', caFile: '/etc/tidepool/corp-ca.pem', verifyHostname: false });
    expect(parseConfig(config).targetTls.verifyHostname).toBe(false);
  });

  test('targetTlsMode DISABLED renders plaintext to the database', () => {
    const { config } = proxyIn(existing(), { targetTlsMode: TargetTlsMode.DISABLED });
    expect(config.targetTls).toEqual({ mode: 'DISABLED' });
    expect(parseConfig(config).targetTls.mode).toBe('DISABLED');
  });

  test('a CA with TLS to the database disabled is a contradiction', () => {
    expect(() =>
      proxyIn(existing(), { targetTlsMode: TargetTlsMode.DISABLED, targetCertificateAuthority: TargetCertificateAuthority.rdsGlobalBundle() }),
    ).toThrow(/targetCertificateAuthority needs TLS to the database, but targetTlsMode is DISABLED/);
  });

  test('verifyTargetHostname without a CA would silently do nothing, so it fails', () => {
    expect(() => proxyIn(existing(), { verifyTargetHostname: true })).toThrow(/verifyTargetHostname applies only .* pass targetCertificateAuthority/);
  });

  test('a relative CA path fails, naming the prop', () => {
    // The container gets its config from an environment variable, so a relative path would have nothing to be relative to.
    expect(() => proxyIn(existing(), { targetCertificateAuthority: TargetCertificateAuthority.fromFile('certs/ca.pem') })).toThrow(
      /targetCertificateAuthority must be an absolute path inside the container, got 'certs\/ca.pem'/,
    );
  });

  test('the default image ships the RDS bundle where rdsGlobalBundle() points, readable by the unprivileged user', () => {
    const dockerfile = fs.readFileSync(path.resolve(__dirname, '../../constructs/image/Dockerfile'), 'utf8');
    expect(dockerfile).toContain(`ADD https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem ${RDS_GLOBAL_BUNDLE_PATH}`);
    expect(dockerfile).toContain(`RUN chmod 0644 ${RDS_GLOBAL_BUNDLE_PATH}`);
    expect(dockerfile.indexOf('RUN chmod')).toBeLessThan(dockerfile.indexOf('USER node'));
  });
});

describe('RDS instance discovery', () => {
  test('fromCluster lists the cluster through the RDS API, keeps the cluster endpoint as fallback, and grants exactly the two reads', () => {
    const resources = existing();
    const { config, template } = proxyIn(resources, {
      proxyTarget: ProxyTarget.fromCluster(resources.cluster, { refreshInterval: Duration.minutes(1) }),
    });
    expect(config.rdsTargets).toEqual({ dbClusterIdentifier: 'orders', refreshInterval: 60 });
    expect(config.aws).toEqual({ region: REGION });
    // The instance endpoint given at import is not rendered: the listing supersedes it.
    expect(config.targets).toEqual([{ host: `orders.cluster-c1x2y3.${REGION}.rds.amazonaws.com`, port: 5432 }]);
    expect(parseConfig(config).rdsTargets).toEqual({ dbClusterIdentifier: 'orders', refreshInterval: 60 });
    expect(taskPolicyStatements(template).slice(2)).toEqual([
      { Effect: 'Allow', Action: 'rds:DescribeDBClusters', Resource: rdsArn('cluster:orders') },
      { Effect: 'Allow', Action: 'rds:DescribeDBInstances', Resource: rdsArn('db:*') },
    ]);
    // The db:* grant is acknowledged with a reason, and exactly that finding: nothing else is left.
    expect(awsSolutionsFindings(resources.stack)).toEqual([]);
  });

  test('fromCluster without discovery renders static endpoints only and grants no RDS API access', () => {
    const resources = existing();
    const { config, template } = proxyIn(resources, {
      proxyTarget: ProxyTarget.fromCluster(resources.cluster, { discoverInstances: false }),
    });
    expect(config.rdsTargets).toBeUndefined();
    expect(config.aws).toBeUndefined();
    expect(config.targets).toEqual([
      { host: `orders.cluster-c1x2y3.${REGION}.rds.amazonaws.com`, port: 5432 },
      { host: `orders-1.c1x2y3.${REGION}.rds.amazonaws.com`, port: 5432 },
    ]);
    expect(JSON.stringify(taskPolicyStatements(template))).not.toContain('rds:');
  });

  test('fromInstance discovers nothing by default', () => {
    const resources = existing();
    const { config, template } = proxyIn(resources, { proxyTarget: ProxyTarget.fromInstance(resources.instance) });
    expect(config.rdsTargets).toBeUndefined();
    expect(config.targets).toEqual([{ host: `billing.c1x2y3.${REGION}.rds.amazonaws.com`, port: 3306 }]);
    expect(JSON.stringify(taskPolicyStatements(template))).not.toContain('rds:');
  });

  test('fromInstance with discovery lists that instance, keeping its endpoint as the static target', () => {
    const resources = existing();
    const { config, template } = proxyIn(resources, {
      proxyTarget: ProxyTarget.fromInstance(resources.instance, { discoverInstances: true }),
    });
    expect(config.engineFamily).toBe('MYSQL');
    expect(config.rdsTargets).toEqual({ dbInstanceIdentifiers: ['billing'], refreshInterval: 30 });
    expect(config.aws).toEqual({ region: REGION });
    expect(config.targets).toEqual([{ host: `billing.c1x2y3.${REGION}.rds.amazonaws.com`, port: 3306 }]);
    expect(parseConfig(config).rdsTargets).toEqual({ dbInstanceIdentifiers: ['billing'], refreshInterval: 30 });
    // The runtime lists with a db-instance-id filter, which RDS authorizes against db:* (acknowledged for cdk-nag).
    expect(taskPolicyStatements(template).slice(2)).toEqual([{ Effect: 'Allow', Action: 'rds:DescribeDBInstances', Resource: rdsArn('db:*') }]);
    expect(awsSolutionsFindings(resources.stack)).toEqual([]);
  });

  test.each([
    [Duration.millis(1500), /refreshInterval must be a whole number of seconds from 1 to 3600, got 1 second 500 millis/],
    [Duration.hours(2), /refreshInterval must be a whole number of seconds from 1 to 3600, got 2 hours/],
  ])('fromCluster rejects refreshInterval %s', (refreshInterval, message) => {
    const resources = existing();
    expect(() => proxyIn(resources, { proxyTarget: ProxyTarget.fromCluster(resources.cluster, { refreshInterval }) })).toThrow(message);
  });
});
