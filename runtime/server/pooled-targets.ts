/**
 * What both engines share around their server connections: the target group that finds
 * the writer, the pool that lends connections to it, what happens when the writer changes,
 * the pool's ceiling from the writer's max_connections, and the stats, logs and metrics of it
 * all. Each engine supplies only how to open a connection and how to probe a target.
 */
import type { Logger } from 'pino';
import type { TidepoolConfig } from '../config/schema';
import type { ProxyMetrics } from '../metrics';
import { ConnectionPool } from '../pool/pool';
import { Target, TargetGroup, TargetProber } from '../pool/target-group';
import type { PoolKey, ServerConnection } from '../session/types';
import type { EngineStats } from './engine';

/** The writer probe holds one connection of the maxConnectionsPercent share. */
const PROBE_CONNECTIONS = 1;

export interface PooledTargetsOptions<C extends ServerConnection> {
  config: TidepoolConfig;
  log: Logger;
  metrics: ProxyMetrics;
  defaultPort: number;
  createProber(target: Target): TargetProber;
  open(key: PoolKey): Promise<C>;
}

export class PooledTargets<C extends ServerConnection> {
  readonly pool: ConnectionPool<C>;
  readonly targets: TargetGroup;
  private limitsKnown = false;

  constructor(private readonly options: PooledTargetsOptions<C>) {
    const { config, log, metrics } = options;
    this.targets = new TargetGroup(
      config.targets.map((t) => ({ host: t.host, port: t.port ?? options.defaultPort })),
      {
        createProber: (target) => options.createProber(target),
        intervalMs: 1000,
        fastIntervalMs: 100,
        probeTimeoutMs: 2000,
        onWriterChanged: (writer, previous) => this.onWriterChanged(writer, previous),
      },
    );
    this.pool = new ConnectionPool<C>({
      open: (key) => options.open(key),
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
  }

  sweep(): void {
    this.pool.sweep();
  }

  close(): void {
    this.pool.close();
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
