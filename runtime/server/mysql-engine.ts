/**
 * MySQL behind the Engine interface: client sockets become MysqlClientSessions; server
 * connections are opened, authenticated and initialised here (session tracking, init
 * query, tracked variables' values) for the shared pool, always on the writer the target
 * group found (probing @@read_only / @@innodb_read_only on each target). The server version
 * clients see is the target's, read from a server handshake.
 */
import { Socket, connect } from 'node:net';
import type { Logger } from 'pino';
import type { TidepoolConfig } from '../config/schema';
import { ProxyError } from '../errors';
import { ConnectionPool } from '../pool/pool';
import { RsaKeyPair, generateRsaKeyPair } from '../protocol/mysql/auth';
import { CapabilityFlag } from '../protocol/mysql/constants';
import { MysqlPacketFramer, encodePacket } from '../protocol/mysql/framing';
import { MysqlServerError, mysqlErrPayload } from '../protocol/mysql/errors';
import { parseHandshakeV10 } from '../protocol/mysql/packets';
import { describePinReason } from '../protocol/mysql/pinning';
import { MysqlBackend } from '../session/mysql/backend';
import { MysqlClientSession, MysqlSessionContext, TargetInfo } from '../session/mysql/client';
import { PrepareMetadataCache } from '../session/mysql/statements';
import type { Credential, CredentialSource } from '../session/types';
import { ProbeResult, Target, TargetGroup, TargetProber } from '../pool/target-group';
import type { ClientHandle, Engine, EngineStats } from './engine';
import { PooledTargets } from './pooled-targets';
import { createSocketTransport } from './sockets';
import type { TlsSource } from './tls';
import type { ProxyMetrics } from '../metrics';
import type { IamTokenVerifier } from '../secrets/iam-token';
import type { TargetTlsPolicy } from './target-tls';
import type { ServerTlsRequest } from '../session/server-tls';

const DEFAULT_PORT = 3306;
const HANDSHAKE_PROBE_TIMEOUT_MS = 10_000;
/** Shown when the target could not be probed yet; replaced by the target's own version once it answers. */
const FALLBACK_TARGET: TargetInfo = {
  serverVersion: '8.0.0-tidepool',
  capabilityFlags: 0xffffffff,
  characterSet: 45,
};

/** MySQL client error numbers and server errors that mean "not reachable right now" (restart, shutdown, a killed connection). */
const TRANSIENT_MYSQL_CODES: ReadonlySet<number> = new Set([1053, 1077, 1152, 1184, 1927, 2002, 2003, 2006, 2013]);

/**
 * A startup failure worth waiting out: no answer at all (connection refused or reset, a
 * timeout), or the server saying it cannot take connections right now (shutting down, a
 * connection error SQLSTATE 08xxx).
 */
function isTransientStartupFailure(error: ProxyError): boolean {
  if (error.transient) return true;
  if (error instanceof MysqlServerError) {
    return TRANSIENT_MYSQL_CODES.has(error.mysqlCode) || (error.mysqlSqlState ?? '').startsWith('08');
  }
  return error.code === 'SERVER_CONNECT_FAILED';
}

function connectTo(target: Target): Socket {
  return connect({ host: target.host, port: target.port });
}

/** Asks one target whether it is writable, over a connection kept between probes. */
class MysqlWriterProber implements TargetProber {
  private backend: MysqlBackend | null = null;
  /** Whether this connection's server has Aurora's topology table; looked up once per probe connection. */
  private hasTopologyView: boolean | null = null;

  constructor(
    private readonly target: Target,
    private readonly credential: () => Credential | undefined,
    /** The target's handshake, the first time a probe logs in. */
    private readonly onHandshake: (backend: MysqlBackend) => void,
    /** TLS for the probe connection (targetTls); null for plaintext. */
    private readonly tls: ServerTlsRequest | null = null,
  ) {}

  async probe(): Promise<ProbeResult> {
    try {
      if (this.backend === null || this.backend.isClosed) {
        const credential = this.credential();
        if (!credential) throw new Error('auth: no readable secret to probe the target with');
        const login = { user: credential.username, password: credential.password, database: '' };
        const backend = new MysqlBackend({ user: credential.username, database: '' }, this.target, login, this.tls);
        backend.target = this.target;
        this.backend = backend;
        await backend.start();
        this.onHandshake(backend);
      }
      // A catalog lookup, not a query that may fail: plain MySQL/MariaDB must see no error.
      this.hasTopologyView ??=
        (await this.backend.ownQuery("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'information_schema' AND TABLE_NAME = 'REPLICA_HOST_STATUS'"))[0]?.[0] === '1';
      const rows = await this.backend.ownQuery('SELECT @@global.read_only, @@global.innodb_read_only');
      const row = rows[0];
      const writable = row !== undefined && isOff(row[0]) && isOff(row[1]);
      return this.hasTopologyView ? { writable, ...(await this.auroraWriter(this.backend)) } : { writable };
    } catch (error) {
      this.close();
      if (error instanceof MysqlServerError && error.mysqlCode === 1045) throw new Error(`auth: ${error.message}`);
      throw error;
    }
  }

  /** Aurora MySQL names its writer's instance identifier (SERVER_ID) in REPLICA_HOST_STATUS: a hint for the target group. */
  private async auroraWriter(backend: MysqlBackend): Promise<{ topologyWriterId?: string }> {
    try {
      const rows = await backend.ownQuery("SELECT SERVER_ID FROM information_schema.REPLICA_HOST_STATUS WHERE SESSION_ID = 'MASTER_SESSION_ID'");
      const id = rows[0]?.[0];
      return typeof id === 'string' && id !== '' ? { topologyWriterId: id } : {};
    } catch (error) {
      // No permission on the view: the probe works without the hint. A lost connection is a failed probe.
      if (!(error instanceof MysqlServerError)) throw error;
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

function isOff(value: string | null | undefined): boolean {
  return value === '0' || value?.toUpperCase() === 'OFF';
}

export class MysqlEngine implements Engine {
  readonly family = 'MYSQL' as const;
  readonly pool: ConnectionPool<MysqlBackend>;
  private readonly context: MysqlSessionContext;
  private readonly core: PooledTargets<MysqlBackend>;
  private baseline: ReadonlyMap<string, string> = new Map();
  private target: TargetInfo | null = null;
  private probing: Promise<TargetInfo> | null = null;
  private rsaKeys: RsaKeyPair | null = null;

  readonly targets: TargetGroup;

  constructor(
    private readonly config: TidepoolConfig,
    credentials: CredentialSource,
    /** Who the writer probes log in as. */
    probeCredential: () => Credential | undefined,
    private readonly tls: TlsSource,
    private readonly log: Logger,
    private readonly metrics: ProxyMetrics,
    iamVerifier: IamTokenVerifier | null,
    targetTls: TargetTlsPolicy,
  ) {
    this.core = new PooledTargets<MysqlBackend>({
      config,
      log,
      metrics,
      defaultPort: DEFAULT_PORT,
      credentials,
      createProber: (target) => new MysqlWriterProber(target, probeCredential, (backend) => this.learnTarget(backend), targetTls.forProbe(target)),
      recipe: {
        create: (key, writer, credential) => {
          const backend = new MysqlBackend(
            key,
            writer,
            { user: credential.username, password: credential.password, database: key.database },
            targetTls.forPool(key, writer),
          );
          backend.target = writer;
          backend.initQuery = config.connectionPoolConfig.initQuery;
          return backend;
        },
        initialise: async (backend, wantMaxConnections) => {
          await backend.start();
          this.learnTarget(backend);
          await backend.initialiseSession();
          if (this.baseline.size === 0) this.baseline = new Map(backend.variables);
          return wantMaxConnections ? Number((await backend.ownQuery('SELECT @@max_connections'))[0]?.[0]) : undefined;
        },
        isTransient: isTransientStartupFailure,
        isPasswordRejected: (error) => error instanceof MysqlServerError && error.mysqlCode === 1045,
      },
    });
    this.pool = this.core.pool;
    this.targets = this.core.targets;
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
      iamVerifier,
      separateTlsPools: targetTls.followsClient,
      events: {
        onPinned: (session, reason, detail) =>
          log.info({ event: 'pinned', client: session.id, user: session.user, database: session.database, reason, detail }, `pinned: ${reason} (${describePinReason(reason)})`),
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
      secureContext: () => this.tls.secureContext,
      onTlsUpgrade: () => this.metrics.clientConnectionUpgradedToTls(),
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
    this.core.sweep();
  }

  start(): void {
    this.core.start();
  }

  stats(): EngineStats {
    return this.core.stats();
  }

  close(): void {
    this.core.close();
  }

  /** The version and capabilities clients are shown: the first target handshake seen. */
  private learnTarget(backend: MysqlBackend): void {
    if (backend.serverInfo && !this.target) {
      this.target = { ...backend.serverInfo, capabilityFlags: backend.serverInfo.capabilityFlags | CapabilityFlag.CLIENT_SSL };
    }
  }

  /** Reads the target's handshake (version, capabilities) without logging in. */
  private probeTarget(): Promise<TargetInfo> {
    if (this.target) return Promise.resolve(this.target);
    this.probing ??= new Promise<TargetInfo>((resolve, reject) => {
      // With rdsTargets only, there may be no target at all until the first listing.
      const configured = this.config.targets[0];
      const target = this.targets.writer ?? this.targets.health()[0]?.target ?? (configured ? { host: configured.host, port: configured.port ?? DEFAULT_PORT } : null);
      if (target === null) throw new Error('no target known yet');
      const socket = connectTo(target);
      const framer = new MysqlPacketFramer();
      const timer = setTimeout(() => socket.destroy(new Error('timed out probing the database')), HANDSHAKE_PROBE_TIMEOUT_MS);
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
}
