/**
 * The metrics package's public surface, plus one function that assembles the pieces from
 * config so the proxy's start-up code has a single call to make.
 */
import { CloudWatchPublisher, PublisherLog } from './cloudwatch-publisher';
import type { TidepoolConfig } from '../config/schema';

type MetricsConfig = TidepoolConfig['metrics'];
/** Where the CloudWatch client sends: the task's region, or a local stand-in endpoint in tests. */
interface AwsConfig {
  region?: string | undefined;
  endpoint?: string | undefined;
}
import { PrometheusExporter, createPrometheusExporter } from './prometheus';
import { GaugeProvider, ProxyMetrics } from './proxy-metrics';

export * from './definitions';
export * from './proxy-metrics';
export * from './cloudwatch-publisher';
export * from './prometheus';

export interface MetricsRuntime {
  readonly metrics: ProxyMetrics;
  readonly prometheus: PrometheusExporter;
  /** Null when metrics.enabled is false (Prometheus still works). */
  readonly publisher: CloudWatchPublisher | null;
  /** Starts the periodic CloudWatch push. */
  start(): void;
  /** Pushes the last partial period (bounded wait) and stops. */
  stop(): Promise<void>;
}

export function createMetricsRuntime(options: {
  proxyName: string;
  metrics: MetricsConfig;
  aws?: AwsConfig;
  gauges?: GaugeProvider;
  log?: PublisherLog;
}): MetricsRuntime {
  const metrics = new ProxyMetrics({
    proxyName: options.proxyName,
    ...(options.metrics.endpointName !== undefined ? { endpointName: options.metrics.endpointName } : {}),
    ...(options.gauges ? { gauges: options.gauges } : {}),
  });
  const prometheus = createPrometheusExporter(metrics);
  const publisher = options.metrics.enabled
    ? new CloudWatchPublisher({
        source: metrics,
        namespace: options.metrics.namespace,
        publishIntervalMs: options.metrics.publishIntervalSeconds * 1000,
        ...(options.aws?.region !== undefined ? { region: options.aws.region } : {}),
        ...(options.aws?.endpoint !== undefined ? { endpoint: options.aws.endpoint } : {}),
        ...(options.log ? { log: options.log } : {}),
      })
    : null;
  return {
    metrics,
    prometheus,
    publisher,
    start: () => publisher?.start(),
    stop: async () => {
      await publisher?.stop();
    },
  };
}
