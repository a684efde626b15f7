/**
 * The MySQL front door end to end, with real mysql2 clients and the mariadb CLI against a
 * real MariaDB: both auth plugins, TLS, requireTls, error codes of the troubleshooting
 * table, COM_CHANGE_USER / COM_RESET_CONNECTION, and bad input.
 */
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { nativePasswordToken } from '../../runtime/protocol/mysql/auth';
import { AuthPlugin, CapabilityFlag } from '../../runtime/protocol/mysql/constants';
import { MysqlPacketFramer, encodePacket } from '../../runtime/protocol/mysql/framing';
import { encodeHandshakeResponse41, encodeSslRequest, parseHandshakeV10 } from '../../runtime/protocol/mysql/packets';
import type { MariadbServer } from '../harness/mariadb';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import {
  APP_DB,
  APP_PASSWORD,
  APP_USER,
  connectError,
  connectThroughProxy,
  mariadbThroughProxy,
  queryValue,
  rawConnection,
  serverConnectionCount,
  startServerWithAppUser,
} from './support';

const SHA2_USER = 'sha2user';
const SHA2_PASSWORD = 'sha2-password';

let server: MariadbServer;
let proxy: TidepoolProcess;

beforeAll(async () => {
  server = await startServerWithAppUser({ maxConnections: 20 });
  await server.createUser(SHA2_USER, SHA2_PASSWORD, { superuser: true });
  proxy = await startTidepool({
    engineFamily: 'MYSQL',
    targets: [{ host: server.host, port: server.port }],
    users: [
      { name: APP_USER, password: APP_PASSWORD, clientPasswordAuthType: 'MYSQL_NATIVE_PASSWORD' },
      { name: SHA2_USER, password: SHA2_PASSWORD, clientPasswordAuthType: 'MYSQL_CACHING_SHA2_PASSWORD' },
    ],
    // 15% of max_connections 20 is 3, one of them held by the writer probe: a pool of 2 server connections.
    config: { connectionPoolConfig: { maxConnectionsPercent: 15, connectionBorrowTimeout: 2 }, limits: { maxMessageBytes: 65536 } },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await server?.stop();
});

/** A raw socket logged in as the app user with mysql_native_password; `loggedIn` is how many bytes it had received by then. */
async function rawLoggedIn(through: TidepoolProcess = proxy): Promise<{ raw: Awaited<ReturnType<typeof rawConnection>>; loggedIn: number }> {
  const raw = await rawConnection(through);
  const handshake = parseHandshakeV10(new MysqlPacketFramer().pushPackets(raw.received())[0]!.payload);
  const capabilityFlags =
    CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_SECURE_CONNECTION | CapabilityFlag.CLIENT_PLUGIN_AUTH | CapabilityFlag.CLIENT_CONNECT_WITH_DB | CapabilityFlag.CLIENT_LONG_PASSWORD;
  const login = encodeHandshakeResponse41({
    capabilityFlags,
    characterSet: 45,
    username: APP_USER,
    authResponse: nativePasswordToken(APP_PASSWORD, handshake.scramble),
    database: APP_DB,
    authPluginName: AuthPlugin.MYSQL_NATIVE_PASSWORD,
  });
  const before = raw.received().length;
  raw.socket.write(encodePacket(login, 1));
  for (let waited = 0; raw.received().length === before && waited < 5000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
  expect(raw.received()[before + 4]).toBe(0x00);
  return { raw, loggedIn: raw.received().length };
}

describe('authentication', () => {
  test('mysql_native_password with mysql2; the server version is the target’s', async () => {
    const connection = await connectThroughProxy(proxy);
    expect(await queryValue(connection, 'SELECT CURRENT_USER()')).toBe(`${APP_USER}@%`);
    expect(String(await queryValue(connection, 'SELECT VERSION()'))).toMatch(/MariaDB/);
    await connection.end();
  });

  test('mysql_native_password with the mariadb CLI', async () => {
    const out = await mariadbThroughProxy(proxy, 'SELECT CURRENT_USER(), DATABASE()');
    expect(out.stderr).toBe('');
    expect(out.stdout.trim()).toBe(`${APP_USER}@%\t${APP_DB}`);
  });

  test('caching_sha2_password: full authentication with the RSA key on plaintext, then the fast path', async () => {
    const first = await connectThroughProxy(proxy, { user: SHA2_USER, password: SHA2_PASSWORD });
    expect(await queryValue(first, 'SELECT CURRENT_USER()')).toBe(`${SHA2_USER}@%`);
    await first.end();
    const second = await connectThroughProxy(proxy, { user: SHA2_USER, password: SHA2_PASSWORD });
    expect(await queryValue(second, 'SELECT 1 + 1')).toBe(2);
    await second.end();
    // A wrong password fails on the fast path too (the cache holds the right one now).
    const wrong = await connectError(proxy, { user: SHA2_USER, password: 'not-it' });
    expect(wrong).toMatchObject({ errno: 1045, sqlState: '28000', message: `Access denied for user '${SHA2_USER}'@'%' (using password: YES)` });
  });

  test('caching_sha2_password full authentication over TLS (clear password inside TLS)', async () => {
    const wrongOverTls = await connectError(proxy, { user: SHA2_USER, password: 'nope', ssl: { rejectUnauthorized: false } });
    expect(wrongOverTls?.errno).toBe(1045);
    // A fresh proxy has an empty cache: the first login takes the full path.
    const fresh = await startTidepool({
      engineFamily: 'MYSQL',
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: SHA2_USER, password: SHA2_PASSWORD, clientPasswordAuthType: 'MYSQL_CACHING_SHA2_PASSWORD' }],
    });
    try {
      const connection = await connectThroughProxy(fresh, { user: SHA2_USER, password: SHA2_PASSWORD, ssl: { rejectUnauthorized: false } });
      expect(await queryValue(connection, 'SELECT CURRENT_USER()')).toBe(`${SHA2_USER}@%`);
      await connection.end();
    } finally {
      await fresh.stop();
    }
  });

  test('wrong password and unknown user get the same 1045 error', async () => {
    const wrong = await connectError(proxy, { password: 'not-it' });
    const unknown = await connectError(proxy, { user: 'nobody', password: 'whatever' });
    expect(wrong).toMatchObject({ errno: 1045, sqlState: '28000', message: `Access denied for user '${APP_USER}'@'%' (using password: YES)` });
    expect(unknown).toMatchObject({ errno: 1045, sqlState: '28000', message: "Access denied for user 'nobody'@'%' (using password: YES)" });
    const empty = await connectError(proxy, { password: '' });
    expect(empty).toMatchObject({ errno: 1045, message: `Access denied for user '${APP_USER}'@'%' (using password: NO)` });
  });

  test('the mariadb CLI sees the same 1045 text', async () => {
    const out = await mariadbThroughProxy(proxy, 'SELECT 1', [], 'nobody', 'x');
    expect(out.code).not.toBe(0);
    expect(out.stderr).toContain("ERROR 1045 (28000): Access denied for user 'nobody'@'%' (using password: YES)");
  });

  test('an unknown database is refused at login with the server’s own error', async () => {
    const error = await connectError(proxy, { database: 'no_such_db' });
    expect(error?.errno).toBe(1049);
  });
});

describe('TLS', () => {
  test('mysql2 upgrades with CLIENT_SSL (self-signed certificate)', async () => {
    const connection = await connectThroughProxy(proxy, { ssl: { rejectUnauthorized: false } });
    expect(await queryValue(connection, 'SELECT 41 + 1')).toBe(42);
    await connection.end();
  });

  test('a TLS ClientHello arriving in the same chunk as the SSL request is not lost', async () => {
    const raw = await rawConnection(proxy);
    const handshake = parseHandshakeV10(new MysqlPacketFramer().pushPackets(raw.received())[0]!.payload);
    const capabilityFlags =
      CapabilityFlag.CLIENT_PROTOCOL_41 | CapabilityFlag.CLIENT_SECURE_CONNECTION | CapabilityFlag.CLIENT_PLUGIN_AUTH | CapabilityFlag.CLIENT_SSL | CapabilityFlag.CLIENT_LONG_PASSWORD;
    raw.socket.removeAllListeners('data');
    // Corked: the SSL request and the ClientHello leave in one write.
    raw.socket.cork();
    raw.socket.write(encodePacket(encodeSslRequest({ capabilityFlags, characterSet: 45 }), 1));
    // Through a JS stream, so the ClientHello goes through the corked socket's write() too.
    const relay = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        raw.socket.write(chunk, callback);
      },
    });
    raw.socket.on('data', (chunk: Buffer) => relay.push(chunk));
    const secure = tlsConnect({ socket: relay, rejectUnauthorized: false });
    setTimeout(() => raw.socket.uncork(), 50);
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
    const answer = new Promise<Buffer>((resolve) => secure.once('data', (chunk: Buffer) => resolve(chunk)));
    const response = encodeHandshakeResponse41({
      capabilityFlags,
      characterSet: 45,
      username: APP_USER,
      authResponse: nativePasswordToken(APP_PASSWORD, handshake.scramble),
      authPluginName: AuthPlugin.MYSQL_NATIVE_PASSWORD,
    });
    secure.write(encodePacket(response, 2));
    const ok = await answer;
    expect(ok[3]).toBe(3); // sequence id
    expect(ok[4]).toBe(0x00); // OK
    secure.destroy();
  });

  test('mariadb --ssl connects and reports a cipher', async () => {
    const out = await mariadbThroughProxy(proxy, 'status', ['--ssl']);
    expect(out.stderr).toBe('');
    expect(out.stdout).toMatch(/SSL:\s+Cipher in use is \S+/);
  });

  test('requireTls refuses plaintext clients with a clear error and accepts TLS ones', async () => {
    const strict = await startTidepool({
      engineFamily: 'MYSQL',
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { requireTls: true },
    });
    try {
      const plain = await connectError(strict);
      expect(plain).toMatchObject({ errno: 3159, message: 'This Tidepool proxy requires TLS connections' });
      const secure = await connectThroughProxy(strict, { ssl: { rejectUnauthorized: false } });
      expect(await queryValue(secure, 'SELECT 1')).toBe(1);
      await secure.end();
    } finally {
      await strict.stop();
    }
  });
});

describe('errors of the troubleshooting table', () => {
  test('a ucs2 character_set_client is refused with 1231', async () => {
    const error = await connectError(proxy, { charset: 'UCS2_GENERAL_CI' });
    // mysql2 decodes the message in the character set it asked for, so only the code is comparable here.
    expect(error).toMatchObject({ errno: 1231, sqlState: '42000' });
  });

  test('borrow timeout: 9501 when both pooled connections stay in transactions', async () => {
    const holders = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
    const waiter = await connectThroughProxy(proxy);
    try {
      for (const holder of holders) {
        await holder.query('BEGIN');
        await holder.query('SELECT 1');
      }
      const error = await waiter.query('SELECT 1').then(
        () => null,
        (e: Error & { errno?: number }) => e,
      );
      expect(error).toMatchObject({ errno: 9501, message: 'Timed-out waiting to acquire database connection' });
      // The session survives the timeout.
      for (const holder of holders) await holder.query('COMMIT');
      expect(await queryValue(waiter, 'SELECT 7')).toBe(7);
    } finally {
      await Promise.all([...holders, waiter].map((c) => c.end()));
    }
  });
});

describe('session commands', () => {
  test('COM_CHANGE_USER switches users and resets the session', async () => {
    const connection = await connectThroughProxy(proxy);
    await connection.query("SET time_zone = '+04:00'");
    await connection.changeUser({ user: SHA2_USER, password: SHA2_PASSWORD, database: 'otherdb' });
    expect(await queryValue(connection, 'SELECT CURRENT_USER()')).toBe(`${SHA2_USER}@%`);
    expect(await queryValue(connection, 'SELECT DATABASE()')).toBe('otherdb');
    expect(await queryValue(connection, 'SELECT @@time_zone')).toBe('SYSTEM');
    const failed = await connection.changeUser({ user: APP_USER, password: 'wrong' }).then(
      () => null,
      (e: Error & { errno?: number }) => e,
    );
    expect(failed?.errno).toBe(1045);
    connection.destroy();
  });

  test('COM_RESET_CONNECTION restores the login state and ends the pin', async () => {
    const connection = await connectThroughProxy(proxy);
    await connection.query('USE otherdb');
    await connection.query("SET time_zone = '+02:00'");
    await connection.query('SET @kept = 5');
    await connection.reset();
    expect(await queryValue(connection, 'SELECT DATABASE()')).toBe(APP_DB);
    expect(await queryValue(connection, 'SELECT @@time_zone')).toBe('SYSTEM');
    expect(await queryValue(connection, 'SELECT @kept')).toBeNull();
    await connection.end();
  });

  test('COM_PING and COM_INIT_DB', async () => {
    const connection = await connectThroughProxy(proxy);
    await connection.ping();
    await connection.changeUser({ database: 'otherdb' });
    expect(await queryValue(connection, 'SELECT DATABASE()')).toBe('otherdb');
    await connection.end();
  });
});

describe('bad input', () => {
  test('a malformed handshake response gets an ERR and only that client is closed', async () => {
    const raw = await rawConnection(proxy);
    // A 3-byte "handshake response": far too short to be one.
    raw.socket.write(Buffer.from([3, 0, 0, 1, 1, 2, 3]));
    await raw.closed;
    const received = raw.received();
    const errAt = received.indexOf(0xff, received.readUIntLE(0, 3) + 4);
    expect(errAt).toBeGreaterThan(0);
    const code = received.readUInt16LE(errAt + 1);
    expect(code).toBe(1043);
    const connection = await connectThroughProxy(proxy);
    expect(await queryValue(connection, 'SELECT 1')).toBe(1);
    await connection.end();
  });

  test('an oversized command gets 1153 and closes that client; its server connection is not leaked', async () => {
    const victim = await connectThroughProxy(proxy);
    victim.on('error', () => undefined);
    const error = await victim.query(`SELECT '${'x'.repeat(100_000)}'`).then(
      () => null,
      (e: Error & { errno?: number }) => e,
    );
    expect(error?.errno).toBe(1153);
    const others = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
    expect(await Promise.all(others.map((c) => queryValue(c, 'SELECT 2')))).toEqual([2, 2]);
    await Promise.all(others.map((c) => c.end()));
    expect(await serverConnectionCount(server)).toBeLessThanOrEqual(3);
  });

  test('a client that vanishes mid-query does not leak its server connection', async () => {
    const vanishing = await connectThroughProxy(proxy);
    vanishing.on('error', () => undefined);
    void vanishing.query('SELECT SLEEP(2)').catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 200));
    vanishing.destroy();
    // Both pooled connections are usable by others (the busy one was closed and replaced).
    const others = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
    await others[0]!.query('BEGIN');
    await others[0]!.query('SELECT 1');
    expect(await queryValue(others[1]!, 'SELECT 6')).toBe(6);
    await others[0]!.query('COMMIT');
    await Promise.all(others.map((c) => c.end()));
    // The server notices the closed connection only when its SLEEP ends; then at most the pool's two and the writer probe remain.
    let count = await serverConnectionCount(server);
    for (let i = 0; i < 100 && count > 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      count = await serverConnectionCount(server);
    }
    expect(count).toBeLessThanOrEqual(3);
  });

  test('an unknown command is answered with an ERR and the session goes on', async () => {
    const connection = await connectThroughProxy(proxy);
    const error = await connection.query('KILL QUERY 999999').then(
      () => null,
      (e: Error & { errno?: number }) => e,
    );
    expect(error?.errno).toBe(1094); // the server's own "Unknown thread id"
    expect(await queryValue(connection, 'SELECT 3')).toBe(3);
    await connection.end();
  });
  test('a command packet out of sequence gets 1156 after the commands before it are answered; the server connection stays clean', async () => {
    const { raw, loggedIn } = await rawLoggedIn();
    // SELECT 41 as a proper command, then SELECT 42 with sequence id 3 where a command must start at 0.
    raw.socket.write(Buffer.concat([encodePacket(Buffer.from('\x03SELECT 41', 'latin1'), 0), encodePacket(Buffer.from('\x03SELECT 42', 'latin1'), 3)]));
    await raw.closed;
    const answers = new MysqlPacketFramer().pushPackets(raw.received().subarray(loggedIn));
    expect(answers.some((packet) => packet.payload.equals(Buffer.from('\x0241')))).toBe(true);
    const error = answers[answers.length - 1]!.payload;
    expect([error[0], error.readUInt16LE(1), error.subarray(4, 9).toString()]).toEqual([0xff, 1156, '08S01']);
    // Both server connections of the pool still serve others (neither got the stray packet).
    const clients = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
    await Promise.all(clients.map((client) => client.query('BEGIN')));
    expect(await Promise.all(clients.map((client) => queryValue(client, 'SELECT 7')))).toEqual([7, 7]);
    await Promise.all(clients.map(async (client) => {
      await client.query('COMMIT');
      await client.end();
    }));
  });

  test('a command cut off by a client (continuation out of sequence, or the client gone) never wedges its server connection', async () => {
    const big = await startTidepool({
      engineFamily: 'MYSQL',
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD, clientPasswordAuthType: 'MYSQL_NATIVE_PASSWORD' }],
      // A pool of 2 again (see beforeAll), and room for a 16 MiB packet.
      config: { connectionPoolConfig: { maxConnectionsPercent: 15, connectionBorrowTimeout: 2 }, limits: { maxMessageBytes: 32 * 1024 * 1024 } },
    });
    try {
      // A maximum-length packet promises a continuation; the server holds the start of the command.
      const maxLength = 0xffffff;
      const head = Buffer.alloc(4 + maxLength, 0x20);
      head.writeUIntLE(maxLength, 0, 3);
      head[3] = 0;
      head.write('\x03SELECT 1 --', 4, 'latin1');
      // 1. The continuation comes with sequence id 0 instead of 1: 1156 at once, not after the idle timeout.
      const { raw, loggedIn } = await rawLoggedIn(big);
      const startedAt = performance.now();
      raw.socket.write(Buffer.concat([head, encodePacket(Buffer.from(' '), 0)]));
      await raw.closed;
      expect(performance.now() - startedAt).toBeLessThan(5000);
      const answers = new MysqlPacketFramer().pushPackets(raw.received().subarray(loggedIn));
      expect(answers.map((packet) => packet.payload.readUInt16LE(1))).toEqual([1156]);
      // 2. Twice, a client sends the start of such a command and leaves.
      for (let i = 0; i < 2; i++) {
        const { raw: leaving } = await rawLoggedIn(big);
        await new Promise<void>((resolve) => leaving.socket.write(head, () => resolve()));
        await new Promise((resolve) => setTimeout(resolve, 200));
        leaving.socket.destroy();
      }
      // Both pooled connections serve two clients at once within the 2 s borrow timeout: none was left waiting for the rest of a command.
      const clients = await Promise.all([connectThroughProxy(big), connectThroughProxy(big)]);
      await Promise.all(clients.map((client) => client.query('BEGIN')));
      expect(await Promise.all(clients.map((client) => queryValue(client, 'SELECT 8')))).toEqual([8, 8]);
      await Promise.all(clients.map((client) => client.end()));
    } finally {
      await big.stop();
    }
  });

  test('commands pipelined behind COM_CHANGE_USER are read as its auth reply, as the server reads them: an answer, not a wait', async () => {
    const { raw, loggedIn } = await rawLoggedIn();
    // COM_CHANGE_USER (the proxy answers with an auth switch and a fresh scramble), and a query right behind it.
    const changeUser = Buffer.concat([Buffer.from([0x11]), Buffer.from(`${APP_USER}\0`), Buffer.from([20]), Buffer.alloc(20, 1), Buffer.from(`${APP_DB}\0`), Buffer.from([45, 0]), Buffer.from(`${AuthPlugin.MYSQL_NATIVE_PASSWORD}\0`)]);
    const startedAt = performance.now();
    raw.socket.write(Buffer.concat([encodePacket(changeUser, 0), encodePacket(Buffer.from('\x03SELECT 1', 'latin1'), 0)]));
    await raw.closed;
    expect(performance.now() - startedAt).toBeLessThan(3000);
    const answers = new MysqlPacketFramer().pushPackets(raw.received().subarray(loggedIn));
    expect(answers[0]!.payload[0]).toBe(0xfe); // the auth switch request
    const error = answers[answers.length - 1]!.payload;
    expect(error[0]).toBe(0xff);
    expect(error.readUInt16LE(1)).toBe(1045);
  });
});

describe('pool configuration and failures', () => {
  test('initQuery runs on every server connection without pinning; idleClientTimeout closes idle clients', async () => {
    const configured = await startTidepool({
      engineFamily: 'MYSQL',
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { idleClientTimeout: 1, connectionPoolConfig: { initQuery: 'SET SESSION max_join_size = 777' } },
    });
    try {
      const connection = await connectThroughProxy(configured);
      const closed = new Promise<Error>((resolve) => connection.once('error', resolve));
      expect(await queryValue(connection, 'SELECT @@max_join_size')).toBe(777);
      expect(configured.logs().filter((line) => line.event === 'pinned')).toHaveLength(0);
      // Idle past the 1 s timeout: the proxy says why and closes.
      const error = await closed;
      // mysql2 reports an unsolicited ERR's number as `code`.
      expect({ code: (error as unknown as { code?: number }).code, message: error.message }).toEqual({ code: 4031, message: 'terminating connection due to idle-client timeout' });
    } finally {
      await configured.stop();
    }
  });

  test('a server connection killed under a client: the command in flight fails, the session goes on', async () => {
    const connection = await connectThroughProxy(proxy);
    await connection.query('BEGIN');
    const cid = await queryValue<number>(connection, 'SELECT CONNECTION_ID()');
    const running = connection.query('SELECT SLEEP(5)').then(
      () => null,
      (e: Error & { errno?: number }) => e,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    await server.mysql(`KILL ${cid}`);
    const error = await running;
    expect(error?.errno).toBe(1317);
    expect(error?.message).toContain('the transaction was rolled back');
    expect(await queryValue(connection, 'SELECT 5')).toBe(5);
    await connection.end();
  });

  test('pipelined commands lost with their server connection: only the COMMIT is "outcome unknown" (1180), the others 1317', async () => {
    const { raw, loggedIn } = await rawLoggedIn();
    const command = (sql: string) => encodePacket(Buffer.from(`\x03${sql}`, 'latin1'), 0);
    raw.socket.write(Buffer.concat([command('BEGIN'), command('SELECT CONNECTION_ID()')]));
    let answers = new MysqlPacketFramer().pushPackets(Buffer.alloc(0));
    for (let waited = 0; answers.length < 5 && waited < 5000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      answers = new MysqlPacketFramer().pushPackets(raw.received().subarray(loggedIn));
    }
    // OK for BEGIN, then column count, column, EOF, row: the row holds the server connection's id.
    const row = answers[4]!.payload;
    const cid = Number(row.subarray(1, 1 + row[0]!).toString());
    const before = raw.received().length;
    raw.socket.write(Buffer.concat([command('SELECT SLEEP(5)'), command('COMMIT'), command('SELECT 2')]));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await server.mysql(`KILL ${cid}`);
    for (let waited = 0; new MysqlPacketFramer().pushPackets(raw.received().subarray(before)).length < 3 && waited < 5000; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const errors = new MysqlPacketFramer()
      .pushPackets(raw.received().subarray(before))
      .filter((packet) => packet.payload[0] === 0xff)
      .map((packet) => `${packet.payload.readUInt16LE(1)} ${packet.payload.subarray(4, 9).toString()}`);
    expect(errors).toEqual(['1317 70100', '1180 08007', '1317 70100']);
    raw.socket.destroy();
  });
});

describe('client connection limits', () => {
  test('maxClientConnections refuses the next client with ERROR 1040 and the spec message', async () => {
    const limited = await startTidepool({
      engineFamily: 'MYSQL',
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { limits: { maxClientConnections: 1 } },
    });
    try {
      const first = await connectThroughProxy(limited);
      const error = await connectError(limited);
      expect(error?.errno).toBe(1040);
      expect(error?.message).toBe('Number simultaneous connections exceeded (1)');
      expect(await queryValue(first, 'SELECT 1 AS one')).toBe(1);
      await first.end();
    } finally {
      await limited.stop();
    }
  });
});
