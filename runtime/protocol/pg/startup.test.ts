import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, startupMessage } from './messages';
import { StartupPacket, decodeStartupPacket, parseOptionsParameter } from './startup';

function codePacket(code: number, extra: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(8 + extra.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(code, 4);
  extra.copy(out, 8);
  return out;
}

/** A StartupMessage with any version and raw (possibly malformed) parameter bytes. */
function startupWith(major: number, minor: number, paramBytes: Buffer): Buffer {
  return codePacket(((major << 16) | minor) >>> 0, paramBytes);
}

function params(pairs: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat([...pairs.map(([k, v]) => Buffer.from(`${k}\0${v}\0`, 'utf8')), Buffer.from([0])]);
}

function expectStartup(packet: StartupPacket): Extract<StartupPacket, { kind: 'startup' }> {
  if (packet.kind !== 'startup') throw new Error(`expected a startup packet, got ${JSON.stringify(packet)}`);
  return packet;
}

function expectInvalid(packet: StartupPacket): string {
  if (packet.kind !== 'invalid') throw new Error(`expected an invalid packet, got ${JSON.stringify(packet)}`);
  return packet.reason;
}

describe('decodeStartupPacket', () => {
  test('SSLRequest', () => {
    expect(decodeStartupPacket(codePacket(SSL_REQUEST_CODE))).toEqual({ kind: 'ssl-request' });
    expect(SSL_REQUEST_CODE).toBe((1234 << 16) | 5679);
  });

  test('SSLRequest with a wrong length is invalid', () => {
    expect(expectInvalid(decodeStartupPacket(codePacket(SSL_REQUEST_CODE, Buffer.alloc(4))))).toMatch(/SSLRequest/);
  });

  test('GSSENCRequest', () => {
    expect(decodeStartupPacket(codePacket(GSSENC_REQUEST_CODE))).toEqual({ kind: 'gssenc-request' });
    expect(GSSENC_REQUEST_CODE).toBe((1234 << 16) | 5680);
  });

  test('CancelRequest', () => {
    const extra = Buffer.alloc(8);
    extra.writeInt32BE(4242, 0);
    extra.writeInt32BE(-123456789, 4);
    expect(decodeStartupPacket(codePacket(CANCEL_REQUEST_CODE, extra))).toEqual({
      kind: 'cancel',
      processId: 4242,
      secretKey: -123456789,
    });
    expect(CANCEL_REQUEST_CODE).toBe((1234 << 16) | 5678);
  });

  test.each([0, 4, 12])('CancelRequest with %d bytes after the code is invalid', (n) => {
    expect(expectInvalid(decodeStartupPacket(codePacket(CANCEL_REQUEST_CODE, Buffer.alloc(n))))).toMatch(/CancelRequest/);
  });

  test('StartupMessage 3.0 with parameters', () => {
    const packet = startupWith(3, 0, params([['user', 'alice'], ['database', 'app'], ['application_name', 'psql'], ['options', '-c a=b']]));
    const decoded = expectStartup(decodeStartupPacket(packet));
    expect(decoded.majorVersion).toBe(3);
    expect(decoded.minorVersion).toBe(0);
    expect([...decoded.params]).toEqual([
      ['user', 'alice'],
      ['database', 'app'],
      ['application_name', 'psql'],
      ['options', '-c a=b'],
    ]);
  });

  test('StartupMessage 3.2 with parameters, including protocol extensions and empty values', () => {
    const packet = startupWith(3, 2, params([['user', 'bob'], ['_pq_.some_extension', 'on'], ['application_name', '']]));
    const decoded = expectStartup(decodeStartupPacket(packet));
    expect(decoded.majorVersion).toBe(3);
    expect(decoded.minorVersion).toBe(2);
    expect(decoded.params.get('user')).toBe('bob');
    expect(decoded.params.get('_pq_.some_extension')).toBe('on');
    expect(decoded.params.get('application_name')).toBe('');
  });

  test('UTF-8 names and values', () => {
    const decoded = expectStartup(decodeStartupPacket(startupWith(3, 0, params([['user', 'zoë'], ['database', 'データ']]))));
    expect(decoded.params.get('user')).toBe('zoë');
    expect(decoded.params.get('database')).toBe('データ');
  });

  test('a StartupMessage with no parameters at all', () => {
    const decoded = expectStartup(decodeStartupPacket(startupWith(3, 0, Buffer.from([0]))));
    expect(decoded.params.size).toBe(0);
  });

  test('a later duplicate parameter wins', () => {
    const decoded = expectStartup(decodeStartupPacket(startupWith(3, 0, params([['user', 'a'], ['user', 'b']]))));
    expect(decoded.params.get('user')).toBe('b');
  });

  test('round-trips the proxy\'s own startupMessage encoder', () => {
    const decoded = expectStartup(decodeStartupPacket(startupMessage({ user: 'svc', database: 'db1' })));
    expect(decoded.majorVersion).toBe(3);
    expect(decoded.minorVersion).toBe(0);
    expect(Object.fromEntries(decoded.params)).toEqual({ user: 'svc', database: 'db1' });
  });

  test('other major versions are decoded and left to the caller to refuse', () => {
    const decoded = expectStartup(decodeStartupPacket(startupWith(2, 0, Buffer.from([0]))));
    expect(decoded.majorVersion).toBe(2);
  });

  describe('malformed', () => {
    test('no parameters and no terminator', () => {
      expect(expectInvalid(decodeStartupPacket(startupWith(3, 0, Buffer.alloc(0))))).toMatch(/not terminated/);
    });

    test('unterminated parameter name', () => {
      expect(expectInvalid(decodeStartupPacket(startupWith(3, 0, Buffer.from('user'))))).toMatch(/unterminated startup parameter name/);
    });

    test('a name without a value', () => {
      expect(expectInvalid(decodeStartupPacket(startupWith(3, 0, Buffer.from('user\0'))))).toBe('startup parameter "user" has no value');
    });

    test('an unterminated value', () => {
      expect(expectInvalid(decodeStartupPacket(startupWith(3, 0, Buffer.from('user\0alice'))))).toBe('startup parameter "user" has no value');
    });

    test('parameters without the final terminator', () => {
      expect(expectInvalid(decodeStartupPacket(startupWith(3, 0, Buffer.from('user\0alice\0'))))).toMatch(/not terminated/);
    });

    test('every truncation of a valid packet is invalid, never a throw', () => {
      const full = startupWith(3, 0, params([['user', 'alice'], ['database', 'app']]));
      for (let cut = 8; cut < full.length; cut++) {
        const truncated = Buffer.from(full.subarray(0, cut));
        truncated.writeInt32BE(cut, 0);
        expect(decodeStartupPacket(truncated).kind).toBe('invalid');
      }
    });
  });
});

describe('parseOptionsParameter', () => {
  const parse = (options: string): Record<string, string> | undefined => {
    const parsed = parseOptionsParameter(options);
    return parsed === undefined ? undefined : Object.fromEntries(parsed);
  };

  test('-c name=value', () => {
    expect(parse('-c search_path=app')).toEqual({ search_path: 'app' });
  });

  test('-cname=value (no space)', () => {
    expect(parse('-csearch_path=app')).toEqual({ search_path: 'app' });
  });

  test('--name=value, with dashes in the name becoming underscores', () => {
    expect(parse('--a-b=c')).toEqual({ a_b: 'c' });
    expect(parse('--statement-timeout=5s')).toEqual({ statement_timeout: '5s' });
    expect(parse('-c lock-timeout=1s')).toEqual({ lock_timeout: '1s' });
    expect(parse('--idle-in-transaction-session-timeout=0')).toEqual({ idle_in_transaction_session_timeout: '0' });
  });

  test('dashes in the value are kept', () => {
    expect(parse('-c application_name=my-app')).toEqual({ application_name: 'my-app' });
  });

  test('several settings, mixed forms, any whitespace between them', () => {
    expect(parse('  -c a=1\t--b=2\n-cc=3   -c  d=4 ')).toEqual({ a: '1', b: '2', c: '3', d: '4' });
  });

  test('backslash-escaped spaces stay inside the value', () => {
    expect(parse('-c search_path=a\\ b')).toEqual({ search_path: 'a b' });
    expect(parse('-c x=a\\ \\ b -c y=z')).toEqual({ x: 'a  b', y: 'z' });
  });

  test('backslash escapes a backslash and any other character', () => {
    expect(parse('-c x=a\\\\b')).toEqual({ x: 'a\\b' });
    expect(parse('-c x=\\a')).toEqual({ x: 'a' });
  });

  test('the value may contain "=" and be empty', () => {
    expect(parse('-c a=b=c')).toEqual({ a: 'b=c' });
    expect(parse('-c a=')).toEqual({ a: '' });
  });

  test('later settings win', () => {
    expect(parse('-c a=1 -c a=2')).toEqual({ a: '2' });
  });

  test('empty and whitespace-only options give no settings', () => {
    expect(parse('')).toEqual({});
    expect(parse('   ')).toEqual({});
  });

  test.each([
    ['another switch', '-B 100'],
    ['a debug switch', '-d 5'],
    ['a bare word', 'search_path=app'],
    ['-c with nothing after it', '-c'],
    ['-c followed by a setting without "="', '-c search_path'],
    ['-c with an empty name', '-c =x'],
    ['"--" alone', '--'],
    ['-- without "="', '--foo'],
    ['a valid setting followed by another switch', '-c a=b -e'],
    ['a single dash', '-'],
  ])('rejects %s', (_name, options) => {
    expect(parseOptionsParameter(options)).toBeUndefined();
  });

  // Regression test for a bug found in review (see the commit that fixed it).
  test('separates arguments on every isspace() character, like pg_split_opts', () => {
    expect(parse('-c a=b\r-c c=d')).toEqual({ a: 'b', c: 'd' });
    expect(parse('-c a=b\f-c c=d')).toEqual({ a: 'b', c: 'd' });
    expect(parse('-c a=b\v-c c=d')).toEqual({ a: 'b', c: 'd' });
  });

  // Regression test for a bug found in review (see the commit that fixed it).
  test('drops a trailing lone backslash, like pg_split_opts', () => {
    expect(parse('-c a=b\\')).toEqual({ a: 'b' });
  });
});
