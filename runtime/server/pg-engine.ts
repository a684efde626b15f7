/**
 * PostgreSQL behind the Engine interface: client sockets become PgClientSessions; server
 * connections are opened, authenticated and initialised here for the shared pool.
 */
import { Socket, connect } from 'node:net';
import type { Logger } from 'pino';
import type { TidepoolConfig } from '../config/schema';
import { ProxyError } from '../errors';
import { ConnectionPool } from '../pool/pool';
import { cancelRequest, errorResponse } from '../protocol/pg/messages';
import { pgErrorFields } from '../protocol/pg/errors';
import { PgBackend } from '../session/pg/backend';
import {
  CancelRegistry,
  PgClientSession,
  PgSessionContext,
  PgSessionEvents,
  StartupParamCache,
} from '../session/pg/client';
import { StatementRegistry } from '../session/pg/statements';
import type { Credential, CredentialSource } from '../session/types';
import { ProbeResult, Target, TargetGroup, TargetProber } from '../pool/target-group';
import { PooledTargets } from './pooled-targets';
import type { ClientHandle, Engine, EngineStats } from './engine';
import { SharedReadBuffer, adoptAcceptedSocket, createSocketTransport } from './sockets';
import type { TlsSource } from './tls';
import type { IamTokenVerifier } from '../secrets/iam-token';
import type { ProxyMetrics } from '../metrics';

/**
 * A startup failure worth waiting out: no answer at all (connection refused or reset, a
 * timeout), or the server saying it cannot take connections right now (57P0x: starting up,
 * shutting down, in recovery; 08xxx).
 */
function isTransientStartupFailure(error: ProxyError): boolean {
  if (error.transient) return true;
  const sqlState = error.serverDetail?.sqlState;
  if (sqlState === undefined) return error.code === 'SERVER_CONNECT_FAILED';
  return sqlState.startsWith('57P') || sqlState.startsWith('08');
}

/** Asks one target whether it is writable, over a connection kept between probes. */
class PgWriterProber implements TargetProber {
  private backend: PgBackend | null = null;

  constructor(
    private readonly target: Target,
    private readonly credential: () => Credential | undefined,
  ) {}

  async probe(): Promise<ProbeResult> {
    try {
      if (this.backend === null || this.backend.isClosed) {
        const credential = this.credential();
        if (!credential) throw new Error('auth: no readable secret to probe the target with');
        const backend = new PgBackend({ user: credential.username, database: PROBE_DATABASE }, this.target, {
          user: credential.username,
          password: credential.password,
          database: PROBE_DATABASE,
        });
        this.backend = backend;
        await backend.start();
      }
      const result = await this.backend.internalQuery('SELECT pg_catalog.pg_is_in_recovery()');
      return { writable: result.rows[0]?.[0] === 'f' };
    } catch (error) {
      this.close();
      throw error;
    }
  }

  close(): void {
    this.backend?.close('probe closed');
    this.backend = null;
  }
}

/** The database the writer probes log in to. */
const PROBE_DATABASE = 'postgres';

export class PgEngine implements Engine {
  readonly family = 'POSTGRESQL' as const;
  readonly takesPausedSockets = true;
  readonly pool: ConnectionPool<PgBackend>;
  private readonly context: PgSessionContext;
  private readonly core: PooledTargets<PgBackend>;
  /** Every client socket reads into this one buffer (see SharedReadBuffer). */
  private readonly clientReadBuffer = new SharedReadBuffer();

  readonly targets: TargetGroup;

  constructor(
    config: TidepoolConfig,
    credentials: CredentialSource,
    /** Who the writer probes log in as. */
    probeCredential: () => Credential | undefined,
    private readonly tls: TlsSource,
    private readonly log: Logger,
    private readonly metrics: ProxyMetrics,
    iamVerifier: IamTokenVerifier | null,
  ) {
    this.core = new PooledTargets<PgBackend>({
      config,
      log,
      metrics,
      defaultPort: 5432,
      credentials,
      createProber: (target) => new PgWriterProber(target, probeCredential),
      recipe: {
        create: (key, writer, credential) => {
          const backend = new PgBackend(key, writer, { user: credential.username, password: credential.password, database: key.database });
          backend.initQuery = config.connectionPoolConfig.initQuery;
          return backend;
        },
        initialise: async (backend, wantMaxConnections) => {
          await backend.start();
          if (backend.initQuery !== '') await backend.internalQuery(backend.initQuery);
          return wantMaxConnections ? Number((await backend.internalQuery('SHOW max_connections')).rows[0]?.[0]) : undefined;
        },
        isTransient: isTransientStartupFailure,
        isPasswordRejected: (error) => error instanceof ProxyError && error.serverDetail?.sqlState === '28P01',
      },
    });
    this.pool = this.core.pool;
    this.targets = this.core.targets;
    const events: PgSessionEvents = {
      onPinned: (session, reason) =>
        log.info({ event: 'pinned', client: session.id, user: session.user, database: session.database, reason }, `pinned: ${reason}`),
      onAuthFailed: (user, reason) => {
        metrics.clientSetupFailed();
        log.warn({ event: 'auth-failed', user, reason }, `authentication failed for user "${user}"`);
      },
      onReady: () => metrics.clientSetupSucceeded(),
      onQueryRequest: (tls) => metrics.queryRequest(tls),
      onQueryResponse: (totalMs, databaseMs, backend) => {
        metrics.queryResponseLatency(totalMs);
        metrics.queryDatabaseResponseLatency(databaseMs, backend.targetName);
      },
      onFatalError: (session, error) =>
        log.info({ event: 'client-error', client: session.id, user: session.user, code: error.code, error: error.message }, `client closed: ${error.message}`),
      onErrorSent: (session, sqlState, message) =>
        log.debug({ event: 'error-sent', client: session.id, sqlState, error: message }, 'error sent to client'),
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
      iamVerifier,
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
    const transport = createSocketTransport(socket, {
      onTlsData: (chunk) => session.onData(chunk),
      onDrain: () => session.onTransportDrain(),
      onClosed: () => session.onTransportClosed(),
      secureContext: () => this.tls.secureContext,
      onTlsUpgrade: () => this.metrics.clientConnectionUpgradedToTls(),
      onTlsError: (error) => this.log.debug({ event: 'tls-error', error: error.message }, 'client TLS error'),
    });
    session = new PgClientSession(transport, this.context);
    socket.on('close', () => {
      session.onTransportClosed();
      onClosed(session);
    });
    return session;
  }

  start(): void {
    this.core.start();
  }

  refuseClient(socket: Socket, error: ProxyError): void {
    // libpq and pg read an ErrorResponse sent before or instead of the answer to SSLRequest.
    socket.on('error', () => socket.destroy());
    socket.end(errorResponse(pgErrorFields(error, { duringStartup: true })));
  }

  sweep(): void {
    this.core.sweep();
  }

  stats(): EngineStats {
    return this.core.stats();
  }

  close(): void {
    this.core.close();
  }

  private sendCancel(backend: PgBackend): void {
    const socket = connect({ host: backend.target.host, port: backend.target.port });
    socket.on('error', () => socket.destroy());
    socket.end(cancelRequest(backend.processId, backend.secretKey));
  }
}
