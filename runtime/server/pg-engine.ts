/**
 * PostgreSQL behind the Engine interface: client sockets become PgClientSessions; server
 * connections are opened, authenticated and initialised here for the shared pool.
 */
import { Socket, connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { TidepoolConfig } from '../config/schema';
import { ProxyError } from '../errors';
import { ConnectionPool } from '../pool/pool';
import { SSL_REQUEST, cancelRequest, errorResponse } from '../protocol/pg/messages';
import { pgErrorFields } from '../protocol/pg/errors';
import { PgBackend } from '../session/pg/backend';
import { upgradeToTls } from '../session/server-tls';
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
import { SharedReadBuffer, adoptAcceptedSocket, createSocketTransport, socketStreamStartingWith } from './sockets';
import type { TlsSource } from './tls';
import type { IamTokenVerifier } from '../secrets/iam-token';
import type { ProxyMetrics } from '../metrics';
import { ServerTlsError, type ServerTlsRequest } from '../session/server-tls';
import type { TargetTlsPolicy } from './target-tls';

/**
 * A startup failure worth waiting out: no answer at all (connection refused or reset, a
 * timeout), or the server saying it cannot take connections right now (57P0x: starting up,
 * shutting down, in recovery; 08xxx).
 */
function isTransientStartupFailure(error: ProxyError): boolean {
  if (error instanceof ServerTlsError) return false;
  if (error.transient) return true;
  const sqlState = error.serverDetail?.sqlState;
  if (sqlState === undefined) return error.code === 'SERVER_CONNECT_FAILED';
  // 53300: the server has no slot left (someone else holds them, or the reserved superuser slots): like
  // MySQL's 1040, worth waiting out within the borrow timeout, while released connections serve the waiters.
  return sqlState.startsWith('57P') || sqlState.startsWith('08') || sqlState === '53300';
}

/** Asks one target whether it is writable, over a connection kept between probes. */
class PgWriterProber implements TargetProber {
  private backend: PgBackend | null = null;
  /** Whether this connection's server has Aurora's topology function; looked up once per probe connection. */
  private hasTopologyView: boolean | null = null;

  constructor(
    private readonly target: Target,
    private readonly credential: () => Credential | undefined,
    /** TLS for the probe connection (targetTls); null for plaintext. */
    private readonly tls: ServerTlsRequest | null = null,
  ) {}

  async probe(): Promise<ProbeResult> {
    try {
      if (this.backend === null || this.backend.isClosed) {
        const credential = this.credential();
        if (!credential) throw new Error('auth: no readable secret to probe the target with');
        const login = { user: credential.username, password: credential.password, database: PROBE_DATABASE };
        const backend = new PgBackend({ user: credential.username, database: PROBE_DATABASE }, this.target, login, this.tls);
        this.backend = backend;
        await backend.start();
      }
      // A catalog lookup, not a call that may fail: plain PostgreSQL must see no error in its log.
      this.hasTopologyView ??=
        (await this.backend.internalQuery("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc WHERE proname = 'aurora_replica_status')")).rows[0]?.[0] === 't';
      const result = await this.backend.internalQuery('SELECT pg_catalog.pg_is_in_recovery()');
      const writable = result.rows[0]?.[0] === 'f';
      return this.hasTopologyView ? { writable, ...(await this.auroraWriter(this.backend)) } : { writable };
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /** Aurora names its writer's instance identifier (server_id) in aurora_replica_status(): a hint for the target group. */
  private async auroraWriter(backend: PgBackend): Promise<{ topologyWriterId?: string }> {
    try {
      const rows = (await backend.internalQuery("SELECT server_id FROM aurora_replica_status() WHERE session_id = 'MASTER_SESSION_ID'")).rows;
      const id = rows[0]?.[0];
      return typeof id === 'string' && id !== '' ? { topologyWriterId: id } : {};
    } catch {
      // A look-alike function or no permission: the probe works without the hint.
      this.hasTopologyView = false;
      return {};
    }
  }

  close(): void {
    this.backend?.close('probe closed');
    this.backend = null;
    this.hasTopologyView = null;
  }
}

/**
 * The first byte of a TLS record carrying a handshake (ClientHello): PostgreSQL 17's direct TLS.
 * A StartupMessage or SSLRequest cannot start with it (that length would be over 350 MB).
 */
const TLS_HANDSHAKE_RECORD = 0x16;
/** The server's answer to SSLRequest that accepts TLS. */
const CHAR_S = 0x53;
/** A cancel connection the server does not finish by then is dropped (the cancel is best effort, as in libpq). */
const CANCEL_TIMEOUT_MS = 10_000;
/** The ALPN name PostgreSQL 17 servers offer and require of direct-TLS clients. */
const PG_ALPN = 'postgresql';

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
    targetTls: TargetTlsPolicy,
  ) {
    this.core = new PooledTargets<PgBackend>({
      config,
      log,
      metrics,
      defaultPort: 5432,
      credentials,
      createProber: (target) => new PgWriterProber(target, probeCredential, targetTls.forProbe(target)),
      recipe: {
        create: (key, writer, credential) => {
          const backend = new PgBackend(
            key,
            writer,
            { user: credential.username, password: credential.password, database: key.database },
            targetTls.forPool(key, writer),
          );
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
      separateTlsPools: targetTls.followsClient,
      events,
      sendCancel: (backend) => this.sendCancel(backend),
    };
  }

  acceptClient(accepted: Socket, onClosed: (client: ClientHandle) => void): ClientHandle {
    let session: PgClientSession;
    const reader = this.clientReadBuffer;
    let firstRead = true;
    /** Set when the client opened with a TLS ClientHello: the socket's bytes feed the TLS layer. */
    let directTls: Duplex | null = null;
    let directTlsSocket: TLSSocket | null = null;
    const socket = adoptAcceptedSocket(accepted, reader, (chunk) => {
      if (directTls !== null) {
        // A copy: the shared read buffer is reused by the next read.
        if (!directTls.push(Buffer.from(chunk))) socket.pause();
        return;
      }
      if (firstRead) {
        firstRead = false;
        if (chunk[0] === TLS_HANDSHAKE_RECORD) {
          // The engine pushes later reads itself (they arrive through onread, not 'data' events).
          directTls = socketStreamStartingWith(socket, Buffer.from(chunk));
          directTlsSocket = transport.startTls(undefined, directTls);
          return;
        }
      }
      session.onData(chunk);
      if (session.retainsReceivedBytes()) reader.retire();
    });
    const transport = createSocketTransport(socket, {
      onTlsData: (chunk) => {
        if (directTlsSocket !== null) {
          // PostgreSQL 17 closes a direct-TLS client that did not negotiate ALPN "postgresql": such a client may not be speaking PostgreSQL at all.
          const negotiated = directTlsSocket.alpnProtocol;
          if (negotiated !== PG_ALPN) {
            this.log.info({ event: 'direct-tls-refused', alpn: negotiated || null }, 'direct TLS client without ALPN "postgresql" closed');
            directTlsSocket.destroy();
            socket.destroy();
            return;
          }
          directTlsSocket = null;
        }
        session.onData(chunk);
        if (session.retainsReceivedBytes()) reader.retire();
      },
      tlsReader: reader,
      alpnProtocols: [PG_ALPN],
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
    const statements = this.context.statements;
    return { ...this.core.stats(), statementCache: { entries: statements.size, textBytes: statements.bytes } };
  }

  close(): void {
    this.core.close();
  }

  private sendCancel(backend: PgBackend): void {
    const message = cancelRequest(backend.processId, backend.secretKey);
    const socket = connect({ host: backend.target.host, port: backend.target.port, noDelay: true });
    socket.on('error', () => socket.destroy());
    socket.setTimeout(CANCEL_TIMEOUT_MS, () => socket.destroy());
    const tls = backend.tls;
    if (tls === null) {
      socket.end(message);
      return;
    }
    // The cancel key lets anyone who sees it cancel that session's statements: it travels the way
    // the session's server connection does. PostgreSQL takes SSLRequest before a CancelRequest too.
    socket.write(SSL_REQUEST);
    socket.once('data', (answer: Buffer) => {
      if (answer[0] !== CHAR_S) {
        if (tls.required) socket.destroy();
        else socket.end(message);
        return;
      }
      upgradeToTls(socket, tls).then(
        (secure) => {
          secure.on('error', () => secure.destroy());
          secure.end(message);
        },
        () => socket.destroy(),
      );
    });
  }
}
