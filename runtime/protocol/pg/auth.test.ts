import { createHash } from 'node:crypto';
import {
  AuthProtocolError,
  AuthProtocolErrorCode,
  SCRAM_SHA_256,
  createMockScramServer,
  createScramClient,
  createScramServer,
  md5PasswordResponse,
  md5ServerSalt,
  saslPrep,
  verifyMd5Response,
} from './auth';

// node-postgres's own SASL client, to prove interoperability with a client we did not write.
interface PgSaslSession {
  response: string;
}
interface PgSasl {
  startSession(mechanisms: string[]): PgSaslSession;
  continueSession(session: PgSaslSession, password: string, serverData: string): Promise<void>;
  finalizeSession(session: PgSaslSession, serverData: string): void;
}
const pgSasl = require('pg/lib/crypto/sasl') as PgSasl;

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');

function expectAuthError(action: () => unknown, code: AuthProtocolErrorCode): void {
  let caught: unknown;
  try {
    action();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(AuthProtocolError);
  expect((caught as AuthProtocolError).code).toBe(code);
}

/** Runs a full exchange between our client and our server. */
function login(serverPassword: string, clientPassword: string): { ok: boolean; verified: boolean } {
  const server = createScramServer(serverPassword, { user: 'app' });
  const client = createScramClient(clientPassword);
  const serverFirst = server.handleClientFirst(client.clientFirst());
  const result = server.handleClientFinal(client.handleServerFirst(serverFirst));
  if (!result.ok) return { ok: false, verified: false };
  client.verifyServerFinal(result.serverFinal);
  return { ok: true, verified: true };
}

describe('RFC 7677 test vector', () => {
  const clientNonce = 'rOprNGfwEbeRWgbNEkqO';
  const serverNonceSuffix = '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const serverFirst = `r=${clientNonce}${serverNonceSuffix},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`;
  const clientFinal = `c=biws,r=${clientNonce}${serverNonceSuffix},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=`;
  const serverFinal = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

  it('server side produces the expected server-first and server signature', () => {
    const server = createScramServer('pencil', { salt, iterations: 4096, nonce: serverNonceSuffix });
    expect(server.mechanisms).toEqual([SCRAM_SHA_256]);
    expect(server.handleClientFirst(ascii(`n,,n=user,r=${clientNonce}`)).toString('latin1')).toBe(serverFirst);
    const result = server.handleClientFinal(ascii(clientFinal));
    expect(result).toEqual({ ok: true, serverFinal: ascii(serverFinal) });
  });

  it('client side produces the expected proof and accepts the server signature', () => {
    const client = createScramClient('pencil', { user: 'user', nonce: clientNonce });
    expect(client.clientFirst().toString('latin1')).toBe(`n,,n=user,r=${clientNonce}`);
    expect(client.handleServerFirst(ascii(serverFirst)).toString('latin1')).toBe(clientFinal);
    expect(() => client.verifyServerFinal(ascii(serverFinal))).not.toThrow();
  });

  it('client side rejects a forged server signature', () => {
    const client = createScramClient('pencil', { user: 'user', nonce: clientNonce });
    client.clientFirst();
    client.handleServerFirst(ascii(serverFirst));
    expectAuthError(() => client.verifyServerFinal(ascii('v=AAAAZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=')), 'server-signature-mismatch');
  });
});

describe('SCRAM round trip', () => {
  it('authenticates with the right password, both ways', () => {
    expect(login('s3cret!', 's3cret!')).toEqual({ ok: true, verified: true });
  });

  it('fails with a wrong password without throwing', () => {
    expect(login('s3cret!', 'S3cret!')).toEqual({ ok: false, verified: false });
  });

  it('normalises non-ASCII passwords with SASLprep on both sides', () => {
    // U+2168 ROMAN NUMERAL NINE normalises to "IX" under NFKC.
    expect(login('p\u2168ss', 'pIXss').ok).toBe(true);
  });

  it('keeps the salt stable per user and password, and distinct across users sharing a password', () => {
    const saltOf = (user: string, password: string): string => {
      const server = createScramServer(password, { user });
      const serverFirst = server.handleClientFirst(ascii('n,,n=,r=abc')).toString('latin1');
      return /,s=([^,]+),/.exec(serverFirst)![1]!;
    };
    expect(saltOf('alice', 'pw')).toBe(saltOf('alice', 'pw'));
    expect(saltOf('alice', 'pw')).not.toBe(saltOf('bob', 'pw'));
  });

  it('uses fresh server nonces per exchange', () => {
    const nonceOf = (): string =>
      createScramServer('pw').handleClientFirst(ascii('n,,n=,r=abc')).toString('latin1').split(',')[0]!;
    expect(nonceOf()).not.toBe(nonceOf());
  });

  it('accepts the "y" channel-binding flag and requires it echoed in client-final', () => {
    const server = createScramServer('pw', { iterations: 4096 });
    const client = createScramClient('pw', { nonce: 'clientnonce' });
    client.clientFirst();
    const serverFirst = server.handleClientFirst(ascii('y,,n=,r=clientnonce'));
    const clientFinal = client.handleServerFirst(serverFirst).toString('latin1');
    // Our client says "n"; a client that sent "y" must echo eSws, so this must be refused.
    expectAuthError(() => server.handleClientFinal(ascii(clientFinal)), 'verification-mismatch');
  });

  it('honours a custom iteration count', () => {
    const server = createScramServer('pw', { iterations: 5000 });
    const client = createScramClient('pw');
    const serverFirst = server.handleClientFirst(client.clientFirst());
    expect(serverFirst.toString('latin1')).toMatch(/,i=5000$/);
    const result = server.handleClientFinal(client.handleServerFirst(serverFirst));
    expect(result.ok).toBe(true);
  });

  it('mock server for unknown users always fails and keeps a per-user salt', () => {
    const saltOf = (user: string): string =>
      createMockScramServer(user).handleClientFirst(ascii('n,,n=,r=abc')).toString('latin1').split(',')[1]!;
    expect(saltOf('ghost')).toBe(saltOf('ghost'));
    expect(saltOf('ghost')).not.toBe(saltOf('phantom'));
    const server = createMockScramServer('ghost');
    const client = createScramClient('anything');
    const serverFirst = server.handleClientFirst(client.clientFirst());
    expect(server.handleClientFinal(client.handleServerFirst(serverFirst))).toEqual({ ok: false });
  });
});

describe('interop with node-postgres (pg/lib/crypto/sasl)', () => {
  it('pg client logs in to our server and verifies its signature', async () => {
    const server = createScramServer('correct horse', { user: 'app' });
    const session = pgSasl.startSession([SCRAM_SHA_256]);
    const serverFirst = server.handleClientFirst(ascii(session.response));
    await pgSasl.continueSession(session, 'correct horse', serverFirst.toString('latin1'));
    const result = server.handleClientFinal(ascii(session.response));
    if (!result.ok) throw new Error('expected pg client to authenticate');
    expect(() => pgSasl.finalizeSession(session, result.serverFinal.toString('latin1'))).not.toThrow();
  });

  it('pg client with a wrong password is refused', async () => {
    const server = createScramServer('correct horse');
    const session = pgSasl.startSession([SCRAM_SHA_256]);
    const serverFirst = server.handleClientFirst(ascii(session.response));
    await pgSasl.continueSession(session, 'battery staple', serverFirst.toString('latin1'));
    expect(server.handleClientFinal(ascii(session.response))).toEqual({ ok: false });
  });
});

describe('SCRAM server rejects malformed client messages', () => {
  const firstFor = (server = createScramServer('pw')): ReturnType<typeof createScramServer> => {
    server.handleClientFirst(ascii('n,,n=,r=clientnonce'));
    return server;
  };

  it.each([
    ['empty', ''],
    ['no GS2 header', 'n=,r=abc'],
    ['unknown flag', 'x,,n=,r=abc'],
    ['missing authzid separator', 'n,'],
    ['missing user attribute', 'n,,r=abc'],
    ['missing nonce', 'n,,n=user'],
    ['empty nonce', 'n,,n=,r='],
    ['non-printable nonce', 'n,,n=,r=ab\u007fc'],
    ['invalid attribute', 'n,,n=,r=abc,garbage'],
    ['NUL byte', 'n,,n=\0,r=abc'],
  ])('client-first: %s', (_name, message) => {
    expectAuthError(() => createScramServer('pw').handleClientFirst(ascii(message)), 'malformed-message');
  });

  it('client-first: oversized', () => {
    expectAuthError(() => createScramServer('pw').handleClientFirst(Buffer.alloc(70000, 0x61)), 'malformed-message');
  });

  it('client-first: channel binding requested gets a clear error', () => {
    const attempt = (): Buffer => createScramServer('pw').handleClientFirst(ascii('p=tls-server-end-point,,n=,r=abc'));
    expectAuthError(attempt, 'channel-binding-unsupported');
    expect(attempt).toThrow(/channel binding/);
  });

  it('client-first: authorization identity and mandatory extensions are refused', () => {
    expectAuthError(() => createScramServer('pw').handleClientFirst(ascii('n,a=admin,n=,r=abc')), 'unsupported-feature');
    expectAuthError(() => createScramServer('pw').handleClientFirst(ascii('n,,m=ext,n=,r=abc')), 'unsupported-feature');
  });

  it('client-first: optional extensions after the nonce are ignored', () => {
    expect(() => createScramServer('pw').handleClientFirst(ascii('n,,n=u,r=abc,x=ext'))).not.toThrow();
  });

  const proof = Buffer.alloc(32).toString('base64');
  it.each([
    ['empty', ''],
    ['missing channel binding', `r=clientnonce,p=${proof}`],
    ['missing proof', 'c=biws,r=clientnonce'],
    ['proof not last', `c=biws,r=clientnonce,p=${proof},x=1`],
    ['proof not base64', 'c=biws,r=clientnonce,p=!!!!'],
    ['proof of wrong length', `c=biws,r=clientnonce,p=${Buffer.alloc(16).toString('base64')}`],
    ['invalid attribute', `c=biws,,r=clientnonce,p=${proof}`],
  ])('client-final: %s', (_name, message) => {
    expectAuthError(() => firstFor().handleClientFinal(ascii(message)), 'malformed-message');
  });

  it('client-final: wrong nonce or channel binding is a verification mismatch', () => {
    expectAuthError(() => firstFor().handleClientFinal(ascii(`c=biws,r=clientnonce,p=${proof}`)), 'verification-mismatch');
    expectAuthError(() => firstFor().handleClientFinal(ascii(`c=eSws,r=clientnonceX,p=${proof}`)), 'verification-mismatch');
  });

  it('messages out of order are refused', () => {
    expectAuthError(() => createScramServer('pw').handleClientFinal(ascii(`c=biws,r=a,p=${proof}`)), 'unexpected-message');
    const server = firstFor();
    expectAuthError(() => server.handleClientFirst(ascii('n,,n=,r=abc')), 'unexpected-message');
  });

  it('an exchange cannot be retried after a failure', () => {
    const server = createScramServer('pw');
    expectAuthError(() => server.handleClientFirst(ascii('garbage')), 'malformed-message');
    expectAuthError(() => server.handleClientFirst(ascii('n,,n=,r=abc')), 'unexpected-message');
  });
});

describe('SCRAM client rejects malformed server messages', () => {
  const started = (): ReturnType<typeof createScramClient> => {
    const client = createScramClient('pw', { nonce: 'clientnonce' });
    client.clientFirst();
    return client;
  };

  it.each([
    ['empty', '', 'malformed-message'],
    ['missing salt', 'r=clientnonceSRV,i=4096', 'malformed-message'],
    ['missing iterations', 'r=clientnonceSRV,s=c2FsdA==', 'malformed-message'],
    ['bad iterations', 'r=clientnonceSRV,s=c2FsdA==,i=0', 'malformed-message'],
    ['bad salt', 'r=clientnonceSRV,s=***,i=4096', 'malformed-message'],
    ['empty salt', 'r=clientnonceSRV,s=,i=4096', 'malformed-message'],
    ['foreign nonce', 'r=othernonce,s=c2FsdA==,i=4096', 'verification-mismatch'],
    ['nonce not extended', 'r=clientnonce,s=c2FsdA==,i=4096', 'verification-mismatch'],
    ['mandatory extension', 'm=x,r=clientnonceSRV,s=c2FsdA==,i=4096', 'unsupported-feature'],
    ['too many iterations', 'r=clientnonceSRV,s=c2FsdA==,i=100001', 'iterations-too-high'],
  ] as const)('server-first: %s', (_name, message, code) => {
    expectAuthError(() => started().handleServerFirst(ascii(message)), code);
  });

  it('server-final: error attribute and garbage', () => {
    const finished = (): ReturnType<typeof createScramClient> => {
      const client = started();
      client.handleServerFirst(ascii('r=clientnonceSRV,s=c2FsdA==,i=4096'));
      return client;
    };
    expectAuthError(() => finished().verifyServerFinal(ascii('e=invalid-proof')), 'server-error');
    expectAuthError(() => finished().verifyServerFinal(ascii('v=***')), 'malformed-message');
    expectAuthError(() => finished().verifyServerFinal(ascii('nonsense')), 'malformed-message');
    expectAuthError(() => started().verifyServerFinal(ascii('v=AAAA')), 'unexpected-message');
  });

  it('clientFirst can only be sent once', () => {
    expectAuthError(() => started().clientFirst(), 'unexpected-message');
  });
});

describe('saslPrep', () => {
  it('passes ASCII through untouched, control characters included', () => {
    expect(saslPrep('pencil')).toBe('pencil');
    expect(saslPrep('a\tb')).toBe('a\tb');
  });

  it('maps non-ASCII spaces, drops mapped-to-nothing characters, applies NFKC', () => {
    expect(saslPrep('a\u00A0b')).toBe('a b');
    expect(saslPrep('a\u00ADb')).toBe('ab');
    expect(saslPrep('\u2168')).toBe('IX');
    expect(saslPrep('\u00AA')).toBe('a');
  });

  it('falls back to the raw password when SASLprep would reject it, as PostgreSQL does', () => {
    expect(saslPrep('\u00ADab\u0007\u00E9')).toBe('\u00ADab\u0007\u00E9'); // prohibited control character
    expect(saslPrep('\u00AD')).toBe('\u00AD'); // maps to the empty string
    expect(saslPrep('x\uE000')).toBe('x\uE000'); // private use
  });
});

describe('md5', () => {
  const salt = Buffer.from([1, 2, 3, 4]);
  const md5Hex = (data: Buffer | string): string => createHash('md5').update(data).digest('hex');

  it('computes the PasswordMessage PostgreSQL expects', () => {
    const expected = 'md5' + md5Hex(Buffer.concat([Buffer.from(md5Hex('secretalice')), salt]));
    expect(md5PasswordResponse('alice', 'secret', salt)).toBe(expected);
    // Independently computed with Python's hashlib.
    expect(md5PasswordResponse('alice', 'secret', salt)).toBe('md598a0412b9c31436fc53776e863350083');
  });

  it('verifies right and wrong responses', () => {
    const response = md5PasswordResponse('alice', 'secret', salt);
    expect(verifyMd5Response('alice', 'secret', salt, response)).toBe(true);
    expect(verifyMd5Response('alice', 'Secret', salt, response)).toBe(false);
    expect(verifyMd5Response('bob', 'secret', salt, response)).toBe(false);
    expect(verifyMd5Response('alice', 'secret', Buffer.from([1, 2, 3, 5]), response)).toBe(false);
    expect(verifyMd5Response('alice', 'secret', salt, '')).toBe(false);
    expect(verifyMd5Response('alice', 'secret', salt, response.slice(0, -1) + '\u0161')).toBe(false);
  });

  it('generates random 4-byte salts', () => {
    const first = md5ServerSalt();
    expect(first).toHaveLength(4);
    expect(md5ServerSalt().equals(first) && md5ServerSalt().equals(first)).toBe(false);
  });

  it('refuses a salt of the wrong size', () => {
    expectAuthError(() => md5PasswordResponse('alice', 'secret', Buffer.alloc(3)), 'malformed-message');
  });
});
