/**
 * Real MariaDB servers for tests and benchmarks: a primary from `startMariadb`, GTID replicas from
 * `startReplica`. Every server writes a binary log (so any of them can become a primary), serves
 * TLS with a self-signed certificate, and listens on 127.0.0.1 at a free port plus a private socket.
 */
import * as path from 'node:path';
import { freePort } from './ports';
import {
  createSelfSignedCert,
  makeTempDir,
  pollUntil,
  removeTempDir,
  runCommand,
  ServiceProcess,
  serviceAccount,
  writeOwnedFile,
  type ServiceAccount,
  type TlsFiles,
} from './processes';

export const MARIADB_ROOT_PASSWORD = 'root';

export type MariadbAuthPlugin = 'mysql_native_password' | 'ed25519';

export interface MysqlOptions {
  /** Defaults to `root`. */
  user?: string;
  /** Defaults to the root password when `user` is root. */
  password?: string;
  database?: string;
}

export interface MariadbServer {
  readonly host: string;
  readonly port: number;
  /** Unix socket path, inside the server's temp dir. */
  readonly socket: string;
  readonly dataDir: string;
  /** Password of `root` (from 127.0.0.1 and localhost). */
  readonly rootPassword: string;
  /** The self-signed certificate the server presents (unless started with `tls: false`); clients pass `certFile` as their CA. */
  readonly tls: TlsFiles;
  /** mariadbd pid (changes on restart), e.g. for CPU accounting. */
  readonly pid: number;
  /** `mysql://user:password@127.0.0.1:port/database`; defaults as in `MysqlOptions`. */
  url(user?: string, password?: string, database?: string): string;
  /** Runs SQL through the real `mariadb` CLI over TCP; resolves to tab-separated rows without headers, rejects with its stderr. */
  mysql(sql: string, opts?: MysqlOptions): Promise<string>;
  /** Creates `name`@`%`. `superuser` grants ALL PRIVILEGES ON *.* WITH GRANT OPTION; otherwise the user can only log in. */
  createUser(name: string, password: string, opts?: { plugin?: MariadbAuthPlugin; superuser?: boolean }): Promise<void>;
  /** SIGKILLs mariadbd, like a crashed host. */
  kill9(): Promise<void>;
  /** Graceful shutdown (if running) and start again on the same port; recovers after `kill9`. */
  restart(): Promise<void>;
  /** Replicas only: stops replicating and makes the server writable. */
  promote(): Promise<void>;
  /** Replicas only: waits until every transaction the primary has logged so far is applied here. */
  waitForReplication(): Promise<void>;
  /** Stops the server and deletes its files. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartMariadbOptions {
  /** Default 151, MariaDB's own default. */
  maxConnections?: number;
  /** Extra server options without the leading `--`, e.g. `{ 'wait-timeout': '5' }`. */
  settings?: Record<string, string>;
  /** Serve TLS with the self-signed certificate (`tls`); false starts the server with `--skip-ssl`. @default true */
  tls?: boolean;
}

const HOST = '127.0.0.1';
const MARIADBD = '/usr/sbin/mariadbd';
/** The redo log is sized at install time; passing the same sizes at start avoids a resize on every boot. */
const STORAGE_OPTIONS = ['--innodb-buffer-pool-size=32M', '--innodb-log-file-size=16M'];

/**
 * Runs inside mariadb-install-db's bootstrap, which has no grant tables loaded, so it edits them
 * directly. Anonymous users would shadow user@localhost; host-name entries are dead weight under
 * --skip-name-resolve. Doing this in the template keeps it out of every server's binary log, so a
 * replica replaying the primary's log from the start doesn't trip over it.
 */
const TEMPLATE_ACCOUNT_SETUP = `
DELETE FROM mysql.global_priv WHERE User = '' OR Host NOT IN ('localhost', '127.0.0.1', '::1');
DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '127.0.0.1', '::1');
UPDATE mysql.global_priv
  SET priv = JSON_SET(priv, '$.plugin', 'mysql_native_password', '$.authentication_string', PASSWORD('${MARIADB_ROOT_PASSWORD}'))
  WHERE User = 'root';
`;

/** mariadb-install-db once per process (~1 s); each server copies the result (~0.1 s). */
let templateDataDir: Promise<string> | undefined;
function mariadbTemplate(account: ServiceAccount | undefined): Promise<string> {
  templateDataDir ??= (async () => {
    const dir = await makeTempDir('mariadb-template', account);
    const setupFile = path.join(dir, 'setup.sql');
    await writeOwnedFile(setupFile, TEMPLATE_ACCOUNT_SETUP, account);
    const dataDir = path.join(dir, 'data');
    await runCommand(
      'mariadb-install-db',
      [
        '--no-defaults', // must come first; keeps /etc/mysql out of our servers
        `--datadir=${dataDir}`,
        // A private tmpdir: concurrent bootstraps sharing /tmp once collided on their temporary tables.
        `--tmpdir=${dir}`,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        '--skip-name-resolve',
        `--extra-file=${setupFile}`,
        ...STORAGE_OPTIONS,
      ],
      { runAs: account, cwd: dir },
    );
    return dataDir;
  })();
  templateDataDir.catch(() => (templateDataDir = undefined)); // Let the next caller retry.
  return templateDataDir;
}

/** One certificate per process is enough: every server is 127.0.0.1. */
let certificate: Promise<TlsFiles> | undefined;
function mariadbCertificate(account: ServiceAccount | undefined): Promise<TlsFiles> {
  certificate ??= makeTempDir('mariadb-tls', account).then((dir) => createSelfSignedCert(dir, account));
  certificate.catch(() => (certificate = undefined));
  return certificate;
}

/** A string literal for MariaDB's default sql_mode, where backslash escapes. */
function quoteString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

interface InstanceConfig {
  port: number;
  maxConnections: number;
  settings: Record<string, string>;
  readOnly: boolean;
  /** Absent: TLS on (the default). */
  tls?: boolean;
}

class MariadbInstance implements MariadbServer {
  readonly host = HOST;
  readonly rootPassword = MARIADB_ROOT_PASSWORD;
  readonly socket: string;
  readonly dataDir: string;
  private server: ServiceProcess | undefined;
  private stopped = false;

  constructor(
    private readonly rootDir: string,
    readonly config: InstanceConfig,
    readonly tls: TlsFiles,
    private readonly account: ServiceAccount | undefined,
    private primary: MariadbInstance | undefined,
  ) {
    this.dataDir = path.join(rootDir, 'data');
    this.socket = path.join(rootDir, 'mysqld.sock');
  }

  get port(): number {
    return this.config.port;
  }

  get pid(): number {
    if (!this.server?.running) throw new Error(`MariaDB on port ${this.port} is not running`);
    return this.server.pid;
  }

  async launch(): Promise<void> {
    const { port, maxConnections, settings, readOnly } = this.config;
    const args = [
      '--no-defaults',
      `--datadir=${this.dataDir}`,
      `--port=${port}`,
      `--bind-address=${HOST}`,
      `--socket=${this.socket}`,
      `--pid-file=${path.join(this.rootDir, 'mysqld.pid')}`,
      `--tmpdir=${this.rootDir}`,
      '--skip-name-resolve',
      // Replication needs unique ids; ports are unique among live servers on this host.
      `--server-id=${port}`,
      '--log-bin=binlog',
      '--relay-log=relay',
      '--log-slave-updates', // a promoted replica can then serve the full history to others
      '--binlog-format=ROW',
      '--plugin-load-add=auth_ed25519',
      ...(this.config.tls === false ? ['--skip-ssl'] : [`--ssl-cert=${this.tls.certFile}`, `--ssl-key=${this.tls.keyFile}`]),
      `--max-connections=${maxConnections}`,
      '--character-set-server=utf8mb4',
      '--collation-server=utf8mb4_general_ci',
      // Test data is disposable: trade durability for speed.
      '--innodb-flush-log-at-trx-commit=2',
      '--sync-binlog=0',
      '--innodb-doublewrite=0',
      '--performance-schema=OFF',
      ...STORAGE_OPTIONS,
      ...(readOnly ? ['--read-only'] : []),
      ...Object.entries(settings).map(([name, value]) => `--${name}=${value}`),
    ];
    this.server = await ServiceProcess.start(MARIADBD, args, {
      runAs: this.account,
      cwd: this.rootDir,
      readyLine: /ready for connections/,
      port,
    });
  }

  url(user = 'root', password = user === 'root' ? MARIADB_ROOT_PASSWORD : undefined, database = ''): string {
    const credentials = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
    return `mysql://${credentials}@${HOST}:${this.port}/${encodeURIComponent(database)}`;
  }

  mysql(sql: string, opts: MysqlOptions = {}): Promise<string> {
    return this.runClient(sql, opts, ['--skip-column-names']);
  }

  private async runClient(sql: string, opts: MysqlOptions, extraArgs: string[]): Promise<string> {
    const user = opts.user ?? 'root';
    const password = opts.password ?? (user === 'root' ? MARIADB_ROOT_PASSWORD : '');
    const { stdout } = await runCommand(
      'mariadb',
      [
        '--no-defaults',
        '--protocol=TCP',
        `--host=${HOST}`,
        `--port=${this.port}`,
        `--user=${user}`,
        '--batch',
        '--connect-timeout=10',
        ...extraArgs,
        ...(opts.database ? [`--database=${opts.database}`] : []),
      ],
      // MYSQL_PWD keeps the password out of `ps` output.
      { input: sql, env: { MYSQL_PWD: password } },
    );
    return stdout.replace(/\n$/, '');
  }

  async createUser(name: string, password: string, opts: { plugin?: MariadbAuthPlugin; superuser?: boolean } = {}): Promise<void> {
    const account = `${quoteString(name)}@'%'`;
    const statements = [`CREATE USER ${account} IDENTIFIED VIA ${opts.plugin ?? 'mysql_native_password'} USING PASSWORD(${quoteString(password)});`];
    if (opts.superuser) statements.push(`GRANT ALL PRIVILEGES ON *.* TO ${account} WITH GRANT OPTION;`);
    await this.mysql(statements.join('\n'));
  }

  async kill9(): Promise<void> {
    await this.server?.kill();
  }

  async restart(): Promise<void> {
    await this.server?.stop('SIGTERM');
    await this.launch();
  }

  async promote(): Promise<void> {
    if (!this.primary) throw new Error(`MariaDB on port ${this.port} is not a replica`);
    await this.mysql('STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0;');
    this.config.readOnly = false; // stay writable across restarts
    this.primary = undefined;
  }

  /** SHOW SLAVE STATUS as column → value; empty when replication is not configured. */
  private async replicationStatus(): Promise<Record<string, string>> {
    const [header, row] = (await this.runClient('SHOW SLAVE STATUS;', {}, [])).split('\n');
    if (!header || !row) return {};
    const values = row.split('\t');
    return Object.fromEntries(header.split('\t').map((column, index) => [column, values[index] ?? '']));
  }

  async waitForReplication(): Promise<void> {
    const primary = this.primary;
    if (!primary) throw new Error(`MariaDB on port ${this.port} is not a replica`);
    const primaryPosition = await primary.mysql('SELECT @@GLOBAL.gtid_binlog_pos;');
    await pollUntil(
      async () => {
        const status = await this.replicationStatus();
        const problem = status.Last_IO_Error || status.Last_SQL_Error;
        if (problem) throw new Error(problem);
        return status.Slave_IO_Running === 'Yes' && status.Slave_SQL_Running === 'Yes';
      },
      { what: `replica on port ${this.port} to connect to port ${primary.port}` },
    );
    const waitResult = await this.mysql(`SELECT MASTER_GTID_WAIT(${quoteString(primaryPosition)}, 15);`);
    if (waitResult !== '0') throw new Error(`replica on port ${this.port} did not reach GTID ${primaryPosition} within 15 s`);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.server?.stop('SIGTERM');
    await removeTempDir(this.rootDir);
  }
}

async function startInstance(config: InstanceConfig, primary: MariadbInstance | undefined): Promise<MariadbInstance> {
  const account = serviceAccount('mysql');
  const [template, tls, rootDir] = await Promise.all([mariadbTemplate(account), mariadbCertificate(account), makeTempDir('mariadb', account)]);
  const instance = new MariadbInstance(rootDir, config, tls, account, primary);
  try {
    // cp -a keeps the service account's ownership of the copied files.
    await runCommand('cp', ['-a', template, instance.dataDir]);
    await instance.launch();
    return instance;
  } catch (error) {
    await instance.stop();
    throw error;
  }
}

/** Starts a MariaDB primary from the per-process template. */
export async function startMariadb(opts: StartMariadbOptions = {}): Promise<MariadbServer> {
  const config = { port: await freePort(), maxConnections: opts.maxConnections ?? 151, settings: opts.settings ?? {}, readOnly: false, tls: opts.tls ?? true };
  return startInstance(config, undefined);
}

/**
 * Starts a read-only replica of `primary` using GTID replication. It starts from the same empty
 * template, so it replays the primary's whole binary log and ends up with the same data.
 */
export async function startReplica(primary: MariadbServer): Promise<MariadbServer> {
  if (!(primary instanceof MariadbInstance)) throw new Error('startReplica needs a server from startMariadb or startReplica');
  const replica = await startInstance({ ...primary.config, port: await freePort(), readOnly: true }, primary);
  try {
    await replica.mysql(
      [
        `CHANGE MASTER TO MASTER_HOST = '${HOST}', MASTER_PORT = ${primary.port},`,
        `  MASTER_USER = 'root', MASTER_PASSWORD = ${quoteString(MARIADB_ROOT_PASSWORD)},`,
        '  MASTER_CONNECT_RETRY = 1, MASTER_USE_GTID = slave_pos;',
        'START SLAVE;',
      ].join('\n'),
    );
    await replica.waitForReplication();
  } catch (error) {
    await replica.stop();
    throw error;
  }
  return replica;
}
