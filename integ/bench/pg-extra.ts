/**
 * The PostgreSQL rows of `npm run bench` that need their own set-up: TLS from clients,
 * 10,000 idle client connections, and the time to the first write after a failover.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { PgServer, startPostgres, startStandby } from '../harness/postgres';
import { startPgbouncer } from '../harness/pgbouncer';
import { cpuTimeMicros, createSelfSignedCert } from '../harness/processes';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { runBinary } from '../pg/support';
import { startNaivePipe } from './naive-pipe';

export interface BenchUser {
  name: string;
  password: string;
}

function tps(stdout: string): number {
  return Number(/tps = ([\d.]+)/.exec(stdout)?.[1] ?? 0);
}

interface PgbenchRun {
  /** pgbench's tps (without the initial connection time). */
  tps: number;
  /** Transactions actually processed: the divisor for CPU per transaction. */
  transactions: number;
}

async function pgbenchRun(host: string, port: number, user: BenchUser, args: string[], seconds: number, sslmode: string): Promise<PgbenchRun> {
  const out = await runBinary('pgbench', [...args, '-n', '-j', '2', '-T', String(seconds), '-h', host, '-p', String(port), '-U', user.name, 'postgres'], {
    env: { PGPASSWORD: user.password, PGSSLMODE: sslmode },
    timeoutMs: (seconds + 60) * 1000,
  });
  return { tps: tps(out.stdout), transactions: Number(/number of transactions actually processed: (\d+)/.exec(out.stdout)?.[1] ?? 0) };
}

/**
 * Transactions per second, transactions processed and pooler CPU µs of one pgbench run. CPU is
 * divided by the transactions processed, not tps × seconds: pgbench's tps leaves out the time
 * its clients took to connect (TLS handshakes, a PostgreSQL backend per client behind a pipe),
 * which would flatter whoever connects slowest.
 */
async function measured(host: string, port: number, pid: number, user: BenchUser, args: string[], seconds: number, sslmode: string): Promise<{ tps: number; transactions: number; cpuMicros: number }> {
  const cpuBefore = cpuTimeMicros(pid);
  const run = await pgbenchRun(host, port, user, args, seconds, sslmode);
  return { ...run, cpuMicros: cpuTimeMicros(pid) - cpuBefore };
}

/**
 * The TLS version and cipher suite a PostgreSQL server negotiates with OpenSSL's client (what
 * libpq uses), so the TLS row shows both poolers did the same cryptographic work per byte.
 */
async function negotiatedCipher(host: string, port: number): Promise<string> {
  const out = await runBinary('openssl', ['s_client', '-starttls', 'postgres', '-connect', `${host}:${port}`, '-brief'], {
    timeoutMs: 10_000,
    input: '',
  }).catch((error: unknown) => ({ stdout: '', stderr: String(error) }));
  const text = `${out.stdout}\n${out.stderr}`;
  const version = /Protocol version: (\S+)/.exec(text)?.[1];
  const cipher = /Ciphersuite: (\S+)/.exec(text)?.[1];
  return version !== undefined && cipher !== undefined ? `${version} ${cipher}` : 'unknown cipher';
}

/** `-S -c100` with every client on TLS (sslmode=require): PgBouncer vs Tidepool, same certificate. */
/** tps and CPU µs per transaction of PgBouncer, Tidepool and the bare Node.js pipe in one run. */
export interface FloorFigures {
  bouncer: { tps: number; cpu: number };
  tidepool: { tps: number; cpu: number };
  naive: { tps: number; cpu: number };
}

export async function tlsRow(server: PgServer, user: BenchUser, seconds: number): Promise<{ row: string; floor: FloorFigures }> {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-bench-tls-'));
  const cert = await createSelfSignedCert(dir);
  const bouncer = await startPgbouncer(server, { poolSize: 20, poolMode: 'transaction', users: [user], maxClientConn: 1000, tls: cert });
  const proxy = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [user],
    config: { connectionPoolConfig: { maxConnectionsPercent: 10 }, tls: { certFile: cert.certFile, keyFile: cert.keyFile } },
    env: { TIDEPOOL_LOG_LEVEL: 'info' },
  });
  const naive = await startNaivePipe(server, cert);
  try {
    const args = ['-S', '-M', 'simple', '-c', '100'];
    const bouncerCipher = await negotiatedCipher(bouncer.host, bouncer.port);
    const tidepoolCipher = await negotiatedCipher(proxy.host, proxy.port);
    // Warm-up runs, not measured.
    await pgbenchRun(bouncer.host, bouncer.port, user, args, 3, 'require');
    await pgbenchRun(proxy.host, proxy.port, user, args, 3, 'require');
    // Two halves in mirrored order (PgBouncer, Tidepool, Tidepool, PgBouncer), so that a drifting
    // machine load favours neither.
    const half = Math.max(1, Math.ceil(seconds / 2));
    const bouncerFirst = await measured(bouncer.host, bouncer.port, bouncer.pid, user, args, half, 'require');
    const tidepoolFirst = await measured(proxy.host, proxy.port, proxy.pid, user, args, half, 'require');
    const naiveFirst = await measured(naive.host, naive.port, naive.pid, user, args, half, 'require');
    const naiveSecond = await measured(naive.host, naive.port, naive.pid, user, args, half, 'require');
    const tidepoolSecond = await measured(proxy.host, proxy.port, proxy.pid, user, args, half, 'require');
    const bouncerSecond = await measured(bouncer.host, bouncer.port, bouncer.pid, user, args, half, 'require');
    const naiveTps = (naiveFirst.tps + naiveSecond.tps) / 2;
    const naiveCpu = (naiveFirst.cpuMicros + naiveSecond.cpuMicros) / Math.max(1, naiveFirst.transactions + naiveSecond.transactions);
    const bouncerTps = (bouncerFirst.tps + bouncerSecond.tps) / 2;
    const tidepoolTps = (tidepoolFirst.tps + tidepoolSecond.tps) / 2;
    const bouncerCpu = (bouncerFirst.cpuMicros + bouncerSecond.cpuMicros) / Math.max(1, bouncerFirst.transactions + bouncerSecond.transactions);
    const tidepoolCpu = (tidepoolFirst.cpuMicros + tidepoolSecond.cpuMicros) / Math.max(1, tidepoolFirst.transactions + tidepoolSecond.transactions);
    const cell = (tpsValue: number, cpu: number, cipher: string) =>
      `${Math.round(tpsValue).toLocaleString('en-US')} (${cpu.toFixed(1)} µs CPU/txn, ${cipher})`;
    return {
      row: `| \`-S -c100\` over TLS (sslmode=require), tps | — | ${cell(bouncerTps, bouncerCpu, bouncerCipher)} | ${cell(tidepoolTps, tidepoolCpu, tidepoolCipher)} | ${(tidepoolTps / bouncerTps).toFixed(2)}× | — |`,
      floor: { bouncer: { tps: bouncerTps, cpu: bouncerCpu }, tidepool: { tps: tidepoolTps, cpu: tidepoolCpu }, naive: { tps: naiveTps, cpu: naiveCpu } },
    };
  } finally {
    naive.stop();
    await proxy.stop();
    await bouncer.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** Opens one idle client with md5 authentication (cheap for the bench process) and resolves when it is ready. */
function openIdleClient(port: number, user: BenchUser): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let received = Buffer.alloc(0);
    socket.on('error', reject);
    socket.on('connect', () => {
      const params = Buffer.from(`user\0${user.name}\0database\0postgres\0\0`);
      const header = Buffer.alloc(8);
      header.writeInt32BE(8 + params.length, 0);
      header.writeInt32BE(196608, 4);
      socket.write(Buffer.concat([header, params]));
    });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      while (received.length >= 5) {
        const length = received.readInt32BE(1);
        if (received.length < 1 + length) return;
        const type = String.fromCharCode(received[0]!);
        const body = received.subarray(5, 1 + length);
        received = received.subarray(1 + length);
        if (type === 'R' && body.readInt32BE(0) === 5) {
          const inner = createHash('md5').update(user.password + user.name).digest('hex');
          const outer = 'md5' + createHash('md5').update(Buffer.concat([Buffer.from(inner), body.subarray(4, 8)])).digest('hex');
          const password = Buffer.from(`${outer}\0`);
          const message = Buffer.alloc(5);
          message[0] = 0x70;
          message.writeInt32BE(4 + password.length, 1);
          socket.write(Buffer.concat([message, password]));
        } else if (type === 'Z') {
          socket.removeAllListeners('data');
          resolve(socket);
        } else if (type === 'E') {
          reject(new Error(body.toString()));
        }
      }
    });
  });
}

/** RSS per idle client with 10,000 open, and `-S -c100` throughput while they sit there. */
export async function idleClientsRow(server: PgServer, user: BenchUser, seconds: number): Promise<string> {
  const count = Number(process.env.BENCH_IDLE_CLIENTS ?? 10_000);
  const proxy: TidepoolProcess = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [{ ...user, clientPasswordAuthType: 'POSTGRES_MD5' }],
    config: { connectionPoolConfig: { maxConnectionsPercent: 10 } },
    env: { TIDEPOOL_LOG_LEVEL: 'info' },
  });
  const sockets: Socket[] = [];
  try {
    // Warm up the proxy's own allocations first, so the delta is what the idle clients cost; the
    // same load without idle clients is the throughput baseline, on this same proxy process.
    await pgbenchRun(proxy.host, proxy.port, user, ['-S', '-c', '20'], 2, 'disable');
    const busyTpsWithoutIdle = (await pgbenchRun(proxy.host, proxy.port, user, ['-S', '-M', 'simple', '-c', '100'], seconds, 'disable')).tps;
    const before = rssBytes(proxy.pid);
    for (let opened = 0; opened < count; opened += 200) {
      sockets.push(...(await Promise.all(Array.from({ length: Math.min(200, count - opened) }, () => openIdleClient(proxy.port, user)))));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const after = rssBytes(proxy.pid);
    const perClientKb = (after - before) / count / 1024;
    const busy = (await pgbenchRun(proxy.host, proxy.port, user, ['-S', '-M', 'simple', '-c', '100'], seconds, 'disable')).tps;
    return `| ${count.toLocaleString('en-US')} idle clients: RSS per client, KB (and \`-S -c100\` tps alongside vs without) | — | — | ${perClientKb.toFixed(1)} KB (${Math.round(busy).toLocaleString('en-US')} tps) | — | ${(busy / busyTpsWithoutIdle).toFixed(2)}× of its tps without idle clients |`;
  } finally {
    for (const socket of sockets) socket.destroy();
    await proxy.stop();
  }
}

/** Time from the promoted standby accepting writes to the first write that succeeds through Tidepool. */
export async function failoverRow(user: BenchUser): Promise<string> {
  const primary = await startPostgres({ maxConnections: 50 });
  let standby: PgServer | undefined;
  let proxy: TidepoolProcess | undefined;
  try {
    await primary.createUser(user.name, user.password, { superuser: true });
    await primary.psql('CREATE TABLE failover_probe (at timestamptz NOT NULL DEFAULT now())');
    standby = await startStandby(primary, { synchronous: true });
    proxy = await startTidepool({
      targets: [
        { host: primary.host, port: primary.port },
        { host: standby.host, port: standby.port },
      ],
      users: [user],
      config: { connectionPoolConfig: { connectionBorrowTimeout: 60 } },
      env: { TIDEPOOL_LOG_LEVEL: 'info' },
    });
    const client = new Client({ host: proxy.host, port: proxy.port, user: user.name, password: user.password, database: 'postgres' });
    client.on('error', () => undefined);
    await client.connect();
    await client.query('INSERT INTO failover_probe DEFAULT VALUES');
    await primary.kill9();
    await standby.promote();
    const writable = Date.now();
    let firstWrite = 0;
    while (firstWrite === 0) {
      try {
        await client.query('INSERT INTO failover_probe DEFAULT VALUES');
        firstWrite = Date.now();
      } catch {
        // The first statement after the loss gets the error; the next waits for the new writer.
      }
    }
    await client.end();
    return `| failover: new writer accepting writes → first write through Tidepool, ms | — | — | ${firstWrite - writable} | — | — |`;
  } finally {
    await proxy?.stop();
    await standby?.stop();
    await primary.stop();
  }
}
