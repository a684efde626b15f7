/**
 * What both engines share around their server connections: the target list (static
 * `targets` plus the instances `rdsTargets` lists through the RDS API), the target group that
 * finds the writer among them, the pool that lends connections to it, what happens when the writer changes,
 * the pool's ceiling from the writer's max_connections, and the stats, logs and metrics of it
 * all. Each engine supplies only how to open a connection and how to probe a target.
 */
import type { Logger } from 'pino';
import type { TidepoolConfig } from '../config/schema';
import { ProxyError } from '../errors';
import { type ProxyMetrics, targetDimensionValue } from '../metrics';
import { isRefreshable } from '../secrets/secrets-manager';
import { ConnectionPool } from '../pool/pool';
import { Target, TargetDescription, TargetGroup, TargetProber } from '../pool/target-group';
import { RdsDiscovery, createRdsClient } from '../discovery/rds-discovery';
import type { Credential, CredentialSource, PoolKey, ServerConnection } from '../session/types';
import type { EngineStats } from './engine';

/** The writer probe holds one connection of the maxConnectionsPercent share. */
const PROBE_CONNECTIONS = 1;
const SERVER_CONNECT_TIMEOUT_MS = 10_000;

/** The hooks the shared open flow sets on an engine's server connection. */
export interface OpenableConnection extends ServerConnection {
  targetName: string;
  // `never`: each engine types the parameter as its own connection; the shared flow passes none.
  onLost: ((conn: never) => void) | null;
  onClosedForMetrics: (() => void) | null;
}

/** How an engine makes a server connection; the shared flow does the waiting, timing, metrics and retries. */
export interface ConnectionRecipe<C extends OpenableConnection> {
  create(key: PoolKey, writer: Target, credential: Credential): C;
  /** Logs in and prepares the session; returns the server's max_connections when `wantMaxConnections`. */
  initialise(conn: C, wantMaxConnections: boolean): Promise<number | undefined>;
  /** A startup failure worth waiting out (the target is unreachable or changing roles). */
  isTransient(error: ProxyError): boolean;
  /** The database rejected the secret's password (it may have been rotated). */
  isPasswordRejected(error: unknown): boolean;
}

export interface PooledTargetsOptions<C extends OpenableConnection> {
  config: TidepoolConfig;
  log: Logger;
  metrics: ProxyMetrics;
  credentials: CredentialSource;
  defaultPort: number;
  createProber(target: Target): TargetProber;
  recipe: ConnectionRecipe<C>;
}

export class PooledTargets<C extends OpenableConnection> {
  readonly pool: ConnectionPool<C>;
  readonly targets: TargetGroup;
  /** Lists `rdsTargets` through the RDS API; null without them. */
  readonly discovery: RdsDiscovery | null;
  private readonly staticTargets: readonly TargetDescription[];
  private limitsKnown = false;

  constructor(private readonly options: PooledTargetsOptions<C>) {
    const { config, log, metrics } = options;
    this.staticTargets = config.targets.map((t) => ({ host: t.host, port: t.port ?? options.defaultPort }));
    this.targets = new TargetGroup(this.staticTargets, {
      createProber: (target) => options.createProber(target),
      intervalMs: 1000,
      fastIntervalMs: 100,
      probeTimeoutMs: 2000,
      onWriterChanged: (writer, previous) => this.onWriterChanged(writer, previous),
      onTargetsChanged: (added, removed) =>
        log.info(
          { event: 'targets-changed', added: added.map((t) => `${t.host}:${t.port}`), removed: removed.map((t) => `${t.host}:${t.port}`) },
          `targets changed: ${added.length} added, ${removed.length} removed`,
        ),
    });
    const rds = config.rdsTargets;
    this.discovery = rds
      ? new RdsDiscovery({
          client: createRdsClient({ region: config.aws.region, rdsEndpoint: config.aws.rdsEndpoint }),
          dbClusterIdentifier: rds.dbClusterIdentifier,
          dbInstanceIdentifiers: rds.dbInstanceIdentifiers,
          refreshIntervalSeconds: rds.refreshInterval,
          defaultPort: options.defaultPort,
          log,
          // Static targets first: a listed instance with the same endpoint replaces it (and brings its hints).
          onTargets: (listed) => this.targets.setTargets([...this.staticTargets, ...listed]),
        })
      : null;
    this.pool = new ConnectionPool<C>({
      open: (key) => this.open(key),
      borrowTimeoutMs: config.connectionPoolConfig.connectionBorrowTimeout * 1000,
      onBorrowed: (waitedMs) => metrics.borrowed(waitedMs),
      onEvent: (event) => {
        if (event.kind === 'open-failed') {
          log.warn({ event: 'server-connect-failed', user: event.key.user, database: event.key.database, error: event.error.message }, 'could not open a database connection');
        } else if (event.kind === 'borrow-timeout') {
          metrics.borrowTimedOut();
          log.warn({ event: 'borrow-timeout', user: event.key.user, database: event.key.database, waitedMs: event.waitedMs }, 'Timed-out waiting to acquire database connection');
        }
      },
    });
  }

  /** Whether the next opened connection should report the writer's max_connections. */
  get needsLimits(): boolean {
    return !this.limitsKnown;
  }

  /** The pool's ceiling is a share of the writer's max_connections, read from the server itself. */
  applyServerMaxConnections(maxConnections: number): void {
    if (!Number.isFinite(maxConnections) || maxConnections <= 0) return;
    const pool = this.options.config.connectionPoolConfig;
    const limits = {
      maxConnections: Math.max(1, Math.floor((maxConnections * pool.maxConnectionsPercent) / 100) - PROBE_CONNECTIONS),
      maxIdleConnections: Math.floor((maxConnections * pool.maxIdleConnectionsPercent) / 100),
    };
    this.limitsKnown = true;
    this.pool.setLimits(limits);
    this.options.log.info({ event: 'pool-limits', targetMaxConnections: maxConnections, ...limits }, 'pool limits set from the target');
  }

  start(): void {
    this.targets.start();
    this.discovery?.start();
  }

  private async open(key: PoolKey): Promise<C> {
    try {
      return await this.openOnce(key);
    } catch (error) {
      // The database rejected the secret's password: it may have been rotated. Re-read the
      // secret and, if it changed, try once more.
      const credentials = this.options.credentials;
      if (this.options.recipe.isPasswordRejected(error) && isRefreshable(credentials) && (await credentials.refresh(key.user))) {
        return this.openOnce(key);
      }
      throw error;
    }
  }

  private async openOnce(key: PoolKey): Promise<C> {
    const { metrics, recipe } = this.options;
    const credential = this.options.credentials.lookup(key.user);
    if (!credential) throw new ProxyError('AUTH_FAILED', `no secret for user "${key.user}"`);
    // During a failover this waits; the client's borrow timeout bounds the wait.
    const writer = await this.targets.waitForWriter();
    const conn = recipe.create(key, writer, credential);
    // A connection the server dropped may mean the writer is gone: re-check now, not at the next tick.
    conn.onLost = () => this.targets.suspect(writer);
    const targetName = targetDimensionValue(writer);
    conn.targetName = targetName;
    metrics.databaseConnectionRequest(false, targetName);
    const timer = setTimeout(() => conn.close('timed out connecting to the database'), SERVER_CONNECT_TIMEOUT_MS);
    try {
      const maxConnections = await recipe.initialise(conn, this.needsLimits);
      if (maxConnections !== undefined) this.applyServerMaxConnections(maxConnections);
      if (this.targets.writer !== writer) throw new ProxyError('SERVER_CONNECT_FAILED', 'the writer changed while connecting', undefined, true);
    } catch (error) {
      metrics.databaseConnectionFailed(targetName);
      conn.close('startup failed');
      const proxyError = error instanceof ProxyError ? error : new ProxyError('SERVER_CONNECT_FAILED', String(error));
      if (recipe.isTransient(proxyError)) {
        this.targets.suspect(writer);
        throw new ProxyError('SERVER_CONNECT_FAILED', proxyError.message, proxyError.serverDetail, true);
      }
      throw proxyError;
    } finally {
      clearTimeout(timer);
    }
    metrics.databaseConnectionOpened(false, targetName);
    conn.onClosedForMetrics = () => metrics.databaseConnectionClosed(false, targetName);
    return conn;
  }

  sweep(): void {
    this.pool.sweep();
  }

  close(): void {
    this.pool.close();
    this.discovery?.stop();
    this.targets.stop();
  }

  stats(): EngineStats {
    return {
      pool: this.pool.stats(),
      limits: this.pool.currentLimits,
      serverConnections: this.pool.totalConnections,
      targets: this.targets.health(),
      writer: this.targets.writer,
    };
  }

  private onWriterChanged(writer: Target | null, previous: Target | null): void {
    this.options.log.warn(
      { event: 'writer-changed', writer: writer ? `${writer.host}:${writer.port}` : null, previous: previous ? `${previous.host}:${previous.port}` : null },
      writer ? `writer is now ${writer.host}:${writer.port}` : 'no writer available: requests wait up to connectionBorrowTimeout',
    );
    // Connections to a former writer must not be written to: drop them all. Their clients'
    // in-flight work fails; idle clients notice nothing.
    this.pool.closeAll(writer ? 'the writer changed' : 'the writer is unavailable');
    // The new writer's max_connections may differ.
    this.limitsKnown = false;
  }
}
