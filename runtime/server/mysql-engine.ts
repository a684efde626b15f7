/**
 * MySQL behind the Engine interface: client sockets become MysqlClientSessions; server
 * connections are opened, authenticated and initialised here (session tracking, init
 * query, tracked variables' values) for the shared pool. The server version clients see
 * is the target's, read from a probe connection's handshake at start.
 */
import { Socket, connect } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { TargetConfig, TidepoolConfig } from '../config/schema';
import { ProxyError } from '../errors';
import { ConnectionPool } from '../pool/pool';
import { RsaKeyPair, generateRsaKeyPair } from '../protocol/mysql/auth';
import { CapabilityFlag } from '../protocol/mysql/constants';
import { MysqlPacketFramer, encodePacket } from '../protocol/mysql/framing';
import { mysqlErrPayload } from '../protocol/mysql/errors';
import { parseHandshakeV10 } from '../protocol/mysql/packets';
import { describePinReason } from '../protocol/mysql/pinning';
import { MysqlBackend } from '../session/mysql/backend';
import { MysqlClientSession, MysqlSessionContext, TargetInfo } from '../session/mysql/client';
import { PrepareMetadataCache } from '../session/mysql/statements';
import type { CredentialSource, PoolKey } from '../session/types';
import type { ClientHandle, Engine, EngineStats } from './engine';
import { createSocketTransport } from './sockets';

const SERVER_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_PORT = 3306;
/** Shown when the target could not be probed yet; replaced by the target's own version once it answers. */
const FALLBACK_TARGET: TargetInfo = {
  serverVersion: '8.0.0-tidepool',
  capabilityFlags: 0xffffffff,
  characterSet: 45,
};

export class MysqlEngine implements Engine {
  readonly family = 'MYSQL' as const;
  readonly pool: ConnectionPool<MysqlBackend>;
  private readonly context: MysqlSessionContext;
  private limitsKnown = false;
  private baseline: ReadonlyMap<string, string> = new Map();
  private target: TargetInfo | null = null;
  private probing: Promise<TargetInfo> | null = null;
  private rsaKeys: RsaKeyPair | null = null;

  constructor(
    private readonly config: TidepoolConfig,
    private readonly targetConfig: TargetConfig,
    credentials: CredentialSource,
    private readonly secureContext: SecureContext,
    private readonly log: Logger,
  ) {
    this.pool = new ConnectionPool<MysqlBackend>({
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
    this.context = {
      requireTls: config.requireTls,
      maxMessageBytes: config.limits.maxMessageBytes,
      excludeVariableSets: config.connectionPoolConfig.sessionPinningFilters.includes('EXCLUDE_VARIABLE_SETS'),
      credentials,
      broker: this.pool,
      metadataCache: new PrepareMetadataCache(),
      sha2Cache: new Map(),
      charsetCache: new Map(),
      baseline: () => this.baseline,
      rsaKeys: () => (this.rsaKeys ??= generateRsaKeyPair()),
      events: {
        onPinned: (session, reason, detail) =>
          log.info({ event: 'pinned', client: session.id, user: session.user, database: session.database, reason, detail }, `pinned: ${reason} (${describePinReason(reason)})`),
        onAuthFailed: (user, reason) => log.warn({ event: 'auth-failed', user, reason }, `authentication failed for user "${user}"`),
        debugSql: config.debugLogging ? (session, sql) => log.debug({ event: 'sql', client: session.id, sql }) : undefined,
      },
    };
    void this.probeTarget().catch(() => undefined);
  }

  /** An ERR packet in place of the initial handshake, as MySQL answers "Too many connections". */
  refuseClient(socket: Socket, error: ProxyError): void {
    socket.on('error', () => socket.destroy());
    socket.end(encodePacket(mysqlErrPayload(error, { duringLogin: true }), 0));
  }

  acceptClient(socket: Socket, onClosed: (client: ClientHandle) => void): ClientHandle {
    socket.setNoDelay(true);
    let session: MysqlClientSession;
    const transport = createSocketTransport(socket, {
      onTlsData: (chunk) => session.onData(chunk),
      onDrain: () => session.onTransportDrain(),
      onClosed: () => session.onTransportClosed(),
      secureContext: () => this.secureContext,
      onTlsError: (error) => this.log.debug({ event: 'tls-error', error: error.message }, 'client TLS error'),
    });
    session = new MysqlClientSession(transport, this.context);
    socket.on('data', (chunk: Buffer) => session.onData(chunk));
    socket.on('close', () => {
      session.onTransportClosed();
      onClosed(session);
    });
    // The listener accepts with pauseOnConnect.
    socket.resume();
    if (this.target) {
      session.start(this.target);
    } else {
      this.probeTarget().then(
        (target) => session.start(target),
        () => session.start(FALLBACK_TARGET),
      );
    }
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

  /** Reads the target's handshake (version, capabilities) without logging in. */
  private probeTarget(): Promise<TargetInfo> {
    if (this.target) return Promise.resolve(this.target);
    this.probing ??= new Promise<TargetInfo>((resolve, reject) => {
      const socket = connect({ host: this.targetConfig.host, port: this.targetConfig.port ?? DEFAULT_PORT });
      const framer = new MysqlPacketFramer();
      const timer = setTimeout(() => socket.destroy(new Error('timed out probing the database')), SERVER_CONNECT_TIMEOUT_MS);
      socket.on('data', (chunk: Buffer) => {
        try {
          for (const packet of framer.pushPackets(chunk)) {
            const handshake = parseHandshakeV10(packet.payload);
            this.target = { serverVersion: handshake.serverVersion, capabilityFlags: handshake.capabilityFlags, characterSet: handshake.characterSet };
            clearTimeout(timer);
            socket.destroy();
            resolve(this.target);
            return;
          }
        } catch (error) {
          socket.destroy(error instanceof Error ? error : new Error(String(error)));
        }
      });
      socket.on('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.on('close', () => {
        clearTimeout(timer);
        reject(new Error('the database closed the probe connection'));
      });
    }).finally(() => {
      this.probing = null;
    });
    return this.probing;
  }

  private async openServerConnection(key: PoolKey): Promise<MysqlBackend> {
    const credential = this.context.credentials.lookup(key.user);
    if (!credential) throw new ProxyError('AUTH_FAILED', `no secret for user "${key.user}"`);
    const socket = connect({ host: this.targetConfig.host, port: this.targetConfig.port ?? DEFAULT_PORT });
    const backend = new MysqlBackend(key, socket, { user: credential.username, password: credential.password, database: key.database });
    backend.initQuery = this.config.connectionPoolConfig.initQuery;
    const timer = setTimeout(() => backend.close('timed out connecting to the database'), SERVER_CONNECT_TIMEOUT_MS);
    try {
      await backend.start();
      if (backend.serverInfo && !this.target) {
        this.target = { ...backend.serverInfo, capabilityFlags: backend.serverInfo.capabilityFlags | CapabilityFlag.CLIENT_SSL };
      }
      await backend.initialiseSession();
      if (this.baseline.size === 0) this.baseline = new Map(backend.variables);
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
  private async discoverLimits(backend: MysqlBackend): Promise<void> {
    const rows = await backend.ownQuery('SELECT @@max_connections');
    const maxConnections = Number(rows[0]?.[0]);
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
}

