/**
 * The MySQL client session: the proxy's own handshake (TLS upgrade, mysql_native_password
 * and caching_sha2_password against the secret), then the multiplexing state machine:
 * each command borrows a server connection (brought in line with this client's tracked
 * state first), its response is relayed without decoding rows, and the connection goes
 * back once the response is complete and the server says no transaction is open — unless
 * the session is pinned, a cursor is open or long data is pending.
 */
import { ProxyError, toProxyError } from '../../errors';
import {
  RsaKeyPair,
  decryptPasswordWithPrivateKey,
  generateScramble,
  verifyCachingSha2Password,
  verifyClearTextPassword,
  verifyNativePassword,
} from '../../protocol/mysql/auth';
import {
  AuthPlugin,
  CachingSha2Byte,
  CapabilityFlag,
  Command,
  MAX_PACKET_PAYLOAD_LENGTH,
  MysqlError,
  ServerStatus,
  SessionTrackType,
  accessDeniedMessage,
  charsetOfCollationId,
  collationNameOf,
  hasCapability,
  isImpermissibleClientCharset,
} from '../../protocol/mysql/constants';
import { MysqlCodedError, isFatalForMysqlClient, mysqlErrPayload } from '../../protocol/mysql/errors';
import { MysqlPacketFramer, MysqlProtocolError, PayloadWriter, encodePacket } from '../../protocol/mysql/framing';
import {
  HandshakeResponse41,
  MysqlResponseTracker,
  PacketRole,
  encodeAuthMoreData,
  encodeAuthSwitchRequest,
  encodeEofPacket,
  encodeErrPacket,
  encodeHandshakeV10,
  encodeOkPacket,
  okStatusFlags,
  parseChangeUser,
  parseHandshakeResponse,
  parseOkPacket,
  parsePrepareOk,
  readStatementId,
  writeStatementId,
} from '../../protocol/mysql/packets';
import { MysqlPinReason, classifyMysqlSql } from '../../protocol/mysql/pinning';
import type { ClientTransport as PgClientTransport } from '../pg/client';
import { BorrowRequest, ConnectionBroker, Credential, CredentialSource, PoolKey, ReleaseMode } from '../types';
import { Exchange, MysqlBackend, MysqlBackendPeer, PreparedOnServer, TRACKED_VARIABLES } from './backend';
import { ClientStatement, PrepareMetadataCache, statementServerKey } from './statements';
import { RATE_LIMIT_MESSAGE as IAM_RATE_LIMIT_MESSAGE, TLS_REQUIRED_MESSAGE as IAM_TLS_REQUIRED_MESSAGE, type IamTokenVerifier } from '../../secrets/iam-token';

/** The socket side of a client (as for PostgreSQL), with TLS started on bytes the client may already have sent. */
export interface ClientTransport extends Omit<PgClientTransport, 'startTls'> {
  /** Switches to TLS; `alreadyReceived` is TLS data that arrived in the same chunk as the SSL request. */
  startTls(alreadyReceived: Buffer): void;
}

/** What the client sees of the target, learned from a server handshake. */
export interface TargetInfo {
  serverVersion: string;
  /** Capabilities the target offers; the proxy advertises only those it also handles. */
  capabilityFlags: number;
  characterSet: number;
}

export interface MysqlSessionEvents {
  onPinned(session: MysqlClientSession, reason: MysqlPinReason, detail: string | undefined): void;
  onAuthFailed(user: string, reason: string): void;
  /** The client logged in and may send commands. */
  onReady(session: MysqlClientSession): void;
  /** A statement (COM_QUERY, COM_STMT_EXECUTE) went to the database. */
  onQueryRequest(tls: boolean): void;
  /** The first byte of a statement's response: since it arrived from the client, and since it went to the database. */
  onQueryResponse(totalMs: number, databaseMs: number, backend: MysqlBackend): void;
  debugSql?(session: MysqlClientSession, sql: string): void;
}

/** What all MySQL client sessions of one proxy share. */
export interface MysqlSessionContext {
  readonly requireTls: boolean;
  readonly maxMessageBytes: number;
  readonly excludeVariableSets: boolean;
  readonly credentials: CredentialSource;
  readonly broker: ConnectionBroker<MysqlBackend>;
  readonly events: MysqlSessionEvents;
  readonly metadataCache: PrepareMetadataCache;
  /** Users whose password was recently verified in full, with that password: caching_sha2_password's fast path. */
  readonly sha2Cache: Map<string, string>;
  /** Tracked variables' values on a fresh server connection (after the init query). */
  baseline(): ReadonlyMap<string, string>;
  /** Server-reported character set variables for each handshake collation id, learned once. */
  readonly charsetCache: Map<number, ReadonlyMap<string, string>>;
  rsaKeys(): RsaKeyPair;
  /** Verifies IAM tokens for users whose secret has iamAuth REQUIRED; null when none has. */
  readonly iamVerifier?: Pick<IamTokenVerifier, 'verify'> | null;
  /** targetTls FOLLOW_CLIENT: TLS and plaintext clients borrow from separate pools (see PoolKey.tls). */
  readonly separateTlsPools?: boolean;
}

/** Capabilities the proxy handles for clients. No compression, CLIENT_DEPRECATE_EOF, LOCAL INFILE, session tracking or query attributes. */
const PROXY_CAPABILITIES =
  CapabilityFlag.CLIENT_LONG_PASSWORD |
  CapabilityFlag.CLIENT_LONG_FLAG |
  CapabilityFlag.CLIENT_CONNECT_WITH_DB |
  CapabilityFlag.CLIENT_PROTOCOL_41 |
  CapabilityFlag.CLIENT_SSL |
  CapabilityFlag.CLIENT_TRANSACTIONS |
  CapabilityFlag.CLIENT_SECURE_CONNECTION |
  CapabilityFlag.CLIENT_MULTI_STATEMENTS |
  CapabilityFlag.CLIENT_MULTI_RESULTS |
  CapabilityFlag.CLIENT_PS_MULTI_RESULTS |
  CapabilityFlag.CLIENT_PLUGIN_AUTH |
  CapabilityFlag.CLIENT_CONNECT_ATTRS |
  CapabilityFlag.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

const DEFAULT_COLLATION = 45; // utf8mb4_general_ci
const UNSUPPORTED_COMMANDS: ReadonlySet<number> = new Set([
  Command.COM_BINLOG_DUMP,
  Command.COM_BINLOG_DUMP_GTID,
  Command.COM_TABLE_DUMP,
  Command.COM_REGISTER_SLAVE,
  Command.COM_CONNECT_OUT,
  Command.COM_CLONE,
  Command.COM_SUBSCRIBE_GROUP_REPLICATION_STREAM,
  Command.COM_STMT_BULK_EXECUTE,
  Command.COM_SHUTDOWN,
]);
/**
 * A statement that commits the open transaction: if its server connection is lost before the
 * answer, the outcome is unknown. Leading comments and XA COMMIT included.
 */
const COMMIT_STATEMENT = /^(?:\s|\/\*[\s\S]*?\*\/)*(?:xa\s+)?commit\b/i;
/**
 * The MySQL error for a COMMIT whose answer never came: 1180 ER_ERROR_DURING_COMMIT (known to MySQL and MariaDB;
 * a server-range number, as libmariadb rejects server-sent client numbers like 2013) with SQLSTATE 08007
 * (transaction resolution unknown).
 */
const COMMIT_OUTCOME_UNKNOWN = { code: 1180, sqlState: '08007' };
/** DDL can change a prepared statement's metadata. */
const DDL = /^\s*(?:alter|drop|create|rename|truncate)\b/i;

const enum Phase {
  Handshake,
  Authenticating,
  /** Authenticated; checking the database and applying the character set on a server connection. */
  Finishing,
  Ready,
  Closed,
}

interface PendingPacket {
  wire: Buffer;
  sequenceId: number;
  isContinuation: boolean;
  /** Copied out of the received chunk (it outlives the onData call). */
  owned: boolean;
  /** Not a command but the client's protocol error, answered (and the client closed) once the commands before it are. */
  violation?: ProxyError;
}

interface AuthExchange {
  username: string;
  credential: Credential | undefined;
  plugin: string;
  /** `iam-verifying`: the token went to STS; the client has nothing more to send. */
  stage: 'switch-reply' | 'full-auth' | 'rsa-reply' | 'iam-verifying';
  database: string | null;
  collationId: number;
  changeUser: boolean;
}

let nextSessionId = 1;

export class MysqlClientSession implements MysqlBackendPeer {
  readonly id = nextSessionId++;
  user = '';
  database = '';
  pinReason: MysqlPinReason | null = null;
  lastActivity = Date.now();
  readonly connectedAt = Date.now();

  private phase = Phase.Handshake;
  private framer: MysqlPacketFramer;
  /** Where the SSL request ended in the chunk being read: the rest is the client's TLS handshake. */
  private tlsStartsAt: { source: Buffer; offset: number; wireLength: number } | null = null;
  private scramble = generateScramble();
  private clientCapabilities = 0;
  private advertised = 0;
  private responseSequence = 1;
  private auth: AuthExchange | null = null;
  private key: PoolKey = { user: '', database: '' };

  // Tracked state this client expects on whatever server connection runs its commands.
  private readonly variables = new Map<string, string>();
  private schema: string | null = null;
  private multiStatements = true;
  /** The handshake's character set, applied with SET NAMES on the first borrow when its server values are not known yet. */
  private pendingCharset: number | null = null;
  private inTransaction = false;
  private cursorOpen = false;
  private longDataPending = false;
  /** The client is sending a ≥ 16 MB command: its remaining packets must follow on the same connection. */
  private midCommand = false;
  private commandBytes = 0;
  /** Reset the connection on release (the client changed session tracking itself). */
  private resetOnRelease = false;
  /** An UNLOCK TABLES ended the only pin: release (with reset) once the response is in. */
  private unpinWhenIdle = false;
  private lastInsertId = 0n;
  /** Collation id from the handshake (or COM_CHANGE_USER), restored by COM_RESET_CONNECTION. */
  private loginCollation = DEFAULT_COLLATION;
  /** An error owed to the client's next command (its server connection died between commands). */
  private owedError: ProxyError | null = null;
  /** Sequence id of the last command packet received (continuations must follow it). */
  private commandSequenceId = 0;
  /** Set by an out-of-order packet: what follows it is not read. */
  private inputRejected = false;
  /** performance.now() when the oldest unanswered statement arrived from the client, and when it went to the database (0: none). */
  private requestArrivedAt = 0;
  private requestSentAt = 0;

  private readonly statements = new Map<number, ClientStatement>();
  private nextStatementId = 1;

  private backend: MysqlBackend | null = null;
  private borrowRequest: BorrowRequest<MysqlBackend> | null = null;
  private readonly pending: PendingPacket[] = [];
  /** Waiting for the proxy's own command (a re-prepare) before the head command can go. */
  private waiting = false;
  private pumping = false;
  private serverReadingPaused = false;
  private clientReadingPaused = false;

  constructor(
    private readonly transport: ClientTransport,
    private readonly context: MysqlSessionContext,
  ) {
    this.framer = new MysqlPacketFramer({ maxPayloadLength: Math.min(MAX_PACKET_PAYLOAD_LENGTH, context.maxMessageBytes) });
  }

  get isReady(): boolean {
    return this.phase === Phase.Ready;
  }

  get isIdle(): boolean {
    return this.backend === null && this.pending.length === 0 && this.borrowRequest === null;
  }

  /** Sends the initial handshake. */
  start(target: TargetInfo): void {
    if (this.phase !== Phase.Handshake) return;
    this.advertised = (PROXY_CAPABILITIES & (target.capabilityFlags | CapabilityFlag.CLIENT_SSL | CapabilityFlag.CLIENT_LONG_PASSWORD)) | CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_PLUGIN_AUTH | CapabilityFlag.CLIENT_SECURE_CONNECTION;
    if (!this.transport.tlsAvailable) this.advertised &= ~CapabilityFlag.CLIENT_SSL;
    const handshake = encodeHandshakeV10({
      serverVersion: target.serverVersion,
      connectionId: this.id,
      scramble: this.scramble,
      capabilityFlags: this.advertised,
      characterSet: target.characterSet || DEFAULT_COLLATION,
      statusFlags: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
      authPluginName: AuthPlugin.MYSQL_NATIVE_PASSWORD,
    });
    this.transport.write(encodePacket(handshake, 0));
  }

  // ---------------------------------------------------------------- input

  onData(chunk: Buffer): void {
    if (this.phase === Phase.Closed) return;
    this.lastActivity = Date.now();
    let framingError: unknown = null;
    const bufferedBefore = this.framer.bufferedBytes;
    try {
      this.framer.push(chunk, this.onPacket);
    } catch (error) {
      framingError = error;
    }
    if (this.tlsStartsAt !== null) {
      // What follows the SSL request is the client's TLS handshake, not MySQL packets (the framer may have choked on it).
      const { source, offset, wireLength } = this.tlsStartsAt;
      this.tlsStartsAt = null;
      this.framer = new MysqlPacketFramer({ maxPayloadLength: Math.min(MAX_PACKET_PAYLOAD_LENGTH, this.context.maxMessageBytes) });
      // The SSL request either lies in this chunk or began in an earlier one and ends in this one.
      const endInChunk = source === chunk ? offset : wireLength - bufferedBefore;
      this.transport.startTls(Buffer.from(chunk.subarray(endInChunk)));
      return;
    }
    if (framingError !== null) {
      // A command starts a new exchange (sequence id 0), so its answer is packet 1.
      if (this.phase === Phase.Ready && this.auth === null) this.responseSequence = 1;
      if (framingError instanceof MysqlProtocolError && framingError.code === 'too-large') {
        this.fail(new ProxyError('MESSAGE_TOO_LARGE', `Got a packet bigger than the proxy's limit of ${this.context.maxMessageBytes} bytes`), true);
      } else {
        this.fail(asProtocolError(framingError), true);
      }
      return;
    }
    try {
      this.pump();
    } catch (error) {
      this.fail(asProtocolError(error), true);
      return;
    }
    // Whatever still waits must survive the chunk it was cut from.
    for (const packet of this.pending) {
      if (!packet.owned) {
        packet.wire = Buffer.from(packet.wire);
        packet.owned = true;
      }
    }
  }

  onTransportClosed(): void {
    this.shutdown();
  }

  terminate(error: ProxyError): void {
    if (this.phase === Phase.Closed) return;
    this.sendError(error);
    this.transport.end();
    this.shutdown();
  }

  private readonly onPacket = (source: Buffer, payloadStart: number, payloadLength: number, sequenceId: number, isContinuation: boolean): void => {
    if (this.phase === Phase.Closed || this.tlsStartsAt !== null) return;
    const wire = source.subarray(payloadStart - 4, payloadStart + payloadLength);
    if ((this.phase === Phase.Ready && this.auth === null) || this.phase === Phase.Finishing) {
      // A command starts at sequence id 0 and its continuations count up, as the server insists.
      // Checked here, so that a client's out-of-order packet ends that client only and never
      // reaches (and gets closed by) a server connection another client borrows next.
      if (this.inputRejected) return;
      if (sequenceId !== (isContinuation ? (this.commandSequenceId + 1) & 0xff : 0)) {
        const violation = new MysqlCodedError('PROTOCOL_VIOLATION', MysqlError.ER_NET_PACKETS_OUT_OF_ORDER, MysqlError.ER_NET_PACKETS_OUT_OF_ORDER.message);
        this.pending.push({ wire, sequenceId: 0, isContinuation: false, owned: false, violation });
        this.inputRejected = true;
        return;
      }
      this.commandSequenceId = sequenceId;
    }
    if (this.phase === Phase.Ready && this.auth === null) {
      this.commandBytes = isContinuation ? this.commandBytes + payloadLength : payloadLength;
      if (this.commandBytes > this.context.maxMessageBytes) {
        throw new MysqlProtocolError('too-large', 'command too large');
      }
      if (this.requestArrivedAt === 0 && !isContinuation && payloadLength > 0) {
        const command = source[payloadStart];
        if (command === Command.COM_QUERY || command === Command.COM_STMT_EXECUTE) this.requestArrivedAt = performance.now();
      }
      this.pending.push({ wire, sequenceId, isContinuation, owned: false });
      return;
    }
    if (this.phase === Phase.Finishing) {
      this.pending.push({ wire, sequenceId, isContinuation, owned: false });
      return;
    }
    const payload = wire.subarray(4);
    this.responseSequence = (sequenceId + 1) & 0xff;
    if (this.phase === Phase.Handshake) {
      if (this.onHandshakeResponse(payload)) this.tlsStartsAt = { source, offset: payloadStart + payloadLength, wireLength: payloadLength + 4 };
      return;
    }
    if (this.auth !== null) this.onAuthReply(payload);
  };

  // ---------------------------------------------------------------- login

  /** Returns true when the client asked for TLS (the caller starts it after this chunk's SSL request). */
  private onHandshakeResponse(payload: Buffer): boolean {
    // Checked before decoding the rest: clients encode their connection attributes in that character set too.
    if (payload.length > 32 && isImpermissibleClientCharset(payload[8]!)) {
      const name = charsetOfCollationId(payload[8]!) ?? String(payload[8]);
      this.fail(new MysqlCodedError('FEATURE_NOT_SUPPORTED', MysqlError.ER_WRONG_VALUE_FOR_VAR, `Variable 'character_set_client' can't be set to the value of '${name}'`), true);
      return false;
    }
    const response = parseHandshakeResponse(payload);
    if (response.kind === 'ssl-request') {
      if (this.transport.isTls || !hasCapability(this.advertised, CapabilityFlag.CLIENT_SSL)) {
        throw new MysqlProtocolError('malformed', 'unexpected SSL request');
      }
      return true;
    }
    this.clientCapabilities = response.capabilityFlags & this.advertised;
    if (this.context.requireTls && !this.transport.isTls) {
      this.fail(new MysqlCodedError('TLS_REQUIRED', MysqlError.ER_SECURE_TRANSPORT_REQUIRED, 'This Tidepool proxy requires TLS connections'), true);
      return false;
    }
    this.phase = Phase.Authenticating;
    this.beginAuth(response, false);
    return false;
  }

  private beginAuth(response: Pick<HandshakeResponse41, 'username' | 'authResponse' | 'authPluginName' | 'database' | 'characterSet'>, changeUser: boolean): void {
    const credential = this.context.credentials.lookup(response.username);
    const clientPlugin = response.authPluginName ?? AuthPlugin.MYSQL_NATIVE_PASSWORD;
    let plugin: string;
    if (credential?.iamAuth === 'REQUIRED') {
      // The token arrives as a cleartext password, so only over TLS (RDS Proxy's message).
      if (!this.transport.isTls) {
        this.context.events.onAuthFailed(response.username, 'IAM authentication without TLS');
        this.fail(new MysqlCodedError('AUTH_FAILED', MysqlError.ER_ACCESS_DENIED_ERROR, IAM_TLS_REQUIRED_MESSAGE), true);
        return;
      }
      plugin = AuthPlugin.MYSQL_CLEAR_PASSWORD;
    } else if (credential) {
      plugin = credential.clientPasswordAuthType === 'MYSQL_CACHING_SHA2_PASSWORD' ? AuthPlugin.CACHING_SHA2_PASSWORD : AuthPlugin.MYSQL_NATIVE_PASSWORD;
    } else {
      // Unknown users get the plugin they asked for, so the exchange does not tell them apart.
      plugin = clientPlugin === AuthPlugin.CACHING_SHA2_PASSWORD ? clientPlugin : AuthPlugin.MYSQL_NATIVE_PASSWORD;
    }
    this.auth = {
      username: response.username,
      credential,
      plugin,
      stage: 'switch-reply',
      database: response.database === undefined || response.database === '' ? null : response.database,
      collationId: response.characterSet,
      changeUser,
    };
    if (plugin === AuthPlugin.MYSQL_CLEAR_PASSWORD && (clientPlugin !== plugin || changeUser)) {
      this.writeToClient(encodeAuthSwitchRequest({ pluginName: plugin, pluginData: Buffer.alloc(0) }));
      return;
    }
    if (clientPlugin !== plugin || changeUser) {
      // COM_CHANGE_USER answers were computed for the login scramble; a fresh one keeps replays out.
      this.scramble = generateScramble();
      this.writeToClient(encodeAuthSwitchRequest({ pluginName: plugin, pluginData: Buffer.concat([this.scramble, Buffer.from([0])]) }));
      return;
    }
    this.verifyFirstResponse(response.authResponse);
  }

  private onAuthReply(payload: Buffer): void {
    const auth = this.auth!;
    switch (auth.stage) {
      case 'switch-reply':
        this.verifyFirstResponse(payload);
        return;
      case 'full-auth':
        if (!this.transport.isTls && payload.length === 1 && payload[0] === CachingSha2Byte.REQUEST_PUBLIC_KEY) {
          auth.stage = 'rsa-reply';
          this.writeToClient(encodeAuthMoreData(Buffer.from(this.context.rsaKeys().publicKeyPem, 'utf8')));
          return;
        }
        this.verifyFullAuth(payload);
        return;
      case 'rsa-reply':
        this.verifyFullAuth(payload);
        return;
      case 'iam-verifying':
        this.auth = null;
        this.fail(new ProxyError('PROTOCOL_VIOLATION', 'unexpected packet while the IAM token is verified'), true);
        return;
    }
  }

  private verifyFirstResponse(response: Buffer): void {
    const auth = this.auth!;
    if (auth.plugin === AuthPlugin.MYSQL_CLEAR_PASSWORD) {
      this.verifyIamToken(response);
      return;
    }
    const usedPassword = !(response.length === 0 || (response.length === 1 && response[0] === 0));
    const password = auth.credential?.password;
    if (auth.plugin === AuthPlugin.MYSQL_NATIVE_PASSWORD) {
      const ok = password !== undefined && usedPassword && verifyNativePassword(response, this.scramble, password);
      if (ok) this.authSucceeded();
      else this.authFailed(usedPassword, 'wrong password or unknown user');
      return;
    }
    if (!usedPassword) {
      this.authFailed(false, 'empty password');
      return;
    }
    if (password !== undefined && this.context.sha2Cache.get(auth.username) === password && verifyCachingSha2Password(response, this.scramble, password)) {
      this.writeToClient(encodeAuthMoreData(CachingSha2Byte.FAST_AUTH_SUCCESS));
      this.authSucceeded();
      return;
    }
    auth.stage = 'full-auth';
    this.writeToClient(encodeAuthMoreData(CachingSha2Byte.PERFORM_FULL_AUTHENTICATION));
  }

  private verifyFullAuth(response: Buffer): void {
    const auth = this.auth!;
    const password = auth.credential?.password;
    let ok: boolean;
    if (this.transport.isTls) {
      ok = password !== undefined && verifyClearTextPassword(response, password);
    } else {
      const decrypted = decryptPasswordWithPrivateKey(response, this.scramble, this.context.rsaKeys().privateKey);
      ok = password !== undefined && decrypted !== undefined && verifyClearTextPassword(Buffer.from(decrypted, 'utf8'), password);
    }
    if (!ok) {
      this.authFailed(true, 'wrong password or unknown user (full authentication)');
      return;
    }
    if (this.context.sha2Cache.size > 10_000) this.context.sha2Cache.clear();
    this.context.sha2Cache.set(auth.username, password!);
    this.authSucceeded();
  }

  /** mysql_clear_password carries the token NUL-terminated; the verifier replays it to STS. */
  private verifyIamToken(response: Buffer): void {
    const auth = this.auth!;
    const verifier = this.context.iamVerifier;
    if (verifier === undefined || verifier === null) {
      this.authFailed(true, 'IAM authentication is not configured');
      return;
    }
    const end = response.indexOf(0);
    const token = response.subarray(0, end === -1 ? response.length : end).toString('utf8');
    auth.stage = 'iam-verifying';
    verifier.verify(token, auth.username, { tls: this.transport.isTls }).then(
      (result) => {
        if (this.auth !== auth || this.phase === Phase.Closed) return;
        if (result.ok) {
          this.authSucceeded();
          return;
        }
        this.context.events.onAuthFailed(auth.username, `IAM: ${result.reason}`);
        this.auth = null;
        const message =
          result.code === 'RATE_LIMITED'
            ? IAM_RATE_LIMIT_MESSAGE
            : `IAM authentication failed for user ${auth.username}. Check the IAM token for this user and try again.`;
        this.fail(new MysqlCodedError('AUTH_FAILED', MysqlError.ER_ACCESS_DENIED_ERROR, message), true);
      },
      () => {
        if (this.auth === auth && this.phase !== Phase.Closed) this.authFailed(true, 'IAM token verification failed');
      },
    );
  }

  private authFailed(usedPassword: boolean, reason: string): void {
    const auth = this.auth!;
    this.context.events.onAuthFailed(auth.username, reason);
    this.auth = null;
    this.fail(new ProxyError('AUTH_FAILED', accessDeniedMessage(auth.username, '%', usedPassword)), true);
  }

  private authSucceeded(): void {
    const auth = this.auth!;
    this.auth = null;
    if (auth.changeUser) this.releaseBackend(ReleaseMode.NeedsReset);
    this.user = auth.username;
    this.database = auth.database ?? '';
    this.key = { user: this.user, database: this.database, tls: this.context.separateTlsPools === true && this.transport.isTls };
    this.resetSessionState(auth.collationId);
    if (auth.changeUser) {
      this.writeToClient(this.okPayload());
      this.pump();
      return;
    }
    // Check the database exists and is allowed, and learn the character set's server values,
    // on a real server connection before telling the client it is in.
    this.phase = Phase.Finishing;
    this.borrow();
  }

  private resetSessionState(collationId: number): void {
    this.loginCollation = collationId;
    this.owedError = null;
    this.variables.clear();
    for (const [name, value] of this.context.baseline()) this.variables.set(name, value);
    this.pendingCharset = null;
    const known = this.context.charsetCache.get(collationId);
    if (known) {
      for (const [name, value] of known) this.variables.set(name, value);
    } else if (collationNameOf(collationId) !== undefined) {
      this.pendingCharset = collationId;
    }
    this.schema = this.database === '' ? null : this.database;
    this.multiStatements = hasCapability(this.clientCapabilities, CapabilityFlag.CLIENT_MULTI_STATEMENTS);
    this.inTransaction = false;
    this.cursorOpen = false;
    this.longDataPending = false;
    this.lastInsertId = 0n;
    this.statements.clear();
    this.pinReason = null;
    this.unpinWhenIdle = false;
    this.resetOnRelease = false;
  }

  private finishLogin(): void {
    this.phase = Phase.Ready;
    this.context.events.onReady(this);
    this.transport.write(encodePacket(this.okPayload(), this.responseSequence));
    this.pump();
  }

  // ---------------------------------------------------------------- commands

  /** Whether the client negotiated TLS (the ClientConnectionsTLS/NoTLS gauges read it when the client leaves). */
  get isTls(): boolean {
    return this.transport.isTls;
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.pending.length > 0 && this.phase === Phase.Ready && !this.waiting) {
        const packet = this.pending[0]!;
        if (this.auth !== null && packet.violation === undefined) {
          // COM_CHANGE_USER's exchange is under way: packets the client sent behind it are its
          // replies, as the server itself would read them (they arrived before auth began).
          this.pending.shift();
          this.responseSequence = (packet.sequenceId + 1) & 0xff;
          this.onAuthReply(packet.wire.subarray(4));
          continue;
        }
        if (packet.isContinuation) {
          this.pending.shift();
          this.midCommand = packet.wire.length - 4 === MAX_PACKET_PAYLOAD_LENGTH;
          if (this.backend) this.toServer(packet.wire);
          continue;
        }
        if (!this.runCommand(packet)) break;
        this.pending.shift();
      }
    } catch (error) {
      // pump() also runs from server-side events, where nothing above maps a malformed command to the client's error.
      this.pumping = false;
      this.fail(asProtocolError(error), true);
      return;
    } finally {
      this.pumping = false;
    }
    this.maybeRelease();
  }

  /** Handles the head command; false when it must wait (for a connection or for earlier responses). */
  private runCommand(packet: PendingPacket): boolean {
    const payload = packet.wire.subarray(4);
    this.responseSequence = (packet.sequenceId + 1) & 0xff;
    if (packet.violation !== undefined) {
      // Answers to earlier commands come first, unless the violation is the missing rest of a
      // command the server already has the start of: that command can never be answered.
      if (!this.midCommand && this.backend !== null && this.backend.inFlight > 0) return false;
      this.fail(packet.violation, true);
      return true;
    }
    if (payload.length === 0) throw new MysqlProtocolError('malformed', 'empty command packet');
    const command = payload[0]!;
    const backendBusy = this.backend !== null && this.backend.inFlight > 0;
    if (this.owedError !== null && command !== Command.COM_QUIT) {
      if (backendBusy) return false;
      this.sendError(this.owedError);
      this.owedError = null;
      while (this.pending.length > 1 && this.pending[1]!.isContinuation) this.pending.splice(1, 1);
      return true;
    }
    switch (command) {
      case Command.COM_QUIT:
        this.transport.end();
        this.shutdown();
        return true;
      case Command.COM_PING:
        if (backendBusy) return false;
        this.writeToClient(this.okPayload());
        return true;
      case Command.COM_RESET_CONNECTION:
        if (backendBusy) return false;
        this.releaseBackend(this.canReleaseClean() ? ReleaseMode.Clean : ReleaseMode.NeedsReset);
        this.resetSessionState(this.loginCollation);
        this.writeToClient(this.okPayload());
        return true;
      case Command.COM_CHANGE_USER: {
        if (backendBusy) return false;
        const request = parseChangeUser(payload, this.clientCapabilities);
        if (request.characterSet !== undefined && isImpermissibleClientCharset(request.characterSet)) {
          this.sendError(new MysqlCodedError('FEATURE_NOT_SUPPORTED', MysqlError.ER_WRONG_VALUE_FOR_VAR, `Variable 'character_set_client' can't be set to the value of '${charsetOfCollationId(request.characterSet)}'`));
          return true;
        }
        this.beginAuth({ ...request, characterSet: request.characterSet ?? this.loginCollation }, true);
        return true;
      }
      case Command.COM_STMT_CLOSE:
        this.closeStatement(payload);
        return true;
      case Command.COM_STMT_PREPARE:
        return this.prepare(payload, packet);
      case Command.COM_STMT_EXECUTE:
      case Command.COM_STMT_SEND_LONG_DATA:
        return this.executeOrSendLongData(command, payload, packet);
      case Command.COM_STMT_RESET:
      case Command.COM_STMT_FETCH:
        return this.resetOrFetch(command, payload, packet);
      case Command.COM_QUERY:
        return this.query(payload, packet);
      default:
        if (UNSUPPORTED_COMMANDS.has(command)) {
          if (backendBusy) return false;
          this.sendError(new MysqlCodedError('FEATURE_NOT_SUPPORTED', MysqlError.ER_UNKNOWN_COM_ERROR, 'Unknown command'));
          return true;
        }
        if (!this.ensureBackend()) return false;
        this.forward(packet, command === Command.COM_SET_OPTION ? this.setOptionExchange(payload) : this.simpleExchange(command));
        return true;
    }
  }

  /** COM_SET_OPTION turns multi-statements on or off: tracked state, replayed on other connections. */
  private setOptionExchange(payload: Buffer): Exchange {
    const exchange = this.simpleExchange(Command.COM_SET_OPTION);
    const enable = payload.length >= 3 && payload.readUInt16LE(1) === 0;
    const backend = this.backend!;
    exchange.done = (tracker) => {
      this.afterResponse(tracker);
      if (tracker.error) return;
      this.multiStatements = enable;
      backend.multiStatements = enable;
    };
    return exchange;
  }

  private query(payload: Buffer, packet: PendingPacket): boolean {
    // A ≥ 16 MB statement is only partly here; it pins as too large without reading more.
    const sql = payload.toString('utf8', 1);
    this.context.events.debugSql?.(this, sql.length > 1000 ? `${sql.slice(0, 1000)}…` : sql);
    const classification = classifyMysqlSql(sql, {
      excludeVariableSets: this.context.excludeVariableSets,
      noBackslashEscapes: (this.variables.get('sql_mode') ?? '').toUpperCase().includes('NO_BACKSLASH_ESCAPES'),
    });
    if (classification.lastInsertIdQuery && this.pinReason === null) {
      if (this.backend !== null && this.backend.inFlight > 0) return false;
      this.answerLastInsertId(classification.lastInsertIdQuery.columnName);
      return true;
    }
    if (!this.ensureBackend()) return false;
    const backend = this.backend!;
    if (DDL.test(sql)) this.context.metadataCache.clear();
    if (classification.pinReason !== undefined && this.pinReason === null) this.pin(backend, classification.pinReason, classification.pinDetail);
    const changesTracking = classification.trackedSets?.some((set) => set.name === 'session_track_schema') ?? false;
    const unlocks = classification.unlockTables === true;
    const exchange = this.simpleExchange(Command.COM_QUERY);
    if (COMMIT_STATEMENT.test(sql)) exchange.outcomeUnknownIfLost = true;
    if (changesTracking || unlocks) {
      const inner = exchange.done!;
      exchange.done = (tracker, ex) => {
        inner(tracker, ex);
        if (tracker.error) return;
        if (changesTracking) this.resetOnRelease = true;
        if (unlocks && this.pinReason === 'table-lock') this.unpinWhenIdle = true;
      };
    }
    this.forward(packet, exchange);
    return true;
  }

  private pin(backend: MysqlBackend, reason: MysqlPinReason, detail: string | undefined): void {
    this.pinReason = reason;
    this.unpinWhenIdle = false;
    this.context.broker.pin(backend, reason);
    this.context.events.onPinned(this, reason, detail);
  }

  private prepare(payload: Buffer, packet: PendingPacket): boolean {
    const sql = payload.toString('utf8', 1);
    const serverKey = statementServerKey(this.schema, sql);
    const cached = this.context.metadataCache.get(this.user, serverKey);
    if (cached) {
      if (this.backend !== null && this.backend.inFlight > 0) return false;
      const statementId = this.nextStatementId++;
      const header = parsePrepareOk(cached[0]!);
      this.statements.set(statementId, { serverKey, schema: this.schema, sql, parameterCount: header.parameterCount, columnCount: header.columnCount, parameterTypes: null });
      const first = Buffer.from(cached[0]!);
      writeStatementId(first, statementId);
      this.transport.cork();
      this.writeToClient(first);
      for (let i = 1; i < cached.length; i++) this.writeToClient(cached[i]!);
      this.transport.uncork();
      return true;
    }
    if (!this.ensureBackend()) return false;
    const backend = this.backend!;
    const statementId = this.nextStatementId++;
    const captured: Buffer[] = [];
    let serverId = -1;
    this.forward(packet, {
      command: Command.COM_STMT_PREPARE,
      forward: true,
      observe: (_role, body) => {
        captured.push(Buffer.from(body));
      },
      rewrite: (role, body) => {
        if (role === PacketRole.PrepareOk) {
          serverId = readStatementId(body);
          writeStatementId(body, statementId);
        }
        return null;
      },
      done: (tracker) => {
        this.afterResponse(tracker, Command.COM_STMT_PREPARE);
        const header = tracker.prepareOk;
        if (tracker.error || !header || serverId < 0) return;
        backend.rememberPrepared(serverKey, serverId, header.parameterCount);
        this.statements.set(statementId, { serverKey, schema: this.schema, sql, parameterCount: header.parameterCount, columnCount: header.columnCount, parameterTypes: null });
        this.context.metadataCache.set(this.user, serverKey, captured);
      },
    });
    return true;
  }

  private executeOrSendLongData(command: number, payload: Buffer, packet: PendingPacket): boolean {
    const statementId = readStatementId(payload);
    const statement = this.statements.get(statementId);
    if (!statement) {
      if (command === Command.COM_STMT_SEND_LONG_DATA) return true; // no response either way
      if (this.backend !== null && this.backend.inFlight > 0) return false;
      this.sendUnknownStatement(statementId, 'mysqld_stmt_execute');
      return true;
    }
    if (!this.ensureBackend()) return false;
    const backend = this.backend!;
    const onServer = backend.prepared.get(statement.serverKey);
    if (!onServer) {
      this.prepareOnServer(backend, statement, command === Command.COM_STMT_EXECUTE ? 'mysqld_stmt_execute' : null);
      return false;
    }
    writeStatementId(payload, onServer.serverId);
    if (command === Command.COM_STMT_SEND_LONG_DATA) {
      this.longDataPending = true;
      this.toServer(packet.wire);
      return true;
    }
    const wire = this.withParameterTypes(statement, onServer, payload, packet);
    const exchange = this.simpleExchange(Command.COM_STMT_EXECUTE);
    exchange.payload = wire.subarray(4);
    const inner = exchange.done!;
    exchange.done = (tracker, ex) => {
      this.longDataPending = false;
      inner(tracker, ex);
    };
    this.forward({ ...packet, wire }, exchange);
    return true;
  }

  /**
   * Server statements are shared by every client that runs the same SQL on a connection,
   * and a server keeps the parameter types of the last execute that sent them: so every
   * execute carries this client's types, inserted when the client relied on earlier ones.
   */
  private withParameterTypes(statement: ClientStatement, onServer: PreparedOnServer, payload: Buffer, packet: PendingPacket): Buffer {
    const count = statement.parameterCount;
    if (count === 0 || payload.length >= MAX_PACKET_PAYLOAD_LENGTH) return packet.wire;
    const flagOffset = 10 + ((count + 7) >> 3);
    if (payload.length <= flagOffset) return packet.wire;
    if (payload[flagOffset] === 1) {
      const types = payload.subarray(flagOffset + 1, flagOffset + 1 + 2 * count);
      if (statement.parameterTypes === null || !statement.parameterTypes.equals(types)) statement.parameterTypes = Buffer.from(types);
      onServer.boundTypes = statement.parameterTypes;
      return packet.wire;
    }
    const types = statement.parameterTypes;
    // The server statement still has this client's types from an earlier execute: nothing to add.
    if (types === null || onServer.boundTypes === types || (onServer.boundTypes !== null && onServer.boundTypes.equals(types))) return packet.wire;
    onServer.boundTypes = types;
    const rewritten = Buffer.concat([payload.subarray(0, flagOffset), Buffer.from([1]), types, payload.subarray(flagOffset + 1)]);
    return encodePacket(rewritten, packet.sequenceId);
  }

  private prepareOnServer(backend: MysqlBackend, statement: ClientStatement, errorContext: string | null): void {
    this.waiting = true;
    const payload = Buffer.concat([Buffer.from([Command.COM_STMT_PREPARE]), Buffer.from(statement.sql, 'utf8')]);
    // Prepared where the client prepared it, so unqualified names mean the same thing; then back.
    const switchSchema = statement.schema !== null && statement.schema !== backend.schema ? statement.schema : null;
    const initDb = (schema: string) => Buffer.concat([Buffer.from([Command.COM_INIT_DB]), Buffer.from(schema, 'utf8')]);
    const onSchemaError = (tracker: MysqlResponseTracker) => {
      if (tracker.error) backend.stateUnknown = true;
    };
    const returnTo = backend.schema;
    if (switchSchema !== null) backend.sendOwnCommand(initDb(switchSchema), { done: onSchemaError });
    backend.sendOwnCommand(payload, {
      done: (tracker) => {
        // The connection was lost meanwhile: onBackendLost already took over the client.
        if (this.phase === Phase.Closed || this.backend !== backend) return;
        this.waiting = false;
        if (tracker.error || !tracker.prepareOk) {
          // The statement no longer prepares (e.g. a table was dropped): the client's command fails with the server's error.
          this.pending.shift();
          if (errorContext !== null) {
            const error = tracker.error ?? { code: 1105, sqlState: 'HY000', message: 'Unknown error' };
            this.writeToClient(encodeErrPacket({ code: error.code, sqlState: error.sqlState, message: error.message }));
          }
        } else {
          backend.rememberPrepared(statement.serverKey, tracker.prepareOk.statementId, tracker.prepareOk.parameterCount);
        }
        this.pump();
      },
    });
    if (switchSchema !== null && returnTo !== null) {
      backend.sendOwnCommand(initDb(returnTo), { done: onSchemaError });
    }
  }

  private resetOrFetch(command: number, payload: Buffer, packet: PendingPacket): boolean {
    const statementId = readStatementId(payload);
    const statement = this.statements.get(statementId);
    const onServer = statement && this.backend ? this.backend.prepared.get(statement.serverKey) : undefined;
    if (!statement || !onServer) {
      if (this.backend !== null && this.backend.inFlight > 0) return false;
      if (!statement) this.sendUnknownStatement(statementId, command === Command.COM_STMT_FETCH ? 'mysqld_stmt_fetch' : 'mysqld_stmt_reset');
      else if (command === Command.COM_STMT_RESET) {
        this.longDataPending = false;
        this.writeToClient(this.okPayload());
      } else {
        this.sendError(new MysqlCodedError('INTERNAL', { code: 1421, sqlState: 'HY000' }, `The statement (${statementId}) has no open cursor.`));
      }
      return true;
    }
    writeStatementId(payload, onServer.serverId);
    const exchange = this.simpleExchange(command);
    if (command === Command.COM_STMT_RESET) {
      const inner = exchange.done!;
      exchange.done = (tracker, ex) => {
        this.longDataPending = false;
        this.cursorOpen = false;
        inner(tracker, ex);
      };
    }
    this.forward(packet, exchange);
    return true;
  }

  private closeStatement(payload: Buffer): void {
    const statementId = readStatementId(payload);
    const statement = this.statements.get(statementId);
    this.statements.delete(statementId);
    // The server statement stays for other clients, but an open cursor on it would hold the connection.
    if (statement && this.cursorOpen && this.backend) {
      const onServer = this.backend.prepared.get(statement.serverKey);
      if (onServer) {
        const reset = Buffer.alloc(5);
        reset[0] = Command.COM_STMT_RESET;
        reset.writeUInt32LE(onServer.serverId, 1);
        this.backend.sendOwnCommand(reset, {});
      }
      this.cursorOpen = false;
    }
  }

  private sendUnknownStatement(statementId: number, where: string): void {
    this.sendError(new MysqlCodedError('INTERNAL', MysqlError.ER_UNKNOWN_STMT_HANDLER, `Unknown prepared statement handler (${statementId}) given to ${where}`));
  }

  /** SELECT LAST_INSERT_ID() answered from this client's last OK packet: its id is the one the client generated, wherever that ran. */
  private answerLastInsertId(columnName: string): void {
    const column = new PayloadWriter(64)
      .lenencString('def')
      .lenencString('')
      .lenencString('')
      .lenencString('')
      .lenencString(columnName)
      .lenencString('')
      .lenencInt(0x0c)
      .u16(63) // binary
      .u32(21)
      .u8(0x08) // MYSQL_TYPE_LONGLONG
      .u16(0x0001 | 0x0020 | 0x0080) // NOT NULL, UNSIGNED, BINARY
      .u8(0)
      .u16(0)
      .finish();
    const status = this.statusFlags();
    this.transport.cork();
    this.writeToClient(Buffer.from([1]));
    this.writeToClient(column);
    this.writeToClient(encodeEofPacket({ warningCount: 0, statusFlags: status }));
    this.writeToClient(new PayloadWriter(24).lenencString(this.lastInsertId.toString()).finish());
    this.writeToClient(encodeEofPacket({ warningCount: 0, statusFlags: status }));
    this.transport.uncork();
  }

  // ---------------------------------------------------------------- forwarding

  private simpleExchange(command: number): Exchange {
    return { command, forward: true, rewrite: this.rewriteForClient, done: this.onForwardedDone };
  }

  private forward(packet: PendingPacket, exchange: Exchange): void {
    const backend = this.backend!;
    this.midCommand = packet.wire.length - 4 === MAX_PACKET_PAYLOAD_LENGTH;
    if (exchange.command === Command.COM_QUERY || exchange.command === Command.COM_STMT_EXECUTE) {
      this.context.events.onQueryRequest(this.transport.isTls);
      if (this.requestSentAt === 0) this.requestSentAt = performance.now();
    }
    backend.expect(exchange);
    this.toServer(packet.wire);
  }

  /** OK packets with session-state data are rewritten for clients, which never negotiate CLIENT_SESSION_TRACK with the proxy. */
  private readonly rewriteForClient = (role: PacketRole, payload: Buffer): Buffer | null => {
    if (role !== PacketRole.Ok || (okStatusFlags(payload) & ServerStatus.SERVER_SESSION_STATE_CHANGED) === 0) return null;
    const ok = parseOkPacket(payload, CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_SESSION_TRACK);
    return encodeOkPacket(
      { affectedRows: ok.affectedRows, lastInsertId: ok.lastInsertId, statusFlags: ok.statusFlags, warningCount: ok.warningCount, info: ok.info },
      this.clientCapabilities,
      ok.header,
    );
  };

  private readonly onForwardedDone = (tracker: MysqlResponseTracker): void => {
    this.afterResponse(tracker);
  };

  /** Folds a completed response into this client's state. */
  private afterResponse(tracker: MysqlResponseTracker, command = -1): void {
    const backend = this.backend;
    if (backend && command !== Command.COM_STMT_PREPARE && this.pinReason === null && !this.context.excludeVariableSets && untrackedStateChanged(tracker)) {
      // E.g. a stored procedure made a temporary table or set a user variable: invisible in the CALL's text.
      // (With EXCLUDE_VARIABLE_SETS the user vouches for session state, and untracked SETs report changes too.)
      this.pin(backend, 'session-state-change', 'session_track_state_change');
    }
    if (backend) {
      if (tracker.sessionStateChanges.length > 0) {
        backend.applyStateChanges(tracker);
        // The connection was brought in line with this client when lent, so its values are the client's now.
        for (const name of TRACKED_VARIABLES) {
          const value = backend.variables.get(name);
          if (value !== undefined) this.variables.set(name, value);
        }
        if (connectionCharsetChangedAlone(tracker)) this.learnCollation(backend);
      }
      this.schema = backend.schema;
    }
    const status = tracker.statusFlags;
    if (status !== undefined) {
      this.inTransaction = (status & ServerStatus.SERVER_STATUS_IN_TRANS) !== 0;
      this.cursorOpen = tracker.cursorOpen;
    }
    if (!tracker.error && tracker.lastInsertId !== 0n) this.lastInsertId = tracker.lastInsertId;
  }

  /**
   * SET NAMES / SET CHARACTER SET change collation_connection to the character set's default,
   * but servers report only the character set: ask for the collation (the connection stays
   * until the answer is in, as it is one more outstanding command).
   */
  private learnCollation(backend: MysqlBackend): void {
    backend.runOwnQuery('SELECT @@collation_connection', (tracker, rows) => {
      const value = rows[0]?.[0];
      if (tracker.error || value === null || value === undefined) {
        backend.stateUnknown = true;
        return;
      }
      backend.variables.set('collation_connection', value.toLowerCase());
      if (this.backend === backend) this.variables.set('collation_connection', value.toLowerCase());
    });
  }

  // ---------------------------------------------------------------- server connections

  /** True when a connection is here; otherwise asks for one and returns false. */
  private ensureBackend(): boolean {
    if (this.backend !== null) return true;
    if (this.borrowRequest === null) this.borrow();
    return this.backend !== null;
  }

  private borrow(): void {
    const request: BorrowRequest<MysqlBackend> = {
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
        if (this.schema === null && backend.schema !== null) {
          // A connection cannot go back to having no database: this client needs a fresh one.
          this.context.broker.release(backend, ReleaseMode.Discard);
          this.borrow();
          return;
        }
        this.backend = backend;
        backend.peer = this;
        this.syncState(backend);
        if (this.phase === Phase.Finishing) {
          this.finishLoginOn(backend);
          return;
        }
        if (!this.pumping) this.pump();
      },
    };
    this.borrowRequest = request;
    this.context.broker.borrow(request);
  }

  private finishLoginOn(backend: MysqlBackend): void {
    // A round trip confirms the database is there (it is the pool's) and that the character set applied.
    backend.sendOwnCommand(Buffer.from([Command.COM_PING]), {
      done: (tracker) => {
        if (this.phase !== Phase.Finishing) return;
        if (tracker.error || backend.stateUnknown) {
          this.releaseBackend(ReleaseMode.Discard);
          this.fail(new ProxyError('SERVER_CONNECT_FAILED', tracker.error?.message ?? 'could not apply the character set'), true);
          return;
        }
        this.releaseBackend(ReleaseMode.Clean);
        this.finishLogin();
      },
    });
  }

  /**
   * Brings the lent connection's tracked state in line with this client's, with commands
   * pipelined ahead of the client's own (their responses are swallowed).
   */
  private syncState(backend: MysqlBackend): void {
    if (this.schema !== null && backend.schema !== this.schema) {
      const wanted = this.schema;
      backend.schema = wanted;
      backend.sendOwnCommand(Buffer.concat([Buffer.from([Command.COM_INIT_DB]), Buffer.from(wanted, 'utf8')]), {
        done: (tracker) => {
          if (tracker.error) backend.stateUnknown = true;
        },
      });
    }
    if (backend.multiStatements !== this.multiStatements) {
      backend.multiStatements = this.multiStatements;
      const option = Buffer.from([Command.COM_SET_OPTION, this.multiStatements ? 0 : 1, 0]);
      backend.sendOwnCommand(option, {
        done: (tracker) => {
          if (tracker.error) backend.stateUnknown = true;
        },
      });
    }
    const assignments: string[] = [];
    const synced: string[] = [];
    if (this.pendingCharset !== null) {
      const collationId = this.pendingCharset;
      const collation = serverCharsetName(collationNameOf(collationId)!);
      const charset = serverCharsetName(charsetOfCollationId(collationId)!);
      assignments.push(`character_set_client = '${charset}', character_set_results = '${charset}', collation_connection = '${collation}'`);
      synced.push('character_set_client', 'character_set_results', 'character_set_connection', 'collation_connection');
    }
    for (const name of TRACKED_VARIABLES) {
      if (this.pendingCharset !== null && name !== 'time_zone' && name !== 'sql_mode' && name !== 'autocommit') continue;
      const wanted = this.variables.get(name);
      if (wanted === undefined || backend.variables.get(name) === wanted) continue;
      if (name === 'character_set_connection' && this.variables.get('collation_connection') !== backend.variables.get('collation_connection')) continue;
      assignments.push(`${name} = ${sqlValue(name, wanted)}`);
      synced.push(name);
      backend.variables.set(name, wanted);
    }
    if (assignments.length === 0) return;
    const charsetCollation = this.pendingCharset;
    this.pendingCharset = null;
    backend.runOwnQuery(`SET SESSION ${assignments.join(', ')}`, (tracker) => {
      if (tracker.error) {
        backend.stateUnknown = true;
        return;
      }
      // The server's spelling of the values becomes the client's, so later comparisons match.
      for (const name of synced) {
        const value = backend.variables.get(name);
        if (value !== undefined) this.variables.set(name, value);
      }
      if (charsetCollation !== null) {
        const learned = new Map<string, string>();
        for (const name of ['character_set_client', 'character_set_results', 'character_set_connection', 'collation_connection']) {
          const value = backend.variables.get(name);
          if (value !== undefined) learned.set(name, value);
        }
        if (learned.size === 4) this.context.charsetCache.set(charsetCollation, learned);
      }
    });
  }

  private onBorrowFailed(error: ProxyError): void {
    if (this.phase === Phase.Finishing) {
      this.fail(error, true);
      return;
    }
    // The head command fails; any commands behind it try again.
    const head = this.pending.shift();
    if (head) this.responseSequence = (head.sequenceId + 1) & 0xff;
    while (this.pending.length > 0 && this.pending[0]!.isContinuation) this.pending.shift();
    this.sendError(error);
    if (isFatalForMysqlClient(error)) {
      this.transport.end();
      this.shutdown();
      return;
    }
    if (this.pending.length > 0) this.pump();
  }

  private canReleaseClean(): boolean {
    const backend = this.backend;
    return (
      backend !== null &&
      this.pinReason === null &&
      !this.inTransaction &&
      !this.cursorOpen &&
      !this.longDataPending &&
      !this.midCommand &&
      backend.inFlight === 0
    );
  }

  private maybeRelease(): void {
    const backend = this.backend;
    if (backend === null || this.waiting || this.phase !== Phase.Ready) return;
    if (this.unpinWhenIdle && backend.inFlight === 0 && !this.inTransaction) {
      this.unpinWhenIdle = false;
      this.pinReason = null;
      this.releaseBackend(ReleaseMode.NeedsReset);
      if (this.pending.length > 0) this.pump();
    } else if (this.canReleaseClean() && this.pending.length === 0) {
      this.releaseBackend(this.releaseModeFor(backend));
    }
  }

  private releaseModeFor(backend: MysqlBackend): ReleaseMode {
    if (backend.stateUnknown) return ReleaseMode.Discard;
    if (this.resetOnRelease) {
      this.resetOnRelease = false;
      return ReleaseMode.NeedsReset;
    }
    return ReleaseMode.Clean;
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
    this.cursorOpen = false;
    this.longDataPending = false;
    if (mode !== ReleaseMode.Clean) this.resetOnRelease = false;
    this.context.broker.release(backend, mode === ReleaseMode.Clean ? this.releaseModeFor(backend) : mode);
  }

  // ---------------------------------------------------------------- MysqlBackendPeer

  fromServer(data: Buffer): void {
    if (this.requestSentAt !== 0 && this.backend !== null) {
      const now = performance.now();
      this.context.events.onQueryResponse(now - (this.requestArrivedAt || this.requestSentAt), now - this.requestSentAt, this.backend);
      this.requestSentAt = 0;
      this.requestArrivedAt = 0;
    }
    if (!this.transport.write(data) && !this.serverReadingPaused) {
      this.serverReadingPaused = true;
      this.backend?.pauseReading();
    }
  }

  holdsForwardedBytes(): boolean {
    return this.transport.retainedBytes > 0;
  }

  afterServerChunk(): void {
    this.lastActivity = Date.now();
    if (!this.pumping) this.pump();
  }

  onBackendLost(reason: string, lostInFlight: readonly Exchange[], nextSequenceId?: number): void {
    const wasPinned = this.pinReason !== null;
    const inTransaction = this.inTransaction;
    this.requestSentAt = 0;
    this.requestArrivedAt = 0;
    this.backend = null;
    this.serverReadingPaused = false;
    this.onServerDrain();
    if (this.phase === Phase.Closed) return;
    this.inTransaction = false;
    this.cursorOpen = false;
    this.longDataPending = false;
    this.midCommand = false;
    this.waiting = false;
    this.pinReason = null;
    this.unpinWhenIdle = false;
    if (this.phase === Phase.Finishing) {
      this.fail(new ProxyError('SERVER_CONNECT_FAILED', reason), true);
      return;
    }
    const message = wasPinned
      ? `server connection lost (${reason}); session state was reset`
      : inTransaction
        ? `server connection lost (${reason}); the transaction was rolled back`
        : `server connection lost (${reason})`;
    const error = new ProxyError('SERVER_CONNECTION_LOST', message);
    if (lostInFlight.length > 0) {
      // Each command in flight gets an error as its answer (never an OK: the proxy cannot know
      // what the server did). A COMMIT may or may not have committed: it says so.
      const commitLost = new MysqlCodedError('SERVER_CONNECTION_LOST', COMMIT_OUTCOME_UNKNOWN, `server connection lost during COMMIT (${reason}); the transaction outcome is unknown`);
      // Lost mid-result: the error continues the response the client is reading.
      if (nextSequenceId !== undefined) this.responseSequence = nextSequenceId;
      lostInFlight.forEach((exchange, index) => {
        // Every later answer belongs to a command of its own, whose response starts at sequence id 1.
        if (index > 0) this.responseSequence = 1;
        this.sendError(exchange.outcomeUnknownIfLost === true ? commitLost : error);
      });
    } else if (wasPinned || inTransaction) {
      // Nothing was running, but the client's transaction or session state is gone: its next command learns it.
      this.owedError = error;
    }
    if (this.pending.length > 0) this.pump();
  }

  onTransportDrain(): void {
    if (this.serverReadingPaused) {
      this.serverReadingPaused = false;
      this.backend?.resumeReading();
    }
  }

  onServerDrain(): void {
    if (this.clientReadingPaused) {
      this.clientReadingPaused = false;
      this.transport.resume();
    }
  }

  // ---------------------------------------------------------------- output

  private toServer(wire: Buffer): void {
    if (!this.backend!.write(wire) && !this.clientReadingPaused) {
      this.clientReadingPaused = true;
      this.transport.pause();
    }
  }

  /** Writes one packet of the proxy's own with the next sequence id of the current exchange. */
  private writeToClient(payload: Buffer): void {
    this.transport.write(encodePacket(payload, this.responseSequence));
    this.responseSequence = (this.responseSequence + 1) & 0xff;
  }

  private statusFlags(): number {
    let flags = 0;
    if (this.inTransaction) flags |= ServerStatus.SERVER_STATUS_IN_TRANS;
    if (this.variables.get('autocommit') !== 'OFF') flags |= ServerStatus.SERVER_STATUS_AUTOCOMMIT;
    return flags;
  }

  private okPayload(): Buffer {
    return encodeOkPacket({ statusFlags: this.statusFlags() }, this.clientCapabilities);
  }

  private sendError(error: ProxyError): void {
    if (this.phase === Phase.Closed) return;
    this.writeToClient(mysqlErrPayload(error, { duringLogin: this.phase !== Phase.Ready }));
  }

  /** Reports an error; `close` ends the session. */
  private fail(error: ProxyError, close: boolean): void {
    if (this.phase === Phase.Closed) return;
    this.sendError(error);
    if (close) {
      this.transport.end();
      this.shutdown();
    }
  }

  private shutdown(): void {
    if (this.phase === Phase.Closed) return;
    const wasReady = this.phase === Phase.Ready;
    this.phase = Phase.Closed;
    if (this.borrowRequest) {
      this.context.broker.cancelBorrow(this.borrowRequest);
      this.borrowRequest = null;
    }
    const backend = this.backend;
    if (backend) {
      const clean = wasReady && this.canReleaseClean() && !this.waiting;
      // A server connection holding the start of a command waits for its rest: a reset would be read as that rest.
      this.releaseBackend(clean ? ReleaseMode.Clean : this.midCommand ? ReleaseMode.Discard : ReleaseMode.NeedsReset);
    }
    this.pending.length = 0;
  }
}

function connectionCharsetChangedAlone(tracker: MysqlResponseTracker): boolean {
  let charset = false;
  for (const change of tracker.sessionStateChanges) {
    if (change.type !== SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES) continue;
    const name = change.name.toLowerCase();
    if (name === 'collation_connection') return false;
    if (name === 'character_set_connection') charset = true;
  }
  return charset;
}

/**
 * The server flagged a session state change (session_track_state_change) that no tracked
 * entry (system variable, schema) in the same response accounts for.
 */
function untrackedStateChanged(tracker: MysqlResponseTracker): boolean {
  let flagged = false;
  for (const change of tracker.sessionStateChanges) {
    if (change.type === SessionTrackType.SESSION_TRACK_STATE_CHANGE) flagged = true;
    else if (change.type === SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES || change.type === SessionTrackType.SESSION_TRACK_SCHEMA) return false;
  }
  return flagged;
}

function asProtocolError(error: unknown): ProxyError {
  if (error instanceof MysqlProtocolError) return new ProxyError('PROTOCOL_VIOLATION', `Malformed communication packet: ${error.message}`);
  return toProxyError(error);
}

/** MySQL 5.7 does not know the utf8mb3 spelling; every version knows utf8. */
function serverCharsetName(name: string): string {
  return name.replace(/^utf8mb3/, 'utf8');
}

function sqlValue(name: string, value: string): string {
  if (name === 'character_set_results' && (value === '' || value.toUpperCase() === 'NULL')) return 'NULL';
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}
