/**
 * The harness starts real servers, so these tests exercise them for real: replication, failover,
 * authentication, TLS and pooling. If a server misbehaves, a test here fails before a proxy test
 * gets confusing.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import { Client } from 'pg';
import { startMariadb, startReplica, type MariadbServer } from './mariadb';
import { startPgbouncer, type PgbouncerServer } from './pgbouncer';
import { freePort } from './ports';
import { startPostgres, startStandby, type PgServer } from './postgres';
import { cpuTimeMicros, createSelfSignedCert, makeTempDir, removeTempDir, type TlsFiles } from './processes';

const SERVER_START_TIMEOUT_MS = 30_000;

function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

describe('freePort', () => {
  it('returns a port that can be bound on 127.0.0.1', async () => {
    const port = await freePort();
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => server.close(resolve));
    expect(port).toBeGreaterThan(0);
  });
});

describe('cpuTimeMicros', () => {
  it('agrees with Node\'s own CPU accounting for this process', () => {
    const procBefore = cpuTimeMicros(process.pid);
    const nodeBefore = process.cpuUsage();
    // Spin until Node counts 100 ms of CPU; wall time would be a poor proxy on a loaded machine.
    const giveUpAt = Date.now() + 10_000;
    let nodeElapsed = 0;
    while (nodeElapsed < 100_000 && Date.now() < giveUpAt) {
      const usage = process.cpuUsage(nodeBefore);
      nodeElapsed = usage.user + usage.system;
    }
    const procElapsed = cpuTimeMicros(process.pid) - procBefore;
    // /proc counts whole clock ticks (10 ms), so allow a couple of ticks either way.
    expect(Math.abs(procElapsed - nodeElapsed)).toBeLessThanOrEqual(30_000);
    expect(procElapsed).toBeGreaterThan(0);
  });
});

describe('PostgreSQL primary with a synchronous standby', () => {
  let primary: PgServer;
  let standby: PgServer;

  beforeAll(async () => {
    primary = await startPostgres();
    standby = await startStandby(primary, { synchronous: true });
  }, SERVER_START_TIMEOUT_MS);

  afterAll(async () => {
    await standby?.stop();
    await primary?.stop();
  });

  it('authenticates TCP clients with SCRAM', async () => {
    await primary.createUser('app', 'app-secret');
    expect(await primary.psql("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'app';")).toBe('t');
    expect(await primary.psql('SELECT current_user;', { user: 'app', password: 'app-secret' })).toBe('app');
    await expect(primary.psql('SELECT 1;', { user: 'app', password: 'wrong' })).rejects.toThrow(/password authentication failed/);
  });

  it('shows a commit on the primary on the standby immediately, and keeps the standby read-only', async () => {
    await primary.psql("CREATE TABLE events (id int PRIMARY KEY, note text); INSERT INTO events VALUES (1, 'before failover');");
    expect(await standby.psql('SELECT note FROM events WHERE id = 1;')).toBe('before failover');
    expect(await primary.psql("SELECT sync_state FROM pg_stat_replication;")).toBe('sync');
    await expect(standby.psql("INSERT INTO events VALUES (2, 'on a standby');")).rejects.toThrow(/read-only transaction/);
  });

  it('fails over: kill -9 the primary, promote the standby, write to it', async () => {
    await primary.kill9();
    expect(await connectionRefused(primary.port)).toBe(true);

    await standby.promote();
    await standby.psql("INSERT INTO events VALUES (2, 'after failover');");

    const client = new Client({ connectionString: standby.url() });
    await client.connect();
    try {
      const result = await client.query<{ notes: string }>('SELECT string_agg(note, \', \' ORDER BY id) AS notes FROM events');
      expect(result.rows[0].notes).toBe('before failover, after failover');
    } finally {
      await client.end();
    }
  });

  it('restarts a killed server with its committed data', async () => {
    await primary.restart();
    expect(await primary.psql('SELECT note FROM events;')).toBe('before failover');
  });

  it('stop() shuts the server down and deletes its data dir', async () => {
    await standby.stop();
    expect(fs.existsSync(standby.dataDir)).toBe(false);
    expect(await connectionRefused(standby.port)).toBe(true);
  });
});

describe('PostgreSQL crash counting', () => {
  let server: PgServer;

  beforeAll(async () => {
    server = await startPostgres();
  }, SERVER_START_TIMEOUT_MS);

  afterAll(async () => {
    await server?.stop();
  });

  it('moves to a free port when the one it was given is taken by the time postgres binds it', async () => {
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    const taken = (squatter.address() as net.AddressInfo).port;
    let moved: PgServer | undefined;
    try {
      moved = await startPostgres({ port: taken });
      expect(moved.port).not.toBe(taken);
      expect(await moved.psql('SELECT 1;')).toBe('1');
    } finally {
      await moved?.stop();
      await new Promise((resolve) => squatter.close(resolve));
    }
  });

  it('counts a backend that died of a signal (the postmaster then restarts every backend)', async () => {
    expect(server.crashRestarts()).toBe(0);
    const client = new Client({ connectionString: server.url() });
    client.on('error', () => undefined);
    await client.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    process.kill(pid, 'SIGKILL');
    for (let waited = 0; server.crashRestarts() === 0 && waited < 15_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
    expect(server.crashRestarts()).toBe(1);
    await client.end().catch(() => undefined);
    // It recovers by itself, and a clean exit is not counted.
    let answer = '';
    for (let waited = 0; answer !== '1' && waited < 15_000; waited += 200) {
      answer = await server.psql('SELECT 1;').catch(() => '');
      if (answer !== '1') await new Promise((r) => setTimeout(r, 200));
    }
    expect(answer).toBe('1');
    expect(server.crashRestarts()).toBe(1);
  });
});

describe('MariaDB primary with a GTID replica', () => {
  let primary: MariadbServer;
  let replica: MariadbServer;

  beforeAll(async () => {
    primary = await startMariadb();
    replica = await startReplica(primary);
  }, SERVER_START_TIMEOUT_MS);

  afterAll(async () => {
    await replica?.stop();
    await primary?.stop();
  });

  it('authenticates users with mysql_native_password and ed25519, and no anonymous user shadows them', async () => {
    await primary.createUser('native_user', 'native-secret');
    await primary.createUser('ed_user', 'ed-secret', { plugin: 'ed25519' });
    expect(await primary.mysql("SELECT COUNT(*) FROM mysql.user WHERE User = '';")).toBe('0');
    expect(await primary.mysql('SELECT CURRENT_USER();', { user: 'native_user', password: 'native-secret' })).toBe('native_user@%');
    expect(await primary.mysql('SELECT CURRENT_USER();', { user: 'ed_user', password: 'ed-secret' })).toBe('ed_user@%');
    await expect(primary.mysql('SELECT 1;', { user: 'native_user', password: 'wrong' })).rejects.toThrow(/Access denied/);
  });

  it('serves TLS with a certificate clients can verify', async () => {
    const connection = await createConnection({
      host: primary.host,
      port: primary.port,
      user: 'root',
      password: primary.rootPassword,
      ssl: { ca: fs.readFileSync(primary.tls.certFile, 'utf8') },
    });
    try {
      const [rows] = await connection.query<RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_version'");
      expect(rows[0].Value).toMatch(/^TLSv1\.[23]$/);
    } finally {
      await connection.end();
    }
  });

  it('replicates writes to a read-only replica', async () => {
    await primary.mysql(
      [
        'CREATE DATABASE app;',
        'CREATE TABLE app.events (id INT PRIMARY KEY, note VARCHAR(64));',
        "INSERT INTO app.events VALUES (1, 'before failover');",
        // Not a superuser: read_only binds only accounts without READ_ONLY ADMIN.
        "CREATE USER 'writer'@'%' IDENTIFIED BY 'writer-secret';",
        "GRANT ALL ON app.* TO 'writer'@'%';",
      ].join('\n'),
    );
    await replica.waitForReplication();
    expect(await replica.mysql('SELECT note FROM app.events WHERE id = 1;')).toBe('before failover');
    await expect(
      replica.mysql("INSERT INTO app.events VALUES (2, 'on a replica');", { user: 'writer', password: 'writer-secret' }),
    ).rejects.toThrow(/read-only/);
  });

  it('fails over: kill -9 the primary, promote the replica, write to it', async () => {
    await primary.kill9();
    expect(await connectionRefused(primary.port)).toBe(true);

    await replica.promote();
    await replica.mysql("INSERT INTO app.events VALUES (2, 'after failover');", { user: 'writer', password: 'writer-secret' });

    const connection = await createConnection(replica.url('writer', 'writer-secret', 'app'));
    try {
      const [rows] = await connection.query<RowDataPacket[]>('SELECT note FROM events ORDER BY id');
      expect(rows.map((row) => row.note)).toEqual(['before failover', 'after failover']);
    } finally {
      await connection.end();
    }
  });

  it('restarts a killed server with its committed data', async () => {
    await primary.restart();
    expect(await primary.mysql('SELECT COUNT(*) FROM app.events;')).toBe('1');
  });

  it('stop() shuts the server down and deletes its data dir', async () => {
    await replica.stop();
    expect(fs.existsSync(replica.dataDir)).toBe(false);
    expect(await connectionRefused(replica.port)).toBe(true);
  });
});

describe('PgBouncer in front of PostgreSQL', () => {
  const POOL_SIZE = 2;
  const user = { name: 'pooled', password: 'pooled-secret' };
  let postgres: PgServer;
  let bouncer: PgbouncerServer;
  let tlsDir: string;
  let tls: TlsFiles;

  beforeAll(async () => {
    tlsDir = await makeTempDir('test-tls');
    [postgres, tls] = await Promise.all([startPostgres(), createSelfSignedCert(tlsDir)]);
    await postgres.createUser(user.name, user.password);
    bouncer = await startPgbouncer(postgres, { poolSize: POOL_SIZE, users: [user], tls });
  }, SERVER_START_TIMEOUT_MS);

  afterAll(async () => {
    await bouncer?.stop();
    await postgres?.stop();
    if (tlsDir) await removeTempDir(tlsDir);
  });

  function bouncerClient(overrides: { password?: string; ssl?: { ca: string } } = {}): Client {
    return new Client({
      host: bouncer.host,
      port: bouncer.port,
      user: user.name,
      password: overrides.password ?? user.password,
      database: 'postgres',
      ssl: overrides.ssl ?? false,
    });
  }

  it('multiplexes more clients than the pool size onto poolSize server connections', async () => {
    const clients = Array.from({ length: 3 * POOL_SIZE }, () => bouncerClient());
    await Promise.all(clients.map((client) => client.connect()));
    try {
      const results = await Promise.all(
        clients.map((client) => client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid, pg_sleep(0.05)')),
      );
      const backendPids = new Set(results.map((result) => result.rows[0].pid));
      expect(backendPids.size).toBeGreaterThanOrEqual(1);
      expect(backendPids.size).toBeLessThanOrEqual(POOL_SIZE);
      expect(Number(await postgres.psql(`SELECT count(*) FROM pg_stat_activity WHERE usename = '${user.name}';`))).toBeLessThanOrEqual(POOL_SIZE);
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  });

  it('rejects a wrong password', async () => {
    const client = bouncerClient({ password: 'wrong' });
    // PgBouncer words it "SASL authentication failed", PostgreSQL "password authentication failed".
    await expect(client.connect()).rejects.toThrow(/authentication failed/);
    await client.end().catch(() => undefined);
  });

  it('serves TLS to clients that ask for it', async () => {
    // pg fails the connect if the server declines TLS, so a successful query proves TLS was used.
    const client = bouncerClient({ ssl: { ca: fs.readFileSync(tls.certFile, 'utf8') } });
    await client.connect();
    try {
      expect((await client.query<{ answer: number }>('SELECT 42 AS answer')).rows[0].answer).toBe(42);
    } finally {
      await client.end();
    }
  });

  it('exposes the pid of pgbouncer itself, running as a non-root user', () => {
    expect(fs.readFileSync(`/proc/${bouncer.pid}/comm`, 'utf8').trim()).toBe('pgbouncer');
    const realUid = Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${bouncer.pid}/status`, 'utf8'))?.[1]);
    expect(realUid).not.toBe(0);
    expect(cpuTimeMicros(bouncer.pid)).toBeGreaterThanOrEqual(0);
  });
});
