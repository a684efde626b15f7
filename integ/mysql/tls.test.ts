/**
 * TLS end to end for MySQL, against a real MariaDB (which serves TLS with a self-signed
 * certificate):
 * - targetTls: server connections over TLS (seen by the server in Ssl_cipher), FOLLOW_CLIENT
 *   keeping plaintext clients on plaintext server connections, REQUIRED with the server's CA,
 *   a wrong CA refused with error 2026;
 * - tls.minVersion: a TLS 1.1 client refused by default, accepted when configured;
 * - the mariadb CLI with --ssl-verify-server-cert against a certificate from files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { ConnectionOptions, TLSSocket, connect as tlsConnect } from 'node:tls';
import type * as mysql from 'mysql2/promise';
import { CapabilityFlag } from '../../runtime/protocol/mysql/constants';
import { encodePacket } from '../../runtime/protocol/mysql/framing';
import { encodeSslRequest } from '../../runtime/protocol/mysql/packets';
import { MariadbServer, startMariadb } from '../harness/mariadb';
import { createSelfSignedCert, type TlsFiles } from '../harness/processes';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { APP_DB, APP_PASSWORD, APP_USER, connectError, connectThroughProxy, mariadbThroughProxy, queryValue, rawConnection, startServerWithAppUser } from './support';

const NO_VERIFY = { rejectUnauthorized: false };

let server: MariadbServer;
/** Started with --skip-ssl. */
let plainServer: MariadbServer;
let proxyCertDir: string;
let proxyCert: TlsFiles;
let otherCaDir: string;
const proxies: TidepoolProcess[] = [];
/** One proxy per configuration under test, started together. */
let proxy: Record<'follow' | 'followPlain' | 'requiredPlain' | 'requiredWithCa' | 'requiredWrongCa' | 'legacyTls', TidepoolProcess>;

async function proxyWith(config: Parameters<typeof startTidepool>[0]['config'] = {}, target: MariadbServer = server): Promise<TidepoolProcess> {
  const proxy = await startTidepool({
    engineFamily: 'MYSQL',
    targets: [{ host: target.host, port: target.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    // A certificate from files: the self-signed one a proxy makes by default costs an RSA key generation per start.
    config: { ...config, tls: { certFile: proxyCert.certFile, keyFile: proxyCert.keyFile, ...config.tls } },
  });
  proxies.push(proxy);
  return proxy;
}

beforeAll(async () => {
  proxyCertDir = mkdtempSync(join(tmpdir(), 'tidepool-proxy-cert-'));
  otherCaDir = mkdtempSync(join(tmpdir(), 'tidepool-other-ca-'));
  [server, proxyCert, , plainServer] = await Promise.all([
    startServerWithAppUser(),
    createSelfSignedCert(proxyCertDir),
    createSelfSignedCert(otherCaDir),
    startMariadb({ tls: false }),
  ]);
  await plainServer.createUser(APP_USER, APP_PASSWORD, { superuser: true });
  await plainServer.mysql(`CREATE DATABASE ${APP_DB};`);
  const [follow, followPlain, requiredPlain, requiredWithCa, requiredWrongCa, legacyTls] = await Promise.all([
    proxyWith(),
    proxyWith({}, plainServer),
    proxyWith({ targetTls: { mode: 'REQUIRED' } }, plainServer),
    proxyWith({ targetTls: { mode: 'REQUIRED', caFile: server.tls.certFile, verifyHostname: true } }),
    proxyWith({ targetTls: { mode: 'REQUIRED', caFile: join(otherCaDir, 'server.crt') } }),
    proxyWith({ tls: { minVersion: 'TLSv1.1' } }),
  ]);
  proxy = { follow: follow!, followPlain: followPlain!, requiredPlain: requiredPlain!, requiredWithCa: requiredWithCa!, requiredWrongCa: requiredWrongCa!, legacyTls: legacyTls! };
}, 90_000);

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.stop()));
  await Promise.all([server?.stop(), plainServer?.stop()]);
  for (const dir of [proxyCertDir, otherCaDir]) if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The cipher of the server connection that runs the query, as MariaDB reports it ('' for plaintext). */
async function serverSideCipher(connection: mysql.Connection): Promise<string> {
  const [rows] = await connection.query<mysql.RowDataPacket[]>({ sql: "SHOW STATUS LIKE 'Ssl_cipher'", rowsAsArray: true });
  return String(rows[0]![1]);
}

describe('targetTls FOLLOW_CLIENT (the default)', () => {
  test('a TLS client is served over a TLS server connection, a plaintext client over a plaintext one', async () => {
    const secure = await connectThroughProxy(proxy.follow, { ssl: NO_VERIFY });
    const plain = await connectThroughProxy(proxy.follow);
    try {
      for (let i = 0; i < 3; i++) {
        expect(await serverSideCipher(secure)).not.toBe('');
        expect(await serverSideCipher(plain)).toBe('');
      }
    } finally {
      await Promise.all([secure.end(), plain.end()]);
    }
  });

  test('a server without TLS still serves TLS clients, in plaintext (no caFile)', async () => {
    const connection = await connectThroughProxy(proxy.followPlain, { ssl: NO_VERIFY });
    try {
      expect(await serverSideCipher(connection)).toBe('');
    } finally {
      await connection.end();
    }
  });
});

describe('targetTls REQUIRED', () => {
  test('a server that offers no TLS is refused with error 2026', async () => {
    const error = await connectError(proxy.requiredPlain, { ssl: NO_VERIFY });
    expect(error?.errno).toBe(2026);
    expect(error?.message).toContain('the server does not offer it');
  });

  test('with the server CA and host-name check, a plaintext client gets a TLS server connection', async () => {
    const connection = await connectThroughProxy(proxy.requiredWithCa);
    try {
      expect(await serverSideCipher(connection)).toMatch(/\w/);
      expect(await queryValue(connection, 'SELECT 6 * 7')).toBe(42);
    } finally {
      await connection.end();
    }
  });

  test('a certificate that does not chain to caFile is refused with error 2026', async () => {
    const started = Date.now();
    const error = await connectError(proxy.requiredWrongCa);
    expect(error?.errno).toBe(2026);
    expect(error?.message).toMatch(/TLS handshake with the database failed: .*(self[- ]signed|certificate)/i);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

/** Reads the proxy's handshake, sends an SSL request, and hands back the socket for the TLS handshake. */
async function sslRequest(proxy: TidepoolProcess): Promise<Socket> {
  const { socket } = await rawConnection(proxy);
  const flags = CapabilityFlag.CLIENT_SSL | CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_SECURE_CONNECTION | CapabilityFlag.CLIENT_PLUGIN_AUTH;
  socket.write(encodePacket(encodeSslRequest({ capabilityFlags: flags, characterSet: 45 }), 1));
  return socket;
}

function handshake(options: ConnectionOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tlsConnect({ ...NO_VERIFY, ...options }, () => resolve(secure));
    secure.once('error', reject);
  });
}

describe('tls.minVersion', () => {
  const tls11 = { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const;

  test('a TLS 1.1 client is refused by default and accepted with minVersion TLSv1.1', async () => {
    await expect(handshake({ socket: await sslRequest(proxy.follow), ...tls11 })).rejects.toThrow(/protocol version|alert/i);
    const secure = await handshake({ socket: await sslRequest(proxy.legacyTls), ...tls11 });
    expect(secure.getProtocol()).toBe('TLSv1.1');
    secure.destroy();
    const connection = await connectThroughProxy(proxy.legacyTls, { ssl: { ...NO_VERIFY, ...tls11 } });
    expect(await queryValue(connection, 'SELECT 1')).toBe(1);
    await connection.end();
  });
});

// Every proxy here serves the certificate from files (SAN localhost, 127.0.0.1).
describe('the mariadb CLI verifying the proxy certificate', () => {
  test('--ssl-verify-server-cert with the proxy CA connects, over TLS', async () => {
    const out = await mariadbThroughProxy(proxy.follow, "SHOW SESSION STATUS LIKE 'Ssl_version'", ['--ssl', `--ssl-ca=${proxyCert.certFile}`, '--ssl-verify-server-cert']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    // Through the proxy with FOLLOW_CLIENT, the server connection is TLS as well.
    expect(out.stdout).toMatch(/Ssl_version\tTLSv1\.[23]/);
  });

  test('--ssl-verify-server-cert with another CA is refused', async () => {
    const out = await mariadbThroughProxy(proxy.follow, 'SELECT 1', ['--ssl', `--ssl-ca=${join(otherCaDir, 'server.crt')}`, '--ssl-verify-server-cert']);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(/ERROR 2026|certificate|verif/i);
  });
});
