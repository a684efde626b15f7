/**
 * The CloudWatch metrics a Tidepool proxy publishes: the 24 metrics Amazon RDS Proxy documents, with the
 * same names, dimension names and most useful statistics, so alarms and dashboards written for RDS Proxy
 * work after swapping the namespace (PutMetricData cannot write into `AWS/RDS`), and the two the runtime
 * adds (borrow timeouts, and the preview-era writer availability in seconds).
 *
 * Pure data with no CDK imports. The dimension values come from the runtime's own metric definitions, so
 * an alarm built here watches exactly the series the runtime publishes.
 */
import { DEFAULT_TARGET_GROUP as RUNTIME_DEFAULT_TARGET_GROUP, TARGET_ROLE_DIMENSION } from '../../runtime/metrics/definitions';


/** The dimension names RDS Proxy uses. */
export const METRIC_DIMENSIONS = {
  proxyName: 'ProxyName',
  endpointName: 'EndpointName',
  targetGroup: 'TargetGroup',
  target: 'Target',
  targetRole: 'TargetRole',
} as const;

/** RDS Proxy names its only target group `default`. */
export const DEFAULT_TARGET_GROUP = RUNTIME_DEFAULT_TARGET_GROUP;
/**
 * The writer's `TargetRole` dimension value. CloudWatch spells it `READWRITE`, unlike the RDS API's
 * `READ_WRITE` enum; the runtime publishes that spelling.
 */
export const READ_WRITE_TARGET_ROLE = TARGET_ROLE_DIMENSION.READ_WRITE;

export type MetricStatisticName = 'Sum' | 'Average';
export type MetricUnitName = 'Count' | 'Microseconds' | 'Percent' | 'Seconds';

export interface ProxyMetricDefinition {
  readonly name: string;
  /** The statistic AWS calls "most useful" for this metric. */
  readonly statistic: MetricStatisticName;
  readonly unit: MetricUnitName;
  /**
   * True when the metric is published only per target group and role (dimension set ProxyName, TargetGroup,
   * TargetRole), never with ProxyName alone.
   */
  readonly perTargetRoleOnly: boolean;
  /** AWS's description, used for the construct's JSDoc and the README. */
  readonly description: string;
}

function count(name: string, description: string): ProxyMetricDefinition {
  return { name, statistic: 'Sum', unit: 'Count', perTargetRoleOnly: false, description };
}

function latency(name: string, description: string): ProxyMetricDefinition {
  return { name, statistic: 'Average', unit: 'Microseconds', perTargetRoleOnly: false, description };
}

export const PROXY_METRICS: readonly ProxyMetricDefinition[] = [
  {
    name: 'AvailabilityPercentage',
    statistic: 'Average',
    unit: 'Percent',
    perTargetRoleOnly: true,
    description: 'The percentage of time for which the target group was available in its role, reported every minute.',
  },
  count('ClientConnections', 'The current number of client connections, reported every minute.'),
  count('ClientConnectionsClosed', 'The number of client connections closed.'),
  count('ClientConnectionsNoTLS', 'The current number of client connections without TLS, reported every minute.'),
  count('ClientConnectionsReceived', 'The number of client connection requests received.'),
  count(
    'ClientConnectionsSetupFailedAuth',
    'The number of client connection attempts that failed because of misconfigured authentication or TLS.',
  ),
  count(
    'ClientConnectionsSetupSucceeded',
    'The number of client connections established with any authentication mechanism, with or without TLS.',
  ),
  count('ClientConnectionsTLS', 'The current number of client connections with TLS, reported every minute.'),
  count('DatabaseConnectionRequests', 'The number of requests to create a database connection.'),
  count('DatabaseConnectionRequestsWithTLS', 'The number of requests to create a database connection with TLS.'),
  count('DatabaseConnections', 'The current number of database connections, reported every minute.'),
  latency('DatabaseConnectionsBorrowLatency', 'The time in microseconds the proxy takes to get a database connection.'),
  count(
    'DatabaseConnectionsCurrentlyBorrowed',
    'The current number of database connections in the borrow state, reported every minute.',
  ),
  count(
    'DatabaseConnectionsCurrentlyInTransaction',
    'The current number of database connections in a transaction, reported every minute.',
  ),
  count(
    'DatabaseConnectionsCurrentlySessionPinned',
    'The current number of database connections pinned because of operations that change session state, reported every minute.',
  ),
  count('DatabaseConnectionsSetupFailed', 'The number of database connection requests that failed.'),
  count('DatabaseConnectionsSetupSucceeded', 'The number of database connections established, with or without TLS.'),
  count('DatabaseConnectionsWithTLS', 'The current number of database connections with TLS, reported every minute.'),
  count('MaxDatabaseConnectionsAllowed', 'The maximum number of database connections allowed, reported every minute.'),
  latency('QueryDatabaseResponseLatency', 'The time in microseconds the database took to respond to the query.'),
  count('QueryRequests', 'The number of queries received; a multi-statement query counts as one.'),
  count('QueryRequestsNoTLS', 'The number of queries received from connections without TLS.'),
  count('QueryRequestsTLS', 'The number of queries received from TLS connections.'),
  latency(
    'QueryResponseLatency',
    'The time in microseconds between getting a query request and the proxy responding to it.',
  ),
];

/** Metrics RDS Proxy does not publish (today), published only with the ProxyName dimension. */
export const TIDEPOOL_METRICS: readonly ProxyMetricDefinition[] = [
  count(
    'DatabaseConnectionsBorrowTimeouts',
    'The number of client requests that waited the borrow timeout without getting a database connection (Tidepool only).',
  ),
  {
    name: 'TargetGroupWriterAvailableDuration',
    statistic: 'Average',
    unit: 'Seconds',
    perTargetRoleOnly: false,
    description: 'The seconds in each minute during which the target group had a writer (an RDS Proxy preview metric).',
  },
];

export function findProxyMetric(name: string): ProxyMetricDefinition | undefined {
  return [...PROXY_METRICS, ...TIDEPOOL_METRICS].find((metric) => metric.name === name);
}
