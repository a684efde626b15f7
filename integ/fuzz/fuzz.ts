/**
 * The fuzz driver: starts a real server (PostgreSQL or MariaDB) and Tidepool in front of it,
 * keeps `concurrency` fuzz connections busy with seeded inputs for every phase, while
 * bystander clients (another process) query through the same proxy. Checks that the proxy
 * never dies or logs a bug, that every connection answers or closes within a bound, that
 * bystanders see no errors, and how the proxy's RSS moves.
 *
 * Connection n of a run uses `connectionRandom(seed, n)` only, so a failure names
 * (seed, connection) and replays alone: `FUZZ_SEED=<seed> FUZZ_ONLY=<n> npm run fuzz`.
 */
import { ChildProcess, fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { createScramClient } from '../../runtime/protocol/pg/auth';
import { nativePasswordToken } from '../../runtime/protocol/mysql/auth';
import { parseHandshakeV10 } from '../../runtime/protocol/mysql/packets';
import { startMariadb, type MariadbServer } from '../harness/mariadb';
import { startPostgres, type PgServer } from '../harness/postgres';
import { startTidepool, type TidepoolProcess } from '../harness/tidepool';
import type { BystanderCommand, BystanderResult } from './bystanders';
import { MYSQL_CLIENT_CAPABILITIES, MysqlClientStreamModel, mysqlAuthGarbage, mysqlHandshakeInputs, mysqlPostLoginInput, packet as mysqlPacket } from './mysql';
import { PgFrontendStreamModel, pgAuthGarbage, pgPostLoginInput, pgPreStartupInputs, startupMessage, typed } from './pg';
import { Random, connectionRandom } from './random';

export type Engine = 'pg' | 'mysql';
export type ConnectionKind = 'pre-startup' | 'auth' | 'post-login';

export interface FuzzOptions {
  engine: Engine;
  /** Inputs to send in total (an input is one generated packet/message or garbage blob). */
  inputs: number;
  seed: number;
  /** Fuzz connections open at once. @default 16 */
  concurrency?: number;
  /** Well-behaved clients querying through the proxy the whole time. @default 4 */
  bystanders?: number;
  /** Well-behaved clients logged in as the fuzzed user (see FuzzReport.poolWatcher). @default 1 */
  poolWatchers?: number;
  /** A connection must answer or close within this many ms of its last input (or of the proxy's idle/login timeout, for inputs left unfinished on purpose). @default 5000 */
  answerBoundMs?: number;
  /** Stop starting connections after this long, even below `inputs`. @default 30 min */
  maxDurationMs?: number;
  /** Run only this connection number (to replay a failure). */
  onlyConnection?: number;
  /** Progress lines (every few seconds). */
  onProgress?: (line: string) => void;
}

export interface FuzzReport {
  engine: Engine;
  seed: number;
  inputs: number;
  connections: number;
  byKind: Record<ConnectionKind, { connections: number; inputs: number }>;
  /** The proxy process died, or logged an uncaught exception / unhandled rejection. */
  crashes: number;
  crashDetails: string[];
  /** Connections that neither answered nor closed within the bound. */
  hangs: number;
  hangDetails: string[];
  /** Post-login probes the proxy left unanswered until its idle timeout closed the connection (closed within the bound, but worth a look). */
  silentUntilIdle: number;
  silentUntilIdleSamples: string[];
  /** How each connection ended. */
  outcomes: Record<string, number>;
  /** Error codes the proxy answered with (SQLSTATE for PostgreSQL, error number for MySQL), with counts. */
  errorCodes: Record<string, number>;
  /** Events of the proxy's error-level log lines, with counts. */
  errorLogs: Record<string, number>;
  /** Every wait: from a connection's last input to its answer or close (includes deliberate login/idle timeouts). */
  answerMs: { p50: number; p99: number; max: number; samples: number };
  /** Post-login waits for the probe after each chunk of inputs. */
  probeMs: { p50: number; p99: number; max: number; samples: number };
  bystander: { clients: number; queries: number; errors: number; errorSamples: string[]; before: LatencySummary; during: LatencySummary };
  /**
   * Clients logged in as the fuzzed user, borrowing from the pool the fuzz sessions return
   * connections to: errors or waits over the bound mean that pool stopped draining.
   */
  poolWatcher: { clients: number; queries: number; errors: number; errorSamples: string[]; during: LatencySummary; stalls: number };
  rssKb: { baseline: number; peak: number; after: number };
  /**
   * The proxy's memory after a full GC (RSS, V8 heap used, Buffers) with no client connected,
   * before the run and after every client left: growth in heap or Buffers is a leak, growth in
   * RSS only is the allocator keeping pages.
   */
  heapMb: { baseline: MemoryMb | null; after: MemoryMb | null };
  /** Client connections the proxy still had open after the run (from /status). */
  clientsLeftOpen: number | null;
  /** The proxy's pools once every client is gone (/status): nothing may stay borrowed or pinned. */
  poolsAfter: { User: string; Database: string; Idle: number; Borrowed: number; Pinned: number; Other: number; Waiting: number; Size: number }[];
  /** Which connections those are (seed/connection/kind for fuzz ones). */
  clientsLeftOpenDetails: string[];
  durationMs: number;
  /**
   * PostgreSQL: times the database itself crashed during the run (a backend killed by a signal;
   * the postmaster then ends every backend). Bystander errors at such a moment are the
   * database's, not the proxy's. null where the harness cannot tell (MariaDB).
   */
  databaseCrashes: number | null;
  stoppedEarly: boolean;
}

export interface MemoryMb {
  rss: number;
  heapUsed: number;
  arrayBuffers: number;
  /** PostgreSQL: what the bounded statement-name cache holds, part of the live heap by design. */
  statementCache?: { entries: number; textMb: number };
}

export interface LatencySummary {
  queries: number;
  p50: number;
  p99: number;
  max: number;
}

const FUZZ_USER = 'fuzz';
const FUZZ_PASSWORD = 'fuzz-password';
/** A second user whose proxy-side auth differs (MD5 / caching_sha2), to fuzz that exchange too. */
const FUZZ_USER_2 = 'fuzz2';
const FUZZ_PASSWORD_2 = 'fuzz2-password';
const BYSTANDER_USER = 'bystander';
const BYSTANDER_PASSWORD = 'bystander-password';
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** The proxy's timeouts, short so that inputs left unfinished on purpose are closed quickly. */
const LOGIN_TIMEOUT_S = 2;
const IDLE_TIMEOUT_S = 2;
/** Unfinished messages shorter than this are completed with padding so the connection goes on. */
const MAX_PADDING = 70_000;
/** The proxy's ErrorResponse message for a lost server connection (the SQLSTATE may be the server's own). */
const SERVER_CONNECTION_LOST = Buffer.from('Mserver connection lost');
/** The same for MySQL: ERR 1317 (70100), or 1180 (08007) when a COMMIT was among the commands in flight. */
const MYSQL_SERVER_CONNECTION_LOST = /#(?:70100|08007)server connection lost/;

/*
 * ---------------------------------------------------------------------------------------
 * A raw client socket with a received-bytes window and waits with deadlines
 * ---------------------------------------------------------------------------------------
 */

class FuzzConnection {
  readonly socket: Socket;
  /** Bytes received since the last `clear()`; only a tail is kept once it grows large. */
  received: Buffer = Buffer.alloc(0);
  closed = false;
  closedAt = 0;
  lastDataAt = 0;
  private wake: (() => void) | null = null;
  private readonly onBytes: ((chunk: Buffer) => void) | null;

  private constructor(socket: Socket, onBytes: ((chunk: Buffer) => void) | null) {
    this.socket = socket;
    this.onBytes = onBytes;
    socket.on('data', (chunk: Buffer) => {
      this.onBytes?.(chunk);
      this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
      if (this.received.length > 1 << 20) this.received = Buffer.from(this.received.subarray(this.received.length - 65536));
      this.lastDataAt = performance.now();
      this.wake?.();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.closedAt = performance.now();
      this.wake?.();
    });
  }

  static open(host: string, port: number, onBytes: ((chunk: Buffer) => void) | null): Promise<FuzzConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      socket.setNoDelay(true);
      const connection = new FuzzConnection(socket, onBytes);
      socket.once('connect', () => resolve(connection));
      socket.once('error', reject);
    });
  }

  clear(): void {
    this.received = Buffer.alloc(0);
  }

  /** Writes unless closed; false when the proxy has already closed the connection. */
  write(bytes: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false;
    this.socket.write(bytes);
    return true;
  }

  /** Waits until `done()` holds, the socket closes, or `timeoutMs` passes. */
  async until(done: () => boolean, timeoutMs: number): Promise<'done' | 'closed' | 'timeout'> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (done()) return 'done';
      if (this.closed) return 'closed';
      const left = deadline - performance.now();
      if (left <= 0) return 'timeout';
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
  }

  /** Waits for an answer after the last write: data followed by `quietMs` of silence, or close. */
  async answerOrClose(timeoutMs: number, quietMs: number, isAnswer: (received: Buffer) => boolean = (received) => received.length > 0): Promise<'answered' | 'closed' | 'timeout'> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.closed) return 'closed';
      const now = performance.now();
      const answered = isAnswer(this.received);
      if (answered && now - this.lastDataAt >= quietMs) return 'answered';
      if (now >= deadline) return 'timeout';
      const wait = answered ? Math.min(quietMs, deadline - now) : deadline - now;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Writes bytes in one go, or now and then in a few pieces, so the proxy's framing sees split messages. */
async function writeSplit(connection: FuzzConnection, random: Random, bytes: Buffer): Promise<boolean> {
  if (bytes.length < 2 || !random.chance(0.1)) return connection.write(bytes);
  let offset = 0;
  for (let pieces = random.range(2, 4); pieces > 1 && offset < bytes.length - 1; pieces--) {
    const cut = random.range(offset + 1, bytes.length - 1);
    if (!connection.write(bytes.subarray(offset, cut))) return false;
    offset = cut;
    await new Promise((resolve) => setTimeout(resolve, random.int(3)));
  }
  return connection.write(bytes.subarray(offset));
}

/*
 * ---------------------------------------------------------------------------------------
 * Run bookkeeping
 * ---------------------------------------------------------------------------------------
 */

class Tally {
  inputs = 0;
  connections = 0;
  byKind: Record<ConnectionKind, { connections: number; inputs: number }> = {
    'pre-startup': { connections: 0, inputs: 0 },
    auth: { connections: 0, inputs: 0 },
    'post-login': { connections: 0, inputs: 0 },
  };
  outcomes: Record<string, number> = {};
  errorCodes: Record<string, number> = {};
  answerMs: number[] = [];
  /** Post-login only: from a chunk's last byte to the probe's answer (no deliberate timeouts in these). */
  probeMs: number[] = [];
  hangs: string[] = [];
  /** Probes that got no answer until the idle timeout closed the connection. */
  silentUntilIdle: string[] = [];

  countInputs(kind: ConnectionKind, count: number): void {
    this.inputs += count;
    this.byKind[kind].inputs += count;
  }

  outcome(name: string): void {
    this.outcomes[name] = (this.outcomes[name] ?? 0) + 1;
  }

  errorCode(code: string): void {
    this.errorCodes[code] = (this.errorCodes[code] ?? 0) + 1;
  }
}

interface RunContext {
  engine: Engine;
  host: string;
  port: number;
  seed: number;
  boundMs: number;
  tally: Tally;
  /** Remaining inputs the run may still send. */
  budget: () => number;
}

/** The framing model of a client stream, as both engines' fuzz drivers use it. */
interface StreamModel {
  readonly ended: string | null;
  readonly owed: number;
  feed(bytes: Buffer): void;
}

/**
 * Up to `count` post-login inputs for one chunk, fed through the framing model; a message left
 * short is then finished with zero bytes so the session can go on, unless what is owed is huge.
 */
function gatherChunk(model: StreamModel, count: number, nextInput: () => Buffer): { parts: Buffer[]; last: Buffer | undefined } {
  const parts: Buffer[] = [];
  let last: Buffer | undefined;
  for (let n = count; n > 0 && model.ended === null; n--) {
    last = nextInput();
    parts.push(last);
    model.feed(last);
  }
  for (let rounds = 0; model.ended === null && model.owed > 0 && model.owed <= MAX_PADDING && rounds < 4; rounds++) {
    const padding = Buffer.alloc(model.owed);
    parts.push(padding);
    model.feed(padding);
  }
  return { parts, last };
}

function hang(context: RunContext, index: number, kind: ConnectionKind, what: string, lastInput: Buffer | undefined): void {
  context.tally.hangs.push(`seed ${context.seed} connection ${index} (${kind}): ${what}; last input ${lastInput ? lastInput.subarray(0, 48).toString('hex') : '-'}${lastInput && lastInput.length > 48 ? `… (${lastInput.length} bytes)` : ''}`);
  context.tally.outcome('hang');
}

/*
 * ---------------------------------------------------------------------------------------
 * PostgreSQL connections
 * ---------------------------------------------------------------------------------------
 */

/** Counts the SQLSTATEs of ErrorResponses in the proxy's answer stream, across chunk boundaries. */
function pgErrorCounter(tally: Tally): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  let first = true;
  return (chunk) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let offset = 0;
    // A single 'N'/'S' byte answers SSLRequest/GSSENCRequest before any message.
    while (first && offset < pending.length && (pending[offset] === 0x4e || pending[offset] === 0x53) && (pending.length - offset < 5 || pending.readInt32BE(offset + 1) > 1 << 24)) offset++;
    first = false;
    while (pending.length - offset >= 5) {
      const length = pending.readInt32BE(offset + 1);
      if (length < 4 || length > 1 << 26) return void (pending = Buffer.alloc(0));
      if (pending.length - offset < 1 + length) break;
      if (pending[offset] === 0x45) {
        const body = pending.subarray(offset + 5, offset + 1 + length);
        let code = '?';
        let severity = '';
        for (let at = 0; at < body.length && body[at] !== 0; ) {
          const end = body.indexOf(0, at + 1);
          if (end < 0) break;
          if (body[at] === 0x43) code = body.toString('latin1', at + 1, end);
          if (body[at] === 0x56) severity = body.toString('latin1', at + 1, end);
          at = end + 1;
        }
        tally.errorCode(severity === 'FATAL' ? `${code} FATAL` : code);
      }
      offset += 1 + length;
    }
    pending = offset === 0 ? pending : Buffer.from(pending.subarray(offset));
  };
}

/** Reads the next complete backend message from the window (and drops it). */
function takePgMessage(connection: FuzzConnection): { type: number; body: Buffer } | null {
  const data = connection.received;
  if (data.length < 5) return null;
  const length = data.readInt32BE(1);
  if (data.length < 1 + length) return null;
  const message = { type: data[0]!, body: Buffer.from(data.subarray(5, 1 + length)) };
  connection.received = data.subarray(1 + length);
  return message;
}

async function nextPgMessage(connection: FuzzConnection, timeoutMs: number): Promise<{ type: number; body: Buffer } | null> {
  let message: { type: number; body: Buffer } | null = null;
  const result = await connection.until(() => (message = takePgMessage(connection)) !== null, timeoutMs);
  return result === 'done' ? message : null;
}

function saslInitial(data: Buffer): Buffer {
  const mechanism = Buffer.from('SCRAM-SHA-256\0');
  const length = Buffer.alloc(4);
  length.writeInt32BE(data.length);
  return typed(0x70, Buffer.concat([mechanism, length, data]));
}

/** Logs in as the fuzz user with SCRAM; resolves once ReadyForQuery arrived. */
async function pgLogin(connection: FuzzConnection, boundMs: number): Promise<string | null> {
  connection.write(startupMessage([['user', FUZZ_USER], ['database', 'postgres']]));
  const scram = createScramClient(FUZZ_PASSWORD);
  for (;;) {
    const message = await nextPgMessage(connection, boundMs);
    if (message === null) return connection.closed ? 'closed during login' : 'no answer during login';
    if (message.type === 0x45) return `login refused: ${message.body.toString('latin1').replace(/\0/g, ' ')}`;
    if (message.type === 0x5a) return null;
    if (message.type !== 0x52) continue;
    const code = message.body.readInt32BE(0);
    if (code === 10) connection.write(saslInitial(scram.clientFirst()));
    else if (code === 11) connection.write(typed(0x70, scram.handleServerFirst(message.body.subarray(4))));
    else if (code === 12) scram.verifyServerFinal(message.body.subarray(4));
    else if (code !== 0) return `unexpected authentication request ${code}`;
  }
}

async function runPgConnection(context: RunContext, index: number): Promise<void> {
  const { tally, boundMs } = context;
  const random = connectionRandom(context.seed, index);
  const kind = random.weighted<ConnectionKind>([[3, 'pre-startup'], [1, 'auth'], [5, 'post-login']]);
  tally.connections++;
  tally.byKind[kind].connections++;
  const connection = await FuzzConnection.open(context.host, context.port, pgErrorCounter(tally));
  fuzzPorts.set(connection.socket.localPort!, `seed ${context.seed} connection ${index} (${kind})`);
  try {
    if (kind === 'pre-startup') {
      const inputs = pgPreStartupInputs(random, [FUZZ_USER, FUZZ_USER_2, 'nobody', '']);
      for (const input of inputs) {
        if (!(await writeSplit(connection, random, input))) break;
        tally.countInputs(kind, 1);
        if (random.chance(0.3)) await new Promise((resolve) => setTimeout(resolve, 2));
      }
      const lastWrite = performance.now();
      // An unfinished packet is the proxy's to time out (loginTimeout); an answer or a close must come by then.
      // A lone 'S'/'N' (SSLRequest / GSSENCRequest accepted or declined) is not an answer: after 'S' the
      // proxy waits for a TLS handshake, and that wait must end by the login timeout like any other.
      const outcome = await connection.answerOrClose(LOGIN_TIMEOUT_S * 1000 + boundMs, 30, (received) => received.some((byte) => byte !== 0x4e && byte !== 0x53));
      if (outcome === 'timeout') return hang(context, index, kind, 'no answer, no close', inputs[inputs.length - 1]);
      tally.answerMs.push((outcome === 'closed' ? connection.closedAt : connection.lastDataAt) - lastWrite);
      tally.outcome(`${kind} ${outcome}`);
      return;
    }
    if (kind === 'auth') {
      const user = random.chance(0.6) ? FUZZ_USER : FUZZ_USER_2;
      connection.write(startupMessage([['user', user], ['database', 'postgres']]));
      const request = await nextPgMessage(connection, boundMs);
      if (request === null || request.type !== 0x52) return void tally.outcome(`${kind} no auth request (${request ? String.fromCharCode(request.type) : 'none'})`);
      let validFinal: Buffer | undefined;
      if (request.body.readInt32BE(0) === 10 && random.chance(0.4)) {
        // A proper first round, so the garbage lands where client-final-message belongs.
        const scram = createScramClient(random.chance(0.5) ? FUZZ_PASSWORD : 'wrong');
        connection.write(saslInitial(scram.clientFirst()));
        const serverFirst = await nextPgMessage(connection, boundMs);
        if (serverFirst === null || serverFirst.type !== 0x52) return void tally.outcome(`${kind} no SASL continue`);
        validFinal = scram.handleServerFirst(serverFirst.body.subarray(4));
      }
      connection.clear();
      let last: Buffer | undefined;
      for (let i = random.range(1, 3); i > 0; i--) {
        last = pgAuthGarbage(random, validFinal);
        if (!(await writeSplit(connection, random, last))) break;
        tally.countInputs(kind, 1);
      }
      const lastWrite = performance.now();
      const outcome = await connection.answerOrClose(LOGIN_TIMEOUT_S * 1000 + boundMs, 30);
      if (outcome === 'timeout') return hang(context, index, kind, 'no answer, no close', last);
      tally.answerMs.push((outcome === 'closed' ? connection.closedAt : connection.lastDataAt) - lastWrite);
      tally.outcome(`${kind} ${outcome}`);
      return;
    }
    const failure = await pgLogin(connection, boundMs);
    if (failure !== null) return void tally.outcome(`login failed: ${failure}`);
    const model = new PgFrontendStreamModel(MAX_MESSAGE_BYTES);
    let inputsLeft = Math.min(random.range(20, 600), Math.max(1, context.budget()));
    for (let chunkNumber = 0; inputsLeft > 0; chunkNumber++) {
      const { parts, last } = gatherChunk(model, Math.min(random.range(1, 24), inputsLeft), () => pgPostLoginInput(random));
      const terminal = model.ended !== null || model.owed > 0;
      const marker = `fz_${index}_${chunkNumber}_${random.next().toString(36)}`;
      if (!terminal) {
        // CopyFail ends a COPY FROM STDIN the inputs may have begun (PostgreSQL ignores it otherwise); each Sync
        // ends an extended-protocol error state; ROLLBACK ends an aborted transaction.
        const sync = typed(0x53, Buffer.alloc(0));
        const probe = Buffer.concat([typed(0x66, Buffer.from('probe\0')), sync, typed(0x51, Buffer.from('ROLLBACK\0')), sync, typed(0x51, Buffer.from(`SELECT '${marker}'\0`))]);
        parts.push(probe);
        model.feed(probe);
      }
      connection.clear();
      const written = await writeSplit(connection, random, Buffer.concat(parts));
      const sent = parts.length - (terminal ? 0 : 1);
      if (!written) break;
      inputsLeft -= sent;
      tally.countInputs(kind, sent);
      const lastWrite = performance.now();
      const markerBytes = Buffer.from(marker);
      const waitMs = terminal ? IDLE_TIMEOUT_S * 1000 + boundMs : boundMs;
      let outcome = terminal ? await connection.until(() => false, waitMs) : await connection.until(() => connection.received.includes(markerBytes) || connection.received.includes(SERVER_CONNECTION_LOST), waitMs);
      if (outcome === 'done' && !connection.received.includes(markerBytes)) {
        // The server dropped its connection (PostgreSQL closes on some bad input) with the probe in flight;
        // the proxy fails what was in flight with 08006 and goes on with a new server connection: probe again.
        await connection.until(() => false, 60);
        const again = Buffer.from(`${marker}_again`);
        connection.clear();
        connection.write(typed(0x51, Buffer.from(`SELECT '${again.toString()}'\0`)));
        outcome = await connection.until(() => connection.received.includes(again), boundMs);
        tally.outcome('post-login re-probed after 08006');
      }
      if (outcome === 'timeout') return hang(context, index, kind, terminal ? `no close after a message left unfinished (${model.ended ?? `${model.owed} bytes owed`})` : `no answer to the probe after chunk ${chunkNumber}`, last);
      const waited = (outcome === 'closed' ? connection.closedAt : performance.now()) - lastWrite;
      tally.answerMs.push(waited);
      if (!terminal) tally.probeMs.push(waited);
      if (process.env.FUZZ_TRACE) traceChunk(process.env.FUZZ_TRACE, index, chunkNumber, outcome, waited, Buffer.concat(parts), connection.received);
      if (outcome === 'closed') {
        if (!terminal && waited >= IDLE_TIMEOUT_S * 1000 - 300) tally.silentUntilIdle.push(`connection ${index} chunk ${chunkNumber}`);
        tally.outcome(terminal ? `${kind} closed (${model.ended ?? 'unfinished message, idle timeout'})` : `${kind} closed`);
        return;
      }
    }
    tally.outcome(`${kind} survived`);
  } finally {
    connection.destroy();
  }
}

/*
 * ---------------------------------------------------------------------------------------
 * MySQL connections
 * ---------------------------------------------------------------------------------------
 */

/** Counts the error numbers of ERR packets (payloads starting 0xFF) in the proxy's answer stream. */
function mysqlErrorCounter(tally: Tally): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  let skip = 0;
  return (chunk) => {
    let offset = Math.min(skip, chunk.length);
    skip -= offset;
    pending = offset === chunk.length && pending.length === 0 ? pending : Buffer.concat([pending, chunk.subarray(offset)]);
    offset = 0;
    while (pending.length - offset >= 5) {
      const length = pending.readUIntLE(offset, 3);
      if (pending[offset + 4] === 0xff && length >= 3) tally.errorCode(String(pending.readUInt16LE(offset + 5 > pending.length - 2 ? offset : offset + 5)));
      if (pending.length - offset >= 4 + length) {
        offset += 4 + length;
      } else {
        skip = 4 + length - (pending.length - offset);
        offset = pending.length;
      }
    }
    pending = Buffer.from(pending.subarray(offset));
  };
}

function takeMysqlPacket(connection: FuzzConnection): { sequenceId: number; payload: Buffer } | null {
  const data = connection.received;
  if (data.length < 4) return null;
  const length = data.readUIntLE(0, 3);
  if (data.length < 4 + length) return null;
  const found = { sequenceId: data[3]!, payload: Buffer.from(data.subarray(4, 4 + length)) };
  connection.received = data.subarray(4 + length);
  return found;
}

async function nextMysqlPacket(connection: FuzzConnection, timeoutMs: number): Promise<{ sequenceId: number; payload: Buffer } | null> {
  let found: { sequenceId: number; payload: Buffer } | null = null;
  const result = await connection.until(() => (found = takeMysqlPacket(connection)) !== null, timeoutMs);
  return result === 'done' ? found : null;
}

function handshakeResponse(user: string, token: Buffer, plugin: string): Buffer {
  return Buffer.concat([
    (() => {
      const header = Buffer.alloc(32);
      header.writeUInt32LE(MYSQL_CLIENT_CAPABILITIES, 0);
      header.writeUInt32LE(0xffffff, 4);
      header[8] = 45;
      return header;
    })(),
    Buffer.from(`${user}\0`),
    Buffer.from([token.length]),
    token,
    Buffer.from('appdb\0'),
    Buffer.from(`${plugin}\0`),
  ]);
}

async function runMysqlConnection(context: RunContext, index: number): Promise<void> {
  const { tally, boundMs } = context;
  const random = connectionRandom(context.seed, index);
  const kind = random.weighted<ConnectionKind>([[3, 'pre-startup'], [1, 'auth'], [5, 'post-login']]);
  tally.connections++;
  tally.byKind[kind].connections++;
  const connection = await FuzzConnection.open(context.host, context.port, mysqlErrorCounter(tally));
  fuzzPorts.set(connection.socket.localPort!, `seed ${context.seed} connection ${index} (${kind})`);
  try {
    const greeting = await nextMysqlPacket(connection, boundMs);
    if (greeting === null) return void tally.outcome(connection.closed ? 'no handshake (closed)' : 'no handshake (timeout)');
    const handshake = parseHandshakeV10(greeting.payload);
    if (kind === 'pre-startup' || kind === 'auth') {
      const inputs =
        kind === 'pre-startup'
          ? mysqlHandshakeInputs(random, [FUZZ_USER, FUZZ_USER_2, 'nobody', ''])
          : [
              mysqlPacket(handshakeResponse(random.pick([FUZZ_USER, FUZZ_USER_2]), random.chance(0.5) ? random.bytes(20) : Buffer.alloc(0), random.pick(['mysql_native_password', 'caching_sha2_password', 'mysql_clear_password', 'dialog', 'client_ed25519'])), 1),
              ...Array.from({ length: random.range(1, 3) }, (_, i) => mysqlAuthGarbage(random, 3 + 2 * i)),
            ];
      let last: Buffer | undefined;
      for (const input of inputs) {
        last = input;
        if (!(await writeSplit(connection, random, input))) break;
        tally.countInputs(kind, 1);
        if (kind === 'auth') await connection.until(() => false, 5);
      }
      const lastWrite = performance.now();
      const outcome = await connection.answerOrClose(LOGIN_TIMEOUT_S * 1000 + boundMs, 30);
      if (outcome === 'timeout') return hang(context, index, kind, 'no answer, no close', last);
      tally.answerMs.push((outcome === 'closed' ? connection.closedAt : connection.lastDataAt) - lastWrite);
      tally.outcome(`${kind} ${outcome}`);
      return;
    }
    connection.write(mysqlPacket(handshakeResponse(FUZZ_USER, nativePasswordToken(FUZZ_PASSWORD, handshake.scramble), 'mysql_native_password'), 1));
    const loginAnswer = await nextMysqlPacket(connection, boundMs);
    if (loginAnswer === null || loginAnswer.payload[0] !== 0x00) {
      return void tally.outcome(`login failed: ${loginAnswer ? loginAnswer.payload.subarray(9).toString('latin1') : connection.closed ? 'closed' : 'timeout'}`);
    }
    const model = new MysqlClientStreamModel(MAX_MESSAGE_BYTES);
    let inputsLeft = Math.min(random.range(20, 600), Math.max(1, context.budget()));
    for (let chunkNumber = 0; inputsLeft > 0; chunkNumber++) {
      const { parts, last } = gatherChunk(model, Math.min(random.range(1, 16), inputsLeft), () => mysqlPostLoginInput(random));
      if (model.ended === null && model.owed === 0 && model.continues) {
        // A full-size packet promises a continuation: end the command with an empty one.
        const end = mysqlPacket(Buffer.alloc(0), model.lastSequenceId + 1);
        parts.push(end);
        model.feed(end);
      }
      const terminal = model.ended !== null || model.owed > 0;
      const marker = `fz_${index}_${chunkNumber}_${random.next().toString(36)}`;
      if (!terminal) {
        const probe = mysqlPacket(Buffer.from(`\x03SELECT '${marker}'`, 'latin1'), 0);
        parts.push(probe);
        model.feed(probe);
      }
      connection.clear();
      const written = await writeSplit(connection, random, Buffer.concat(parts));
      const sent = parts.length - (terminal ? 0 : 1);
      if (!written) break;
      inputsLeft -= sent;
      tally.countInputs(kind, sent);
      const lastWrite = performance.now();
      const markerBytes = Buffer.from(marker);
      const waitMs = terminal ? IDLE_TIMEOUT_S * 1000 + boundMs : boundMs;
      let outcome = terminal ? await connection.until(() => false, waitMs) : await connection.until(() => connection.received.includes(markerBytes) || MYSQL_SERVER_CONNECTION_LOST.test(connection.received.toString('latin1')), waitMs);
      if (outcome === 'done' && !connection.received.includes(markerBytes)) {
        // The server closed its connection on bad input (e.g. "Got packets out of order") with the probe in
        // flight; the proxy fails what was in flight with 1317 and goes on with a new server connection: probe again.
        await connection.until(() => false, 60);
        const again = Buffer.from(`${marker}_again`);
        connection.clear();
        connection.write(mysqlPacket(Buffer.from(`\x03SELECT '${again.toString()}'`, 'latin1'), 0));
        outcome = await connection.until(() => connection.received.includes(again), boundMs);
        tally.outcome('post-login re-probed after 1317 / 1180');
      }
      if (outcome === 'timeout') return hang(context, index, kind, terminal ? `no close after a packet left unfinished (${model.ended ?? `${model.owed} bytes owed`})` : `no answer to the probe after chunk ${chunkNumber}`, last);
      const waited = (outcome === 'closed' ? connection.closedAt : performance.now()) - lastWrite;
      tally.answerMs.push(waited);
      if (!terminal) tally.probeMs.push(waited);
      if (process.env.FUZZ_TRACE) traceChunk(process.env.FUZZ_TRACE, index, chunkNumber, outcome, waited, Buffer.concat(parts), connection.received);
      if (outcome === 'closed') {
        if (!terminal && waited >= IDLE_TIMEOUT_S * 1000 - 300) tally.silentUntilIdle.push(`connection ${index} chunk ${chunkNumber}`);
        tally.outcome(terminal ? `${kind} closed (${model.ended ?? 'unfinished packet, idle timeout'})` : `${kind} closed`);
        return;
      }
    }
    tally.outcome(`${kind} survived`);
  } finally {
    connection.destroy();
  }
}

/*
 * ---------------------------------------------------------------------------------------
 * Servers, proxy, bystanders, memory
 * ---------------------------------------------------------------------------------------
 */

interface Stack {
  proxy: TidepoolProcess;
  stopServer: () => Promise<void>;
  /** PostgreSQL: backends that died of a signal so far (the database's own crashes). */
  databaseCrashes?: () => number;
}

async function startStack(engine: Engine): Promise<Stack> {
  if (engine === 'pg') {
    const server: PgServer = await startPostgres({ maxConnections: 120 });
    try {
      await server.createUser(FUZZ_USER, FUZZ_PASSWORD);
      await server.createUser(FUZZ_USER_2, FUZZ_PASSWORD_2);
      await server.createUser(BYSTANDER_USER, BYSTANDER_PASSWORD);
      await server.psql(`CREATE TABLE fuzz_t (x int); GRANT ALL ON fuzz_t TO ${FUZZ_USER}, ${FUZZ_USER_2}, ${BYSTANDER_USER};`);
      const proxy = await startFuzzProxy('POSTGRESQL', server, [
        { name: FUZZ_USER, password: FUZZ_PASSWORD },
        { name: FUZZ_USER_2, password: FUZZ_PASSWORD_2, clientPasswordAuthType: 'POSTGRES_MD5' },
        { name: BYSTANDER_USER, password: BYSTANDER_PASSWORD },
      ]);
      return { proxy, stopServer: () => server.stop(), databaseCrashes: () => server.crashRestarts() };
    } catch (error) {
      await server.stop();
      throw error;
    }
  }
  const server: MariadbServer = await startMariadb({ maxConnections: 150 });
  try {
    await server.createUser(FUZZ_USER, FUZZ_PASSWORD);
    await server.createUser(FUZZ_USER_2, FUZZ_PASSWORD_2);
    await server.createUser(BYSTANDER_USER, BYSTANDER_PASSWORD);
    await server.mysql(
      `CREATE DATABASE appdb; CREATE TABLE appdb.fuzz_t (x int); ` +
        [FUZZ_USER, FUZZ_USER_2, BYSTANDER_USER].map((user) => `GRANT ALL ON appdb.* TO '${user}'@'%';`).join(' '),
    );
    const proxy = await startFuzzProxy('MYSQL', server, [
      { name: FUZZ_USER, password: FUZZ_PASSWORD, clientPasswordAuthType: 'MYSQL_NATIVE_PASSWORD' },
      { name: FUZZ_USER_2, password: FUZZ_PASSWORD_2, clientPasswordAuthType: 'MYSQL_CACHING_SHA2_PASSWORD' },
      { name: BYSTANDER_USER, password: BYSTANDER_PASSWORD, clientPasswordAuthType: 'MYSQL_NATIVE_PASSWORD' },
    ]);
    return { proxy, stopServer: () => server.stop() };
  } catch (error) {
    await server.stop();
    throw error;
  }
}

/** Where the proxy writes the heap snapshots that force its full garbage collections (see `liveMemory`). */
let snapshotDirectory: string | undefined;
const snapshotDir = (): string => (snapshotDirectory ??= mkdtempSync(join(tmpdir(), 'tidepool-fuzz-heap-')));

function startFuzzProxy(engineFamily: 'POSTGRESQL' | 'MYSQL', server: { host: string; port: number }, users: Parameters<typeof startTidepool>[0]['users']): Promise<TidepoolProcess> {
  return startTidepool({
    nodeFlags: ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapshotDir()}`],
    engineFamily,
    targets: [{ host: server.host, port: server.port }],
    users,
    config: { idleClientTimeout: IDLE_TIMEOUT_S, limits: { maxMessageBytes: MAX_MESSAGE_BYTES, loginTimeout: LOGIN_TIMEOUT_S, shutdownTimeout: 5, maxClientConnections: 50_000, clientConnectionsPerSecond: 0 } },
    env: { TIDEPOOL_LOG_LEVEL: 'info' },
  });
}

function rssKb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

function summarize(latencies: readonly number[] = []): LatencySummary {
  const sorted = [...latencies].sort((a, b) => a - b);
  const round = (value: number) => Math.round(value * 100) / 100;
  return { queries: sorted.length, p50: round(percentile(sorted, 0.5)), p99: round(percentile(sorted, 0.99)), max: round(sorted[sorted.length - 1] ?? 0) };
}

class Bystanders {
  private constructor(private readonly child: ChildProcess) {}

  static async start(engine: Engine, proxy: TidepoolProcess, clients: number, watchers: number): Promise<Bystanders> {
    const child = fork(resolvePath(__dirname, 'bystanders.ts'), [], { execArgv: ['-r', 'ts-node/register/transpile-only'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const bystanders = new Bystanders(child);
    const started = new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`bystander process exited with ${code}`)));
    });
    const command: BystanderCommand = {
      type: 'start',
      engine,
      host: proxy.host,
      port: proxy.port,
      user: BYSTANDER_USER,
      password: BYSTANDER_PASSWORD,
      database: engine === 'pg' ? 'postgres' : 'appdb',
      clients,
      pauseMs: 5,
      watchers: { clients: watchers, user: FUZZ_USER, password: FUZZ_PASSWORD },
    };
    child.send(command);
    await started;
    return bystanders;
  }

  phase(phase: string): void {
    this.child.send({ type: 'phase', phase } satisfies BystanderCommand);
  }

  stop(): Promise<BystanderResult> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error('bystanders did not stop within 30 s'));
      }, 30_000);
      this.child.once('message', (result: BystanderResult) => {
        clearTimeout(timer);
        resolve(result);
      });
      this.child.send({ type: 'stop' } satisfies BystanderCommand);
    });
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** Remote address → client id of every client connection the proxy logged as opened and not yet as closed. */
const openOnProxy = new Map<string, unknown>();
/** Local port of each fuzz socket → its connection number and kind, to name connections the proxy keeps. */
const fuzzPorts = new Map<number, string>();

function drainLogs(proxy: TidepoolProcess, errorLogs: Record<string, number>): void {
  const lines = proxy.logs();
  for (const line of lines) {
    if (line.event === 'connection-opened') openOnProxy.set(String(line.remote), line.client);
    if (line.event === 'connection-closed') openOnProxy.delete(String(line.remote));
    if (typeof line.level === 'number' && line.level >= 50) {
      const key = `${String(line.event ?? line.msg)}${line.error ? `: ${String(line.error).slice(0, 120)}` : ''}`;
      errorLogs[key] = (errorLogs[key] ?? 0) + 1;
    }
  }
  lines.length = 0;
}

/** FUZZ_TRACE=<dir>: each chunk's bytes sent and received, as hex files, for replaying one connection. */
function traceChunk(dir: string, index: number, chunkNumber: number, outcome: string, waitedMs: number, sent: Buffer, received: Buffer): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/c${index}-${chunkNumber}.sent.hex`, sent.toString('hex'));
  writeFileSync(`${dir}/c${index}-${chunkNumber}.received.hex`, received.toString('hex'));
  console.log(`connection ${index} chunk ${chunkNumber}: ${outcome} after ${Math.round(waitedMs)} ms (${sent.length} bytes sent, ${received.length} received)`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let lastClients: unknown = null;
let lastPools: unknown = null;

/**
 * The proxy's memory after a full garbage collection: a heap snapshot (Node's
 * --heapsnapshot-signal) collects everything unreachable first, and /status is answered only
 * once the snapshot is written. What is left is live: growth there is a leak.
 */
async function liveMemory(proxy: TidepoolProcess): Promise<MemoryMb | null> {
  process.kill(proxy.pid, 'SIGUSR2');
  await sleep(200);
  // The admin server may have timed out undici's kept-alive socket during the stall: one retry.
  const memory = (await proxyMemory(proxy)) ?? (await proxyMemory(proxy));
  for (const file of readdirSync(snapshotDir())) rmSync(join(snapshotDir(), file), { force: true });
  return memory;
}

async function proxyMemory(proxy: TidepoolProcess): Promise<MemoryMb | null> {
  try {
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as {
      Memory?: { RssBytes: number; HeapUsedBytes: number; ArrayBuffersBytes: number };
      StatementCache?: { Entries: number; TextBytes: number };
    };
    if (!status.Memory) return null;
    const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
    return {
      rss: mb(status.Memory.RssBytes),
      heapUsed: mb(status.Memory.HeapUsedBytes),
      arrayBuffers: mb(status.Memory.ArrayBuffersBytes),
      ...(status.StatementCache ? { statementCache: { entries: status.StatementCache.Entries, textMb: mb(status.StatementCache.TextBytes) } } : {}),
    };
  } catch {
    return null;
  }
}

/** Nothing lent out, nothing in transition, nobody waiting: what a pool must look like once every client is gone. */
export function poolsDrained(pools: FuzzReport['poolsAfter']): boolean {
  return pools.every((pool) => pool.Borrowed + pool.Pinned + pool.Other + pool.Waiting === 0);
}

async function openClientCount(proxy: TidepoolProcess): Promise<number | null> {
  try {
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as Record<string, unknown>;
    lastClients = status.Clients;
    lastPools = status.Pools;
    const total = (status.Clients as { Total?: unknown } | undefined)?.Total;
    return typeof total === 'number' ? total : null;
  } catch {
    return null;
  }
}

/**
 * One fuzz run against a fresh server and proxy. Never throws for what it finds (crashes,
 * hangs, bystander errors are in the report); throws only when it cannot set up.
 */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const concurrency = options.onlyConnection !== undefined ? 1 : (options.concurrency ?? 16);
  const boundMs = options.answerBoundMs ?? 5000;
  const maxDurationMs = options.maxDurationMs ?? 30 * 60_000;
  openOnProxy.clear();
  fuzzPorts.clear();
  const stack = await startStack(options.engine);
  const { proxy } = stack;
  const crashesAtStart = stack.databaseCrashes?.() ?? 0;
  const tally = new Tally();
  const crashDetails: string[] = [];
  const errorLogs: Record<string, number> = {};
  let bystanders: Bystanders | undefined;
  const startedAt = performance.now();
  let peak = 0;
  let stoppedEarly = false;
  let stopping = false;
  try {
    // With no client yet: a snapshot stalls the proxy for a while, and its idle timeout would close clients.
    const baseline = rssKb(proxy.pid);
    const heapBaseline = await liveMemory(proxy);
    bystanders = await Bystanders.start(options.engine, proxy, options.bystanders ?? 4, options.poolWatchers ?? 1);
    await sleep(2000);
    peak = rssKb(proxy.pid);
    bystanders.phase('during');
    let proxyDied = false;
    void proxy.exited.then((code) => {
      if (stopping) return;
      proxyDied = true;
      crashDetails.push(`the proxy exited with ${code}: ${proxy.stderr().slice(-2000)}`);
    });
    const sampler = setInterval(() => (peak = Math.max(peak, rssKb(proxy.pid))), 200);
    // The harness keeps every log line; a million inputs make too many to hold. Keep the error-level ones' events.
    const logDrain = setInterval(() => drainLogs(proxy, errorLogs), 1000);
    let lastProgress = performance.now();
    const context: RunContext = {
      engine: options.engine,
      host: proxy.host,
      port: proxy.port,
      seed: options.seed,
      boundMs,
      tally,
      budget: () => options.inputs - tally.inputs,
    };
    let nextIndex = options.onlyConnection ?? 0;
    const runOne = options.engine === 'pg' ? runPgConnection : runMysqlConnection;
    const worker = async () => {
      while (tally.inputs < options.inputs && !proxyDied) {
        if (performance.now() - startedAt > maxDurationMs) {
          stoppedEarly = true;
          return;
        }
        const index = nextIndex++;
        try {
          await runOne(context, index);
        } catch (error) {
          tally.outcome(`driver error: ${(error as Error).message.slice(0, 80)}`);
          if (proxyDied) return;
        }
        if (options.onlyConnection !== undefined) return;
        if (options.onProgress && performance.now() - lastProgress > 5000) {
          lastProgress = performance.now();
          const seconds = (performance.now() - startedAt) / 1000;
          options.onProgress(`${options.engine}: ${tally.inputs} inputs, ${tally.connections} connections, ${tally.hangs.length} hangs, RSS ${Math.round(rssKb(proxy.pid) / 1024)} MB, ${Math.round(tally.inputs / seconds)} inputs/s`);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    bystanders.phase('after');
    // Let the proxy finish closing what the fuzzers left (idle timeouts), then settle.
    await sleep((IDLE_TIMEOUT_S + 1) * 1000);
    let after = rssKb(proxy.pid);
    for (let i = 0; i < 10 && after > baseline * 1.25; i++) {
      await sleep(1000);
      after = rssKb(proxy.pid);
    }
    clearInterval(sampler);
    clearInterval(logDrain);
    drainLogs(proxy, errorLogs);
    const bystanderResult = await bystanders.stop();
    bystanders = undefined;
    // Every fuzz and bystander connection is closed on our side by now; the proxy must let go of them
    // too, at the latest through its idle / login timeouts.
    let clientsLeftOpen = await openClientCount(proxy);
    const leftOpenDetails = (): string[] => {
      drainLogs(proxy, errorLogs);
      const named = [...openOnProxy.keys()].map((remote) => `${remote}: ${fuzzPorts.get(Number(remote.split(':').pop())) ?? 'not a fuzz connection'}`);
      return named.length > 0 ? named : [`the proxy logged every client connection as closed, but /status counts ${JSON.stringify(lastClients)}: a client gauge that drifted`];
    };
    for (let waited = 0; clientsLeftOpen !== null && clientsLeftOpen > 0 && waited < (Math.max(IDLE_TIMEOUT_S, LOGIN_TIMEOUT_S) + 2) * 1000; waited += 250) {
      await sleep(250);
      clientsLeftOpen = await openClientCount(proxy);
    }
    const heapAfter = await liveMemory(proxy);
    const sortedAnswers = [...tally.answerMs].sort((a, b) => a - b);
    const sortedProbes = [...tally.probeMs].sort((a, b) => a - b);
    const bugLines = proxy
      .stderr()
      .split('\n')
      .filter((line) => line.includes('"uncaught-exception"') || line.includes('"unhandled-rejection"'));
    // The same bug tends to fire thousands of times: one line per distinct message and top frames, with a count.
    const distinctBugs = new Map<string, number>();
    for (const line of bugLines) {
      const key = line.replace(/\\n\s+at /g, ' < ').replace(/:\d+:\d+/g, '').slice(0, 400);
      distinctBugs.set(key, (distinctBugs.get(key) ?? 0) + 1);
    }
    const proxyExits = crashDetails.length;
    crashDetails.push(...[...distinctBugs].map(([key, count]) => `${count} × ${key}`));
    return {
      engine: options.engine,
      seed: options.seed,
      inputs: tally.inputs,
      connections: tally.connections,
      byKind: tally.byKind,
      crashes: proxyExits + bugLines.length,
      crashDetails,
      hangs: tally.hangs.length,
      hangDetails: tally.hangs.slice(0, 20),
      silentUntilIdle: tally.silentUntilIdle.length,
      silentUntilIdleSamples: tally.silentUntilIdle.slice(0, 20),
      outcomes: tally.outcomes,
      errorCodes: tally.errorCodes,
      errorLogs,
      answerMs: { p50: Math.round(percentile(sortedAnswers, 0.5)), p99: Math.round(percentile(sortedAnswers, 0.99)), max: Math.round(sortedAnswers[sortedAnswers.length - 1] ?? 0), samples: sortedAnswers.length },
      probeMs: { p50: Math.round(percentile(sortedProbes, 0.5)), p99: Math.round(percentile(sortedProbes, 0.99)), max: Math.round(sortedProbes[sortedProbes.length - 1] ?? 0), samples: sortedProbes.length },
      bystander: {
        clients: options.bystanders ?? 4,
        queries: bystanderResult.queries,
        errors: bystanderResult.errors.length,
        errorSamples: bystanderResult.errors.slice(0, 10),
        before: summarize(bystanderResult.latencies.before),
        during: summarize(bystanderResult.latencies.during),
      },
      poolWatcher: {
        clients: options.poolWatchers ?? 1,
        queries: bystanderResult.watchers.queries,
        errors: bystanderResult.watchers.errors.length,
        errorSamples: bystanderResult.watchers.errors.slice(0, 10),
        during: summarize(bystanderResult.watchers.latencies.during),
        stalls: (bystanderResult.watchers.latencies.during ?? []).filter((ms) => ms > boundMs).length,
      },
      rssKb: { baseline, peak, after },
      heapMb: { baseline: heapBaseline, after: heapAfter },
      clientsLeftOpen,
      clientsLeftOpenDetails: clientsLeftOpen ? leftOpenDetails().slice(0, 20) : [],
      poolsAfter: Array.isArray(lastPools) ? (lastPools as FuzzReport['poolsAfter']) : [],
      durationMs: Math.round(performance.now() - startedAt),
      stoppedEarly,
      databaseCrashes: stack.databaseCrashes ? stack.databaseCrashes() - crashesAtStart : null,
    };
  } finally {
    bystanders?.kill();
    stopping = true;
    try {
      await proxy.stop();
    } catch (error) {
      // stop() throws when the proxy logged a bug; the report already counts it.
      if (!crashDetails.some((line) => (error as Error).message.includes(line.slice(0, 100)))) crashDetails.push((error as Error).message.slice(0, 2000));
    }
    await stack.stopServer();
  }
}

/** The report as a two-column table, for `npm run fuzz` and the chaos runner. */
export function formatReport(report: FuzzReport): string {
  const rows: [string, string][] = [
    ['engine / seed', `${report.engine} / ${report.seed}`],
    ['inputs', `${report.inputs} (pre-startup ${report.byKind['pre-startup'].inputs}, auth ${report.byKind.auth.inputs}, post-login ${report.byKind['post-login'].inputs})`],
    ['connections', `${report.connections} (pre-startup ${report.byKind['pre-startup'].connections}, auth ${report.byKind.auth.connections}, post-login ${report.byKind['post-login'].connections})`],
    ['crashes', String(report.crashes)],
    ['hangs', String(report.hangs)],
    ['answer/close time p50 / p99 / max', `${report.answerMs.p50} / ${report.answerMs.p99} / ${report.answerMs.max} ms (${report.answerMs.samples} waits)`],
    ['post-login probe answer p50 / p99 / max', `${report.probeMs.p50} / ${report.probeMs.p99} / ${report.probeMs.max} ms (${report.probeMs.samples} probes)`],
    ['bystander queries / errors', `${report.bystander.queries} / ${report.bystander.errors}`],
    ['bystander p50 / p99 before', `${report.bystander.before.p50} / ${report.bystander.before.p99} ms (${report.bystander.before.queries} queries)`],
    ['bystander p50 / p99 during', `${report.bystander.during.p50} / ${report.bystander.during.p99} ms (${report.bystander.during.queries} queries)`],
    ['pool watcher queries / errors / over the bound', `${report.poolWatcher.queries} / ${report.poolWatcher.errors} / ${report.poolWatcher.stalls}`],
    ['pool watcher p50 / p99 / max during', `${report.poolWatcher.during.p50} / ${report.poolWatcher.during.p99} / ${report.poolWatcher.during.max} ms`],
    ['proxy RSS baseline / peak / after', `${Math.round(report.rssKb.baseline / 1024)} / ${Math.round(report.rssKb.peak / 1024)} / ${Math.round(report.rssKb.after / 1024)} MB`],
    [
      'after a full GC: RSS / heap used / Buffers, baseline → after',
      report.heapMb.baseline && report.heapMb.after
        ? `${report.heapMb.baseline.rss} / ${report.heapMb.baseline.heapUsed} / ${report.heapMb.baseline.arrayBuffers} → ${report.heapMb.after.rss} / ${report.heapMb.after.heapUsed} / ${report.heapMb.after.arrayBuffers} MB`
        : 'n/a',
    ],
    ...(report.heapMb.after?.statementCache
      ? [['statement-name cache after (bounded: 100,000 texts, 16 MiB)', `${report.heapMb.after.statementCache.entries} texts, ${report.heapMb.after.statementCache.textMb} MB of text`] as [string, string]]
      : []),
    ['client connections left open', String(report.clientsLeftOpen ?? 'n/a')],
    ['server connections after (borrowed/pinned/other/waiting/idle)', report.poolsAfter.map((pool) => `${pool.User}: ${pool.Borrowed}/${pool.Pinned}/${pool.Other}/${pool.Waiting}/${pool.Idle}`).join(', ') || 'n/a'],
    ['database crashes (its own backends killed by a signal)', report.databaseCrashes === null ? 'n/a' : String(report.databaseCrashes)],
    ['duration', `${(report.durationMs / 1000).toFixed(1)} s${report.stoppedEarly ? ' (stopped at the time limit)' : ''}`],
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  return rows.map(([name, value]) => `${name.padEnd(width)}  ${value}`).join('\n');
}
