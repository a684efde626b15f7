/**
 * The metric catalogue: every RDS Proxy CloudWatch metric with the name, unit, dimension
 * sets and "most useful statistic" AWS documents, so that alarms and dashboards written for
 * RDS Proxy work on Tidepool by swapping only the namespace (PutMetricData cannot write into
 * AWS/RDS).
 *
 * Sources: the RDS User Guide's rds-proxy.monitoring page (24 current metrics, dimension sets
 * 1–4) and the preview guide's table (TargetGroupWriterAvailableDuration, which the current
 * page dropped). AWS gives no unit column: latencies are "time in microseconds", availability
 * is a percentage, the rest are counts.
 *
 * This module has no runtime imports: the CDK construct can import it for its metric* helpers.
 */

export type MetricUnit = 'Count' | 'Microseconds' | 'Percent' | 'Seconds';

/**
 * The dimension sets RDS Proxy publishes under.
 * - `proxy`: ProxyName
 * - `endpoint`: ProxyName, EndpointName (only when an endpoint name is configured)
 * - `target`: ProxyName, TargetGroup, Target
 * - `targetRole`: ProxyName, TargetGroup, TargetRole
 */
export type DimensionSet = 'proxy' | 'endpoint' | 'target' | 'targetRole';

/**
 * How a metric's value comes about.
 * - `counter`: events counted since the last publish (CloudWatch) / since start (Prometheus).
 * - `gauge`: a current value read at publish time.
 * - `latency`: a distribution of durations, published as a statistic set.
 * - `availability`: share of the period a role was available, integrated over time.
 */
export type MetricKind = 'counter' | 'gauge' | 'latency' | 'availability';

export interface MetricDefinition {
  readonly name: MetricName;
  readonly unit: MetricUnit;
  readonly kind: MetricKind;
  readonly dimensionSets: readonly DimensionSet[];
  /** The statistic AWS recommends; the construct's metric* helpers default to it. */
  readonly statistic: 'Sum' | 'Average';
  readonly description: string;
  /** True for metrics RDS Proxy does not have (Tidepool additions); false for AWS's own. */
  readonly tidepoolOnly: boolean;
}

export const METRIC_NAMES = [
  'AvailabilityPercentage',
  'ClientConnections',
  'ClientConnectionsClosed',
  'ClientConnectionsNoTLS',
  'ClientConnectionsReceived',
  'ClientConnectionsSetupFailedAuth',
  'ClientConnectionsSetupSucceeded',
  'ClientConnectionsTLS',
  'DatabaseConnectionRequests',
  'DatabaseConnectionRequestsWithTLS',
  'DatabaseConnections',
  'DatabaseConnectionsBorrowLatency',
  'DatabaseConnectionsCurrentlyBorrowed',
  'DatabaseConnectionsCurrentlyInTransaction',
  'DatabaseConnectionsCurrentlySessionPinned',
  'DatabaseConnectionsSetupFailed',
  'DatabaseConnectionsSetupSucceeded',
  'DatabaseConnectionsWithTLS',
  'MaxDatabaseConnectionsAllowed',
  'QueryDatabaseResponseLatency',
  'QueryRequests',
  'QueryRequestsNoTLS',
  'QueryRequestsTLS',
  'QueryResponseLatency',
  'TargetGroupWriterAvailableDuration',
  'DatabaseConnectionsBorrowTimeouts',
] as const;
export type MetricName = (typeof METRIC_NAMES)[number];

const CLIENT_SIDE: readonly DimensionSet[] = ['proxy', 'endpoint'];
const DATABASE_SIDE: readonly DimensionSet[] = ['proxy', 'target', 'targetRole'];

function define(
  name: MetricName,
  unit: MetricUnit,
  kind: MetricKind,
  dimensionSets: readonly DimensionSet[],
  statistic: 'Sum' | 'Average',
  description: string,
  tidepoolOnly = false,
): MetricDefinition {
  return { name, unit, kind, dimensionSets, statistic, description, tidepoolOnly };
}

export const METRIC_DEFINITIONS: readonly MetricDefinition[] = [
  define('AvailabilityPercentage', 'Percent', 'availability', ['targetRole'], 'Average',
    'Percentage of the period the target group was available in the role of the TargetRole dimension.'),
  define('ClientConnections', 'Count', 'gauge', CLIENT_SIDE, 'Sum', 'Current number of client connections.'),
  define('ClientConnectionsClosed', 'Count', 'counter', CLIENT_SIDE, 'Sum', 'Number of client connections closed.'),
  define('ClientConnectionsNoTLS', 'Count', 'gauge', CLIENT_SIDE, 'Sum', 'Current number of client connections without TLS.'),
  define('ClientConnectionsReceived', 'Count', 'counter', CLIENT_SIDE, 'Sum', 'Number of client connection requests received.'),
  define('ClientConnectionsSetupFailedAuth', 'Count', 'counter', CLIENT_SIDE, 'Sum',
    'Number of client connection attempts that failed because of authentication or TLS misconfiguration.'),
  define('ClientConnectionsSetupSucceeded', 'Count', 'counter', CLIENT_SIDE, 'Sum',
    'Number of client connections established with any authentication mechanism, with or without TLS.'),
  define('ClientConnectionsTLS', 'Count', 'gauge', CLIENT_SIDE, 'Sum', 'Current number of client connections with TLS.'),
  define('DatabaseConnectionRequests', 'Count', 'counter', DATABASE_SIDE, 'Sum', 'Number of requests to create a database connection.'),
  define('DatabaseConnectionRequestsWithTLS', 'Count', 'counter', DATABASE_SIDE, 'Sum',
    'Number of requests to create a database connection with TLS.'),
  define('DatabaseConnections', 'Count', 'gauge', DATABASE_SIDE, 'Sum', 'Current number of database connections.'),
  define('DatabaseConnectionsBorrowLatency', 'Microseconds', 'latency', CLIENT_SIDE, 'Average',
    'Time in microseconds for the proxy to get a database connection for a client.'),
  define('DatabaseConnectionsCurrentlyBorrowed', 'Count', 'gauge', DATABASE_SIDE, 'Sum',
    'Current number of database connections in the borrow state.'),
  define('DatabaseConnectionsCurrentlyInTransaction', 'Count', 'gauge', DATABASE_SIDE, 'Sum',
    'Current number of database connections in a transaction.'),
  define('DatabaseConnectionsCurrentlySessionPinned', 'Count', 'gauge', DATABASE_SIDE, 'Sum',
    'Current number of database connections pinned because of session-state-changing operations.'),
  define('DatabaseConnectionsSetupFailed', 'Count', 'counter', DATABASE_SIDE, 'Sum', 'Number of database connection requests that failed.'),
  define('DatabaseConnectionsSetupSucceeded', 'Count', 'counter', DATABASE_SIDE, 'Sum',
    'Number of database connections established with or without TLS.'),
  define('DatabaseConnectionsWithTLS', 'Count', 'gauge', DATABASE_SIDE, 'Sum', 'Current number of database connections with TLS.'),
  define('MaxDatabaseConnectionsAllowed', 'Count', 'gauge', DATABASE_SIDE, 'Sum', 'Maximum number of database connections allowed.'),
  define('QueryDatabaseResponseLatency', 'Microseconds', 'latency', ['proxy', 'endpoint', 'target', 'targetRole'], 'Average',
    'Time in microseconds the database took to respond to a query.'),
  define('QueryRequests', 'Count', 'counter', CLIENT_SIDE, 'Sum', 'Number of queries received (a multi-statement query counts as one).'),
  define('QueryRequestsNoTLS', 'Count', 'counter', CLIENT_SIDE, 'Sum', 'Number of queries received from non-TLS connections.'),
  define('QueryRequestsTLS', 'Count', 'counter', CLIENT_SIDE, 'Sum', 'Number of queries received from TLS connections.'),
  define('QueryResponseLatency', 'Microseconds', 'latency', CLIENT_SIDE, 'Average',
    'Time in microseconds between receiving a query request and the proxy starting to respond to it.'),
  define('TargetGroupWriterAvailableDuration', 'Seconds', 'availability', ['proxy'], 'Average',
    'Seconds per minute during which the target group had a writer (preview-era RDS Proxy metric).'),
  define('DatabaseConnectionsBorrowTimeouts', 'Count', 'counter', ['proxy'], 'Sum',
    'Number of clients that waited connectionBorrowTimeout without getting a database connection (Tidepool only).', true),
];

export function metricDefinition(name: MetricName): MetricDefinition {
  const found = METRIC_DEFINITIONS.find((d) => d.name === name);
  if (!found) throw new Error(`unknown metric ${name}`);
  return found;
}

/** The target group name RDS Proxy uses for the default (and only) target group. */
export const DEFAULT_TARGET_GROUP = 'default';

/**
 * TargetRole dimension values as CloudWatch shows them for RDS Proxy. They differ from the
 * RDS API's TargetRole enum (READ_WRITE): the writer is "READWRITE" (observed in
 * prometheus-community/yet-another-cloudwatch-exporter#1501 sample output), so alarms copied
 * from RDS Proxy match only with these spellings.
 */
export const TARGET_ROLE_DIMENSION = { READ_WRITE: 'READWRITE', READ_ONLY: 'READ_ONLY' } as const;
export type TargetRoleDimension = (typeof TARGET_ROLE_DIMENSION)[keyof typeof TARGET_ROLE_DIMENSION];

/**
 * The Target dimension value for a database instance. RDS Proxy uses "db:<instance identifier>";
 * a self-hosted target has no identifier, so host and port stand in for it.
 */
export function targetDimensionValue(target: { host: string; port: number }): string {
  return `db:${target.host}:${target.port}`;
}
