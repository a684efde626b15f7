/**
 * The same metrics in Prometheus text, through prom-client with a registry per proxy (the
 * global registry would mix proxies embedded in one process, e.g. in tests).
 *
 * Nothing here runs on the hot path: every metric is read from ProxyMetrics when scraped.
 *
 * Naming: `tidepool_` + the CloudWatch name in snake_case; counters end in `_total`,
 * latencies are histograms in seconds (`_seconds`), as Prometheus conventions want.
 * Dimension sets become labels without double counting: client-side metrics carry only
 * `proxy_name`; database-side ones are per target (`target_group`, `target`) and the role
 * is joined from `tidepool_target_info` rather than being a label, so a failover does not
 * restart every counter series under a new label set.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Aggregator } from 'prom-client';
import { LATENCY_BUCKET_BOUNDS_MICROS, type HistogramView } from './recorders';
import type { CumulativeMetrics, ProxyMetrics } from './proxy-metrics';

export const PROMETHEUS_PREFIX = 'tidepool_';

/** The object prom-client's registry turns into text for one histogram family. */
interface RenderedHistogram {
  name: string;
  help: string;
  type: 'histogram';
  aggregator: Aggregator;
  values: { metricName: string; labels: Record<string, string | number>; sharedLabels: Record<string, never>; value: number }[];
}

/**
 * A histogram whose buckets come from a LatencyRecorder instead of observe() calls, so the
 * hot path pays for one recorder, not for prom-client's label hashing.
 */
class RecordedHistogram<L extends string> extends Histogram<L> {
  constructor(
    name: string,
    help: string,
    labelNames: readonly L[],
    registry: Registry,
    private readonly read: () => { labels: Record<string, string>; histogram: HistogramView }[],
  ) {
    super({
      name,
      help,
      labelNames,
      buckets: LATENCY_BUCKET_BOUNDS_MICROS.map((micros) => micros / 1e6),
      registers: [registry],
    });
  }

  // Set by prom-client's constructor; declared so the override below can read them.
  declare readonly name: string;
  declare readonly help: string;
  declare readonly aggregator: Aggregator;

  /**
   * The registry renders text from getForPromString (and get() builds on it), so this is the
   * one method to replace. It is not in prom-client's typings, hence no `override`.
   */
  async getForPromString(): Promise<RenderedHistogram> {
    const values: RenderedHistogram['values'] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, histogram } of this.read()) {
      let cumulative = 0;
      LATENCY_BUCKET_BOUNDS_MICROS.forEach((upperMicros, index) => {
        cumulative += histogram.bucketCounts[index]!;
        values.push({ metricName: bucket, labels: { ...labels, le: upperMicros / 1e6 }, sharedLabels: {}, value: cumulative });
      });
      values.push({ metricName: bucket, labels: { ...labels, le: '+Inf' }, sharedLabels: {}, value: histogram.count });
      values.push({ metricName: `${this.name}_sum`, labels, sharedLabels: {}, value: histogram.sumMicros / 1e6 });
      values.push({ metricName: `${this.name}_count`, labels, sharedLabels: {}, value: histogram.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', values, aggregator: this.aggregator };
  }
}

export interface PrometheusExporter {
  readonly registry: Registry;
  readonly contentType: string;
  /** The exposition text for /metrics. */
  metrics(): Promise<string>;
}

/** Builds a registry whose metrics read `metrics` at each scrape. */
export function createPrometheusExporter(metrics: ProxyMetrics): PrometheusExporter {
  const registry = new Registry();
  registry.setDefaultLabels({ proxy_name: metrics.proxyName });
  // One read per scrape: every metric's collect() below uses the same snapshot.
  let snapshot: CumulativeMetrics | null = null;
  const current = (): CumulativeMetrics => (snapshot ??= metrics.cumulative());
  const targetGroup = metrics.targetGroup;

  const counter = (name: string, help: string, read: (s: CumulativeMetrics) => number): void => {
    new Counter({
      name: PROMETHEUS_PREFIX + name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read(current()));
      },
    });
  };
  const gauge = (name: string, help: string, read: (s: CumulativeMetrics) => number): void => {
    new Gauge({
      name: PROMETHEUS_PREFIX + name,
      help,
      registers: [registry],
      collect() {
        this.set(read(current()));
      },
    });
  };
  type TargetLabel = 'target_group' | 'target';
  const targetCounter = (name: string, help: string, read: (t: CumulativeMetrics['targets'][number]) => number): void => {
    new Counter<TargetLabel>({
      name: PROMETHEUS_PREFIX + name,
      help,
      labelNames: ['target_group', 'target'],
      registers: [registry],
      collect() {
        this.reset();
        for (const t of current().targets) this.inc({ target_group: targetGroup, target: t.target }, read(t));
      },
    });
  };
  const targetGauge = (name: string, help: string, read: (t: CumulativeMetrics['targets'][number]) => number): void => {
    new Gauge<TargetLabel>({
      name: PROMETHEUS_PREFIX + name,
      help,
      labelNames: ['target_group', 'target'],
      registers: [registry],
      collect() {
        this.reset();
        for (const t of current().targets) this.set({ target_group: targetGroup, target: t.target }, read(t));
      },
    });
  };

  counter('client_connections_received_total', 'Client connection requests received.', (s) => s.clientConnectionsReceived);
  counter('client_connections_setup_succeeded_total', 'Client connections established.', (s) => s.clientConnectionsSetupSucceeded);
  counter('client_connections_setup_failed_auth_total', 'Client connection attempts that failed authentication or TLS setup.', (s) => s.clientConnectionsSetupFailedAuth);
  counter('client_connections_closed_total', 'Client connections closed.', (s) => s.clientConnectionsClosed);
  gauge('client_connections', 'Current client connections.', (s) => s.clientConnections.tls + s.clientConnections.noTls);
  gauge('client_connections_tls', 'Current client connections with TLS.', (s) => s.clientConnections.tls);
  gauge('client_connections_no_tls', 'Current client connections without TLS.', (s) => s.clientConnections.noTls);
  counter('query_requests_total', 'Queries received (a multi-statement query counts as one).', (s) => s.queryRequests);
  counter('query_requests_tls_total', 'Queries received on TLS connections.', (s) => s.queryRequestsTls);
  counter('query_requests_no_tls_total', 'Queries received on non-TLS connections.', (s) => s.queryRequestsNoTls);
  counter('database_connections_borrow_timeouts_total', 'Clients that waited connectionBorrowTimeout without a database connection.', (s) => s.borrowTimeouts);

  targetCounter('database_connection_requests_total', 'Requests to create a database connection.', (t) => t.connectionRequests);
  targetCounter('database_connection_requests_with_tls_total', 'Requests to create a database connection with TLS.', (t) => t.connectionRequestsWithTls);
  targetCounter('database_connections_setup_succeeded_total', 'Database connections established.', (t) => t.connectionsSetupSucceeded);
  targetCounter('database_connections_setup_failed_total', 'Database connection requests that failed.', (t) => t.connectionsSetupFailed);
  targetGauge('database_connections', 'Current database connections.', (t) => t.connections);
  targetGauge('database_connections_with_tls', 'Current database connections with TLS.', (t) => t.connectionsWithTls);
  targetGauge('database_connections_currently_borrowed', 'Current database connections lent to clients.', (t) => t.borrowed);
  targetGauge('database_connections_currently_in_transaction', 'Current database connections in a transaction.', (t) => t.inTransaction);
  targetGauge('database_connections_currently_session_pinned', 'Current database connections pinned to a client session.', (t) => t.sessionPinned);
  targetGauge('max_database_connections_allowed', 'Maximum database connections allowed.', (t) => t.maxConnectionsAllowed);

  new Gauge<'target_group' | 'target' | 'target_role' | 'state'>({
    name: `${PROMETHEUS_PREFIX}target_info`,
    help: 'Always 1; labels carry the target role (READ_WRITE, READ_ONLY, UNKNOWN) and health state, for joins.',
    labelNames: ['target_group', 'target', 'target_role', 'state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const t of current().targets) this.set({ target_group: targetGroup, target: t.target, target_role: t.role, state: t.state }, 1);
    },
  });
  new Gauge<'target_group' | 'target_role'>({
    name: `${PROMETHEUS_PREFIX}availability_percentage`,
    help: 'Whether the target group is available in the role right now (100 or 0); avg_over_time gives AvailabilityPercentage.',
    labelNames: ['target_group', 'target_role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const a of current().availability) this.set({ target_group: targetGroup, target_role: a.role }, a.availableNow ? 100 : 0);
    },
  });
  new Counter<'target_group' | 'target_role'>({
    name: `${PROMETHEUS_PREFIX}target_group_available_seconds_total`,
    help: 'Seconds the target group was available in the role; rate() * 60 gives TargetGroupWriterAvailableDuration.',
    labelNames: ['target_group', 'target_role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const a of current().availability) this.inc({ target_group: targetGroup, target_role: a.role }, a.availableSecondsTotal);
    },
  });

  new RecordedHistogram<never>(
    `${PROMETHEUS_PREFIX}database_connections_borrow_latency_seconds`,
    'Time for the proxy to get a database connection for a client.',
    [],
    registry,
    () => [{ labels: {}, histogram: current().borrowLatency }],
  );
  new RecordedHistogram<never>(
    `${PROMETHEUS_PREFIX}query_response_latency_seconds`,
    'Time between receiving a query request and the proxy starting to respond.',
    [],
    registry,
    () => [{ labels: {}, histogram: current().queryResponseLatency }],
  );
  new RecordedHistogram<TargetLabel>(
    `${PROMETHEUS_PREFIX}query_database_response_latency_seconds`,
    'Time the database took to respond to a query.',
    ['target_group', 'target'],
    registry,
    () =>
      current().targets.map((t) => ({ labels: { target_group: targetGroup, target: t.target }, histogram: t.queryDatabaseResponseLatency })),
  );

  return {
    registry,
    contentType: registry.contentType,
    async metrics() {
      snapshot = null;
      try {
        return await registry.metrics();
      } finally {
        snapshot = null;
      }
    },
  };
}
