/**
 * TLS end to end for PostgreSQL, against real servers:
 * - targetTls: server connections over TLS (seen by the server itself in pg_stat_ssl),
 *   FOLLOW_CLIENT keeping plaintext clients on plaintext server connections, REQUIRED with a
 *   CA bundle, a wrong CA and a server without TLS refused with SQLSTATE 08001;
 * - tls.minVersion: a TLS 1.1 client refused by default, accepted when configured;
 * - PostgreSQL 17 direct TLS (a ClientHello instead of SSLRequest, ALPN "postgresql"), and
 *   ALPN "postgresql" offered after an SSLRequest too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AddressInfo, Socket, createServer, connect as tcpConnect } from 'node:net';
import { ConnectionOptions, TLSSocket, connect as tlsConnect } from 'node:tls';
import { Client } from 'pg';
import { PgServer, startPostgres } from '../harness/postgres';
import { createSelfSignedCert, type TlsFiles } from '../harness/processes';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { CANCEL_REQUEST_CODE, SSL_REQUEST_CODE } from '../../runtime/protocol/pg/messages';
import { APP_PASSWORD, APP_USER, connectedClient, proxyClient, runBinary, sendCancelRequest } from './support';

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
const NO_VERIFY = { rejectUnauthorized: false };

let tlsServer: PgServer;
let plainServer: PgServer;
let otherCaDir: string;
let proxyCert: TlsFiles;
const proxies: TidepoolProcess[] = [];
/** One proxy per configuration under test, started together. */
let proxy: Record<'followTls' | 'followPlain' | 'requiredWithCa' | 'requiredWrongCa' | 'followWrongCa' | 'requiredPlain' | 'legacyTls', TidepoolProcess>;

async function serverWithApp(tls: boolean): Promise<PgServer> {
  const server = await startPostgres({ tls });
  await server.createUser(APP_USER, APP_PASSWORD, { superuser: true });
  return server;
}

async function proxyFor(server: PgServer, config: Parameters<typeof startTidepool>[0]['config'] = {}): Promise<TidepoolProcess> {
  // A certificate from files: the self-signed one a proxy makes by default costs an RSA key generation per start.
  const tls = { ...proxyCert, ...config.tls };
  const proxy = await startTidepool({ targets: [{ host: server.host, port: server.port }], users: [{ name: APP_USER, password: APP_PASSWORD }], config: { ...config, tls } });
  proxies.push(proxy);
  return proxy;
}

beforeAll(async () => {
  [tlsServer, plainServer] = await Promise.all([serverWithApp(true), serverWithApp(false)]);
  otherCaDir = mkdtempSync(join(tmpdir(), 'tidepool-other-ca-'));
  await createSelfSignedCert(otherCaDir);
  proxyCert = await createSelfSignedCert(mkdtempSync(join(otherCaDir, 'proxy-')));
  const otherCa = join(otherCaDir, 'server.crt');
  const [followTls, followPlain, requiredWithCa, requiredWrongCa, followWrongCa, requiredPlain, legacyTls] = await Promise.all([
    proxyFor(tlsServer),
    proxyFor(plainServer),
    proxyFor(tlsServer, { targetTls: { mode: 'REQUIRED', caFile: tlsServer.tls!.certFile, verifyHostname: true } }),
    proxyFor(tlsServer, { targetTls: { mode: 'REQUIRED', caFile: otherCa } }),
    proxyFor(tlsServer, { targetTls: { caFile: otherCa } }),
    proxyFor(plainServer, { targetTls: { mode: 'REQUIRED' } }),
    proxyFor(plainServer, { tls: { minVersion: 'TLSv1.1' } }),
  ]);
  proxy = { followTls: followTls!, followPlain: followPlain!, requiredWithCa: requiredWithCa!, requiredWrongCa: requiredWrongCa!, followWrongCa: followWrongCa!, requiredPlain: requiredPlain!, legacyTls: legacyTls! };
}, 90_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  await Promise.all([tlsServer?.stop(), plainServer?.stop()]);
  if (otherCaDir) rmSync(otherCaDir, { recursive: true, force: true });
});

/** Whether the server connection that runs the query is TLS, as the server itself reports it. */
async function serverSideSsl(client: Client): Promise<boolean> {
  const result = await client.query<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
  return result.rows[0]!.ssl;
}

async function connectionError(proxy: TidepoolProcess, ssl: boolean): Promise<Error & { code?: string }> {
  const client = proxyClient(proxy, { ssl: ssl ? NO_VERIFY : false });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    return error as Error & { code?: string };
  } finally {
    await client.end().catch(() => undefined);
  }
  throw new Error('the connection unexpectedly worked');
}

/** Sends SSLRequest on a fresh TCP connection and returns the socket once the proxy answered 'S'. */
function sslRequest(proxy: TidepoolProcess): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: proxy.host, port: proxy.port }, () => socket.write(SSL_REQUEST));
    socket.once('error', reject);
    socket.once('data', (answer: Buffer) => {
      if (answer.toString() === 'S') resolve(socket);
      else reject(new Error(`SSLRequest answered ${JSON.stringify(answer.toString())}`));
    });
  });
}

/** Resolves with the TLS socket once the handshake completed, or rejects with why it failed. */
function handshake(options: ConnectionOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tlsConnect({ ...NO_VERIFY, ...options }, () => resolve(secure));
    secure.once('error', reject);
  });
}

describe('targetTls FOLLOW_CLIENT (the default)', () => {
  test('a TLS client is served over a TLS server connection', async () => {
    const client = await connectedClient(proxy.followTls, { ssl: NO_VERIFY });
    try {
      expect(await serverSideSsl(client)).toBe(true);
    } finally {
      await client.end();
    }
  });

  test('a plaintext client is served over a plaintext server connection', async () => {
    const client = await connectedClient(proxy.followTls, { ssl: false });
    try {
      expect(await serverSideSsl(client)).toBe(false);
    } finally {
      await client.end();
    }
  });

  test('TLS and plaintext clients never share a server connection', async () => {
    const secure = await connectedClient(proxy.followTls, { ssl: NO_VERIFY });
    const plain = await connectedClient(proxy.followTls, { ssl: false });
    try {
      for (let i = 0; i < 5; i++) {
        expect(await serverSideSsl(secure)).toBe(true);
        expect(await serverSideSsl(plain)).toBe(false);
      }
    } finally {
      await Promise.all([secure.end(), plain.end()]);
    }
  });

  test('the writer probe uses TLS when the server offers it', async () => {
    const probeSsl = await tlsServer.psql(
      "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'app' AND a.query LIKE '%pg_is_in_recovery%';",
    );
    expect(probeSsl).toBe('t');
  });

  test('a server without TLS still serves TLS clients, in plaintext (no caFile)', async () => {
    const client = await connectedClient(proxy.followPlain, { ssl: NO_VERIFY });
    try {
      expect(await serverSideSsl(client)).toBe(false);
    } finally {
      await client.end();
    }
  });
});

describe('targetTls REQUIRED', () => {
  test('with the server CA and host-name check, even a plaintext client gets a TLS server connection', async () => {
    const client = await connectedClient(proxy.requiredWithCa, { ssl: false });
    try {
      expect(await serverSideSsl(client)).toBe(true);
    } finally {
      await client.end();
    }
  });

  test('a certificate that does not chain to caFile is refused with 08001', async () => {
    const started = Date.now();
    const error = await connectionError(proxy.requiredWrongCa, false);
    expect(error.code).toBe('08001');
    expect(error.message).toMatch(/TLS handshake with the database failed: .*(self[- ]signed|certificate)/i);
    // Not waited out as if the server were down: the client hears at once.
    expect(Date.now() - started).toBeLessThan(5000);
    // And a TLS client of a FOLLOW_CLIENT proxy with that CA the same.
    expect((await connectionError(proxy.followWrongCa, true)).code).toBe('08001');
  });

  test('a server that offers no TLS is refused with 08001', async () => {
    const error = await connectionError(proxy.requiredPlain, true);
    expect(error.code).toBe('08001');
    expect(error.message).toContain('the server does not offer it');
  });
});

describe('cancel requests to a TLS server', () => {
  test('go over TLS like the session they cancel (the key never crosses the network in plaintext), and cancel', async () => {
    // A relay in front of the real server notes how each connection opens: SSLRequest or a plaintext CancelRequest.
    const openings: number[] = [];
    const relay = createServer((inbound) => {
      const outbound = tcpConnect({ host: tlsServer.host, port: tlsServer.port });
      inbound.once('data', (first: Buffer) => {
        if (first.length >= 8) openings.push(first.readInt32BE(4));
        outbound.write(first);
        inbound.pipe(outbound);
        outbound.pipe(inbound);
      });
      inbound.on('error', () => outbound.destroy());
      outbound.on('error', () => inbound.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const relayed = await proxyFor({ host: '127.0.0.1', port: (relay.address() as AddressInfo).port } as PgServer, {
      targetTls: { mode: 'REQUIRED', caFile: tlsServer.tls!.certFile, verifyHostname: true },
    });
    try {
      const client = await connectedClient(relayed, { ssl: false });
      const keys = client as unknown as { processID: number; secretKey: number };
      const running = client.query('SELECT pg_sleep(30)').then(
        () => null,
        (error: Error & { code?: string }) => error,
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      const before = openings.length;
      await sendCancelRequest(relayed.host, relayed.port, keys.processID, keys.secretKey);
      expect((await running)?.code).toBe('57014');
      expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await client.end();
      // The proxy opened exactly one more server connection for the cancel, and it began with SSLRequest.
      expect(openings.slice(before)).toEqual([SSL_REQUEST_CODE]);
      expect(openings).not.toContain(CANCEL_REQUEST_CODE);
    } finally {
      relay.close();
    }
  });
});

describe('tls.minVersion', () => {
  const tls11 = { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;

  test('a TLS 1.1 client is refused by default; TLS 1.2 is accepted', async () => {
    await expect(handshake({ socket: await sslRequest(proxy.followPlain), ...tls11 })).rejects.toThrow(/protocol version|alert/i);
    const modern = await handshake({ socket: await sslRequest(proxy.followPlain), minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    expect(modern.getProtocol()).toBe('TLSv1.2');
    modern.destroy();
  });

  test('minVersion TLSv1.1 lets a TLS 1.1 client log in', async () => {
    const secure = await handshake({ socket: await sslRequest(proxy.legacyTls), ...tls11 });
    expect(secure.getProtocol()).toBe('TLSv1.1');
    secure.destroy();
    // A real login over TLS 1.1 with pg.
    const client = await connectedClient(proxy.legacyTls, { ssl: { ...NO_VERIFY, ...tls11 } });
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    await client.end();
  });
});

describe('PostgreSQL 17 direct TLS and ALPN', () => {
  test('a client opening with a ClientHello and ALPN "postgresql" logs in and queries', async () => {
    const secure = tlsConnect({ host: proxy.followTls.host, port: proxy.followTls.port, ALPNProtocols: ['postgresql'], ...NO_VERIFY });
    // pg drives the already-connected TLS socket as its stream: StartupMessage, SCRAM, queries.
    // pg calls connect() and waits for 'connect'; this socket is connected already.
    (secure as unknown as { connect: () => TLSSocket }).connect = () => {
      process.nextTick(() => secure.emit('connect'));
      return secure;
    };
    const client = new Client({ user: APP_USER, password: APP_PASSWORD, database: 'postgres', stream: () => secure });
    client.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    expect(secure.alpnProtocol).toBe('postgresql');
    await client.connect();
    try {
      expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe(APP_USER);
      // The client is a TLS client, so its server connection is TLS too (FOLLOW_CLIENT).
      expect(await serverSideSsl(client)).toBe(true);
    } finally {
      await client.end();
    }
  });

  test('a direct-TLS client without ALPN "postgresql" is closed without an answer', async () => {
    const secure = await handshake({ host: proxy.followTls.host, port: proxy.followTls.port });
    expect(secure.alpnProtocol).toBe(false);
    const received: Buffer[] = [];
    secure.on('data', (chunk: Buffer) => received.push(chunk));
    secure.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => secure.once('close', () => resolve()));
    // A StartupMessage for user app, database postgres.
    const body = Buffer.from(`\0\x03\0\0user\0${APP_USER}\0database\0postgres\0\0`, 'latin1');
    const length = Buffer.alloc(4);
    length.writeInt32BE(body.length + 4);
    secure.write(Buffer.concat([length, body]));
    await closed;
    expect(Buffer.concat(received).length).toBe(0);
    // The proxy says why (its log arrives through a pipe, so possibly after the close).
    await expect(proxy.followTls.waitForLog((line) => line.event === 'direct-tls-refused', 5000)).resolves.toMatchObject({ alpn: null });
  });

  test('after an SSLRequest the proxy offers ALPN "postgresql" (PostgreSQL 17 libpq checks it)', async () => {
    const secure = await handshake({ socket: await sslRequest(proxy.followTls), ALPNProtocols: ['postgresql'] });
    expect(secure.alpnProtocol).toBe('postgresql');
    secure.destroy();
    // Clients that send no ALPN (libpq before 17) are still served.
    const out = await runBinary('psql', ['-X', '-At', '-c', 'SELECT 1', `host=${proxy.followTls.host} port=${proxy.followTls.port} user=${APP_USER} dbname=postgres sslmode=require`], {
      env: { PGPASSWORD: APP_PASSWORD, PGCONNECT_TIMEOUT: '10' },
    });
    expect(out.stderr).toBe('');
    expect(out.stdout.trim()).toBe('1');
  });
});
