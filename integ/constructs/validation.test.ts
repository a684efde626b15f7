import { CfnParameter, Duration, Token } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { DatabaseProxy, DatabaseProxyProps, EngineFamily, ProxyTarget, ProxyTlsCertificate } from '../../constructs';
import { Fixture, newFixture, TEST_IMAGE } from './support';

/**
 * Invalid props must stop synthesis with a message that names the prop and the fix. The fixture is never
 * synthesized, so every test adds its proxy under a fresh ID.
 */
describe('DatabaseProxy validation', () => {
  let fixture: Fixture;
  let counter = 0;

  beforeAll(() => {
    fixture = newFixture();
  });

  function proxyWith(props: Partial<DatabaseProxyProps>): DatabaseProxy {
    counter += 1;
    return new DatabaseProxy(fixture.stack, `Proxy${counter}`, {
      proxyTarget: ProxyTarget.fromCluster(fixture.cluster),
      secrets: [fixture.cluster.secret!],
      vpc: fixture.vpc,
      image: TEST_IMAGE,
      ...props,
    });
  }

  test('accepts the defaults (so the failures below come from the prop under test)', () => {
    expect(() => proxyWith({})).not.toThrow();
  });

  test('fails without secrets', () => {
    expect(() => proxyWith({ secrets: undefined })).toThrow(/One or more secrets are required/);
    expect(() => proxyWith({ secrets: [] })).toThrow(/One or more secrets are required/);
  });

  test('fails with more than 200 secrets', () => {
    const secrets = Array.from({ length: 201 }, (_, i) =>
      secretsmanager.Secret.fromSecretCompleteArn(
        fixture.stack,
        `Secret${i}`,
        `arn:aws:secretsmanager:us-east-1:123456789012:secret:user${i}-AbCdEf`,
      ),
    );
    expect(() => proxyWith({ secrets })).toThrow(/secrets: at most 200 secrets per proxy/);
  });

  test('fails with SQL Server authentication', () => {
    expect(() => proxyWith({ clientPasswordAuthType: rds.ClientPasswordAuthType.SQL_SERVER_AUTHENTICATION })).toThrow(
      /clientPasswordAuthType SQL_SERVER_AUTHENTICATION is not supported/,
    );
  });

  test('fails with a MySQL authentication type on a PostgreSQL target', () => {
    expect(() => proxyWith({ clientPasswordAuthType: rds.ClientPasswordAuthType.MYSQL_NATIVE_PASSWORD })).toThrow(
      /clientPasswordAuthType: MYSQL_NATIVE_PASSWORD does not apply to engine family POSTGRESQL/,
    );
  });

  test('fails with an unknown session pinning filter', () => {
    expect(() => proxyWith({ sessionPinningFilters: [rds.SessionPinningFilter.of('EXCLUDE_EVERYTHING')] })).toThrow(
      /sessionPinningFilters: 'EXCLUDE_EVERYTHING' is not supported/,
    );
  });

  test('fails when maxConnectionsPercent is outside 1-100', () => {
    expect(() => proxyWith({ maxConnectionsPercent: 0 })).toThrow(/maxConnectionsPercent must be between 1 and 100, got 0/);
    expect(() => proxyWith({ maxConnectionsPercent: 101 })).toThrow(/maxConnectionsPercent must be between 1 and 100, got 101/);
    expect(() => proxyWith({ maxConnectionsPercent: 50.5 })).toThrow(/maxConnectionsPercent must be a whole number/);
  });

  test('fails when maxConnectionsPercent leaves less than 1% per task', () => {
    expect(() => proxyWith({ maxConnectionsPercent: 3, maxCapacity: 4 })).toThrow(
      /maxConnectionsPercent \(3\) divided among maxCapacity \(4\) tasks leaves less than 1% per task/,
    );
  });

  test('fails when maxIdleConnectionsPercent exceeds maxConnectionsPercent', () => {
    expect(() => proxyWith({ maxConnectionsPercent: 40, maxIdleConnectionsPercent: 41 })).toThrow(
      /maxIdleConnectionsPercent must be between 0 and maxConnectionsPercent \(40\), got 41/,
    );
  });

  test('fails when borrowTimeout is zero, naming the prop and the rendered value', () => {
    expect(() => proxyWith({ borrowTimeout: Duration.seconds(0) })).toThrow(
      /borrowTimeout: .*>=1.*connectionPoolConfig\.connectionBorrowTimeout = 0/,
    );
  });

  test('fails when a duration is not a whole number of seconds', () => {
    expect(() => proxyWith({ borrowTimeout: Duration.millis(1500) })).toThrow(/borrowTimeout must be a whole number of seconds/);
  });

  test('fails when idleClientTimeout exceeds 8 hours', () => {
    expect(() => proxyWith({ idleClientTimeout: Duration.hours(9) })).toThrow(/idleClientTimeout: .*28800/);
  });

  test('fails when dbProxyName is not a valid name', () => {
    expect(() => proxyWith({ dbProxyName: 'orders_proxy' })).toThrow(/dbProxyName: must start with a letter/);
  });

  test('fails when the subnets are in one Availability Zone', () => {
    expect(() => proxyWith({ vpcSubnets: { subnets: [fixture.vpc.privateSubnets[0]] } })).toThrow(
      /vpcSubnets must span at least two Availability Zones/,
    );
  });

  test('fails when vpcSubnets selects public subnets', () => {
    expect(() => proxyWith({ vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC } })).toThrow(/vpcSubnets selects public subnets/);
  });

  test('fails when the task counts contradict each other', () => {
    expect(() => proxyWith({ minCapacity: 0 })).toThrow(/minCapacity must be at least 1/);
    expect(() => proxyWith({ minCapacity: 3, maxCapacity: 2 })).toThrow(/maxCapacity \(2\) must be at least minCapacity \(3\)/);
    expect(() => proxyWith({ desiredCount: 5 })).toThrow(/desiredCount \(5\) must be between minCapacity \(2\) and maxCapacity \(4\)/);
    expect(() => proxyWith({ cpuTargetUtilizationPercent: 0 })).toThrow(/cpuTargetUtilizationPercent must be between 1 and 100/);
  });

  test('fails when drainTimeout exceeds what Fargate allows', () => {
    expect(() => proxyWith({ drainTimeout: Duration.minutes(2) })).toThrow(/drainTimeout must be between 1 and 110 seconds/);
  });

  test('fails when a prop the runtime config needs is a token', () => {
    const parameter = new CfnParameter(fixture.stack, 'Percent', { type: 'Number' });
    expect(() => proxyWith({ maxConnectionsPercent: Token.asNumber(parameter.valueAsNumber) })).toThrow(
      /maxConnectionsPercent must be a number known at synthesis/,
    );
  });

  test("fails when metricsNamespace is in CloudWatch's reserved AWS/ space", () => {
    expect(() => proxyWith({ metricsNamespace: 'AWS/RDS' })).toThrow(/metricsNamespace must .*not start with 'AWS\/'/);
  });

  test('fails when metricsNamespace is longer than CloudWatch allows, naming the prop', () => {
    expect(() => proxyWith({ metricsNamespace: 'N'.repeat(256) })).toThrow(/metricsNamespace: .*255.*metrics\.namespace = "N{256}"/);
  });

  test('fails when the TLS certificate secret is not a Secrets Manager secret, naming the prop', () => {
    const certificate = secretsmanager.Secret.fromSecretCompleteArn(
      fixture.stack,
      'NotASecret',
      'arn:aws:ssm:us-east-1:123456789012:parameter/tidepool-certificate-AbCdEf',
    );
    expect(() => proxyWith({ tlsCertificate: ProxyTlsCertificate.fromSecret(certificate) })).toThrow(
      /tlsCertificate: must be a Secrets Manager secret ARN \(rendered as tls\.secretArn = "arn:aws:ssm:/,
    );
  });

  test('fails for a SQL Server target', () => {
    const instance = new rds.DatabaseInstance(fixture.stack, 'SqlServer', {
      engine: rds.DatabaseInstanceEngine.sqlServerEx({ version: rds.SqlServerEngineVersion.VER_16 }),
      vpc: fixture.vpc,
    });
    expect(() => proxyWith({ proxyTarget: ProxyTarget.fromInstance(instance) })).toThrow(
      /Tidepool serves PostgreSQL and MySQL-family databases; .*engine family SQLSERVER/,
    );
  });

  test('fails for an imported cluster without an engine', () => {
    const cluster = rds.DatabaseCluster.fromDatabaseClusterAttributes(fixture.stack, 'NoEngine', {
      clusterIdentifier: 'orders',
      clusterEndpointAddress: 'orders.cluster-abc.us-east-1.rds.amazonaws.com',
      port: 5432,
    });
    expect(() => proxyWith({ proxyTarget: ProxyTarget.fromCluster(cluster) })).toThrow(
      /Could not determine the engine of proxy target .*Pass `engine` when importing/,
    );
  });

  test('fails for self-managed endpoints without any endpoint', () => {
    expect(() => proxyWith({ proxyTarget: ProxyTarget.fromEndpoints({ engineFamily: EngineFamily.POSTGRESQL, endpoints: [] }) })).toThrow(
      /fromEndpoints\(\) needs at least one endpoint/,
    );
  });

  test('fails synthesis when grantConnect() allows a principal that is not an IAM role or user, naming grantConnect()', () => {
    // Grants are checked when the app synthesizes, so this proxy gets an app of its own.
    const own = newFixture();
    const proxy = new DatabaseProxy(own.stack, 'Proxy', {
      proxyTarget: ProxyTarget.fromCluster(own.cluster),
      secrets: [own.cluster.secret!],
      vpc: own.vpc,
      image: TEST_IMAGE,
      iamAuth: true,
    });
    proxy.grantConnect(new iam.ArnPrincipal('arn:aws:iam::aws:policy/ReadOnlyAccess'), 'app');
    expect(() => own.app.synth()).toThrow(
      /grantConnect\(\): must be an IAM role or user ARN \(rendered as iam\.allowList\.0\.principalArn = "arn:aws:iam::aws:policy\/ReadOnlyAccess"\)/,
    );
  });

  test('fails grantConnect with an empty database user', () => {
    const proxy = proxyWith({ iamAuth: true });
    expect(() => proxy.grantConnect(new iam.ArnPrincipal('arn:aws:iam::123456789012:role/app'), '')).toThrow(/needs a non-empty dbUser/);
  });
});
