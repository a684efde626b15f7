import { Token } from 'aws-cdk-lib';
import { configSchema, TidepoolConfigInput } from '../../../runtime/config/schema';

/** The runtime's admin server (GET /healthz); the load balancer health-checks it. */
export const ADMIN_PORT = 8080;
/** How often each task publishes its metrics; the metric helpers' one-minute period matches it. */
export const METRICS_INTERVAL_SECONDS = 60;

/** One entry of the runtime's IAM allow-list (`iam.allowList`), as grantConnect() writes it. */
export type IamAuthAllowListEntry = NonNullable<NonNullable<TidepoolConfigInput['iam']>['allowList']>[number];

/** What the construct writes into TIDEPOOL_CONFIG: exactly the runtime's config contract. */
export type RenderedConfig = TidepoolConfigInput;

export interface ConfigProblem {
  /** The construct prop a user would change, or the config path when no prop maps to it. */
  readonly prop: string;
  readonly message: string;
}

/**
 * Validates the rendered config with the runtime's own schema, so a deploy never ships a config the
 * runtime would refuse at start. Tokens (ARNs, endpoints) are swapped for well-formed stand-ins first.
 */
export function validateRenderedConfig(config: RenderedConfig): ConfigProblem[] {
  const candidate = withStandInsForTokens(config);
  const result = configSchema.safeParse(candidate);
  if (result.success) return [];
  return result.error.issues.map((issue) => {
    const configPath = issue.path.map(String).join('.');
    const value = valueAt(candidate, issue.path);
    const rendered = value === undefined ? '' : ` (rendered as ${configPath || '(root)'} = ${JSON.stringify(value)})`;
    return { prop: propForConfigPath(configPath), message: `${issue.message}${rendered}` };
  });
}

const STAND_IN_ARNS: Record<string, string> = {
  secretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:stand-in-for-a-token',
  principalArn: 'arn:aws:iam::123456789012:role/stand-in-for-a-token',
};

function withStandInsForTokens(value: unknown, key = ''): unknown {
  if (typeof value === 'string') {
    return Token.isUnresolved(value) ? (STAND_IN_ARNS[key] ?? 'stand-in-for-a-token') : value;
  }
  if (typeof value === 'number') {
    // Number tokens are huge negative doubles; 1 is valid wherever the construct lets a token through (ports).
    return Token.isUnresolved(value) ? 1 : value;
  }
  if (Array.isArray(value)) return value.map((item) => withStandInsForTokens(item, key));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withStandInsForTokens(v, k)]));
  }
  return value;
}

const PROP_FOR_CONFIG_PATH: ReadonlyArray<readonly [RegExp, string]> = [
  [/^proxyName$/, 'dbProxyName'],
  [/^auth\.\d+\.clientPasswordAuthType$/, 'clientPasswordAuthType'],
  [/^auth(\.|$)/, 'secrets'],
  [/^idleClientTimeout$/, 'idleClientTimeout'],
  [/^requireTls$/, 'requireTLS'],
  [/^connectionPoolConfig\.connectionBorrowTimeout$/, 'borrowTimeout'],
  [/^connectionPoolConfig\.maxConnectionsPercent$/, 'maxConnectionsPercent'],
  [/^connectionPoolConfig\.maxIdleConnectionsPercent$/, 'maxIdleConnectionsPercent'],
  [/^connectionPoolConfig\.sessionPinningFilters/, 'sessionPinningFilters'],
  [/^connectionPoolConfig\.initQuery$/, 'initQuery'],
  [/^limits\.shutdownTimeout$/, 'drainTimeout'],
  [/^targets/, 'proxyTarget'],
  [/^rdsTargets/, 'proxyTarget'],
  [/^aws\.region$/, 'proxyTarget'],
  [/^tls\.minVersion$/, 'minimumTlsVersion'],
  [/^tls/, 'tlsCertificate'],
  [/^targetTls\.mode$/, 'targetTlsMode'],
  [/^targetTls\.caFile$/, 'targetCertificateAuthority'],
  [/^targetTls\.verifyHostname$/, 'verifyTargetHostname'],
  [/^metrics/, 'metricsNamespace'],
  [/^iam\.allowList/, 'grantConnect()'],
];

function propForConfigPath(configPath: string): string {
  return PROP_FOR_CONFIG_PATH.find(([pattern]) => pattern.test(configPath))?.[1] ?? configPath;
}

function valueAt(root: unknown, pathSegments: readonly PropertyKey[]): unknown {
  let current = root;
  for (const segment of pathSegments) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[segment];
  }
  return current;
}
