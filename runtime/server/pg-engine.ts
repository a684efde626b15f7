/**
 * PostgreSQL behind the Engine interface: client sockets become PgClientSessions; server
 * connections are opened, authenticated and initialised here for the shared pool.
 */
import { Socket, connect } from 'node:net';
import { SecureContext, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { TargetConfig, TidepoolConfig } from '../config/schema';
import { ProxyError } from '../errors';
import { ConnectionPool } from '../pool/pool';
import { cancelRequest } from '../protocol/pg/messages';
import { PgBackend } from '../session/pg/backend';
import {
  CancelRegistry,
  ClientTransport,
  PgClientSession,
  PgSessionContext,
  PgSessionEvents,
  StartupParamCache,
} from '../session/pg/client';
import { StatementRegistry } from '../session/pg/statements';
import type { CredentialSource, PoolKey } from '../session/types';
import type { ClientHandle, Engine, EngineStats } from './engine';
import { SharedReadBuffer, adoptAcceptedSocket } from './sockets';

const SERVER_CONNECT_TIMEOUT_MS = 10_000;

export class PgEngine implements Engine {
  readonly family = 'POSTGRESQL' as const;
  readonly takesPausedSockets = true;
  readonly pool: ConnectionPool<PgBackend>;
  private readonly context: PgSessionContext;
  private limitsKnown = false;
  /** Every client socket reads into this one buffer (see SharedReadBuffer). */
  private readonly clientReadBuffer = new SharedReadBuffer();

  constructor(
    private readonly config: TidepoolConfig,
    private readonly target: TargetConfig,
    private readonly credentials: CredentialSource,
    private readonly secureContext: SecureContext,
    private readonly log: Logger,
  ) {
    this.pool = new ConnectionPool<PgBackend>({
      open: (key) => this.openServerConnection(key),
      borrowTimeoutMs: config.connectionPoolConfig.connectionBorrowTimeout * 1000,
      onEvent: (event) => {
        if (event.kind === 'open-failed') {
          log.warn({ event: 'server-connect-failed', user: event.key.user, database: event.key.database, error: event.error.message }, 'could not open a database connection');
        } else if (event.kind === 'borrow-timeout') {
          log.warn({ event: 'borrow-timeout', user: event.key.user, database: event.key.database, waitedMs: event.waitedMs }, 'Timed-out waiting to acquire database connection');
        }
      },
    });
    const events: PgSessionEvents = {
      onPinned: (session, reason) =>
        log.info({ event: 'pinned', client: session.id, user: session.user, database: session.database, reason }, `pinned: ${reason}`),
      onAuthFailed: (user, reason) => log.warn({ event: 'auth-failed', user, reason }, `authentication failed for user "${user}"`),
      onClosed: () => undefined,
      debugSql: config.debugLogging
        ? (session, sql) => log.debug({ event: 'sql', client: session.id, sql: sql.length > 1000 ? `${sql.slice(0, 1000)}…` : sql })
        : undefined,
    };
    this.context = {
      requireTls: config.requireTls,
      maxMessageBytes: config.limits.maxMessageBytes,
      excludeVariableSets: config.connectionPoolConfig.sessionPinningFilters.includes('EXCLUDE_VARIABLE_SETS'),
      credentials,
      broker: this.pool,
      statements: new StatementRegistry(),
      cancelTargets: new CancelRegistry(),
      startupCache: new StartupParamCache(),
      events,
      sendCancel: (backend) => this.sendCancel(backend),
    };
  }

  acceptClient(accepted: Socket, onClosed: (client: ClientHandle) => void): ClientHandle {
    let session: PgClientSession;
    const reader = this.clientReadBuffer;
    const socket = adoptAcceptedSocket(accepted, reader, (chunk) => {
      session.onData(chunk);
      if (session.retainsReceivedBytes()) reader.retire();
    });
    let output: Socket | TLSSocket = socket;
    const transport: ClientTransport = {
      write: (data) => (output.destroyed ? true : output.write(data)),
      get pendingBytes() {
        return output.writableLength;
      },
      pause: () => output.pause(),
      resume: () => output.resume(),
      cork: () => output.cork(),
      uncork: () => output.uncork(),
      end: () => {
        if (!output.destroyed) output.end();
      },
      get isTls() {
        return output !== socket;
      },
      tlsAvailable: true,
      startTls: () => {
        const secure = new TLSSocket(socket, { isServer: true, secureContext: this.secureContext });
        output = secure;
        secure.on('data', (chunk: Buffer) => session.onData(chunk));
        secure.on('drain', () => session.onTransportDrain());
        secure.on('error', (error) => {
          this.log.debug({ event: 'tls-error', error: error.message }, 'client TLS error');
          secure.destroy();
        });
        secure.on('close', () => session.onTransportClosed());
      },
    };
    session = new PgClientSession(transport, this.context);
    socket.on('drain', () => session.onTransportDrain());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      session.onTransportClosed();
      onClosed(session);
    });
    return session;
  }

  sweep(): void {
    this.pool.sweep();
  }

  stats(): EngineStats {
    return { pool: this.pool.stats(), limits: this.pool.currentLimits, serverConnections: this.pool.totalConnections };
  }

  close(): void {
    this.pool.close();
  }

  private async openServerConnection(key: PoolKey): Promise<PgBackend> {
    const credential = this.credentials.lookup(key.user);
    if (!credential) throw new ProxyError('AUTH_FAILED', `no secret for user "${key.user}"`);
    const backend = new PgBackend(key, { host: this.target.host, port: this.target.port ?? 5432 }, { user: credential.username, password: credential.password, database: key.database });
    backend.initQuery = this.config.connectionPoolConfig.initQuery;
    const timer = setTimeout(() => backend.close('timed out connecting to the database'), SERVER_CONNECT_TIMEOUT_MS);
    try {
      await backend.start();
      if (backend.initQuery !== '') await backend.internalQuery(backend.initQuery);
      if (!this.limitsKnown) await this.discoverLimits(backend);
    } catch (error) {
      backend.close('startup failed');
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return backend;
  }

  /** The pool's ceiling is a share of the target's max_connections, read from the server itself. */
  private async discoverLimits(backend: PgBackend): Promise<void> {
    const result = await backend.internalQuery('SHOW max_connections');
    const maxConnections = Number(result.rows[0]?.[0]);
    if (!Number.isFinite(maxConnections) || maxConnections <= 0) return;
    const pool = this.config.connectionPoolConfig;
    const limits = {
      maxConnections: Math.max(1, Math.floor((maxConnections * pool.maxConnectionsPercent) / 100)),
      maxIdleConnections: Math.floor((maxConnections * pool.maxIdleConnectionsPercent) / 100),
    };
    this.limitsKnown = true;
    this.pool.setLimits(limits);
    this.log.info({ event: 'pool-limits', targetMaxConnections: maxConnections, ...limits }, 'pool limits set from the target');
  }

  private sendCancel(backend: PgBackend): void {
    const socket = connect({ host: backend.target.host, port: backend.target.port });
    socket.on('error', () => socket.destroy());
    socket.end(cancelRequest(backend.processId, backend.secretKey));
  }
}
