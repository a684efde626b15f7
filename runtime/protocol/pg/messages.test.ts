import { Parser } from 'pg-protocol/dist/parser';
import { BackendMessage, DatabaseError, NoticeMessage } from 'pg-protocol/dist/messages';
import { serialize } from 'pg-protocol';
import {
  AUTHENTICATION_OK,
  CANCEL_REQUEST_CODE,
  CLOSE_COMPLETE,
  PARSE_COMPLETE,
  PROTOCOL_3_0,
  SYNC,
  TERMINATE,
  authenticationCleartext,
  authenticationMd5,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  backendKeyData,
  cancelRequest,
  closeStatement,
  decodeDataRow,
  decodeErrorFields,
  decodeParameterStatus,
  errorResponse,
  negotiateProtocolVersion,
  noticeResponse,
  parameterStatus,
  parse,
  passwordMessage,
  query,
  readCString,
  readyForQuery,
  saslInitialResponse,
  saslResponse,
  skipCString,
  startupMessage,
  withName,
} from './messages';

/** Parses backend messages with pg-protocol (the parser node-postgres uses). */
function pgParse(...buffers: Buffer[]): BackendMessage[] {
  const out: BackendMessage[] = [];
  new Parser().parse(Buffer.concat(buffers), (msg) => out.push(msg));
  return out;
}

/** Checks the typed-message envelope and returns the body. */
function bodyOf(message: Buffer, type: string): Buffer {
  expect(String.fromCharCode(message[0]!)).toBe(type);
  expect(message.readInt32BE(1)).toBe(message.length - 1);
  return message.subarray(5);
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
}

function int16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
}

function cstr(s: string): Buffer {
  return Buffer.from(s + '\0', 'utf8');
}

describe('backend encoders', () => {
  test('AuthenticationOk', () => {
    expect(AUTHENTICATION_OK.toString('hex')).toBe('52' + '00000008' + '00000000');
    const [msg] = pgParse(AUTHENTICATION_OK);
    expect(msg!.name).toBe('authenticationOk');
  });

  test('AuthenticationCleartextPassword', () => {
    expect(authenticationCleartext().toString('hex')).toBe('52' + '00000008' + '00000003');
    expect(pgParse(authenticationCleartext())[0]!.name).toBe('authenticationCleartextPassword');
  });

  test('AuthenticationMD5Password', () => {
    const salt = Buffer.from([1, 2, 3, 4]);
    const msg = authenticationMd5(salt);
    expect(msg.toString('hex')).toBe('52' + '0000000c' + '00000005' + '01020304');
    const parsed = pgParse(msg)[0] as BackendMessage & { salt: Buffer };
    expect(parsed.name).toBe('authenticationMD5Password');
    expect(parsed.salt.equals(salt)).toBe(true);
  });

  test('AuthenticationSASL lists mechanisms and ends with an empty string', () => {
    const msg = authenticationSasl(['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS']);
    const body = bodyOf(msg, 'R');
    expect(body.equals(Buffer.concat([int32(10), cstr('SCRAM-SHA-256'), cstr('SCRAM-SHA-256-PLUS'), Buffer.from([0])]))).toBe(true);
    const parsed = pgParse(msg)[0] as BackendMessage & { mechanisms: string[] };
    expect(parsed.name).toBe('authenticationSASL');
    expect(parsed.mechanisms).toEqual(['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS']);
  });

  test('AuthenticationSASLContinue and SASLFinal', () => {
    const data = Buffer.from('r=abc,s=c2FsdA==,i=4096');
    const cont = authenticationSaslContinue(data);
    expect(bodyOf(cont, 'R').equals(Buffer.concat([int32(11), data]))).toBe(true);
    const parsedCont = pgParse(cont)[0] as BackendMessage & { data: string };
    expect(parsedCont.name).toBe('authenticationSASLContinue');
    expect(parsedCont.data).toBe(data.toString());

    const final = authenticationSaslFinal(Buffer.from('v=xyz'));
    expect(bodyOf(final, 'R').equals(Buffer.concat([int32(12), Buffer.from('v=xyz')]))).toBe(true);
    const parsedFinal = pgParse(final)[0] as BackendMessage & { data: string };
    expect(parsedFinal.name).toBe('authenticationSASLFinal');
    expect(parsedFinal.data).toBe('v=xyz');
  });

  test('ParameterStatus: name and value as cstrings', () => {
    const msg = parameterStatus('TimeZone', 'Europe/Paris');
    expect(msg.equals(Buffer.concat([Buffer.from('S'), int32(4 + 9 + 13), cstr('TimeZone'), cstr('Europe/Paris')]))).toBe(true);
    const parsed = pgParse(msg)[0] as BackendMessage & { parameterName: string; parameterValue: string };
    expect(parsed.name).toBe('parameterStatus');
    expect(parsed.parameterName).toBe('TimeZone');
    expect(parsed.parameterValue).toBe('Europe/Paris');
    expect(decodeParameterStatus(msg.subarray(5))).toEqual({ name: 'TimeZone', value: 'Europe/Paris' });
  });

  test('ParameterStatus with UTF-8 and an empty value', () => {
    const msg = parameterStatus('application_name', 'ünïcødé');
    expect(decodeParameterStatus(msg.subarray(5))).toEqual({ name: 'application_name', value: 'ünïcødé' });
    const empty = parameterStatus('search_path', '');
    expect(decodeParameterStatus(empty.subarray(5))).toEqual({ name: 'search_path', value: '' });
  });

  test('BackendKeyData: two Int32s', () => {
    const msg = backendKeyData(12345, -987654321);
    expect(msg.equals(Buffer.concat([Buffer.from('K'), int32(12), int32(12345), int32(-987654321)]))).toBe(true);
    const parsed = pgParse(msg)[0] as BackendMessage & { processID: number; secretKey: number };
    expect(parsed.name).toBe('backendKeyData');
    expect(parsed.processID).toBe(12345);
    expect(parsed.secretKey).toBe(-987654321);
  });

  test.each(['I', 'T', 'E'] as const)('ReadyForQuery %s', (status) => {
    const msg = readyForQuery(status);
    expect(msg.toString('hex')).toBe('5a' + '00000005' + Buffer.from(status).toString('hex'));
    const parsed = pgParse(msg)[0] as BackendMessage & { status: string };
    expect(parsed.name).toBe('readyForQuery');
    expect(parsed.status).toBe(status);
  });

  test('ParseComplete and CloseComplete', () => {
    expect(PARSE_COMPLETE.toString('hex')).toBe('3100000004');
    expect(CLOSE_COMPLETE.toString('hex')).toBe('3300000004');
    expect(pgParse(PARSE_COMPLETE, CLOSE_COMPLETE).map((m) => m.name)).toEqual(['parseComplete', 'closeComplete']);
  });

  describe('ErrorResponse / NoticeResponse', () => {
    test('byte layout: S, V, C, M then terminator', () => {
      const msg = errorResponse({ severity: 'FATAL', sqlState: '28P01', message: 'password authentication failed' });
      const body = bodyOf(msg, 'E');
      expect(
        body.equals(
          Buffer.concat([
            Buffer.from('S'),
            cstr('FATAL'),
            Buffer.from('V'),
            cstr('FATAL'),
            Buffer.from('C'),
            cstr('28P01'),
            Buffer.from('M'),
            cstr('password authentication failed'),
            Buffer.from([0]),
          ]),
        ),
      ).toBe(true);
    });

    test('detail and hint, in that order, before the terminator', () => {
      const msg = errorResponse({ severity: 'ERROR', sqlState: '53300', message: 'm', detail: 'd', hint: 'h' });
      const body = bodyOf(msg, 'E');
      expect(body.subarray(body.length - 7).equals(Buffer.from('Dd\0Hh\0\0'))).toBe(true);
    });

    test('pg-protocol reads every field', () => {
      const msg = errorResponse({ severity: 'ERROR', sqlState: '53300', message: 'Timed-out waiting', detail: 'pool full', hint: 'retry' });
      const [parsed] = pgParse(msg);
      expect(parsed).toBeInstanceOf(DatabaseError);
      const error = parsed as DatabaseError;
      expect(error.name).toBe('error');
      expect(error.message).toBe('Timed-out waiting');
      expect(error.severity).toBe('ERROR');
      expect(error.code).toBe('53300');
      expect(error.detail).toBe('pool full');
      expect(error.hint).toBe('retry');
    });

    test('absent detail and hint are not encoded', () => {
      const msg = errorResponse({ severity: 'ERROR', sqlState: 'XX000', message: 'boom' });
      const error = pgParse(msg)[0] as DatabaseError;
      expect(error.detail).toBeUndefined();
      expect(error.hint).toBeUndefined();
      expect(msg.includes(Buffer.from('D'), 5)).toBe(false);
    });

    test('an empty detail is still encoded', () => {
      const error = pgParse(errorResponse({ severity: 'ERROR', sqlState: 'XX000', message: 'm', detail: '' }))[0] as DatabaseError;
      expect(error.detail).toBe('');
    });

    test('NoticeResponse has the same fields under type N', () => {
      const fields = { severity: 'WARNING', sqlState: '01000', message: 'careful' } as const;
      const notice = noticeResponse(fields);
      expect(notice[0]).toBe(0x4e);
      expect(notice.subarray(1).equals(errorResponse(fields).subarray(1))).toBe(true);
      const [parsed] = pgParse(notice);
      expect(parsed).toBeInstanceOf(NoticeMessage);
      const n = parsed as NoticeMessage;
      expect(n.name).toBe('notice');
      expect(n.message).toBe('careful');
      expect(n.severity).toBe('WARNING');
      expect(n.code).toBe('01000');
    });

    test('UTF-8 messages are encoded with their byte length', () => {
      const msg = errorResponse({ severity: 'ERROR', sqlState: '42P01', message: 'relation « données » does not exist' });
      expect(msg.readInt32BE(1)).toBe(msg.length - 1);
      expect((pgParse(msg)[0] as DatabaseError).message).toBe('relation « données » does not exist');
    });

    test('decodeErrorFields reads back what errorResponse wrote', () => {
      const msg = errorResponse({ severity: 'FATAL', sqlState: '57P01', message: 'shutting down', detail: 'bye' });
      expect(decodeErrorFields(msg.subarray(5))).toEqual({ severity: 'FATAL', sqlState: '57P01', message: 'shutting down', detail: 'bye' });
    });
  });

  test('NegotiateProtocolVersion: newest minor, count, then names', () => {
    const msg = negotiateProtocolVersion(0, ['_pq_.a', '_pq_.b']);
    expect(msg.equals(Buffer.concat([Buffer.from('v'), int32(4 + 8 + 7 + 7), int32(0), int32(2), cstr('_pq_.a'), cstr('_pq_.b')]))).toBe(true);
    const none = negotiateProtocolVersion((3 << 16) | 2, []);
    expect(none.toString('hex')).toBe('76' + '0000000c' + '00030002' + '00000000');
  });

  test('several backend messages in one buffer parse in order', () => {
    const stream = [
      AUTHENTICATION_OK,
      parameterStatus('server_version', '16.4'),
      backendKeyData(1, 2),
      readyForQuery('I'),
    ];
    expect(pgParse(...stream).map((m) => m.name)).toEqual(['authenticationOk', 'parameterStatus', 'backendKeyData', 'readyForQuery']);
  });
});

describe('frontend encoders', () => {
  test('startupMessage: Int32 length, protocol 3.0, params, terminator', () => {
    const msg = startupMessage({ user: 'alice', database: 'app' });
    expect(msg.equals(Buffer.concat([int32(4 + 4 + 5 + 6 + 9 + 4 + 1), int32(PROTOCOL_3_0), cstr('user'), cstr('alice'), cstr('database'), cstr('app'), Buffer.from([0])]))).toBe(true);
    expect(PROTOCOL_3_0).toBe(3 << 16);
  });

  test('startupMessage matches pg-protocol\'s serializer (which appends client_encoding)', () => {
    const ours = startupMessage({ user: 'u', database: 'd', client_encoding: 'UTF8' });
    expect(ours.equals(serialize.startup({ user: 'u', database: 'd' }))).toBe(true);
  });

  test('startupMessage with no params is 9 bytes', () => {
    expect(startupMessage({}).toString('hex')).toBe('00000009' + '00030000' + '00');
  });

  test('cancelRequest matches pg-protocol', () => {
    const msg = cancelRequest(77, -5);
    expect(msg.equals(Buffer.concat([int32(16), int32(CANCEL_REQUEST_CODE), int32(77), int32(-5)]))).toBe(true);
    expect(msg.equals(serialize.cancel(77, -5))).toBe(true);
  });

  test('passwordMessage, query, SYNC, TERMINATE match pg-protocol', () => {
    expect(passwordMessage('s3cr3t').equals(serialize.password('s3cr3t'))).toBe(true);
    expect(query('SELECT 1').equals(serialize.query('SELECT 1'))).toBe(true);
    expect(query('SELECT \'é\'').equals(serialize.query('SELECT \'é\''))).toBe(true);
    expect(SYNC.equals(serialize.sync())).toBe(true);
    expect(TERMINATE.equals(serialize.end())).toBe(true);
  });

  test('SASL messages match pg-protocol', () => {
    const first = 'n,,n=*,r=abcdef';
    expect(saslInitialResponse('SCRAM-SHA-256', Buffer.from(first)).equals(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', first))).toBe(true);
    const final = 'c=biws,r=abcdef,p=xyz';
    expect(saslResponse(Buffer.from(final)).equals(serialize.sendSCRAMClientFinalMessage(final))).toBe(true);
  });

  test('parse: statement name then the client\'s query and parameter types', () => {
    const queryAndTypes = Buffer.concat([cstr('SELECT $1'), int16(1), int32(23)]);
    const msg = parse('tp_1', queryAndTypes);
    expect(msg.equals(serialize.parse({ name: 'tp_1', text: 'SELECT $1', types: [23] }))).toBe(true);
  });

  test('closeStatement matches pg-protocol', () => {
    expect(closeStatement('tp_9').equals(serialize.close({ type: 'S', name: 'tp_9' }))).toBe(true);
  });

  describe('withName', () => {
    test('rewrites the statement name of a Bind (portal kept as the prefix)', () => {
      const client = serialize.bind({ portal: 'p1', statement: 'client_stmt', values: ['42', null] });
      // Split the client's Bind body: portal cstring, statement cstring, rest.
      const body = client.subarray(5);
      const portalEnd = skipCString(body, 0);
      const stmtEnd = skipCString(body, portalEnd);
      expect(readCString(body, portalEnd)!.value).toBe('client_stmt');
      const rewritten = withName(0x42, body.subarray(0, portalEnd), 'tp_7', body.subarray(stmtEnd));
      expect(rewritten.equals(serialize.bind({ portal: 'p1', statement: 'tp_7', values: ['42', null] }))).toBe(true);
    });

    test('a longer and a shorter name, and the empty (unnamed) one', () => {
      // Bind body after the statement name: param formats, values, result formats (as pg-protocol writes them).
      const original = serialize.bind({ portal: '', statement: 'orig', values: [] }).subarray(5);
      const rest = original.subarray(skipCString(original, 1));
      expect(rest.toString('hex')).toBe('0000' + '0000' + '0001' + '0000');
      for (const name of ['', 'x', 'a_much_longer_statement_name_than_before', 'ñamé']) {
        const rewritten = withName(0x42, cstr(''), name, rest);
        expect(rewritten.equals(serialize.bind({ portal: '', statement: name, values: [] }))).toBe(true);
        expect(rewritten.readInt32BE(1)).toBe(rewritten.length - 1);
      }
    });

    test('rewrites a Describe statement (the kind byte is the prefix)', () => {
      const rewritten = withName(0x44, Buffer.from('S'), 'tp_3', Buffer.alloc(0));
      expect(rewritten.equals(serialize.describe({ type: 'S', name: 'tp_3' }))).toBe(true);
      expect(rewritten.toString('hex')).toBe('44' + '0000000a' + '53' + Buffer.from('tp_3\0').toString('hex'));
    });

    test('rewrites a Close statement', () => {
      expect(withName(0x43, Buffer.from('S'), 'tp_3', Buffer.alloc(0)).equals(closeStatement('tp_3'))).toBe(true);
    });
  });
});

describe('decoders', () => {
  test('readCString and skipCString', () => {
    const buf = Buffer.from('ab\0\0cd');
    expect(readCString(buf, 0)).toEqual({ value: 'ab', next: 3 });
    expect(readCString(buf, 3)).toEqual({ value: '', next: 4 });
    expect(readCString(buf, 4)).toBeUndefined();
    expect(readCString(buf, 0, 2)).toBeUndefined(); // NUL at 2 is outside [0, 2)
    expect(readCString(buf, 0, 3)).toEqual({ value: 'ab', next: 3 });
    expect(skipCString(buf, 0)).toBe(3);
    expect(skipCString(buf, 4)).toBe(-1);
    expect(skipCString(buf, 0, 2)).toBe(-1);
  });

  describe('decodeErrorFields', () => {
    test('V (non-localized severity) wins over S whichever comes first', () => {
      const sFirst = Buffer.concat([Buffer.from('S'), cstr('FEHLER'), Buffer.from('V'), cstr('ERROR'), Buffer.from([0])]);
      expect(decodeErrorFields(sFirst).severity).toBe('ERROR');
      const vFirst = Buffer.concat([Buffer.from('V'), cstr('ERROR'), Buffer.from('S'), cstr('FEHLER'), Buffer.from([0])]);
      expect(decodeErrorFields(vFirst).severity).toBe('ERROR');
    });

    test('S alone is used when there is no V (pre-9.6 servers)', () => {
      const body = Buffer.concat([Buffer.from('S'), cstr('FATAL'), Buffer.from('C'), cstr('3D000'), Buffer.from('M'), cstr('no db'), Buffer.from([0])]);
      expect(decodeErrorFields(body)).toEqual({ severity: 'FATAL', sqlState: '3D000', message: 'no db' });
    });

    test('unknown fields are skipped', () => {
      const body = Buffer.concat([
        Buffer.from('S'), cstr('ERROR'),
        Buffer.from('C'), cstr('42601'),
        Buffer.from('M'), cstr('syntax error'),
        Buffer.from('P'), cstr('8'),
        Buffer.from('F'), cstr('scan.l'),
        Buffer.from('L'), cstr('1176'),
        Buffer.from('R'), cstr('scanner_yyerror'),
        Buffer.from('D'), cstr('detail'),
        Buffer.from([0]),
      ]);
      expect(decodeErrorFields(body)).toEqual({ severity: 'ERROR', sqlState: '42601', message: 'syntax error', detail: 'detail' });
    });

    test('a truncated body keeps the fields read so far', () => {
      const body = Buffer.concat([Buffer.from('C'), cstr('08006'), Buffer.from('M'), Buffer.from('trunc')]);
      expect(decodeErrorFields(body)).toEqual({ sqlState: '08006' });
      expect(decodeErrorFields(Buffer.alloc(0))).toEqual({});
      expect(decodeErrorFields(Buffer.from([0]))).toEqual({});
    });
  });

  test('decodeParameterStatus rejects unterminated bodies', () => {
    expect(decodeParameterStatus(Buffer.from('name'))).toBeUndefined();
    expect(decodeParameterStatus(Buffer.from('name\0value'))).toBeUndefined();
    expect(decodeParameterStatus(Buffer.from('name\0value\0'))).toEqual({ name: 'name', value: 'value' });
  });

  test('decodeDataRow: text columns, NULLs, empty strings, UTF-8', () => {
    const body = Buffer.concat([
      int16(4),
      int32(3), Buffer.from('abc'),
      int32(-1),
      int32(0),
      int32(Buffer.byteLength('é€')), Buffer.from('é€'),
    ]);
    expect(decodeDataRow(body)).toEqual(['abc', null, '', 'é€']);
    expect(decodeDataRow(int16(0))).toEqual([]);
  });

  test('decodeDataRow: a row cut short yields its complete columns instead of reading past the buffer (found by fuzzing)', () => {
    expect(decodeDataRow(Buffer.alloc(0))).toEqual([]);
    expect(decodeDataRow(Buffer.from([0x00]))).toEqual([]);
    // Two columns announced, the second one's length field cut off.
    expect(decodeDataRow(Buffer.concat([int16(2), int32(1), Buffer.from('a'), Buffer.from([0x00, 0x00])]))).toEqual(['a']);
    // A column longer than what follows.
    expect(decodeDataRow(Buffer.concat([int16(1), int32(100), Buffer.from('abc')]))).toEqual([]);
  });

  test('decodeDataRow agrees with pg-protocol on a DataRow', () => {
    const body = Buffer.concat([int16(3), int32(2), Buffer.from('42'), int32(-1), int32(5), Buffer.from('hello')]);
    const msg = Buffer.concat([Buffer.from('D'), int32(4 + body.length), body]);
    const parsed = pgParse(msg)[0] as BackendMessage & { fields: (string | null)[] };
    expect(parsed.name).toBe('dataRow');
    expect(decodeDataRow(body)).toEqual(parsed.fields);
  });
});
