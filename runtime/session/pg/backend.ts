/**
 * One PostgreSQL server connection: its startup and authentication, the proxy's own
 * queries on it (init query, session-parameter sync, reset), and the forwarding of its
 * responses to whichever client it is lent to.
 *
 * Responses are matched to requests with a queue of tokens, one per request whose
 * response the proxy must recognise: every Sync/Query/FunctionCall (answered by
 * ReadyForQuery) and every Parse/Close (answered by ParseComplete/CloseComplete). That is
 * what lets the proxy inject its own Parse, Close and Query messages into a client's
 * stream and swallow exactly their answers.
 */
import { Socket, connect } from 'node:net';
import { ProxyError } from '../../errors';
import { createScramClient, md5PasswordResponse } from '../../protocol/pg/auth';
import { BackendScanHandler, BackendScanner, Disposition } from '../../protocol/pg/framing';
import {
  DecodedErrorFields,
  SSL_REQUEST,
  TERMINATE,
  TransactionStatus,
  decodeDataRow,
  decodeErrorFields,
  decodeParameterStatus,
  passwordMessage,
  query,
  saslInitialResponse,
  saslResponse,
  startupMessage,
} from '../../protocol/pg/messages';
import type { PoolKey, ServerConnection } from '../types';
import { SocketWriter } from '../socket-writer';
import { ServerTlsRequest, serverOffersNoTlsError, upgradeToTls } from '../server-tls';

/** SSLRequest: length 8, code 1234.5679. */

const enum Token {
  SyncForward = 0,
  SyncSwallow = 1,
  ParseForward = 2,
  ParseSwallow = 3,
  CloseForward = 4,
  CloseSwallow = 5,
}

const CHAR_Z = 0x5a;
const CHAR_S = 0x53;
const CHAR_E = 0x45;
const CHAR_R = 0x52;
const CHAR_K = 0x4b;
const CHAR_D = 0x44;
const CHAR_PARSE_COMPLETE = 0x31;
const CHAR_CLOSE_COMPLETE = 0x33;

/** The client side of a lent connection: where responses go. */
export interface BackendPeer {
  /** Forwarded response bytes (a view valid only during the call). */
  fromServer(data: Buffer, start: number, end: number): void;
  /** A ReadyForQuery the client will see was forwarded. */
  onClientReadyForQuery(status: TransactionStatus): void;
  /** The end of one received chunk: the moment to decide about releasing the connection. */
  afterServerChunk(): void;
  /** The connection died while lent; `serverError` is the FATAL error the server gave, if any. */
  onBackendLost(reason: string, serverError: DecodedErrorFields | null): void;
  /** The server socket's write buffer emptied. */
  onServerDrain(): void;
  /** Whether bytes forwarded earlier still wait in the client's socket (and so still refer to the read buffer). */
  holdsForwardedBytes(): boolean;
}

export interface InternalQueryResult {
  rows: (string | null)[][];
}

interface SwallowedQuery {
  rows: (string | null)[][] | null;
  error: DecodedErrorFields | null;
  done: (error: DecodedErrorFields | null, rows: (string | null)[][]) => void;
}

export interface BackendLogin {
  user: string;
  password: string;
  database: string;
}

const READ_BUFFER_BYTES = 64 * 1024;

interface ParseUndo {
  serverName: string;
  onFailed: (() => void) | undefined;
}

let nextBackendId = 1;

export class PgBackend implements ServerConnection, BackendScanHandler {
  readonly id = nextBackendId++;
  onClosed: ((conn: ServerConnection, reason: string) => void) | null = null;
  isClosed = false;

  /** Values the server reported with ParameterStatus. */
  readonly reportedParams = new Map<string, string>();
  /** Startup parameters the proxy applied with SET on behalf of clients (absent = server default). */
  readonly appliedParams = new Map<string, string>();
  /** What each applied setting was before the proxy first changed it here (null: not set at all). */
  readonly baselineParams = new Map<string, string | null>();
  /** Server-side names of prepared statements that exist on this connection. */
  readonly preparedStatements = new Set<string>();
  /** Identity of the client Parse whose unnamed statement currently exists here. */
  unnamedStatementOwner: object | null = null;
  processId = 0;
  secretKey = 0;
  transactionStatus: TransactionStatus = 'I';

  peer: BackendPeer | null = null;

  private readonly scanner: BackendScanner;
  private readonly tokens: Token[] = [];
  /** Per token: the server statement name a Parse creates, and what to undo if it fails. */
  private readonly tokenNames: (ParseUndo | null)[] = [];
  private readonly swallowed: SwallowedQuery[] = [];
  private startup: {
    resolve: () => void;
    reject: (e: ProxyError) => void;
    scram: ReturnType<typeof createScramClient> | null;
  } | null = null;

  /** The TCP socket, or the TLS socket over it once the server accepted an SSLRequest. */
  private socket: Socket;
  /** Writes to `socket` (replaced with it). */
  private writer!: SocketWriter;
  /** Waiting for the one-byte answer to SSLRequest. */
  private sslAnswer: ((byte: number) => void) | null = null;
  /** Reused for every read while nothing still refers to it (see nextReadBuffer). */
  private readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

  constructor(
    readonly key: PoolKey,
    readonly target: { host: string; port: number },
    private readonly login: BackendLogin,
    /** TLS to the server (targetTls); null for plaintext. */
    readonly tls: ServerTlsRequest | null = null,
  ) {
    // DataRow bodies are collected only while the proxy's own queries run (see runSwallowedQuery).
    this.scanner = new BackendScanner('ZSE13RK', this);
    // onread with a reused buffer skips the stream machinery and one allocation per read.
    this.socket = connect({
      host: target.host,
      port: target.port,
      noDelay: true,
      onread: { buffer: () => this.nextReadBuffer(), callback: (bytes: number, buffer: Uint8Array) => this.onRead(bytes, buffer) },
    });
    this.watchSocket(this.socket);
  }

  private watchSocket(socket: Socket): void {
    this.writer = new SocketWriter(socket, () => this.peer?.onServerDrain());
    socket.on('drain', () => this.peer?.onServerDrain());
    socket.on('error', (error) => this.lost(`server socket error: ${error.message}`));
    socket.on('close', () => this.lost('server closed the connection'));
  }

  /** Whether the connection to the server is encrypted. */
  get isTls(): boolean {
    return this.tcpSocket !== null;
  }

  private tcpSocket: Socket | null = null;

  /** The target's name in metrics (set by the engine). */
  targetName = '';
  /** Set by the engine once the connection is open: counts its close. */
  onClosedForMetrics: (() => void) | null = null;
  /** Set by the engine: the server side ended this connection (not the proxy). */
  onLost: ((backend: PgBackend) => void) | null = null;

  private lost(reason: string): void {
    if (this.isClosed) return;
    this.onLost?.(this);
    this.close(reason);
  }

  private nextReadBuffer(): Buffer {
    return this.readBuffer;
  }

  private onRead(bytes: number, buffer: Uint8Array): boolean {
    const chunk = buffer as Buffer;
    if (this.sslAnswer !== null && bytes > 0) {
      const answer = this.sslAnswer;
      this.sslAnswer = null;
      // The server says nothing more until the client's TLS handshake (or StartupMessage).
      answer(chunk[0]!);
      return true;
    }
    this.scanner.push(bytes === chunk.length ? chunk : chunk.subarray(0, bytes));
    // Forwarded bytes are views of the read buffer. When the client's socket could not send
    // them at once it still holds those views, so the next read must go to a fresh buffer.
    const peer = this.peer;
    if (peer !== null) {
      if (peer.holdsForwardedBytes()) this.readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      peer.afterServerChunk();
    }
    return true;
  }

  /** Runs the startup handshake; resolves at the first ReadyForQuery. */
  start(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.startup = { resolve, reject, scram: null };
      if (this.tls === null) {
        this.socket.write(startupMessage({ user: this.login.user, database: this.login.database }));
        return;
      }
      this.negotiateTls(this.tls).then(
        () => this.socket.write(startupMessage({ user: this.login.user, database: this.login.database })),
        (error: ProxyError) => {
          this.startup = null;
          reject(error);
          this.close(error.message);
        },
      );
    });
  }

  /** SSLRequest, then the TLS handshake on 'S'; on 'N' plaintext unless TLS is required. */
  private async negotiateTls(request: ServerTlsRequest): Promise<void> {
    const answer = await new Promise<number>((resolve) => {
      this.sslAnswer = resolve;
      this.socket.write(SSL_REQUEST);
    });
    if (answer !== CHAR_S) {
      if (request.required) throw serverOffersNoTlsError();
      return;
    }
    const tcp = this.socket;
    const secure = await upgradeToTls(tcp, request);
    this.tcpSocket = tcp;
    this.socket = secure;
    this.watchSocket(secure);
    // TLS records arrive as fresh buffers; nothing refers to them after the scanner ran.
    secure.on('data', (chunk: Buffer) => this.onRead(chunk.length, chunk));
  }

  /** Number of requests whose responses have not all arrived. */
  get pendingResponses(): number {
    return this.tokens.length;
  }

  /** Returns false when the socket's buffer is full: the caller stops reading its side until onServerDrain. */
  write(data: Buffer): boolean {
    return this.writer.write(data);
  }

  /** Bytes of buffers passed to write() still referred to (see SocketWriter.retainedBytes). */
  get retainedWriteBytes(): number {
    return this.writer.retainedBytes;
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

  expectSync(): void {
    this.tokens.push(Token.SyncForward);
    this.tokenNames.push(null);
  }

  /**
   * A Parse was sent. When it creates the named statement `serverName`, the statement is
   * recorded as prepared here, and forgotten again (with `onFailed` called) if the Parse fails.
   */
  expectParse(serverName: string | null, swallow: boolean, onFailed?: () => void): void {
    this.tokens.push(swallow ? Token.ParseSwallow : Token.ParseForward);
    if (serverName !== null && serverName !== '') {
      this.preparedStatements.add(serverName);
      this.tokenNames.push({ serverName, onFailed });
    } else {
      this.tokenNames.push(null);
    }
  }

  expectClose(swallow: boolean): void {
    this.tokens.push(swallow ? Token.CloseSwallow : Token.CloseForward);
    this.tokenNames.push(null);
  }

  /** Sends a query whose whole response the client never sees; `done` gets its rows or error. */
  runSwallowedQuery(
    sql: string,
    done: (error: DecodedErrorFields | null, rows: (string | null)[][]) => void,
  ): void {
    this.tokens.push(Token.SyncSwallow);
    this.tokenNames.push(null);
    this.swallowed.push({ rows: null, error: null, done });
    this.scanner.setCollected('D', true);
    this.socket.write(query(sql));
  }

  /** Promise form of runSwallowedQuery for the proxy's own work (not on the hot path). */
  internalQuery(sql: string): Promise<InternalQueryResult> {
    return new Promise((resolve, reject) => {
      this.runSwallowedQuery(sql, (error, rows) => {
        if (error) reject(new ProxyError('SERVER_CONNECT_FAILED', error.message ?? 'query failed', error));
        else resolve({ rows });
      });
    });
  }

  reset(done: (reusable: boolean) => void, initQuery = this.initQuery): void {
    if (this.isClosed || this.tokens.length > 0) {
      // Responses still in flight: the protocol state is not known well enough to reuse it.
      done(false);
      return;
    }
    this.peer = null;
    let failed = false;
    const step = (error: DecodedErrorFields | null) => {
      if (error) failed = true;
    };
    // DISCARD ALL refuses to run in a transaction block, so each statement goes in its own Query.
    this.runSwallowedQuery('ROLLBACK', step);
    this.runSwallowedQuery('DISCARD ALL', (error) => {
      step(error);
      this.preparedStatements.clear();
      this.appliedParams.clear();
      this.unnamedStatementOwner = null;
      if (initQuery === '') {
        done(!failed && !this.isClosed);
        return;
      }
      this.runSwallowedQuery(initQuery, (initError) => done(!failed && initError === null && !this.isClosed));
    });
  }

  /** Set by the connector: re-run after DISCARD ALL in reset. */
  initQuery = '';

  close(reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.startup) {
      this.startup.reject(new ProxyError('SERVER_CONNECT_FAILED', reason));
      this.startup = null;
    }
    if (!this.socket.destroyed) {
      if (this.socket.writable && this.tokens.length === 0) this.socket.end(TERMINATE);
      this.socket.destroy();
    }
    for (const pending of this.swallowed.splice(0)) pending.done({ message: reason, sqlState: '08006' }, []);
    const peer = this.peer;
    this.peer = null;
    // A server lost mid-message (kill -9 while a result streams) leaves the client with half a
    // DataRow; completing it with zero bytes keeps the client's framing intact, so it can read
    // the error that follows (and discards the result with it) instead of hanging.
    const owed = this.scanner.forwardedBodyLeft;
    if (peer !== null && owed > 0) peer.fromServer(Buffer.alloc(owed), 0, owed);
    peer?.onBackendLost(reason, this.fatalError);
    this.onClosedForMetrics?.();
    const onClosed = this.onClosed;
    this.onClosed = null;
    onClosed?.(this, reason);
  }

  // ---- BackendScanHandler ----

  onHeader(type: number): Disposition {
    const front = this.tokens.length > 0 ? this.tokens[0] : undefined;
    if (front === Token.SyncSwallow) return Disposition.Swallow;
    if (type === CHAR_PARSE_COMPLETE && front === Token.ParseSwallow) return Disposition.Swallow;
    if (type === CHAR_CLOSE_COMPLETE && front === Token.CloseSwallow) return Disposition.Swallow;
    // ErrorResponses are held until their body is read: a FATAL one means the server is
    // closing, and the client must hear about that once, from the proxy (see onErrorResponse).
    if (this.peer === null || type === CHAR_E) return Disposition.Swallow;
    return Disposition.Forward;
  }

  emit(data: Buffer, start: number, end: number): void {
    this.peer?.fromServer(data, start, end);
  }

  onBody(type: number, body: Buffer): void {
    switch (type) {
      case CHAR_Z:
        this.onReadyForQuery(String.fromCharCode(body[0] ?? 0x49) as TransactionStatus);
        return;
      case CHAR_S: {
        const param = decodeParameterStatus(body);
        if (param) this.reportedParams.set(param.name, param.value);
        return;
      }
      case CHAR_E:
        this.onErrorResponse(body);
        return;
      case CHAR_PARSE_COMPLETE:
      case CHAR_CLOSE_COMPLETE:
        this.tokens.shift();
        this.tokenNames.shift();
        return;
      case CHAR_D: {
        const front = this.swallowed[0];
        if (this.tokens[0] === Token.SyncSwallow && front) (front.rows ??= []).push(decodeDataRow(body));
        return;
      }
      case CHAR_R:
        this.onAuthentication(body);
        return;
      case CHAR_K:
        this.processId = body.readInt32BE(0);
        this.secretKey = body.readInt32BE(4);
        return;
      default:
        return;
    }
  }

  private onReadyForQuery(status: TransactionStatus): void {
    this.transactionStatus = status;
    if (this.startup) {
      const startup = this.startup;
      this.startup = null;
      startup.resolve();
      return;
    }
    // Requests skipped after an error never get their Parse/CloseComplete; drop them up to the Sync.
    while (this.tokens.length > 0 && this.tokens[0]! >= Token.ParseForward) this.dropFrontToken();
    const token = this.tokens.shift();
    this.tokenNames.shift();
    if (token === Token.SyncSwallow) {
      const finished = this.swallowed.shift();
      if (this.swallowed.length === 0) this.scanner.setCollected('D', false);
      finished?.done(finished.error, finished.rows ?? []);
    } else if (token === Token.SyncForward) {
      this.peer?.onClientReadyForQuery(status);
    }
  }

  private onErrorResponse(body: Buffer): void {
    if (this.startup) {
      const fields = decodeErrorFields(body);
      const startup = this.startup;
      this.startup = null;
      startup.reject(
        new ProxyError('SERVER_CONNECT_FAILED', fields.message ?? 'the database refused the connection', fields),
      );
      return;
    }
    if (this.tokens[0] === Token.SyncSwallow) {
      const front = this.swallowed[0];
      if (front && front.error === null) front.error = decodeErrorFields(body);
      return;
    }
    const fields = decodeErrorFields(body);
    if (fields.severity === 'FATAL' || fields.severity === 'PANIC') {
      // The server ends this connection (e.g. pg_terminate_backend, shutdown). The client's
      // session goes on through the proxy; it gets one error per unanswered request when the
      // connection closes, carrying the server's reason.
      this.fatalError = fields;
      return;
    }
    // After an error the server skips to the next Sync: pending Parses and Closes will not be answered.
    while (this.tokens.length > 0 && this.tokens[0]! >= Token.ParseForward) this.dropFrontToken();
    if (this.peer !== null) {
      const message = Buffer.allocUnsafe(5 + body.length);
      message[0] = CHAR_E;
      message.writeInt32BE(4 + body.length, 1);
      body.copy(message, 5);
      this.peer.fromServer(message, 0, message.length);
    }
  }

  /** The FATAL error the server sent before closing, if any. */
  fatalError: DecodedErrorFields | null = null;

  private dropFrontToken(): void {
    this.tokens.shift();
    const undo = this.tokenNames.shift();
    if (undo) {
      this.preparedStatements.delete(undo.serverName);
      undo.onFailed?.();
    }
  }

  private onAuthentication(body: Buffer): void {
    const startup = this.startup;
    if (!startup) return;
    const code = body.readInt32BE(0);
    try {
      switch (code) {
        case 0: // AuthenticationOk
          return;
        case 3: // cleartext
          this.socket.write(passwordMessage(this.login.password));
          return;
        case 5: // md5
          this.socket.write(passwordMessage(md5PasswordResponse(this.login.user, this.login.password, body.subarray(4, 8))));
          return;
        case 10: {
          const mechanisms = body.toString('utf8', 4).split('\0');
          if (!mechanisms.includes('SCRAM-SHA-256')) {
            throw new ProxyError('SERVER_CONNECT_FAILED', `unsupported SASL mechanisms: ${mechanisms.join(', ')}`);
          }
          startup.scram = createScramClient(this.login.password);
          this.socket.write(saslInitialResponse('SCRAM-SHA-256', startup.scram.clientFirst()));
          return;
        }
        case 11:
          if (!startup.scram) throw new ProxyError('SERVER_CONNECT_FAILED', 'unexpected SASL continue');
          this.socket.write(saslResponse(startup.scram.handleServerFirst(body.subarray(4))));
          return;
        case 12:
          if (!startup.scram) throw new ProxyError('SERVER_CONNECT_FAILED', 'unexpected SASL final');
          startup.scram.verifyServerFinal(body.subarray(4));
          return;
        default:
          throw new ProxyError('SERVER_CONNECT_FAILED', `unsupported authentication request ${code}`);
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.close(`authentication to the database failed: ${message}`);
    }
  }
}
