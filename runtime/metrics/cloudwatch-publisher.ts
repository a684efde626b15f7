/**
 * Pushes the proxy's metrics to CloudWatch with PutMetricData, once per interval.
 *
 * Each Fargate task publishes its own values under the same dimensions (no task dimension),
 * so CloudWatch's Sum statistic adds the tasks up, as RDS Proxy's per-instance publishing
 * does ("Use CloudWatch statistics to aggregate the values for a proxy across all the
 * associated instances"). Latencies are statistic sets, so Average stays exact across tasks.
 *
 * Traffic never waits for CloudWatch: collecting a period is a synchronous walk over a few
 * hundred numbers once per interval; sending is asynchronous, one request in flight, from a
 * bounded queue. When CloudWatch is unreachable the queue keeps the newest requests and drops
 * the oldest with a warning; failed requests are retried with exponential backoff.
 */
import { CloudWatchClient, MetricDatum as CloudWatchDatum, PutMetricDataCommand, StandardUnit } from '@aws-sdk/client-cloudwatch';
import type { MetricDatum } from './proxy-metrics';

/** PutMetricData accepts at most 1000 MetricDatum items per request. */
export const MAX_DATUMS_PER_REQUEST = 1000;
/**
 * PutMetricData requests are limited to 1 MB; we stay well under it (the SDK's JSON and
 * headers add to our estimate).
 */
export const MAX_REQUEST_BYTES = 900 * 1024;

/** The part of the logger the publisher uses (pino's Logger satisfies it). */
export interface PublisherLog {
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
  debug(fields: object, message: string): void;
}

/** Where the publisher gets its data: ProxyMetrics implements it. */
export interface MetricPeriodSource {
  takePeriod(): MetricDatum[];
}

export interface CloudWatchPublisherOptions {
  source: MetricPeriodSource;
  /** @default "Tidepool" (CloudWatch refuses namespaces starting with "AWS/") */
  namespace?: string;
  /** @default 60000 */
  publishIntervalMs?: number;
  /** A ready client (tests, custom credentials). When omitted one is built from region/endpoint. */
  client?: CloudWatchClient;
  /** For the built client; omitted means the SDK's usual lookup (AWS_REGION, the task metadata). */
  region?: string;
  /** For the built client: a CloudWatch-compatible endpoint (local testing). */
  endpoint?: string;
  /** @default 1000 */
  maxDatumsPerRequest?: number;
  /** Requests kept while CloudWatch fails; beyond it the oldest is dropped. @default 60 (an hour of one-request periods) */
  maxQueuedRequests?: number;
  /** First retry delay; it doubles per consecutive failure. @default 1000 */
  retryInitialDelayMs?: number;
  /** @default 60000 */
  retryMaxDelayMs?: number;
  /** A request that takes longer is aborted and retried. @default 10000 */
  requestTimeoutMs?: number;
  log?: PublisherLog;
}

export interface PublisherStats {
  /** Requests CloudWatch accepted. */
  readonly sentRequests: number;
  readonly sentDatums: number;
  /** Attempts that failed (each retry counts). */
  readonly failedAttempts: number;
  /** Requests dropped: queue overflow or a non-retryable rejection. */
  readonly droppedRequests: number;
  readonly queuedRequests: number;
}

interface QueuedRequest {
  readonly datums: CloudWatchDatum[];
  attempts: number;
}

const SILENT_LOG: PublisherLog = { warn() {}, error() {}, debug() {} };

export class CloudWatchPublisher {
  readonly namespace: string;
  private readonly client: CloudWatchClient;
  private readonly ownsClient: boolean;
  private readonly options: Required<
    Pick<
      CloudWatchPublisherOptions,
      'publishIntervalMs' | 'maxDatumsPerRequest' | 'maxQueuedRequests' | 'retryInitialDelayMs' | 'retryMaxDelayMs' | 'requestTimeoutMs'
    >
  >;
  private readonly log: PublisherLog;
  private readonly source: MetricPeriodSource;
  private readonly queue: QueuedRequest[] = [];
  private intervalTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> | null = null;
  private inFlightAbort: AbortController | null = null;
  private consecutiveFailures = 0;
  private stopped = false;
  private counters = { sentRequests: 0, sentDatums: 0, failedAttempts: 0, droppedRequests: 0 };

  constructor(options: CloudWatchPublisherOptions) {
    this.source = options.source;
    const namespace = options.namespace ?? 'Tidepool';
    if (namespace.startsWith('AWS/')) throw new Error(`namespace ${namespace}: CloudWatch reserves namespaces starting with "AWS/"`);
    this.namespace = namespace;
    this.options = {
      publishIntervalMs: options.publishIntervalMs ?? 60_000,
      maxDatumsPerRequest: Math.min(MAX_DATUMS_PER_REQUEST, Math.max(1, options.maxDatumsPerRequest ?? MAX_DATUMS_PER_REQUEST)),
      maxQueuedRequests: Math.max(1, options.maxQueuedRequests ?? 60),
      retryInitialDelayMs: options.retryInitialDelayMs ?? 1000,
      retryMaxDelayMs: options.retryMaxDelayMs ?? 60_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
    };
    this.log = options.log ?? SILENT_LOG;
    if (options.client) {
      this.client = options.client;
      this.ownsClient = false;
    } else {
      this.client = new CloudWatchClient({
        ...(options.region !== undefined ? { region: options.region } : {}),
        ...(options.endpoint !== undefined ? { endpoint: options.endpoint } : {}),
        // Our own queue retries with backoff across periods; SDK retries on top would multiply the wait.
        maxAttempts: 1,
      });
      this.ownsClient = true;
    }
  }

  /** Starts the periodic publish. The timer is unref'd: metrics never keep the process alive. */
  start(): void {
    if (this.intervalTimer || this.stopped) return;
    this.intervalTimer = setInterval(() => this.publishNow(), this.options.publishIntervalMs);
    this.intervalTimer.unref();
  }

  /** Ends the current period and queues its data; returns at once (sending is asynchronous). */
  publishNow(): void {
    if (this.stopped) return;
    let datums: MetricDatum[];
    try {
      datums = this.source.takePeriod();
    } catch (error) {
      // A broken gauge provider must cost us one period of metrics, not the process.
      this.log.error({ event: 'metrics-collect-failed', error: errorMessage(error) }, 'collecting metrics failed');
      return;
    }
    for (const batch of splitIntoRequests(datums.map(toCloudWatchDatum), this.options.maxDatumsPerRequest)) {
      this.enqueue({ datums: batch, attempts: 0 });
    }
    this.pump();
  }

  /** Resolves when the queue is empty or `timeoutMs` passed (tests, shutdown). */
  async flush(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.queue.length > 0 || this.inFlight) && Date.now() < deadline) {
      if (this.retryTimer && !this.inFlight) {
        // Shutdown should not sit out a long backoff: try once more now.
        clearTimeout(this.retryTimer);
        this.retryTimer = null;
        this.pump();
      }
      await (this.inFlight ?? new Promise((r) => setTimeout(r, 10)));
    }
  }

  /** Publishes the last partial period, waits up to `flushTimeoutMs` for the queue, then stops. */
  async stop(flushTimeoutMs = 5000): Promise<void> {
    if (this.stopped) return;
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    this.intervalTimer = null;
    this.publishNow();
    await this.flush(flushTimeoutMs);
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.inFlightAbort?.abort();
    if (this.queue.length > 0) {
      this.log.warn({ event: 'metrics-unsent-at-stop', requests: this.queue.length }, 'stopping with unsent metrics');
    }
    if (this.ownsClient) this.client.destroy();
  }

  get stats(): PublisherStats {
    return { ...this.counters, queuedRequests: this.queue.length };
  }

  private enqueue(request: QueuedRequest): void {
    this.queue.push(request);
    while (this.queue.length > this.options.maxQueuedRequests) {
      // Never the in-flight head: dropping it would send it twice or lose track of it.
      const dropIndex = this.inFlight ? 1 : 0;
      const [dropped] = this.queue.splice(dropIndex, 1);
      this.counters.droppedRequests++;
      this.log.warn(
        { event: 'metrics-dropped', datums: dropped?.datums.length ?? 0, queued: this.queue.length },
        'CloudWatch metrics queue full: dropped the oldest request',
      );
    }
  }

  /** Sends the head of the queue unless a send or a backoff is already pending. */
  private pump(): void {
    if (this.inFlight || this.retryTimer || this.queue.length === 0 || this.stopped) return;
    const request = this.queue[0]!;
    request.attempts++;
    const abort = new AbortController();
    this.inFlightAbort = abort;
    const timeout = setTimeout(() => abort.abort(), this.options.requestTimeoutMs);
    timeout.unref();
    this.inFlight = this.client
      .send(new PutMetricDataCommand({ Namespace: this.namespace, MetricData: request.datums }), { abortSignal: abort.signal })
      .then(
        () => {
          this.removeFromQueue(request);
          this.consecutiveFailures = 0;
          this.counters.sentRequests++;
          this.counters.sentDatums += request.datums.length;
        },
        (error: unknown) => this.onSendFailed(request, error),
      )
      .finally(() => {
        clearTimeout(timeout);
        this.inFlight = null;
        this.inFlightAbort = null;
        this.pump();
      });
  }

  private onSendFailed(request: QueuedRequest, error: unknown): void {
    this.counters.failedAttempts++;
    if (!isRetryable(error)) {
      this.removeFromQueue(request);
      this.counters.droppedRequests++;
      this.log.error(
        { event: 'metrics-rejected', error: errorMessage(error), datums: request.datums.length },
        'CloudWatch rejected metrics; not retrying',
      );
      return;
    }
    this.consecutiveFailures++;
    const delay = Math.min(this.options.retryMaxDelayMs, this.options.retryInitialDelayMs * 2 ** (this.consecutiveFailures - 1));
    // Jitter spreads the retries of many tasks that lost CloudWatch at the same moment.
    const jittered = Math.round(delay / 2 + Math.random() * (delay / 2));
    this.log.warn(
      { event: 'metrics-push-failed', error: errorMessage(error), attempt: request.attempts, retryInMs: jittered },
      'CloudWatch PutMetricData failed; will retry',
    );
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, jittered);
    this.retryTimer.unref();
  }

  private removeFromQueue(request: QueuedRequest): void {
    const index = this.queue.indexOf(request);
    if (index >= 0) this.queue.splice(index, 1);
  }
}

function toCloudWatchDatum(datum: MetricDatum): CloudWatchDatum {
  const base = {
    MetricName: datum.metricName,
    Unit: datum.unit as StandardUnit,
    Dimensions: datum.dimensions.map((d) => ({ Name: d.Name, Value: d.Value })),
    Timestamp: datum.timestamp,
  };
  if (datum.statistics) {
    return {
      ...base,
      StatisticValues: {
        SampleCount: datum.statistics.sampleCount,
        Sum: datum.statistics.sum,
        Minimum: datum.statistics.minimum,
        Maximum: datum.statistics.maximum,
      },
    };
  }
  return { ...base, Value: datum.value };
}

/** Splits into requests of at most `maxDatums` items and about MAX_REQUEST_BYTES of JSON each. */
export function splitIntoRequests(datums: CloudWatchDatum[], maxDatums: number): CloudWatchDatum[][] {
  const requests: CloudWatchDatum[][] = [];
  let current: CloudWatchDatum[] = [];
  let currentBytes = 0;
  for (const datum of datums) {
    const bytes = JSON.stringify(datum).length + 1;
    if (current.length > 0 && (current.length >= maxDatums || currentBytes + bytes > MAX_REQUEST_BYTES)) {
      requests.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(datum);
    currentBytes += bytes;
  }
  if (current.length > 0) requests.push(current);
  return requests;
}

/**
 * Server faults, throttling, timeouts and network errors are worth retrying; a request
 * CloudWatch refused as invalid would be refused again, so it is dropped.
 */
function isRetryable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return true;
  const details = error as { name?: unknown; $fault?: unknown; $metadata?: { httpStatusCode?: unknown } };
  if (typeof details.name === 'string' && /Throttl|TooManyRequests|RequestLimitExceeded|AbortError|TimeoutError/i.test(details.name)) {
    return true;
  }
  if (details.$fault === 'client') return false;
  const status = details.$metadata?.httpStatusCode;
  return !(typeof status === 'number' && status >= 400 && status < 500);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
