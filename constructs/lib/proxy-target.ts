import { Arn, ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as rds from 'aws-cdk-lib/aws-rds';
import { IConstruct } from 'constructs';
import { TidepoolValidationError } from './private/errors';

/**
 * The wire protocol a proxy speaks, as RDS Proxy's engine families name them.
 */
export enum EngineFamily {
  /** PostgreSQL and Aurora PostgreSQL. */
  POSTGRESQL = 'POSTGRESQL',
  /** MySQL, MariaDB and Aurora MySQL. */
  MYSQL = 'MYSQL',
}

/**
 * What a target tells the proxy when it binds.
 */
export interface ProxyTargetConfig {
  /** The protocol the target's engine speaks. */
  readonly engineFamily: EngineFamily;
  /**
   * Where the proxy connects, in the order rendered into the runtime config's `targets`. The runtime serves
   * the writer among them: both engines probe each one over SQL (PostgreSQL `pg_is_in_recovery()`, MySQL
   * `@@read_only` / `@@innodb_read_only`) and follow the one that is writable.
   */
  readonly endpoints: rds.Endpoint[];
  /**
   * The database side's security groups, opened to the proxy tasks on each endpoint's port.
   *
   * @default - the tasks may reach the endpoints' ports on any IPv4 address and the database side is left alone
   */
  readonly connections?: ec2.IConnectable;
  /**
   * Permissions the runtime needs to use the target, added to the task role.
   *
   * @default - none
   */
  readonly policyStatements?: iam.PolicyStatement[];
  /**
   * Database instances the runtime lists through the RDS API (the runtime config's `rdsTargets`), in
   * addition to `endpoints`.
   *
   * @default - no RDS API discovery
   */
  readonly rdsDiscovery?: RdsDiscoveryConfig;
}

/**
 * What the runtime lists through the RDS API, and where.
 */
export interface RdsDiscoveryConfig {
  /**
   * The DB cluster whose member instances are listed.
   *
   * @default - no cluster
   */
  readonly dbClusterIdentifier?: string;
  /**
   * DB instances listed directly.
   *
   * @default - no instances
   */
  readonly dbInstanceIdentifiers?: string[];
  /** The region of the RDS API to call. */
  readonly region: string;
  /** Seconds between listings. */
  readonly refreshIntervalSeconds: number;
  /**
   * cdk-nag findings the discovery permissions cause, with why they are acceptable.
   *
   * @default - none
   */
  readonly acknowledgements?: Array<{ readonly id: string; readonly reason: string }>;
}

/**
 * How the proxy finds an Aurora cluster's instances.
 */
export interface ClusterProxyTargetOptions {
  /**
   * Whether the runtime lists the cluster's instances through the RDS API (`DescribeDBClusters`, then
   * `DescribeDBInstances`), as RDS Proxy does. It then notices instances added or removed outside the CDK app
   * (Aurora Auto Scaling replicas, a replaced writer) and instances that are rebooting or failing over, and
   * probes the instance the cluster reports as the writer first. The task role may call those two APIs, and
   * the tasks need a route to the RDS API (NAT or an `rds` interface VPC endpoint).
   *
   * When false, the instance endpoints known at synthesis are rendered as static targets instead, and the
   * task role gets no RDS permission.
   *
   * @default true
   */
  readonly discoverInstances?: boolean;

  /**
   * How often the runtime lists the cluster's instances again.
   *
   * @default Duration.seconds(30)
   */
  readonly refreshInterval?: Duration;
}

/**
 * How the proxy follows an RDS instance.
 */
export interface InstanceProxyTargetOptions {
  /**
   * Whether the runtime also describes the instance through the RDS API (`DescribeDBInstances`), so that
   * it treats the instance as unavailable while RDS reports it rebooting, modifying or failing over. The
   * endpoint itself never changes (a Multi-AZ failover moves its DNS record), so the static endpoint is
   * rendered either way and keeps serving if the RDS API cannot be reached. The task role may then call
   * `rds:DescribeDBInstances` on the account's instances in the instance's region: the runtime lists with a
   * filter, which RDS authorizes against `db:*` only.
   *
   * @default false
   */
  readonly discoverInstances?: boolean;

  /**
   * How often the runtime describes the instance again.
   *
   * @default Duration.seconds(30)
   */
  readonly refreshInterval?: Duration;
}

/**
 * Properties of a target made of self-managed database servers.
 */
export interface EndpointsProxyTargetProps {
  /** The protocol the servers speak. */
  readonly engineFamily: EngineFamily;
  /** The servers' host names (or IP addresses) and ports. At least one. */
  readonly endpoints: rds.Endpoint[];
  /**
   * The servers' security groups, opened to the proxy tasks on each endpoint's port.
   *
   * @default - the tasks may reach the endpoints' ports on any IPv4 address; allow the proxy's
   * `serviceSecurityGroup` on the database side yourself
   */
  readonly connections?: ec2.IConnectable;
}

/**
 * The database a proxy serves: an RDS instance, an Aurora cluster, or self-managed servers
 * (which RDS Proxy cannot serve).
 */
export abstract class ProxyTarget {
  /**
   * An RDS for PostgreSQL, MySQL or MariaDB instance. Its endpoint is rendered as the static target; with
   * `discoverInstances` the runtime also follows the instance's status through the RDS API.
   */
  public static fromInstance(instance: rds.IDatabaseInstance, options: InstanceProxyTargetOptions = {}): ProxyTarget {
    return new InstanceTarget(instance, options);
  }

  /**
   * An Aurora PostgreSQL or Aurora MySQL cluster; the proxy serves its writer.
   *
   * By default (`discoverInstances`), the runtime lists the cluster's instances through the RDS API, as RDS
   * Proxy does, and probes each one for writability (the API's writer flag is only a hint: an instance is
   * used as the writer once it accepts writes). The rendered config then holds:
   *
   * - `rdsTargets.dbClusterIdentifier` (and `aws.region`, the cluster's region), and
   * - the cluster (writer) endpoint as the one static target: its DNS record follows failovers, so the proxy
   *   still finds the writer when the RDS API cannot be reached. Instance endpoints known at synthesis are
   *   not rendered, because the listing supersedes them (and, unlike a static list, forgets deleted ones).
   *
   * The task role may call `rds:DescribeDBClusters` on this cluster and `rds:DescribeDBInstances` on the
   * account's instances in the cluster's region: the runtime lists the members with a filter, which RDS
   * authorizes against `db:*` only, and the cluster's instances are not all known at synthesis (Aurora Auto
   * Scaling names its replicas itself).
   *
   * With `discoverInstances: false`, the rendered targets are the cluster endpoint first, then each instance
   * endpoint known at synthesis (a `DatabaseCluster` defined in the app, or one imported with
   * `instanceEndpointAddresses`), and the task role gets no RDS permission. The runtime probes them all, so
   * it finds a promoted instance as soon as it accepts writes, without waiting for the DNS record.
   */
  public static fromCluster(cluster: rds.IDatabaseCluster, options: ClusterProxyTargetOptions = {}): ProxyTarget {
    return new ClusterTarget(cluster, options);
  }

  /** Self-managed PostgreSQL or MySQL servers, for example on EC2 or on premises. */
  public static fromEndpoints(props: EndpointsProxyTargetProps): ProxyTarget {
    return new EndpointsTarget(props);
  }

  /** Called by the proxy; returns what it needs to render its config, permissions and security group rules. */
  public abstract bind(proxy: IConstruct): ProxyTargetConfig;
}

class InstanceTarget extends ProxyTarget {
  constructor(
    private readonly instance: rds.IDatabaseInstance,
    private readonly options: InstanceProxyTargetOptions,
  ) {
    super();
  }

  public bind(proxy: IConstruct): ProxyTargetConfig {
    const base = {
      engineFamily: engineFamilyOf(proxy, this.instance, this.instance.engine),
      endpoints: [this.instance.instanceEndpoint],
      connections: this.instance,
    };
    if (!(this.options.discoverInstances ?? false)) return base;
    const instances = instanceListing(this.instance);
    return {
      ...base,
      policyStatements: [instances.statement],
      rdsDiscovery: {
        dbInstanceIdentifiers: [this.instance.instanceIdentifier],
        region: this.instance.env.region,
        refreshIntervalSeconds: refreshIntervalSeconds(proxy, this.options.refreshInterval),
        acknowledgements: [instances.acknowledgement],
      },
    };
  }
}

class ClusterTarget extends ProxyTarget {
  constructor(
    private readonly cluster: rds.IDatabaseCluster,
    private readonly options: ClusterProxyTargetOptions,
  ) {
    super();
  }

  public bind(proxy: IConstruct): ProxyTargetConfig {
    const engineFamily = engineFamilyOf(proxy, this.cluster, this.cluster.engine);
    if (!(this.options.discoverInstances ?? true)) {
      return {
        engineFamily,
        endpoints: [this.cluster.clusterEndpoint, ...knownInstanceEndpoints(this.cluster)],
        connections: this.cluster,
      };
    }
    const instances = instanceListing(this.cluster);
    return {
      engineFamily,
      endpoints: [this.cluster.clusterEndpoint],
      connections: this.cluster,
      policyStatements: [
        new iam.PolicyStatement({ actions: ['rds:DescribeDBClusters'], resources: [this.cluster.clusterArn] }),
        instances.statement,
      ],
      rdsDiscovery: {
        dbClusterIdentifier: this.cluster.clusterIdentifier,
        region: this.cluster.env.region,
        refreshIntervalSeconds: refreshIntervalSeconds(proxy, this.options.refreshInterval),
        acknowledgements: [instances.acknowledgement],
      },
    };
  }
}

/**
 * `rds:DescribeDBInstances` on every instance of the database's account and region. The runtime lists
 * instances with a `db-instance-id` filter (so an instance deleted since the last listing is simply absent
 * rather than failing the call), and RDS authorizes a call without `DBInstanceIdentifier` against
 * `db:*`; the cluster's instances are not all known at synthesis either (Aurora Auto Scaling names its
 * replicas itself).
 */
function instanceListing(database: rds.IDatabaseCluster | rds.IDatabaseInstance): {
  statement: iam.PolicyStatement;
  acknowledgement: { id: string; reason: string };
} {
  const { region, account } = database.env;
  const databaseStack = Stack.of(database);
  const instancesInRegion = Arn.format(
    { service: 'rds', resource: 'db', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME, region, account },
    databaseStack,
  );
  return {
    statement: new iam.PolicyStatement({ actions: ['rds:DescribeDBInstances'], resources: [instancesInRegion] }),
    acknowledgement: {
      id: `AwsSolutions-IAM5[Resource::${nagResourceName(databaseStack.resolve(instancesInRegion))}]`,
      reason:
        'The runtime lists instances with a db-instance-id filter, which RDS authorizes against db:* only, and a cluster gains ' +
        'instances the app does not name (Aurora Auto Scaling); the grant is read-only and limited to one account and region.',
    },
  };
}

const DEFAULT_REFRESH_INTERVAL_SECONDS = 30;
const MAX_REFRESH_INTERVAL_SECONDS = 3600;

function refreshIntervalSeconds(scope: IConstruct, interval: Duration | undefined): number {
  if (interval === undefined) return DEFAULT_REFRESH_INTERVAL_SECONDS;
  if (interval.isUnresolved()) {
    throw new TidepoolValidationError(scope, 'refreshInterval must be a duration known at synthesis, not a token.');
  }
  const seconds = interval.toSeconds({ integral: false });
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_REFRESH_INTERVAL_SECONDS) {
    throw new TidepoolValidationError(
      scope,
      `refreshInterval must be a whole number of seconds from 1 to ${MAX_REFRESH_INTERVAL_SECONDS}, got ${interval.toHumanString()}.`,
    );
  }
  return seconds;
}

/**
 * A resolved ARN as cdk-nag names it in a finding: pseudo parameters become `<AWS::Region>` and the like,
 * so the acknowledgement matches the finding exactly (and nothing broader).
 */
function nagResourceName(resolved: unknown): string {
  if (typeof resolved === 'string') return resolved;
  const intrinsic = resolved as Record<string, unknown>;
  if (typeof intrinsic.Ref === 'string') return `<${intrinsic.Ref}>`;
  const join = intrinsic['Fn::Join'] as [string, unknown[]] | undefined;
  if (join) return join[1].map(nagResourceName).join(join[0]);
  return JSON.stringify(resolved);
}

/**
 * The cluster's instance endpoints when the app knows them; none for a cluster imported without
 * `instanceEndpointAddresses` (aws-cdk-lib throws when they are read then).
 */
function knownInstanceEndpoints(cluster: rds.IDatabaseCluster): rds.Endpoint[] {
  try {
    return [...cluster.instanceEndpoints];
  } catch {
    return [];
  }
}

class EndpointsTarget extends ProxyTarget {
  constructor(private readonly props: EndpointsProxyTargetProps) {
    super();
  }

  public bind(proxy: IConstruct): ProxyTargetConfig {
    if (this.props.endpoints.length === 0) {
      throw new TidepoolValidationError(proxy, 'ProxyTarget.fromEndpoints() needs at least one endpoint, got none.');
    }
    return {
      engineFamily: this.props.engineFamily,
      endpoints: this.props.endpoints,
      connections: this.props.connections,
    };
  }
}

function engineFamilyOf(proxy: IConstruct, database: IConstruct, engine: rds.IEngine | undefined): EngineFamily {
  if (engine === undefined) {
    throw new TidepoolValidationError(
      proxy,
      `Could not determine the engine of proxy target '${database.node.path}'. Pass \`engine\` when importing the database.`,
    );
  }
  switch (engine.engineFamily) {
    case 'POSTGRESQL':
      return EngineFamily.POSTGRESQL;
    case 'MYSQL':
      return EngineFamily.MYSQL;
    default:
      throw new TidepoolValidationError(
        proxy,
        `Tidepool serves PostgreSQL and MySQL-family databases; proxy target '${database.node.path}' runs engine ` +
          `'${engine.engineType}' (engine family ${engine.engineFamily ?? 'unknown'}).`,
      );
  }
}
