import { ArnFormat, Stack } from 'aws-cdk-lib';
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
  /** Where the proxy connects, in the order rendered into the runtime config's `targets`. */
  readonly endpoints: rds.Endpoint[];
  /**
   * The database side's security groups, opened to the proxy tasks on each endpoint's port.
   *
   * @default - the tasks may reach the endpoints' ports on any IPv4 address and the database side is left alone
   */
  readonly connections?: ec2.IConnectable;
  /**
   * An Aurora cluster's identifier, so the runtime can find the current writer with `rds:DescribeDBClusters`
   * instead of waiting for the cluster endpoint's DNS record to change after a failover.
   *
   * @default - no writer discovery
   */
  readonly dbClusterIdentifier?: string;
  /**
   * Permissions the runtime needs to use the target (for example, writer discovery).
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

  /** An Aurora PostgreSQL or Aurora MySQL cluster; the proxy serves its writer. */
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
    const stack = Stack.of(proxy);
    return {
      engineFamily: engineFamilyOf(proxy, this.cluster, this.cluster.engine),
      endpoints: [this.cluster.clusterEndpoint],
      connections: this.cluster,
      dbClusterIdentifier: this.cluster.clusterIdentifier,
      policyStatements: [
        new iam.PolicyStatement({ actions: ['rds:DescribeDBClusters'], resources: [this.cluster.clusterArn] }),
        // The writer is a member instance whose identifier an imported cluster may not list, and
        // DescribeDBInstances filtered by cluster cannot be scoped tighter than the account's instances.
        new iam.PolicyStatement({
          actions: ['rds:DescribeDBInstances'],
          resources: [stack.formatArn({ service: 'rds', resource: 'db', resourceName: '*', arnFormat: ArnFormat.COLON_RESOURCE_NAME })],
        }),
      ],
    };
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
