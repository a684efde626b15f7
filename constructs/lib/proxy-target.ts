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
   * the writer among them: the PostgreSQL engine probes each one over SQL (`pg_is_in_recovery()`) and
   * follows the one that is writable; the MySQL engine connects to the first one only.
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
  /** An RDS for PostgreSQL, MySQL or MariaDB instance. */
  public static fromInstance(instance: rds.IDatabaseInstance): ProxyTarget {
    return new InstanceTarget(instance);
  }

  /**
   * An Aurora PostgreSQL or Aurora MySQL cluster; the proxy serves its writer.
   *
   * The rendered targets are the cluster (writer) endpoint first, then, when the cluster's instance
   * endpoints are known at synthesis, each instance endpoint:
   *
   * - The cluster endpoint is always there and always first. Its DNS record follows failovers (and
   *   instances added outside the CDK app, such as Aurora Auto Scaling replicas), so it is the target that
   *   never goes stale; and it is the only target the MySQL engine uses, since that engine connects to the
   *   first target without probing.
   * - The instance endpoints let the PostgreSQL engine, which probes every target for writability, find a
   *   promoted instance as soon as it accepts writes, rather than after the cluster endpoint's DNS record
   *   changes (RDS Proxy likewise follows the cluster's instances, not the DNS record).
   *
   * Instance endpoints are known for a `DatabaseCluster` defined in the app (its `writer` and `readers`, or
   * `instanceProps` instances) and for one imported with `instanceEndpointAddresses` and `port`. For a cluster
   * imported without them, only the cluster endpoint is rendered: the proxy still follows failovers, once
   * the DNS record changes. The runtime does not call the RDS API (no writer discovery through
   * `DescribeDBClusters`), so the task role gets no RDS permission.
   */
  public static fromCluster(cluster: rds.IDatabaseCluster): ProxyTarget {
    return new ClusterTarget(cluster);
  }

  /** Self-managed PostgreSQL or MySQL servers, for example on EC2 or on premises. */
  public static fromEndpoints(props: EndpointsProxyTargetProps): ProxyTarget {
    return new EndpointsTarget(props);
  }

  /** Called by the proxy; returns what it needs to render its config, permissions and security group rules. */
  public abstract bind(proxy: IConstruct): ProxyTargetConfig;
}

class InstanceTarget extends ProxyTarget {
  constructor(private readonly instance: rds.IDatabaseInstance) {
    super();
  }

  public bind(proxy: IConstruct): ProxyTargetConfig {
    return {
      engineFamily: engineFamilyOf(proxy, this.instance, this.instance.engine),
      endpoints: [this.instance.instanceEndpoint],
      connections: this.instance,
    };
  }
}

class ClusterTarget extends ProxyTarget {
  constructor(private readonly cluster: rds.IDatabaseCluster) {
    super();
  }

  public bind(proxy: IConstruct): ProxyTargetConfig {
    return {
      engineFamily: engineFamilyOf(proxy, this.cluster, this.cluster.engine),
      endpoints: [this.cluster.clusterEndpoint, ...knownInstanceEndpoints(this.cluster)],
      connections: this.cluster,
    };
  }
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
