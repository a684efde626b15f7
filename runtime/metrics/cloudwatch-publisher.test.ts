/**
 * The publisher against a local endpoint that speaks CloudWatch's wire protocol, through the
 * real @aws-sdk/client-cloudwatch client (endpoint override, static credentials).
 */
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { LocalCloudWatchEndpoint } from '../../integ/aws/cloudwatch-endpoint';
import { targetDimensionValue } from './definitions';
import { CloudWatchPublisher, PublisherLog } from './cloudwatch-publisher';
import { MetricDatum, ProxyMetrics, TargetGauges } from './proxy-metrics';

const WRITER = targetDimensionValue({ host: 'db-a', port: 5432 });

let endpoint: LocalCloudWatchEndpoint;
const clients: CloudWatchClient[] = [];
const publishers: CloudWatchPublisher[] = [];

beforeEach(async () => {
  endpoint = await LocalCloudWatchEndpoint.start();
});

afterEach(async () => {
  await Promise.all(publishers.splice(0).map((p) => p.stop(100)));
  for (const client of clients.splice(0)) client.destroy();
  await endpoint.stop();
});

function realClient(): CloudWatchClient {
  const client = new CloudWatchClient({
    region: 'us-east-1',
    endpoint: endpoint.url,
    credentials: { accessKeyId: 'AKIDLOCALTEST', secretAccessKey: 'local-test-secret' },
    maxAttempts: 1,
  });
  clients.push(client);
  return client;
}

class RecordingLog implements PublisherLog {
  readonly lines: { level: string; fields: object; message: string }[] = [];
  warn(fields: object, message: string): void {
    this.lines.push({ level: 'warn', fields, message });
  }
  error(fields: object, message: string): void {
    this.lines.push({ level: 'error', fields, message });
  }
  debug(fields: object, message: string): void {
    this.lines.push({ level: 'debug', fields, message });
  }
}

function publisher(options: Partial<ConstructorParameters<typeof CloudWatchPublisher>[0]> & { source: ConstructorParameters<typeof CloudWatchPublisher>[0]['source'] }): CloudWatchPublisher {
  const p = new CloudWatchPublisher({ client: realClient(), retryInitialDelayMs: 20, retryMaxDelayMs: 100, ...options });
  publishers.push(p);
  return p;
}

function writerGauges(extra: Partial<TargetGauges> = {}) {
  const targets: TargetGauges[] = [
    { target: WRITER, role: 'READ_WRITE', state: 'AVAILABLE', borrowed: 1, inTransaction: 1, sessionPinned: 2, maxConnectionsAllowed: 50, ...extra },
  ];
  return { targets: () => targets };
}

/** A source that yields `count` datums per period, each tagged with the period number. */
function syntheticSource(count: number) {
  let period = 0;
  return {
    get period() {
      return period;
    },
    takePeriod(): MetricDatum[] {
      period++;
      return Array.from({ length: count }, (_, i) => ({
        metricName: 'QueryRequests' as const,
        unit: 'Count' as const,
        dimensions: [{ Name: 'ProxyName', Value: `p${i}` }],
        timestamp: new Date(),
        value: period,
      }));
    },
  };
}

async function eventually(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('CloudWatchPublisher', () => {
  it('publishes the metrics with the default namespace, units, dimensions and statistic sets', async () => {
    const metrics = new ProxyMetrics({ proxyName: 'orders', gauges: writerGauges() });
    metrics.clientConnectionOpened(true);
    metrics.queryRequest(true);
    metrics.queryResponseLatency(1.5);
    metrics.queryResponseLatency(0.5);
    metrics.databaseConnectionOpened(false, WRITER);
    const p = publisher({ source: metrics });

    p.publishNow();
    await p.flush();

    expect(endpoint.requests).toHaveLength(1);
    expect(endpoint.requests[0]!.namespace).toBe('Tidepool');
    expect(endpoint.find('ClientConnectionsTLS', { ProxyName: 'orders' })).toEqual([
      expect.objectContaining({ Value: 1, Unit: 'Count', Timestamp: expect.any(Number) }),
    ]);
    const latency = endpoint.find('QueryResponseLatency', { ProxyName: 'orders' });
    expect(latency).toEqual([
      expect.objectContaining({ Unit: 'Microseconds', StatisticValues: { SampleCount: 2, Sum: 2000, Minimum: 500, Maximum: 1500 } }),
    ]);
    expect(latency[0]!.Value).toBeUndefined();
    expect(endpoint.find('DatabaseConnectionsCurrentlySessionPinned', { ProxyName: 'orders', TargetGroup: 'default', Target: WRITER })).toEqual([
      expect.objectContaining({ Value: 2 }),
    ]);
    expect(endpoint.find('MaxDatabaseConnectionsAllowed', { ProxyName: 'orders', TargetGroup: 'default', TargetRole: 'READWRITE' })).toEqual([
      expect.objectContaining({ Value: 50 }),
    ]);
    expect(endpoint.find('AvailabilityPercentage', { ProxyName: 'orders', TargetGroup: 'default', TargetRole: 'READWRITE' })).toEqual([
      expect.objectContaining({ Unit: 'Percent' }),
    ]);
    expect(p.stats).toMatchObject({ sentRequests: 1, failedAttempts: 0, droppedRequests: 0, queuedRequests: 0 });
    expect(p.stats.sentDatums).toBe(endpoint.datums().length);
  });

  it('uses a configured namespace and refuses the reserved AWS/ prefix', async () => {
    const p = publisher({ source: new ProxyMetrics({ proxyName: 'orders' }), namespace: 'Acme/Tidepool' });
    p.publishNow();
    await p.flush();
    expect(endpoint.requests.map((r) => r.namespace)).toEqual(['Acme/Tidepool']);
    expect(() => new CloudWatchPublisher({ source: new ProxyMetrics({ proxyName: 'x' }), client: realClient(), namespace: 'AWS/RDS' })).toThrow(/AWS\//);
  });

  it('splits a period into requests of at most 1000 datums, gzip-compressed by the SDK', async () => {
    const source = syntheticSource(2501);
    const p = publisher({ source });
    p.publishNow();
    await p.flush();
    expect(endpoint.requests.map((r) => r.metricData.length)).toEqual([1000, 1000, 501]);
    expect(endpoint.requests[0]!.contentEncoding).toBe('gzip');
    expect(new Set(endpoint.datums().map((d) => d.Dimensions[0]!.Value)).size).toBe(2501);
  });

  it('splits a real proxy with many targets within the limits', async () => {
    const targets: TargetGauges[] = Array.from({ length: 120 }, (_, i) => ({
      target: targetDimensionValue({ host: `db-${i}`, port: 5432 }),
      role: i === 0 ? 'READ_WRITE' : 'READ_ONLY',
      state: 'AVAILABLE',
      borrowed: 0,
      inTransaction: 0,
      sessionPinned: 0,
      maxConnectionsAllowed: 0,
    }));
    const metrics = new ProxyMetrics({ proxyName: 'orders', gauges: { targets: () => targets } });
    const expectedDatums = metrics.takePeriod().length; // the same shape the publisher will send next
    const p = publisher({ source: metrics });
    p.publishNow();
    await p.flush();
    expect(expectedDatums).toBeGreaterThan(1000);
    expect(endpoint.requests.length).toBe(Math.ceil(expectedDatums / 1000));
    for (const request of endpoint.requests) expect(request.metricData.length).toBeLessThanOrEqual(1000);
    expect(endpoint.datums()).toHaveLength(expectedDatums);
  });

  it('honours a smaller maxDatumsPerRequest', async () => {
    const p = publisher({ source: syntheticSource(10), maxDatumsPerRequest: 4 });
    p.publishNow();
    await p.flush();
    expect(endpoint.requests.map((r) => r.metricData.length)).toEqual([4, 4, 2]);
  });

  it('retries a failed push with backoff until CloudWatch accepts it, delivering it once', async () => {
    const log = new RecordingLog();
    const p = publisher({ source: syntheticSource(3), log });
    endpoint.failNext(2);
    p.publishNow();
    await p.flush();
    expect(endpoint.attempts).toBe(3);
    expect(endpoint.requests).toHaveLength(1);
    expect(endpoint.datums()).toHaveLength(3);
    expect(p.stats).toMatchObject({ sentRequests: 1, failedAttempts: 2, droppedRequests: 0 });
    expect(log.lines.filter((l) => l.level === 'warn' && /retry/.test(l.message))).toHaveLength(2);
  });

  it('retries throttling, but drops a request CloudWatch rejects as invalid', async () => {
    const log = new RecordingLog();
    const p = publisher({ source: syntheticSource(1), log });
    endpoint.failNext(1, { status: 400, code: 'Throttling' });
    p.publishNow();
    await p.flush();
    expect(endpoint.requests).toHaveLength(1);

    endpoint.failNext(1, { status: 400, code: 'InvalidParameterValue' });
    p.publishNow();
    await p.flush();
    expect(endpoint.attempts).toBe(3); // throttled + accepted + rejected, no retry of the rejected one
    expect(endpoint.requests).toHaveLength(1);
    expect(p.stats.droppedRequests).toBe(1);
    expect(log.lines.some((l) => l.level === 'error' && /rejected/.test(l.message))).toBe(true);
  });

  it('keeps a bounded queue while CloudWatch is down: drops the oldest with a warning, delivers the newest later', async () => {
    const log = new RecordingLog();
    const source = syntheticSource(1);
    const p = publisher({ source, log, maxQueuedRequests: 3, retryInitialDelayMs: 5, retryMaxDelayMs: 5 });
    endpoint.failNext(1_000_000);
    for (let i = 0; i < 8; i++) p.publishNow();
    expect(p.stats.queuedRequests).toBe(3);
    expect(p.stats.droppedRequests).toBe(5);
    expect(log.lines.filter((l) => l.level === 'warn' && /dropped the oldest/.test(l.message))).toHaveLength(5);

    await eventually(() => endpoint.attempts >= 3);
    endpoint.clearFailures(); // CloudWatch recovers
    await p.flush();
    // The head that was in flight when the queue overflowed is kept (period 1), then the newest periods.
    const delivered = endpoint.datums().map((d) => d.Value);
    expect(delivered).toEqual([1, 7, 8]);
  });

  it('never blocks the caller or the event loop while CloudWatch hangs', async () => {
    const metrics = new ProxyMetrics({ proxyName: 'orders' });
    const p = publisher({ source: metrics, requestTimeoutMs: 300 });
    endpoint.delayResponses(1000);

    const started = performance.now();
    p.publishNow();
    const publishCallMs = performance.now() - started;

    // While the request hangs, the hot path keeps running...
    const hotPathStart = performance.now();
    for (let i = 0; i < 100_000; i++) {
      metrics.queryRequest(false);
      metrics.queryResponseLatency(0.3);
    }
    const hotPathMs = performance.now() - hotPathStart;
    // ...and timers keep firing on time (a blocking send would stall them for the full second).
    let maxLagMs = 0;
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      maxLagMs = Math.max(maxLagMs, now - last - 10);
      last = now;
    }, 10);
    await new Promise((r) => setTimeout(r, 400));
    clearInterval(ticker);

    // Generous bounds: they must hold on a loaded CI machine, yet a publisher that waited for
    // the 1 s response (or spun) would break all three.
    expect(publishCallMs).toBeLessThan(100);
    expect(hotPathMs).toBeLessThan(1500);
    expect(maxLagMs).toBeLessThan(250);
    // The hung request was abandoned after requestTimeoutMs and is queued for a retry.
    await eventually(() => p.stats.failedAttempts >= 1);
    expect(p.stats.queuedRequests).toBe(1);
    endpoint.delayResponses(0);
    await p.flush();
    expect(endpoint.requests.length).toBeGreaterThanOrEqual(1);
    expect(p.stats.queuedRequests).toBe(0);
  });

  it('publishes on its own every publishIntervalMs and sends the last partial period on stop', async () => {
    const source = syntheticSource(1);
    const p = publisher({ source, publishIntervalMs: 50 });
    p.start();
    await eventually(() => endpoint.requests.length >= 3);
    const periodsBeforeStop = source.period;
    await p.stop();
    expect(source.period).toBe(periodsBeforeStop + 1);
    expect(endpoint.requests).toHaveLength(source.period);
  });

  it('survives a gauge provider that throws: the period is skipped and logged', async () => {
    const log = new RecordingLog();
    const metrics = new ProxyMetrics({
      proxyName: 'orders',
      gauges: {
        targets() {
          throw new Error('pool exploded');
        },
      },
    });
    const p = publisher({ source: metrics, log });
    expect(() => p.publishNow()).not.toThrow();
    await p.flush();
    expect(endpoint.attempts).toBe(0);
    expect(log.lines.some((l) => l.level === 'error' && JSON.stringify(l.fields).includes('pool exploded'))).toBe(true);
  });

  it('builds its own client from region and endpoint (the config path)', async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = 'AKIDFROMENV';
    process.env.AWS_SECRET_ACCESS_KEY = 'env-secret';
    try {
      const p = new CloudWatchPublisher({ source: syntheticSource(2), region: 'eu-west-1', endpoint: endpoint.url });
      p.publishNow();
      await p.stop(2000);
      expect(endpoint.requests[0]!.metricData).toHaveLength(2);
    } finally {
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      else process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
      else process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
  });
});

describe('scripted workload through the real SDK', () => {
  it('shows each metric with the expected value after 10 clients, 3 pinned, 1 failed login and 1 failover', async () => {
    const A = targetDimensionValue({ host: 'db-a', port: 5432 });
    const B = targetDimensionValue({ host: 'db-b', port: 5432 });
    let now = 1_800_000_000_000;
    let targets: TargetGauges[] = [
      { target: A, role: 'READ_WRITE', state: 'AVAILABLE', borrowed: 0, inTransaction: 0, sessionPinned: 0, maxConnectionsAllowed: 100 },
      { target: B, role: 'READ_ONLY', state: 'AVAILABLE', borrowed: 0, inTransaction: 0, sessionPinned: 0, maxConnectionsAllowed: 0 },
    ];
    const metrics = new ProxyMetrics({ proxyName: 'orders', gauges: { targets: () => targets }, now: () => now });
    metrics.observeTargets(targets);

    // 11 clients connect (all TLS); one fails its login.
    for (let i = 0; i < 11; i++) metrics.clientConnectionOpened(true);
    for (let i = 0; i < 10; i++) metrics.clientSetupSucceeded();
    metrics.clientSetupFailed();
    metrics.clientConnectionClosed(true);
    // 4 server connections on A, each client runs 2 queries.
    for (let i = 0; i < 4; i++) {
      metrics.databaseConnectionRequest(true, A);
      metrics.databaseConnectionOpened(true, A);
    }
    for (let i = 0; i < 20; i++) {
      metrics.queryRequest(true);
      metrics.borrowed(0.1);
      metrics.queryDatabaseResponseLatency(1, A);
      metrics.queryResponseLatency(1.2);
    }
    now += 20_000;
    // Failover: A dies (its 4 connections close), 10 s without a writer, then B is promoted.
    targets = [
      { ...targets[0]!, role: 'UNKNOWN', state: 'UNAVAILABLE', maxConnectionsAllowed: 0 },
      { ...targets[1]!, role: 'READ_ONLY', state: 'AVAILABLE' },
    ];
    metrics.observeTargets(targets);
    for (let i = 0; i < 4; i++) metrics.databaseConnectionClosed(true, A);
    metrics.databaseConnectionRequest(true, A);
    metrics.databaseConnectionFailed(A);
    now += 10_000;
    targets = [targets[0]!, { ...targets[1]!, role: 'READ_WRITE', borrowed: 3, inTransaction: 1, sessionPinned: 3, maxConnectionsAllowed: 100 }];
    metrics.observeTargets(targets);
    // 3 pinned clients hold connections on B.
    for (let i = 0; i < 3; i++) {
      metrics.databaseConnectionRequest(true, B);
      metrics.databaseConnectionOpened(true, B);
    }
    now += 30_000;

    const p = publisher({ source: metrics });
    p.publishNow();
    await p.flush();

    const proxy = { ProxyName: 'orders' };
    const role = (r: string) => ({ ProxyName: 'orders', TargetGroup: 'default', TargetRole: r });
    const target = (t: string) => ({ ProxyName: 'orders', TargetGroup: 'default', Target: t });
    const value = (metric: string, dims: Record<string, string>) => {
      const found = endpoint.find(metric, dims);
      expect(found).toHaveLength(1);
      return found[0]!.Value ?? found[0]!.StatisticValues;
    };
    expect(value('ClientConnectionsReceived', proxy)).toBe(11);
    expect(value('ClientConnectionsSetupSucceeded', proxy)).toBe(10);
    expect(value('ClientConnectionsSetupFailedAuth', proxy)).toBe(1);
    expect(value('ClientConnectionsClosed', proxy)).toBe(1);
    expect(value('ClientConnections', proxy)).toBe(10);
    expect(value('ClientConnectionsTLS', proxy)).toBe(10);
    expect(value('ClientConnectionsNoTLS', proxy)).toBe(0);
    expect(value('QueryRequests', proxy)).toBe(20);
    expect(value('QueryRequestsTLS', proxy)).toBe(20);
    expect(value('QueryRequestsNoTLS', proxy)).toBe(0);
    expect(value('DatabaseConnectionsBorrowLatency', proxy)).toEqual({ SampleCount: 20, Sum: 2000, Minimum: 100, Maximum: 100 });
    expect(value('QueryResponseLatency', proxy)).toEqual({ SampleCount: 20, Sum: 24000, Minimum: 1200, Maximum: 1200 });
    expect(value('QueryDatabaseResponseLatency', target(A))).toEqual({ SampleCount: 20, Sum: 20000, Minimum: 1000, Maximum: 1000 });
    expect(value('DatabaseConnectionRequests', proxy)).toBe(8);
    expect(value('DatabaseConnectionRequests', role('READWRITE'))).toBe(7); // the failed one was sent while A had no role
    expect(value('DatabaseConnectionRequestsWithTLS', target(B))).toBe(3);
    expect(value('DatabaseConnectionsSetupSucceeded', proxy)).toBe(7);
    expect(value('DatabaseConnectionsSetupFailed', target(A))).toBe(1);
    expect(value('DatabaseConnections', target(A))).toBe(0);
    expect(value('DatabaseConnections', role('READWRITE'))).toBe(3);
    expect(value('DatabaseConnectionsWithTLS', proxy)).toBe(3);
    expect(value('DatabaseConnectionsCurrentlyBorrowed', role('READWRITE'))).toBe(3);
    expect(value('DatabaseConnectionsCurrentlyInTransaction', proxy)).toBe(1);
    expect(value('DatabaseConnectionsCurrentlySessionPinned', target(B))).toBe(3);
    expect(value('MaxDatabaseConnectionsAllowed', proxy)).toBe(100);
    // Writer available 20 s + 30 s of 60 s; the reader role 20 s + 10 s.
    expect(value('AvailabilityPercentage', role('READWRITE'))).toBeCloseTo(83.333, 3);
    expect(value('AvailabilityPercentage', role('READ_ONLY'))).toBe(50);
    expect(value('TargetGroupWriterAvailableDuration', proxy)).toBe(50);
    expect(value('DatabaseConnectionsBorrowTimeouts', proxy)).toBe(0);
    // Every one of the catalogue's metrics reached CloudWatch.
    expect(new Set(endpoint.datums().map((d) => d.MetricName)).size).toBe(26);
  });
});
