#!/usr/bin/env node
/**
 * Sample app: a VPC, an Aurora cluster and a Tidepool proxy in front of it.
 *
 *   npm run build && npx cdk deploy                 # Aurora PostgreSQL
 *   npm run build && npx cdk deploy -c engine=mysql # Aurora MySQL
 */
import { App, CfnOutput, Stack, StackProps, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as rds from 'aws-cdk-lib/aws-rds';
import { Construct } from 'constructs';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { DatabaseProxy, DefaultAlarms, ProxyTarget } from '../constructs';

export type SampleEngine = 'postgres' | 'mysql';
const ENGINES: readonly SampleEngine[] = ['postgres', 'mysql'];

export interface TidepoolSampleStackProps extends StackProps {
  readonly engine: SampleEngine;
}

export class TidepoolSampleStack extends Stack {
  public readonly vpc: ec2.Vpc;
  public readonly database: rds.DatabaseCluster;
  public readonly proxy: DatabaseProxy;
  public readonly alarms: DefaultAlarms;
  public readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: TidepoolSampleStackProps) {
    super(scope, id, props);

    // One NAT gateway: the tasks reach Secrets Manager, CloudWatch and ECR through it. Use one per AZ
    // (or VPC endpoints) in production, or an AZ outage also cuts the proxy off from AWS APIs.
    this.vpc = new ec2.Vpc(this, 'Vpc', { maxAzs: 2, natGateways: 1 });

    const mysql = props.engine === 'mysql';
    this.database = new rds.DatabaseCluster(this, 'Database', {
      engine: mysql
        ? rds.DatabaseClusterEngine.auroraMysql({ version: rds.AuroraMysqlEngineVersion.VER_3_08_2 })
        : rds.DatabaseClusterEngine.auroraPostgres({ version: rds.AuroraPostgresEngineVersion.VER_16_8 }),
      credentials: rds.Credentials.fromGeneratedSecret(mysql ? 'admin' : 'postgres'),
      writer: rds.ClusterInstance.serverlessV2('Writer'),
      // A reader in the other AZ gives the proxy a failover to ride through.
      readers: [rds.ClusterInstance.serverlessV2('Reader', { scaleWithWriter: true })],
      serverlessV2MinCapacity: 0.5,
      serverlessV2MaxCapacity: 4,
      vpc: this.vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      storageEncrypted: true,
      iamAuthentication: true,
    });

    this.proxy = new DatabaseProxy(this, 'Proxy', {
      proxyTarget: ProxyTarget.fromCluster(this.database),
      secrets: [this.database.secret!],
      vpc: this.vpc,
    });
    // Anything in the VPC may connect; narrow this to your clients' security groups.
    this.proxy.connections.allowDefaultPortFrom(ec2.Peer.ipv4(this.vpc.vpcCidrBlock), 'Clients in the VPC');
    // Writer unavailable, borrow timeouts, pinning. Pass `alarmActions: [new SnsAction(topic)]` to be paged.
    this.alarms = this.proxy.addDefaultAlarms();
    this.dashboard = this.proxy.addDashboard('Dashboard');

    new CfnOutput(this, 'ProxyEndpoint', { value: this.proxy.endpoint });
    new CfnOutput(this, 'ProxyPort', { value: String(this.proxy.port) });
    new CfnOutput(this, 'DatabaseSecretArn', {
      value: this.database.secret!.secretArn,
      description: 'Username and password to log in through the proxy',
    });

    acknowledgeSampleFindings(this);
  }
}

/** Choices that suit a sample you deploy and destroy, with why; revisit them before production use. */
function acknowledgeSampleFindings(stack: TidepoolSampleStack): void {
  Validations.of(stack.vpc).acknowledge({
    id: 'AwsSolutions-VPC7',
    reason: 'Sample VPC; flow logs are billed per GB. Enable them in production.',
  });
  Validations.of(stack.proxy.connections.securityGroups[0]).acknowledge({
    id: 'AwsSolutions-EC23',
    reason: "The only inbound rule admits the VPC's own CIDR block, which the check cannot read because it is resolved at deploy time.",
  });
  Validations.of(stack.database).acknowledge(
    {
      id: 'AwsSolutions-SMG4',
      reason: 'Single-user rotation briefly fails new proxy logins while it swaps the password; set up multi-user rotation in production.',
    },
    {
      id: 'AwsSolutions-RDS10',
      reason: 'The sample is meant to be destroyed; the cluster keeps its default SNAPSHOT removal policy instead.',
    },
    {
      id: 'AwsSolutions-RDS11',
      reason: 'Only the proxy tasks can reach the database port, and RDS Proxy users expect the standard port.',
    },
    {
      id: 'AwsSolutions-RDS14',
      reason: 'Backtrack (Aurora MySQL only) is billed per change record; the sample relies on snapshots.',
    },
  );
}

/** Builds the sample stack for the engine named by the `engine` context value (`postgres` by default). */
export function buildSampleApp(app: App): TidepoolSampleStack {
  const engine: unknown = app.node.tryGetContext('engine') ?? 'postgres';
  if (!ENGINES.includes(engine as SampleEngine)) {
    throw new Error(`unknown engine '${String(engine)}': pass -c engine=postgres or -c engine=mysql`);
  }
  const sampleEngine = engine as SampleEngine;
  return new TidepoolSampleStack(app, sampleEngine === 'mysql' ? 'TidepoolSampleMysql' : 'TidepoolSamplePostgres', {
    engine: sampleEngine,
    description: `Tidepool sample: Aurora ${sampleEngine === 'mysql' ? 'MySQL' : 'PostgreSQL'} behind a Tidepool proxy`,
  });
}

if (require.main === module) {
  buildSampleApp(new App());
}
