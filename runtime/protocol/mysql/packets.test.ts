import * as path from 'node:path';
import { nativePasswordToken } from './auth';
import {
  AuthPlugin,
  CapabilityFlag,
  CollationId,
  Command,
  CursorType,
  MAX_PACKET_PAYLOAD_LENGTH,
  MysqlError,
  ServerStatus,
  SessionTrackType,
} from './constants';
import { MysqlPacketFramer, MysqlProtocolError, MysqlProtocolErrorCode, PayloadWriter, encodeLenencString, framePayload } from './framing';
import {
  HandshakeResponse41,
  MysqlResponseTracker,
  PacketRole,
  SslRequest,
  classifyResponseStart,
  encodeAuthMoreData,
  encodeAuthSwitchRequest,
  encodeEofPacket,
  encodeErrPacket,
  encodeHandshakeResponse41,
  encodeHandshakeV10,
  encodeOkPacket,
  encodePrepareOk,
  encodeSslRequest,
  eofStatusFlags,
  executeFlags,
  isEofPacket,
  isErrPacket,
  isOkPacket,
  okStatusFlags,
  okWarningCount,
  parseAuthMoreData,
  parseAuthSwitchRequest,
  parseChangeUser,
  parseEofPacket,
  parseErrPacket,
  parseHandshakeResponse,
  parseHandshakeV10,
  parseOkPacket,
  parsePrepareOk,
  parseSessionStateChanges,
  readColumnCount,
  readStatementId,
  terminatorStatusFlags,
  translateTerminator,
  writeStatementId,
} from './packets';

// mysql2's own packet classes (not exported by the package, so loaded by path), to check
// our encoders and parsers against a client we did not write.
const mysql2Lib = path.join(path.dirname(require.resolve('mysql2')), 'lib');
interface Mysql2Packet {
  buffer: Buffer;
}
interface Mysql2PacketClass {
  new (id: number, buffer: Buffer, start: number, end: number): Mysql2Packet;
}
interface Mysql2HandshakeArgs {
  serverVersion: string;
  connectionId: number;
  capabilityFlags: number;
  authPluginData1: Buffer;
  authPluginData2: Buffer;
  authPluginName: string;
  characterSet: number;
  statusFlags: number;
}
const Mysql2PacketCtor = require(path.join(mysql2Lib, 'packets/packet.js')) as Mysql2PacketClass;
const Mysql2Handshake = require(path.join(mysql2Lib, 'packets/handshake.js')) as { fromPacket(packet: Mysql2Packet): Mysql2HandshakeArgs };
const Mysql2HandshakeResponse = require(path.join(mysql2Lib, 'packets/handshake_response.js')) as {
  new (args: Record<string, unknown>): { toPacket(): Mysql2Packet };
  fromPacket(packet: Mysql2Packet): { user: string; database: string; authPluginName: string; authToken: Buffer; connectAttributes: Record<string, string> };
};
const Mysql2SslRequest = require(path.join(mysql2Lib, 'packets/ssl_request.js')) as { new (flags: number, charset: number): { toPacket(): Mysql2Packet } };

/** Wraps a payload in a mysql2 Packet (4 header bytes, offset past them). */
function mysql2Packet(payload: Buffer): Mysql2Packet {
  const buffer = Buffer.concat([Buffer.alloc(4), payload]);
  return new Mysql2PacketCtor(0, buffer, 0, buffer.length);
}

function expectProtocolError(action: () => unknown, code?: MysqlProtocolErrorCode): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(MysqlProtocolError);
  if (code !== undefined) expect((caught as MysqlProtocolError).code).toBe(code);
}

/** Runs a parser over every prefix of a payload: it may succeed or throw MysqlProtocolError, nothing else. */
function expectOnlyTypedErrorsOnTruncation(payload: Buffer, parse: (bytes: Buffer) => unknown): void {
  for (let length = 0; length < payload.length; length++) {
    try {
      parse(payload.subarray(0, length));
    } catch (error) {
      if (!(error instanceof MysqlProtocolError)) throw new Error(`prefix of ${length} bytes threw ${String(error)}`);
    }
  }
}

const SCRAMBLE = Buffer.from('0123456789abcdefghij', 'latin1');

const SERVER_CAPABILITIES =
  CapabilityFlag.CLIENT_LONG_PASSWORD |
  CapabilityFlag.CLIENT_FOUND_ROWS |
  CapabilityFlag.CLIENT_CONNECT_WITH_DB |
  CapabilityFlag.CLIENT_LOCAL_FILES |
  CapabilityFlag.CLIENT_PROTOCOL_41 |
  CapabilityFlag.CLIENT_SSL |
  CapabilityFlag.CLIENT_TRANSACTIONS |
  CapabilityFlag.CLIENT_SECURE_CONNECTION |
  CapabilityFlag.CLIENT_MULTI_STATEMENTS |
  CapabilityFlag.CLIENT_MULTI_RESULTS |
  CapabilityFlag.CLIENT_PS_MULTI_RESULTS |
  CapabilityFlag.CLIENT_PLUGIN_AUTH |
  CapabilityFlag.CLIENT_CONNECT_ATTRS |
  CapabilityFlag.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
  CapabilityFlag.CLIENT_SESSION_TRACK |
  CapabilityFlag.CLIENT_DEPRECATE_EOF;

describe('Handshake V10', () => {
  const handshake = {
    serverVersion: '8.0.36-tidepool',
    connectionId: 0x01020304,
    scramble: SCRAMBLE,
    capabilityFlags: SERVER_CAPABILITIES,
    characterSet: CollationId.UTF8MB4_0900_AI_CI,
    statusFlags: ServerStatus.SERVER_STATUS_AUTOCOMMIT,
    authPluginName: AuthPlugin.CACHING_SHA2_PASSWORD,
  };

  it('lays out the fields as Protocol::HandshakeV10 documents', () => {
    const payload = encodeHandshakeV10(handshake);
    const versionEnd = 1 + handshake.serverVersion.length;
    expect(payload[0]).toBe(10);
    expect(payload.toString('latin1', 1, versionEnd)).toBe(handshake.serverVersion);
    expect(payload[versionEnd]).toBe(0);
    expect(payload.readUInt32LE(versionEnd + 1)).toBe(0x01020304);
    expect(payload.subarray(versionEnd + 5, versionEnd + 13)).toEqual(SCRAMBLE.subarray(0, 8));
    const afterPart1 = versionEnd + 13;
    expect(payload[afterPart1]).toBe(0); // filler
    expect(payload.readUInt16LE(afterPart1 + 1)).toBe(SERVER_CAPABILITIES & 0xffff);
    expect(payload[afterPart1 + 3]).toBe(255);
    expect(payload.readUInt16LE(afterPart1 + 4)).toBe(ServerStatus.SERVER_STATUS_AUTOCOMMIT);
    expect(payload.readUInt16LE(afterPart1 + 6)).toBe(SERVER_CAPABILITIES >>> 16);
    expect(payload[afterPart1 + 8]).toBe(21); // scramble + NUL
    expect(payload.subarray(afterPart1 + 9, afterPart1 + 19)).toEqual(Buffer.alloc(10)); // reserved
    expect(payload.subarray(afterPart1 + 19, afterPart1 + 31)).toEqual(SCRAMBLE.subarray(8));
    expect(payload[afterPart1 + 31]).toBe(0);
    expect(payload.toString('latin1', afterPart1 + 32)).toBe('caching_sha2_password\0');
  });

  it('round-trips through our parser', () => {
    const parsed = parseHandshakeV10(encodeHandshakeV10(handshake));
    expect(parsed).toEqual({ ...handshake, mariadbExtendedCapabilities: 0 });
  });

  it('is parsed by mysql2 as the same handshake', () => {
    const parsed = Mysql2Handshake.fromPacket(mysql2Packet(encodeHandshakeV10(handshake)));
    expect(parsed.serverVersion).toBe(handshake.serverVersion);
    expect(parsed.connectionId).toBe(handshake.connectionId);
    expect(parsed.capabilityFlags >>> 0).toBe(SERVER_CAPABILITIES >>> 0);
    expect(Buffer.concat([parsed.authPluginData1, parsed.authPluginData2.subarray(0, 12)])).toEqual(SCRAMBLE);
    expect(parsed.authPluginName).toBe('caching_sha2_password');
  });

  it('carries MariaDB extended capabilities when CLIENT_MYSQL is unset', () => {
    const mariadb = { ...handshake, capabilityFlags: SERVER_CAPABILITIES & ~CapabilityFlag.CLIENT_LONG_PASSWORD, mariadbExtendedCapabilities: 0x1c };
    expect(parseHandshakeV10(encodeHandshakeV10(mariadb)).mariadbExtendedCapabilities).toBe(0x1c);
  });

  it('reports an ERR packet sent instead of a handshake, and truncation, as typed errors', () => {
    expectProtocolError(() => parseHandshakeV10(encodeErrPacket({ ...MysqlError.ER_CON_COUNT_ERROR }, false)), 'unexpected-packet');
    expectProtocolError(() => parseHandshakeV10(Buffer.from([9, 0x35, 0])), 'unsupported');
    expectOnlyTypedErrorsOnTruncation(encodeHandshakeV10(handshake), parseHandshakeV10);
  });
});

describe('HandshakeResponse41 and SSLRequest', () => {
  const clientFlags =
    (SERVER_CAPABILITIES | CapabilityFlag.CLIENT_CONNECT_WITH_DB) & ~CapabilityFlag.CLIENT_SSL & ~CapabilityFlag.CLIENT_DEPRECATE_EOF;

  it('round-trips every optional field', () => {
    const fields = {
      capabilityFlags: clientFlags,
      maxPacketSize: 1 << 24,
      characterSet: CollationId.UTF8MB4_GENERAL_CI,
      username: 'app_user',
      authResponse: Buffer.alloc(32, 7),
      database: 'shop',
      authPluginName: AuthPlugin.CACHING_SHA2_PASSWORD,
      connectAttributes: new Map([
        ['_client_name', 'libmysql'],
        ['program_name', 'mysql'],
      ]),
    };
    const parsed = parseHandshakeResponse(encodeHandshakeResponse41(fields)) as HandshakeResponse41;
    expect(parsed.kind).toBe('handshake-response');
    expect(parsed).toEqual({ kind: 'handshake-response', ...fields, mariadbExtendedCapabilities: 0, zstdCompressionLevel: undefined });
  });

  it('reads what mysql2 sends (and mysql2 reads what we encode)', () => {
    const fromMysql2 = new Mysql2HandshakeResponse({
      user: 'bob',
      database: 'inventory',
      password: 's3cret',
      authPluginData1: SCRAMBLE.subarray(0, 8),
      authPluginData2: SCRAMBLE.subarray(8),
      flags: clientFlags,
      charsetNumber: CollationId.UTF8MB4_GENERAL_CI,
      connectAttributes: { _client_name: 'Node-MySQL-2' },
    }).toPacket();
    const parsed = parseHandshakeResponse(fromMysql2.buffer.subarray(4)) as HandshakeResponse41;
    expect(parsed.username).toBe('bob');
    expect(parsed.database).toBe('inventory');
    expect(parsed.authPluginName).toBe('mysql_native_password');
    expect(parsed.authResponse).toEqual(nativePasswordToken('s3cret', SCRAMBLE));
    expect(parsed.connectAttributes.get('_client_name')).toBe('Node-MySQL-2');

    const ours = encodeHandshakeResponse41({
      capabilityFlags: clientFlags,
      characterSet: CollationId.UTF8MB4_GENERAL_CI,
      username: 'alice',
      authResponse: Buffer.from([1, 2, 3]),
      database: 'db1',
      authPluginName: AuthPlugin.MYSQL_NATIVE_PASSWORD,
      connectAttributes: new Map([['k', 'v']]),
    });
    const back = Mysql2HandshakeResponse.fromPacket(mysql2Packet(ours));
    expect(back.user).toBe('alice');
    expect(back.database).toBe('db1');
    expect(back.authPluginName).toBe('mysql_native_password');
    expect(back.authToken).toEqual(Buffer.from([1, 2, 3]));
    expect(back.connectAttributes).toEqual({ k: 'v' });
  });

  it('recognises the 32-byte SSLRequest, ours and mysql2s', () => {
    const ours = encodeSslRequest({ capabilityFlags: clientFlags | CapabilityFlag.CLIENT_SSL, characterSet: 45 });
    expect(ours.length).toBe(32);
    const parsed = parseHandshakeResponse(ours) as SslRequest;
    expect(parsed).toEqual({ kind: 'ssl-request', capabilityFlags: (clientFlags | CapabilityFlag.CLIENT_SSL) >>> 0, maxPacketSize: MAX_PACKET_PAYLOAD_LENGTH, characterSet: 45, mariadbExtendedCapabilities: 0 });
    const mysql2 = new Mysql2SslRequest(clientFlags, 45).toPacket().buffer.subarray(4);
    expect(parseHandshakeResponse(mysql2).kind).toBe('ssl-request');
    // Without CLIENT_SSL a 32-byte response is just truncated.
    expectProtocolError(() => parseHandshakeResponse(encodeSslRequestWithoutSsl()), 'truncated');
  });

  function encodeSslRequestWithoutSsl(): Buffer {
    const bytes = encodeSslRequest({ capabilityFlags: clientFlags | CapabilityFlag.CLIENT_SSL, characterSet: 45 });
    bytes.writeUInt32LE((clientFlags & ~CapabilityFlag.CLIENT_SSL) >>> 0, 0);
    return bytes;
  }

  it('reads the older auth response encodings (1-byte length, NUL-terminated)', () => {
    const secure = clientFlags & ~CapabilityFlag.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
    const a = parseHandshakeResponse(
      encodeHandshakeResponse41({ capabilityFlags: secure, characterSet: 8, username: 'u', authResponse: Buffer.alloc(20, 9), database: 'd', authPluginName: 'mysql_native_password' }),
    ) as HandshakeResponse41;
    expect(a.authResponse).toEqual(Buffer.alloc(20, 9));
    const plain = secure & ~CapabilityFlag.CLIENT_SECURE_CONNECTION & ~CapabilityFlag.CLIENT_CONNECT_ATTRS;
    const b = parseHandshakeResponse(
      encodeHandshakeResponse41({ capabilityFlags: plain, characterSet: 8, username: 'u', authResponse: Buffer.from('pw'), database: 'd', authPluginName: 'mysql_clear_password' }),
    ) as HandshakeResponse41;
    expect(b.authResponse.toString()).toBe('pw');
    expect(b.database).toBe('d');
    expect(b.authPluginName).toBe('mysql_clear_password');
  });

  it('tolerates announced trailing fields that are absent, and an unterminated plugin name', () => {
    const header = encodeSslRequest({ capabilityFlags: clientFlags | CapabilityFlag.CLIENT_SSL, characterSet: 45 });
    const payload = Buffer.concat([header, Buffer.from('bob\0'), Buffer.from([0]), Buffer.from('db\0mysql_native_password')]);
    const parsed = parseHandshakeResponse(payload) as HandshakeResponse41;
    expect(parsed).toMatchObject({ username: 'bob', database: 'db', authPluginName: 'mysql_native_password' });
    expect(parsed.authResponse.length).toBe(0);
    expect(parsed.connectAttributes.size).toBe(0);
  });

  it('fails with typed errors on malformed input, never a crash', () => {
    expectProtocolError(() => parseHandshakeResponse(Buffer.alloc(10)), 'truncated');
    const preProtocol41 = Buffer.alloc(40);
    expectProtocolError(() => parseHandshakeResponse(preProtocol41), 'unsupported');
    const full = encodeHandshakeResponse41({
      capabilityFlags: clientFlags,
      characterSet: 45,
      username: 'user',
      authResponse: Buffer.alloc(20, 1),
      database: 'db',
      authPluginName: 'mysql_native_password',
      connectAttributes: new Map([['a', 'b']]),
    });
    expectOnlyTypedErrorsOnTruncation(full, parseHandshakeResponse);
    // An attribute block announcing more bytes than the packet has.
    const overrun = Buffer.concat([full.subarray(0, full.length - 5), Buffer.from([0x7f, 1, 0x61])]);
    expectProtocolError(() => parseHandshakeResponse(overrun), 'truncated');
    // Random garbage with the 4.1 bit set.
    for (let seed = 1; seed <= 300; seed++) {
      const garbage = Buffer.alloc(32 + (seed % 64));
      for (let i = 0; i < garbage.length; i++) garbage[i] = (seed * 31 + i * 17) & 0xff;
      garbage.writeUInt32LE((garbage.readUInt32LE(0) | CapabilityFlag.CLIENT_PROTOCOL_41) >>> 0, 0);
      try {
        parseHandshakeResponse(garbage);
      } catch (error) {
        expect(error).toBeInstanceOf(MysqlProtocolError);
      }
    }
  });
});

describe('COM_CHANGE_USER', () => {
  it('reads user, auth response, database, charset, plugin and attributes', () => {
    const flags = CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_SECURE_CONNECTION | CapabilityFlag.CLIENT_PLUGIN_AUTH | CapabilityFlag.CLIENT_CONNECT_ATTRS;
    const payload = new PayloadWriter()
      .u8(Command.COM_CHANGE_USER)
      .nulString('carol')
      .u8(20)
      .bytes(Buffer.alloc(20, 5))
      .nulString('reports')
      .u16(CollationId.UTF8MB4_GENERAL_CI)
      .nulString('mysql_native_password')
      .lenencString(encodeLenencString('_os'))
      .finish();
    // The attribute block above is "lenenc(len) lenenc('_os')" without a value: malformed.
    expectProtocolError(() => parseChangeUser(payload, flags), 'truncated');
    const good = new PayloadWriter()
      .u8(Command.COM_CHANGE_USER)
      .nulString('carol')
      .u8(20)
      .bytes(Buffer.alloc(20, 5))
      .nulString('reports')
      .u16(CollationId.UTF8MB4_GENERAL_CI)
      .nulString('mysql_native_password')
      .lenencString(Buffer.concat([encodeLenencString('_os'), encodeLenencString('linux')]))
      .finish();
    expect(parseChangeUser(good, flags)).toEqual({
      username: 'carol',
      authResponse: Buffer.alloc(20, 5),
      database: 'reports',
      characterSet: 45,
      authPluginName: 'mysql_native_password',
      connectAttributes: new Map([['_os', 'linux']]),
    });
    expectOnlyTypedErrorsOnTruncation(good, (bytes) => parseChangeUser(bytes, flags));
  });
});

/* ------------------------------------------------------------------------------------ */

const TRACKING_CAPABILITIES = CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_SESSION_TRACK;

/** A session-state entry built by hand: type, lenenc(data). */
function entry(type: number, data: number[]): number[] {
  return [type, data.length, ...data];
}
function lenencAscii(text: string): number[] {
  return [text.length, ...Buffer.from(text, 'latin1')];
}

describe('OK packet', () => {
  it('reads the state-change flag as real servers send it: the bare byte "1"', () => {
    const block = Buffer.from([SessionTrackType.SESSION_TRACK_STATE_CHANGE, 0x01, 0x31]);
    expect(parseSessionStateChanges(block)).toEqual([{ type: 2, name: 'state_change', value: '1' }]);
  });

  it('decodes session state information built byte by byte from the protocol docs', () => {
    const state = [
      ...entry(SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES, [...lenencAscii('autocommit'), ...lenencAscii('OFF')]),
      ...entry(SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES, [...lenencAscii('time_zone'), ...lenencAscii('+00:00')]),
      ...entry(SessionTrackType.SESSION_TRACK_SCHEMA, lenencAscii('shop')),
      ...entry(SessionTrackType.SESSION_TRACK_STATE_CHANGE, lenencAscii('1')),
      ...entry(SessionTrackType.SESSION_TRACK_GTIDS, [0x00, ...lenencAscii('3e11fa47-71ca-11e1-9e33-c80aa9429562:23')]),
      ...entry(SessionTrackType.SESSION_TRACK_TRANSACTION_CHARACTERISTICS, lenencAscii('SET TRANSACTION READ ONLY;')),
      ...entry(SessionTrackType.SESSION_TRACK_TRANSACTION_STATE, lenencAscii('T_R_____')),
      ...entry(0x42, [0xde, 0xad]),
    ];
    const payload = Buffer.from([
      0x00, // header
      0x03, // affected rows
      0xfc, 0x2c, 0x01, // last insert id 300
      0x03, 0x40, // status: IN_TRANS | AUTOCOMMIT | SESSION_STATE_CHANGED
      0x01, 0x00, // warnings
      0x00, // info: empty lenenc string
      state.length,
      ...state,
    ]);
    const ok = parseOkPacket(payload, TRACKING_CAPABILITIES);
    expect(ok).toEqual({
      header: 0,
      affectedRows: 3n,
      lastInsertId: 300n,
      statusFlags: 0x4003,
      warningCount: 1,
      info: '',
      sessionStateChanges: [
        { type: 0, name: 'autocommit', value: 'OFF' },
        { type: 0, name: 'time_zone', value: '+00:00' },
        { type: 1, name: 'schema', value: 'shop' },
        { type: 2, name: 'state_change', value: '1' },
        { type: 3, name: 'gtids', value: '3e11fa47-71ca-11e1-9e33-c80aa9429562:23' },
        { type: 4, name: 'transaction_characteristics', value: 'SET TRANSACTION READ ONLY;' },
        { type: 5, name: 'transaction_state', value: 'T_R_____' },
        { type: 0x42, name: 'unknown', value: 'dead' },
      ],
    });
    expect(okStatusFlags(payload)).toBe(0x4003);
    expect(okWarningCount(payload)).toBe(1);
    // The encoder writes the same bytes for the known types (an unknown type's data is opaque).
    const known = ok.sessionStateChanges.filter((change) => change.name !== 'unknown');
    const encoded = encodeOkPacket({ affectedRows: 3, lastInsertId: 300, statusFlags: 0x0003, warningCount: 1, sessionStateChanges: known }, TRACKING_CAPABILITIES);
    const withoutUnknown = Buffer.concat([payload.subarray(0, 10), Buffer.from([state.length - 4]), payload.subarray(11, payload.length - 4)]);
    expect(encoded).toEqual(withoutUnknown);
  });

  it('reads the info string with and without session tracking', () => {
    const withTracking = encodeOkPacket({ affectedRows: 1, statusFlags: 2, info: 'Rows matched: 1  Changed: 1  Warnings: 0' }, TRACKING_CAPABILITIES);
    expect(parseOkPacket(withTracking, TRACKING_CAPABILITIES).info).toBe('Rows matched: 1  Changed: 1  Warnings: 0');
    const eofString = encodeOkPacket({ statusFlags: 2, info: 'Records: 3' }, CapabilityFlag.CLIENT_PROTOCOL_41);
    expect(parseOkPacket(eofString, CapabilityFlag.CLIENT_PROTOCOL_41).info).toBe('Records: 3');
    // What servers actually send without CLIENT_SESSION_TRACK: a length-encoded message.
    const lengthEncoded = Buffer.concat([Buffer.from([0, 1, 0, 2, 0, 0, 0]), encodeLenencString('Records: 3')]);
    expect(parseOkPacket(lengthEncoded, CapabilityFlag.CLIENT_PROTOCOL_41).info).toBe('Records: 3');
  });

  it('drops session changes (and the flag) for peers without CLIENT_SESSION_TRACK', () => {
    const payload = encodeOkPacket(
      { statusFlags: ServerStatus.SERVER_STATUS_AUTOCOMMIT | ServerStatus.SERVER_SESSION_STATE_CHANGED, sessionStateChanges: [{ type: 1, name: 'schema', value: 'x' }] },
      CapabilityFlag.CLIENT_PROTOCOL_41,
    );
    expect(payload).toEqual(Buffer.from([0, 0, 0, 2, 0, 0, 0]));
  });

  it('reads status flags cheaply from 0x00 and 0xFE OK packets with wide counters', () => {
    const wide = encodeOkPacket({ affectedRows: 70000, lastInsertId: 2n ** 40n, statusFlags: ServerStatus.SERVER_STATUS_IN_TRANS }, TRACKING_CAPABILITIES);
    expect(okStatusFlags(wide)).toBe(1);
    expect(parseOkPacket(wide, TRACKING_CAPABILITIES).lastInsertId).toBe(2n ** 40n);
    const deprecateEofTerminator = encodeOkPacket({ statusFlags: ServerStatus.SERVER_MORE_RESULTS_EXISTS }, TRACKING_CAPABILITIES, 0xfe);
    expect(deprecateEofTerminator.length).toBe(7);
    expect(okStatusFlags(deprecateEofTerminator)).toBe(8);
    expect(terminatorStatusFlags(deprecateEofTerminator, true)).toBe(8);
    expect(parseOkPacket(deprecateEofTerminator, TRACKING_CAPABILITIES).header).toBe(0xfe);
  });

  it('fails with typed errors on truncation', () => {
    const payload = encodeOkPacket({ affectedRows: 1, statusFlags: 0x4002, sessionStateChanges: [{ type: 1, name: 'schema', value: 'db' }] }, TRACKING_CAPABILITIES);
    expectOnlyTypedErrorsOnTruncation(payload, (bytes) => parseOkPacket(bytes, TRACKING_CAPABILITIES));
    expectProtocolError(() => okStatusFlags(Buffer.from([0, 0, 0, 2])), 'truncated');
    expectProtocolError(() => parseOkPacket(Buffer.from([0x05, 0, 0, 0, 0, 0, 0]), TRACKING_CAPABILITIES), 'malformed');
  });
});

describe('ERR, EOF and packet tests', () => {
  it('encodes and parses ERR with the SQL state marker', () => {
    const payload = encodeErrPacket({ code: 1045, sqlState: '28000', message: "Access denied for user 'x'@'%' (using password: YES)" });
    expect(payload.subarray(0, 9)).toEqual(Buffer.from([0xff, 0x15, 0x04, 0x23, 0x32, 0x38, 0x30, 0x30, 0x30]));
    expect(parseErrPacket(payload)).toEqual({ code: 1045, sqlState: '28000', message: "Access denied for user 'x'@'%' (using password: YES)" });
    expect(parseErrPacket(encodeErrPacket({ code: 1040, message: 'Too many connections' }, false))).toEqual({ code: 1040, sqlState: undefined, message: 'Too many connections' });
    expect(isErrPacket(payload)).toBe(true);
    expectOnlyTypedErrorsOnTruncation(payload, parseErrPacket);
  });

  it('encodes and parses EOF, and tells EOF from OK and from rows', () => {
    const eof = encodeEofPacket({ warningCount: 2, statusFlags: 0x22 });
    expect(eof).toEqual(Buffer.from([0xfe, 2, 0, 0x22, 0]));
    expect(parseEofPacket(eof)).toEqual({ warningCount: 2, statusFlags: 0x22 });
    expect(eofStatusFlags(eof)).toBe(0x22);
    expect(terminatorStatusFlags(eof, false)).toBe(0x22);
    expect(isEofPacket(eof)).toBe(true);
    expect(isEofPacket(Buffer.concat([Buffer.from([0xfe]), Buffer.alloc(9)]))).toBe(false);
    expect(isOkPacket(encodeOkPacket({ statusFlags: 2 }, TRACKING_CAPABILITIES))).toBe(true);
    expectProtocolError(() => parseEofPacket(Buffer.from([0x00])), 'malformed');
  });

  it('translates result-set terminators between CLIENT_DEPRECATE_EOF and classic EOF', () => {
    const eof = encodeEofPacket({ warningCount: 1, statusFlags: ServerStatus.SERVER_STATUS_IN_TRANS });
    const ok = translateTerminator(eof, false, true, TRACKING_CAPABILITIES);
    expect(ok[0]).toBe(0xfe);
    expect(okStatusFlags(ok)).toBe(ServerStatus.SERVER_STATUS_IN_TRANS);
    expect(okWarningCount(ok)).toBe(1);
    expect(translateTerminator(ok, true, false, 0)).toEqual(eof);
    expect(translateTerminator(eof, false, false, 0)).toBe(eof);
  });
});

describe('authentication exchange packets', () => {
  it('encodes and parses AuthSwitchRequest', () => {
    const pluginData = Buffer.concat([SCRAMBLE, Buffer.from([0])]);
    const payload = encodeAuthSwitchRequest({ pluginName: AuthPlugin.MYSQL_NATIVE_PASSWORD, pluginData });
    expect(payload[0]).toBe(0xfe);
    expect(payload.toString('latin1', 1, 23)).toBe('mysql_native_password\0');
    expect(parseAuthSwitchRequest(payload)).toEqual({ pluginName: 'mysql_native_password', pluginData });
    expect(parseAuthSwitchRequest(Buffer.from([0xfe]))).toEqual({ pluginName: 'mysql_old_password', pluginData: Buffer.alloc(0) });
  });

  it('encodes and parses AuthMoreData', () => {
    expect(encodeAuthMoreData(0x03)).toEqual(Buffer.from([0x01, 0x03]));
    const pem = Buffer.from('-----BEGIN PUBLIC KEY-----\n...');
    expect(parseAuthMoreData(encodeAuthMoreData(pem))).toEqual(pem);
    expectProtocolError(() => parseAuthMoreData(Buffer.from([0x02])), 'malformed');
  });
});

describe('prepared statement helpers', () => {
  it('round-trips COM_STMT_PREPARE_OK and rewrites statement ids in place', () => {
    const fields = { statementId: 0x01020304, columnCount: 3, parameterCount: 2, warningCount: 0 };
    const payload = encodePrepareOk(fields);
    expect(payload.length).toBe(12);
    expect(parsePrepareOk(payload)).toEqual(fields);
    const execute = Buffer.from([Command.COM_STMT_EXECUTE, 7, 0, 0, 0, CursorType.CURSOR_TYPE_READ_ONLY, 1, 0, 0, 0]);
    expect(readStatementId(execute)).toBe(7);
    writeStatementId(execute, 0xfffffffe);
    expect(readStatementId(execute)).toBe(0xfffffffe);
    expect(executeFlags(execute)).toBe(CursorType.CURSOR_TYPE_READ_ONLY);
    expectProtocolError(() => readStatementId(Buffer.from([0x19, 1])), 'truncated');
  });
});

describe('classifyResponseStart', () => {
  const ok = encodeOkPacket({ statusFlags: 2 }, TRACKING_CAPABILITIES);
  const err = encodeErrPacket({ code: 1064, sqlState: '42000', message: 'syntax' });
  const eof = encodeEofPacket({ warningCount: 0, statusFlags: 2 });

  it.each([
    ['OK to COM_QUERY', Command.COM_QUERY, ok, 'ok'],
    ['ERR to COM_QUERY', Command.COM_QUERY, err, 'error'],
    ['EOF to COM_SET_OPTION', Command.COM_SET_OPTION, eof, 'eof'],
    ['0xFE OK to COM_QUERY (deprecate EOF)', Command.COM_QUERY, encodeOkPacket({ statusFlags: 2, info: 'long enough info' }, TRACKING_CAPABILITIES, 0xfe), 'ok'],
    ['LOCAL INFILE request', Command.COM_QUERY, Buffer.from('\xfbdata.csv', 'latin1'), 'local-infile'],
    ['column count', Command.COM_QUERY, Buffer.from([0x02]), 'result-set'],
    ['2-byte column count', Command.COM_STMT_EXECUTE, Buffer.from([0xfc, 0x2c, 0x01]), 'result-set'],
    ['prepare OK', Command.COM_STMT_PREPARE, encodePrepareOk({ statementId: 1, columnCount: 0, parameterCount: 0, warningCount: 0 }), 'prepare-ok'],
    ['field list column', Command.COM_FIELD_LIST, Buffer.from([0x03, 0x64, 0x65, 0x66]), 'column-definition'],
    ['field list end', Command.COM_FIELD_LIST, eof, 'eof'],
    ['fetch row', Command.COM_STMT_FETCH, Buffer.from([0x00, 0x00, 0x01]), 'row'],
    ['statistics', Command.COM_STATISTICS, Buffer.from('Uptime: 5'), 'statistics'],
    ['auth switch', Command.COM_CHANGE_USER, encodeAuthSwitchRequest({ pluginName: 'x', pluginData: Buffer.alloc(0) }), 'auth-switch'],
    ['auth more data', Command.COM_CHANGE_USER, Buffer.from([0x01, 0x04]), 'auth-more-data'],
  ])('%s', (_name, command, payload, expected) => {
    expect(classifyResponseStart(command, payload)).toBe(expected);
  });

  it('refuses packets that cannot start the response', () => {
    expectProtocolError(() => classifyResponseStart(Command.COM_STMT_PREPARE, Buffer.from([0x02])), 'unexpected-packet');
    expectProtocolError(() => classifyResponseStart(Command.COM_QUERY, Buffer.alloc(0)), 'malformed');
    expect(readColumnCount(Buffer.from([0xfc, 0x2c, 0x01]))).toBe(300);
    expectProtocolError(() => readColumnCount(Buffer.from([0])), 'malformed');
  });
});

/* ------------------------------------------------------------------------------------ */
/* Response tracker                                                                      */
/* ------------------------------------------------------------------------------------ */

const WITH_EOF = CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_SESSION_TRACK;
const DEPRECATE_EOF = WITH_EOF | CapabilityFlag.CLIENT_DEPRECATE_EOF;
const { SERVER_STATUS_AUTOCOMMIT: AUTOCOMMIT, SERVER_STATUS_IN_TRANS: IN_TRANS, SERVER_MORE_RESULTS_EXISTS: MORE_RESULTS } = ServerStatus;

/** A Protocol::ColumnDefinition41 payload, close to what servers send. */
function columnDefinition(name: string): Buffer {
  return new PayloadWriter()
    .lenencString('def')
    .lenencString('shop')
    .lenencString('t')
    .lenencString('t')
    .lenencString(name)
    .lenencString(name)
    .u8(0x0c)
    .u16(CollationId.UTF8MB4_GENERAL_CI)
    .u32(255)
    .u8(0xfd) // VAR_STRING
    .u16(0)
    .u8(0)
    .u16(0)
    .finish();
}

function textRow(...values: Array<string | null>): Buffer {
  const writer = new PayloadWriter();
  for (const value of values) {
    if (value === null) writer.u8(0xfb);
    else writer.lenencString(value);
  }
  return writer.finish();
}

/** Binary protocol row: 0x00, NULL bitmap (offset 2), values. Starts with 0x00 like an OK packet. */
function binaryRow(value: number): Buffer {
  return new PayloadWriter().u8(0x00).u8(0x00).u32(value).finish();
}

const eofWith = (statusFlags: number, warningCount = 0): Buffer => encodeEofPacket({ statusFlags, warningCount });
const okWith = (statusFlags: number, extra: { affectedRows?: number; lastInsertId?: number } = {}): Buffer =>
  encodeOkPacket({ statusFlags, ...extra }, WITH_EOF);
const endOk = (statusFlags: number): Buffer => encodeOkPacket({ statusFlags }, DEPRECATE_EOF, 0xfe);

/** Feeds packets, returning the role names and checking the response completes exactly at the last one. */
function run(tracker: MysqlResponseTracker, packets: Buffer[]): string[] {
  const names = Object.fromEntries(Object.entries(PacketRole).map(([name, value]) => [value, name])) as Record<number, string>;
  return packets.map((packet, index) => {
    expect(tracker.isComplete).toBe(false);
    const role = tracker.feed(packet);
    if (index < packets.length - 1 && !tracker.awaitingClient) expect(tracker.isComplete).toBe(false);
    return names[role]!;
  });
}

describe('MysqlResponseTracker', () => {
  it('follows a text result set with EOF packets', () => {
    const tracker = new MysqlResponseTracker(WITH_EOF).start(Command.COM_QUERY);
    const roles = run(tracker, [Buffer.from([2]), columnDefinition('id'), columnDefinition('name'), eofWith(AUTOCOMMIT), textRow('1', 'a'), textRow('2', null), eofWith(AUTOCOMMIT, 1)]);
    expect(roles).toEqual(['ResultSetHeader', 'ColumnDefinition', 'ColumnDefinition', 'MetadataEof', 'Row', 'Row', 'ResultSetTerminator']);
    expect(tracker.isComplete).toBe(true);
    expect(tracker.statusFlags).toBe(AUTOCOMMIT);
    expect(tracker.inTransaction).toBe(false);
    expect(tracker.warningCount).toBe(1);
    expect(tracker.resultCount).toBe(1);
  });

  it('follows a text result set under CLIENT_DEPRECATE_EOF and reports the open transaction', () => {
    const tracker = new MysqlResponseTracker(DEPRECATE_EOF).start(Command.COM_QUERY);
    const packets = [Buffer.from([2]), columnDefinition('id'), columnDefinition('name'), textRow('1', 'a'), endOk(IN_TRANS | AUTOCOMMIT)];
    const endsMetadata: boolean[] = [];
    const roles = packets.map((packet) => {
      const role = tracker.feed(packet);
      endsMetadata.push(tracker.endsMetadata);
      return role;
    });
    expect(roles).toEqual([PacketRole.ResultSetHeader, PacketRole.ColumnDefinition, PacketRole.ColumnDefinition, PacketRole.Row, PacketRole.ResultSetTerminator]);
    expect(endsMetadata).toEqual([false, false, true, false, false]);
    expect(tracker.isComplete).toBe(true);
    expect(tracker.inTransaction).toBe(true);
  });

  it('treats a maximum-length row starting with 0xFE as a row (and its continuation as data)', () => {
    const tracker = new MysqlResponseTracker(DEPRECATE_EOF).start(Command.COM_QUERY);
    const hugeRow = Buffer.alloc(MAX_PACKET_PAYLOAD_LENGTH);
    hugeRow[0] = 0xfe; // first column is ≥ 16 MB: 8-byte length prefix
    const continuation = Buffer.from([0xfe, 0, 0, 2, 0, 0, 0]); // looks like a terminator, but is row data
    const roles = run(tracker, [Buffer.from([1]), columnDefinition('blob'), hugeRow, continuation, endOk(AUTOCOMMIT)]);
    expect(roles).toEqual(['ResultSetHeader', 'ColumnDefinition', 'Row', 'Continuation', 'ResultSetTerminator']);
    expect(tracker.isComplete).toBe(true);
  });

  it('chains results with SERVER_MORE_RESULTS_EXISTS (multi-statements, CALL)', () => {
    const tracker = new MysqlResponseTracker(WITH_EOF).start(Command.COM_QUERY);
    const roles = run(tracker, [
      okWith(AUTOCOMMIT | MORE_RESULTS, { affectedRows: 1, lastInsertId: 42 }),
      Buffer.from([1]),
      columnDefinition('x'),
      eofWith(AUTOCOMMIT | MORE_RESULTS),
      textRow('1'),
      eofWith(AUTOCOMMIT | MORE_RESULTS),
      okWith(AUTOCOMMIT | IN_TRANS),
    ]);
    expect(roles).toEqual(['Ok', 'ResultSetHeader', 'ColumnDefinition', 'MetadataEof', 'Row', 'ResultSetTerminator', 'Ok']);
    expect(tracker.isComplete).toBe(true);
    expect(tracker.resultCount).toBe(3);
    expect(tracker.inTransaction).toBe(true);
    expect(tracker.affectedRows).toBe(0n); // from the last OK
  });

  it('stops at an ERR in the middle of rows, keeping the last known status', () => {
    const tracker = new MysqlResponseTracker(WITH_EOF).start(Command.COM_QUERY);
    const roles = run(tracker, [
      Buffer.from([1]),
      columnDefinition('x'),
      eofWith(AUTOCOMMIT | IN_TRANS),
      textRow('1'),
      encodeErrPacket({ code: 1317, sqlState: '70100', message: 'Query execution was interrupted' }),
    ]);
    expect(roles.at(-1)).toBe('Error');
    expect(tracker.isComplete).toBe(true);
    expect(tracker.endedWithError).toBe(true);
    expect(tracker.error).toEqual({ code: 1317, sqlState: '70100', message: 'Query execution was interrupted' });
    expect(tracker.inTransaction).toBe(true);
  });

  it('reports an unknown status when the only packet is an ERR', () => {
    const tracker = new MysqlResponseTracker(WITH_EOF).start(Command.COM_QUERY);
    tracker.feed(encodeErrPacket({ code: 1064, sqlState: '42000', message: 'You have an error' }));
    expect(tracker.isComplete).toBe(true);
    expect(tracker.statusFlags).toBeUndefined();
    expect(tracker.inTransaction).toBeUndefined();
  });

  it('follows a LOCAL INFILE exchange, including a 16 MB client packet and its empty continuation', () => {
    const tracker = new MysqlResponseTracker(WITH_EOF).start(Command.COM_QUERY);
    expect(tracker.feed(Buffer.from('\xfb/tmp/data.csv', 'latin1'))).toBe(PacketRole.LocalInfileRequest);
    expect(tracker.awaitingClient).toBe(true);
    expectProtocolError(() => tracker.feed(okWith(AUTOCOMMIT)), 'unexpected-packet');
    tracker.feedClientPacket(1000);
    tracker.feedClientPacket(MAX_PACKET_PAYLOAD_LENGTH);
    tracker.feedClientPacket(0); // ends the 16 MB packet, not the file
    expect(tracker.awaitingClient).toBe(true);
    tracker.feedClientPacket(0); // end of file
    expect(tracker.awaitingClient).toBe(false);
    expect(tracker.feed(okWith(AUTOCOMMIT, { affectedRows: 3 }))).toBe(PacketRole.Ok);
    expect(tracker.isComplete).toBe(true);
    expect(tracker.affectedRows).toBe(3n);
  });

  it('follows COM_STMT_PREPARE with parameter and column definitions, with and without EOF packets', () => {
    const prepareOk = encodePrepareOk({ statementId: 9, columnCount: 1, parameterCount: 2, warningCount: 0 });
    const withEof = new MysqlResponseTracker(WITH_EOF).start(Command.COM_STMT_PREPARE);
    expect(run(withEof, [prepareOk, columnDefinition('?'), columnDefinition('?'), eofWith(AUTOCOMMIT), columnDefinition('c'), eofWith(AUTOCOMMIT)])).toEqual([
      'PrepareOk',
      'ParameterDefinition',
      'ParameterDefinition',
      'MetadataEof',
      'ColumnDefinition',
      'MetadataEof',
    ]);
    expect(withEof.isComplete).toBe(true);
    expect(withEof.prepareOk).toEqual({ statementId: 9, columnCount: 1, parameterCount: 2, warningCount: 0 });

    const deprecated = new MysqlResponseTracker(DEPRECATE_EOF).start(Command.COM_STMT_PREPARE);
    expect(run(deprecated, [prepareOk, columnDefinition('?'), columnDefinition('?'), columnDefinition('c')])).toEqual([
      'PrepareOk',
      'ParameterDefinition',
      'ParameterDefinition',
      'ColumnDefinition',
    ]);
    expect(deprecated.isComplete).toBe(true);
    expect(deprecated.statusFlags).toBeUndefined(); // COM_STMT_PREPARE_OK carries no status

    const bare = new MysqlResponseTracker(WITH_EOF).start(Command.COM_STMT_PREPARE);
    bare.feed(encodePrepareOk({ statementId: 1, columnCount: 0, parameterCount: 0, warningCount: 0 }));
    expect(bare.isComplete).toBe(true);

    const failed = new MysqlResponseTracker(WITH_EOF).start(Command.COM_STMT_PREPARE);
    failed.feed(encodeErrPacket({ code: 1146, sqlState: '42S02', message: "Table 'x' doesn't exist" }));
    expect(failed.isComplete).toBe(true);
    expect(failed.prepareOk).toBeUndefined();
  });

  it('follows a binary result set, where rows start with 0x00 like an OK packet', () => {
    const execute = Buffer.from([Command.COM_STMT_EXECUTE, 9, 0, 0, 0, CursorType.CURSOR_TYPE_NO_CURSOR, 1, 0, 0, 0]);
    const tracker = new MysqlResponseTracker(WITH_EOF).start(Command.COM_STMT_EXECUTE, execute);
    expect(run(tracker, [Buffer.from([1]), columnDefinition('n'), eofWith(AUTOCOMMIT), binaryRow(1), binaryRow(2), eofWith(AUTOCOMMIT)])).toEqual([
      'ResultSetHeader',
      'ColumnDefinition',
      'MetadataEof',
      'Row',
      'Row',
      'ResultSetTerminator',
    ]);
    expect(tracker.isComplete).toBe(true);
  });

  it('completes a cursor-opening COM_STMT_EXECUTE after the metadata, then follows COM_STMT_FETCH', () => {
    const execute = Buffer.from([Command.COM_STMT_EXECUTE, 9, 0, 0, 0, CursorType.CURSOR_TYPE_READ_ONLY, 1, 0, 0, 0]);
    const withEof = new MysqlResponseTracker(WITH_EOF).start(Command.COM_STMT_EXECUTE, execute);
    run(withEof, [Buffer.from([1]), columnDefinition('n'), eofWith(AUTOCOMMIT | ServerStatus.SERVER_STATUS_CURSOR_EXISTS)]);
    expect(withEof.isComplete).toBe(true);
    expect(withEof.cursorOpen).toBe(true);

    const deprecated = new MysqlResponseTracker(DEPRECATE_EOF).start(Command.COM_STMT_EXECUTE, execute);
    run(deprecated, [Buffer.from([1]), columnDefinition('n'), endOk(AUTOCOMMIT | ServerStatus.SERVER_STATUS_CURSOR_EXISTS)]);
    expect(deprecated.isComplete).toBe(true);
    expect(deprecated.cursorOpen).toBe(true);

    const fetch = new MysqlResponseTracker(WITH_EOF).start(Command.COM_STMT_FETCH);
    run(fetch, [binaryRow(1), binaryRow(2), eofWith(AUTOCOMMIT | ServerStatus.SERVER_STATUS_CURSOR_EXISTS)]);
    expect(fetch.cursorOpen).toBe(true);
    fetch.start(Command.COM_STMT_FETCH);
    run(fetch, [binaryRow(3), eofWith(AUTOCOMMIT | ServerStatus.SERVER_STATUS_LAST_ROW_SENT)]);
    expect(fetch.isComplete).toBe(true);
    expect(fetch.cursorOpen).toBe(false);
  });

  it('follows COM_FIELD_LIST and COM_STATISTICS', () => {
    const fieldList = new MysqlResponseTracker(WITH_EOF).start(Command.COM_FIELD_LIST);
    expect(run(fieldList, [columnDefinition('a'), columnDefinition('b'), eofWith(AUTOCOMMIT)])).toEqual(['ColumnDefinition', 'ColumnDefinition', 'ResultSetTerminator']);
    const statistics = new MysqlResponseTracker(WITH_EOF).start(Command.COM_STATISTICS);
    expect(statistics.feed(Buffer.from('Uptime: 10  Threads: 1'))).toBe(PacketRole.Statistics);
    expect(statistics.isComplete).toBe(true);
  });

  it('handles single-packet and no-response commands', () => {
    const tracker = new MysqlResponseTracker(WITH_EOF);
    tracker.start(Command.COM_STMT_CLOSE);
    expect(tracker.isComplete).toBe(true);
    expectProtocolError(() => tracker.feed(okWith(AUTOCOMMIT)), 'unexpected-packet');
    tracker.start(Command.COM_PING);
    expect(tracker.feed(okWith(AUTOCOMMIT))).toBe(PacketRole.Ok);
    expect(tracker.isComplete).toBe(true);
    tracker.start(Command.COM_SET_OPTION);
    expect(tracker.feed(eofWith(AUTOCOMMIT))).toBe(PacketRole.Eof);
    expect(tracker.statusFlags).toBe(AUTOCOMMIT);
    expectProtocolError(() => tracker.start(Command.COM_BINLOG_DUMP), 'unsupported');
  });

  it('collects session-state changes from OK packets, including a CLIENT_DEPRECATE_EOF terminator', () => {
    const tracker = new MysqlResponseTracker(DEPRECATE_EOF).start(Command.COM_INIT_DB);
    tracker.feed(encodeOkPacket({ statusFlags: AUTOCOMMIT, sessionStateChanges: [{ type: SessionTrackType.SESSION_TRACK_SCHEMA, name: 'schema', value: 'shop' }] }, DEPRECATE_EOF));
    expect(tracker.sessionStateChanges).toEqual([{ type: 1, name: 'schema', value: 'shop' }]);

    tracker.start(Command.COM_QUERY);
    expect(tracker.sessionStateChanges).toEqual([]);
    tracker.feed(Buffer.from([1]));
    tracker.feed(columnDefinition('x'));
    tracker.feed(textRow('1'));
    tracker.feed(
      encodeOkPacket({ statusFlags: AUTOCOMMIT, sessionStateChanges: [{ type: SessionTrackType.SESSION_TRACK_SYSTEM_VARIABLES, name: 'sql_mode', value: 'ANSI' }] }, DEPRECATE_EOF, 0xfe),
    );
    expect(tracker.isComplete).toBe(true);
    expect(tracker.sessionStateChanges).toEqual([{ type: 0, name: 'sql_mode', value: 'ANSI' }]);
  });

  it('follows a COM_CHANGE_USER authentication exchange', () => {
    const tracker = new MysqlResponseTracker(WITH_EOF).start(Command.COM_CHANGE_USER);
    expect(tracker.feed(encodeAuthSwitchRequest({ pluginName: 'caching_sha2_password', pluginData: Buffer.concat([SCRAMBLE, Buffer.from([0])]) }))).toBe(PacketRole.AuthSwitchRequest);
    expect(tracker.awaitingClient).toBe(true);
    tracker.feedClientPacket(32);
    expect(tracker.feed(encodeAuthMoreData(0x03))).toBe(PacketRole.AuthMoreData); // fast auth success: OK follows
    expect(tracker.awaitingClient).toBe(false);
    expect(tracker.feed(okWith(AUTOCOMMIT))).toBe(PacketRole.Ok);
    expect(tracker.isComplete).toBe(true);
  });

  it('refuses packets that cannot occur, with typed errors', () => {
    const tracker = new MysqlResponseTracker(WITH_EOF).start(Command.COM_QUERY);
    tracker.feed(Buffer.from([1]));
    tracker.feed(columnDefinition('x'));
    expectProtocolError(() => tracker.feed(textRow('no metadata EOF')), 'unexpected-packet');
    expectProtocolError(() => new MysqlResponseTracker(WITH_EOF).start(Command.COM_QUERY).feed(Buffer.alloc(0)), 'unexpected-packet');
    expectProtocolError(() => new MysqlResponseTracker(WITH_EOF).start(Command.COM_QUERY).feed(Buffer.from([0xff, 0x01])), 'truncated');
  });

  it('runs on the framer callback without payload views, across chunk boundaries', () => {
    const packets = [Buffer.from([2]), columnDefinition('id'), columnDefinition('name'), ...Array.from({ length: 50 }, (_, i) => textRow(String(i), 'row')), endOk(AUTOCOMMIT)];
    let sequenceId = 1;
    const wire = Buffer.concat(
      packets.flatMap((payload) => {
        const framed = framePayload(payload, sequenceId);
        sequenceId = framed.nextSequenceId;
        return framed.chunks;
      }),
    );
    const framer = new MysqlPacketFramer();
    const tracker = new MysqlResponseTracker(DEPRECATE_EOF).start(Command.COM_QUERY);
    let packetsSeen = 0;
    let completedAt = -1;
    for (let offset = 0; offset < wire.length; offset += 7) {
      framer.push(wire.subarray(offset, offset + 7), (source, payloadStart, payloadLength) => {
        tracker.feedAt(source, payloadStart, payloadLength);
        packetsSeen++;
        if (tracker.isComplete && completedAt === -1) completedAt = packetsSeen;
      });
    }
    expect(completedAt).toBe(packets.length);
    expect(tracker.statusFlags).toBe(AUTOCOMMIT);
  });
});
