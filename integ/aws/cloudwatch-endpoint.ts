/**
 * A local stand-in for CloudWatch's PutMetricData, speaking the wire protocol the installed
 * @aws-sdk/client-cloudwatch (3.1164) sends, so tests can use the real client:
 *
 * - AWS JSON 1.0: `POST /`, `Content-Type: application/x-amz-json-1.0`,
 *   `X-Amz-Target: GraniteServiceVersion20100801.PutMetricData`, `x-amzn-query-mode: true`
 *   (CloudWatch moved off the form-encoded awsQuery protocol; the header asks for
 *   query-compatible error codes).
 * - Bodies of 10 KiB and more arrive gzip-compressed (`Content-Encoding: gzip`: the SDK's
 *   request-compression trait on PutMetricData).
 * - Timestamps are epoch seconds (numbers).
 * - Errors: JSON `{"__type": "...", "message": ...}` plus `x-amzn-query-error: Code;Sender|Receiver`,
 *   which the SDK turns into its typed exceptions.
 *
 * It checks what real CloudWatch checks for this call (namespace, 1000-datum and 1 MB limits,
 * value/statistic-set exclusivity, units, dimension limits) so a publisher that passes here
 * does not get rejected in AWS, and records every accepted request for assertions. It can be
 * told to fail the next N requests, or to answer slowly, to test retries.
 *
 * The SigV4 signature is checked for shape (algorithm, scope with service "monitoring") but
 * not recomputed: the credentials are test constants.
 */
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

const TARGET = 'GraniteServiceVersion20100801.PutMetricData';
const JSON_CONTENT_TYPE = 'application/x-amz-json-1.0';
/** CloudWatch's request size limit for PutMetricData. */
const MAX_BODY_BYTES = 1024 * 1024;
const MAX_DATUMS = 1000;
const MAX_DIMENSIONS = 30;
const MAX_VALUES = 150;
const STANDARD_UNITS = new Set([
  'Seconds', 'Microseconds', 'Milliseconds', 'Bytes', 'Kilobytes', 'Megabytes', 'Gigabytes', 'Terabytes', 'Bits', 'Kilobits',
  'Megabits', 'Gigabits', 'Terabits', 'Percent', 'Count', 'Bytes/Second', 'Kilobytes/Second', 'Megabytes/Second',
  'Gigabytes/Second', 'Terabytes/Second', 'Bits/Second', 'Kilobits/Second', 'Megabits/Second', 'Gigabits/Second',
  'Terabits/Second', 'Count/Second', 'None',
]);

export interface RecordedDimension {
  readonly Name: string;
  readonly Value: string;
}

export interface RecordedStatisticSet {
  readonly SampleCount: number;
  readonly Sum: number;
  readonly Minimum: number;
  readonly Maximum: number;
}

export interface RecordedDatum {
  readonly MetricName: string;
  readonly Dimensions: readonly RecordedDimension[];
  readonly Unit?: string;
  readonly Timestamp?: number;
  readonly Value?: number;
  readonly StatisticValues?: RecordedStatisticSet;
  readonly Values?: readonly number[];
  readonly Counts?: readonly number[];
  readonly StorageResolution?: number;
}

export interface RecordedPutMetricData {
  readonly namespace: string;
  readonly metricData: readonly RecordedDatum[];
  /** `gzip` when the SDK compressed the body. */
  readonly contentEncoding: string | undefined;
  readonly bodyBytes: number;
  readonly receivedAt: Date;
}

export interface InjectedFailure {
  /** @default 500 */
  status?: number;
  /** The query-compatible error code. @default "InternalServiceError" (a server fault) */
  code?: string;
}

class CloudWatchError extends Error {
  constructor(
    readonly status: number,
    /** The awsQuery-compatible code (x-amzn-query-error). */
    readonly code: string,
    /** The JSON protocol's shape id (__type). */
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

function invalidParameter(message: string): CloudWatchError {
  return new CloudWatchError(400, 'InvalidParameterValue', 'com.amazonaws.cloudwatch#InvalidParameterValueException', message);
}

function missingParameter(name: string): CloudWatchError {
  return new CloudWatchError(
    400,
    'MissingParameter',
    'com.amazonaws.cloudwatch#MissingRequiredParameterException',
    `The parameter ${name} is required.`,
  );
}

function combination(message: string): CloudWatchError {
  return new CloudWatchError(400, 'InvalidParameterCombination', 'com.amazonaws.cloudwatch#InvalidParameterCombinationException', message);
}

const INJECTED_TYPES: Record<string, string> = {
  InternalServiceError: 'com.amazonaws.cloudwatch#InternalServiceFault',
  Throttling: 'com.amazonaws.coral.availability#ThrottlingException',
  InvalidParameterValue: 'com.amazonaws.cloudwatch#InvalidParameterValueException',
};

export class LocalCloudWatchEndpoint {
  /** Requests accepted, in arrival order. */
  readonly requests: RecordedPutMetricData[] = [];
  /** Every request received, accepted or not. */
  attempts = 0;
  /** Requests answered with an injected failure. */
  injectedFailures = 0;
  private pendingFailures: InjectedFailure[] = [];
  private responseDelayMs = 0;
  private nextRequestId = 1;

  private constructor(private readonly server: Server, readonly url: string) {}

  /** Listens on 127.0.0.1 on a free port. */
  static async start(): Promise<LocalCloudWatchEndpoint> {
    let endpoint: LocalCloudWatchEndpoint | null = null;
    const server = createServer((req, res) => {
      void endpoint!.handle(req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    endpoint = new LocalCloudWatchEndpoint(server, `http://127.0.0.1:${port}`);
    return endpoint;
  }

  /** The next `count` requests fail (after being read), by default with a 500 InternalServiceError. */
  failNext(count: number, failure: InjectedFailure = {}): void {
    for (let i = 0; i < count; i++) this.pendingFailures.push(failure);
  }

  /** Forgets failures not yet served: CloudWatch recovers. */
  clearFailures(): void {
    this.pendingFailures = [];
  }

  /** Every response waits this long (a slow or hanging CloudWatch). */
  delayResponses(ms: number): void {
    this.responseDelayMs = ms;
  }

  /** All accepted datums, flattened. */
  datums(): RecordedDatum[] {
    return this.requests.flatMap((r) => r.metricData);
  }

  /** Accepted datums of one metric whose dimensions are exactly `dimensions` (in any order). */
  find(metricName: string, dimensions: Record<string, string>): RecordedDatum[] {
    const wanted = Object.entries(dimensions).sort(([a], [b]) => a.localeCompare(b));
    return this.datums().filter((d) => {
      if (d.MetricName !== metricName || d.Dimensions.length !== wanted.length) return false;
      const have = [...d.Dimensions].sort((a, b) => a.Name.localeCompare(b.Name));
      return have.every((dim, i) => dim.Name === wanted[i]![0] && dim.Value === wanted[i]![1]);
    });
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = `local-${this.nextRequestId++}`;
    try {
      const raw = await readBody(req);
      this.attempts++;
      if (this.responseDelayMs > 0) await new Promise((r) => setTimeout(r, this.responseDelayMs));
      const injected = this.pendingFailures.shift();
      if (injected) {
        this.injectedFailures++;
        const code = injected.code ?? 'InternalServiceError';
        const status = injected.status ?? 500;
        throw new CloudWatchError(status, code, INJECTED_TYPES[code] ?? `com.amazonaws.cloudwatch#${code}`, `injected failure (${code})`);
      }
      const recorded = this.parse(req, raw);
      this.requests.push(recorded);
      res.writeHead(200, { 'content-type': JSON_CONTENT_TYPE, 'x-amzn-requestid': requestId });
      res.end('{}');
    } catch (error) {
      const cwError =
        error instanceof CloudWatchError
          ? error
          : new CloudWatchError(500, 'InternalServiceError', 'com.amazonaws.cloudwatch#InternalServiceFault', String(error));
      if (res.headersSent || res.destroyed) return;
      res.writeHead(cwError.status, {
        'content-type': JSON_CONTENT_TYPE,
        'x-amzn-requestid': requestId,
        'x-amzn-query-error': `${cwError.code};${cwError.status >= 500 ? 'Receiver' : 'Sender'}`,
      });
      res.end(JSON.stringify({ __type: cwError.type, message: cwError.message }));
    }
  }

  private parse(req: IncomingMessage, raw: Buffer): RecordedPutMetricData {
    if (req.method !== 'POST' || (req.url ?? '/') !== '/') {
      throw new CloudWatchError(404, 'UnknownOperation', 'com.amazonaws.cloudwatch#UnknownOperationException', 'only POST / is served');
    }
    const authorization = header(req, 'authorization') ?? '';
    if (!/^AWS4-HMAC-SHA256 Credential=[^/]+\/\d{8}\/[a-z0-9-]+\/monitoring\/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$/.test(authorization)) {
      throw new CloudWatchError(403, 'IncompleteSignature', 'com.amazonaws.cloudwatch#IncompleteSignatureException', 'missing or malformed SigV4 Authorization');
    }
    if (header(req, 'x-amz-target') !== TARGET) {
      throw new CloudWatchError(400, 'UnknownOperation', 'com.amazonaws.cloudwatch#UnknownOperationException', `unsupported X-Amz-Target ${header(req, 'x-amz-target')}`);
    }
    if ((header(req, 'content-type') ?? '').split(';')[0]!.trim() !== JSON_CONTENT_TYPE) {
      throw new CloudWatchError(415, 'UnsupportedMediaType', 'com.amazonaws.cloudwatch#UnsupportedMediaTypeException', `expected ${JSON_CONTENT_TYPE}`);
    }
    const contentEncoding = header(req, 'content-encoding');
    let body = raw;
    if (contentEncoding === 'gzip') body = gunzipSync(raw);
    else if (contentEncoding !== undefined && contentEncoding !== 'identity') {
      throw invalidParameter(`unsupported Content-Encoding ${contentEncoding}`);
    }
    if (body.length > MAX_BODY_BYTES) {
      throw new CloudWatchError(413, 'RequestEntityTooLarge', 'com.amazonaws.cloudwatch#RequestEntityTooLargeException', `request of ${body.length} bytes is over 1 MB`);
    }
    let input: unknown;
    try {
      input = JSON.parse(body.toString('utf8'));
    } catch {
      throw new CloudWatchError(400, 'SerializationException', 'com.amazonaws.cloudwatch#SerializationException', 'body is not JSON');
    }
    const { namespace, metricData } = validatePutMetricData(input);
    return { namespace, metricData, contentEncoding, bodyBytes: body.length, receivedAt: new Date() };
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function finiteNumber(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidParameter(`The value for parameter ${path} must be a finite number.`);
  return value;
}

function stringOfLength(value: unknown, path: string, max: number): string {
  if (typeof value !== 'string' || value.length < 1 || value.length > max) {
    throw invalidParameter(`The parameter ${path} must be a string of 1 to ${max} characters.`);
  }
  return value;
}

/** The PutMetricData constraints from the CloudWatch API reference. */
function validatePutMetricData(input: unknown): { namespace: string; metricData: RecordedDatum[] } {
  if (!isRecord(input)) throw invalidParameter('The request body must be a JSON object.');
  if (input.Namespace === undefined) throw missingParameter('Namespace');
  const namespace = stringOfLength(input.Namespace, 'Namespace', 255);
  if (namespace.startsWith('AWS/')) throw invalidParameter('The value AWS/ for parameter Namespace is invalid.');
  if (input.MetricData === undefined) throw missingParameter('MetricData');
  if (!Array.isArray(input.MetricData)) throw invalidParameter('MetricData must be a list.');
  if (input.MetricData.length === 0) throw missingParameter('MetricData');
  if (input.MetricData.length > MAX_DATUMS) {
    throw invalidParameter(`The collection MetricData must not have a size greater than ${MAX_DATUMS}.`);
  }
  const metricData = input.MetricData.map((raw: unknown, index: number): RecordedDatum => {
    const path = `MetricData.member.${index + 1}`;
    if (!isRecord(raw)) throw invalidParameter(`${path} must be an object.`);
    const metricName = stringOfLength(raw.MetricName, `${path}.MetricName`, 255);
    const dimensionsRaw = raw.Dimensions ?? [];
    if (!Array.isArray(dimensionsRaw)) throw invalidParameter(`${path}.Dimensions must be a list.`);
    if (dimensionsRaw.length > MAX_DIMENSIONS) throw invalidParameter(`${path}.Dimensions must not have more than ${MAX_DIMENSIONS} items.`);
    const dimensions = dimensionsRaw.map((d: unknown, i: number): RecordedDimension => {
      if (!isRecord(d)) throw invalidParameter(`${path}.Dimensions.member.${i + 1} must be an object.`);
      return {
        Name: stringOfLength(d.Name, `${path}.Dimensions.member.${i + 1}.Name`, 255),
        Value: stringOfLength(d.Value, `${path}.Dimensions.member.${i + 1}.Value`, 1024),
      };
    });
    if (new Set(dimensions.map((d) => d.Name)).size !== dimensions.length) {
      throw invalidParameter(`${path}.Dimensions has a duplicate dimension name.`);
    }
    if (raw.Unit !== undefined && (typeof raw.Unit !== 'string' || !STANDARD_UNITS.has(raw.Unit))) {
      throw invalidParameter(`The value ${String(raw.Unit)} for parameter ${path}.Unit is invalid.`);
    }
    const forms = [raw.Value, raw.StatisticValues, raw.Values].filter((v) => v !== undefined).length;
    if (forms !== 1) {
      throw combination(`${path}: exactly one of Value, StatisticValues or Values must be specified.`);
    }
    const datum: {
      MetricName: string;
      Dimensions: RecordedDimension[];
      Unit?: string;
      Timestamp?: number;
      Value?: number;
      StatisticValues?: RecordedStatisticSet;
      Values?: number[];
      Counts?: number[];
      StorageResolution?: number;
    } = { MetricName: metricName, Dimensions: dimensions };
    if (typeof raw.Unit === 'string') datum.Unit = raw.Unit;
    if (raw.Timestamp !== undefined) datum.Timestamp = finiteNumber(raw.Timestamp, `${path}.Timestamp`);
    if (raw.StorageResolution !== undefined) {
      const resolution = finiteNumber(raw.StorageResolution, `${path}.StorageResolution`);
      if (resolution !== 1 && resolution !== 60) throw invalidParameter(`${path}.StorageResolution must be 1 or 60.`);
      datum.StorageResolution = resolution;
    }
    if (raw.Value !== undefined) datum.Value = finiteNumber(raw.Value, `${path}.Value`);
    if (raw.StatisticValues !== undefined) {
      const s = raw.StatisticValues;
      if (!isRecord(s)) throw invalidParameter(`${path}.StatisticValues must be an object.`);
      for (const field of ['SampleCount', 'Sum', 'Minimum', 'Maximum']) {
        if (s[field] === undefined) throw missingParameter(`${path}.StatisticValues.${field}`);
      }
      const set: RecordedStatisticSet = {
        SampleCount: finiteNumber(s.SampleCount, `${path}.StatisticValues.SampleCount`),
        Sum: finiteNumber(s.Sum, `${path}.StatisticValues.Sum`),
        Minimum: finiteNumber(s.Minimum, `${path}.StatisticValues.Minimum`),
        Maximum: finiteNumber(s.Maximum, `${path}.StatisticValues.Maximum`),
      };
      if (set.SampleCount <= 0) throw invalidParameter(`${path}.StatisticValues.SampleCount must be greater than 0.`);
      if (set.Minimum > set.Maximum) throw invalidParameter(`${path}.StatisticValues.Minimum must not be greater than Maximum.`);
      datum.StatisticValues = set;
    }
    if (raw.Values !== undefined) {
      if (!Array.isArray(raw.Values) || raw.Values.length === 0 || raw.Values.length > MAX_VALUES) {
        throw invalidParameter(`${path}.Values must hold 1 to ${MAX_VALUES} numbers.`);
      }
      datum.Values = raw.Values.map((v: unknown, i: number) => finiteNumber(v, `${path}.Values.member.${i + 1}`));
      if (raw.Counts !== undefined) {
        if (!Array.isArray(raw.Counts) || raw.Counts.length !== raw.Values.length) {
          throw combination(`${path}: Counts must have as many items as Values.`);
        }
        datum.Counts = raw.Counts.map((v: unknown, i: number) => finiteNumber(v, `${path}.Counts.member.${i + 1}`));
      }
    } else if (raw.Counts !== undefined) {
      throw combination(`${path}: Counts requires Values.`);
    }
    return datum;
  });
  return { namespace, metricData };
}
