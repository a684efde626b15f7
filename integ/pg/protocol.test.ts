/**
 * The PostgreSQL front door end to end, with real clients against a real server:
 * authentication, TLS, cancel, pool limits and timeouts, bad input, COPY / NOTICE /
 * NOTIFY pass-through, and graceful shutdown.
 */
import type { PgServer } from '../harness/postgres';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import {
  APP_PASSWORD,
  APP_USER,
  connectedClient,
  nextClientError,
  proxyClient,
  psqlThroughProxy,
  rawSocketOf,
  runBinary,
  sendCancelRequest,
  startServerWithAppUser,
} from './support';

let server: PgServer;
let proxy: TidepoolProcess;

beforeAll(async () => {
  server = await startServerWithAppUser({ maxConnections: 20 });
  await server.createUser('md5user', 'md5-password');
  await server.psql('CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL); INSERT INTO accounts VALUES (1, 100), (2, 200);');
  proxy = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [
      { name: APP_USER, password: APP_PASSWORD },
      { name: 'md5user', password: 'md5-password', clientPasswordAuthType: 'POSTGRES_MD5' },
    ],
    // 15% of max_connections 20 is 3 connections: the writer probe holds one, the pool gets 2.
    config: { connectionPoolConfig: { maxConnectionsPercent: 15, connectionBorrowTimeout: 2 }, limits: { maxMessageBytes: 65536 } },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await server?.stop();
});

describe('authentication', () => {
  test('SCRAM-SHA-256 login with the secret password', async () => {
    const client = await connectedClient(proxy);
    const result = await client.query('SELECT current_user AS who');
    expect(result.rows[0].who).toBe(APP_USER);
    await client.end();
  });

  test('md5 login for a secret with POSTGRES_MD5, through psql', async () => {
    const out = await runBinary('psql', ['-X', '-At', '-h', proxy.host, '-p', String(proxy.port), '-U', 'md5user', '-d', 'postgres', '-c', 'SELECT current_user'], {
      env: { PGPASSWORD: 'md5-password', PGSSLMODE: 'disable' },
    });
    expect(out.stderr).toBe('');
    expect(out.stdout.trim()).toBe('md5user');
    const md5 = await connectedClient(proxy, { user: 'md5user', password: 'md5-password' });
    expect((await md5.query('SELECT current_user AS who')).rows[0].who).toBe('md5user');
    await md5.end();
  });

  test('wrong password and unknown user get the same 28P01 error', async () => {
    const wrong = proxyClient(proxy, { password: 'not-it' });
    const unknown = proxyClient(proxy, { user: 'nobody', password: 'whatever' });
    const wrongError = await wrong.connect().then(() => null, (e: Error & { code?: string }) => e);
    const unknownError = await unknown.connect().then(() => null, (e: Error & { code?: string }) => e);
    expect(wrongError?.code).toBe('28P01');
    expect(wrongError?.message).toBe(`password authentication failed for user "${APP_USER}"`);
    expect(unknownError?.code).toBe('28P01');
    expect(unknownError?.message).toBe('password authentication failed for user "nobody"');
  });

  test('md5 wrong password is refused', async () => {
    const client = proxyClient(proxy, { user: 'md5user', password: 'nope' });
    await expect(client.connect()).rejects.toMatchObject({ code: '28P01' });
  });
});

describe('TLS', () => {
  test('a client can upgrade with SSLRequest (self-signed certificate)', async () => {
    const client = await connectedClient(proxy, { ssl: { rejectUnauthorized: false } });
    expect((await client.query('SELECT 41 + 1 AS answer')).rows[0].answer).toBe(42);
    await client.end();
  });

  test('psql sslmode=require connects', async () => {
    const out = await psqlThroughProxy(proxy, 'SELECT 7', { PGSSLMODE: 'require' });
    expect(out.stderr).toBe('');
    expect(out.stdout.trim()).toBe('7');
  });

  test('requireTls refuses plaintext clients with a clear message and accepts TLS ones', async () => {
    const strict = await startTidepool({
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { requireTls: true },
    });
    try {
      const plain = proxyClient(strict, { ssl: false });
      await expect(plain.connect()).rejects.toMatchObject({ code: '28000', message: 'This Tidepool proxy requires TLS connections' });
      const secure = await connectedClient(strict, { ssl: { rejectUnauthorized: false } });
      expect((await secure.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      await secure.end();
    } finally {
      await strict.stop();
    }
  });
});

describe('cancel', () => {
  test('a CancelRequest with the proxy-issued key cancels the running statement', async () => {
    const client = await connectedClient(proxy);
    const keys = client as unknown as { processID: number; secretKey: number };
    const running = client.query('SELECT pg_sleep(30)').then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    await sendCancelRequest(proxy.host, proxy.port, keys.processID, keys.secretKey);
    const error = await running;
    expect(error?.code).toBe('57014');
    // The session is still usable afterwards.
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    await client.end();
  });

  test('a cancel with a wrong key is ignored', async () => {
    const client = await connectedClient(proxy);
    const keys = client as unknown as { processID: number; secretKey: number };
    const running = client.query('SELECT pg_sleep(0.5) AS slept');
    await new Promise((r) => setTimeout(r, 100));
    await sendCancelRequest(proxy.host, proxy.port, keys.processID, keys.secretKey ^ 1);
    await expect(running).resolves.toBeDefined();
    await client.end();
  });
});

describe('pool limits and timeouts', () => {
  test('a client waiting longer than connectionBorrowTimeout gets 53300 and its session survives', async () => {
    const holders = [await connectedClient(proxy), await connectedClient(proxy)];
    for (const holder of holders) await holder.query('BEGIN');
    const waiter = await connectedClient(proxy);
    const error = await waiter.query('SELECT 1').then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(error?.code).toBe('53300');
    expect(error?.message).toBe('Timed-out waiting to acquire database connection');
    for (const holder of holders) await holder.query('COMMIT');
    expect((await waiter.query('SELECT 2 AS two')).rows[0].two).toBe(2);
    for (const c of [...holders, waiter]) await c.end();
  });

  test('the server never sees more connections than the pool ceiling', async () => {
    const clients = await Promise.all(Array.from({ length: 12 }, () => connectedClient(proxy)));
    await Promise.all(clients.map((c) => c.query('SELECT pg_sleep(0.05)')));
    const pids = new Set<number>();
    await Promise.all(clients.map(async (c) => pids.add((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number)));
    expect(pids.size).toBeLessThanOrEqual(2);
    await Promise.all(clients.map((c) => c.end()));
  });

  test('idleClientTimeout closes an idle client with 57P05', async () => {
    const short = await startTidepool({
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { idleClientTimeout: 1 },
    });
    try {
      const client = await connectedClient(short);
      const error = await nextClientError(client);
      expect((error as { code?: string }).code).toBe('57P05');
    } finally {
      await short.stop();
    }
  });
});

/** Opens a raw connection, sends `packets`, and collects what the proxy answers until `enough` says stop or it closes. */
async function rawExchange(packets: Buffer[], enough: (received: Buffer) => boolean): Promise<Buffer> {
  const { connect } = await import('node:net');
  return new Promise<Buffer>((resolve) => {
    const socket = connect({ host: proxy.host, port: proxy.port }, () => {
      for (const packet of packets) socket.write(packet);
    });
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (enough(received)) socket.destroy();
    });
    socket.on('close', () => resolve(received));
    socket.on('error', () => undefined);
  });
}

function startupPacket(major: number, minor: number, params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    ...Object.entries(params).flatMap(([k, v]) => [Buffer.from(`${k}\0`), Buffer.from(`${v}\0`)]),
    Buffer.from([0]),
  ]);
  const header = Buffer.alloc(8);
  header.writeInt32BE(8 + body.length, 0);
  header.writeInt32BE((major << 16) | minor, 4);
  return Buffer.concat([header, body]);
}

describe('startup negotiation', () => {
  test('protocol 3.2 with an unknown _pq_ option gets NegotiateProtocolVersion, then authentication', async () => {
    const reply = await rawExchange([startupPacket(3, 2, { user: APP_USER, database: 'postgres', '_pq_.fancy': 'on' })], (r) => r.length > 0 && r.includes(0x52));
    expect(String.fromCharCode(reply[0]!)).toBe('v');
    const length = reply.readInt32BE(1);
    expect(reply.readInt32BE(5)).toBe((3 << 16) | 0);
    expect(reply.readInt32BE(9)).toBe(1);
    expect(reply.toString('utf8', 13, 1 + length - 1)).toBe('_pq_.fancy');
    expect(String.fromCharCode(reply[1 + length]!)).toBe('R');
  });

  test('GSSENCRequest is declined with N', async () => {
    const gss = Buffer.alloc(8);
    gss.writeInt32BE(8, 0);
    gss.writeInt32BE(80877104, 4);
    const reply = await rawExchange([gss], (r) => r.length >= 1);
    expect(reply.toString('latin1', 0, 1)).toBe('N');
  });

  test('protocol 2 is refused with 0A000', async () => {
    const reply = await rawExchange([startupPacket(2, 0, { user: APP_USER })], () => false);
    expect(String.fromCharCode(reply[0]!)).toBe('E');
    expect(reply.toString('latin1')).toContain('0A000');
  });

  test('a startup packet without a user is refused with 08P01', async () => {
    const reply = await rawExchange([startupPacket(3, 0, { database: 'postgres' })], () => false);
    expect(reply.toString('latin1')).toContain('08P01');
  });
});

describe('bad input affects only that client', () => {
  test('a message with an invalid length gets 08P01 and is closed; others continue', async () => {
    const bystander = await connectedClient(proxy);
    const offender = await connectedClient(proxy);
    const failed = nextClientError(offender);
    rawSocketOf(offender).write(Buffer.from([0x51, 0, 0, 0, 2]));
    expect((await failed).code).toBe('08P01');
    expect((await bystander.query('SELECT 3 AS three')).rows[0].three).toBe(3);
    await bystander.end();
  });

  test('a client that leaves with extended-protocol messages unsynced does not wedge the pool', async () => {
    // Parse (failing, or valid and executed) without its Sync: the server waits for that Sync, so the
    // connection must be discarded, not reset (a reset's ROLLBACK would never be answered).
    const parse = (sql: string) => {
      const body = Buffer.concat([Buffer.from('\0' + sql + '\0'), Buffer.from([0, 0])]);
      const header = Buffer.alloc(5);
      header[0] = 0x50;
      header.writeInt32BE(body.length + 4, 1);
      return Buffer.concat([header, body]);
    };
    const bindExecute = Buffer.from([0x42, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
    // More offenders than the pool's two connections.
    for (const batch of [parse('SELEC 1/'), Buffer.concat([parse('SELECT 1'), bindExecute]), parse('SELECT 1/')]) {
      const offender = await connectedClient(proxy);
      rawSocketOf(offender).write(batch);
      await new Promise((resolve) => setTimeout(resolve, 200));
      rawSocketOf(offender).destroy();
    }
    const fresh = await connectedClient(proxy);
    expect((await fresh.query('SELECT 4 AS four')).rows[0].four).toBe(4);
    await fresh.end();
  });

  test('an unknown message type gets 08P01', async () => {
    const offender = await connectedClient(proxy);
    const failed = nextClientError(offender);
    rawSocketOf(offender).write(Buffer.from([0x7a, 0, 0, 0, 4]));
    expect((await failed).code).toBe('08P01');
  });

  test('a message above limits.maxMessageBytes gets 08P01 naming the limit', async () => {
    const offender = await connectedClient(proxy);
    const error = await offender.query(`SELECT '${'x'.repeat(70_000)}'`).then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(error?.code).toBe('08P01');
    expect(error?.message).toContain('65536');
  });

  test('garbage instead of a startup packet is refused without crashing the proxy', async () => {
    const { connect } = await import('node:net');
    const reply = await new Promise<Buffer>((resolve) => {
      const socket = connect({ host: proxy.host, port: proxy.port }, () => socket.write(Buffer.from([0, 0, 0, 3, 1, 2, 3])));
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('close', () => resolve(Buffer.concat(chunks)));
      socket.on('error', () => undefined);
    });
    expect(String.fromCharCode(reply[0]!)).toBe('E');
    expect(reply.toString('latin1')).toContain('08P01');
    const client = await connectedClient(proxy);
    expect((await client.query('SELECT 4 AS four')).rows[0].four).toBe(4);
    await client.end();
  });

  test('a client that vanishes mid-transaction leaves nothing behind', async () => {
    const vanishing = await connectedClient(proxy);
    await vanishing.query('BEGIN');
    await vanishing.query('UPDATE accounts SET balance = balance + 1000 WHERE id = 1');
    rawSocketOf(vanishing).destroy();
    // Both pool connections must come back usable: the row lock is gone and the update was rolled back.
    const clients = [await connectedClient(proxy), await connectedClient(proxy)];
    await clients[0]!.query('BEGIN');
    await clients[1]!.query('BEGIN');
    await clients[0]!.query("SET LOCAL lock_timeout = '5s'");
    const row = await clients[0]!.query('SELECT balance FROM accounts WHERE id = 1 FOR UPDATE');
    expect(row.rows[0].balance).toBe(100);
    for (const c of clients) {
      await c.query('ROLLBACK');
      await c.end();
    }
  });
});

describe('pass-through', () => {
  test('COPY FROM STDIN and COPY TO STDOUT through psql', async () => {
    await server.psql('CREATE TABLE IF NOT EXISTS copied (n int)');
    const input = Array.from({ length: 1000 }, (_, i) => `${i}`).join('\n') + '\n';
    const copyIn = await psqlThroughProxy(proxy, 'COPY copied FROM STDIN', {}, input);
    expect(copyIn.stderr).toBe('');
    expect(copyIn.stdout.trim()).toBe('COPY 1000');
    const copyOut = await psqlThroughProxy(proxy, 'COPY (SELECT n FROM copied ORDER BY n) TO STDOUT');
    expect(copyOut.stdout).toBe(input);
  });

  test('NOTICE reaches the client', async () => {
    const client = await connectedClient(proxy);
    const notice = new Promise<string>((resolve) => client.once('notice', (n: { message?: string }) => resolve(n.message ?? '')));
    await client.query("DO $$ BEGIN RAISE NOTICE 'hello from the database'; END $$");
    expect(await notice).toBe('hello from the database');
    await client.end();
  });

  test('NOTIFY reaches a LISTENing (pinned) client', async () => {
    const listener = await connectedClient(proxy);
    const notifier = await connectedClient(proxy);
    await listener.query('LISTEN tidepool_channel');
    const received = new Promise<string>((resolve) => listener.once('notification', (n: { payload?: string }) => resolve(n.payload ?? '')));
    await notifier.query("NOTIFY tidepool_channel, 'ping'");
    // Delivery happens when the listener's connection reads; a query makes sure it does.
    await listener.query('SELECT 1');
    expect(await received).toBe('ping');
    await listener.end();
    await notifier.end();
  });
});

describe('shutdown', () => {
  test('SIGTERM stops accepting, lets an open transaction finish, closes idle clients, exits 0', async () => {
    const draining = await startTidepool({
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
    });
    const inTransaction = await connectedClient(draining);
    const idle = await connectedClient(draining);
    const idleClosed = nextClientError(idle);
    await inTransaction.query('BEGIN');
    await inTransaction.query('INSERT INTO accounts VALUES (99, 1)');
    process.kill(draining.pid, 'SIGTERM');
    expect((await idleClosed).code).toBe('57P01');
    await expect(connectedClient(draining)).rejects.toThrow();
    await inTransaction.query('COMMIT');
    expect(await draining.exited).toBe(0);
    expect(await server.psql('SELECT balance FROM accounts WHERE id = 99')).toBe('1');
    await draining.stop();
    await server.psql('DELETE FROM accounts WHERE id = 99');
  });
});

describe('config validation', () => {
  test('bad config: every bad field named in one message, non-zero exit', async () => {
    const { BUNDLE } = await import('../harness/tidepool');
    const out = await runBinary(process.execPath, [BUNDLE, 'serve'], {
      env: {
        TIDEPOOL_CONFIG: JSON.stringify({
          engineFamily: 'ORACLE',
          targets: [],
          auth: [{ secretFile: 'x.json' }],
          connectionPoolConfig: { maxConnectionsPercent: 150 },
          surprise: true,
        }),
      },
    });
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('engineFamily');
    expect(out.stderr).toContain('targets');
    expect(out.stderr).toContain('connectionPoolConfig.maxConnectionsPercent');
    expect(out.stderr).toContain('surprise');
  });

  test('no config at all is a clear error', async () => {
    const { BUNDLE } = await import('../harness/tidepool');
    const out = await runBinary(process.execPath, [BUNDLE, 'serve'], { env: { TIDEPOOL_CONFIG: '' } });
    expect(out.code).toBe(2);
    expect(out.stderr).toContain('TIDEPOOL_CONFIG');
  });
});

describe('client connection limits, before any authentication work', () => {
  test('maxClientConnections refuses the next client with 53300 and the spec message; others keep working', async () => {
    const limited = await startTidepool({
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { limits: { maxClientConnections: 2 } },
    });
    try {
      const first = await connectedClient(limited);
      const second = await connectedClient(limited);
      await expect(connectedClient(limited)).rejects.toMatchObject({ code: '53300', message: 'Number simultaneous connections exceeded (2)' });
      expect((await first.query('SELECT 1 AS one')).rows[0].one).toBe(1);
      const closedBefore = limited.logs().filter((line) => line.event === 'connection-closed').length;
      await second.end();
      // The slot frees when the proxy has seen the close, which may be a moment after end() resolves.
      await limited.waitForLog(() => limited.logs().filter((line) => line.event === 'connection-closed').length > closedBefore);
      const third = await connectedClient(limited);
      expect((await third.query('SELECT 2 AS two')).rows[0].two).toBe(2);
      await first.end();
      await third.end();
    } finally {
      await limited.stop();
    }
  });

  test('a connection storm above clientConnectionsPerSecond is shed with the spec message', async () => {
    const limited = await startTidepool({
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: APP_USER, password: APP_PASSWORD }],
      config: { limits: { clientConnectionsPerSecond: 5 } },
    });
    try {
      const attempts = await Promise.all(
        Array.from({ length: 30 }, () => connectedClient(limited).then((c) => c, (e: Error & { code?: string }) => e)),
      );
      const refused = attempts.filter((a): a is Error & { code?: string } => a instanceof Error);
      const admitted = attempts.filter((a) => !(a instanceof Error)) as Awaited<ReturnType<typeof connectedClient>>[];
      expect(admitted.length).toBeGreaterThanOrEqual(1);
      expect(refused.length).toBeGreaterThanOrEqual(1);
      for (const error of refused) {
        expect(error.code).toBe('53300');
        expect(error.message).toBe('Connections rate limit exceeded (5)');
      }
      for (const client of admitted) {
        expect((await client.query('SELECT 3 AS three')).rows[0].three).toBe(3);
        await client.end();
      }
    } finally {
      await limited.stop();
    }
  });
});

describe('logs', () => {
  test('connections opened and closed are logged as JSON, failed logins without the password', async () => {
    const client = await connectedClient(proxy);
    await client.end();
    const closed = await proxy.waitForLog((line) => line.event === 'connection-closed' && typeof line.durationMs === 'number');
    expect(proxy.logs().some((line) => line.event === 'connection-opened' && line.client === closed.client)).toBe(true);
    const wrong = proxyClient(proxy, { password: 'a-password-that-must-not-be-logged' });
    await wrong.connect().catch(() => undefined);
    await proxy.waitForLog((line) => line.event === 'auth-failed' && line.user === APP_USER);
    expect(JSON.stringify(proxy.logs())).not.toContain('a-password-that-must-not-be-logged');
    expect(JSON.stringify(proxy.logs())).not.toContain(APP_PASSWORD);
  });
});
