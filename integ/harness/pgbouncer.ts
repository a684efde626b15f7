/**
 * A real PgBouncer in front of a harness PostgreSQL server: the baseline Tidepool's benchmarks
 * compare against, and a second opinion on pooling behaviour in tests.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { freePort } from './ports';
import type { PgServer } from './postgres';
import { makeTempDir, removeTempDir, ServiceProcess, serviceAccount, writeOwnedFile, type TlsFiles } from './processes';

const PGBOUNCER = '/usr/sbin/pgbouncer';
const HOST = '127.0.0.1';

export interface PgbouncerUser {
  name: string;
  /** Must match the user's password on the target server: PgBouncer logs in to PostgreSQL with it. */
  password: string;
}

export interface StartPgbouncerOptions {
  /** default_pool_size: server connections per user+database pair. */
  poolSize: number;
  /** Default 'transaction', the mode comparable to RDS Proxy's multiplexing. */
  poolMode?: 'transaction' | 'session';
  /** Who may connect. The users must already exist on the target. */
  users: PgbouncerUser[];
  /** Default 100, PgBouncer's own default. */
  maxClientConn?: number;
  /** Offer TLS to clients (client_tls_sslmode = prefer). The files are copied, so any owner is fine. */
  tls?: TlsFiles;
}

export interface PgbouncerServer {
  readonly host: string;
  readonly port: number;
  /** The pgbouncer process itself (not a wrapper), so /proc/PID/stat measures PgBouncer's CPU. */
  readonly pid: number;
  /** Stops PgBouncer and deletes its files. Safe to call twice. */
  stop(): Promise<void>;
}

/** userlist.txt format: both fields double-quoted, embedded quotes doubled. */
function quoteUserlistField(value: string): string {
  return `"${value.replace(/"/g, '""')}"`;
}

/**
 * Starts PgBouncer on a free 127.0.0.1 port, forwarding every database name to `target`. Clients
 * authenticate with SCRAM; the userlist holds plain-text passwords, which lets PgBouncer answer
 * SCRAM itself and also log in to PostgreSQL as the same user.
 */
export async function startPgbouncer(target: PgServer, opts: StartPgbouncerOptions): Promise<PgbouncerServer> {
  // There is no pgbouncer account on Debian; the postgres account is the conventional choice.
  const account = serviceAccount('postgres');
  const [dir, port] = await Promise.all([makeTempDir('pgbouncer', account), freePort()]);
  try {
    const userlist = path.join(dir, 'userlist.txt');
    await writeOwnedFile(
      userlist,
      opts.users.map((user) => `${quoteUserlistField(user.name)} ${quoteUserlistField(user.password)}\n`).join(''),
      account,
    );

    const tlsSettings: string[] = [];
    if (opts.tls) {
      const certFile = path.join(dir, 'client-tls.crt');
      const keyFile = path.join(dir, 'client-tls.key');
      await writeOwnedFile(certFile, await fsp.readFile(opts.tls.certFile, 'utf8'), account, 0o644);
      await writeOwnedFile(keyFile, await fsp.readFile(opts.tls.keyFile, 'utf8'), account);
      tlsSettings.push('client_tls_sslmode = prefer', `client_tls_cert_file = ${certFile}`, `client_tls_key_file = ${keyFile}`);
    }

    const ini = [
      '[databases]',
      `* = host=${target.host} port=${target.port}`,
      '',
      '[pgbouncer]',
      `listen_addr = ${HOST}`,
      `listen_port = ${port}`,
      // An empty value disables the unix socket, which would otherwise land in /tmp and collide by port.
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${userlist}`,
      `pool_mode = ${opts.poolMode ?? 'transaction'}`,
      `default_pool_size = ${opts.poolSize}`,
      `max_client_conn = ${opts.maxClientConn ?? 100}`,
      // JDBC and others send this at startup; PgBouncer would otherwise reject the connection.
      'ignore_startup_parameters = extra_float_digits',
      ...tlsSettings,
      '',
    ].join('\n');
    const iniFile = path.join(dir, 'pgbouncer.ini');
    await writeOwnedFile(iniFile, ini, account);

    const bouncer = await ServiceProcess.start(PGBOUNCER, [iniFile], {
      runAs: account,
      cwd: dir,
      readyLine: /process up/,
      port,
    });

    let stopped = false;
    return {
      host: HOST,
      port,
      pid: bouncer.pid,
      async stop() {
        if (stopped) return;
        stopped = true;
        // SIGTERM is an immediate shutdown up to PgBouncer 1.22 but waits for clients from 1.23 on;
        // the short grace period bounds the wait on newer versions.
        await bouncer.stop('SIGTERM', 3_000);
        await removeTempDir(dir);
      },
    };
  } catch (error) {
    await removeTempDir(dir);
    throw error;
  }
}
