import { register as globalRegistry } from 'prom-client';
import { targetDimensionValue } from './definitions';
import { createPrometheusExporter } from './prometheus';
import { ProxyMetrics, TargetGauges } from './proxy-metrics';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  type: string;
  help: string;
  samples: Sample[];
}

/**
 * A strict parser of the Prometheus text format 0.0.4: every line must be a HELP, a TYPE or a
 * sample of the family declared just before it; label values must be properly escaped; values
 * must be numbers. Anything else throws, so malformed output fails the test.
 */
function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  let current: { name: string; family: Family } | null = null;
  const metricName = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const labelPair = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\["\\\\n])*"';
  const sampleLine = new RegExp(`^(${metricName})(?:\\{((?:${labelPair})(?:,${labelPair})*)?\\})? (-?[0-9.e+-]+|NaN|\\+Inf|-Inf)$`);
  const lines = text.split('\n');
  expect(lines[lines.length - 1]).toBe(''); // ends with a newline
  for (const line of lines.slice(0, -1)) {
    if (line === '') continue;
    let match: RegExpMatchArray | null;
    if ((match = line.match(new RegExp(`^# HELP (${metricName}) (.*)$`)))) {
      if (families.has(match[1]!)) throw new Error(`family ${match[1]} declared twice`);
      current = { name: match[1]!, family: { type: '', help: match[2]!, samples: [] } };
      families.set(match[1]!, current.family);
    } else if ((match = line.match(new RegExp(`^# TYPE (${metricName}) (counter|gauge|histogram|summary|untyped)$`)))) {
      if (!current || current.name !== match[1]) throw new Error(`TYPE without HELP: ${line}`);
      current.family.type = match[2]!;
    } else if ((match = line.match(sampleLine))) {
      if (!current) throw new Error(`sample before any family: ${line}`);
      const name = match[1]!;
      const allowed = current.family.type === 'histogram' ? ['_bucket', '_sum', '_count'].map((s) => current!.name + s) : [current.name];
      if (!allowed.includes(name)) throw new Error(`sample ${name} does not belong to family ${current.name}`);
      const labels: Record<string, string> = {};
      for (const pair of (match[2] ?? '').match(new RegExp(labelPair, 'g')) ?? []) {
        const eq = pair.indexOf('=');
        labels[pair.slice(0, eq)] = pair.slice(eq + 2, -1).replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      }
      const value = Number(match[3]!.replace('+Inf', 'Infinity').replace('-Inf', '-Infinity'));
      current.family.samples.push({ name, labels, value });
    } else {
      throw new Error(`not Prometheus text format: ${JSON.stringify(line)}`);
    }
  }
  return families;
}

function sample(families: Map<string, Family>, family: string, name: string, labels: Record<string, string>): number {
  const f = families.get(family);
  if (!f) throw new Error(`no family ${family}`);
  const matches = f.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length !== 1) throw new Error(`${matches.length} samples of ${name} ${JSON.stringify(labels)}`);
  return matches[0]!.value;
}

const WRITER = targetDimensionValue({ host: 'db-a', port: 5432 });
const STANDBY = targetDimensionValue({ host: 'db-b', port: 5432 });

function gauges(targets: TargetGauges[]) {
  return { targets: () => targets };
}

describe('Prometheus exporter', () => {
  it('renders parseable text with the workload values, labels and types', async () => {
    const metrics = new ProxyMetrics({
      proxyName: 'orders',
      gauges: gauges([
        { target: WRITER, role: 'READ_WRITE', state: 'AVAILABLE', borrowed: 2, inTransaction: 1, sessionPinned: 3, maxConnectionsAllowed: 90 },
        { target: STANDBY, role: 'READ_ONLY', state: 'AVAILABLE', borrowed: 0, inTransaction: 0, sessionPinned: 0, maxConnectionsAllowed: 0 },
      ]),
    });
    for (let i = 0; i < 10; i++) metrics.clientConnectionOpened(i < 3);
    metrics.clientSetupFailed();
    metrics.queryRequest(true);
    metrics.queryRequest(false);
    metrics.queryRequest(false);
    metrics.databaseConnectionRequest(true, WRITER);
    metrics.databaseConnectionOpened(true, WRITER);
    metrics.borrowed(0.05); // 50 µs: first bucket
    metrics.borrowed(3); // 3 ms: the 5 ms bucket
    metrics.queryDatabaseResponseLatency(1, WRITER);

    const exporter = createPrometheusExporter(metrics);
    const families = parsePrometheusText(await exporter.metrics());

    expect(exporter.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(families.get('tidepool_client_connections_received_total')!.type).toBe('counter');
    expect(sample(families, 'tidepool_client_connections_received_total', 'tidepool_client_connections_received_total', { proxy_name: 'orders' })).toBe(10);
    expect(sample(families, 'tidepool_client_connections_tls', 'tidepool_client_connections_tls', {})).toBe(3);
    expect(sample(families, 'tidepool_client_connections_no_tls', 'tidepool_client_connections_no_tls', {})).toBe(7);
    expect(sample(families, 'tidepool_client_connections_setup_failed_auth_total', 'tidepool_client_connections_setup_failed_auth_total', {})).toBe(1);
    expect(sample(families, 'tidepool_query_requests_no_tls_total', 'tidepool_query_requests_no_tls_total', {})).toBe(2);
    expect(sample(families, 'tidepool_database_connection_requests_with_tls_total', 'tidepool_database_connection_requests_with_tls_total', { target: WRITER, target_group: 'default' })).toBe(1);
    expect(sample(families, 'tidepool_database_connections_currently_session_pinned', 'tidepool_database_connections_currently_session_pinned', { target: WRITER })).toBe(3);
    expect(sample(families, 'tidepool_max_database_connections_allowed', 'tidepool_max_database_connections_allowed', { target: WRITER })).toBe(90);
    expect(sample(families, 'tidepool_target_info', 'tidepool_target_info', { target: STANDBY, target_role: 'READ_ONLY', state: 'AVAILABLE' })).toBe(1);
    expect(sample(families, 'tidepool_availability_percentage', 'tidepool_availability_percentage', { target_role: 'READWRITE' })).toBe(100);

    const borrow = 'tidepool_database_connections_borrow_latency_seconds';
    expect(families.get(borrow)!.type).toBe('histogram');
    expect(sample(families, borrow, `${borrow}_bucket`, { le: '0.0001' })).toBe(1);
    expect(sample(families, borrow, `${borrow}_bucket`, { le: '0.0025' })).toBe(1);
    expect(sample(families, borrow, `${borrow}_bucket`, { le: '0.005' })).toBe(2);
    expect(sample(families, borrow, `${borrow}_bucket`, { le: '+Inf' })).toBe(2);
    expect(sample(families, borrow, `${borrow}_count`, {})).toBe(2);
    expect(sample(families, borrow, `${borrow}_sum`, {})).toBeCloseTo(0.00305, 9);
    const dbLatency = 'tidepool_query_database_response_latency_seconds';
    expect(sample(families, dbLatency, `${dbLatency}_count`, { target: WRITER })).toBe(1);
  });

  it('keeps histogram buckets cumulative and ordered for every series', async () => {
    const metrics = new ProxyMetrics({ proxyName: 'orders' });
    for (const ms of [0.01, 0.3, 0.3, 7, 90, 400, 200_000]) metrics.queryResponseLatency(ms);
    const families = parsePrometheusText(await createPrometheusExporter(metrics).metrics());
    const buckets = families.get('tidepool_query_response_latency_seconds')!.samples.filter((s) => s.name.endsWith('_bucket'));
    const bounds = buckets.map((b) => Number(b.labels.le!.replace('+Inf', 'Infinity')));
    expect(bounds).toEqual([...bounds].sort((a, b) => a - b));
    const counts = buckets.map((b) => b.value);
    for (let i = 1; i < counts.length; i++) expect(counts[i]!).toBeGreaterThanOrEqual(counts[i - 1]!);
    expect(counts[counts.length - 1]).toBe(7);
    // 200 s is above the largest finite bound: only +Inf holds it.
    expect(counts[counts.length - 2]).toBe(6);
  });

  it('counts since start: a CloudWatch publish in between does not reset Prometheus counters', async () => {
    const metrics = new ProxyMetrics({ proxyName: 'orders' });
    const exporter = createPrometheusExporter(metrics);
    metrics.queryRequest(false);
    metrics.takePeriod();
    metrics.queryRequest(false);
    const families = parsePrometheusText(await exporter.metrics());
    expect(sample(families, 'tidepool_query_requests_total', 'tidepool_query_requests_total', {})).toBe(2);
  });

  it('gives each proxy its own registry and leaves the global one alone', async () => {
    const before = (await globalRegistry.getMetricsAsJSON()).length;
    const a = createPrometheusExporter(new ProxyMetrics({ proxyName: 'alpha' }));
    const b = createPrometheusExporter(new ProxyMetrics({ proxyName: 'beta' }));
    expect(a.registry).not.toBe(b.registry);
    const textA = await a.metrics();
    expect(textA).toContain('proxy_name="alpha"');
    expect(textA).not.toContain('proxy_name="beta"');
    expect((await globalRegistry.getMetricsAsJSON()).length).toBe(before);
  });

  it('escapes label values so odd target names cannot break the format', async () => {
    const metrics = new ProxyMetrics({ proxyName: 'orders' });
    const odd = 'db:we"ird\\host\n:5432';
    metrics.databaseConnectionRequest(false, odd);
    const families = parsePrometheusText(await createPrometheusExporter(metrics).metrics());
    expect(sample(families, 'tidepool_database_connection_requests_total', 'tidepool_database_connection_requests_total', { target: odd })).toBe(1);
  });
});
