/**
 * The config contract shared by the runtime (which validates it at start) and the CDK
 * construct (which renders it into TIDEPOOL_CONFIG). Field names follow the RDS API
 * (CreateDBProxy / ConnectionPoolConfiguration); times are in seconds; defaults are the
 * RDS Proxy user guide's.
 *
 * This module must stay free of runtime imports (sockets, logging, AWS SDK): the
 * construct library imports it.
 */
import { z } from 'zod';

export const ENGINE_FAMILIES = ['POSTGRESQL', 'MYSQL'] as const;
export type EngineFamily = (typeof ENGINE_FAMILIES)[number];

export const CLIENT_PASSWORD_AUTH_TYPES = [
  'POSTGRES_SCRAM_SHA_256',
  'POSTGRES_MD5',
  'MYSQL_NATIVE_PASSWORD',
  'MYSQL_CACHING_SHA2_PASSWORD',
] as const;
export type ClientPasswordAuthType = (typeof CLIENT_PASSWORD_AUTH_TYPES)[number];

export const IAM_AUTH_MODES = ['DISABLED', 'REQUIRED'] as const;
export type IamAuthMode = (typeof IAM_AUTH_MODES)[number];

export const SESSION_PINNING_FILTERS = ['EXCLUDE_VARIABLE_SETS'] as const;
export type SessionPinningFilter = (typeof SESSION_PINNING_FILTERS)[number];

/** The engine's conventional port, used when `listen.port` or a target's port is omitted. */
export function defaultPortFor(engineFamily: EngineFamily): number {
  return engineFamily === 'MYSQL' ? 3306 : 5432;
}

const port = z.number().int().min(0).max(65535);
const seconds = (max: number) => z.number().int().min(1).max(max);
const nonEmpty = z.string().min(1);

export const targetSchema = z.strictObject({
  /** Host name or IP address of a database instance (a self-managed server, an RDS instance or an Aurora instance endpoint). */
  host: nonEmpty,
  /** @default the engine's port (5432 or 3306) */
  port: port.optional(),
});

export const authSchema = z
  .strictObject({
    /** Path of a JSON file holding the Secrets Manager SecretString shape `{"username","password"}`. */
    secretFile: nonEmpty.optional(),
    /** ARN of a Secrets Manager secret with SecretString `{"username","password"}`. */
    secretArn: z.string().regex(/^arn:aws[a-z-]*:secretsmanager:/, 'must be a Secrets Manager secret ARN').optional(),
    /** @default POSTGRES_SCRAM_SHA_256 for PostgreSQL, MYSQL_NATIVE_PASSWORD for MySQL */
    clientPasswordAuthType: z.enum(CLIENT_PASSWORD_AUTH_TYPES).optional(),
    /** @default DISABLED */
    iamAuth: z.enum(IAM_AUTH_MODES).default('DISABLED'),
    /** Free text, as the RDS API's UserAuthConfig.Description. */
    description: z.string().optional(),
  })
  .refine((a) => (a.secretFile === undefined) !== (a.secretArn === undefined), {
    message: 'exactly one of secretFile or secretArn is required',
  });

export const TLS_VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

export const TARGET_TLS_MODES = ['FOLLOW_CLIENT', 'REQUIRED', 'DISABLED'] as const;
export type TargetTlsMode = (typeof TARGET_TLS_MODES)[number];

export const tlsSchema = z
  .strictObject({
    /**
     * Oldest TLS version clients may use. The RDS Proxy guide allows 1.0 and 1.1 for old clients; they are
     * opt-in here because they are insecure. @default "TLSv1.2"
     */
    minVersion: z.enum(TLS_VERSIONS).default('TLSv1.2'),
    /** PEM certificate chain presented to clients. Omit both files for a self-signed certificate generated at start. */
    certFile: nonEmpty.optional(),
    keyFile: nonEmpty.optional(),
    /**
     * A Secrets Manager secret whose SecretString is `{"certificate": "<PEM chain>", "privateKey": "<PEM key>"}`;
     * re-read every secretsRefreshInterval, new connections get the new certificate.
     */
    secretArn: z.string().regex(/^arn:aws[a-z-]*:secretsmanager:/, 'must be a Secrets Manager secret ARN').optional(),
  })
  .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), {
    message: 'certFile and keyFile must be given together',
  })
  .refine((t) => t.secretArn === undefined || t.certFile === undefined, {
    message: 'use either secretArn or certFile/keyFile, not both',
  });

export const targetTlsSchema = z.strictObject({
  /**
   * FOLLOW_CLIENT: a client that connected with TLS is served by server connections over TLS and a
   * plaintext client by plaintext ones (the RDS Proxy rule: "the proxy uses the same encryption setting when it
   * makes a connection to the underlying database"); a server that offers no TLS is then used in plaintext
   * unless `caFile` is set. REQUIRED: every server connection uses TLS. DISABLED: never. @default FOLLOW_CLIENT
   */
  mode: z.enum(TARGET_TLS_MODES).default('FOLLOW_CLIENT'),
  /**
   * PEM bundle of the CAs the database certificate must chain to (for RDS, the global bundle). When set, TLS
   * server connections verify the chain and the host name, and a server without TLS is refused.
   * @default the certificate is not verified (as libpq's sslmode=require)
   */
  caFile: nonEmpty.optional(),
  /** Check that the certificate names the target host (only with caFile). @default true */
  verifyHostname: z.boolean().default(true),
});

export const rdsTargetsSchema = z
  .strictObject({
    /** An RDS or Aurora DB cluster whose members are listed with DescribeDBClusters / DescribeDBInstances. */
    dbClusterIdentifier: nonEmpty.optional(),
    /** RDS DB instances (e.g. a Multi-AZ or replica set) listed with DescribeDBInstances. */
    dbInstanceIdentifiers: z.array(nonEmpty).min(1).optional(),
    /** Seconds between listings, to notice added, removed or promoted instances. @default 30 */
    refreshInterval: z.number().int().min(1).max(3600).default(30),
  })
  .refine((r) => r.dbClusterIdentifier !== undefined || r.dbInstanceIdentifiers !== undefined, {
    message: 'give dbClusterIdentifier or dbInstanceIdentifiers',
  });

export const adminSchema = z.strictObject({
  /** @default "0.0.0.0" (the load balancer's health check and Prometheus reach it from outside the task) */
  host: nonEmpty.default('0.0.0.0'),
  /** Serves /healthz, /readyz, /metrics, /status. 0 picks a free port (logged). @default 8080 */
  port: port.default(8080),
});

export const metricsSchema = z.strictObject({
  /** Push to CloudWatch with PutMetricData; Prometheus /metrics is served either way. @default true */
  enabled: z.boolean().default(true),
  /** CloudWatch namespace; "AWS/…" is reserved by CloudWatch. @default "Tidepool" */
  namespace: z
    .string()
    .min(1)
    .max(255)
    .refine((n) => !n.startsWith('AWS/'), 'namespaces starting with "AWS/" are reserved by CloudWatch')
    .default('Tidepool'),
  /** Seconds between pushes. @default 60 */
  publishIntervalSeconds: z.number().int().min(1).max(3600).default(60),
  /** Adds the ProxyName+EndpointName dimension set to client-side metrics. */
  endpointName: z.string().min(1).max(255).optional(),
});

export const awsSchema = z.strictObject({
  /** @default the SDK's lookup (AWS_REGION; on Fargate the task's region) */
  region: nonEmpty.optional(),
  /** Endpoint overrides, for testing against local stand-ins. */
  cloudWatchEndpoint: z.url().optional(),
  secretsManagerEndpoint: z.url().optional(),
  rdsEndpoint: z.url().optional(),
});

export const iamSchema = z.strictObject({
  /** Which IAM principals may log in as which database users (what the construct's grantConnect writes). @default [] */
  allowList: z
    .array(z.strictObject({ principalArn: z.string().regex(/^arn:aws[a-z-]*:(iam|sts)::\d{12}:/, 'must be an IAM role or user ARN'), dbUser: nonEmpty }))
    .default([]),
  /** STS hosts tokens may point at. @default sts.amazonaws.com and sts.<region>.amazonaws.com */
  stsHostAllowList: z.array(nonEmpty).optional(),
  /** Seconds a verified token is remembered. @default 60 */
  cacheTtl: z.number().int().min(1).max(900).default(60),
  /** Token verifications per second before "IAM authentication rate limit exceeded". @default 200 */
  rateLimit: z.number().int().min(1).max(100_000).default(200),
});

export const connectionPoolConfigSchema = z.strictObject({
  /** Share of the target's max_connections the pool may open. @default 100 */
  maxConnectionsPercent: z.number().int().min(1).max(100).default(100),
  /** Share of the target's max_connections that may stay open idle. @default 50 */
  maxIdleConnectionsPercent: z.number().int().min(0).max(100).default(50),
  /** Seconds a client waits for a server connection before an error. @default 120 */
  connectionBorrowTimeout: z.number().int().min(1).max(3600).default(120),
  /** @default [] */
  sessionPinningFilters: z.array(z.enum(SESSION_PINNING_FILTERS)).default([]),
  /** SQL run on each new server connection. @default "" */
  initQuery: z.string().max(65536).default(''),
});

export const limitsSchema = z.strictObject({
  /** Largest client message accepted, in bytes; larger ones are refused with a protocol error. @default 67108864 (64 MiB) */
  maxMessageBytes: z.number().int().min(1024).max(1 << 30).default(64 * 1024 * 1024),
  /** Seconds a client may take from TCP connect to authenticated. @default 30 */
  loginTimeout: seconds(600).default(30),
  /** Seconds SIGTERM waits for open transactions before closing everything. @default 30 */
  shutdownTimeout: seconds(3600).default(30),
  /** Most client connections open at once; more are refused before any authentication work. @default 50000 */
  maxClientConnections: z.number().int().min(1).max(1_000_000).default(50_000),
  /** New client connections accepted per second (0: no limit); more are refused before any authentication work. @default 0 */
  clientConnectionsPerSecond: z.number().int().min(0).max(1_000_000).default(0),
});

export const configSchema = z
  .strictObject({
    /** @default "tidepool" */
    proxyName: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9-]{0,62}$/, 'must start with a letter and hold only letters, digits and hyphens (at most 63)')
      .default('tidepool'),
    engineFamily: z.enum(ENGINE_FAMILIES),
    /** @default { host: "0.0.0.0", port: the engine's port } */
    listen: z.strictObject({ host: nonEmpty.default('0.0.0.0'), port: port.optional() }).default({ host: '0.0.0.0' }),
    /** Static database endpoints; with `rdsTargets` these are added to the listed instances. @default [] */
    targets: z.array(targetSchema).default([]),
    /** Database instances discovered through the RDS API instead of (or besides) static `targets`. */
    rdsTargets: rdsTargetsSchema.optional(),
    auth: z.array(authSchema).min(1, 'at least one auth entry is required').max(200, 'at most 200 secrets per proxy'),
    /** @default false */
    requireTls: z.boolean().default(false),
    /** @default a self-signed certificate generated at start */
    tls: tlsSchema.default(() => tlsSchema.parse({})),
    /** TLS from the proxy to the database. @default { mode: "FOLLOW_CLIENT" } */
    targetTls: targetTlsSchema.default(() => targetTlsSchema.parse({})),
    /** Seconds a client connection may stay idle before it is closed. @default 1800 */
    idleClientTimeout: z.number().int().min(1).max(28800).default(1800),
    connectionPoolConfig: connectionPoolConfigSchema.default(() => connectionPoolConfigSchema.parse({})),
    limits: limitsSchema.default(() => limitsSchema.parse({})),
    admin: adminSchema.default(() => adminSchema.parse({})),
    metrics: metricsSchema.default(() => metricsSchema.parse({})),
    aws: awsSchema.default({}),
    /** Seconds between re-reads of Secrets Manager secrets (rotations are also picked up when the database rejects a password). @default 300 */
    secretsRefreshInterval: z.number().int().min(1).max(86400).default(300),
    iam: iamSchema.default(() => iamSchema.parse({})),
    /** Adds SQL text (truncated) to the logs; never passwords. @default false */
    debugLogging: z.boolean().default(false),
  })
  .superRefine(
    (c, ctx) => {
      // Runs even when other fields failed (`when`), so a config missing its targets says so alongside its other problems.
      const raw = c as { targets?: unknown; rdsTargets?: unknown };
      const noTargets = raw.targets === undefined || (Array.isArray(raw.targets) && raw.targets.length === 0);
      if (noTargets && raw.rdsTargets === undefined) {
        ctx.addIssue({ code: 'custom', path: ['targets'], message: 'at least one target is required (or rdsTargets)' });
      }
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  )
  .superRefine((c, ctx) => {
    c.auth.forEach((a, i) => {
      const type = a.clientPasswordAuthType;
      if (type === undefined) return;
      const mysqlType = type.startsWith('MYSQL_');
      if (mysqlType !== (c.engineFamily === 'MYSQL')) {
        ctx.addIssue({
          code: 'custom',
          path: ['auth', i, 'clientPasswordAuthType'],
          message: `${type} does not apply to engine family ${c.engineFamily}`,
        });
      }
    });
  });

/** The config as written by a user or rendered by the construct (defaults not yet applied). */
export type TidepoolConfigInput = z.input<typeof configSchema>;
/** The validated config with every default applied. */
export type TidepoolConfig = z.output<typeof configSchema>;
export type TargetConfig = z.output<typeof targetSchema>;
export type AuthConfig = z.output<typeof authSchema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid Tidepool config:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Validates a parsed JSON value; throws ConfigError naming every bad field at once. */
export function parseConfig(value: unknown): TidepoolConfig {
  const result = configSchema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join('.') : '(root)';
    return `${path}: ${issue.message}`;
  });
  throw new ConfigError(problems);
}

/** The default auth type of an engine, as RDS Proxy applies it. */
export function effectiveClientAuthType(engine: EngineFamily, auth: AuthConfig): ClientPasswordAuthType {
  return auth.clientPasswordAuthType ?? (engine === 'MYSQL' ? 'MYSQL_NATIVE_PASSWORD' : 'POSTGRES_SCRAM_SHA_256');
}
