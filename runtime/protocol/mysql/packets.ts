/**
 * Codecs for the MySQL packets the proxy writes or must understand, plus the response
 * tracker that tells when a server connection has finished answering a command.
 *
 * "Forward, don't decode": the proxy fully decodes only the connection-phase packets
 * (handshake, handshake response, auth switch) and the few command-phase packets that
 * drive pooling — OK/ERR/EOF (status flags, session-state changes) and the
 * COM_STMT_PREPARE_OK header. Rows and column definitions are recognised by their first
 * byte and length and never decoded. All parsers work on payload views and raise
 * MysqlProtocolError on malformed or truncated input, never a crash.
 *
 * The proxy speaks protocol 4.1 only (CLIENT_PROTOCOL_41); encoders assume it where
 * capabilities are not passed.
 */
import {
  CapabilityFlag,
  Command,
  CursorType,
  EOF_PACKET_MAX_PAYLOAD_LENGTH,
  MAX_PACKET_PAYLOAD_LENGTH,
  PROTOCOL_VERSION_10,
  ResponseHeader,
  SCRAMBLE_LENGTH,
  ServerStatus,
  SessionTrackType,
  hasCapability,
} from './constants';
import { MysqlProtocolError, PayloadReader, PayloadWriter, lenencIntSize, readLenencIntAt } from './framing';

/* ------------------------------------------------------------------------------------ */
/* Initial handshake (server → client)                                                   */
/* ------------------------------------------------------------------------------------ */

export interface HandshakeV10 {
  /** Shown to clients as the server version; should reflect the target's (e.g. "8.0.36" or "5.5.5-10.11.6-MariaDB"). */
  serverVersion: string;
  /** The connection id clients see (used by KILL, so it is the proxy's own id). */
  connectionId: number;
  /** The 20-byte authentication scramble, without the trailing NUL that goes on the wire. */
  scramble: Buffer;
  capabilityFlags: number;
  /** Collation id of the server's default character set (low 8 bits on the wire). */
  characterSet: number;
  statusFlags: number;
  /** Plugin the scramble is meant for; "" when CLIENT_PLUGIN_AUTH is not set. */
  authPluginName: string;
  /** MariaDB extended capabilities (only on the wire when CLIENT_LONG_PASSWORD/CLIENT_MYSQL is unset). */
  mariadbExtendedCapabilities?: number;
}

/** Encodes the Protocol::HandshakeV10 payload. */
export function encodeHandshakeV10(handshake: HandshakeV10): Buffer {
  const { scramble, capabilityFlags } = handshake;
  if (scramble.length < 8) throw new RangeError('the scramble must be at least 8 bytes');
  const pluginAuth = hasCapability(capabilityFlags, CapabilityFlag.CLIENT_PLUGIN_AUTH);
  const writer = new PayloadWriter(96 + handshake.serverVersion.length);
  writer
    .u8(PROTOCOL_VERSION_10)
    .nulString(handshake.serverVersion)
    .u32(handshake.connectionId)
    .bytes(scramble.subarray(0, 8))
    .u8(0) // filler
    .u16(capabilityFlags & 0xffff)
    .u8(handshake.characterSet & 0xff)
    .u16(handshake.statusFlags)
    .u16(capabilityFlags >>> 16)
    // Length of the whole auth-plugin-data including its trailing NUL.
    .u8(pluginAuth ? scramble.length + 1 : 0)
    .zeros(6);
  const mariadbExtended = hasCapability(capabilityFlags, CapabilityFlag.CLIENT_LONG_PASSWORD) ? 0 : (handshake.mariadbExtendedCapabilities ?? 0);
  writer.u32(mariadbExtended);
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_SECURE_CONNECTION)) {
    // auth-plugin-data-part-2 is at least 13 bytes: the rest of the scramble + NUL.
    const part2 = scramble.subarray(8);
    writer.bytes(part2).zeros(Math.max(13 - part2.length, 1));
  }
  if (pluginAuth) writer.nulString(handshake.authPluginName);
  return writer.finish();
}

/** Decodes a Protocol::HandshakeV10 payload (what a server sends first). */
export function parseHandshakeV10(payload: Buffer): HandshakeV10 {
  const reader = new PayloadReader(payload);
  const protocolVersion = reader.u8();
  if (protocolVersion === ResponseHeader.ERR) {
    throw new MysqlProtocolError('unexpected-packet', `the server refused the connection: ${describeErr(payload)}`);
  }
  if (protocolVersion !== PROTOCOL_VERSION_10) {
    throw new MysqlProtocolError('unsupported', `handshake protocol version ${protocolVersion} is not supported`);
  }
  const serverVersion = reader.nulString('utf8');
  const connectionId = reader.u32();
  const part1 = reader.bytes(8);
  reader.skip(1);
  let capabilityFlags = reader.u16();
  let characterSet = 0;
  let statusFlags = 0;
  let authDataLength = 0;
  let mariadbExtendedCapabilities = 0;
  let scramble: Buffer = Buffer.from(part1);
  let authPluginName = '';
  if (!reader.atEnd) {
    characterSet = reader.u8();
    statusFlags = reader.u16();
    capabilityFlags = (capabilityFlags | (reader.u16() << 16)) >>> 0;
    authDataLength = reader.u8();
    reader.skip(6);
    const extended = reader.u32();
    if (!hasCapability(capabilityFlags, CapabilityFlag.CLIENT_LONG_PASSWORD)) mariadbExtendedCapabilities = extended;
    if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_SECURE_CONNECTION)) {
      const part2Length = Math.min(Math.max(13, authDataLength - 8), reader.remaining);
      const part2 = reader.bytes(part2Length);
      // The scramble is authDataLength − 1 bytes (20 in practice); the rest is the NUL.
      const scrambleLength = authDataLength > 8 ? authDataLength - 1 : SCRAMBLE_LENGTH;
      scramble = Buffer.concat([part1, part2.subarray(0, Math.max(0, Math.min(part2.length, scrambleLength - 8)))]);
    }
    if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_PLUGIN_AUTH) && !reader.atEnd) {
      // MySQL 5.5.7–5.5.9 omitted the terminating NUL.
      authPluginName = reader.nulString('utf8', true);
    }
  }
  return { serverVersion, connectionId, scramble, capabilityFlags, characterSet, statusFlags, authPluginName, mariadbExtendedCapabilities };
}

/* ------------------------------------------------------------------------------------ */
/* Handshake response and SSL request (client → server)                                  */
/* ------------------------------------------------------------------------------------ */

/** Fields shared by the SSLRequest and the full HandshakeResponse41. */
interface HandshakeResponseHeader {
  capabilityFlags: number;
  maxPacketSize: number;
  /** Collation id the client asks for (sets character_set_client/connection/results). */
  characterSet: number;
  /** From the reserved filler, when the client speaks MariaDB (CLIENT_LONG_PASSWORD/CLIENT_MYSQL unset); else 0. */
  mariadbExtendedCapabilities: number;
}

/** The 32-byte packet a client sends before upgrading to TLS. */
export interface SslRequest extends HandshakeResponseHeader {
  kind: 'ssl-request';
}

export interface HandshakeResponse41 extends HandshakeResponseHeader {
  kind: 'handshake-response';
  username: string;
  /** The plugin's first response (scramble answer, clear password…); a copy, safe to keep. */
  authResponse: Buffer;
  /** Initial schema when CLIENT_CONNECT_WITH_DB is set. */
  database: string | undefined;
  /** Plugin the auth response was computed with, when CLIENT_PLUGIN_AUTH is set. */
  authPluginName: string | undefined;
  /** CLIENT_CONNECT_ATTRS key/values (program_name, _client_name…), in order. */
  connectAttributes: Map<string, string>;
  /** CLIENT_ZSTD_COMPRESSION_ALGORITHM level, when present. */
  zstdCompressionLevel: number | undefined;
}

/** Size of the fixed part: capabilities<4>, max packet<4>, charset<1>, filler<23>. */
const HANDSHAKE_RESPONSE_FIXED_LENGTH = 32;

/**
 * Decodes what a client sends after the initial handshake: an SSLRequest (exactly 32
 * bytes; the client then starts TLS) or a HandshakeResponse41. Fields are read according
 * to the client's own capability flags, as servers do; trailing optional fields that are
 * announced but absent are tolerated. Pre-4.1 responses are refused ('unsupported').
 */
export function parseHandshakeResponse(payload: Buffer): SslRequest | HandshakeResponse41 {
  if (payload.length < HANDSHAKE_RESPONSE_FIXED_LENGTH) {
    throw new MysqlProtocolError('truncated', `handshake response of ${payload.length} bytes is shorter than 32`);
  }
  const reader = new PayloadReader(payload);
  const capabilityFlags = reader.u32();
  if (!hasCapability(capabilityFlags, CapabilityFlag.CLIENT_PROTOCOL_41)) {
    throw new MysqlProtocolError('unsupported', 'pre-4.1 clients (HandshakeResponse320) are not supported');
  }
  const maxPacketSize = reader.u32();
  const characterSet = reader.u8();
  reader.skip(19);
  const extended = reader.u32();
  const mariadbExtendedCapabilities = hasCapability(capabilityFlags, CapabilityFlag.CLIENT_LONG_PASSWORD) ? 0 : extended;
  const header = { capabilityFlags, maxPacketSize, characterSet, mariadbExtendedCapabilities };
  if (payload.length === HANDSHAKE_RESPONSE_FIXED_LENGTH) {
    if (!hasCapability(capabilityFlags, CapabilityFlag.CLIENT_SSL)) {
      throw new MysqlProtocolError('truncated', 'handshake response ends before the user name');
    }
    return { kind: 'ssl-request', ...header };
  }
  const username = reader.nulString('utf8');
  const authResponse = Buffer.from(readAuthResponse(reader, capabilityFlags));
  let database: string | undefined;
  let authPluginName: string | undefined;
  let connectAttributes = new Map<string, string>();
  let zstdCompressionLevel: number | undefined;
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_CONNECT_WITH_DB) && !reader.atEnd) {
    database = reader.nulString('utf8', true);
  }
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_PLUGIN_AUTH) && !reader.atEnd) {
    authPluginName = reader.nulString('utf8', true);
  }
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_CONNECT_ATTRS) && !reader.atEnd) {
    connectAttributes = readConnectAttributes(reader);
  }
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_ZSTD_COMPRESSION_ALGORITHM) && !reader.atEnd) {
    zstdCompressionLevel = reader.u8();
  }
  return { kind: 'handshake-response', ...header, username, authResponse, database, authPluginName, connectAttributes, zstdCompressionLevel };
}

function readAuthResponse(reader: PayloadReader, capabilityFlags: number): Buffer {
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)) return reader.lenencBytes();
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_SECURE_CONNECTION)) return reader.bytes(reader.u8());
  return reader.nulBytes(true);
}

function readConnectAttributes(reader: PayloadReader): Map<string, string> {
  const totalLength = reader.lenencInt();
  if (totalLength > reader.remaining) throw new MysqlProtocolError('truncated', 'connection attributes run past the end of the packet');
  const attributes = new Map<string, string>();
  const block = new PayloadReader(reader.source, reader.offset, reader.offset + totalLength);
  while (!block.atEnd) {
    const key = block.lenencString('utf8');
    const value = block.lenencString('utf8');
    attributes.set(key, value);
  }
  reader.offset += totalLength;
  return attributes;
}

function writeConnectAttributes(writer: PayloadWriter, attributes: ReadonlyMap<string, string>): void {
  const block = new PayloadWriter(256);
  for (const [key, value] of attributes) block.lenencString(key).lenencString(value);
  writer.lenencString(block.finish());
}

export interface HandshakeResponseFields {
  capabilityFlags: number;
  maxPacketSize?: number;
  characterSet: number;
  mariadbExtendedCapabilities?: number;
  username: string;
  authResponse: Buffer;
  database?: string;
  authPluginName?: string;
  connectAttributes?: ReadonlyMap<string, string>;
}

/** Encodes a HandshakeResponse41 (the proxy as a client, and tests). Fields follow `capabilityFlags`. */
export function encodeHandshakeResponse41(fields: HandshakeResponseFields): Buffer {
  const flags = fields.capabilityFlags;
  const writer = new PayloadWriter(128);
  writeHandshakeResponseHeader(writer, fields);
  writer.nulString(fields.username);
  if (hasCapability(flags, CapabilityFlag.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA)) {
    writer.lenencString(fields.authResponse);
  } else if (hasCapability(flags, CapabilityFlag.CLIENT_SECURE_CONNECTION)) {
    if (fields.authResponse.length > 255) throw new RangeError('auth response longer than 255 bytes needs CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA');
    writer.u8(fields.authResponse.length).bytes(fields.authResponse);
  } else {
    writer.nulString(fields.authResponse);
  }
  if (hasCapability(flags, CapabilityFlag.CLIENT_CONNECT_WITH_DB)) writer.nulString(fields.database ?? '');
  if (hasCapability(flags, CapabilityFlag.CLIENT_PLUGIN_AUTH)) writer.nulString(fields.authPluginName ?? '');
  if (hasCapability(flags, CapabilityFlag.CLIENT_CONNECT_ATTRS)) writeConnectAttributes(writer, fields.connectAttributes ?? new Map());
  return writer.finish();
}

/** Encodes the 32-byte SSLRequest; `capabilityFlags` must include CLIENT_SSL. */
export function encodeSslRequest(fields: Pick<HandshakeResponseFields, 'capabilityFlags' | 'maxPacketSize' | 'characterSet' | 'mariadbExtendedCapabilities'>): Buffer {
  if (!hasCapability(fields.capabilityFlags, CapabilityFlag.CLIENT_SSL)) throw new RangeError('an SSLRequest must set CLIENT_SSL');
  const writer = new PayloadWriter(HANDSHAKE_RESPONSE_FIXED_LENGTH);
  writeHandshakeResponseHeader(writer, fields);
  return writer.finish();
}

function writeHandshakeResponseHeader(
  writer: PayloadWriter,
  fields: Pick<HandshakeResponseFields, 'capabilityFlags' | 'maxPacketSize' | 'characterSet' | 'mariadbExtendedCapabilities'>,
): void {
  writer
    .u32(fields.capabilityFlags)
    .u32(fields.maxPacketSize ?? MAX_PACKET_PAYLOAD_LENGTH)
    .u8(fields.characterSet)
    .zeros(19)
    .u32(hasCapability(fields.capabilityFlags, CapabilityFlag.CLIENT_LONG_PASSWORD) ? 0 : (fields.mariadbExtendedCapabilities ?? 0));
}

/* ------------------------------------------------------------------------------------ */
/* COM_CHANGE_USER                                                                       */
/* ------------------------------------------------------------------------------------ */

export interface ChangeUserRequest {
  username: string;
  authResponse: Buffer;
  database: string;
  /** Collation id, when the client sent one. */
  characterSet: number | undefined;
  authPluginName: string | undefined;
  connectAttributes: Map<string, string>;
}

/** Decodes a COM_CHANGE_USER payload; `capabilityFlags` are the client's negotiated flags. */
export function parseChangeUser(payload: Buffer, capabilityFlags: number): ChangeUserRequest {
  const reader = new PayloadReader(payload);
  if (reader.u8() !== Command.COM_CHANGE_USER) throw new MysqlProtocolError('malformed', 'not a COM_CHANGE_USER packet');
  const username = reader.nulString('utf8');
  const authResponse = Buffer.from(
    hasCapability(capabilityFlags, CapabilityFlag.CLIENT_SECURE_CONNECTION) ? reader.bytes(reader.u8()) : reader.nulBytes(),
  );
  const database = reader.nulString('utf8', true);
  let characterSet: number | undefined;
  let authPluginName: string | undefined;
  let connectAttributes = new Map<string, string>();
  if (reader.remaining >= 2) characterSet = reader.u16();
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_PLUGIN_AUTH) && !reader.atEnd) authPluginName = reader.nulString('utf8', true);
  if (hasCapability(capabilityFlags, CapabilityFlag.CLIENT_CONNECT_ATTRS) && !reader.atEnd) connectAttributes = readConnectAttributes(reader);
  return { username, authResponse, database, characterSet, authPluginName, connectAttributes };
}

/* ------------------------------------------------------------------------------------ */
/* OK packet and session state information                                               */
/* ------------------------------------------------------------------------------------ */

/**
 * One entry of an OK packet's session-state-change block. `type` is a SessionTrackType;
 * for system variables `name` is the variable, for the other types it is a fixed label
 * ("schema", "state_change", "gtids", "transaction_characteristics", "transaction_state",
 * "unknown") and `value` carries the data (hex for unknown types).
 */
export interface SessionStateChange {
  type: number;
  name: string;
  value: string;
}

export interface OkPacket {
  /** 0x00, or 0xFE when the OK replaces an EOF under CLIENT_DEPRECATE_EOF. */
  header: number;
  affectedRows: bigint;
  lastInsertId: bigint;
  statusFlags: number;
  warningCount: number;
  info: string;
  sessionStateChanges: SessionStateChange[];
}

const NO_SESSION_STATE_CHANGES: SessionStateChange[] = [];

/** Decodes an OK packet (header 0x00 or 0xFE) fully, session-state changes included. */
export function parseOkPacket(payload: Buffer, capabilities: number): OkPacket {
  const reader = new PayloadReader(payload);
  const header = reader.u8();
  if (header !== ResponseHeader.OK && header !== ResponseHeader.EOF) {
    throw new MysqlProtocolError('malformed', `0x${header.toString(16)} is not an OK packet header`);
  }
  const affectedRows = reader.lenencBigInt();
  const lastInsertId = reader.lenencBigInt();
  let statusFlags = 0;
  let warningCount = 0;
  if (hasCapability(capabilities, CapabilityFlag.CLIENT_PROTOCOL_41)) {
    statusFlags = reader.u16();
    warningCount = reader.u16();
  } else if (hasCapability(capabilities, CapabilityFlag.CLIENT_TRANSACTIONS)) {
    statusFlags = reader.u16();
  }
  let info = '';
  let sessionStateChanges = NO_SESSION_STATE_CHANGES;
  if (hasCapability(capabilities, CapabilityFlag.CLIENT_SESSION_TRACK)) {
    if (!reader.atEnd) info = reader.lenencString('utf8');
    if ((statusFlags & ServerStatus.SERVER_SESSION_STATE_CHANGED) !== 0 && !reader.atEnd) {
      const block = reader.lenencBytes();
      sessionStateChanges = parseSessionStateChanges(block);
    }
  } else if (!reader.atEnd) {
    // The documented format is string<EOF>, but MySQL and MariaDB write the message
    // length-encoded (net_store_data); accept both.
    const rest = reader.restBytes();
    const prefix = lenencIntSize(rest[0]!);
    let lengthEncoded = false;
    if (prefix > 0 && prefix <= rest.length && rest[0] !== 0xfb) {
      try {
        lengthEncoded = prefix + readLenencIntAt(rest, 0) === rest.length;
      } catch {
        lengthEncoded = false;
      }
    }
    info = (lengthEncoded ? rest.subarray(prefix) : rest).toString('utf8');
  }
  return { header, affectedRows, lastInsertId, statusFlags, warningCount, info, sessionStateChanges };
}

const SESSION_TRACK_LABELS: Record<number, string> = {
  [SessionTrackType.SESSION_TRACK_SCHEMA]: 'schema',
  [SessionTrackType.SESSION_TRACK_STATE_CHANGE]: 'state_change',
  [SessionTrackType.SESSION_TRACK_GTIDS]: 'gtids',
  [SessionTrackType.SESSION_TRACK_TRANSACTION_CHARACTERISTICS]: 'transaction_characteristics',
  [SessionTrackType.SESSION_TRACK_TRANSACTION_STATE]: 'transaction_state',
};

/** Decodes the session-state-change block (the bytes inside its length-encoded wrapper). */
export function parseSessionStateChanges(block: Buffer): SessionStateChange[] {
  const changes: SessionStateChange[] = [];
  const reader = new PayloadReader(block);
  while (!reader.atEnd) {
    const type = reader.u8();
    const data = reader.lenencBytes();
    const entry = new PayloadReader(data);
    switch (type) {
      case SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES:
        // One entry per variable in practice; loop in case a server packs several.
        while (!entry.atEnd) {
          const name = entry.lenencString('utf8');
          const value = entry.lenencString('utf8');
          changes.push({ type, name, value });
        }
        break;
      case SessionTrackType.SESSION_TRACK_GTIDS:
        entry.u8(); // encoding specification: 0 = the GTID set as text
        changes.push({ type, name: 'gtids', value: entry.lenencString('utf8') });
        break;
      case SessionTrackType.SESSION_TRACK_STATE_CHANGE:
        // The docs show a length-encoded "1", but MySQL and MariaDB send the bare byte '1' (data length 1).
        changes.push({ type, name: SESSION_TRACK_LABELS[type]!, value: data.length === 1 ? data.toString('latin1') : entry.lenencString('utf8') });
        break;
      case SessionTrackType.SESSION_TRACK_SCHEMA:
      case SessionTrackType.SESSION_TRACK_TRANSACTION_CHARACTERISTICS:
      case SessionTrackType.SESSION_TRACK_TRANSACTION_STATE:
        changes.push({ type, name: SESSION_TRACK_LABELS[type]!, value: entry.lenencString('utf8') });
        break;
      default:
        changes.push({ type, name: 'unknown', value: data.toString('hex') });
    }
  }
  return changes;
}

/** Encodes a session-state-change block (without its outer length prefix). */
export function encodeSessionStateChanges(changes: readonly SessionStateChange[]): Buffer {
  const writer = new PayloadWriter(64);
  for (const change of changes) {
    const data = new PayloadWriter(32);
    switch (change.type) {
      case SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES:
        data.lenencString(change.name).lenencString(change.value);
        break;
      case SessionTrackType.SESSION_TRACK_GTIDS:
        data.u8(0).lenencString(change.value);
        break;
      default:
        data.lenencString(change.value);
    }
    writer.u8(change.type).lenencString(data.finish());
  }
  return writer.finish();
}

export interface OkPacketFields {
  affectedRows?: number | bigint;
  lastInsertId?: number | bigint;
  statusFlags: number;
  warningCount?: number;
  info?: string;
  /** Sent only when the peer has CLIENT_SESSION_TRACK; sets SERVER_SESSION_STATE_CHANGED. */
  sessionStateChanges?: readonly SessionStateChange[];
}

/**
 * Encodes an OK packet for a peer with `capabilities`. `header` 0xFE makes it the
 * end-of-result-set OK of CLIENT_DEPRECATE_EOF.
 */
export function encodeOkPacket(fields: OkPacketFields, capabilities: number, header: number = ResponseHeader.OK): Buffer {
  const sessionTrack = hasCapability(capabilities, CapabilityFlag.CLIENT_SESSION_TRACK);
  const changes = sessionTrack ? (fields.sessionStateChanges ?? NO_SESSION_STATE_CHANGES) : NO_SESSION_STATE_CHANGES;
  let statusFlags = fields.statusFlags & 0xffff;
  statusFlags = changes.length > 0 ? statusFlags | ServerStatus.SERVER_SESSION_STATE_CHANGED : statusFlags & ~ServerStatus.SERVER_SESSION_STATE_CHANGED;
  const info = fields.info ?? '';
  const writer = new PayloadWriter(16 + info.length);
  writer
    .u8(header)
    .lenencInt(fields.affectedRows ?? 0)
    .lenencInt(fields.lastInsertId ?? 0);
  if (hasCapability(capabilities, CapabilityFlag.CLIENT_PROTOCOL_41)) {
    writer.u16(statusFlags).u16(fields.warningCount ?? 0);
  } else if (hasCapability(capabilities, CapabilityFlag.CLIENT_TRANSACTIONS)) {
    writer.u16(statusFlags);
  }
  if (sessionTrack) {
    if (info.length > 0 || changes.length > 0) writer.lenencString(info);
    if (changes.length > 0) writer.lenencString(encodeSessionStateChanges(changes));
  } else if (info.length > 0) {
    writer.bytes(info);
  }
  return writer.finish();
}

/* ------------------------------------------------------------------------------------ */
/* Cheap status reads for the hot path                                                   */
/* ------------------------------------------------------------------------------------ */

/** Payload offset of the status flags in an OK packet (header 0x00 or 0xFE) at `start`. */
function okStatusOffset(source: Buffer, start: number, end: number): number {
  let offset = start + 1;
  if (offset >= end) throw new MysqlProtocolError('truncated', 'OK packet ends before its affected rows');
  offset += lenencIntSize(source[offset]!);
  if (offset >= end) throw new MysqlProtocolError('truncated', 'OK packet ends before its last insert id');
  offset += lenencIntSize(source[offset]!);
  if (offset + 2 > end) throw new MysqlProtocolError('truncated', 'OK packet ends before its status flags');
  return offset;
}

/** Status flags of an OK packet (0x00, or 0xFE under CLIENT_DEPRECATE_EOF) without decoding the rest. Assumes 4.1. */
export function okStatusFlags(payload: Buffer): number {
  const offset = okStatusOffset(payload, 0, payload.length);
  return payload[offset]! | (payload[offset + 1]! << 8);
}

/** Warning count of an OK packet (4.1), 0 when the packet stops after the status flags. */
export function okWarningCount(payload: Buffer): number {
  const offset = okStatusOffset(payload, 0, payload.length) + 2;
  return offset + 2 <= payload.length ? payload[offset]! | (payload[offset + 1]! << 8) : 0;
}

/** Status flags of a classic EOF packet (0xFE, warnings<2>, status<2>). */
export function eofStatusFlags(payload: Buffer): number {
  if (payload.length < 5) throw new MysqlProtocolError('truncated', 'EOF packet ends before its status flags');
  return payload[3]! | (payload[4]! << 8);
}

/** Status flags of a result-set terminator: an EOF, or an OK (0xFE) under CLIENT_DEPRECATE_EOF. */
export function terminatorStatusFlags(payload: Buffer, deprecateEof: boolean): number {
  return deprecateEof ? okStatusFlags(payload) : eofStatusFlags(payload);
}

export function isErrPacket(payload: Buffer): boolean {
  return payload.length > 0 && payload[0] === ResponseHeader.ERR;
}

/** A classic EOF packet: 0xFE and shorter than 9 bytes (a longer 0xFE packet is a row or an OK). */
export function isEofPacket(payload: Buffer): boolean {
  return payload.length > 0 && payload.length <= EOF_PACKET_MAX_PAYLOAD_LENGTH && payload[0] === ResponseHeader.EOF;
}

/** An OK packet with header 0x00 (MySQL's own test: header 0 and at least 7 bytes). */
export function isOkPacket(payload: Buffer): boolean {
  return payload.length >= 7 && payload[0] === ResponseHeader.OK;
}

/* ------------------------------------------------------------------------------------ */
/* ERR and EOF                                                                           */
/* ------------------------------------------------------------------------------------ */

export interface ErrPacket {
  code: number;
  /** Five-character SQLSTATE; undefined when the server sent none (errors before the handshake). */
  sqlState: string | undefined;
  message: string;
}

export function parseErrPacket(payload: Buffer): ErrPacket {
  const reader = new PayloadReader(payload);
  if (reader.u8() !== ResponseHeader.ERR) throw new MysqlProtocolError('malformed', 'not an ERR packet');
  const code = reader.u16();
  let sqlState: string | undefined;
  if (reader.peek() === 0x23 /* '#' */ && reader.remaining >= 6) {
    reader.skip(1);
    sqlState = reader.bytes(5).toString('latin1');
  }
  return { code, sqlState, message: reader.restString('utf8') };
}

/**
 * Encodes an ERR packet. The SQL state marker is written unless `includeSqlState` is
 * false (a server refusing a connection before the handshake omits it).
 */
export function encodeErrPacket(error: { code: number; sqlState?: string; message: string }, includeSqlState = true): Buffer {
  const message = Buffer.from(error.message, 'utf8');
  const writer = new PayloadWriter(9 + message.length);
  writer.u8(ResponseHeader.ERR).u16(error.code);
  if (includeSqlState) {
    const sqlState = (error.sqlState ?? 'HY000').padEnd(5, '0').slice(0, 5);
    writer.u8(0x23).bytes(Buffer.from(sqlState, 'latin1'));
  }
  return writer.bytes(message).finish();
}

function describeErr(payload: Buffer): string {
  try {
    const error = parseErrPacket(payload);
    return `${error.code}${error.sqlState ? ` (${error.sqlState})` : ''}: ${error.message}`;
  } catch {
    return 'malformed ERR packet';
  }
}

export interface EofPacket {
  warningCount: number;
  statusFlags: number;
}

export function parseEofPacket(payload: Buffer): EofPacket {
  if (!isEofPacket(payload)) throw new MysqlProtocolError('malformed', 'not an EOF packet');
  if (payload.length < 5) return { warningCount: 0, statusFlags: 0 }; // pre-4.1 EOF is the single 0xFE byte
  return { warningCount: payload.readUInt16LE(1), statusFlags: payload.readUInt16LE(3) };
}

export function encodeEofPacket(fields: EofPacket): Buffer {
  const out = Buffer.allocUnsafe(5);
  out[0] = ResponseHeader.EOF;
  out.writeUInt16LE(fields.warningCount & 0xffff, 1);
  out.writeUInt16LE(fields.statusFlags & 0xffff, 3);
  return out;
}

/**
 * Rewrites a result-set terminator for a peer that negotiated CLIENT_DEPRECATE_EOF
 * differently from the server: EOF ⇄ OK(0xFE). Session-state changes in an OK cannot be
 * carried by an EOF and are dropped in that direction.
 */
export function translateTerminator(payload: Buffer, fromDeprecateEof: boolean, toDeprecateEof: boolean, toCapabilities: number): Buffer {
  if (fromDeprecateEof === toDeprecateEof) return payload;
  if (toDeprecateEof) {
    const eof = parseEofPacket(payload);
    return encodeOkPacket({ statusFlags: eof.statusFlags, warningCount: eof.warningCount }, toCapabilities, ResponseHeader.EOF);
  }
  const statusFlags = okStatusFlags(payload) & ~ServerStatus.SERVER_SESSION_STATE_CHANGED;
  return encodeEofPacket({ statusFlags, warningCount: okWarningCount(payload) });
}

/* ------------------------------------------------------------------------------------ */
/* Authentication exchange packets                                                       */
/* ------------------------------------------------------------------------------------ */

export interface AuthSwitchRequest {
  pluginName: string;
  /** Plugin data; for mysql_native_password and caching_sha2_password the 20-byte scramble + NUL. */
  pluginData: Buffer;
}

/** 0xFE, plugin name NUL, plugin data (rest). */
export function encodeAuthSwitchRequest(request: AuthSwitchRequest): Buffer {
  return new PayloadWriter(32 + request.pluginName.length + request.pluginData.length)
    .u8(ResponseHeader.EOF)
    .nulString(request.pluginName)
    .bytes(request.pluginData)
    .finish();
}

export function parseAuthSwitchRequest(payload: Buffer): AuthSwitchRequest {
  const reader = new PayloadReader(payload);
  if (reader.u8() !== ResponseHeader.EOF) throw new MysqlProtocolError('malformed', 'not an AuthSwitchRequest');
  // The lone 0xFE byte is the pre-plugin "switch to old password" request.
  if (reader.atEnd) return { pluginName: 'mysql_old_password', pluginData: Buffer.alloc(0) };
  const pluginName = reader.nulString('utf8', true);
  return { pluginName, pluginData: Buffer.from(reader.restBytes()) };
}

/** 0x01 + data (a caching_sha2_password status byte or a PEM public key). */
export function encodeAuthMoreData(data: Buffer | number): Buffer {
  const bytes = typeof data === 'number' ? Buffer.from([data]) : data;
  const out = Buffer.allocUnsafe(1 + bytes.length);
  out[0] = ResponseHeader.AUTH_MORE_DATA;
  bytes.copy(out, 1);
  return out;
}

/** The data of an AuthMoreData packet (view). */
export function parseAuthMoreData(payload: Buffer): Buffer {
  if (payload.length < 1 || payload[0] !== ResponseHeader.AUTH_MORE_DATA) throw new MysqlProtocolError('malformed', 'not an AuthMoreData packet');
  return payload.subarray(1);
}

/* ------------------------------------------------------------------------------------ */
/* Prepared statements                                                                   */
/* ------------------------------------------------------------------------------------ */

export interface PrepareOk {
  statementId: number;
  columnCount: number;
  parameterCount: number;
  warningCount: number;
}

/** Decodes COM_STMT_PREPARE_OK: 0x00, stmt id<4>, columns<2>, params<2>, reserved<1>, warnings<2>. */
export function parsePrepareOk(payload: Buffer): PrepareOk {
  const reader = new PayloadReader(payload);
  if (reader.u8() !== ResponseHeader.OK) throw new MysqlProtocolError('malformed', 'not a COM_STMT_PREPARE_OK packet');
  const statementId = reader.u32();
  const columnCount = reader.u16();
  const parameterCount = reader.u16();
  let warningCount = 0;
  if (!reader.atEnd) {
    reader.skip(1);
    if (reader.remaining >= 2) warningCount = reader.u16();
  }
  return { statementId, columnCount, parameterCount, warningCount };
}

/** Encodes COM_STMT_PREPARE_OK (the proxy answering a prepare from its metadata cache). */
export function encodePrepareOk(fields: PrepareOk): Buffer {
  return new PayloadWriter(12)
    .u8(ResponseHeader.OK)
    .u32(fields.statementId)
    .u16(fields.columnCount)
    .u16(fields.parameterCount)
    .u8(0)
    .u16(fields.warningCount)
    .finish();
}

/** Statement id at offset 1 of COM_STMT_EXECUTE/CLOSE/RESET/SEND_LONG_DATA/FETCH and COM_STMT_PREPARE_OK. */
export function readStatementId(payload: Buffer): number {
  if (payload.length < 5) throw new MysqlProtocolError('truncated', 'packet ends before its statement id');
  return payload.readUInt32LE(1);
}

/** Rewrites the statement id in place (proxy-side ids ⇄ server-side ids). */
export function writeStatementId(payload: Buffer, statementId: number): void {
  if (payload.length < 5) throw new MysqlProtocolError('truncated', 'packet ends before its statement id');
  payload.writeUInt32LE(statementId >>> 0, 1);
}

/** The flags byte (cursor type) of a COM_STMT_EXECUTE payload. */
export function executeFlags(payload: Buffer): number {
  if (payload.length < 6) throw new MysqlProtocolError('truncated', 'COM_STMT_EXECUTE ends before its flags');
  return payload[5]!;
}

/* ------------------------------------------------------------------------------------ */
/* What the first response packet means                                                  */
/* ------------------------------------------------------------------------------------ */

export type ResponseStart =
  | 'ok'
  | 'error'
  | 'eof'
  /** LOAD DATA LOCAL INFILE request: the client must send the file. */
  | 'local-infile'
  /** A column count: a (text or binary) result set follows. */
  | 'result-set'
  | 'prepare-ok'
  /** COM_FIELD_LIST: the first column definition. */
  | 'column-definition'
  /** COM_STMT_FETCH: the first row. */
  | 'row'
  /** COM_STATISTICS: the human-readable status string. */
  | 'statistics'
  | 'auth-switch'
  | 'auth-more-data';

/**
 * Classifies the first packet of a response to `command`: OK 0x00, ERR 0xFF, EOF 0xFE
 * shorter than 9 bytes (a longer 0xFE is an OK under CLIENT_DEPRECATE_EOF), LOCAL INFILE
 * 0xFB, and a result-set column count otherwise.
 */
export function classifyResponseStart(command: number, payload: Buffer): ResponseStart {
  if (payload.length === 0) throw new MysqlProtocolError('malformed', 'empty response packet');
  const first = payload[0]!;
  if (first === ResponseHeader.ERR) return 'error';
  const shortFe = first === ResponseHeader.EOF && payload.length <= EOF_PACKET_MAX_PAYLOAD_LENGTH;
  switch (command) {
    case Command.COM_STATISTICS:
      return 'statistics';
    case Command.COM_STMT_PREPARE:
      if (first === ResponseHeader.OK) return 'prepare-ok';
      break;
    case Command.COM_CHANGE_USER:
      if (first === ResponseHeader.OK) return 'ok';
      if (first === ResponseHeader.EOF) return 'auth-switch';
      if (first === ResponseHeader.AUTH_MORE_DATA) return 'auth-more-data';
      break;
    case Command.COM_FIELD_LIST:
      if (first === ResponseHeader.EOF && payload.length < MAX_PACKET_PAYLOAD_LENGTH) return shortFe ? 'eof' : 'ok';
      return 'column-definition';
    case Command.COM_STMT_FETCH:
      if (first === ResponseHeader.EOF && payload.length < MAX_PACKET_PAYLOAD_LENGTH) return shortFe ? 'eof' : 'ok';
      return 'row';
    default:
      if (first === ResponseHeader.OK) return 'ok';
      if (first === ResponseHeader.EOF) return shortFe ? 'eof' : 'ok';
      if (first === ResponseHeader.LOCAL_INFILE) return 'local-infile';
      return 'result-set';
  }
  throw new MysqlProtocolError('unexpected-packet', `0x${first.toString(16)} cannot start a response to command 0x${command.toString(16)}`);
}

/** The column count of a result-set header packet. */
export function readColumnCount(payload: Buffer): number {
  const count = readLenencIntAt(payload, 0);
  if (count === 0) throw new MysqlProtocolError('malformed', 'a result set has at least one column');
  return count;
}

/* ------------------------------------------------------------------------------------ */
/* Response tracker                                                                      */
/* ------------------------------------------------------------------------------------ */

/** What a server packet was, as reported by MysqlResponseTracker.feed (numbers: no allocation on the hot path). */
export const PacketRole = {
  Ok: 1,
  Error: 2,
  /** A classic EOF answering a simple command (COM_SET_OPTION on old servers, COM_DEBUG). */
  Eof: 3,
  /** Column count opening a result set. */
  ResultSetHeader: 4,
  ColumnDefinition: 5,
  /** The EOF after column (or parameter) definitions; absent under CLIENT_DEPRECATE_EOF. */
  MetadataEof: 6,
  Row: 7,
  /** EOF, or OK(0xFE) under CLIENT_DEPRECATE_EOF, ending a result set's rows. */
  ResultSetTerminator: 8,
  LocalInfileRequest: 9,
  PrepareOk: 10,
  ParameterDefinition: 11,
  /** The next physical part of a ≥ 16 MB logical packet. */
  Continuation: 12,
  /** COM_STATISTICS answer. */
  Statistics: 13,
  AuthSwitchRequest: 14,
  AuthMoreData: 15,
} as const;
export type PacketRole = (typeof PacketRole)[keyof typeof PacketRole];

const State = {
  /** First packet of a (next) result: OK, ERR, LOCAL INFILE or a column count. */
  ExpectResult: 0,
  Columns: 1,
  ColumnsEof: 2,
  Rows: 3,
  /** LOAD DATA LOCAL INFILE: the client is sending the file. */
  InfileFromClient: 4,
  PrepareFirst: 5,
  PrepareParams: 6,
  PrepareParamsEof: 7,
  PrepareColumns: 8,
  PrepareColumnsEof: 9,
  FieldList: 10,
  Statistics: 11,
  /** One OK, ERR or EOF. */
  Simple: 12,
  /** COM_CHANGE_USER: server's turn in the authentication exchange. */
  Auth: 13,
  /** COM_CHANGE_USER: client's turn. */
  AuthFromClient: 14,
  Done: 15,
} as const;
type State = (typeof State)[keyof typeof State];

const UNKNOWN_STATUS = -1;
const CURSOR_REQUEST_MASK = CursorType.CURSOR_TYPE_READ_ONLY | CursorType.CURSOR_TYPE_FOR_UPDATE | CursorType.CURSOR_TYPE_SCROLLABLE;

/**
 * Follows a server's response to one command, packet by packet, without copying or
 * decoding rows, and says when it is complete and with which status flags — so the pool
 * knows when the connection can go back (complete, SERVER_STATUS_IN_TRANS clear, no
 * cursor left open).
 *
 * Covers: COM_QUERY text result sets with and without CLIENT_DEPRECATE_EOF, multiple
 * results chained by SERVER_MORE_RESULTS_EXISTS, ERR at any point, LOCAL INFILE (feed the
 * client's packets with feedClientPacket), COM_STMT_PREPARE (parameter and column
 * definitions), COM_STMT_EXECUTE binary result sets including cursors (metadata only,
 * then COM_STMT_FETCH), COM_FIELD_LIST, COM_STATISTICS, the no-response commands, and the
 * COM_CHANGE_USER authentication exchange. Reuse one instance per server connection:
 * `start()` resets it for each command.
 *
 * `capabilities` are those negotiated between the proxy and this server connection; the
 * optional-metadata extensions (CLIENT_OPTIONAL_RESULTSET_METADATA, MariaDB's
 * CACHE_METADATA) must not be negotiated.
 */
export class MysqlResponseTracker {
  private readonly deprecateEof: boolean;
  private readonly sessionTrack: boolean;
  private state: State = State.Done;
  private command = -1;
  private cursorRequested = false;
  private definitionsLeft = 0;
  private columnsAfterParameters = 0;
  private serverContinuation = false;
  private clientContinuation = false;
  private status = UNKNOWN_STATUS;
  private endsMetadataFlag = false;

  /** Warning count of the last OK/EOF. */
  warningCount = 0;
  /** From the last OK with header 0x00 (what LAST_INSERT_ID() / ROW_COUNT() would report). */
  affectedRows = 0n;
  lastInsertId = 0n;
  /** Results completed in this response (OKs and result sets), for multi-result bookkeeping. */
  resultCount = 0;
  /** The ERR packet that ended the response, if any. */
  error: ErrPacket | undefined;
  /** COM_STMT_PREPARE_OK header, if the command was a prepare that succeeded. */
  prepareOk: PrepareOk | undefined;
  /** Session-state changes reported by OK packets of this response, in order. */
  sessionStateChanges: SessionStateChange[] = NO_SESSION_STATE_CHANGES;

  constructor(capabilities: number) {
    this.deprecateEof = hasCapability(capabilities, CapabilityFlag.CLIENT_DEPRECATE_EOF);
    this.sessionTrack = hasCapability(capabilities, CapabilityFlag.CLIENT_SESSION_TRACK);
  }

  /**
   * Starts tracking the response to `command` (first payload byte of the client's packet).
   * `commandPayload` is needed for COM_STMT_EXECUTE (cursor flags) and ignored otherwise.
   * Throws 'unsupported' for replication/clone commands the proxy does not relay.
   */
  start(command: number, commandPayload?: Buffer): this {
    this.command = command;
    this.cursorRequested = false;
    this.definitionsLeft = 0;
    this.columnsAfterParameters = 0;
    this.serverContinuation = false;
    this.clientContinuation = false;
    this.status = UNKNOWN_STATUS;
    this.endsMetadataFlag = false;
    this.warningCount = 0;
    this.affectedRows = 0n;
    this.lastInsertId = 0n;
    this.resultCount = 0;
    this.error = undefined;
    this.prepareOk = undefined;
    this.sessionStateChanges = NO_SESSION_STATE_CHANGES;
    switch (command) {
      case Command.COM_QUERY:
      case Command.COM_PROCESS_INFO:
        this.state = State.ExpectResult;
        break;
      case Command.COM_STMT_EXECUTE:
        this.state = State.ExpectResult;
        this.cursorRequested = commandPayload !== undefined && commandPayload.length > 5 && (commandPayload[5]! & CURSOR_REQUEST_MASK) !== 0;
        break;
      case Command.COM_STMT_PREPARE:
        this.state = State.PrepareFirst;
        break;
      case Command.COM_STMT_FETCH:
        this.state = State.Rows;
        break;
      case Command.COM_FIELD_LIST:
        this.state = State.FieldList;
        break;
      case Command.COM_STATISTICS:
        this.state = State.Statistics;
        break;
      case Command.COM_CHANGE_USER:
        this.state = State.Auth;
        break;
      case Command.COM_QUIT:
      case Command.COM_STMT_CLOSE:
      case Command.COM_STMT_SEND_LONG_DATA:
        this.state = State.Done; // no response at all
        break;
      case Command.COM_BINLOG_DUMP:
      case Command.COM_BINLOG_DUMP_GTID:
      case Command.COM_TABLE_DUMP:
      case Command.COM_REGISTER_SLAVE:
      case Command.COM_CONNECT_OUT:
      case Command.COM_CLONE:
      case Command.COM_SUBSCRIBE_GROUP_REPLICATION_STREAM:
      case Command.COM_STMT_BULK_EXECUTE:
        this.state = State.Done;
        throw new MysqlProtocolError('unsupported', `command 0x${command.toString(16)} is not relayed by the proxy`);
      default:
        // COM_INIT_DB, COM_PING, COM_RESET_CONNECTION, COM_STMT_RESET, COM_SET_OPTION,
        // COM_PROCESS_KILL, COM_REFRESH, COM_DEBUG… and unknown commands (answered by ERR).
        this.state = State.Simple;
    }
    return this;
  }

  /** The response is complete: the connection is idle again (check inTransaction / cursorOpen before pooling it). */
  get isComplete(): boolean {
    return this.state === State.Done;
  }

  /** The server waits for the client: LOCAL INFILE data, or an auth-exchange reply. */
  get awaitingClient(): boolean {
    return this.state === State.InfileFromClient || this.state === State.AuthFromClient;
  }

  /**
   * Server status flags of the last OK/EOF of this response, or undefined when none
   * carried any (an ERR, a COM_STMT_PREPARE_OK, a statistics string): the caller then
   * keeps the previously known status (and treats "unknown in a transaction" as in one).
   */
  get statusFlags(): number | undefined {
    return this.status === UNKNOWN_STATUS ? undefined : this.status;
  }

  /** SERVER_STATUS_IN_TRANS of the last status seen; undefined when unknown. */
  get inTransaction(): boolean | undefined {
    return this.status === UNKNOWN_STATUS ? undefined : (this.status & ServerStatus.SERVER_STATUS_IN_TRANS) !== 0;
  }

  /** A server-side cursor stays open after this response (COM_STMT_FETCH will follow). */
  get cursorOpen(): boolean {
    return this.status !== UNKNOWN_STATUS && (this.status & ServerStatus.SERVER_STATUS_CURSOR_EXISTS) !== 0 && (this.status & ServerStatus.SERVER_STATUS_LAST_ROW_SENT) === 0;
  }

  /** The response ended with an ERR packet. */
  get endedWithError(): boolean {
    return this.error !== undefined;
  }

  /**
   * The packet just fed was the last column or parameter definition of its block (whether
   * or not an EOF follows): where a forwarder inserts an EOF for a client without
   * CLIENT_DEPRECATE_EOF when the server has it.
   */
  get endsMetadata(): boolean {
    return this.endsMetadataFlag;
  }

  /** Feeds one server packet given as a payload view. */
  feed(payload: Buffer): PacketRole {
    return this.feedAt(payload, 0, payload.length);
  }

  /**
   * Feeds one physical server packet, `source[payloadStart, payloadStart + payloadLength)`
   * — the MysqlPacketFramer callback's arguments, so rows cost no allocation. Throws
   * MysqlProtocolError('unexpected-packet') when the packet cannot occur in this state.
   */
  feedAt(source: Buffer, payloadStart: number, payloadLength: number): PacketRole {
    this.endsMetadataFlag = false;
    if (this.serverContinuation) {
      this.serverContinuation = payloadLength === MAX_PACKET_PAYLOAD_LENGTH;
      return PacketRole.Continuation;
    }
    if (payloadLength === 0) throw this.unexpected('an empty packet');
    this.serverContinuation = payloadLength === MAX_PACKET_PAYLOAD_LENGTH;
    const first = source[payloadStart]!;
    const end = payloadStart + payloadLength;
    switch (this.state) {
      case State.ExpectResult:
        return this.onResultStart(source, payloadStart, end, first);
      case State.Columns:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        if (--this.definitionsLeft === 0) {
          this.endsMetadataFlag = true;
          this.state = this.deprecateEof ? State.Rows : State.ColumnsEof;
        }
        return PacketRole.ColumnDefinition;
      case State.ColumnsEof:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        if (!this.isTerminator(first, payloadLength)) throw this.unexpected(`0x${first.toString(16)} where the metadata EOF belongs`);
        this.absorbEof(source, payloadStart, payloadLength);
        // A cursor was opened: only the metadata is sent now, rows come with COM_STMT_FETCH.
        this.state = this.cursorRequested && (this.status & ServerStatus.SERVER_STATUS_CURSOR_EXISTS) !== 0 ? State.Done : State.Rows;
        return PacketRole.MetadataEof;
      case State.Rows:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        if (!this.isTerminator(first, payloadLength)) return PacketRole.Row;
        this.absorbTerminator(source, payloadStart, end);
        this.resultCount++;
        this.state = this.moreResults() ? State.ExpectResult : State.Done;
        return PacketRole.ResultSetTerminator;
      case State.PrepareFirst:
        return this.onPrepareFirst(source, payloadStart, end, first);
      case State.PrepareParams:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        if (--this.definitionsLeft === 0) {
          this.endsMetadataFlag = true;
          this.state = this.deprecateEof ? this.afterParameters() : State.PrepareParamsEof;
        }
        return PacketRole.ParameterDefinition;
      case State.PrepareParamsEof:
        if (!this.isTerminator(first, payloadLength)) throw this.unexpected(`0x${first.toString(16)} where the parameter EOF belongs`);
        this.absorbEof(source, payloadStart, payloadLength);
        this.state = this.afterParameters();
        return PacketRole.MetadataEof;
      case State.PrepareColumns:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        if (--this.definitionsLeft === 0) {
          this.endsMetadataFlag = true;
          this.state = this.deprecateEof ? State.Done : State.PrepareColumnsEof;
        }
        return PacketRole.ColumnDefinition;
      case State.PrepareColumnsEof:
        if (!this.isTerminator(first, payloadLength)) throw this.unexpected(`0x${first.toString(16)} where the column EOF belongs`);
        this.absorbEof(source, payloadStart, payloadLength);
        this.state = State.Done;
        return PacketRole.MetadataEof;
      case State.FieldList:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        if (!this.isTerminator(first, payloadLength)) return PacketRole.ColumnDefinition;
        this.absorbTerminator(source, payloadStart, end);
        this.state = State.Done;
        return PacketRole.ResultSetTerminator;
      case State.Statistics:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        this.state = State.Done;
        return PacketRole.Statistics;
      case State.Simple:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        if (first === ResponseHeader.OK) {
          this.absorbOk(source, payloadStart, end, true);
          this.state = State.Done;
          return PacketRole.Ok;
        }
        if (first === ResponseHeader.EOF) {
          const role = this.absorbFe(source, payloadStart, end);
          this.state = State.Done;
          return role;
        }
        throw this.unexpected(`0x${first.toString(16)} in answer to command 0x${this.command.toString(16)}`);
      case State.Auth:
        if (first === ResponseHeader.ERR) return this.onError(source, payloadStart, end);
        if (first === ResponseHeader.OK) {
          this.absorbOk(source, payloadStart, end, true);
          this.state = State.Done;
          return PacketRole.Ok;
        }
        if (first === ResponseHeader.EOF) {
          this.state = State.AuthFromClient;
          return PacketRole.AuthSwitchRequest;
        }
        if (first === ResponseHeader.AUTH_MORE_DATA) {
          // caching_sha2_password fast-auth success is followed by the server's OK; anything
          // else (perform full authentication, a public key) waits for the client.
          const fastAuthOk = payloadLength === 2 && source[payloadStart + 1] === 0x03;
          if (!fastAuthOk) this.state = State.AuthFromClient;
          return PacketRole.AuthMoreData;
        }
        throw this.unexpected(`0x${first.toString(16)} during COM_CHANGE_USER authentication`);
      case State.InfileFromClient:
      case State.AuthFromClient:
        throw this.unexpected('a server packet while the client has the turn');
      default:
        throw this.unexpected('a server packet after the response was complete');
    }
  }

  /**
   * Feeds the length of a packet the client sends while `awaitingClient`: LOCAL INFILE
   * data (an empty packet ends the file, unless it terminates a 16 MB continuation) or an
   * auth-exchange reply.
   */
  feedClientPacket(payloadLength: number): void {
    if (this.state === State.AuthFromClient) {
      this.state = State.Auth;
      return;
    }
    if (this.state !== State.InfileFromClient) throw this.unexpected('a client packet while the server has the turn');
    const endsContinuation = this.clientContinuation;
    this.clientContinuation = payloadLength === MAX_PACKET_PAYLOAD_LENGTH;
    if (payloadLength === 0 && !endsContinuation) this.state = State.ExpectResult; // the server answers with OK/ERR
  }

  private onResultStart(source: Buffer, start: number, end: number, first: number): PacketRole {
    switch (first) {
      case ResponseHeader.ERR:
        return this.onError(source, start, end);
      case ResponseHeader.OK:
        this.absorbOk(source, start, end, true);
        this.resultCount++;
        this.state = this.moreResults() ? State.ExpectResult : State.Done;
        return PacketRole.Ok;
      case ResponseHeader.EOF: {
        const role = this.absorbFe(source, start, end);
        this.resultCount++;
        this.state = this.moreResults() ? State.ExpectResult : State.Done;
        return role;
      }
      case ResponseHeader.LOCAL_INFILE:
        this.clientContinuation = false;
        this.state = State.InfileFromClient;
        return PacketRole.LocalInfileRequest;
      default: {
        const columns = readLenencIntAt(source, start, end);
        if (columns === 0) throw new MysqlProtocolError('malformed', 'a result set has at least one column');
        this.definitionsLeft = columns;
        this.state = State.Columns;
        return PacketRole.ResultSetHeader;
      }
    }
  }

  private onPrepareFirst(source: Buffer, start: number, end: number, first: number): PacketRole {
    if (first === ResponseHeader.ERR) return this.onError(source, start, end);
    if (first !== ResponseHeader.OK) throw this.unexpected(`0x${first.toString(16)} in answer to COM_STMT_PREPARE`);
    const prepareOk = parsePrepareOk(source.subarray(start, end));
    this.prepareOk = prepareOk;
    this.warningCount = prepareOk.warningCount;
    this.columnsAfterParameters = prepareOk.columnCount;
    if (prepareOk.parameterCount > 0) {
      this.definitionsLeft = prepareOk.parameterCount;
      this.state = State.PrepareParams;
    } else {
      this.state = this.afterParameters();
    }
    return PacketRole.PrepareOk;
  }

  private afterParameters(): State {
    if (this.columnsAfterParameters === 0) return State.Done;
    this.definitionsLeft = this.columnsAfterParameters;
    this.columnsAfterParameters = 0;
    return State.PrepareColumns;
  }

  private onError(source: Buffer, start: number, end: number): PacketRole {
    this.error = parseErrPacket(source.subarray(start, end));
    this.state = State.Done;
    return PacketRole.Error;
  }

  /**
   * A 0xFE packet ends a result set (or answers a simple command): a classic EOF is
   * shorter than 9 bytes; under CLIENT_DEPRECATE_EOF it is an OK packet, and anything
   * of maximum length is a row whose first column is ≥ 16 MB.
   */
  private isTerminator(first: number, payloadLength: number): boolean {
    if (first !== ResponseHeader.EOF) return false;
    return this.deprecateEof ? payloadLength < MAX_PACKET_PAYLOAD_LENGTH : payloadLength <= EOF_PACKET_MAX_PAYLOAD_LENGTH;
  }

  private absorbTerminator(source: Buffer, start: number, end: number): void {
    if (this.deprecateEof) this.absorbOk(source, start, end, false);
    else this.absorbEof(source, start, end - start);
  }

  /** A 0xFE packet where an OK/EOF answers the command itself. */
  private absorbFe(source: Buffer, start: number, end: number): PacketRole {
    if (end - start <= EOF_PACKET_MAX_PAYLOAD_LENGTH && !this.deprecateEof) {
      this.absorbEof(source, start, end - start);
      return PacketRole.Eof;
    }
    this.absorbOk(source, start, end, false);
    return PacketRole.Ok;
  }

  private absorbEof(source: Buffer, start: number, payloadLength: number): void {
    if (payloadLength >= 5) {
      this.warningCount = source[start + 1]! | (source[start + 2]! << 8);
      this.status = source[start + 3]! | (source[start + 4]! << 8);
    }
  }

  private absorbOk(source: Buffer, start: number, end: number, recordCounters: boolean): void {
    const statusOffset = okStatusOffset(source, start, end);
    const status = source[statusOffset]! | (source[statusOffset + 1]! << 8);
    this.status = status;
    this.warningCount = statusOffset + 4 <= end ? source[statusOffset + 2]! | (source[statusOffset + 3]! << 8) : 0;
    if (recordCounters) {
      const reader = new PayloadReader(source, start + 1, end);
      this.affectedRows = reader.lenencBigInt();
      this.lastInsertId = reader.lenencBigInt();
    }
    if (this.sessionTrack && (status & ServerStatus.SERVER_SESSION_STATE_CHANGED) !== 0) {
      const changes = parseOkPacket(source.subarray(start, end), CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_SESSION_TRACK).sessionStateChanges;
      if (changes.length > 0) {
        if (this.sessionStateChanges === NO_SESSION_STATE_CHANGES) this.sessionStateChanges = [];
        this.sessionStateChanges.push(...changes);
      }
    }
  }

  private moreResults(): boolean {
    return this.status !== UNKNOWN_STATUS && (this.status & ServerStatus.SERVER_MORE_RESULTS_EXISTS) !== 0;
  }

  private unexpected(what: string): MysqlProtocolError {
    return new MysqlProtocolError('unexpected-packet', `response tracker got ${what}`);
  }
}
