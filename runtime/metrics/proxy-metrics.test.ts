import { METRIC_DEFINITIONS, MetricName, metricDefinition, targetDimensionValue } from './definitions';
import { GaugeProvider, MetricDatum, ProxyMetrics, TargetGauges, dimensionSetOf } from './proxy-metrics';

const WRITER = targetDimensionValue({ host: 'db-a.internal', port: 5432 });
const STANDBY = targetDimensionValue({ host: 'db-b.internal', port: 5432 });

class FakeClock {
  ms = 1_700_000_000_000;
  now = (): number => this.ms;
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

/** A provider whose answer the test changes, like the pool's state changing under load. */
class MutableGauges implements GaugeProvider {
  constructor(public current: TargetGauges[]) {}
  targets(): readonly TargetGauges[] {
    return this.current;
  }
}

function target(name: string, role: TargetGauges['role'], state: TargetGauges['state'], extra: Partial<TargetGauges> = {}): TargetGauges {
  return { target: name, role, state, borrowed: 0, inTransaction: 0, sessionPinned: 0, maxConnectionsAllowed: 0, ...extra };
}

function valueOf(data: MetricDatum[], metric: MetricName, dims: Record<string, string>): number | undefined {
  const found = find(data, metric, dims);
  if (found.length > 1) throw new Error(`${metric} appears ${found.length} times with ${JSON.stringify(dims)}`);
  return found[0]?.value;
}

function find(data: MetricDatum[], metric: MetricName, dims: Record<string, string>): MetricDatum[] {
  const wanted = JSON.stringify(Object.entries(dims).sort());
  return data.filter(
    (d) => d.metricName === metric && JSON.stringify(d.dimensions.map((x) => [x.Name, x.Value]).sort()) === wanted,
  );
}

const PROXY = { ProxyName: 'orders' };
const byTarget = (t: string) => ({ ...PROXY, TargetGroup: 'default', Target: t });
const byRole = (r: string) => ({ ...PROXY, TargetGroup: 'default', TargetRole: r });

describe('metric catalogue', () => {
  // The research note's table (1–24) plus the preview guide's TargetGroupWriterAvailableDuration.
  const expected: [MetricName, string, string][] = [
    ['AvailabilityPercentage', 'Percent', 'targetRole'],
    ['ClientConnections', 'Count', 'proxy,endpoint'],
    ['ClientConnectionsClosed', 'Count', 'proxy,endpoint'],
    ['ClientConnectionsNoTLS', 'Count', 'proxy,endpoint'],
    ['ClientConnectionsReceived', 'Count', 'proxy,endpoint'],
    ['ClientConnectionsSetupFailedAuth', 'Count', 'proxy,endpoint'],
    ['ClientConnectionsSetupSucceeded', 'Count', 'proxy,endpoint'],
    ['ClientConnectionsTLS', 'Count', 'proxy,endpoint'],
    ['DatabaseConnectionRequests', 'Count', 'proxy,target,targetRole'],
    ['DatabaseConnectionRequestsWithTLS', 'Count', 'proxy,target,targetRole'],
    ['DatabaseConnections', 'Count', 'proxy,target,targetRole'],
    ['DatabaseConnectionsBorrowLatency', 'Microseconds', 'proxy,endpoint'],
    ['DatabaseConnectionsCurrentlyBorrowed', 'Count', 'proxy,target,targetRole'],
    ['DatabaseConnectionsCurrentlyInTransaction', 'Count', 'proxy,target,targetRole'],
    ['DatabaseConnectionsCurrentlySessionPinned', 'Count', 'proxy,target,targetRole'],
    ['DatabaseConnectionsSetupFailed', 'Count', 'proxy,target,targetRole'],
    ['DatabaseConnectionsSetupSucceeded', 'Count', 'proxy,target,targetRole'],
    ['DatabaseConnectionsWithTLS', 'Count', 'proxy,target,targetRole'],
    ['MaxDatabaseConnectionsAllowed', 'Count', 'proxy,target,targetRole'],
    ['QueryDatabaseResponseLatency', 'Microseconds', 'proxy,endpoint,target,targetRole'],
    ['QueryRequests', 'Count', 'proxy,endpoint'],
    ['QueryRequestsNoTLS', 'Count', 'proxy,endpoint'],
    ['QueryRequestsTLS', 'Count', 'proxy,endpoint'],
    ['QueryResponseLatency', 'Microseconds', 'proxy,endpoint'],
    ['TargetGroupWriterAvailableDuration', 'Seconds', 'proxy'],
  ];

  it.each(expected)('%s has unit %s and dimension sets %s', (name, unit, sets) => {
    const definition = metricDefinition(name);
    expect(definition.unit).toBe(unit);
    expect(definition.dimensionSets.join(',')).toBe(sets);
    expect(definition.tidepoolOnly).toBe(false);
  });

  it('has nothing beyond the RDS Proxy metrics except explicitly marked Tidepool additions', () => {
    const extra = METRIC_DEFINITIONS.filter((d) => !expected.some(([name]) => name === d.name));
    expect(extra.map((d) => [d.name, d.tidepoolOnly])).toEqual([['DatabaseConnectionsBorrowTimeouts', true]]);
  });
});

describe('ProxyMetrics.takePeriod', () => {
  it('reports a scripted workload under every dimension set with the expected values', () => {
    const clock = new FakeClock();
    const gauges = new MutableGauges([
      target(WRITER, 'READ_WRITE', 'AVAILABLE', { borrowed: 4, inTransaction: 2, sessionPinned: 3, maxConnectionsAllowed: 90 }),
      target(STANDBY, 'READ_ONLY', 'AVAILABLE'),
    ]);
    const metrics = new ProxyMetrics({ proxyName: 'orders', gauges, now: clock.now });
    metrics.observeTargets(gauges.current);

    // 11 clients arrive; 3 negotiate TLS; 1 fails its login and leaves.
    for (let i = 0; i < 11; i++) metrics.clientConnectionOpened(false);
    for (let i = 0; i < 3; i++) metrics.clientConnectionUpgradedToTls();
    for (let i = 0; i < 10; i++) metrics.clientSetupSucceeded();
    metrics.clientSetupFailed();
    metrics.clientConnectionClosed(false);
    // 5 database connections requested on the writer (2 with TLS), 4 open, 1 fails.
    for (let i = 0; i < 5; i++) metrics.databaseConnectionRequest(i < 2, WRITER);
    for (let i = 0; i < 4; i++) metrics.databaseConnectionOpened(i < 2, WRITER);
    metrics.databaseConnectionFailed(WRITER);
    // 7 queries: 2 on TLS connections.
    for (let i = 0; i < 7; i++) metrics.queryRequest(i < 2);
    metrics.borrowed(0.2);
    metrics.borrowed(1.8);
    metrics.borrowTimedOut();
    metrics.queryResponseLatency(3);
    metrics.queryDatabaseResponseLatency(2, WRITER);
    metrics.queryDatabaseResponseLatency(4, WRITER);
    clock.advance(60);

    const data = metrics.takePeriod();

    expect(valueOf(data, 'ClientConnectionsReceived', PROXY)).toBe(11);
    expect(valueOf(data, 'ClientConnectionsSetupSucceeded', PROXY)).toBe(10);
    expect(valueOf(data, 'ClientConnectionsSetupFailedAuth', PROXY)).toBe(1);
    expect(valueOf(data, 'ClientConnectionsClosed', PROXY)).toBe(1);
    expect(valueOf(data, 'ClientConnections', PROXY)).toBe(10);
    expect(valueOf(data, 'ClientConnectionsTLS', PROXY)).toBe(3);
    expect(valueOf(data, 'ClientConnectionsNoTLS', PROXY)).toBe(7);
    expect(valueOf(data, 'QueryRequests', PROXY)).toBe(7);
    expect(valueOf(data, 'QueryRequestsTLS', PROXY)).toBe(2);
    expect(valueOf(data, 'QueryRequestsNoTLS', PROXY)).toBe(5);
    expect(valueOf(data, 'DatabaseConnectionsBorrowTimeouts', PROXY)).toBe(1);

    for (const dims of [PROXY, byTarget(WRITER), byRole('READWRITE')]) {
      expect(valueOf(data, 'DatabaseConnectionRequests', dims)).toBe(5);
      expect(valueOf(data, 'DatabaseConnectionRequestsWithTLS', dims)).toBe(2);
      expect(valueOf(data, 'DatabaseConnectionsSetupSucceeded', dims)).toBe(4);
      expect(valueOf(data, 'DatabaseConnectionsSetupFailed', dims)).toBe(1);
      expect(valueOf(data, 'DatabaseConnections', dims)).toBe(4);
      expect(valueOf(data, 'DatabaseConnectionsWithTLS', dims)).toBe(2);
      expect(valueOf(data, 'DatabaseConnectionsCurrentlyBorrowed', dims)).toBe(4);
      expect(valueOf(data, 'DatabaseConnectionsCurrentlyInTransaction', dims)).toBe(2);
      expect(valueOf(data, 'DatabaseConnectionsCurrentlySessionPinned', dims)).toBe(3);
      expect(valueOf(data, 'MaxDatabaseConnectionsAllowed', dims)).toBe(90);
    }
    for (const dims of [byTarget(STANDBY), byRole('READ_ONLY')]) {
      expect(valueOf(data, 'DatabaseConnections', dims)).toBe(0);
      expect(valueOf(data, 'DatabaseConnectionRequests', dims)).toBe(0);
    }

    const borrow = find(data, 'DatabaseConnectionsBorrowLatency', PROXY)[0]!;
    expect(borrow.unit).toBe('Microseconds');
    expect(borrow.statistics).toEqual({ sampleCount: 2, sum: 2000, minimum: 200, maximum: 1800 });
    expect(find(data, 'QueryResponseLatency', PROXY)[0]!.statistics).toEqual({ sampleCount: 1, sum: 3000, minimum: 3000, maximum: 3000 });
    for (const dims of [PROXY, byTarget(WRITER), byRole('READWRITE')]) {
      expect(find(data, 'QueryDatabaseResponseLatency', dims)[0]!.statistics).toEqual({ sampleCount: 2, sum: 6000, minimum: 2000, maximum: 4000 });
    }
    // No samples, no datum: CloudWatch refuses a statistic set with SampleCount 0.
    expect(find(data, 'QueryDatabaseResponseLatency', byTarget(STANDBY))).toEqual([]);

    expect(valueOf(data, 'AvailabilityPercentage', byRole('READWRITE'))).toBe(100);
    expect(valueOf(data, 'AvailabilityPercentage', byRole('READ_ONLY'))).toBe(100);
    expect(valueOf(data, 'TargetGroupWriterAvailableDuration', PROXY)).toBe(60);
  });

  it('uses only the dimension sets each metric definition allows, with the definition unit', () => {
    const clock = new FakeClock();
    const metrics = new ProxyMetrics({
      proxyName: 'orders',
      endpointName: 'orders-rw',
      gauges: new MutableGauges([target(WRITER, 'READ_WRITE', 'AVAILABLE'), target(STANDBY, 'READ_ONLY', 'AVAILABLE')]),
      now: clock.now,
    });
    metrics.borrowed(1);
    metrics.queryResponseLatency(1);
    metrics.queryDatabaseResponseLatency(1, WRITER);
    clock.advance(60);
    const data = metrics.takePeriod();
    const seen = new Set<string>();
    for (const datum of data) {
      const definition = metricDefinition(datum.metricName);
      expect(definition.dimensionSets).toContain(dimensionSetOf(datum.dimensions));
      expect(datum.unit).toBe(definition.unit);
      seen.add(`${datum.metricName}/${dimensionSetOf(datum.dimensions)}`);
    }
    // ...and every allowed (metric, set) pair shows up at least once.
    for (const definition of METRIC_DEFINITIONS) {
      for (const set of definition.dimensionSets) expect(seen).toContain(`${definition.name}/${set}`);
    }
    expect(valueOf(data, 'ClientConnectionsReceived', { ...PROXY, EndpointName: 'orders-rw' })).toBe(0);
  });

  it('omits the EndpointName set when no endpoint name is configured', () => {
    const metrics = new ProxyMetrics({ proxyName: 'orders' });
    metrics.clientConnectionOpened(false);
    const data = metrics.takePeriod();
    expect(data.some((d) => d.dimensions.some((x) => x.Name === 'EndpointName'))).toBe(false);
    expect(valueOf(data, 'ClientConnectionsReceived', PROXY)).toBe(1);
  });

  it('publishes counters as deltas per period and gauges as current values', () => {
    const clock = new FakeClock();
    const metrics = new ProxyMetrics({ proxyName: 'orders', now: clock.now });
    metrics.clientConnectionOpened(false);
    metrics.clientConnectionOpened(false);
    metrics.queryRequest(false);
    metrics.queryResponseLatency(5);
    metrics.takePeriod();
    metrics.queryRequest(false);
    clock.advance(60);
    const second = metrics.takePeriod();
    expect(valueOf(second, 'ClientConnectionsReceived', PROXY)).toBe(0);
    expect(valueOf(second, 'QueryRequests', PROXY)).toBe(1);
    expect(valueOf(second, 'ClientConnections', PROXY)).toBe(2);
    expect(find(second, 'QueryResponseLatency', PROXY)).toEqual([]);
  });

  it('integrates availability over the period instead of sampling it at publish time', () => {
    const clock = new FakeClock();
    const metrics = new ProxyMetrics({ proxyName: 'orders', now: clock.now });
    metrics.observeTargets([target(WRITER, 'READ_WRITE', 'AVAILABLE')]);
    clock.advance(30);
    // The writer fails: no writer for 15 s, then the standby is promoted.
    metrics.observeTargets([target(WRITER, 'UNKNOWN', 'UNAVAILABLE'), target(STANDBY, 'READ_ONLY', 'AVAILABLE')]);
    clock.advance(15);
    metrics.observeTargets([target(WRITER, 'UNKNOWN', 'UNAVAILABLE'), target(STANDBY, 'READ_WRITE', 'AVAILABLE')]);
    clock.advance(15);
    const data = metrics.takePeriod();
    expect(valueOf(data, 'AvailabilityPercentage', byRole('READWRITE'))).toBe(75);
    expect(valueOf(data, 'TargetGroupWriterAvailableDuration', PROXY)).toBe(45);
    expect(valueOf(data, 'AvailabilityPercentage', byRole('READ_ONLY'))).toBe(25);

    clock.advance(60);
    const next = metrics.takePeriod();
    expect(valueOf(next, 'AvailabilityPercentage', byRole('READWRITE'))).toBe(100);
    expect(valueOf(next, 'AvailabilityPercentage', byRole('READ_ONLY'))).toBe(0);
  });

  it('reports 0 % writer availability before any writer is known and no READ_ONLY series without readers', () => {
    const clock = new FakeClock();
    const metrics = new ProxyMetrics({ proxyName: 'orders', now: clock.now });
    clock.advance(60);
    const data = metrics.takePeriod();
    expect(valueOf(data, 'AvailabilityPercentage', byRole('READWRITE'))).toBe(0);
    expect(valueOf(data, 'TargetGroupWriterAvailableDuration', PROXY)).toBe(0);
    expect(find(data, 'AvailabilityPercentage', byRole('READ_ONLY'))).toEqual([]);
  });

  it('attributes database events to the role the target had when they happened (failover mid-period)', () => {
    const clock = new FakeClock();
    const metrics = new ProxyMetrics({ proxyName: 'orders', now: clock.now });
    metrics.observeTargets([target(WRITER, 'READ_WRITE', 'AVAILABLE'), target(STANDBY, 'READ_ONLY', 'AVAILABLE')]);
    metrics.databaseConnectionRequest(false, WRITER);
    metrics.databaseConnectionRequest(false, WRITER);
    metrics.observeTargets([target(WRITER, 'UNKNOWN', 'UNAVAILABLE'), target(STANDBY, 'READ_WRITE', 'AVAILABLE')]);
    metrics.databaseConnectionRequest(false, STANDBY);
    const data = metrics.takePeriod();
    expect(valueOf(data, 'DatabaseConnectionRequests', byRole('READWRITE'))).toBe(3);
    expect(valueOf(data, 'DatabaseConnectionRequests', byRole('READ_ONLY'))).toBe(0);
    expect(valueOf(data, 'DatabaseConnectionRequests', byTarget(WRITER))).toBe(2);
    expect(valueOf(data, 'DatabaseConnectionRequests', byTarget(STANDBY))).toBe(1);
    expect(valueOf(data, 'DatabaseConnectionRequests', PROXY)).toBe(3);
  });

  it('pulls gauges from the provider at each publish, so pool changes show without events', () => {
    const gauges = new MutableGauges([target(WRITER, 'READ_WRITE', 'AVAILABLE', { sessionPinned: 1, maxConnectionsAllowed: 10 })]);
    const metrics = new ProxyMetrics({ proxyName: 'orders', gauges });
    expect(valueOf(metrics.takePeriod(), 'DatabaseConnectionsCurrentlySessionPinned', PROXY)).toBe(1);
    gauges.current = [target(WRITER, 'READ_WRITE', 'AVAILABLE', { sessionPinned: 3, maxConnectionsAllowed: 10 })];
    expect(valueOf(metrics.takePeriod(), 'DatabaseConnectionsCurrentlySessionPinned', PROXY)).toBe(3);
  });

  it('keeps live counts at zero on unmatched closes instead of going negative', () => {
    const metrics = new ProxyMetrics({ proxyName: 'orders' });
    metrics.clientConnectionClosed(true);
    metrics.databaseConnectionClosed(true, WRITER);
    const data = metrics.takePeriod();
    expect(valueOf(data, 'ClientConnectionsTLS', PROXY)).toBe(0);
    expect(valueOf(data, 'DatabaseConnectionsWithTLS', byTarget(WRITER))).toBe(0);
    expect(valueOf(data, 'ClientConnectionsClosed', PROXY)).toBe(1);
  });

  it('ignores NaN and negative latencies rather than poisoning the statistics', () => {
    const metrics = new ProxyMetrics({ proxyName: 'orders' });
    metrics.queryResponseLatency(Number.NaN);
    metrics.queryResponseLatency(-1);
    metrics.queryResponseLatency(2);
    expect(find(metrics.takePeriod(), 'QueryResponseLatency', PROXY)[0]!.statistics).toEqual({
      sampleCount: 1,
      sum: 2000,
      minimum: 2000,
      maximum: 2000,
    });
  });

  it('stamps every datum of a period with the same whole-second timestamp', () => {
    const clock = new FakeClock();
    clock.ms += 1234;
    const metrics = new ProxyMetrics({ proxyName: 'orders', now: clock.now });
    const data = metrics.takePeriod();
    const stamps = new Set(data.map((d) => d.timestamp.getTime()));
    expect([...stamps]).toEqual([Math.floor(clock.ms / 1000) * 1000]);
  });
});
