import { Annotations, Duration, IResource, Lazy, Names, Resource, Stack, Token, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as rds from 'aws-cdk-lib/aws-rds';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import {
  CLIENT_PASSWORD_AUTH_TYPES,
  ClientPasswordAuthType,
  defaultPortFor,
  SESSION_PINNING_FILTERS,
  SessionPinningFilter,
} from '../../runtime/config/schema';
import { DEFAULT_TARGET_GROUP, findProxyMetric, METRIC_DIMENSIONS, MetricUnitName, READ_WRITE_TARGET_ROLE } from './metric-catalog';
import { createDashboard, createDefaultAlarms, DatabaseProxyDashboardOptions, DefaultAlarms, DefaultAlarmsOptions } from './monitoring';
import { TidepoolValidationError } from './private/errors';
import {
  ADMIN_PORT,
  IamAuthAllowListEntry,
  METRICS_INTERVAL_SECONDS,
  RenderedConfig,
  validateRenderedConfig,
} from './private/render-config';
import { defaultRuntimeImage } from './private/runtime-image';
import { EngineFamily, ProxyTarget, ProxyTargetConfig } from './proxy-target';
import { ProxyTlsCertificate, TargetCertificateAuthority, TargetTlsMode, TlsVersion } from './tls';

/** The namespace the runtime publishes its metrics to unless told otherwise. */
export const DEFAULT_METRICS_NAMESPACE = 'Tidepool';
const CONTAINER_NAME = 'tidepool';
/** Fargate sends SIGKILL at most 120 s after SIGTERM; keep room for the process to exit after draining. */
const MAX_DRAIN_SECONDS = 110;
const EXIT_MARGIN_SECONDS = 10;
/** NLB TCP idle timeouts are configurable between these bounds. */
const NLB_IDLE_TIMEOUT_MIN_SECONDS = 60;
const NLB_IDLE_TIMEOUT_MAX_SECONDS = 6000;
const HTTPS_PORT = 443;

/**
 * Options for a Tidepool proxy: everything except the target. The first group has the same names, types
 * and defaults as `aws-cdk-lib/aws-rds` `DatabaseProxyOptions`, so switching from RDS Proxy is an import change.
 */
export interface DatabaseProxyOptions {
  /**
   * The secrets the proxy logs in to the database with, one per database user. Each SecretString is JSON
   * with `username` and `password`, the shape RDS-generated secrets have. At least one, at most 200.
   *
   * @default - none; synthesis fails, because Tidepool has no end-to-end IAM mode
   */
  readonly secrets?: secretsmanager.ISecret[];

  /**
   * The proxy's name: the `ProxyName` dimension of its metrics and the prefix of its log streams. Must start
   * with a letter and hold only letters, digits and hyphens.
   *
   * @default - a name generated from the construct path, lowercased
   */
  readonly dbProxyName?: string;

  /**
   * How long a client waits for a database connection from the pool before it gets an error. It also bounds
   * the wait while the database fails over.
   *
   * @default Duration.seconds(120)
   */
  readonly borrowTimeout?: Duration;

  /**
   * SQL run on each new database connection, for example `SET ROLE app` (PostgreSQL) or
   * `SET SESSION sql_mode = 'ANSI'` (MySQL). Separate statements with `;`. Readable by anyone who can read
   * the task definition, so never put secrets in it.
   *
   * @default - no initialization query
   */
  readonly initQuery?: string;

  /**
   * The largest share of the target's `max_connections` the proxy may use, from 1 to 100.
   *
   * Tidepool runs several tasks, each with its own pool, so this share is divided among `maxCapacity` tasks
   * (rounded down): together they never exceed it, and while fewer than `maxCapacity` tasks run the proxy
   * can open less than the whole share.
   *
   * @default 100
   */
  readonly maxConnectionsPercent?: number;

  /**
   * The largest share of the target's `max_connections` that may sit idle in the pools, from 0 to
   * `maxConnectionsPercent`. Divided among `maxCapacity` tasks like `maxConnectionsPercent`.
   *
   * @default - half of maxConnectionsPercent (50 when that is 100)
   */
  readonly maxIdleConnectionsPercent?: number;

  /**
   * Statements that do not pin a session to its database connection. `EXCLUDE_VARIABLE_SETS` stops `SET`
   * statements from pinning; use it only when every session sets the same values.
   *
   * @default - no session pinning filters
   */
  readonly sessionPinningFilters?: rds.SessionPinningFilter[];

  /**
   * Whether the proxy logs SQL statements (truncated, never passwords). For debugging only.
   *
   * @default false
   */
  readonly debugLogging?: boolean;

  /**
   * Whether clients must log in with IAM rather than a database password. Allow principals with
   * `grantConnect()`. IAM logins need TLS.
   *
   * @default false
   */
  readonly iamAuth?: boolean;

  /**
   * How long a client connection may stay idle before the proxy closes it, from 1 second to 8 hours.
   * The load balancer's TCP idle timeout is set above it where the NLB allows (up to 6000 s).
   *
   * @default Duration.minutes(30)
   */
  readonly idleClientTimeout?: Duration;

  /**
   * Whether clients must use TLS.
   *
   * @default true
   */
  readonly requireTLS?: boolean;

  /**
   * The IAM role the proxy's tasks run as (the task role). It must trust `ecs-tasks.amazonaws.com`. The
   * construct attaches a policy to it that reads the secrets and publishes metrics.
   *
   * @default - A role will automatically be created
   */
  readonly role?: iam.IRole;

  /**
   * The security groups of the proxy's endpoint (its load balancer). Allow clients through
   * `proxy.connections`. The tasks behind it get a group of their own that only the load balancer reaches.
   *
   * @default - a new security group with no inbound rules
   */
  readonly securityGroups?: ec2.ISecurityGroup[];

  /**
   * The subnets of the load balancer and the tasks: private (not public) subnets in at least two
   * Availability Zones. The tasks need a route to Secrets Manager, CloudWatch, CloudWatch Logs, ECR and
   * STS, through a NAT gateway or VPC endpoints.
   *
   * @default - the VPC default strategy if not specified.
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /** The VPC to associate with the new proxy. */
  readonly vpc: ec2.IVpc;

  /**
   * The authentication clients use with a database password, for every secret.
   *
   * @default - POSTGRES_SCRAM_SHA_256 for PostgreSQL, MYSQL_NATIVE_PASSWORD for MySQL
   */
  readonly clientPasswordAuthType?: rds.ClientPasswordAuthType;

  /**
   * The ECS cluster the service runs in.
   *
   * @default - a new cluster in `vpc`
   */
  readonly cluster?: ecs.ICluster;

  /**
   * The container image. A custom image must run the Tidepool runtime, which reads `TIDEPOOL_CONFIG`.
   *
   * @default - this package's runtime bundle (`npm run build`) built with constructs/image/Dockerfile
   */
  readonly image?: ecs.ContainerImage;

  /**
   * CPU units per task (1024 = one vCPU). The runtime is one Node.js process, so more than 1024 buys
   * little; scale out with `maxCapacity` instead.
   *
   * @default 512
   */
  readonly cpu?: number;

  /**
   * Memory per task in MiB; must be a Fargate combination with `cpu`.
   *
   * @default 1024
   */
  readonly memoryLimitMiB?: number;

  /**
   * The tasks' CPU architecture. ARM64 (Graviton) costs about 20% less per vCPU-hour.
   *
   * @default ecs.CpuArchitecture.X86_64
   */
  readonly cpuArchitecture?: ecs.CpuArchitecture;

  /**
   * How many tasks run after each deployment; autoscaling moves it between `minCapacity` and `maxCapacity`.
   *
   * @default - minCapacity
   */
  readonly desiredCount?: number;

  /**
   * The fewest tasks autoscaling keeps. Two or more keep the proxy up when an Availability Zone is not.
   *
   * @default 2
   */
  readonly minCapacity?: number;

  /**
   * The most tasks autoscaling starts. `maxConnectionsPercent` is divided among this many tasks.
   *
   * @default 4
   */
  readonly maxCapacity?: number;

  /**
   * The average CPU utilization autoscaling aims for, in percent.
   *
   * @default 50
   */
  readonly cpuTargetUtilizationPercent?: number;

  /**
   * Where the certificate the proxy presents to TLS clients comes from.
   *
   * @default ProxyTlsCertificate.selfSigned()
   */
  readonly tlsCertificate?: ProxyTlsCertificate;

  /**
   * The oldest TLS version clients may negotiate. RDS Proxy still accepts 1.0 and 1.1 for old clients;
   * here they are opt-in, because both are deprecated (RFC 8996).
   *
   * @default TlsVersion.TLS_V1_2
   */
  readonly minimumTlsVersion?: TlsVersion;

  /**
   * Whether the proxy's connections to the database use TLS.
   *
   * @default TargetTlsMode.FOLLOW_CLIENT - TLS exactly when the client connected with TLS (RDS Proxy's rule);
   * with `requireTLS` (the default) that means always
   */
  readonly targetTlsMode?: TargetTlsMode;

  /**
   * The certificate authorities the database's certificate must chain to. When given, the proxy verifies
   * the database's certificate (and, with `verifyTargetHostname`, its host name) and refuses a database
   * that offers no TLS. For RDS and Aurora use `TargetCertificateAuthority.rdsGlobalBundle()`.
   *
   * @default - the database's certificate is encrypted against but not verified (like libpq's `sslmode=require`)
   */
  readonly targetCertificateAuthority?: TargetCertificateAuthority;

  /**
   * Whether the database's certificate must name the host the proxy connects to. Applies only with
   * `targetCertificateAuthority`. RDS certificates name the instance and cluster endpoints.
   *
   * @default true
   */
  readonly verifyTargetHostname?: boolean;

  /**
   * How long a task that is being replaced or scaled in keeps serving open transactions. The load balancer
   * stops sending it new connections for this long (its deregistration delay), then the runtime gets SIGTERM
   * and gives open transactions up to this long again before it closes every connection. At most 110 s,
   * because Fargate kills a task 120 s after SIGTERM.
   *
   * @default Duration.seconds(30)
   */
  readonly drainTimeout?: Duration;

  /**
   * How long the proxy's logs are kept.
   *
   * @default logs.RetentionDays.ONE_MONTH
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * The CloudWatch namespace the proxy publishes its metrics to. The task role may publish only to it.
   *
   * @default 'Tidepool'
   */
  readonly metricsNamespace?: string;
}

/**
 * Properties of a Tidepool proxy.
 */
export interface DatabaseProxyProps extends DatabaseProxyOptions {
  /** The database the proxy serves. */
  readonly proxyTarget: ProxyTarget;
}

/**
 * How to refer to a proxy defined elsewhere.
 */
export interface DatabaseProxyAttributes {
  /** The proxy's name, as its metrics' `ProxyName` dimension carries it. */
  readonly dbProxyName: string;
  /** The proxy's DNS name. */
  readonly endpoint: string;
  /** The port clients connect to: 5432 for PostgreSQL, 3306 for MySQL. */
  readonly port: number;
  /** The security groups of the proxy's endpoint. */
  readonly securityGroups: ec2.ISecurityGroup[];
  /**
   * The namespace the proxy publishes its metrics to.
   *
   * @default 'Tidepool'
   */
  readonly metricsNamespace?: string;
}

/**
 * A Tidepool proxy, defined here or imported.
 */
export interface IDatabaseProxy extends IResource, ec2.IConnectable {
  /**
   * The proxy's name: its metrics' `ProxyName` dimension.
   * @attribute
   */
  readonly dbProxyName: string;
  /**
   * The DNS name clients connect to.
   * @attribute
   */
  readonly endpoint: string;
  /** The port clients connect to. */
  readonly port: number;
  /** The CloudWatch namespace of the proxy's metrics. */
  readonly metricsNamespace: string;

  /**
   * Lets `grantee` log in as `dbUser` with IAM authentication.
   *
   * @param dbUser the database user; may be omitted when the proxy has exactly one secret
   */
  grantConnect(grantee: iam.IGrantable, dbUser?: string): iam.Grant;

  /** One of the proxy's metrics, by name, with the dimensions, statistic and unit RDS Proxy uses for it. */
  metric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Percentage of time the target group was available in its role. Average. */
  metricAvailabilityPercentage(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Current client connections. Sum. */
  metricClientConnections(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Client connections closed. Sum. */
  metricClientConnectionsClosed(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Current client connections without TLS. Sum. */
  metricClientConnectionsNoTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Client connection requests received. Sum. */
  metricClientConnectionsReceived(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Client connection attempts that failed authentication or TLS. Sum. */
  metricClientConnectionsSetupFailedAuth(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Client connections established. Sum. */
  metricClientConnectionsSetupSucceeded(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Current client connections with TLS. Sum. */
  metricClientConnectionsTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Requests to create a database connection. Sum. */
  metricDatabaseConnectionRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Requests to create a database connection with TLS. Sum. */
  metricDatabaseConnectionRequestsWithTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Current database connections. Sum. */
  metricDatabaseConnections(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Microseconds to get a database connection. Average. */
  metricDatabaseConnectionsBorrowLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Current database connections in the borrow state. Sum. */
  metricDatabaseConnectionsCurrentlyBorrowed(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Current database connections in a transaction. Sum. */
  metricDatabaseConnectionsCurrentlyInTransaction(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Current database connections pinned to a client session. Sum. */
  metricDatabaseConnectionsCurrentlySessionPinned(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Database connection requests that failed. Sum. */
  metricDatabaseConnectionsSetupFailed(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Database connections established. Sum. */
  metricDatabaseConnectionsSetupSucceeded(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Current database connections with TLS. Sum. */
  metricDatabaseConnectionsWithTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Most database connections allowed. Sum. */
  metricMaxDatabaseConnectionsAllowed(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Microseconds the database took to answer a query. Average. */
  metricQueryDatabaseResponseLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Queries received. Sum. */
  metricQueryRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Queries received over connections without TLS. Sum. */
  metricQueryRequestsNoTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Queries received over TLS connections. Sum. */
  metricQueryRequestsTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Microseconds between a query request and the proxy's response. Average. */
  metricQueryResponseLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Client requests that waited the whole borrow timeout without a database connection (Tidepool only). Sum. */
  metricDatabaseConnectionsBorrowTimeouts(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Seconds in each minute during which the target group had a writer (RDS Proxy preview metric). Average. */
  metricTargetGroupWriterAvailableDuration(props?: cloudwatch.MetricOptions): cloudwatch.Metric;

  /**
   * Creates the alarms most proxies want: writer unavailable, borrow timeouts and a high share of pinned
   * connections. Call it at most once per proxy.
   */
  addDefaultAlarms(options?: DefaultAlarmsOptions): DefaultAlarms;

  /**
   * Creates a CloudWatch dashboard of the proxy's connections, latencies, availability and logins.
   */
  addDashboard(id: string, options?: DatabaseProxyDashboardOptions): cloudwatch.Dashboard;
}

/**
 * What defined and imported proxies share: their metrics.
 */
export abstract class DatabaseProxyBase extends Resource implements IDatabaseProxy {
  public abstract readonly dbProxyName: string;
  public abstract readonly endpoint: string;
  public abstract readonly port: number;
  public abstract readonly metricsNamespace: string;
  public abstract readonly connections: ec2.Connections;

  public abstract grantConnect(grantee: iam.IGrantable, dbUser?: string): iam.Grant;

  private defaultAlarms?: DefaultAlarms;

  /**
   * Creates the alarms most proxies want, in a child construct `DefaultAlarms`:
   *
   * - `WriterUnavailable`: `AvailabilityPercentage` (writer role) below 50% for 2 minutes in a row; missing
   *   data counts as breaching, because every running task reports it each minute.
   * - `BorrowTimeouts`: any `DatabaseConnectionsBorrowTimeouts` in a minute (clients got errors).
   * - `SessionPinning`: more than 50% of database connections pinned for 5 minutes in a row.
   *
   * A method rather than a prop, because it works the same on an imported proxy (alarms in a monitoring
   * stack of their own) and returns the alarms, so callers can add actions, composite alarms or dashboards;
   * aws-cdk-lib's own constructs create no alarm unless asked, and neither does this one.
   *
   * @returns the three alarms
   */
  public addDefaultAlarms(options: DefaultAlarmsOptions = {}): DefaultAlarms {
    if (this.defaultAlarms) {
      throw new TidepoolValidationError(this, 'addDefaultAlarms() was already called on this proxy; it creates one set of alarms.');
    }
    this.defaultAlarms = createDefaultAlarms(new Construct(this, 'DefaultAlarms'), this, options);
    return this.defaultAlarms;
  }

  /**
   * Creates a CloudWatch dashboard (a child construct named `id`) with graphs of client connections,
   * database connections (open, borrowed, pinned, in a transaction, the ceiling), query and borrow latency,
   * borrow timeouts, writer availability, logins and database connection setup, under a status row of the
   * default alarms when `addDefaultAlarms()` was called first.
   */
  public addDashboard(id: string, options: DatabaseProxyDashboardOptions = {}): cloudwatch.Dashboard {
    return createDashboard(this, id, this, options, this.defaultAlarms);
  }

  /**
   * One of the proxy's metrics by name. Known metrics get RDS Proxy's dimensions, statistic and unit, and
   * a one-minute period: every task reports each gauge once a minute, so a one-minute Sum adds up the tasks,
   * where a longer period would also add up the minutes.
   *
   * `AvailabilityPercentage` is published per target group and role only, so its dimensions include
   * `TargetGroup=default` and `TargetRole=READWRITE` (CloudWatch's spelling of the writer role).
   */
  public metric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    const definition = findProxyMetric(metricName);
    const dimensionsMap: Record<string, string> = { [METRIC_DIMENSIONS.proxyName]: this.dbProxyName };
    if (definition?.perTargetRoleOnly) {
      dimensionsMap[METRIC_DIMENSIONS.targetGroup] = DEFAULT_TARGET_GROUP;
      dimensionsMap[METRIC_DIMENSIONS.targetRole] = READ_WRITE_TARGET_ROLE;
    }
    return new cloudwatch.Metric({
      namespace: this.metricsNamespace,
      metricName,
      dimensionsMap,
      period: Duration.minutes(1),
      ...(definition && { statistic: definition.statistic, unit: cloudwatch.Unit[unitKey(definition.unit)] }),
      ...props,
    });
  }

  /** The percentage of time the target group was available in its role, reported every minute. Average. */
  public metricAvailabilityPercentage(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('AvailabilityPercentage', props);
  }
  /** The current number of client connections, reported every minute. Sum. */
  public metricClientConnections(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('ClientConnections', props);
  }
  /** The number of client connections closed. Sum. */
  public metricClientConnectionsClosed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('ClientConnectionsClosed', props);
  }
  /** The current number of client connections without TLS, reported every minute. Sum. */
  public metricClientConnectionsNoTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('ClientConnectionsNoTLS', props);
  }
  /** The number of client connection requests received. Sum. */
  public metricClientConnectionsReceived(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('ClientConnectionsReceived', props);
  }
  /** The number of client connection attempts that failed because of misconfigured authentication or TLS. Sum. */
  public metricClientConnectionsSetupFailedAuth(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('ClientConnectionsSetupFailedAuth', props);
  }
  /** The number of client connections established with any authentication, with or without TLS. Sum. */
  public metricClientConnectionsSetupSucceeded(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('ClientConnectionsSetupSucceeded', props);
  }
  /** The current number of client connections with TLS, reported every minute. Sum. */
  public metricClientConnectionsTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('ClientConnectionsTLS', props);
  }
  /** The number of requests to create a database connection. Sum. */
  public metricDatabaseConnectionRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionRequests', props);
  }
  /** The number of requests to create a database connection with TLS. Sum. */
  public metricDatabaseConnectionRequestsWithTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionRequestsWithTLS', props);
  }
  /** The current number of database connections, reported every minute. Sum. */
  public metricDatabaseConnections(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnections', props);
  }
  /** The time in microseconds the proxy takes to get a database connection. Average. */
  public metricDatabaseConnectionsBorrowLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionsBorrowLatency', props);
  }
  /** The current number of database connections in the borrow state, reported every minute. Sum. */
  public metricDatabaseConnectionsCurrentlyBorrowed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionsCurrentlyBorrowed', props);
  }
  /** The current number of database connections in a transaction, reported every minute. Sum. */
  public metricDatabaseConnectionsCurrentlyInTransaction(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionsCurrentlyInTransaction', props);
  }
  /** The current number of database connections pinned by session-state changes, reported every minute. Sum. */
  public metricDatabaseConnectionsCurrentlySessionPinned(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionsCurrentlySessionPinned', props);
  }
  /** The number of database connection requests that failed. Sum. */
  public metricDatabaseConnectionsSetupFailed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionsSetupFailed', props);
  }
  /** The number of database connections established, with or without TLS. Sum. */
  public metricDatabaseConnectionsSetupSucceeded(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionsSetupSucceeded', props);
  }
  /** The current number of database connections with TLS, reported every minute. Sum. */
  public metricDatabaseConnectionsWithTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionsWithTLS', props);
  }
  /** The maximum number of database connections allowed, reported every minute. Sum. */
  public metricMaxDatabaseConnectionsAllowed(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('MaxDatabaseConnectionsAllowed', props);
  }
  /** The time in microseconds the database took to respond to the query. Average. */
  public metricQueryDatabaseResponseLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('QueryDatabaseResponseLatency', props);
  }
  /** The number of queries received; a multi-statement query counts as one. Sum. */
  public metricQueryRequests(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('QueryRequests', props);
  }
  /** The number of queries received from connections without TLS. Sum. */
  public metricQueryRequestsNoTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('QueryRequestsNoTLS', props);
  }
  /** The number of queries received from TLS connections. Sum. */
  public metricQueryRequestsTLS(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('QueryRequestsTLS', props);
  }
  /** The time in microseconds between getting a query request and the proxy responding to it. Average. */
  public metricQueryResponseLatency(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('QueryResponseLatency', props);
  }
  /**
   * The number of client requests that waited the whole borrow timeout without getting a database
   * connection, and so got an error. Tidepool only (RDS Proxy has no such metric). Sum.
   */
  public metricDatabaseConnectionsBorrowTimeouts(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('DatabaseConnectionsBorrowTimeouts', props);
  }
  /** The seconds in each minute during which the target group had a writer (an RDS Proxy preview metric). Average. */
  public metricTargetGroupWriterAvailableDuration(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric('TargetGroupWriterAvailableDuration', props);
  }
}

function unitKey(unit: MetricUnitName): 'COUNT' | 'MICROSECONDS' | 'PERCENT' | 'SECONDS' {
  return unit.toUpperCase() as 'COUNT' | 'MICROSECONDS' | 'PERCENT' | 'SECONDS';
}

/**
 * A PostgreSQL or MySQL connection-pooling proxy on ECS Fargate behind an internal Network Load Balancer:
 * a self-hosted Amazon RDS Proxy. Its props, members and metrics follow `aws-cdk-lib/aws-rds`
 * `DatabaseProxy`.
 *
 * @resource AWS::ECS::Service
 */
export class DatabaseProxy extends DatabaseProxyBase {
  /** Refers to a proxy defined in another stack or app. */
  public static fromDatabaseProxyAttributes(scope: Construct, id: string, attrs: DatabaseProxyAttributes): IDatabaseProxy {
    return new ImportedDatabaseProxy(scope, id, attrs);
  }

  public readonly dbProxyName: string;
  /** The load balancer's DNS name. */
  public readonly endpoint: string;
  /** 5432 for PostgreSQL, 3306 for MySQL, whatever port the database uses (as RDS Proxy does). */
  public readonly port: number;
  public readonly metricsNamespace: string;
  /** The endpoint's security groups; `connections.allowDefaultPortFrom(client)` lets a client in. */
  public readonly connections: ec2.Connections;
  public readonly engineFamily: EngineFamily;
  public readonly loadBalancer: elbv2.NetworkLoadBalancer;
  public readonly listener: elbv2.NetworkListener;
  public readonly targetGroup: elbv2.NetworkTargetGroup;
  public readonly cluster: ecs.ICluster;
  public readonly taskDefinition: ecs.FargateTaskDefinition;
  public readonly service: ecs.FargateService;
  /** The tasks' security group: the database side allows it, and it allows only the load balancer in. */
  public readonly serviceSecurityGroup: ec2.SecurityGroup;
  /** The task role. */
  public readonly role: iam.IRole;
  public readonly logGroup: logs.LogGroup;

  private readonly secrets: secretsmanager.ISecret[];
  private readonly iamAuth: boolean;
  /** What grantConnect() has recorded; rendered as the runtime config's `iam.allowList`. */
  private readonly iamAllowList: IamAuthAllowListEntry[] = [];
  private readonly baseConfig: RenderedConfig;

  constructor(scope: Construct, id: string, props: DatabaseProxyProps) {
    super(scope, id);

    const capacity = validateCapacity(this, props);
    const drainSeconds = concreteSeconds(this, 'drainTimeout', props.drainTimeout ?? Duration.seconds(30));
    if (drainSeconds < 1 || drainSeconds > MAX_DRAIN_SECONDS) {
      throw new TidepoolValidationError(
        this,
        `drainTimeout must be between 1 and ${MAX_DRAIN_SECONDS} seconds (Fargate stops a task 120 s after SIGTERM), got ${drainSeconds}.`,
      );
    }
    const metricsNamespace = props.metricsNamespace ?? DEFAULT_METRICS_NAMESPACE;
    if (!Token.isUnresolved(metricsNamespace) && (metricsNamespace.startsWith('AWS/') || metricsNamespace.length === 0)) {
      throw new TidepoolValidationError(
        this,
        `metricsNamespace must be non-empty and must not start with 'AWS/' (CloudWatch reserves it), got '${metricsNamespace}'.`,
      );
    }
    this.secrets = props.secrets ?? [];
    if (this.secrets.length === 0) {
      throw new TidepoolValidationError(
        this,
        'One or more secrets are required: the proxy logs in to the database with the username and password in a Secrets Manager secret.',
      );
    }

    const target = props.proxyTarget.bind(this);
    this.engineFamily = target.engineFamily;
    this.port = defaultPortFor(target.engineFamily);
    this.dbProxyName = props.dbProxyName ?? generatedProxyName(this);
    this.metricsNamespace = metricsNamespace;
    this.iamAuth = props.iamAuth ?? false;
    const tlsCertificate = props.tlsCertificate ?? ProxyTlsCertificate.selfSigned();

    const idleClientTimeoutSeconds = concreteSeconds(this, 'idleClientTimeout', props.idleClientTimeout ?? Duration.minutes(30));
    this.baseConfig = renderBaseConfig(this, props, target, {
      drainSeconds,
      idleClientTimeoutSeconds,
      maxCapacity: capacity.maxCapacity,
      tlsSecret: tlsCertificate.secret,
    });
    throwOnConfigProblems(this, validateRenderedConfig(this.baseConfig));
    // Grants arrive after construction; check the config they complete when the app synthesizes.
    this.node.addValidation({
      validate: () => validateRenderedConfig(this.renderConfig()).map((p) => `${p.prop}: ${p.message}`),
    });

    const subnets = selectPrivateSubnetsInTwoZones(this, props.vpc, props.vpcSubnets);

    this.role =
      props.role ??
      new iam.Role(this, 'IAMRole', {
        description: `Task role of the Tidepool proxy ${this.dbProxyName}`,
        assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com').withConditions({
          // Confused-deputy guard: only ECS acting for this account may assume the role.
          StringEquals: { 'aws:SourceAccount': Stack.of(this).account },
          ArnLike: { 'aws:SourceArn': Stack.of(this).formatArn({ service: 'ecs', resource: '*' }) },
        }),
      });
    const taskPolicy = new iam.Policy(this, 'TaskPolicy', {
      statements: taskPolicyStatements(this, {
        secrets: [...this.secrets, ...(tlsCertificate.secret ? [tlsCertificate.secret] : [])],
        metricsNamespace,
        target,
      }),
    });
    taskPolicy.attachToRole(this.role);

    const endpointSecurityGroups = props.securityGroups ?? [
      new ec2.SecurityGroup(this, 'ProxySecurityGroup', {
        vpc: props.vpc,
        description: `Endpoint of the Tidepool proxy ${this.dbProxyName}: clients allowed on the engine port`,
        allowAllOutbound: false,
      }),
    ];
    this.connections = new ec2.Connections({ securityGroups: endpointSecurityGroups, defaultPort: ec2.Port.tcp(this.port) });
    this.serviceSecurityGroup = new ec2.SecurityGroup(this, 'ServiceSecurityGroup', {
      vpc: props.vpc,
      description: `Tasks of the Tidepool proxy ${this.dbProxyName}: reached only through its load balancer`,
      allowAllOutbound: false,
    });
    this.serviceSecurityGroup.connections.allowFrom(this.connections, ec2.Port.tcp(this.port), 'Client connections through the load balancer');
    this.serviceSecurityGroup.connections.allowFrom(this.connections, ec2.Port.tcp(ADMIN_PORT), 'Load balancer health checks');
    this.serviceSecurityGroup.addEgressRule(
      ec2.Peer.anyIpv4(),
      ec2.Port.tcp(HTTPS_PORT),
      'AWS APIs (Secrets Manager, CloudWatch, STS, ECR) through NAT or VPC endpoints',
    );
    this.openDatabaseToTasks(target);

    this.loadBalancer = new elbv2.NetworkLoadBalancer(this, 'LoadBalancer', {
      vpc: props.vpc,
      vpcSubnets: subnets,
      internetFacing: false,
      crossZoneEnabled: true,
      securityGroups: endpointSecurityGroups,
    });
    this.endpoint = this.loadBalancer.loadBalancerDnsName;
    this.targetGroup = new elbv2.NetworkTargetGroup(this, 'TargetGroup', {
      vpc: props.vpc,
      port: this.port,
      protocol: elbv2.Protocol.TCP,
      targetType: elbv2.TargetType.IP,
      // Clients then reach the tasks from the load balancer's addresses, which the security groups allow.
      preserveClientIp: false,
      deregistrationDelay: Duration.seconds(drainSeconds),
      healthCheck: {
        protocol: elbv2.Protocol.HTTP,
        port: String(ADMIN_PORT),
        path: '/healthz',
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 2,
      },
    });
    this.listener = this.loadBalancer.addListener('Listener', {
      port: this.port,
      // TCP, not TLS: both protocols negotiate TLS in-band, so it ends in the proxy.
      protocol: elbv2.Protocol.TCP,
      defaultTargetGroups: [this.targetGroup],
      tcpIdleTimeout: Duration.seconds(nlbIdleTimeoutSeconds(idleClientTimeoutSeconds)),
    });

    this.logGroup = new logs.LogGroup(this, 'LogGroup', { retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH });
    this.cluster = props.cluster ?? new ecs.Cluster(this, 'Cluster', { vpc: props.vpc });
    const cpuArchitecture = props.cpuArchitecture ?? ecs.CpuArchitecture.X86_64;
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'TaskDefinition', {
      cpu: props.cpu ?? 512,
      memoryLimitMiB: props.memoryLimitMiB ?? 1024,
      taskRole: this.role,
      runtimePlatform: { cpuArchitecture, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
    });
    this.taskDefinition.addContainer('Container', {
      containerName: CONTAINER_NAME,
      image: props.image ?? defaultRuntimeImage(this, cpuArchitecture),
      environment: {
        TIDEPOOL_CONFIG: Lazy.string({ produce: () => Stack.of(this).toJsonString(this.renderConfig()) }),
      },
      portMappings: [
        { containerPort: this.port, name: 'proxy' },
        { containerPort: ADMIN_PORT, name: 'admin' },
      ],
      logging: ecs.LogDrivers.awsLogs({
        logGroup: this.logGroup,
        streamPrefix: this.dbProxyName,
        // A proxy must not stall its clients because CloudWatch Logs is slow to accept lines.
        mode: ecs.AwsLogDriverMode.NON_BLOCKING,
      }),
      // An init process forwards SIGTERM to the runtime (which drains) and reaps zombies.
      linuxParameters: new ecs.LinuxParameters(this, 'LinuxParameters', { initProcessEnabled: true }),
      stopTimeout: Duration.seconds(drainSeconds + EXIT_MARGIN_SECONDS),
    });

    this.service = new ecs.FargateService(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: capacity.desiredCount,
      vpcSubnets: subnets,
      securityGroups: [this.serviceSecurityGroup],
      assignPublicIp: false,
      // Keep full capacity during deployments and roll back a release whose tasks never get healthy.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      circuitBreaker: { enable: true, rollback: true },
      propagateTags: ecs.PropagatedTagSource.SERVICE,
    });
    // Tasks read their secrets at start; without the policy they would crash-loop until it exists.
    this.service.node.addDependency(taskPolicy);
    this.targetGroup.addTarget(this.service.loadBalancerTarget({ containerName: CONTAINER_NAME, containerPort: this.port }));
    const scaling = this.service.autoScaleTaskCount({ minCapacity: capacity.minCapacity, maxCapacity: capacity.maxCapacity });
    scaling.scaleOnCpuUtilization('CpuScaling', {
      targetUtilizationPercent: capacity.cpuTargetUtilizationPercent,
      scaleOutCooldown: Duration.minutes(1),
      // Scaling in ends client sessions (at transaction boundaries); wait out short dips first.
      scaleInCooldown: Duration.minutes(5),
    });

    this.acknowledgeDesignFindings({ ownsCluster: props.cluster === undefined });
    for (const acknowledgement of target.rdsDiscovery?.acknowledgements ?? []) {
      Validations.of(this).acknowledge(acknowledgement);
    }
  }

  /**
   * Lets `grantee` log in as `dbUser` with IAM authentication: records the principal in the allow-list the
   * runtime enforces (the runtime config's `iam.allowList`; IAM policies cannot express it, because the proxy verifies callers with
   * `sts:GetCallerIdentity`, which no policy can deny). When `grantee` is also connectable (a Lambda
   * function in the VPC, an instance), its security group is let in on the proxy's port too.
   *
   * @param grantee a role, a user, or anything whose grant principal is one
   * @param dbUser the database user; when omitted and the proxy has exactly one secret, that secret's username
   * @returns a dropped grant: it carries no IAM statement, since none is needed
   */
  public grantConnect(grantee: iam.IGrantable, dbUser?: string): iam.Grant {
    const user = dbUser ?? this.defaultDbUser();
    const principalArn = principalArnOf(grantee.grantPrincipal);
    if (principalArn === undefined) {
      throw new TidepoolValidationError(
        this,
        `grantConnect() needs a grantee whose principal is an IAM role or user (or an ArnPrincipal), got ${grantee.grantPrincipal}.`,
      );
    }
    if (!Token.isUnresolved(user) && user.length === 0) {
      throw new TidepoolValidationError(this, 'grantConnect() needs a non-empty dbUser.');
    }
    if (!this.iamAuth) {
      Annotations.of(this).addWarningV2(
        'tidepool:grantConnectWithoutIamAuth',
        'grantConnect() has no effect while iamAuth is false: the proxy accepts only database passwords.',
      );
    }
    this.iamAllowList.push({ principalArn, dbUser: user });
    const connections = connectionsOf(grantee);
    if (connections) this.connections.allowDefaultPortFrom(connections, 'IAM-authenticated client');
    return iam.Grant.drop(grantee, `connect to Tidepool proxy ${this.dbProxyName} as ${user}`);
  }

  private defaultDbUser(): string {
    if (this.secrets.length !== 1) {
      throw new TidepoolValidationError(
        this,
        `When the proxy has several secrets (it has ${this.secrets.length}), pass a dbUser to grantConnect().`,
      );
    }
    return this.secrets[0].secretValueFromJson('username').unsafeUnwrap();
  }

  private renderConfig(): RenderedConfig {
    return { ...this.baseConfig, iam: { allowList: [...this.iamAllowList] } };
  }

  private openDatabaseToTasks(target: ProxyTargetConfig): void {
    const databaseConnections = target.connections?.connections;
    for (const endpoint of target.endpoints) {
      const port = ec2.Port.tcp(endpoint.port);
      if (databaseConnections && databaseConnections.securityGroups.length > 0) {
        // Adds both sides: ingress on the database's groups, egress on the tasks' group.
        databaseConnections.allowFrom(this.serviceSecurityGroup, port, `Tidepool proxy ${this.dbProxyName}`);
      } else {
        this.serviceSecurityGroup.addEgressRule(ec2.Peer.anyIpv4(), port, 'Database (its security groups are unknown)');
        Annotations.of(this).addWarningV2(
          'tidepool:databaseSecurityGroupUnknown',
          `The proxy target has no security groups the construct can open; allow ${port} from the proxy's ` +
            'serviceSecurityGroup on the database side yourself.',
        );
      }
    }
  }

  /**
   * Findings of the AWS Solutions checks that follow from the design rather than from a choice the user
   * makes; recorded with CDK's acknowledgement API so cdk-nag reports show them with the reason.
   */
  private acknowledgeDesignFindings({ ownsCluster }: { ownsCluster: boolean }): void {
    Validations.of(this.taskDefinition).acknowledge({
      id: 'AwsSolutions-ECS2',
      reason: 'TIDEPOOL_CONFIG holds no secret: credentials are secret ARNs the task role reads at start.',
    });
    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason: 'NLB access logs record TLS listeners only; this TCP listener would log nothing. The proxy logs each connection.',
    });
    Validations.of(this).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'cloudwatch:PutMetricData has no resource-level permissions; a cloudwatch:namespace condition scopes it. ' +
        'ecr:GetAuthorizationToken (execution role) has none either.',
    });
    if (ownsCluster) {
      Validations.of(this.cluster).acknowledge({
        id: 'AwsSolutions-ECS4',
        reason:
          'The proxy publishes its own per-proxy metrics; Container Insights bills per metric. Pass a `cluster` with it enabled to get it.',
      });
    }
  }
}

class ImportedDatabaseProxy extends DatabaseProxyBase {
  public readonly dbProxyName: string;
  public readonly endpoint: string;
  public readonly port: number;
  public readonly metricsNamespace: string;
  public readonly connections: ec2.Connections;

  constructor(scope: Construct, id: string, attrs: DatabaseProxyAttributes) {
    super(scope, id);
    this.dbProxyName = attrs.dbProxyName;
    this.endpoint = attrs.endpoint;
    this.port = attrs.port;
    this.metricsNamespace = attrs.metricsNamespace ?? DEFAULT_METRICS_NAMESPACE;
    this.connections = new ec2.Connections({ securityGroups: attrs.securityGroups, defaultPort: ec2.Port.tcp(attrs.port) });
  }

  public grantConnect(_grantee: iam.IGrantable, _dbUser?: string): iam.Grant {
    throw new TidepoolValidationError(
      this,
      'grantConnect() is not available on an imported Tidepool proxy: its IAM allow-list is part of its own config. ' +
        'Call grantConnect() on the DatabaseProxy where it is defined.',
    );
  }
}

interface Capacity {
  readonly minCapacity: number;
  readonly maxCapacity: number;
  readonly desiredCount: number;
  readonly cpuTargetUtilizationPercent: number;
}

function validateCapacity(scope: Construct, props: DatabaseProxyProps): Capacity {
  const minCapacity = concreteInteger(scope, 'minCapacity', props.minCapacity ?? 2);
  const maxCapacity = concreteInteger(scope, 'maxCapacity', props.maxCapacity ?? 4);
  const desiredCount = concreteInteger(scope, 'desiredCount', props.desiredCount ?? minCapacity);
  const cpuTargetUtilizationPercent = concreteInteger(scope, 'cpuTargetUtilizationPercent', props.cpuTargetUtilizationPercent ?? 50);
  if (minCapacity < 1) throw new TidepoolValidationError(scope, `minCapacity must be at least 1, got ${minCapacity}.`);
  if (maxCapacity < minCapacity) {
    throw new TidepoolValidationError(scope, `maxCapacity (${maxCapacity}) must be at least minCapacity (${minCapacity}).`);
  }
  if (desiredCount < minCapacity || desiredCount > maxCapacity) {
    throw new TidepoolValidationError(
      scope,
      `desiredCount (${desiredCount}) must be between minCapacity (${minCapacity}) and maxCapacity (${maxCapacity}).`,
    );
  }
  if (cpuTargetUtilizationPercent < 1 || cpuTargetUtilizationPercent > 100) {
    throw new TidepoolValidationError(scope, `cpuTargetUtilizationPercent must be between 1 and 100, got ${cpuTargetUtilizationPercent}.`);
  }
  if (minCapacity < 2) {
    Annotations.of(scope).addWarningV2(
      'tidepool:singleTask',
      `minCapacity is ${minCapacity}: the proxy is down while its only task is replaced or its Availability Zone is.`,
    );
  }
  return { minCapacity, maxCapacity, desiredCount, cpuTargetUtilizationPercent };
}

interface ConfigInputs {
  readonly drainSeconds: number;
  readonly idleClientTimeoutSeconds: number;
  readonly maxCapacity: number;
  readonly tlsSecret?: secretsmanager.ISecret;
}

function renderBaseConfig(
  proxy: DatabaseProxy,
  props: DatabaseProxyProps,
  target: ProxyTargetConfig,
  inputs: ConfigInputs,
): RenderedConfig {
  const maxConnectionsPercent = concreteInteger(proxy, 'maxConnectionsPercent', props.maxConnectionsPercent ?? 100);
  if (maxConnectionsPercent < 1 || maxConnectionsPercent > 100) {
    throw new TidepoolValidationError(proxy, `maxConnectionsPercent must be between 1 and 100, got ${maxConnectionsPercent}.`);
  }
  const maxIdleConnectionsPercent = concreteInteger(
    proxy,
    'maxIdleConnectionsPercent',
    props.maxIdleConnectionsPercent ?? Math.floor(maxConnectionsPercent / 2),
  );
  if (maxIdleConnectionsPercent < 0 || maxIdleConnectionsPercent > maxConnectionsPercent) {
    throw new TidepoolValidationError(
      proxy,
      `maxIdleConnectionsPercent must be between 0 and maxConnectionsPercent (${maxConnectionsPercent}), got ${maxIdleConnectionsPercent}.`,
    );
  }
  // Each task has its own pool, so each gets an equal share of the budget; rounding down keeps the sum within it.
  const perTaskMaxConnectionsPercent = Math.floor(maxConnectionsPercent / inputs.maxCapacity);
  if (perTaskMaxConnectionsPercent < 1) {
    throw new TidepoolValidationError(
      proxy,
      `maxConnectionsPercent (${maxConnectionsPercent}) divided among maxCapacity (${inputs.maxCapacity}) tasks leaves less than 1% ` +
        'per task. Raise maxConnectionsPercent or lower maxCapacity.',
    );
  }
  const auth = (props.secrets ?? []).map((secret) => ({
    secretArn: secret.secretArn,
    iamAuth: props.iamAuth ? ('REQUIRED' as const) : ('DISABLED' as const),
    ...(props.clientPasswordAuthType !== undefined && { clientPasswordAuthType: clientAuthTypeOf(proxy, props.clientPasswordAuthType) }),
  }));
  return {
    proxyName: proxy.dbProxyName,
    engineFamily: target.engineFamily,
    listen: { host: '0.0.0.0', port: proxy.port },
    targets: target.endpoints.map((endpoint) => ({ host: endpoint.hostname, port: endpoint.port })),
    auth,
    ...(target.rdsDiscovery && {
      rdsTargets: {
        ...(target.rdsDiscovery.dbClusterIdentifier !== undefined && { dbClusterIdentifier: target.rdsDiscovery.dbClusterIdentifier }),
        ...(target.rdsDiscovery.dbInstanceIdentifiers !== undefined && { dbInstanceIdentifiers: target.rdsDiscovery.dbInstanceIdentifiers }),
        refreshInterval: target.rdsDiscovery.refreshIntervalSeconds,
      },
      aws: { region: target.rdsDiscovery.region },
    }),
    requireTls: props.requireTLS ?? true,
    tls: {
      minVersion: props.minimumTlsVersion ?? TlsVersion.TLS_V1_2,
      ...(inputs.tlsSecret && { secretArn: inputs.tlsSecret.secretArn }),
    },
    targetTls: renderTargetTls(proxy, props),
    idleClientTimeout: inputs.idleClientTimeoutSeconds,
    connectionPoolConfig: {
      maxConnectionsPercent: perTaskMaxConnectionsPercent,
      maxIdleConnectionsPercent: Math.floor(maxIdleConnectionsPercent / inputs.maxCapacity),
      connectionBorrowTimeout: concreteSeconds(proxy, 'borrowTimeout', props.borrowTimeout ?? Duration.seconds(120)),
      sessionPinningFilters: (props.sessionPinningFilters ?? []).map((filter) => sessionPinningFilterOf(proxy, filter)),
      ...(props.initQuery !== undefined && { initQuery: props.initQuery }),
    },
    limits: { shutdownTimeout: inputs.drainSeconds },
    debugLogging: props.debugLogging ?? false,
    admin: { port: ADMIN_PORT },
    metrics: { namespace: proxy.metricsNamespace, publishIntervalSeconds: METRICS_INTERVAL_SECONDS },
    iam: { allowList: [] },
  };
}

function renderTargetTls(scope: Construct, props: DatabaseProxyProps): NonNullable<RenderedConfig['targetTls']> {
  const mode = props.targetTlsMode ?? TargetTlsMode.FOLLOW_CLIENT;
  const authority = props.targetCertificateAuthority;
  if (authority && mode === TargetTlsMode.DISABLED) {
    throw new TidepoolValidationError(
      scope,
      'targetCertificateAuthority needs TLS to the database, but targetTlsMode is DISABLED. Drop one of them.',
    );
  }
  if (!authority && props.verifyTargetHostname !== undefined) {
    throw new TidepoolValidationError(
      scope,
      'verifyTargetHostname applies only to a verified certificate: pass targetCertificateAuthority as well.',
    );
  }
  if (authority && !Token.isUnresolved(authority.caFile) && !authority.caFile.startsWith('/')) {
    throw new TidepoolValidationError(
      scope,
      `targetCertificateAuthority must be an absolute path inside the container, got '${authority.caFile}'.`,
    );
  }
  return {
    mode,
    ...(authority && { caFile: authority.caFile, verifyHostname: props.verifyTargetHostname ?? true }),
  };
}

/** Narrows aws-rds's enum to the runtime's list; the schema then checks it against the engine family. */
function clientAuthTypeOf(scope: Construct, type: rds.ClientPasswordAuthType): ClientPasswordAuthType {
  const supported = CLIENT_PASSWORD_AUTH_TYPES.find((candidate) => candidate === type);
  if (supported === undefined) {
    throw new TidepoolValidationError(
      scope,
      `clientPasswordAuthType ${type} is not supported: Tidepool serves PostgreSQL and MySQL (${CLIENT_PASSWORD_AUTH_TYPES.join(', ')}).`,
    );
  }
  return supported;
}

function sessionPinningFilterOf(scope: Construct, filter: rds.SessionPinningFilter): SessionPinningFilter {
  const supported = SESSION_PINNING_FILTERS.find((candidate) => candidate === filter.filterName);
  if (supported === undefined) {
    throw new TidepoolValidationError(
      scope,
      `sessionPinningFilters: '${filter.filterName}' is not supported (supported: ${SESSION_PINNING_FILTERS.join(', ')}).`,
    );
  }
  return supported;
}

function throwOnConfigProblems(scope: Construct, problems: ReturnType<typeof validateRenderedConfig>): void {
  if (problems.length === 0) return;
  throw new TidepoolValidationError(scope, `invalid props:\n${problems.map((p) => `  - ${p.prop}: ${p.message}`).join('\n')}`);
}

function selectPrivateSubnetsInTwoZones(scope: Construct, vpc: ec2.IVpc, selection?: ec2.SubnetSelection): ec2.SubnetSelection {
  const selected = vpc.selectSubnets(selection);
  if (selected.hasPublic) {
    throw new TidepoolValidationError(
      scope,
      'vpcSubnets selects public subnets; a proxy belongs in private subnets (like RDS Proxy, it cannot be publicly accessible).',
    );
  }
  const zones = new Set(selected.availabilityZones);
  if (zones.size < 2) {
    throw new TidepoolValidationError(
      scope,
      `vpcSubnets must span at least two Availability Zones so the proxy survives the loss of one, got ${zones.size} ` +
        `(${[...zones].map((zone) => (Token.isUnresolved(zone) ? 'a zone resolved at deploy time' : zone)).join(', ') || 'no subnets'}).`,
    );
  }
  return { subnets: selected.subnets };
}

interface TaskPermissions {
  readonly secrets: secretsmanager.ISecret[];
  readonly metricsNamespace: string;
  readonly target: ProxyTargetConfig;
}

function taskPolicyStatements(scope: Construct, { secrets, metricsNamespace, target }: TaskPermissions): iam.PolicyStatement[] {
  const stack = Stack.of(scope);
  const statements = [
    new iam.PolicyStatement({
      actions: ['secretsmanager:GetSecretValue'],
      // A secret imported by name has a partial ARN; Secrets Manager appends six random characters.
      resources: secrets.map((secret) => secret.secretFullArn ?? `${secret.secretArn}-??????`),
    }),
    new iam.PolicyStatement({
      actions: ['cloudwatch:PutMetricData'],
      resources: ['*'],
      conditions: { StringEquals: { 'cloudwatch:namespace': metricsNamespace } },
    }),
  ];
  const keyArns = [...new Set(secrets.flatMap((secret) => (secret.encryptionKey ? [secret.encryptionKey.keyArn] : [])))];
  if (keyArns.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        actions: ['kms:Decrypt'],
        resources: keyArns,
        conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${stack.region}.${stack.urlSuffix}` } },
      }),
    );
  }
  return [...statements, ...(target.policyStatements ?? [])];
}

/** An NLB idle timeout above the client idle timeout, so the proxy, not the NLB, ends idle sessions. */
function nlbIdleTimeoutSeconds(idleClientTimeoutSeconds: number): number {
  return Math.min(NLB_IDLE_TIMEOUT_MAX_SECONDS, Math.max(NLB_IDLE_TIMEOUT_MIN_SECONDS, idleClientTimeoutSeconds + 60));
}

function generatedProxyName(scope: Construct): string {
  const name = Names.uniqueResourceName(scope, { maxLength: 60 }).toLowerCase();
  return /^[a-z]/.test(name) ? name : `p${name.slice(1)}`;
}

function principalArnOf(principal: iam.IPrincipal): string | undefined {
  const candidate = principal as Partial<iam.IRole & iam.IUser & iam.ArnPrincipal>;
  return candidate.roleArn ?? candidate.userArn ?? candidate.arn;
}

function connectionsOf(grantee: iam.IGrantable): ec2.Connections | undefined {
  try {
    const connections = (grantee as Partial<ec2.IConnectable>).connections;
    return connections instanceof ec2.Connections ? connections : undefined;
  } catch {
    // A Lambda function outside a VPC throws when asked for its connections; it has none to open.
    return undefined;
  }
}

function concreteInteger(scope: Construct, prop: string, value: number): number {
  if (Token.isUnresolved(value)) {
    throw new TidepoolValidationError(scope, `${prop} must be a number known at synthesis, not a token.`);
  }
  if (!Number.isInteger(value)) throw new TidepoolValidationError(scope, `${prop} must be a whole number, got ${value}.`);
  return value;
}

function concreteSeconds(scope: Construct, prop: string, value: Duration): number {
  if (value.isUnresolved()) {
    throw new TidepoolValidationError(scope, `${prop} must be a duration known at synthesis, not a token.`);
  }
  const seconds = value.toSeconds({ integral: false });
  if (!Number.isInteger(seconds)) {
    throw new TidepoolValidationError(scope, `${prop} must be a whole number of seconds, got ${value.toHumanString()}.`);
  }
  return seconds;
}
