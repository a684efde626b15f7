/**
 * The local CloudWatch endpoint must accept exactly what the real SDK sends and refuse what
 * real CloudWatch refuses, with errors the SDK decodes into its typed exceptions.
 */
import { request } from 'node:http';
import {
  CloudWatchClient,
  InternalServiceFault,
  InvalidParameterCombinationException,
  InvalidParameterValueException,
  PutMetricDataCommand,
} from '@aws-sdk/client-cloudwatch';
import { LocalCloudWatchEndpoint } from './cloudwatch-endpoint';

let endpoint: LocalCloudWatchEndpoint;
let client: CloudWatchClient;

beforeEach(async () => {
  endpoint = await LocalCloudWatchEndpoint.start();
  client = new CloudWatchClient({
    region: 'us-east-1',
    endpoint: endpoint.url,
    credentials: { accessKeyId: 'AKIDLOCALTEST', secretAccessKey: 'local-test-secret' },
    maxAttempts: 1,
  });
});

afterEach(async () => {
  client.destroy();
  await endpoint.stop();
});

function rawPost(path: string, headers: Record<string, string>, body: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const url = new URL(path, endpoint.url);
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('LocalCloudWatchEndpoint', () => {
  it('records a PutMetricData from the real SDK: values, statistic sets, value arrays, dimensions, timestamp', async () => {
    const timestamp = new Date('2026-01-02T03:04:05Z');
    await client.send(
      new PutMetricDataCommand({
        Namespace: 'Tidepool',
        MetricData: [
          { MetricName: 'ClientConnections', Unit: 'Count', Value: 4, Dimensions: [{ Name: 'ProxyName', Value: 'orders' }], Timestamp: timestamp },
          { MetricName: 'QueryResponseLatency', Unit: 'Microseconds', StatisticValues: { SampleCount: 2, Sum: 30, Minimum: 10, Maximum: 20 } },
          { MetricName: 'QueryRequests', Unit: 'Count', Values: [1, 2], Counts: [3, 4], StorageResolution: 60 },
        ],
      }),
    );
    expect(endpoint.requests).toHaveLength(1);
    const [recorded] = endpoint.requests;
    expect(recorded!.namespace).toBe('Tidepool');
    expect(recorded!.contentEncoding).toBeUndefined();
    expect(recorded!.metricData[0]).toEqual({
      MetricName: 'ClientConnections',
      Unit: 'Count',
      Value: 4,
      Dimensions: [{ Name: 'ProxyName', Value: 'orders' }],
      Timestamp: timestamp.getTime() / 1000,
    });
    expect(recorded!.metricData[1]!.StatisticValues).toEqual({ SampleCount: 2, Sum: 30, Minimum: 10, Maximum: 20 });
    expect(recorded!.metricData[2]).toMatchObject({ Values: [1, 2], Counts: [3, 4], StorageResolution: 60 });
    expect(endpoint.find('ClientConnections', { ProxyName: 'orders' })).toHaveLength(1);
    expect(endpoint.find('ClientConnections', {})).toHaveLength(0);
  });

  it('decodes gzip bodies the SDK compresses', async () => {
    const MetricData = Array.from({ length: 600 }, (_, i) => ({ MetricName: `M${i}`, Unit: 'Count' as const, Value: i }));
    await client.send(new PutMetricDataCommand({ Namespace: 'Tidepool', MetricData }));
    expect(endpoint.requests[0]!.contentEncoding).toBe('gzip');
    expect(endpoint.requests[0]!.metricData).toHaveLength(600);
  });

  it('refuses namespaces starting with AWS/ like CloudWatch', async () => {
    await expect(
      client.send(new PutMetricDataCommand({ Namespace: 'AWS/RDS', MetricData: [{ MetricName: 'X', Value: 1 }] })),
    ).rejects.toBeInstanceOf(InvalidParameterValueException);
    expect(endpoint.requests).toHaveLength(0);
  });

  it('refuses more than 1000 datums per request', async () => {
    const MetricData = Array.from({ length: 1001 }, () => ({ MetricName: 'X', Value: 1 }));
    await expect(client.send(new PutMetricDataCommand({ Namespace: 'Tidepool', MetricData }))).rejects.toThrow(
      /must not have a size greater than 1000/,
    );
  });

  it('refuses a datum with both a value and a statistic set, and a bad statistic set', async () => {
    await expect(
      client.send(
        new PutMetricDataCommand({
          Namespace: 'Tidepool',
          MetricData: [{ MetricName: 'X', Value: 1, StatisticValues: { SampleCount: 1, Sum: 1, Minimum: 1, Maximum: 1 } }],
        }),
      ),
    ).rejects.toBeInstanceOf(InvalidParameterCombinationException);
    await expect(
      client.send(
        new PutMetricDataCommand({
          Namespace: 'Tidepool',
          MetricData: [{ MetricName: 'X', StatisticValues: { SampleCount: 0, Sum: 0, Minimum: 0, Maximum: 0 } }],
        }),
      ),
    ).rejects.toBeInstanceOf(InvalidParameterValueException);
  });

  it('fails the next N requests on demand with a server fault the SDK recognises, then recovers', async () => {
    endpoint.failNext(2);
    const put = () => client.send(new PutMetricDataCommand({ Namespace: 'Tidepool', MetricData: [{ MetricName: 'X', Value: 1 }] }));
    const first = await put().catch((e: unknown) => e);
    expect(first).toBeInstanceOf(InternalServiceFault);
    expect((first as InternalServiceFault).$fault).toBe('server');
    await expect(put()).rejects.toBeInstanceOf(InternalServiceFault);
    await put();
    expect(endpoint.attempts).toBe(3);
    expect(endpoint.injectedFailures).toBe(2);
    expect(endpoint.requests).toHaveLength(1);
  });

  it('refuses unsigned requests and other operations', async () => {
    const body = JSON.stringify({ Namespace: 'Tidepool', MetricData: [{ MetricName: 'X', Value: 1 }] });
    const unsigned = await rawPost('/', { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'GraniteServiceVersion20100801.PutMetricData' }, body);
    expect(unsigned.status).toBe(403);
    expect(unsigned.headers['x-amzn-query-error']).toBe('IncompleteSignature;Sender');
    const formEncoded = await rawPost(
      '/',
      {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=${'a'.repeat(64)}`,
      },
      'Action=PutMetricData&Version=2010-08-01&Namespace=Tidepool',
    );
    expect(formEncoded.status).toBe(400);
    expect(endpoint.requests).toHaveLength(0);
  });
});
