/**
 * IAM authentication for clients of the proxy.
 *
 * RDS IAM tokens (`rds-db:connect`) can only be verified inside AWS, so Tidepool uses the
 * presigned `sts:GetCallerIdentity` pattern of aws-iam-authenticator and Vault: the
 * client presigns a GetCallerIdentity request that also signs an `x-tidepool-proxy`
 * header naming the proxy, and sends the URL (base64url, prefixed) as its password. The
 * proxy replays the request to STS with its *own* proxy name in that header: STS checks
 * the signature, so a forged token, or one minted for another proxy, is refused by AWS
 * itself, and the answer names the caller. The caller is then authorized against an
 * allow-list (principal ARN → database user), because GetCallerIdentity needs no IAM
 * permission and cannot be denied: the allow-list is the authorization.
 *
 * Reasons returned by the verifier never contain the token (it is a bearer credential
 * for up to 15 minutes).
 */
import { createHash } from 'node:crypto';
import { Agent, request as httpsRequest } from 'node:https';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';

export const TOKEN_PREFIX = 'tidepool-v1.';
/** Signed header naming the proxy the token is for (aws-iam-authenticator's x-k8s-aws-id). */
export const PROXY_HEADER = 'x-tidepool-proxy';
/** Optional signed header binding a token to one database user. */
export const DB_USER_HEADER = 'x-tidepool-db-user';
/** STS honours a presigned GetCallerIdentity for at most 15 minutes. */
export const MAX_EXPIRES_SECONDS = 900;
/** Far above a real token (~1.5 KiB with a session token); bounds the work on junk input. */
export const MAX_TOKEN_LENGTH = 8192;
export const STS_VERSION = '2011-06-15';

export const TLS_REQUIRED_MESSAGE = 'IAM authentication is allowed only with SSL connections.';
export const RATE_LIMIT_MESSAGE = 'IAM authentication rate limit exceeded';

/** Tolerated clock skew for tokens dated in the future (SigV4's own limit). */
const FUTURE_SKEW_MS = 5 * 60 * 1000;

/* ------------------------------------------------------------------------------------ */
/* Client side                                                                            */
/* ------------------------------------------------------------------------------------ */

export interface GenerateAuthTokenOptions {
  /** The proxy's name (`proxyName` in its config); the token is refused by any other proxy. */
  readonly proxyName: string;
  /** When given, the token is valid only for this database user. */
  readonly dbUser?: string;
  /** Region of the STS endpoint that signs and later verifies the token. */
  readonly region: string;
  /** @default the SDK's default chain (env, shared config, SSO, ECS/EC2 roles) */
  readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /** Seconds the token is valid, at most 900. @default 900 */
  readonly expiresIn?: number;
  /** STS endpoint URL. @default https://sts.<region>.amazonaws.com (…amazonaws.com.cn in China) */
  readonly stsEndpoint?: string;
  /** Signing time, for tests and clock-skewed hosts. @default now */
  readonly signingDate?: Date;
}

export function defaultStsHost(region: string): string {
  return region.startsWith('cn-') ? `sts.${region}.amazonaws.com.cn` : `sts.${region}.amazonaws.com`;
}

let defaultProvider: AwsCredentialIdentityProvider | undefined;

/** One default chain per process: it caches what it resolved (e.g. task role credentials) until they near expiry. */
function defaultCredentials(): AwsCredentialIdentityProvider {
  defaultProvider ??= fromNodeProviderChain();
  return defaultProvider;
}

/**
 * Mints an IAM auth token to send as the database password (over TLS), like
 * `@aws-sdk/rds-signer`'s `Signer.getAuthToken()`.
 */
export async function generateAuthToken(options: GenerateAuthTokenOptions): Promise<string> {
  const expiresIn = options.expiresIn ?? MAX_EXPIRES_SECONDS;
  if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_EXPIRES_SECONDS) {
    throw new RangeError(`expiresIn must be an integer between 1 and ${MAX_EXPIRES_SECONDS} seconds`);
  }
  if (options.proxyName === '') throw new RangeError('proxyName is required');
  const endpoint = new URL(options.stsEndpoint ?? `https://${defaultStsHost(options.region)}`);
  if (endpoint.protocol !== 'https:') throw new RangeError('the STS endpoint must use https');
  const headers: Record<string, string> = { host: endpoint.host, [PROXY_HEADER]: options.proxyName };
  if (options.dbUser !== undefined) headers[DB_USER_HEADER] = options.dbUser;
  const signer = new SignatureV4({
    service: 'sts',
    region: options.region,
    credentials: options.credentials ?? defaultCredentials(),
    sha256: Hash.bind(null, 'sha256'),
    uriEscapePath: true,
  });
  const request = new HttpRequest({
    method: 'GET',
    protocol: 'https:',
    hostname: endpoint.hostname,
    ...(endpoint.port !== '' ? { port: Number(endpoint.port) } : {}),
    path: '/',
    query: { Action: 'GetCallerIdentity', Version: STS_VERSION },
    headers,
  });
  const signed = await signer.presign(request, {
    expiresIn,
    ...(options.signingDate !== undefined ? { signingDate: options.signingDate } : {}),
  });
  const query = Object.entries(signed.query ?? {})
    .flatMap(([key, value]) => (Array.isArray(value) ? value.map((v) => [key, v] as const) : value === null ? [] : [[key, value] as const]))
    .map(([key, value]) => `${uriEscape(key)}=${uriEscape(value)}`)
    .sort()
    .join('&');
  const url = `https://${endpoint.host}/?${query}`;
  return TOKEN_PREFIX + Buffer.from(url, 'utf8').toString('base64url');
}

/** RFC 3986 escaping, as SigV4 canonicalizes query strings. */
export function uriEscape(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/* ------------------------------------------------------------------------------------ */
/* Token parsing (pure)                                                                   */
/* ------------------------------------------------------------------------------------ */

export type IamFailureCode =
  | 'TLS_REQUIRED'
  | 'MALFORMED'
  | 'HOST_NOT_ALLOWED'
  | 'WRONG_ACTION'
  | 'PROXY_HEADER_NOT_SIGNED'
  | 'EXPIRED'
  | 'RATE_LIMITED'
  | 'STS_REJECTED'
  | 'STS_UNAVAILABLE'
  | 'NOT_AUTHORIZED';

export type IamVerifyResult =
  | { readonly ok: true; readonly arn: string; readonly callerArn: string; readonly account: string; readonly userId: string }
  | { readonly ok: false; readonly code: IamFailureCode; readonly reason: string };

export interface ParsedToken {
  /** `host[:port]` as in the URL, lower case, default port omitted. */
  readonly host: string;
  readonly hostname: string;
  readonly port: number;
  /** Path and query exactly as signed, for the replay. */
  readonly pathAndQuery: string;
  readonly signedHeaders: readonly string[];
  readonly signedAt: number;
  readonly expiresAt: number;
  readonly accessKeyId: string;
}

/** The query parameters a presigned GetCallerIdentity carries (aws-iam-authenticator's list): nothing else may ride along to STS. */
const ALLOWED_PARAMS = new Set([
  'action',
  'version',
  'x-amz-algorithm',
  'x-amz-credential',
  'x-amz-date',
  'x-amz-expires',
  'x-amz-security-token',
  'x-amz-signature',
  'x-amz-signedheaders',
]);
/** Headers the verifier can supply on replay; any other signed header would make the replay fail anyway. */
const REPLAYABLE_HEADERS = new Set(['host', PROXY_HEADER, DB_USER_HEADER]);

type ParseResult = { ok: true; token: ParsedToken } | { ok: false; code: IamFailureCode; reason: string };

function fail(code: IamFailureCode, reason: string): { ok: false; code: IamFailureCode; reason: string } {
  return { ok: false, code, reason };
}

/** Checks a token's shape, action, signed headers and lifetime without any I/O. */
export function parseAuthToken(token: string, now: number): ParseResult {
  if (token.length > MAX_TOKEN_LENGTH) return fail('MALFORMED', 'token is too long');
  if (!token.startsWith(TOKEN_PREFIX)) return fail('MALFORMED', `token does not start with "${TOKEN_PREFIX}"`);
  const encoded = token.slice(TOKEN_PREFIX.length);
  if (!/^[A-Za-z0-9_-]+$/.test(encoded)) return fail('MALFORMED', 'token is not base64url');
  const raw = Buffer.from(encoded, 'base64url').toString('utf8');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return fail('MALFORMED', 'token does not hold a URL');
  }
  if (url.protocol !== 'https:') return fail('MALFORMED', 'token URL must use https');
  if (url.username !== '' || url.password !== '' || url.hash !== '') return fail('MALFORMED', 'token URL has user info or a fragment');
  if (url.pathname !== '/') return fail('MALFORMED', 'token URL path must be "/"');
  // Replay exactly the bytes that were signed: the URL parser may re-encode a query.
  if (!raw.startsWith(`${url.origin}/?`)) return fail('MALFORMED', 'token URL is not in canonical form');
  const pathAndQuery = raw.slice(url.origin.length);
  if (!/^[\x21-\x7e]+$/.test(pathAndQuery)) return fail('MALFORMED', 'token URL has characters that must be escaped');

  const params = new Map<string, string>();
  for (const pair of url.search.slice(1).split('&')) {
    const eq = pair.indexOf('=');
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq)).toLowerCase();
      value = decodeURIComponent(eq < 0 ? '' : pair.slice(eq + 1));
    } catch {
      return fail('MALFORMED', 'token URL has a bad escape');
    }
    if (!ALLOWED_PARAMS.has(key)) return fail('MALFORMED', `token URL has unexpected parameter ${JSON.stringify(key.slice(0, 40))}`);
    if (params.has(key)) return fail('MALFORMED', `token URL repeats parameter ${key}`);
    params.set(key, value);
  }
  if (params.get('action') !== 'GetCallerIdentity') return fail('WRONG_ACTION', 'token is not a presigned sts:GetCallerIdentity request');
  if (params.get('version') !== STS_VERSION) return fail('MALFORMED', `token must use STS version ${STS_VERSION}`);
  if (params.get('x-amz-algorithm') !== 'AWS4-HMAC-SHA256') return fail('MALFORMED', 'token is not signed with AWS4-HMAC-SHA256');
  if (!/^[0-9a-f]{64}$/.test(params.get('x-amz-signature') ?? '')) return fail('MALFORMED', 'token has no valid X-Amz-Signature');
  const credential = (params.get('x-amz-credential') ?? '').split('/');
  if (credential.length !== 5 || credential[3] !== 'sts' || credential[4] !== 'aws4_request') {
    return fail('MALFORMED', 'token X-Amz-Credential is not an STS credential scope');
  }
  const signedHeaders = (params.get('x-amz-signedheaders') ?? '').split(';').filter((h) => h !== '');
  if (!signedHeaders.includes('host')) return fail('MALFORMED', 'token does not sign the host header');
  if (!signedHeaders.includes(PROXY_HEADER)) return fail('PROXY_HEADER_NOT_SIGNED', `token does not sign the ${PROXY_HEADER} header`);
  const extra = signedHeaders.find((h) => !REPLAYABLE_HEADERS.has(h));
  if (extra !== undefined) return fail('MALFORMED', `token signs unexpected header ${JSON.stringify(extra.slice(0, 40))}`);

  const signedAt = parseAmzDate(params.get('x-amz-date') ?? '');
  if (signedAt === undefined) return fail('MALFORMED', 'token has no valid X-Amz-Date');
  const expiresText = params.get('x-amz-expires') ?? '';
  if (!/^[0-9]{1,6}$/.test(expiresText)) return fail('MALFORMED', 'token has no valid X-Amz-Expires');
  const expires = Number(expiresText);
  if (expires > MAX_EXPIRES_SECONDS) return fail('EXPIRED', `token lifetime ${expires} s exceeds ${MAX_EXPIRES_SECONDS} s`);
  const expiresAt = signedAt + expires * 1000;
  if (now >= expiresAt) return fail('EXPIRED', 'token has expired');
  if (signedAt > now + FUTURE_SKEW_MS) return fail('EXPIRED', 'token is dated in the future');

  return {
    ok: true,
    token: {
      host: url.host.toLowerCase(),
      hostname: url.hostname,
      port: url.port === '' ? 443 : Number(url.port),
      pathAndQuery,
      signedHeaders,
      signedAt,
      expiresAt,
      accessKeyId: credential[0]!,
    },
  };
}

/** `20260126T012345Z` → epoch ms. */
export function parseAmzDate(text: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (m === null) return undefined;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return Number.isNaN(ms) ? undefined : ms;
}

/* ------------------------------------------------------------------------------------ */
/* Identities and the allow-list (pure)                                                  */
/* ------------------------------------------------------------------------------------ */

/**
 * The principal an ARN from GetCallerIdentity stands for: an assumed-role session
 * (`arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`) becomes its role
 * (`arn:aws:iam::ACCT:role/ROLE`); IAM users, root and federated users stay as they are.
 * The session name is not used: anyone allowed to assume the role chooses it.
 */
export function canonicalPrincipalArn(arn: string): string {
  const m = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/.+$/.exec(arn);
  if (m !== null) return `arn:${m[1]}:iam::${m[2]}:role/${m[3]}`;
  return arn;
}

/**
 * An allow-list entry's principal in the form canonicalPrincipalArn yields: role paths
 * are dropped, because assumed-role ARNs do not carry them.
 */
export function normalizeAllowedPrincipal(arn: string): string {
  const m = /^arn:(aws[a-z-]*):iam::(\d{12}|\*):role\/(?:.*\/)?([^/]+)$/.exec(arn);
  if (m !== null) return `arn:${m[1]}:iam::${m[2]}:role/${m[3]}`;
  return canonicalPrincipalArn(arn);
}

export interface IamAllowEntry {
  /** IAM role or user ARN; `*` matches any run of characters. */
  readonly principalArn: string;
  /** Database user; `*` matches any run of characters. */
  readonly dbUser: string;
}

function globToRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*')}$`);
}

export class IamAllowList {
  private readonly entries: { principal: RegExp; dbUser: RegExp }[];

  constructor(entries: readonly IamAllowEntry[]) {
    this.entries = entries.map((e) => ({ principal: globToRegExp(normalizeAllowedPrincipal(e.principalArn)), dbUser: globToRegExp(e.dbUser) }));
  }

  allows(principalArn: string, dbUser: string): boolean {
    return this.entries.some((e) => e.principal.test(principalArn) && e.dbUser.test(dbUser));
  }
}

/** The caller in an STS GetCallerIdentity XML answer. */
export function parseGetCallerIdentityXml(xml: string): { arn: string; userId: string; account: string } | undefined {
  const result = /<GetCallerIdentityResult>([\s\S]*?)<\/GetCallerIdentityResult>/.exec(xml)?.[1];
  if (result === undefined) return undefined;
  const field = (name: string): string | undefined => {
    const value = new RegExp(`<${name}>([^<]*)</${name}>`).exec(result)?.[1];
    return value === undefined ? undefined : decodeXmlText(value);
  };
  const arn = field('Arn');
  const userId = field('UserId');
  const account = field('Account');
  if (arn === undefined || !arn.startsWith('arn:') || userId === undefined || account === undefined) return undefined;
  return { arn, userId, account };
}

/** The error code of an AWS query-protocol XML error. */
export function parseStsErrorCode(xml: string): string | undefined {
  const code = /<Code>([A-Za-z0-9.]{1,64})<\/Code>/.exec(xml)?.[1];
  return code;
}

function decodeXmlText(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, entity: string) => {
    switch (entity) {
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'amp':
        return '&';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
      default:
        return String.fromCodePoint(entity.startsWith('#x') ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10));
    }
  });
}

/* ------------------------------------------------------------------------------------ */
/* Verifier                                                                               */
/* ------------------------------------------------------------------------------------ */

export interface IamTokenVerifierOptions {
  /** This proxy's name: the value replayed in the signed x-tidepool-proxy header. */
  readonly proxyName: string;
  /** Region whose STS hosts are allowed by default. */
  readonly region?: string;
  /**
   * STS hosts (`host` or `host:port`) tokens may point at; the proxy sends requests only
   * there, so it cannot be used as an open relay.
   * @default sts.amazonaws.com and sts.<region>.amazonaws.com
   */
  readonly stsHostAllowList?: readonly string[];
  /** Principal → database user grants (what the construct's grantConnect writes). */
  readonly allowList: readonly IamAllowEntry[];
  /** Seconds a verified (or STS-refused) token is remembered, bounded by its expiry. @default 60 */
  readonly cacheTtlSeconds?: number;
  /** STS round trips allowed per second (cache hits are free). @default { perSecond: 200, burst: 200 } */
  readonly rateLimit?: { readonly perSecond: number; readonly burst?: number };
  /** STS requests in flight at once; more are refused as rate-limited. @default 64 */
  readonly maxConcurrent?: number;
  /** Extra CA certificates to trust for STS (a local endpoint in tests). */
  readonly ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** Agent for STS requests (proxying, custom trust). @default a keep-alive agent */
  readonly agent?: Agent;
  /** @default 5000 */
  readonly requestTimeoutMs?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

export interface IamTokenVerifier {
  verify(token: string, dbUser: string, connection: { readonly tls: boolean }): Promise<IamVerifyResult>;
  /** STS round trips made so far (for metrics and tests). */
  readonly stsRequests: number;
  close(): void;
}

type StsOutcome =
  | { kind: 'identity'; arn: string; userId: string; account: string }
  | { kind: 'rejected'; reason: string }
  | { kind: 'unavailable'; reason: string };

interface CacheEntry {
  readonly outcome: StsOutcome;
  readonly until: number;
}

const MAX_CACHE_ENTRIES = 10_000;
const MAX_RESPONSE_BYTES = 64 * 1024;

export function createIamTokenVerifier(options: IamTokenVerifierOptions): IamTokenVerifier {
  const now = options.now ?? Date.now;
  const allowList = new IamAllowList(options.allowList);
  const hosts = new Set(
    (options.stsHostAllowList ?? ['sts.amazonaws.com', ...(options.region !== undefined ? [defaultStsHost(options.region)] : [])]).map((h) =>
      h.toLowerCase().replace(/:443$/, ''),
    ),
  );
  const cacheTtlMs = (options.cacheTtlSeconds ?? 60) * 1000;
  const perSecond = options.rateLimit?.perSecond ?? 200;
  const burst = options.rateLimit?.burst ?? perSecond;
  const maxConcurrent = options.maxConcurrent ?? 64;
  const timeoutMs = options.requestTimeoutMs ?? 5000;
  const ownsAgent = options.agent === undefined;
  const agent =
    options.agent ??
    new Agent({
      keepAlive: true,
      maxSockets: maxConcurrent,
      ...(options.ca !== undefined ? { ca: options.ca as string | Buffer | Array<string | Buffer> } : {}),
    });

  const cache = new Map<string, CacheEntry>();
  const inFlight = new Map<string, Promise<StsOutcome>>();
  let tokens = burst;
  let refilledAt = now();
  let active = 0;
  let stsRequests = 0;

  /** Token bucket: refuses a burst of STS round trips (a login storm or a brute-force attempt). */
  function takeRateToken(): boolean {
    const t = now();
    tokens = Math.min(burst, tokens + ((t - refilledAt) / 1000) * perSecond);
    refilledAt = t;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }

  function remember(key: string, outcome: StsOutcome, tokenExpiresAt: number): void {
    // STS outages are not remembered: the next attempt should try again.
    if (outcome.kind === 'unavailable') return;
    if (cache.size >= MAX_CACHE_ENTRIES) {
      const oldest = cache.keys().next().value;
      if (oldest !== undefined) cache.delete(oldest);
    }
    cache.set(key, { outcome, until: Math.min(now() + cacheTtlMs, tokenExpiresAt) });
  }

  function replay(parsed: ParsedToken, dbUser: string): Promise<StsOutcome> {
    const headers: Record<string, string> = { host: parsed.host, [PROXY_HEADER]: options.proxyName };
    if (parsed.signedHeaders.includes(DB_USER_HEADER)) headers[DB_USER_HEADER] = dbUser;
    stsRequests += 1;
    return new Promise<StsOutcome>((resolve) => {
      // https.request never follows redirects: a 3xx is just a failure below.
      const req = httpsRequest(
        { host: parsed.hostname, port: parsed.port, path: parsed.pathAndQuery, method: 'GET', headers, agent, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_RESPONSE_BYTES) {
              res.destroy();
              resolve({ kind: 'unavailable', reason: 'STS answer too large' });
              return;
            }
            chunks.push(chunk);
          });
          res.on('error', () => resolve({ kind: 'unavailable', reason: 'STS answer interrupted' }));
          res.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status === 200) {
              const identity = parseGetCallerIdentityXml(body);
              resolve(identity === undefined ? { kind: 'unavailable', reason: 'STS answer has no caller identity' } : { kind: 'identity', ...identity });
              return;
            }
            const code = parseStsErrorCode(body) ?? `HTTP ${status}`;
            if (status >= 400 && status < 500 && code !== 'Throttling' && code !== 'RequestTimeout') {
              resolve({
                kind: 'rejected',
                reason: `STS refused the token (${code}): it is forged, expired, or was minted for another proxy or database user`,
              });
            } else {
              resolve({ kind: 'unavailable', reason: `STS error (${code})` });
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (error) => resolve({ kind: 'unavailable', reason: `cannot reach STS at ${parsed.host}: ${error.message}` }));
      req.end();
    });
  }

  function decide(outcome: StsOutcome, dbUser: string): IamVerifyResult {
    if (outcome.kind === 'rejected') return { ok: false, code: 'STS_REJECTED', reason: outcome.reason };
    if (outcome.kind === 'unavailable') return { ok: false, code: 'STS_UNAVAILABLE', reason: outcome.reason };
    const principal = canonicalPrincipalArn(outcome.arn);
    if (!allowList.allows(principal, dbUser)) {
      return { ok: false, code: 'NOT_AUTHORIZED', reason: `${principal} is not allowed to connect as database user ${JSON.stringify(dbUser)}` };
    }
    return { ok: true, arn: principal, callerArn: outcome.arn, account: outcome.account, userId: outcome.userId };
  }

  return {
    get stsRequests() {
      return stsRequests;
    },
    close() {
      if (ownsAgent) agent.destroy();
    },
    async verify(token, dbUser, connection) {
      if (!connection.tls) return { ok: false, code: 'TLS_REQUIRED', reason: TLS_REQUIRED_MESSAGE };
      const parsed = parseAuthToken(token, now());
      if (!parsed.ok) return parsed;
      const t = parsed.token;
      if (!hosts.has(t.host)) return { ok: false, code: 'HOST_NOT_ALLOWED', reason: `STS host ${JSON.stringify(t.host.slice(0, 100))} is not allowed` };

      // Keyed by a hash, so the cache does not keep bearer tokens in memory.
      const key = `${createHash('sha256').update(token).digest('base64url')}\u0000${dbUser}`;
      const cached = cache.get(key);
      if (cached !== undefined) {
        if (cached.until > now()) return decide(cached.outcome, dbUser);
        cache.delete(key);
      }
      let pending = inFlight.get(key);
      if (pending === undefined) {
        if (active >= maxConcurrent || !takeRateToken()) return { ok: false, code: 'RATE_LIMITED', reason: RATE_LIMIT_MESSAGE };
        active += 1;
        pending = replay(t, dbUser).then((outcome) => {
          remember(key, outcome, t.expiresAt);
          return outcome;
        });
        inFlight.set(key, pending);
        void pending.finally(() => {
          active -= 1;
          inFlight.delete(key);
        });
      }
      return decide(await pending, dbUser);
    },
  };
}
