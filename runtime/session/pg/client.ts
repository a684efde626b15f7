/**
 * The PostgreSQL client session: startup, TLS negotiation, authentication, then the
 * transaction-pooling state machine that borrows a server connection for each
 * transaction, forwards messages (rewriting only named prepared statements), pins when a
 * statement leaves session state behind, and returns the connection when the server
 * says the transaction is over and every request has been answered.
 */
import { randomInt } from 'node:crypto';
import { ProxyError, toProxyError } from '../../errors';
import { AuthProtocolError, createMockScramServer, createScramServer, md5ServerSalt, verifyMd5Response } from '../../protocol/pg/auth';
import { isFatalForClient, pgErrorFields } from '../../protocol/pg/errors';
import { FramingFailure, FrontendFramer, StartupFramer } from '../../protocol/pg/framing';
import {
  AUTHENTICATION_OK,
  TransactionStatus,
  authenticationCleartext,
  authenticationMd5,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  backendKeyData,
  closeStatement,
  errorResponse,
  negotiateProtocolVersion,
  parameterStatus,
  parse,
  readCString,
  readyForQuery,
  skipCString,
  withName,
} from '../../protocol/pg/messages';
import { PIN_REASONS, classifySql } from '../../protocol/pg/pinning';
import { RATE_LIMIT_MESSAGE as IAM_RATE_LIMIT_MESSAGE, TLS_REQUIRED_MESSAGE as IAM_TLS_REQUIRED_MESSAGE, type IamTokenVerifier } from '../../secrets/iam-token';
import { decodeStartupPacket, parseOptionsParameter } from '../../protocol/pg/startup';
import { BorrowRequest, ConnectionBroker, Credential, CredentialSource, PoolKey, ReleaseMode } from '../types';
import type { BackendPeer, PgBackend } from './backend';
import type { DecodedErrorFields } from '../../protocol/pg/messages';
import { StatementRegistry } from './statements';

/** The socket side of a client, provided by the server layer. */
export interface ClientTransport {
  /** Returns false when the socket's buffer is full; `onTransportDrain` follows when it empties. */
  write(data: Buffer): boolean;
  /**
   * Bytes of buffers passed to write() that the transport still refers to (queued for the
   * kernel): while above 0, those buffers must not be reused.
   */
  readonly retainedBytes: number;
  /** Stops / restarts reading from the client (backpressure from a slow server). */
  pause(): void;
  resume(): void;
  cork(): void;
  uncork(): void;
  /** Ends the connection after pending writes. */
  end(): void;
  readonly isTls: boolean;
  readonly tlsAvailable: boolean;
  /** Switches the connection to TLS; later bytes arrive decrypted through onData. */
  startTls(): void;
}

export interface PgSessionEvents {
  onPinned(session: PgClientSession, reason: string): void;
  onAuthFailed(user: string, reason: string): void;
  /** Authenticated and ready for queries. */
  onReady(session: PgClientSession): void;
  /** A request that runs on the database (Query, Sync, FunctionCall). */
  onQueryRequest(tls: boolean): void;
  /**
   * The first response byte of a request arrived: `totalMs` since the client sent it,
   * `databaseMs` since the proxy forwarded it (the difference is the wait for a connection).
   */
  onQueryResponse(totalMs: number, databaseMs: number, backend: PgBackend): void;
  /** An ErrorResponse of the proxy's own went to the client (debug logging). */
  onErrorSent?(session: PgClientSession, sqlState: string, message: string): void;
  /** The session ends because of an error it reported to the client. */
  onFatalError(session: PgClientSession, error: ProxyError): void;
  onClosed(session: PgClientSession): void;
  debugSql?(session: PgClientSession, sql: string): void;
}

/** What all PostgreSQL client sessions of one proxy share. */
export interface PgSessionContext {
  readonly requireTls: boolean;
  readonly maxMessageBytes: number;
  readonly excludeVariableSets: boolean;
  readonly credentials: CredentialSource;
  readonly broker: ConnectionBroker<PgBackend>;
  readonly statements: StatementRegistry;
  readonly cancelTargets: CancelRegistry;
  readonly startupCache: StartupParamCache;
  /** Verifies IAM tokens for users whose secret has iamAuth REQUIRED; null when none has. */
  readonly iamVerifier: Pick<IamTokenVerifier, 'verify'> | null;
  /** targetTls FOLLOW_CLIENT: TLS and plaintext clients borrow from separate pools (see PoolKey.tls). */
  readonly separateTlsPools?: boolean;
  readonly events: PgSessionEvents;
  /** Forwards a cancel to the server connection's own backend process. */
  sendCancel(backend: PgBackend): void;
}

/** Client processes identified by the proxy-issued BackendKeyData. */
export class CancelRegistry {
  private readonly sessions = new Map<number, PgClientSession>();

  register(session: PgClientSession): { processId: number; secretKey: number } {
    let processId: number;
    do processId = randomInt(1, 0x7fffffff);
    while (this.sessions.has(processId));
    this.sessions.set(processId, session);
    return { processId, secretKey: randomInt(-0x80000000, 0x7fffffff) };
  }

  unregister(processId: number): void {
    this.sessions.delete(processId);
  }

  find(processId: number): PgClientSession | undefined {
    return this.sessions.get(processId);
  }

  get size(): number {
    return this.sessions.size;
  }
}

/** ParameterStatus values a server reported for a (pool, client parameters) pair, so later clients skip the round trip. */
export class StartupParamCache {
  private readonly entries = new Map<string, Map<string, string>>();

  get(poolKey: string, paramsKey: string): Map<string, string> | undefined {
    return this.entries.get(`${poolKey}\u0001${paramsKey}`);
  }

  set(poolKey: string, paramsKey: string, reported: Map<string, string>): void {
    if (this.entries.size > 10_000) this.entries.clear();
    this.entries.set(`${poolKey}\u0001${paramsKey}`, reported);
  }
}

/** Startup parameters that are connection-level, not session settings to replay. */
const NON_SETTING_PARAMS = new Set(['user', 'database', 'options', 'replication', 'client_encoding_fallback']);
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;
const PROTOCOL_MINOR_SUPPORTED = 0;

const CHAR = {
  Q: 0x51,
  P: 0x50,
  B: 0x42,
  D: 0x44,
  E: 0x45,
  C: 0x43,
  H: 0x48,
  S: 0x53,
  F: 0x46,
  X: 0x58,
  d: 0x64,
  c: 0x63,
  f: 0x66,
  p: 0x70,
} as const;

const enum Phase {
  Startup,
  Authenticating,
  /** Authenticated; waiting to learn the server's ParameterStatus values. */
  Finishing,
  Ready,
  Closed,
}

interface PendingMessage {
  type: number;
  data: Buffer;
}

interface ClientStatement {
  serverName: string;
  /** Parse body after the statement name: query string, parameter type count and OIDs. */
  parseBody: Buffer;
}

let nextSessionId = 1;

export class PgClientSession implements BackendPeer {
  readonly id = nextSessionId++;
  user = '';
  database = '';
  /** Why this session is pinned to its server connection, if it is. */
  pinReason: string | null = null;
  lastActivity = Date.now();
  readonly connectedAt = Date.now();

  private phase = Phase.Startup;
  private readonly startupFramer = new StartupFramer();
  private readonly framer: FrontendFramer;
  private credential: Credential | undefined;
  private scram: ReturnType<typeof createScramServer> | null = null;
  private md5Salt: Buffer | null = null;
  private key: PoolKey = { user: '', database: '' };
  private poolKeyString = '';
  /** Session settings from the startup packet, replayed on every server connection lent to this client. */
  private readonly settings = new Map<string, string>();
  private settingsKey = '';
  private cancelKey: { processId: number; secretKey: number } | null = null;

  private backend: PgBackend | null = null;
  private borrowRequest: BorrowRequest<PgBackend> | null = null;
  private readonly pending: PendingMessage[] = [];
  /** Query/Sync/FunctionCall sent and not yet answered by ReadyForQuery. */
  private outstandingSyncs = 0;
  /** Extended-protocol messages sent since the last Sync: the server connection must stay. */
  private unsynced = false;
  private lastStatus: TransactionStatus = 'I';
  private readonly statements = new Map<string, ClientStatement>();
  /** Copy of the last unnamed Parse, re-sent when a later Bind lands on another server connection. */
  private unnamedParse: Buffer | null = null;
  /** performance.now() when the oldest unanswered request arrived from the client, and when it was forwarded (0: none). */
  private requestArrivedAt = 0;
  private requestSentAt = 0;
  /** The last simple Query sent was COMMIT/END: if the connection dies now, the outcome is unknown. */
  private commitInFlight = false;
  /** An error owed to the client's next request (its server connection died under it). */
  private owedError: ProxyError | null = null;

  // Backpressure: a slow reader on either side stops reading from the other.
  private serverReadingPaused = false;
  private lastWrittenBackend: PgBackend | null = null;
  private clientReadingPaused = false;

  // Output batching to the server: within one received chunk (or one lending), everything
  // bound for the server goes out in one write (one system call, one TCP segment).
  private runData: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;
  private batching = false;
  /** Messages gathered for `gatheredFor` while batching, written together by flushOutput. */
  private readonly gathered: Buffer[] = [];
  private gatheredBytes = 0;
  private gatheredFor: PgBackend | null = null;
  /** Set while a borrow started by a client message may complete synchronously (see onMessage). */
  private lendingForMessage = false;

  constructor(
    private readonly transport: ClientTransport,
    private readonly context: PgSessionContext,
  ) {
    this.framer = new FrontendFramer(context.maxMessageBytes);
  }

  get isReady(): boolean {
    return this.phase === Phase.Ready;
  }

  get isTls(): boolean {
    return this.transport.isTls;
  }

  get hasServerConnection(): boolean {
    return this.backend !== null;
  }

  get isIdle(): boolean {
    return this.backend === null && this.pending.length === 0 && this.borrowRequest === null;
  }

  /** Bytes from the client (decrypted when TLS is on). */
  onData(chunk: Buffer): void {
    if (this.phase === Phase.Closed) return;
    this.lastActivity = Date.now();
    try {
      if (this.phase === Phase.Startup) {
        this.onStartupData(chunk);
        return;
      }
      this.batching = true;
      const failure = this.framer.push(chunk, this.onMessage);
      this.flushOutput();
      this.batching = false;
      if (failure) this.failFramer(failure);
    } catch (error) {
      this.batching = false;
      this.flushOutput();
      this.fail(toProxyError(error));
    }
  }

  /** The client's socket closed. */
  onTransportClosed(): void {
    this.shutdown();
  }

  /** Ends the session with a FATAL error (idle timeout, shutdown, …). */
  terminate(error: ProxyError): void {
    if (this.phase === Phase.Closed) return;
    this.sendError(error, true);
    this.transport.end();
    this.shutdown();
  }

  /** A CancelRequest for this session arrived on another connection. */
  cancel(secretKey: number): void {
    if (!this.cancelKey || this.cancelKey.secretKey !== secretKey) return;
    // Only while this session's request runs on a server connection; otherwise there is nothing to cancel.
    if (this.backend && this.outstandingSyncs > 0) this.context.sendCancel(this.backend);
  }

  // ---------------------------------------------------------------- startup

  private onStartupData(chunk: Buffer | null): void {
    for (;;) {
      const packet = this.startupFramer.push(chunk);
      chunk = null;
      if (packet === null) return;
      if (typeof packet === 'string') {
        this.fail(new ProxyError('PROTOCOL_VIOLATION', `invalid startup packet: ${packet}`));
        return;
      }
      const decoded = decodeStartupPacket(packet);
      switch (decoded.kind) {
        case 'ssl-request':
          if (this.transport.isTls || !this.transport.tlsAvailable) {
            this.transport.write(Buffer.from('N'));
          } else {
            this.transport.write(Buffer.from('S'));
            if (this.startupFramer.takeRemainder().length > 0) {
              this.fail(new ProxyError('PROTOCOL_VIOLATION', 'unencrypted data after SSL request'));
              return;
            }
            this.transport.startTls();
            return;
          }
          continue;
        case 'gssenc-request':
          this.transport.write(Buffer.from('N'));
          continue;
        case 'cancel': {
          const target = this.context.cancelTargets.find(decoded.processId);
          target?.cancel(decoded.secretKey);
          this.phase = Phase.Closed;
          this.transport.end();
          return;
        }
        case 'invalid':
          this.fail(new ProxyError('PROTOCOL_VIOLATION', `invalid startup packet: ${decoded.reason}`));
          return;
        case 'startup':
          this.onStartupMessage(decoded.majorVersion, decoded.minorVersion, decoded.params);
          if (this.phase === Phase.Authenticating) {
            const rest = this.startupFramer.takeRemainder();
            if (rest.length > 0) this.onData(rest);
          }
          return;
      }
    }
  }

  private onStartupMessage(major: number, minor: number, params: Map<string, string>): void {
    if (major !== 3) {
      this.fail(new ProxyError('FEATURE_NOT_SUPPORTED', `unsupported frontend protocol ${major}.${minor}: server supports 3.0`));
      return;
    }
    if (this.context.requireTls && !this.transport.isTls) {
      this.fail(new ProxyError('TLS_REQUIRED', 'This Tidepool proxy requires TLS connections'));
      return;
    }
    const user = params.get('user');
    if (!user) {
      this.fail(new ProxyError('PROTOCOL_VIOLATION', 'no PostgreSQL user name specified in startup packet'));
      return;
    }
    if (params.has('replication') && params.get('replication') !== 'false') {
      this.fail(new ProxyError('FEATURE_NOT_SUPPORTED', 'replication connections are not supported by Tidepool'));
      return;
    }
    const unrecognized: string[] = [];
    for (const [name, value] of params) {
      if (name.startsWith('_pq_.')) {
        unrecognized.push(name);
        continue;
      }
      if (NON_SETTING_PARAMS.has(name)) continue;
      if (!SETTING_NAME.test(name)) {
        this.fail(new ProxyError('PROTOCOL_VIOLATION', `invalid startup parameter name "${name}"`));
        return;
      }
      this.settings.set(name.toLowerCase(), value);
    }
    const options = params.get('options');
    if (options !== undefined && options.trim() !== '') {
      const parsed = parseOptionsParameter(options);
      if (!parsed) {
        this.fail(new ProxyError('FEATURE_NOT_SUPPORTED', `unsupported options startup parameter: only -c name=value settings are allowed`));
        return;
      }
      for (const [name, value] of parsed) {
        if (!SETTING_NAME.test(name)) {
          this.fail(new ProxyError('PROTOCOL_VIOLATION', `invalid setting name "${name}" in options`));
          return;
        }
        this.settings.set(name.toLowerCase(), value);
      }
    }
    if (minor > PROTOCOL_MINOR_SUPPORTED || unrecognized.length > 0) {
      this.transport.write(negotiateProtocolVersion((3 << 16) | PROTOCOL_MINOR_SUPPORTED, unrecognized));
    }
    this.user = user;
    this.database = params.get('database') || user;
    this.key = { user: this.user, database: this.database, tls: this.context.separateTlsPools === true && this.transport.isTls };
    this.poolKeyString = `${this.user}\u0000${this.database}`;
    this.settingsKey = [...this.settings.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('\u0000');
    this.credential = this.context.credentials.lookup(user);
    this.phase = Phase.Authenticating;
    this.beginAuthentication();
  }

  private beginAuthentication(): void {
    const credential = this.credential;
    if (credential?.iamAuth === 'REQUIRED') {
      // The IAM token arrives as a cleartext password, so only over TLS.
      if (!this.transport.isTls) {
        this.context.events.onAuthFailed(this.user, 'IAM authentication without TLS');
        this.fail(new ProxyError('TLS_REQUIRED', IAM_TLS_REQUIRED_MESSAGE));
        return;
      }
      this.iamPending = true;
      this.transport.write(authenticationCleartext());
      return;
    }
    if (credential?.clientPasswordAuthType === 'POSTGRES_MD5') {
      this.md5Salt = md5ServerSalt();
      this.transport.write(authenticationMd5(this.md5Salt));
      return;
    }
    // Unknown users go through the same SCRAM exchange (with a stable per-user salt) that
    // always fails, so the outcome and the salt do not reveal which users exist.
    this.scram = credential ? createScramServer(credential.password, { user: this.user }) : createMockScramServer(this.user);
    this.transport.write(authenticationSasl(this.scram.mechanisms));
  }

  private onPasswordMessage(data: Buffer, start: number, end: number): void {
    const body = data.subarray(start + 5, end);
    if (this.iamPending) {
      this.iamPending = false;
      const token = readCString(body, 0)?.value ?? '';
      this.verifyIamToken(token);
      return;
    }
    if (this.md5Salt) {
      const response = readCString(body, 0);
      const ok =
        response !== undefined &&
        this.credential !== undefined &&
        verifyMd5Response(this.credential.username, this.credential.password, this.md5Salt, response.value);
      this.md5Salt = null;
      if (!ok) return this.authFailed('md5 password mismatch');
      return this.authenticated();
    }
    const scram = this.scram;
    if (!scram) return this.fail(new ProxyError('PROTOCOL_VIOLATION', 'unexpected password message'));
    try {
      if (!this.scramStarted) {
        // SASLInitialResponse: mechanism name, Int32 length, client-first-message.
        const mechanism = readCString(body, 0);
        if (!mechanism || mechanism.value !== 'SCRAM-SHA-256') {
          return this.fail(new ProxyError('PROTOCOL_VIOLATION', 'client selected an invalid SASL authentication mechanism'));
        }
        const length = body.readInt32BE(mechanism.next);
        const clientFirst = body.subarray(mechanism.next + 4, mechanism.next + 4 + Math.max(0, length));
        this.scramStarted = true;
        this.transport.write(authenticationSaslContinue(scram.handleClientFirst(clientFirst)));
        return;
      }
      const result = scram.handleClientFinal(body);
      this.scram = null;
      if (!result.ok || this.credential === undefined) return this.authFailed('SCRAM proof mismatch or unknown user');
      this.transport.write(authenticationSaslFinal(result.serverFinal));
      this.authenticated();
    } catch (error) {
      if (error instanceof AuthProtocolError || error instanceof RangeError) {
        return this.fail(new ProxyError('PROTOCOL_VIOLATION', `malformed SCRAM message: ${error.message}`));
      }
      throw error;
    }
  }

  private scramStarted = false;
  /** Waiting for an IAM token as a cleartext password. */
  private iamPending = false;

  private verifyIamToken(token: string): void {
    const verifier = this.context.iamVerifier;
    if (verifier === null) {
      this.authFailed('IAM authentication is not configured');
      return;
    }
    verifier.verify(token, this.user, { tls: this.transport.isTls }).then(
      (result) => {
        if (this.phase !== Phase.Authenticating) return;
        if (result.ok) {
          this.authenticated();
          return;
        }
        this.context.events.onAuthFailed(this.user, `IAM: ${result.reason}`);
        const message =
          result.code === 'RATE_LIMITED'
            ? IAM_RATE_LIMIT_MESSAGE
            : `IAM authentication failed for user ${this.user}. Check the IAM token for this user and try again.`;
        this.fail(new ProxyError('AUTH_FAILED', message));
      },
      () => this.authFailed('IAM token verification failed'),
    );
  }

  private authFailed(reason: string): void {
    this.context.events.onAuthFailed(this.user, reason);
    this.fail(new ProxyError('AUTH_FAILED', `password authentication failed for user "${this.user}"`));
  }

  private authenticated(): void {
    this.phase = Phase.Finishing;
    this.transport.write(AUTHENTICATION_OK);
    const cached = this.context.startupCache.get(this.poolKeyString, this.settingsKey);
    if (cached) {
      this.finishStartup(cached);
      return;
    }
    // First client with these settings: apply them on a real server connection, both to
    // learn the values the server reports and to reject bad settings the way PostgreSQL would.
    this.borrow((backend) => {
      this.syncSettings(backend, (error) => {
        if (error) {
          this.releaseBackend(ReleaseMode.NeedsReset);
          this.fail(error, true);
          return;
        }
        const reported = new Map(backend.reportedParams);
        this.context.startupCache.set(this.poolKeyString, this.settingsKey, reported);
        this.releaseBackend(ReleaseMode.Clean);
        this.finishStartup(reported);
      });
    });
  }

  private finishStartup(reported: Map<string, string>): void {
    if (this.phase !== Phase.Finishing) return;
    this.cancelKey = this.context.cancelTargets.register(this);
    this.transport.cork();
    for (const [name, value] of reported) this.transport.write(parameterStatus(name, value));
    this.transport.write(backendKeyData(this.cancelKey.processId, this.cancelKey.secretKey));
    this.transport.write(readyForQuery('I'));
    this.transport.uncork();
    this.phase = Phase.Ready;
    this.context.events.onReady(this);
    // Anything the client pipelined after its startup waits in `pending`.
    if (this.pending.length > 0) this.requestBackend();
  }

  // ---------------------------------------------------------------- ready phase

  private readonly onMessage = (type: number, data: Buffer, start: number, end: number): void => {
    if (this.phase === Phase.Authenticating) {
      if (type !== CHAR.p) {
        this.fail(new ProxyError('PROTOCOL_VIOLATION', `expected password response, got message type "${String.fromCharCode(type)}"`));
        return;
      }
      this.onPasswordMessage(data, start, end);
      return;
    }
    if (this.phase === Phase.Finishing) {
      this.pending.push({ type, data: Buffer.from(data.subarray(start, end)) });
      return;
    }
    if (this.phase !== Phase.Ready) return;
    if (type === CHAR.X) {
      this.flushOutput();
      this.transport.end();
      this.shutdown();
      return;
    }
    if (this.owedError !== null) {
      this.answerOwedError(type);
      return;
    }
    if (this.requestArrivedAt === 0 && (type === CHAR.Q || type === CHAR.S || type === CHAR.F)) this.requestArrivedAt = performance.now();
    if (this.backend === null && this.pending.length === 0 && this.borrowRequest === null) {
      // Most borrows find an idle connection at once: then this message goes out from the
      // read buffer, with no copy into `pending`.
      this.lendingForMessage = true;
      try {
        this.requestBackend();
      } finally {
        this.lendingForMessage = false;
      }
    }
    if (this.backend !== null && this.pending.length === 0) {
      this.process(type, data, start, end);
      return;
    }
    // Received bytes live in a shared read buffer: what waits must be copied.
    this.pending.push({ type, data: Buffer.from(data.subarray(start, end)) });
    this.requestBackend();
  };

  /** Forwards one client message to the lent server connection, rewriting what must be. */
  private process(type: number, data: Buffer, start: number, end: number): void {
    const backend = this.backend!;
    switch (type) {
      case CHAR.Q: {
        const sql = data.toString('utf8', start + 5, end - 1);
        this.inspectSql(sql, backend);
        this.context.events.debugSql?.(this, sql);
        this.commitInFlight = COMMIT_STATEMENT.test(sql);
        // A simple Query replaces the unnamed statement.
        backend.unnamedStatementOwner = null;
        backend.expectSync();
        this.outstandingSyncs++;
        this.context.events.onQueryRequest(this.transport.isTls);
        if (this.requestSentAt === 0) this.requestSentAt = performance.now();
        this.forward(data, start, end);
        return;
      }
      case CHAR.P:
        this.processParse(backend, data, start, end);
        return;
      case CHAR.B:
        this.processBind(backend, data, start, end);
        return;
      case CHAR.D:
        this.processDescribeOrClose(backend, type, data, start, end);
        return;
      case CHAR.C:
        this.processDescribeOrClose(backend, type, data, start, end);
        return;
      case CHAR.S:
        backend.expectSync();
        this.outstandingSyncs++;
        this.unsynced = false;
        this.context.events.onQueryRequest(this.transport.isTls);
        if (this.requestSentAt === 0) this.requestSentAt = performance.now();
        this.forward(data, start, end);
        return;
      case CHAR.F:
        backend.expectSync();
        this.outstandingSyncs++;
        this.forward(data, start, end);
        return;
      case CHAR.E:
      case CHAR.H:
        this.unsynced = true;
        this.forward(data, start, end);
        return;
      case CHAR.d:
      case CHAR.c:
      case CHAR.f:
        this.forward(data, start, end);
        return;
      default:
        this.fail(new ProxyError('PROTOCOL_VIOLATION', `invalid frontend message type ${type}`));
    }
  }

  private processParse(backend: PgBackend, data: Buffer, start: number, end: number): void {
    this.unsynced = true;
    const nameEnd = skipCString(data, start + 5, end);
    const queryEnd = nameEnd < 0 ? -1 : skipCString(data, nameEnd, end);
    if (queryEnd < 0) return this.fail(new ProxyError('PROTOCOL_VIOLATION', 'malformed Parse message'));
    const sql = data.toString('utf8', nameEnd, queryEnd - 1);
    this.inspectSql(sql, backend);
    this.context.events.debugSql?.(this, sql);
    if (nameEnd === start + 6) {
      // Unnamed statement: forward as is, remember it in case a later Bind lands elsewhere.
      this.unnamedParse = Buffer.from(data.subarray(nameEnd, end));
      backend.unnamedStatementOwner = this.unnamedParse;
      backend.expectParse(null, false);
      this.forward(data, start, end);
      return;
    }
    const clientName = data.toString('utf8', start + 5, nameEnd - 1);
    const parseBody = data.subarray(nameEnd, end);
    const existing = this.statements.get(clientName);
    if (existing) {
      // Redefining a live name is an error; let the server say so about the same statement.
      this.ensurePrepared(backend, existing);
      backend.expectParse(null, false);
      this.write(parse(existing.serverName, existing.parseBody));
      return;
    }
    const statement: ClientStatement = {
      serverName: this.context.statements.nameFor(parseBody),
      parseBody: Buffer.from(parseBody),
    };
    this.statements.set(clientName, statement);
    if (!backend.preparedStatements.has(statement.serverName)) {
      // If the server rejects the statement, the client never had it.
      backend.expectParse(statement.serverName, false, () => {
        if (this.statements.get(clientName) === statement) this.statements.delete(clientName);
      });
      this.write(parse(statement.serverName, statement.parseBody));
      return;
    }
    // Already prepared on this connection: the client still expects one ParseComplete,
    // so parse an empty statement under a throwaway name and swallow the Close before it.
    backend.expectClose(true);
    this.write(closeStatement(THROWAWAY_STATEMENT));
    backend.expectParse(null, false);
    this.write(parse(THROWAWAY_STATEMENT, EMPTY_PARSE_BODY));
  }

  private processBind(backend: PgBackend, data: Buffer, start: number, end: number): void {
    this.unsynced = true;
    const portalEnd = skipCString(data, start + 5, end);
    const statementEnd = portalEnd < 0 ? -1 : skipCString(data, portalEnd, end);
    if (statementEnd < 0) return this.fail(new ProxyError('PROTOCOL_VIOLATION', 'malformed Bind message'));
    if (statementEnd === portalEnd + 1) {
      // Unnamed statement: make sure it is this client's, on this connection.
      if (this.unnamedParse !== null && backend.unnamedStatementOwner !== this.unnamedParse) {
        backend.expectParse(null, true);
        this.write(parse('', this.unnamedParse));
        backend.unnamedStatementOwner = this.unnamedParse;
      }
      this.forward(data, start, end);
      return;
    }
    const clientName = data.toString('utf8', portalEnd, statementEnd - 1);
    const statement = this.statements.get(clientName);
    if (!statement) {
      // Unknown to us: the server answers with its own "does not exist" error.
      this.forward(data, start, end);
      return;
    }
    this.ensurePrepared(backend, statement);
    this.write(withName(CHAR.B, data.subarray(start + 5, portalEnd), statement.serverName, data.subarray(statementEnd, end)));
  }

  private processDescribeOrClose(backend: PgBackend, type: number, data: Buffer, start: number, end: number): void {
    this.unsynced = true;
    const kind = data[start + 5];
    const nameEnd = skipCString(data, start + 6, end);
    if (nameEnd < 0 || (kind !== CHAR.S && kind !== 0x50)) {
      return this.fail(new ProxyError('PROTOCOL_VIOLATION', `malformed ${type === CHAR.C ? 'Close' : 'Describe'} message`));
    }
    const isClose = type === CHAR.C;
    if (kind !== CHAR.S || nameEnd === start + 7) {
      // Portals and the unnamed statement live on the server connection as they are.
      if (isClose) backend.expectClose(false);
      else if (kind === CHAR.S && this.unnamedParse !== null && backend.unnamedStatementOwner !== this.unnamedParse) {
        backend.expectParse(null, true);
        this.write(parse('', this.unnamedParse));
        backend.unnamedStatementOwner = this.unnamedParse;
      }
      this.forward(data, start, end);
      return;
    }
    const clientName = data.toString('utf8', start + 6, nameEnd - 1);
    const statement = this.statements.get(clientName);
    if (isClose) {
      // The server-side statement stays for other clients; the client gets its CloseComplete
      // from closing a name that never exists.
      this.statements.delete(clientName);
      backend.expectClose(false);
      this.write(closeStatement(THROWAWAY_STATEMENT));
      return;
    }
    if (!statement) {
      this.forward(data, start, end);
      return;
    }
    this.ensurePrepared(backend, statement);
    this.write(withName(type, data.subarray(start + 5, start + 6), statement.serverName, EMPTY));
  }

  private ensurePrepared(backend: PgBackend, statement: ClientStatement): void {
    if (backend.preparedStatements.has(statement.serverName)) return;
    backend.expectParse(statement.serverName, true);
    this.write(parse(statement.serverName, statement.parseBody));
  }

  private inspectSql(sql: string, backend: PgBackend): void {
    const effects = classifySql(sql, { excludeVariableSets: this.context.excludeVariableSets });
    if (effects.invalidatesPreparedStatements) {
      backend.preparedStatements.clear();
      backend.unnamedStatementOwner = null;
    }
    if (effects.pinReason !== undefined && this.pinReason === null) {
      this.pinReason = effects.pinReason;
      this.context.broker.pin(backend, effects.pinReason);
      this.context.events.onPinned(this, effects.pinReason);
    }
  }

  // ---------------------------------------------------------------- output batching

  /** Queues a view of the received chunk; adjacent views merge into one write. */
  private forward(data: Buffer, start: number, end: number): void {
    if (this.runData === data && this.runEnd === start) {
      this.runEnd = end;
      return;
    }
    this.flushRun();
    if (!this.batching) {
      this.writeToServer(this.backend!, data.subarray(start, end));
      return;
    }
    this.runData = data;
    this.runStart = start;
    this.runEnd = end;
  }

  private write(message: Buffer): void {
    this.flushRun();
    this.toServer(message);
  }

  private flushRun(): void {
    const data = this.runData;
    if (data === null) return;
    this.runData = null;
    if (this.backend === null || this.backend.isClosed) return;
    this.toServer(this.runStart === 0 && this.runEnd === data.length ? data : data.subarray(this.runStart, this.runEnd));
  }

  private toServer(data: Buffer): void {
    const backend = this.backend!;
    if (this.batching) {
      if (this.gatheredFor !== backend) this.writeGathered();
      this.gatheredFor = backend;
      this.gathered.push(data);
      this.gatheredBytes += data.length;
      return;
    }
    this.writeToServer(backend, data);
  }

  /** Writes everything batched so far; views of the received chunk must not outlive its callback. */
  private flushOutput(): void {
    this.flushRun();
    this.writeGathered();
  }

  private writeGathered(): void {
    const backend = this.gatheredFor;
    const parts = this.gathered;
    if (backend === null || parts.length === 0) return;
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.gatheredBytes);
    parts.length = 0;
    this.gatheredBytes = 0;
    this.gatheredFor = null;
    // Meant for a connection this session no longer holds (it failed or was given back): dropped with it.
    if (backend !== this.backend || backend.isClosed) return;
    this.writeToServer(backend, data);
  }

  private writeToServer(backend: PgBackend, data: Buffer): void {
    this.lastWrittenBackend = backend;
    if (!backend.write(data) && !this.clientReadingPaused) {
      this.clientReadingPaused = true;
      this.transport.pause();
    }
  }

  /** The client's socket can take more: let the server connection's data flow again. */
  onTransportDrain(): void {
    if (this.serverReadingPaused) {
      this.serverReadingPaused = false;
      this.backend?.resumeReading();
    }
  }

  /**
   * Whether a server socket still holds (unsent) views of the bytes this session received
   * last: then the shared read buffer must not be reused.
   */
  retainsReceivedBytes(): boolean {
    const backend = this.lastWrittenBackend;
    this.lastWrittenBackend = null;
    return backend !== null && backend.retainedWriteBytes > 0;
  }

  holdsForwardedBytes(): boolean {
    return this.transport.retainedBytes > 0;
  }

  onServerDrain(): void {
    if (this.clientReadingPaused) {
      this.clientReadingPaused = false;
      this.transport.resume();
    }
  }

  // ---------------------------------------------------------------- server connections

  private requestBackend(): void {
    if (this.backend !== null || this.borrowRequest !== null || this.phase !== Phase.Ready) return;
    this.borrow((backend) => this.onBackendLent(backend));
  }

  private borrow(onLent: (backend: PgBackend) => void): void {
    const request: BorrowRequest<PgBackend> = {
      key: this.key,
      callback: (error, backend) => {
        if (this.borrowRequest === request) this.borrowRequest = null;
        if (this.phase === Phase.Closed) {
          if (backend) this.context.broker.release(backend, ReleaseMode.Clean);
          return;
        }
        if (error || !backend) {
          this.onBorrowFailed(error ?? new ProxyError('INTERNAL', 'no connection'));
          return;
        }
        this.backend = backend;
        backend.peer = this;
        onLent(backend);
      },
    };
    this.borrowRequest = request;
    this.context.broker.borrow(request);
  }

  private onBackendLent(backend: PgBackend): void {
    this.syncSettings(backend, null);
    if (this.backend !== backend) return;
    if (this.pending.length === 0) {
      // Lent for the message being received right now (onMessage processes it); nothing to release yet.
      if (!this.lendingForMessage) this.maybeRelease();
      return;
    }
    const wasBatching = this.batching;
    this.batching = true;
    try {
      while (this.pending.length > 0 && this.backend === backend && this.owedError === null) {
        const message = this.pending.shift()!;
        if (message.type === CHAR.X) {
          this.flushOutput();
          this.transport.end();
          this.shutdown();
          break;
        }
        this.process(message.type, message.data, 0, message.data.length);
      }
      this.flushOutput();
    } finally {
      this.batching = wasBatching;
    }
    this.maybeRelease();
  }

  /**
   * Brings the server connection's session settings in line with this client's (startup
   * parameters and options), without pinning. `done` is called when the server answered;
   * when null, the queries are pipelined ahead of the client's own messages.
   */
  private syncSettings(backend: PgBackend, done: ((error: ProxyError | null) => void) | null): void {
    const selectList: string[] = [];
    const statements: string[] = [];
    // The value a setting had before the proxy first changed it on this connection (what
    // initQuery or the role's defaults made it) is read in the same SELECT, so that it can be
    // restored for clients that do not set it; RESET would go back past initQuery.
    if (done === null && this.settingsMatch(backend)) return;
    const baselineColumns: { name: string; column: number }[] = [];
    for (const [name, value] of this.settings) {
      if (backend.appliedParams.get(name) === value) continue;
      if (!backend.baselineParams.has(name)) {
        baselineColumns.push({ name, column: selectList.length });
        selectList.push(`pg_catalog.current_setting(${quoteLiteral(name)}, true)`);
      }
      selectList.push(`pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false)`);
      backend.appliedParams.set(name, value);
    }
    for (const name of [...backend.appliedParams.keys()]) {
      if (this.settings.has(name)) continue;
      const baseline = backend.baselineParams.get(name);
      if (baseline === undefined || baseline === null) statements.push(`RESET ${quoteIdentifier(name)}`);
      else selectList.push(`pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(baseline)}, false)`);
      backend.appliedParams.delete(name);
    }
    if (selectList.length > 0) statements.unshift(`SELECT ${selectList.join(', ')}`);
    if (statements.length === 0 && done === null) return;
    backend.runSwallowedQuery(statements.length > 0 ? statements.join('; ') : 'SELECT 1', (error, rows) => {
      if (error) {
        // The connection's settings are unknown now; make the next borrower start over.
        backend.appliedParams.clear();
        backend.appliedParams.set('\u0000invalid', '');
      } else {
        for (const { name, column } of baselineColumns) backend.baselineParams.set(name, rows[0]?.[column] ?? null);
      }
      if (done) {
        done(error ? new ProxyError('SERVER_CONNECT_FAILED', error.message ?? 'invalid startup parameter', error) : null);
      }
    });
  }

  /** Whether the connection already carries exactly this client's settings (the common case: no query needed). */
  private settingsMatch(backend: PgBackend): boolean {
    if (backend.appliedParams.size !== this.settings.size) return false;
    for (const [name, value] of this.settings) {
      if (backend.appliedParams.get(name) !== value) return false;
    }
    return true;
  }

  private onBorrowFailed(error: ProxyError): void {
    if (this.phase === Phase.Finishing) {
      this.fail(error, true);
      return;
    }
    // Every request the client queued gets this error, as PostgreSQL answers a failed
    // statement: ErrorResponse, then ReadyForQuery at each sync point.
    this.owedError = error;
    const queued = this.pending.splice(0);
    for (const message of queued) {
      if (this.phase === Phase.Closed) return;
      this.owedError ??= error; // answerOwedError settles the debt at each sync point; later requests owe it again
      this.answerOwedError(message.type);
    }
  }

  /** Answers a client request with the owed error, skipping to its sync point as the server would. */
  private answerOwedError(type: number): void {
    const error = this.owedError!;
    if (isFatalForClient(error)) {
      this.fail(error);
      return;
    }
    if (type !== CHAR.Q && type !== CHAR.S && type !== CHAR.F) return;
    this.owedError = null;
    this.transport.cork();
    this.sendError(error, false);
    this.transport.write(readyForQuery('I'));
    this.transport.uncork();
  }

  private releaseBackend(mode: ReleaseMode): void {
    const backend = this.backend;
    if (!backend) return;
    this.backend = null;
    backend.peer = null;
    if (this.serverReadingPaused) {
      this.serverReadingPaused = false;
      backend.resumeReading();
    }
    this.onServerDrain();
    this.context.broker.release(backend, mode);
  }

  private maybeRelease(): void {
    const backend = this.backend;
    if (
      backend !== null &&
      this.pinReason === null &&
      this.lastStatus === 'I' &&
      this.outstandingSyncs === 0 &&
      !this.unsynced &&
      backend.pendingResponses === 0
    ) {
      this.releaseBackend(ReleaseMode.Clean);
    }
    if (this.backend === null && this.pending.length > 0 && this.phase === Phase.Ready) this.requestBackend();
  }

  // ---------------------------------------------------------------- BackendPeer

  fromServer(data: Buffer, start: number, end: number): void {
    if (this.requestSentAt !== 0 && this.backend !== null) {
      const now = performance.now();
      this.context.events.onQueryResponse(now - (this.requestArrivedAt || this.requestSentAt), now - this.requestSentAt, this.backend);
      this.requestSentAt = 0;
      this.requestArrivedAt = 0;
    }
    if (!this.transport.write(start === 0 && end === data.length ? data : data.subarray(start, end)) && !this.serverReadingPaused) {
      this.serverReadingPaused = true;
      this.backend?.pauseReading();
    }
  }

  onClientReadyForQuery(status: TransactionStatus): void {
    this.lastStatus = status;
    if (this.outstandingSyncs > 0) this.outstandingSyncs--;
  }

  afterServerChunk(): void {
    this.lastActivity = Date.now();
    this.maybeRelease();
  }

  onBackendLost(closeReason: string, serverError: DecodedErrorFields | null): void {
    const reason = serverError?.message ?? closeReason;
    this.backend = null;
    this.serverReadingPaused = false;
    this.onServerDrain();
    if (this.phase === Phase.Closed) return;
    const inFlight = this.outstandingSyncs;
    const inTransaction = this.lastStatus !== 'I' || this.unsynced;
    const wasPinned = this.pinReason !== null;
    this.outstandingSyncs = 0;
    this.unsynced = false;
    this.lastStatus = 'I';
    this.pinReason = null;
    const message = wasPinned
      ? `server connection lost (${reason}); session state was reset, the session continues as a new one`
      : inTransaction
        ? `server connection lost (${reason}); the transaction was rolled back`
        : `server connection lost (${reason})`;
    const error = new ProxyError('SERVER_CONNECTION_LOST', message, serverError?.sqlState ? { sqlState: serverError.sqlState } : undefined);
    if (inFlight > 0) {
      this.transport.cork();
      for (let i = 0; i < inFlight; i++) {
        // A COMMIT may or may not have happened: say so (08007), never report success or plain failure.
        const reported =
          i === inFlight - 1 && this.commitInFlight
            ? new ProxyError('SERVER_CONNECTION_LOST', `transaction resolution unknown: the server connection was lost during COMMIT (${reason})`, { sqlState: '08007' })
            : error;
        this.sendError(reported, false);
        this.transport.write(readyForQuery('I'));
      }
      this.transport.uncork();
    } else if (inTransaction || wasPinned) {
      this.owedError = error;
    }
    if (this.pending.length > 0) this.requestBackend();
  }

  // ---------------------------------------------------------------- errors and teardown

  private failFramer(failure: FramingFailure): void {
    this.fail(
      failure === 'too-large'
        ? new ProxyError('MESSAGE_TOO_LARGE', `message exceeds the proxy's limit of ${this.context.maxMessageBytes} bytes`)
        : new ProxyError('PROTOCOL_VIOLATION', 'invalid message length'),
    );
  }

  private sendError(error: ProxyError, fatal: boolean): void {
    const fields = pgErrorFields(error, { duringStartup: this.phase !== Phase.Ready });
    if (fatal) fields.severity = 'FATAL';
    this.context.events.onErrorSent?.(this, fields.sqlState, fields.message);
    this.transport.write(errorResponse(fields));
  }

  /** Reports an error the client cannot continue after, and closes the session. */
  private fail(error: ProxyError, fatal = isFatalForClient(error) || this.phase !== Phase.Ready): void {
    if (this.phase === Phase.Closed) return;
    this.sendError(error, fatal);
    if (!fatal) {
      this.transport.write(readyForQuery(this.lastStatus));
      return;
    }
    this.context.events.onFatalError(this, error);
    this.transport.end();
    this.shutdown();
  }

  private shutdown(): void {
    if (this.phase === Phase.Closed) return;
    this.phase = Phase.Closed;
    if (this.cancelKey) this.context.cancelTargets.unregister(this.cancelKey.processId);
    if (this.borrowRequest) {
      this.context.broker.cancelBorrow(this.borrowRequest);
      this.borrowRequest = null;
    }
    const backend = this.backend;
    if (backend) {
      if (this.pinReason !== null && UNRESETTABLE_PIN_REASONS.has(this.pinReason)) {
        // DISCARD ALL cannot unload a library: this connection can never be clean again.
        this.releaseBackend(ReleaseMode.Discard);
        this.pending.length = 0;
        this.context.events.onClosed(this);
        return;
      }
      if (this.unsynced) {
        // Extended-protocol messages without their Sync: the server waits for that Sync (or skips
        // everything until it, after an error), so a reset's ROLLBACK would never be answered.
        this.releaseBackend(ReleaseMode.Discard);
        this.pending.length = 0;
        this.context.events.onClosed(this);
        return;
      }
      const clean =
        this.pinReason === null &&
        this.lastStatus === 'I' &&
        this.outstandingSyncs === 0 &&
        !this.unsynced &&
        backend.pendingResponses === 0;
      this.releaseBackend(clean ? ReleaseMode.Clean : ReleaseMode.NeedsReset);
    }
    this.pending.length = 0;
    this.context.events.onClosed(this);
  }
}

/** Pins whose state a reset (ROLLBACK, DISCARD ALL) cannot remove. */
const UNRESETTABLE_PIN_REASONS = new Set<string>([PIN_REASONS.load]);

const COMMIT_STATEMENT = /^\s*(commit|end)\b(?!\s+prepared)/i;

const THROWAWAY_STATEMENT = 'tidepool_throwaway';
/** Parse body of an empty query with no parameter types. */
const EMPTY_PARSE_BODY = Buffer.from([0, 0, 0]);
const EMPTY = Buffer.alloc(0);

function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

