/**
 * One MySQL server connection: the proxy's own client handshake (mysql_native_password,
 * caching_sha2_password fast and full authentication with the server's RSA key), session
 * tracking set up on it, the proxy's own swallowed commands (state sync, re-prepare,
 * reset), and forwarding responses to whichever client it is lent to.
 *
 * Commands may be pipelined: each command written gets an Exchange in a FIFO, and the
 * response tracker follows the head exchange's response packet by packet. Forwarded
 * packets are relayed as views of the received chunk, merged into one write per chunk.
 */
import { Socket, connect } from 'node:net';
import { ProxyError } from '../../errors';
import {
  cachingSha2PasswordToken,
  encryptPasswordWithPublicKey,
  nativePasswordToken,
} from '../../protocol/mysql/auth';
import {
  AuthPlugin,
  CachingSha2Byte,
  CapabilityFlag,
  Command,
  PACKET_HEADER_LENGTH,
  ResponseHeader,
  SessionTrackType,
  hasCapability,
} from '../../protocol/mysql/constants';
import { MysqlServerError } from '../../protocol/mysql/errors';
import { MysqlPacketFramer, PayloadReader, encodePacket, LENENC_NULL } from '../../protocol/mysql/framing';
import {
  MysqlResponseTracker,
  PacketRole,
  encodeHandshakeResponse41,
  encodeSslRequest,
  parseAuthSwitchRequest,
  parseErrPacket,
  parseHandshakeV10,
} from '../../protocol/mysql/packets';
import type { PoolKey, ServerConnection } from '../types';
import { ServerTlsRequest, upgradeToTls } from '../server-tls';
import { SocketWriter } from '../socket-writer';

/** CR_SSL_CONNECTION_ERROR, what MySQL clients report when TLS to a server fails. */
const SSL_CONNECTION_ERROR = 2026;
/** Reads from the server land in one reused buffer of this size (see onRead). */
const READ_BUFFER_BYTES = 64 * 1024;

/** Session variables the proxy tracks per connection and replays for each client (RDS Proxy's list). */
export const TRACKED_VARIABLES = [
  'character_set_client',
  'character_set_results',
  'character_set_connection',
  'collation_connection',
  'time_zone',
  'sql_mode',
  'autocommit',
] as const;
export type TrackedVariable = (typeof TRACKED_VARIABLES)[number];
const TRACKED_VARIABLE_SET: ReadonlySet<string> = new Set(TRACKED_VARIABLES);

export function isTrackedVariable(name: string): name is TrackedVariable {
  return TRACKED_VARIABLE_SET.has(name);
}

/** Run on every new or reset server connection: the server then reports tracked state in OK packets. */
export const TRACKING_SETUP_SQL = `SET SESSION session_track_schema = 1, session_track_state_change = 1, session_track_system_variables = '${TRACKED_VARIABLES.join(',')}'`;
const BASELINE_SQL = `SHOW SESSION VARIABLES WHERE Variable_name IN (${TRACKED_VARIABLES.map((v) => `'${v}'`).join(', ')})`;

/** What the proxy asks of every server connection. No compression, no CLIENT_DEPRECATE_EOF, no LOCAL INFILE, no query attributes. */
const BACKEND_CAPABILITIES =
  CapabilityFlag.CLIENT_LONG_PASSWORD |
  CapabilityFlag.CLIENT_LONG_FLAG |
  CapabilityFlag.CLIENT_PROTOCOL_41 |
  CapabilityFlag.CLIENT_TRANSACTIONS |
  CapabilityFlag.CLIENT_SECURE_CONNECTION |
  CapabilityFlag.CLIENT_MULTI_STATEMENTS |
  CapabilityFlag.CLIENT_MULTI_RESULTS |
  CapabilityFlag.CLIENT_PS_MULTI_RESULTS |
  CapabilityFlag.CLIENT_PLUGIN_AUTH |
  CapabilityFlag.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
  CapabilityFlag.CLIENT_SESSION_TRACK;

/** utf8mb4_general_ci: the login collation; clients' own character sets are applied per borrow. */
const LOGIN_COLLATION = 45;
/**
 * Server statements kept per connection before the oldest are closed; keeps a full pool
 * well under the server's max_prepared_stmt_count (16382 by default).
 */
const MAX_PREPARED_PER_CONNECTION = 256;

/** Where a lent connection's responses go. */
export interface MysqlBackendPeer {
  /** Forwarded wire bytes (a view valid only during the call). */
  fromServer(data: Buffer): void;
  /** The end of one received chunk: the moment to decide about releasing the connection. */
  afterServerChunk(): void;
  /**
   * Whether bytes passed to fromServer are still referred to (queued for the client's socket):
   * the next read must then go to a fresh buffer.
   */
  holdsForwardedBytes(): boolean;
  /**
   * `lostInFlight`: the client's commands sent and not (fully) answered, oldest first.
   * `nextSequenceId`: when part of the first one's response already reached the client (lost
   * mid-result), the sequence id the client expects next, so the error that ends it is in order.
   */
  onBackendLost(reason: string, lostInFlight: readonly Exchange[], nextSequenceId?: number): void;
  onServerDrain(): void;
}

/** One command written to the server whose response is expected. */
export interface Exchange {
  readonly command: number;
  /** COM_STMT_EXECUTE payload (cursor flags); not kept past start. */
  payload?: Buffer;
  /** Forward the response to the peer (false: the proxy's own command, swallowed). */
  readonly forward: boolean;
  /** Collect text rows (the proxy's own queries). */
  rows?: (string | null)[][];
  /** May replace a forwarded packet's payload (statement ids, session-track OKs); null keeps it. */
  rewrite?(role: PacketRole, payload: Buffer): Buffer | null;
  /** Every payload of the response, for callers that keep a copy (prepare metadata cache). */
  observe?(role: PacketRole, payload: Buffer): void;
  /** The response is complete. */
  done?(tracker: MysqlResponseTracker, exchange: Exchange): void;
  /** A COMMIT: lost in flight, its outcome is unknown (1180 / 08007), not simply failed. */
  outcomeUnknownIfLost?: boolean;
}

export interface BackendLogin {
  user: string;
  password: string;
  database: string;
}

export interface ServerHandshakeInfo {
  serverVersion: string;
  capabilityFlags: number;
  characterSet: number;
}

export interface PreparedOnServer {
  readonly serverId: number;
  readonly parameterCount: number;
  /** Parameter types the server statement was last executed with (servers keep them for executes that send none). */
  boundTypes: Buffer | null;
}

let nextBackendId = 1;

export class MysqlBackend implements ServerConnection {
  readonly id = nextBackendId++;
  onClosed: ((conn: ServerConnection, reason: string) => void) | null = null;
  isClosed = false;
  peer: MysqlBackendPeer | null = null;

  /** Current values of the tracked variables on this connection. */
  readonly variables = new Map<string, string>();
  /** Current schema; null when none is selected. */
  schema: string | null;
  multiStatements = true;
  /** Server statements by (schema, SQL), shared by every client that runs them here. */
  readonly prepared = new Map<string, PreparedOnServer>();
  /** A tracked-state sync failed: the state is unknown, so the connection must not be reused. */
  stateUnknown = false;
  serverInfo: ServerHandshakeInfo | null = null;
  /** The server's own connection id (for logs and tests). */
  threadId = 0;
  capabilities = 0;
  initQuery = '';
  /** Where this connection goes (set by the engine). */
  target: { host: string; port: number } | null = null;
  /** The target's name in metrics (set by the engine). */
  targetName = '';
  /** Set by the engine once the connection is open: counts its close. */
  onClosedForMetrics: (() => void) | null = null;
  /** Set by the engine: the server side ended this connection (not the proxy). */
  onLost: ((backend: MysqlBackend) => void) | null = null;

  private readonly framer = new MysqlPacketFramer();
  private tracker = new MysqlResponseTracker(BACKEND_CAPABILITIES);
  private readonly exchanges: Exchange[] = [];
  private login: {
    resolve: () => void;
    reject: (error: ProxyError) => void;
    scramble: Buffer;
    plugin: string;
    awaitingPublicKey: boolean;
  } | null = null;

  // Forwarded bytes of the current chunk not yet handed to the peer.
  private runSource: Buffer | null = null;
  private runStart = 0;
  private runEnd = 0;

  /** Whether the connection to the server is encrypted. */
  isTls = false;

  /** The TCP socket, or the TLS socket over it after the SSL request. */
  private socket: Socket;
  /** Reused for every read while nothing still refers to it (see onRead). */
  private readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

  constructor(
    readonly key: PoolKey,
    server: { host: string; port: number },
    private readonly credentials: BackendLogin,
    /** TLS to the server (targetTls); null for plaintext. */
    private readonly tls: ServerTlsRequest | null = null,
  ) {
    this.schema = key.database === '' ? null : key.database;
    // onread with a reused buffer skips the stream machinery and one allocation per read.
    this.socket = connect({
      host: server.host,
      port: server.port,
      noDelay: true,
      onread: { buffer: () => this.readBuffer, callback: (bytes: number, buffer: Uint8Array) => this.onRead(bytes, buffer) },
    });
    this.watchSocket(this.socket);
  }

  private onRead(bytes: number, buffer: Uint8Array): boolean {
    const chunk = buffer as Buffer;
    // A login keeps what it read (the scramble) across reads: its reads go to buffers of their own.
    const loggingIn = this.login !== null;
    this.forwardedBytesHeld = false;
    this.onData(bytes === chunk.length ? chunk : chunk.subarray(0, bytes));
    // Forwarded bytes are views of the read buffer. When the client's socket could not send
    // them at once it still holds those views, so the next read must go to a fresh buffer.
    if (loggingIn || this.forwardedBytesHeld) this.readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    return true;
  }

  /** Whether a client socket kept views of the current read's bytes (see onRead). */
  private forwardedBytesHeld = false;

  private watchSocket(socket: Socket): void {
    this.writer = new SocketWriter(socket, () => this.peer?.onServerDrain());
    socket.on('drain', () => this.peer?.onServerDrain());
    socket.on('error', (error) => this.lost(`server socket error: ${error.message}`));
    socket.on('close', () => this.lost('server closed the connection'));
  }

  private lost(reason: string): void {
    if (this.isClosed) return;
    this.onLost?.(this);
    this.close(reason);
  }

  /** Authenticates; resolves when the server's OK arrived. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.login = { resolve, reject, scramble: Buffer.alloc(0), plugin: '', awaitingPublicKey: false };
    });
  }

  /** Commands written whose responses have not all arrived. */
  get inFlight(): number {
    return this.exchanges.length;
  }

  /** The head exchange's tracker, for status flags once its response is complete. */
  get lastTracker(): MysqlResponseTracker {
    return this.tracker;
  }

  /** Writes to `socket` (replaced with it); skips the stream layer on plain TCP. */
  private writer!: SocketWriter;

  write(data: Buffer): boolean {
    return this.writer.write(data);
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  /** A command was (or is about to be) written: its response will be handled per `exchange`. */
  expect(exchange: Exchange): void {
    this.exchanges.push(exchange);
    if (this.exchanges.length === 1) this.startTracking(exchange);
  }

  /** Writes one of the proxy's own commands (sequence id 0) and swallows its response. */
  sendOwnCommand(payload: Buffer, exchange: Omit<Exchange, 'forward' | 'command'>): void {
    this.expect({ ...exchange, command: payload[0]!, forward: false, payload });
    this.socket.write(encodePacket(payload, 0));
  }

  runOwnQuery(sql: string, done: (tracker: MysqlResponseTracker, rows: (string | null)[][]) => void): void {
    const payload = Buffer.concat([Buffer.from([Command.COM_QUERY]), Buffer.from(sql, 'utf8')]);
    this.sendOwnCommand(payload, { rows: [], done: (tracker, exchange) => done(tracker, exchange.rows ?? []) });
  }

  /** Promise form for the proxy's setup work (not on the hot path). */
  ownQuery(sql: string): Promise<(string | null)[][]> {
    return new Promise((resolve, reject) => {
      this.runOwnQuery(sql, (tracker, rows) => {
        if (tracker.error) {
          reject(new MysqlServerError('SERVER_CONNECT_FAILED', tracker.error.code, tracker.error.sqlState, tracker.error.message));
        } else if (this.isClosed) {
          reject(new ProxyError('SERVER_CONNECT_FAILED', 'the server connection closed'));
        } else {
          resolve(rows);
        }
      });
    });
  }

  /** Session tracking, the init query and the tracked variables' values: after login and after every reset. */
  async initialiseSession(): Promise<void> {
    await this.ownQuery(TRACKING_SETUP_SQL);
    if (this.initQuery !== '') await this.ownQuery(this.initQuery);
    this.readBaseline(await this.ownQuery(BASELINE_SQL));
    // What COM_RESET_CONNECTION does to the current database differs between servers: ask.
    const schema = (await this.ownQuery('SELECT DATABASE()'))[0]?.[0] ?? null;
    this.schema = schema === '' ? null : schema;
  }

  private readBaseline(rows: (string | null)[][]): void {
    this.variables.clear();
    for (const row of rows) {
      const name = (row[0] ?? '').toLowerCase();
      if (isTrackedVariable(name)) this.variables.set(name, normaliseValue(name, row[1] ?? ''));
    }
    this.stateUnknown = false;
  }

  /** Applies session-state changes a response reported; returns the schema when it changed. */
  applyStateChanges(tracker: MysqlResponseTracker): void {
    for (const change of tracker.sessionStateChanges) {
      if (change.type === SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES) {
        const name = change.name.toLowerCase();
        if (!isTrackedVariable(name)) continue;
        const value = normaliseValue(name, change.value);
        this.variables.set(name, value);
        // Setting the collation sets the connection character set too, and the tracker reports only the variable set.
        if (name === 'collation_connection') this.variables.set('character_set_connection', value.split('_')[0]!);
      } else if (change.type === SessionTrackType.SESSION_TRACK_SCHEMA) {
        this.schema = change.value === '' ? null : change.value;
      }
    }
  }

  /** Remembers a server statement; closes the oldest past the per-connection limit. */
  rememberPrepared(key: string, serverId: number, parameterCount: number): void {
    const replaced = this.prepared.get(key);
    if (replaced !== undefined && replaced.serverId !== serverId) this.closeServerStatement(replaced.serverId);
    this.prepared.delete(key); // re-insert: the map's order is least recently prepared first
    this.prepared.set(key, { serverId, parameterCount, boundTypes: null });
    if (this.prepared.size <= MAX_PREPARED_PER_CONNECTION) return;
    const oldest = this.prepared.keys().next().value;
    if (oldest === undefined) return;
    const entry = this.prepared.get(oldest)!;
    this.prepared.delete(oldest);
    this.closeServerStatement(entry.serverId);
  }

  private closeServerStatement(serverId: number): void {
    const close = Buffer.alloc(5);
    close[0] = Command.COM_STMT_CLOSE;
    close.writeUInt32LE(serverId, 1);
    this.socket.write(encodePacket(close, 0)); // COM_STMT_CLOSE has no response
  }

  reset(done: (reusable: boolean) => void): void {
    if (this.isClosed || this.exchanges.length > 0) {
      // Responses still in flight: the protocol state is not known well enough to reuse it.
      done(false);
      return;
    }
    this.peer = null;
    let failed = false;
    this.sendOwnCommand(Buffer.from([Command.COM_RESET_CONNECTION]), {
      done: (tracker) => {
        if (tracker.error) failed = true;
      },
    });
    // COM_RESET_CONNECTION leaves the multi-statements option as a client last set it.
    this.sendOwnCommand(Buffer.from([Command.COM_SET_OPTION, 0, 0]), {
      done: (tracker) => {
        if (tracker.error) failed = true;
      },
    });
    this.prepared.clear();
    this.multiStatements = true;
    this.initialiseSession().then(
      () => done(!failed && !this.isClosed),
      () => done(false),
    );
  }

  close(reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.login) {
      this.login.reject(new ProxyError('SERVER_CONNECT_FAILED', reason));
      this.login = null;
    }
    if (!this.socket.destroyed) {
      if (this.socket.writable && this.exchanges.length === 0) this.socket.end(encodePacket(Buffer.from([Command.COM_QUIT]), 0));
      this.socket.destroy();
    }
    const pending = this.exchanges.splice(0);
    const lostInFlight = pending.filter((exchange) => exchange.forward);
    // The client learns first, so that callbacks of the proxy's own commands below find it detached.
    const peer = this.peer;
    this.peer = null;
    const nextSequenceId = this.forwardedSequenceId >= 0 ? (this.forwardedSequenceId + 1) & 0xff : undefined;
    peer?.onBackendLost(reason, lostInFlight, nextSequenceId);
    for (const exchange of pending) {
      if (!exchange.forward && exchange.done) {
        this.tracker = new MysqlResponseTracker(BACKEND_CAPABILITIES);
        this.tracker.error = { code: 2013, sqlState: 'HY000', message: reason };
        exchange.done(this.tracker, exchange);
      }
    }
    const onClosedForMetrics = this.onClosedForMetrics;
    this.onClosedForMetrics = null;
    onClosedForMetrics?.();
    const onClosed = this.onClosed;
    this.onClosed = null;
    onClosed?.(this, reason);
  }

  // ---------------------------------------------------------------- reading

  private onData(chunk: Buffer): void {
    try {
      this.framer.push(chunk, this.onPacket);
      this.flushRun();
    } catch (error) {
      this.runSource = null;
      this.lost(`protocol error from the server: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    this.peer?.afterServerChunk();
  }

  /** Sequence id of the last packet of the current response forwarded to the client; -1 between responses. */
  private forwardedSequenceId = -1;

  private readonly onPacket = (source: Buffer, payloadStart: number, payloadLength: number, sequenceId: number): void => {
    if (this.login) {
      this.onLoginPacket(source.subarray(payloadStart, payloadStart + payloadLength), sequenceId);
      return;
    }
    const exchange = this.exchanges[0];
    if (exchange === undefined) {
      // E.g. the server's ERR before it closes a killed connection.
      throw new Error('a packet arrived with no command outstanding');
    }
    const role = this.tracker.feedAt(source, payloadStart, payloadLength);
    if (exchange.forward) {
      this.forwardedSequenceId = sequenceId;
      if (exchange.observe) exchange.observe(role, source.subarray(payloadStart, payloadStart + payloadLength));
      const replacement = exchange.rewrite && role !== PacketRole.Row ? exchange.rewrite(role, source.subarray(payloadStart, payloadStart + payloadLength)) : null;
      if (replacement !== null) {
        this.flushRun();
        this.peer?.fromServer(encodePacket(replacement, sequenceId));
      } else {
        const wireStart = payloadStart - PACKET_HEADER_LENGTH;
        if (this.runSource === source && this.runEnd === wireStart) {
          this.runEnd = payloadStart + payloadLength;
        } else {
          this.flushRun();
          this.runSource = source;
          this.runStart = wireStart;
          this.runEnd = payloadStart + payloadLength;
        }
      }
    } else {
      if (exchange.observe) exchange.observe(role, source.subarray(payloadStart, payloadStart + payloadLength));
      if (role === PacketRole.Row && exchange.rows) exchange.rows.push(decodeTextRow(source, payloadStart, payloadStart + payloadLength));
    }
    if (this.tracker.isComplete) {
      this.flushRun();
      this.forwardedSequenceId = -1;
      this.exchanges.shift();
      if (!exchange.forward) this.applyStateChanges(this.tracker);
      exchange.done?.(this.tracker, exchange);
      const next = this.exchanges[0];
      if (next !== undefined) this.startTracking(next);
    }
  };

  private startTracking(exchange: Exchange): void {
    this.tracker.start(exchange.command, exchange.payload);
    exchange.payload = undefined;
  }

  private flushRun(): void {
    const source = this.runSource;
    if (source === null) return;
    this.runSource = null;
    const peer = this.peer;
    if (peer === null) return;
    peer.fromServer(this.runStart === 0 && this.runEnd === source.length ? source : source.subarray(this.runStart, this.runEnd));
    if (peer.holdsForwardedBytes()) this.forwardedBytesHeld = true;
  }

  // ---------------------------------------------------------------- login

  private onLoginPacket(payload: Buffer, sequenceId: number): void {
    const login = this.login!;
    try {
      if (login.plugin === '') {
        const handshake = parseHandshakeV10(payload);
        this.serverInfo = { serverVersion: handshake.serverVersion, capabilityFlags: handshake.capabilityFlags, characterSet: handshake.characterSet };
        this.threadId = handshake.connectionId;
        if (!hasCapability(handshake.capabilityFlags, CapabilityFlag.CLIENT_PROTOCOL_41)) {
          throw new ProxyError('SERVER_CONNECT_FAILED', 'the database does not speak protocol 4.1');
        }
        let capabilities = BACKEND_CAPABILITIES & (handshake.capabilityFlags | CapabilityFlag.CLIENT_LONG_PASSWORD);
        if (this.key.database !== '') capabilities |= CapabilityFlag.CLIENT_CONNECT_WITH_DB;
        this.capabilities = capabilities;
        this.tracker = new MysqlResponseTracker(capabilities);
        login.scramble = handshake.scramble;
        login.plugin = handshake.authPluginName || AuthPlugin.MYSQL_NATIVE_PASSWORD;
        const serverOffersTls = hasCapability(handshake.capabilityFlags, CapabilityFlag.CLIENT_SSL);
        if (this.tls !== null && this.tls.required && !serverOffersTls) {
          throw new MysqlServerError('SERVER_CONNECT_FAILED', SSL_CONNECTION_ERROR, 'HY000', 'TLS to the database is required but the server does not offer it');
        }
        const useTls = this.tls !== null && serverOffersTls;
        if (useTls) capabilities |= CapabilityFlag.CLIENT_SSL;
        const response = encodeHandshakeResponse41({
          capabilityFlags: capabilities,
          characterSet: LOGIN_COLLATION,
          username: this.credentials.user,
          authResponse: this.authToken(login.plugin, login.scramble),
          database: this.key.database === '' ? undefined : this.key.database,
          authPluginName: login.plugin,
        });
        if (useTls) {
          this.startTls(capabilities, encodePacket(response, sequenceId + 2), sequenceId + 1);
          return;
        }
        this.socket.write(encodePacket(response, sequenceId + 1));
        return;
      }
      const header = payload[0];
      if (header === ResponseHeader.OK) {
        this.login = null;
        login.resolve();
        return;
      }
      if (header === ResponseHeader.ERR) {
        const error = parseErrPacket(payload);
        throw new MysqlServerError('SERVER_CONNECT_FAILED', error.code, error.sqlState, error.message);
      }
      if (header === ResponseHeader.EOF) {
        const request = parseAuthSwitchRequest(payload);
        login.plugin = request.pluginName;
        login.scramble = stripNul(request.pluginData);
        this.socket.write(encodePacket(this.authToken(login.plugin, login.scramble), sequenceId + 1));
        return;
      }
      if (header === ResponseHeader.AUTH_MORE_DATA) {
        if (login.awaitingPublicKey) {
          login.awaitingPublicKey = false;
          const encrypted = encryptPasswordWithPublicKey(this.credentials.password, login.scramble, payload.subarray(1));
          this.socket.write(encodePacket(encrypted, sequenceId + 1));
          return;
        }
        const status = payload[1];
        if (status === CachingSha2Byte.FAST_AUTH_SUCCESS) return; // the OK follows
        if (status === CachingSha2Byte.PERFORM_FULL_AUTHENTICATION && this.isTls) {
          // Over TLS the password goes as is, NUL-terminated, as MySQL clients do.
          this.socket.write(encodePacket(Buffer.from(`${this.credentials.password}\0`, 'utf8'), sequenceId + 1));
          return;
        }
        if (status === CachingSha2Byte.PERFORM_FULL_AUTHENTICATION) {
          // Plain TCP to the database: ask for its RSA public key rather than send the password in clear.
          login.awaitingPublicKey = true;
          this.socket.write(encodePacket(Buffer.from([CachingSha2Byte.REQUEST_PUBLIC_KEY]), sequenceId + 1));
          return;
        }
      }
      throw new ProxyError('SERVER_CONNECT_FAILED', `unexpected packet 0x${(header ?? 0).toString(16)} during login to the database`);
    } catch (error) {
      this.login = null;
      const proxyError = error instanceof ProxyError ? error : new ProxyError('SERVER_CONNECT_FAILED', error instanceof Error ? error.message : String(error));
      login.reject(proxyError);
      this.close(`login to the database failed: ${proxyError.message}`);
    }
  }

  /** SSL request packet, TLS handshake, then the HandshakeResponse over TLS. */
  private startTls(capabilities: number, handshakeResponse: Buffer, sslRequestSequence: number): void {
    const tcp = this.socket;
    tcp.write(encodePacket(encodeSslRequest({ capabilityFlags: capabilities, characterSet: LOGIN_COLLATION }), sslRequestSequence));
    upgradeToTls(tcp, this.tls!).then(
      (secure) => {
        if (this.isClosed) {
          secure.destroy();
          return;
        }
        this.socket = secure;
        this.isTls = true;
        secure.on('data', (chunk: Buffer) => this.onData(chunk));
        this.watchSocket(secure);
        secure.write(handshakeResponse);
      },
      (error: Error) => {
        const login = this.login;
        this.login = null;
        login?.reject(new MysqlServerError('SERVER_CONNECT_FAILED', SSL_CONNECTION_ERROR, 'HY000', error.message));
        this.close(`TLS to the database failed: ${error.message}`);
      },
    );
  }

  private authToken(plugin: string, scramble: Buffer): Buffer {
    switch (plugin) {
      case AuthPlugin.MYSQL_NATIVE_PASSWORD:
        return nativePasswordToken(this.credentials.password, scramble);
      case AuthPlugin.CACHING_SHA2_PASSWORD:
        return cachingSha2PasswordToken(this.credentials.password, scramble);
      default:
        throw new ProxyError('SERVER_CONNECT_FAILED', `the database asked for the unsupported authentication plugin ${plugin}`);
    }
  }
}

function stripNul(data: Buffer): Buffer {
  return data.length > 0 && data[data.length - 1] === 0 ? data.subarray(0, data.length - 1) : data;
}

/** autocommit reads back as ON/OFF from trackers and SHOW VARIABLES, but as 1/0 from SELECT; charset names are case-insensitive. */
export function normaliseValue(name: string, value: string): string {
  if (name === 'autocommit') {
    const upper = value.toUpperCase();
    return upper === '1' || upper === 'ON' ? 'ON' : upper === '0' || upper === 'OFF' ? 'OFF' : upper;
  }
  if (name.startsWith('character_set_') || name === 'collation_connection') return value.toLowerCase();
  return value;
}

/** Decodes a text-protocol row (length-encoded strings, 0xFB for NULL). Only for the proxy's own small queries. */
function decodeTextRow(source: Buffer, start: number, end: number): (string | null)[] {
  const reader = new PayloadReader(source, start, end);
  const row: (string | null)[] = [];
  while (!reader.atEnd) {
    if (reader.peek() === LENENC_NULL) {
      reader.skip(1);
      row.push(null);
    } else {
      row.push(reader.lenencString('utf8'));
    }
  }
  return row;
}
