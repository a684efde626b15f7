import { z } from 'zod';
import { adminConfigSchema, awsConfigSchema, metricsConfigSchema } from './config';
import { createMetricsRuntime } from './index';

describe('metrics and admin config', () => {
  it('applies the documented defaults', () => {
    expect(adminConfigSchema.parse({})).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(metricsConfigSchema.parse({})).toEqual({ enabled: true, namespace: 'Tidepool', publishIntervalSeconds: 60 });
    expect(awsConfigSchema.parse({})).toEqual({});
  });

  it('refuses a reserved namespace, a zero interval, unknown keys and a non-URL endpoint', () => {
    expect(metricsConfigSchema.safeParse({ namespace: 'AWS/RDS' }).success).toBe(false);
    expect(metricsConfigSchema.safeParse({ publishIntervalSeconds: 0 }).success).toBe(false);
    expect(adminConfigSchema.safeParse({ prot: 8080 }).success).toBe(false);
    expect(awsConfigSchema.safeParse({ endpoint: 'not a url' }).success).toBe(false);
    expect(awsConfigSchema.parse({ region: 'eu-west-1', endpoint: 'http://127.0.0.1:4566' })).toEqual({
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:4566',
    });
  });

  it('composes into a larger strict schema the way configSchema would use it', () => {
    const composed = z.strictObject({
      admin: adminConfigSchema.default(() => adminConfigSchema.parse({})),
      metrics: metricsConfigSchema.default(() => metricsConfigSchema.parse({})),
      aws: awsConfigSchema.default({}),
    });
    expect(composed.parse({ metrics: { publishIntervalSeconds: 10 } })).toEqual({
      admin: { host: '0.0.0.0', port: 8080 },
      metrics: { enabled: true, namespace: 'Tidepool', publishIntervalSeconds: 10 },
      aws: {},
    });
  });

  it('createMetricsRuntime builds no publisher when CloudWatch publishing is disabled', async () => {
    const runtime = createMetricsRuntime({ proxyName: 'orders', metrics: metricsConfigSchema.parse({ enabled: false }) });
    expect(runtime.publisher).toBeNull();
    runtime.metrics.queryRequest(false);
    expect(await runtime.prometheus.metrics()).toMatch(/^tidepool_query_requests_total\{proxy_name="orders"\} 1$/m);
    await runtime.stop();
  });

  it('createMetricsRuntime passes namespace and endpoint name through', () => {
    const runtime = createMetricsRuntime({
      proxyName: 'orders',
      metrics: metricsConfigSchema.parse({ namespace: 'Acme', endpointName: 'rw' }),
      aws: { region: 'us-east-1', endpoint: 'http://127.0.0.1:9' },
    });
    expect(runtime.publisher!.namespace).toBe('Acme');
    expect(runtime.metrics.endpointName).toBe('rw');
    // Never started, so nothing to stop: no request leaves the test.
  });
});
