/**
 * A local Secrets Manager endpoint for tests: plain HTTP on 127.0.0.1, speaking the
 * service's JSON 1.1 protocol (`X-Amz-Target: secretsmanager.<Operation>`,
 * `application/x-amz-json-1.1`) for GetSecretValue and BatchGetSecretValue, with the
 * service's error shapes (`{"__type": "ResourceNotFoundException", "message": …}`).
 * Requests must carry a SigV4 Authorization header scoped to `secretsmanager` with a
 * known access key (the signature itself is checked by the local STS endpoint's tests;
 * here it is enough to know the SDK signed for this service and these credentials).
 * Tests put, rotate, delete and deny secrets, and can make the next reads fail.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { credentialScopeOf } from './credential-scope';

export interface SecretsManagerCall {
  readonly target: string;
  readonly secretId: string | undefined;
  readonly status: number;
  readonly errorType: string | undefined;
}

export interface LocalSecretsManagerEndpoint {
  /** `http://127.0.0.1:PORT`, for the SDK client's `endpoint`. */
  readonly url: string;
  readonly region: string;
  readonly calls: SecretsManagerCall[];
  /** Creates a secret, or adds a new AWSCURRENT version (a rotation). Returns its ARN. */
  putSecret(name: string, secretString: string): string;
  arnOf(name: string): string;
  deleteSecret(name: string): void;
  /** Makes reads of a secret fail with AccessDeniedException (the task role lost access), or lifts that. */
  setDenied(name: string, denied: boolean): void;
  /** Makes the next `count` reads of a secret fail with a service error (ThrottlingException, InternalServiceError…). */
  failNext(name: string, count: number, type: 'ThrottlingException' | 'InternalServiceError'): void;
  /** GetSecretValue calls that named this secret. */
  readsOf(name: string): number;
  close(): Promise<void>;
}

interface StoredSecret {
  readonly name: string;
  readonly arn: string;
  versions: { id: string; secretString: string; created: number }[];
  denied: boolean;
  failures: { count: number; type: string };
}

class ServiceError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

const ACCOUNT = '123456789012';

export async function startLocalSecretsManagerEndpoint(
  options: { region?: string; accessKeyIds?: string[] } = {},
): Promise<LocalSecretsManagerEndpoint> {
  const region = options.region ?? 'us-east-1';
  const accessKeyIds = new Set(options.accessKeyIds ?? ['AKIDTESTSECRETS']);
  const byName = new Map<string, StoredSecret>();
  const byArn = new Map<string, StoredSecret>();
  const calls: SecretsManagerCall[] = [];

  function arnFor(name: string): string {
    // Real ARNs end in a hyphen and six random characters.
    const suffix = randomUUID().replace(/-/g, '').slice(0, 6);
    return `arn:aws:secretsmanager:${region}:${ACCOUNT}:secret:${name}-${suffix}`;
  }

  function find(secretId: unknown): StoredSecret {
    if (typeof secretId !== 'string' || secretId === '') throw new ServiceError(400, 'InvalidParameterException', 'You must provide a SecretId.');
    const secret = byArn.get(secretId) ?? byName.get(secretId);
    if (secret === undefined) throw new ServiceError(400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
    return secret;
  }

  function getValue(secretId: unknown): Record<string, unknown> {
    const secret = find(secretId);
    if (secret.denied) {
      throw new ServiceError(
        400,
        'AccessDeniedException',
        `User: arn:aws:sts::${ACCOUNT}:assumed-role/tidepool-task/test is not authorized to perform: secretsmanager:GetSecretValue on resource: ${secret.arn} because no identity-based policy allows the secretsmanager:GetSecretValue action`,
      );
    }
    if (secret.failures.count > 0) {
      secret.failures.count -= 1;
      if (secret.failures.type === 'ThrottlingException') throw new ServiceError(400, 'ThrottlingException', 'Rate exceeded');
      throw new ServiceError(500, 'InternalServiceError', 'An error occurred on the server side.');
    }
    const current = secret.versions[secret.versions.length - 1]!;
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: current.id,
      SecretString: current.secretString,
      VersionStages: ['AWSCURRENT'],
      CreatedDate: current.created / 1000,
    };
  }

  function checkAuthorization(req: IncomingMessage): void {
    const scope = credentialScopeOf(req);
    if (scope === null) throw new ServiceError(400, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
    if (!accessKeyIds.has(scope.accessKeyId)) throw new ServiceError(400, 'UnrecognizedClientException', 'The security token included in the request is invalid.');
    if (scope.service !== 'secretsmanager' || scope.region !== region) {
      throw new ServiceError(400, 'InvalidSignatureException', `Credential should be scoped to a valid region and to service 'secretsmanager'.`);
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    const target = String(req.headers['x-amz-target'] ?? '');
    let secretId: string | undefined;
    let status = 200;
    let errorType: string | undefined;
    let out: unknown;
    try {
      if (req.method !== 'POST' || req.url !== '/') throw new ServiceError(404, 'UnknownOperationException', 'Unknown operation');
      if (!String(req.headers['content-type'] ?? '').startsWith('application/x-amz-json-1.1')) {
        throw new ServiceError(400, 'SerializationException', 'Content-Type must be application/x-amz-json-1.1');
      }
      checkAuthorization(req);
      let input: Record<string, unknown>;
      try {
        input = JSON.parse(body === '' ? '{}' : body) as Record<string, unknown>;
      } catch {
        throw new ServiceError(400, 'SerializationException', 'Start of structure or map found where not expected.');
      }
      if (target === 'secretsmanager.GetSecretValue') {
        secretId = typeof input.SecretId === 'string' ? input.SecretId : undefined;
        out = getValue(input.SecretId);
      } else if (target === 'secretsmanager.BatchGetSecretValue') {
        const ids = Array.isArray(input.SecretIdList) ? input.SecretIdList : [];
        if (ids.length > 20) throw new ServiceError(400, 'InvalidParameterException', 'SecretIdList can have at most 20 entries.');
        const values: Record<string, unknown>[] = [];
        const errors: Record<string, unknown>[] = [];
        for (const id of ids) {
          try {
            values.push(getValue(id));
          } catch (error) {
            if (!(error instanceof ServiceError)) throw error;
            errors.push({ SecretId: id, ErrorCode: error.type, Message: error.message });
          }
        }
        out = { SecretValues: values, Errors: errors };
      } else {
        throw new ServiceError(400, 'UnknownOperationException', `Unknown operation ${target}`);
      }
    } catch (error) {
      const e = error instanceof ServiceError ? error : new ServiceError(500, 'InternalServiceError', 'An error occurred on the server side.');
      status = e.status;
      errorType = e.type;
      out = { __type: e.type, message: e.message };
    }
    calls.push({ target, secretId, status, errorType });
    const payload = JSON.stringify(out);
    res.writeHead(status, {
      'content-type': 'application/x-amz-json-1.1',
      'content-length': Buffer.byteLength(payload),
      'x-amzn-requestid': randomUUID(),
      ...(errorType !== undefined ? { 'x-amzn-errortype': errorType } : {}),
    });
    res.end(payload);
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    region,
    calls,
    putSecret(name, secretString) {
      let secret = byName.get(name);
      if (secret === undefined) {
        secret = { name, arn: arnFor(name), versions: [], denied: false, failures: { count: 0, type: '' } };
        byName.set(name, secret);
        byArn.set(secret.arn, secret);
      }
      secret.versions.push({ id: randomUUID(), secretString, created: Date.now() });
      return secret.arn;
    },
    arnOf(name) {
      const secret = byName.get(name);
      if (secret === undefined) throw new Error(`no secret ${name}`);
      return secret.arn;
    },
    deleteSecret(name) {
      const secret = byName.get(name);
      if (secret === undefined) return;
      byName.delete(name);
      byArn.delete(secret.arn);
    },
    setDenied(name, denied) {
      const secret = byName.get(name);
      if (secret === undefined) throw new Error(`no secret ${name}`);
      secret.denied = denied;
    },
    failNext(name, count, type) {
      const secret = byName.get(name);
      if (secret === undefined) throw new Error(`no secret ${name}`);
      secret.failures = { count, type };
    },
    readsOf(name) {
      const secret = byName.get(name);
      return calls.filter((c) => c.secretId === name || (secret !== undefined && c.secretId === secret.arn)).length;
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
