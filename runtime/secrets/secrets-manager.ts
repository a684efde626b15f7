/**
 * Credentials read from AWS Secrets Manager (`auth[].secretArn`), as RDS Proxy does it.
 *
 * The login hot path calls `lookup()` synchronously, so secrets are read ahead of time
 * into a cache: once at start, again on an interval, and on demand through `refresh()`
 * when the database rejects a password (the secret was rotated since the last read).
 * A secret that cannot be read fails only the logins of its own user: `lookup()` returns
 * undefined for it and the engine answers with its ordinary authentication error.
 *
 * Never log secret values: log lines carry the secret ARN, the user name and the SDK
 * error's name and message (which never contain the SecretString).
 */
import { GetSecretValueCommand, SecretsManagerClient, type SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';
import type { AuthConfig, EngineFamily } from '../config/schema';
import { effectiveClientAuthType } from '../config/schema';
import { SecretError, parseSecretString } from '../server/credentials';
import type { Credential, CredentialSource } from '../session/types';

/** The part of a logger this module uses (pino's Logger fits). */
export interface SecretsLogger {
  warn(obj: object, msg: string): void;
  info?(obj: object, msg: string): void;
}

/** One `auth` entry backed by a Secrets Manager secret. */
export interface SecretArnEntry {
  readonly secretArn: string;
  readonly clientPasswordAuthType: string;
  readonly iamAuth: 'DISABLED' | 'REQUIRED';
}

/** A credential source that can re-read a user's secret when the database rejects its password. */
export interface RefreshableCredentialSource extends CredentialSource {
  /**
   * Re-reads the secret(s) of `username` (subject to a per-secret rate limit).
   * Resolves true when the user's credential changed, so a retry has a chance.
   */
  refresh(username: string): Promise<boolean>;
}

export interface SecretsManagerCredentialSourceOptions {
  readonly client: SecretsManagerClient;
  readonly entries: readonly SecretArnEntry[];
  readonly logger: SecretsLogger;
  /** Seconds between background re-reads of every secret. @default 300 */
  readonly refreshIntervalSeconds?: number;
  /**
   * Least seconds between two on-demand reads of one secret. A client that keeps sending
   * a wrong password must not turn into a GetSecretValue storm (API throttling would
   * then hurt every user). @default 10
   */
  readonly onDemandMinIntervalSeconds?: number;
  /** Secrets read at once; keeps a 200-secret start inside the GetSecretValue quota. @default 10 */
  readonly concurrency?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

export const MAX_SECRETS = 200;

/** The state of one secret; `credential` is the last good read, if any. */
interface SecretState {
  readonly entry: SecretArnEntry;
  credential: Credential | undefined;
  versionId: string | undefined;
  lastAttempt: number;
  lastSuccess: number;
  lastError: string | undefined;
  inFlight: Promise<void> | undefined;
}

export interface SecretStatus {
  readonly secretArn: string;
  readonly username: string | undefined;
  readonly ok: boolean;
  readonly lastError: string | undefined;
  readonly lastSuccess: number | undefined;
}

/**
 * SDK error names after which the cached credential is dropped: the secret is gone, the
 * proxy may no longer read it, or its value is unusable. Anything else (throttling,
 * network, 5xx) is treated as transient and the last good credential keeps serving, so a
 * Secrets Manager hiccup does not lock every user out.
 */
const DEFINITIVE_ERRORS = new Set([
  'ResourceNotFoundException',
  'AccessDeniedException',
  'AccessDeniedFault',
  'DecryptionFailure',
  'InvalidRequestException',
  'InvalidParameterException',
  'SecretError',
]);

export class SecretsManagerCredentialSource implements RefreshableCredentialSource {
  private readonly states: SecretState[];
  private byUser = new Map<string, SecretState>();
  private readonly client: SecretsManagerClient;
  private readonly logger: SecretsLogger;
  private readonly refreshIntervalMs: number;
  private readonly onDemandMinIntervalMs: number;
  private readonly concurrency: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private refreshAllInFlight: Promise<void> | undefined;
  /** Secrets already reported as shadowed by an earlier secret of the same user (warn once, not every refresh). */
  private readonly warnedDuplicates = new Set<string>();

  constructor(options: SecretsManagerCredentialSourceOptions) {
    if (options.entries.length > MAX_SECRETS) throw new SecretError(`at most ${MAX_SECRETS} secrets per proxy (got ${options.entries.length})`);
    this.client = options.client;
    this.logger = options.logger;
    this.refreshIntervalMs = (options.refreshIntervalSeconds ?? 300) * 1000;
    this.onDemandMinIntervalMs = (options.onDemandMinIntervalSeconds ?? 10) * 1000;
    this.concurrency = Math.max(1, options.concurrency ?? 10);
    this.now = options.now ?? Date.now;
    this.states = options.entries.map((entry) => ({
      entry,
      credential: undefined,
      versionId: undefined,
      lastAttempt: 0,
      lastSuccess: 0,
      lastError: undefined,
      inFlight: undefined,
    }));
  }

  /**
   * Reads every secret and starts the background refresh. Resolves once every secret was
   * tried, whether or not it could be read: unreadable ones are logged and retried later.
   */
  async start(): Promise<void> {
    await this.refreshAll();
    if (this.timer === undefined && this.refreshIntervalMs > 0) {
      this.timer = setInterval(() => void this.refreshAll(), this.refreshIntervalMs);
      // The refresh must never keep a stopping process alive.
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  lookup(username: string): Credential | undefined {
    return this.byUser.get(username)?.credential;
  }

  /** Re-reads every secret (concurrent calls share one pass). */
  refreshAll(): Promise<void> {
    if (this.refreshAllInFlight === undefined) {
      this.refreshAllInFlight = this.runBounded(this.states, (state) => this.read(state)).finally(() => {
        this.refreshAllInFlight = undefined;
      });
    }
    return this.refreshAllInFlight;
  }

  async refresh(username: string): Promise<boolean> {
    const known = this.states.filter((s) => s.credential?.username === username);
    // A user we have no credential for may own one of the secrets that could not be read
    // (its user name is unknown until a read succeeds): retry those too, so a fixed
    // permission or a restored secret starts working on the next login.
    const candidates = known.length > 0 ? known : this.states.filter((s) => s.credential === undefined);
    const before = this.lookup(username);
    const due = candidates.filter((s) => s.inFlight !== undefined || this.now() - s.lastAttempt >= this.onDemandMinIntervalMs);
    await this.runBounded(due, (state) => this.read(state));
    const after = this.lookup(username);
    return after !== undefined && (before === undefined || before.password !== after.password);
  }

  status(): SecretStatus[] {
    return this.states.map((s) => ({
      secretArn: s.entry.secretArn,
      username: s.credential?.username,
      ok: s.credential !== undefined && s.lastError === undefined,
      lastError: s.lastError,
      lastSuccess: s.lastSuccess === 0 ? undefined : s.lastSuccess,
    }));
  }

  get size(): number {
    return this.byUser.size;
  }

  /** One GetSecretValue for a secret; concurrent callers share the request in flight. */
  private read(state: SecretState): Promise<void> {
    if (state.inFlight === undefined) {
      state.lastAttempt = this.now();
      state.inFlight = this.fetch(state).finally(() => {
        state.inFlight = undefined;
      });
    }
    return state.inFlight;
  }

  private async fetch(state: SecretState): Promise<void> {
    const arn = state.entry.secretArn;
    try {
      const out = await this.client.send(new GetSecretValueCommand({ SecretId: arn }));
      if (out.SecretString === undefined) throw new SecretError(`${arn}: the secret has no SecretString (binary secrets are not supported)`);
      const { username, password } = parseSecretString(out.SecretString, arn);
      const previous = state.credential;
      state.credential = {
        username,
        password,
        clientPasswordAuthType: state.entry.clientPasswordAuthType,
        iamAuth: state.entry.iamAuth,
      };
      state.versionId = out.VersionId;
      state.lastSuccess = this.now();
      if (state.lastError !== undefined) this.logger.info?.({ secretArn: arn, user: username }, 'secret readable again');
      state.lastError = undefined;
      if (previous !== undefined && previous.password !== password) {
        this.logger.info?.({ secretArn: arn, user: username, versionId: out.VersionId }, 'secret rotated: new password picked up');
      }
    } catch (error) {
      const name = error instanceof Error ? error.name : 'Error';
      // parseSecretString's messages name the problem, never the value; SDK messages never carry the SecretString.
      const message = error instanceof Error ? error.message : String(error);
      state.lastError = `${name}: ${message}`;
      const dropped = DEFINITIVE_ERRORS.has(name) || error instanceof SecretError;
      const user = state.credential?.username;
      if (dropped) state.credential = undefined;
      this.logger.warn(
        { secretArn: arn, user, error: state.lastError, keptLastGood: !dropped && user !== undefined },
        dropped ? 'cannot read secret: logins of its user fail until it can be read' : 'cannot read secret: keeping the last value read',
      );
    }
    this.reindex();
  }

  /** Rebuilds the user → secret map; on duplicate user names the first entry in config order wins. */
  private reindex(): void {
    const next = new Map<string, SecretState>();
    for (const state of this.states) {
      const username = state.credential?.username;
      if (username === undefined) continue;
      if (next.has(username)) {
        if (!this.warnedDuplicates.has(state.entry.secretArn)) {
          this.warnedDuplicates.add(state.entry.secretArn);
          this.logger.warn({ secretArn: state.entry.secretArn, user: username }, 'two secrets name the same user: the first in config order is used');
        }
        continue;
      }
      next.set(username, state);
    }
    this.byUser = next;
  }

  private async runBounded<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < items.length) {
        const item = items[next++]!;
        await work(item);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, items.length) }, worker));
  }
}

/**
 * Looks a user up in several sources in order (secretFile entries, then secretArn
 * entries, as written in config) and refreshes through those that can.
 */
export class CombinedCredentialSource implements RefreshableCredentialSource {
  constructor(private readonly sources: readonly CredentialSource[]) {}

  lookup(username: string): Credential | undefined {
    for (const source of this.sources) {
      const credential = source.lookup(username);
      if (credential !== undefined) return credential;
    }
    return undefined;
  }

  async refresh(username: string): Promise<boolean> {
    const results = await Promise.all(this.sources.filter(isRefreshable).map((s) => s.refresh(username)));
    return results.some(Boolean);
  }
}

export function isRefreshable(source: CredentialSource): source is RefreshableCredentialSource {
  return typeof (source as Partial<RefreshableCredentialSource>).refresh === 'function';
}

/** The `secretArn` entries of a validated config, with the engine's default auth type applied. */
export function secretArnEntries(engine: EngineFamily, auth: readonly AuthConfig[]): SecretArnEntry[] {
  return auth
    .filter((a): a is AuthConfig & { secretArn: string } => a.secretArn !== undefined)
    .map((a) => ({ secretArn: a.secretArn, clientPasswordAuthType: effectiveClientAuthType(engine, a), iamAuth: a.iamAuth }));
}

/** Proposed config block: where the AWS SDK clients talk to (region and endpoint override). */
export interface AwsClientConfig {
  /** @default the SDK's region chain (AWS_REGION, then the ECS task metadata). */
  readonly region?: string;
  /** Secrets Manager endpoint override (VPC endpoint, or a local endpoint in tests). */
  readonly secretsManagerEndpoint?: string;
}

/**
 * A client from config. Credentials come from the SDK's default chain (the Fargate task
 * role); tests and special setups pass their own in `extra`.
 */
export function createSecretsManagerClient(config: AwsClientConfig, extra: SecretsManagerClientConfig = {}): SecretsManagerClient {
  return new SecretsManagerClient({
    ...(config.region !== undefined ? { region: config.region } : {}),
    ...(config.secretsManagerEndpoint !== undefined ? { endpoint: config.secretsManagerEndpoint } : {}),
    // Bounded retries: a start with 200 secrets must not hang on an unreachable endpoint.
    maxAttempts: 3,
    ...extra,
  });
}

/**
 * The Secrets Manager source for a config, started (every secret tried once), or
 * undefined when no entry uses `secretArn` (then no SDK client is created at all).
 */
export async function startSecretsManagerSource(options: {
  readonly engine: EngineFamily;
  readonly auth: readonly AuthConfig[];
  readonly aws?: AwsClientConfig;
  readonly refreshIntervalSeconds?: number;
  readonly logger: SecretsLogger;
  /** A ready client (tests); otherwise one is made from `aws`. */
  readonly client?: SecretsManagerClient;
}): Promise<SecretsManagerCredentialSource | undefined> {
  const entries = secretArnEntries(options.engine, options.auth);
  if (entries.length === 0) return undefined;
  const source = new SecretsManagerCredentialSource({
    client: options.client ?? createSecretsManagerClient(options.aws ?? {}),
    entries,
    logger: options.logger,
    ...(options.refreshIntervalSeconds !== undefined ? { refreshIntervalSeconds: options.refreshIntervalSeconds } : {}),
  });
  await source.start();
  return source;
}
