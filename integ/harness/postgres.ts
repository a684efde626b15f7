/**
 * Real PostgreSQL servers for tests and benchmarks: a primary from `startPostgres`, streaming
 * standbys from `startStandby`. Each server has its own temp dir (data dir + unix socket), listens
 * on 127.0.0.1 at a free port, and authenticates TCP clients with SCRAM like RDS does.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { freePort } from './ports';
import {
  makeTempDir,
  pollUntil,
  removeTempDir,
  runCommand,
  ServiceProcess,
  serviceAccount,
  writeOwnedFile,
  type ServiceAccount,
  createSelfSignedCert,
  type TlsFiles,
} from './processes';

export const PG_SUPERUSER = 'postgres';
export const PG_SUPERUSER_PASSWORD = 'postgres';

export interface PsqlOptions {
  /** Defaults to the superuser. */
  user?: string;
  /** Defaults to the superuser's password when `user` is the superuser. */
  password?: string;
  /** Defaults to `postgres`. */
  database?: string;
}

export interface PgServer {
  readonly host: string;
  readonly port: number;
  readonly dataDir: string;
  /** Always `postgres`, password `postgres`. */
  readonly superuser: string;
  /** Postmaster pid (changes on restart), e.g. for CPU accounting. */
  readonly pid: number;
  /** With `startPostgres({ tls: true })`: the self-signed certificate (localhost, 127.0.0.1) the server presents; clients pass `certFile` as their CA. */
  readonly tls?: TlsFiles;
  /** `postgres://user:password@127.0.0.1:port/database`; defaults as in `PsqlOptions`. */
  url(user?: string, password?: string, database?: string): string;
  /** Runs SQL through the real psql over TCP (so SCRAM is exercised); resolves to unaligned, tuples-only stdout, rejects with psql's stderr. */
  psql(sql: string, opts?: PsqlOptions): Promise<string>;
  createUser(name: string, password: string, opts?: { superuser?: boolean }): Promise<void>;
  /** SIGKILLs the postmaster and its backends, like a crashed host. */
  kill9(): Promise<void>;
  /** Fast shutdown (if running) and start again on the same port; recovers after `kill9`. */
  restart(): Promise<void>;
  /**
   * Times a server process died of a signal (PostgreSQL's own crash, e.g. a segfault) since the
   * server started, after which the postmaster ended every other backend and reinitialised.
   */
  crashRestarts(): number;
  /** Promotes a standby to primary and waits until it accepts writes. */
  promote(): Promise<void>;
  /** Standbys only: waits until everything the primary has written so far has been replayed here. */
  waitForReplication(): Promise<void>;
  /** Stops the server and deletes its files. Safe to call twice. */
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Default 100, PostgreSQL's own default. */
  maxConnections?: number;
  /** Extra postgresql.conf settings, e.g. `{ log_statement: 'all' }`. Values are quoted for you. */
  settings?: Record<string, string>;
  /** Serve TLS (`ssl = on`) with a self-signed certificate for localhost / 127.0.0.1. @default false */
  tls?: boolean;
  /** The port to try first; if it is taken the server moves to a free one (read `port`). @default a free port */
  port?: number;
}

export interface StartStandbyOptions {
  /**
   * Make this the primary's synchronous standby, with `synchronous_commit = remote_apply` so a
   * commit on the primary is visible on the standby as soon as it returns.
   */
  synchronous?: boolean;
}

const HOST = '127.0.0.1';
const READY_LINE = /database system is ready to accept (read-only )?connections/;
/** Settings of the server's own, kept in its data dir so a standby's copy can be rewritten. */
const INSTANCE_CONF = 'tidepool_instance.conf';

/** Picks the newest installed major version, so a PostgreSQL upgrade on CI doesn't break tests. */
function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root)
    ? fs.readdirSync(root).filter((entry) => fs.existsSync(path.join(root, entry, 'bin', 'postgres')))
    : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error(`no PostgreSQL under ${root}; apt-get install -y postgresql`);
  return path.join(root, versions[0], 'bin');
}

let binDirCache: string | undefined;
function bin(program: string): string {
  binDirCache ??= postgresBinDir();
  return path.join(binDirCache, program);
}

function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

const PG_HBA = [
  '# TYPE  DATABASE     USER  ADDRESS       METHOD',
  'local   all          all                 trust',
  'local   replication  all                 trust',
  'host    all          all   127.0.0.1/32  scram-sha-256',
  'host    replication  all   127.0.0.1/32  scram-sha-256',
  '',
].join('\n');

const SHARED_SETTINGS = {
  listen_addresses: HOST,
  password_encryption: 'scram-sha-256',
  // Test data is disposable; crash safety only costs time. (kill9 recovery still works: the OS keeps the page cache.)
  fsync: 'off',
  full_page_writes: 'off',
  shared_buffers: '16MB',
  // Lets a standby that fell behind catch up from WAL without replication slots.
  wal_keep_size: '128MB',
  log_line_prefix: '%m [%p] ',
};

function renderSettings(settings: Record<string, string | number>): string {
  return Object.entries(settings)
    .map(([name, value]) => `${name} = ${quoteLiteral(String(value))}\n`)
    .join('');
}

/**
 * initdb once per process into a template that every server copies: a copy takes ~0.2 s, initdb ~1-2 s.
 * The template already carries the SCRAM superuser, pg_hba.conf and the shared settings.
 */
let templateDataDir: Promise<string> | undefined;
function postgresTemplate(account: ServiceAccount | undefined): Promise<string> {
  templateDataDir ??= (async () => {
    const dir = await makeTempDir('pg-template', account);
    const passwordFile = path.join(dir, 'superuser-password');
    await writeOwnedFile(passwordFile, `${PG_SUPERUSER_PASSWORD}\n`, account);
    const dataDir = path.join(dir, 'data');
    await runCommand(
      bin('initdb'),
      ['-D', dataDir, '-U', PG_SUPERUSER, `--pwfile=${passwordFile}`, '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions', '--auth=scram-sha-256'],
      { runAs: account, cwd: dir },
    );
    await writeOwnedFile(path.join(dataDir, 'pg_hba.conf'), PG_HBA, account);
    const conf = path.join(dataDir, 'postgresql.conf');
    await fsp.appendFile(conf, `\n# Tidepool test harness\n${renderSettings(SHARED_SETTINGS)}include_if_exists = '${INSTANCE_CONF}'\n`);
    return dataDir;
  })();
  templateDataDir.catch(() => (templateDataDir = undefined)); // Let the next caller retry.
  return templateDataDir;
}

interface InstanceConfig {
  port: number;
  socketDir: string;
  maxConnections: number;
  settings: Record<string, string>;
}

class PostgresInstance implements PgServer {
  readonly host = HOST;
  readonly superuser = PG_SUPERUSER;
  private server: ServiceProcess | undefined;
  private stopped = false;
  tls?: TlsFiles;

  constructor(
    private readonly rootDir: string,
    readonly dataDir: string,
    readonly config: InstanceConfig,
    private readonly account: ServiceAccount | undefined,
    private primary: PostgresInstance | undefined,
  ) {}

  get port(): number {
    return this.config.port;
  }

  get pid(): number {
    if (!this.server?.running) throw new Error(`PostgreSQL on port ${this.port} is not running`);
    return this.server.pid;
  }

  async writeInstanceConf(): Promise<void> {
    const { port, socketDir, maxConnections, settings } = this.config;
    const content = renderSettings({ port, unix_socket_directories: socketDir, max_connections: maxConnections, ...settings });
    await writeOwnedFile(path.join(this.dataDir, INSTANCE_CONF), content, this.account);
  }

  async launch(): Promise<void> {
    this.server = await ServiceProcess.start(bin('postgres'), ['-D', this.dataDir], {
      runAs: this.account,
      cwd: this.rootDir,
      readyLine: READY_LINE,
      port: this.port,
    });
    const previous = this.crashesBefore;
    const count = this.server.countOutputLines(/server process \(PID \d+\) was terminated by signal/);
    this.crashCount = () => previous + count();
  }

  private crashCount: () => number = () => 0;
  private crashesBefore = 0;

  crashRestarts(): number {
    return this.crashCount();
  }

  url(user = PG_SUPERUSER, password = user === PG_SUPERUSER ? PG_SUPERUSER_PASSWORD : undefined, database = 'postgres'): string {
    const credentials = password === undefined ? encodeURIComponent(user) : `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
    return `postgres://${credentials}@${HOST}:${this.port}/${encodeURIComponent(database)}`;
  }

  async psql(sql: string, opts: PsqlOptions = {}): Promise<string> {
    const user = opts.user ?? PG_SUPERUSER;
    const password = opts.password ?? (user === PG_SUPERUSER ? PG_SUPERUSER_PASSWORD : '');
    // SQL goes in on stdin so psql splits statements itself: commands like ALTER SYSTEM refuse
    // to run inside the implicit transaction of a multi-statement -c string.
    const { stdout } = await runCommand(
      bin('psql'),
      ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', HOST, '-p', String(this.port), '-U', user, '-d', opts.database ?? 'postgres', '-f', '-'],
      { input: sql, env: { PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' } },
    );
    return stdout.replace(/\n$/, '');
  }

  async createUser(name: string, password: string, opts: { superuser?: boolean } = {}): Promise<void> {
    await this.psql(`CREATE ROLE ${quoteIdentifier(name)} LOGIN PASSWORD ${quoteLiteral(password)}${opts.superuser ? ' SUPERUSER' : ''};`);
  }

  async kill9(): Promise<void> {
    await this.server?.kill();
  }

  async restart(): Promise<void> {
    await this.server?.stop('SIGINT');
    this.crashesBefore = this.crashCount();
    await this.launch();
  }

  async promote(): Promise<void> {
    const promoted = await this.psql('SELECT pg_promote(true, 60);');
    if (promoted !== 't') throw new Error(`pg_promote on port ${this.port} returned ${promoted}`);
    this.primary = undefined;
  }

  async waitForReplication(): Promise<void> {
    if (!this.primary) throw new Error(`PostgreSQL on port ${this.port} is not a standby`);
    const primaryLsn = await this.primary.psql('SELECT pg_current_wal_lsn();');
    await pollUntil(
      async () => (await this.psql(`SELECT pg_last_wal_replay_lsn() >= ${quoteLiteral(primaryLsn)}::pg_lsn;`)) === 't',
      { what: `standby on port ${this.port} to replay up to ${primaryLsn}` },
    );
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const crashed = this.server !== undefined && !this.server.running;
    // SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
    await this.server?.stop('SIGINT');
    if (crashed) await this.removeOrphanedSharedMemory();
    await removeTempDir(this.rootDir);
  }

  /**
   * A SIGKILLed postmaster leaves its small System V interlock segment behind; a restart would
   * reuse it, but nothing else ever frees it. postmaster.pid line 7 is "<shm key> <shm id>".
   */
  private async removeOrphanedSharedMemory(): Promise<void> {
    try {
      const segmentId = (await fsp.readFile(path.join(this.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[6]?.trim().split(/\s+/)[1];
      if (segmentId && /^\d+$/.test(segmentId)) await runCommand('ipcrm', ['-m', segmentId]);
    } catch {
      // No pid file or segment already gone: nothing leaked.
    }
  }
}

/** Starts a PostgreSQL primary from the per-process template. */
export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PgServer> {
  const account = serviceAccount('postgres');
  const [template, rootDir, port] = await Promise.all([postgresTemplate(account), makeTempDir('pg', account), opts.port ?? freePort()]);
  const dataDir = path.join(rootDir, 'data');
  // cp -a keeps the service account's ownership and initdb's 0700 mode, both required by postgres.
  await runCommand('cp', ['-a', template, dataDir]);
  const settings = { ...opts.settings };
  let tls: TlsFiles | undefined;
  if (opts.tls === true) {
    tls = await createSelfSignedCert(rootDir, account);
    Object.assign(settings, { ssl: 'on', ssl_cert_file: tls.certFile, ssl_key_file: tls.keyFile });
  }
  const instance = new PostgresInstance(
    rootDir,
    dataDir,
    { port, socketDir: rootDir, maxConnections: opts.maxConnections ?? 100, settings },
    account,
    undefined,
  );
  if (tls !== undefined) instance.tls = tls;
  return launchOrCleanUp(instance);
}

/** Tries at a fresh port when this many launches in a row found their port taken. */
const PORT_ATTEMPTS = 3;

async function launchOrCleanUp(instance: PostgresInstance): Promise<PostgresInstance> {
  try {
    for (let attempt = 1; ; attempt++) {
      await instance.writeInstanceConf();
      try {
        await instance.launch();
        return instance;
      } catch (error) {
        // freePort's port was free when probed; another process (an ephemeral client port) can
        // take it before postgres binds it. A first launch may move; restart() keeps its port.
        if (attempt >= PORT_ATTEMPTS || !/could not bind .*Address already in use/.test(String(error))) throw error;
        instance.config.port = await freePort();
      }
    }
  } catch (error) {
    await instance.stop();
    throw error;
  }
}

/**
 * Starts a hot standby streaming from `primary` (pg_basebackup -R). It inherits the primary's
 * settings, since a standby refuses to start with a lower max_connections than its primary.
 */
export async function startStandby(primary: PgServer, opts: StartStandbyOptions = {}): Promise<PgServer> {
  if (!(primary instanceof PostgresInstance)) throw new Error('startStandby needs a server from startPostgres or startStandby');
  const account = serviceAccount('postgres');
  const [rootDir, port] = await Promise.all([makeTempDir('pg-standby', account), freePort()]);
  const dataDir = path.join(rootDir, 'data');
  const applicationName = `standby_${port}`;
  const instance = new PostgresInstance(rootDir, dataDir, { ...primary.config, port, socketDir: rootDir }, account, primary);
  try {
    // The conninfo, password included, is what -R writes into primary_conninfo.
    const conninfo = `host=${HOST} port=${primary.port} user=${PG_SUPERUSER} password=${PG_SUPERUSER_PASSWORD} application_name=${applicationName}`;
    // -c fast: an immediate checkpoint instead of waiting up to checkpoint_timeout for a spread one.
    await runCommand(bin('pg_basebackup'), ['-D', dataDir, '-R', '-c', 'fast', '-X', 'stream', '-d', conninfo], {
      runAs: account,
      cwd: rootDir,
    });
    await dropInheritedSynchronousSettings(dataDir);
  } catch (error) {
    await instance.stop();
    throw error;
  }
  await launchOrCleanUp(instance);
  try {
    if (opts.synchronous) {
      await primary.psql(
        [
          `ALTER SYSTEM SET synchronous_standby_names = ${quoteLiteral(quoteIdentifier(applicationName))};`,
          "ALTER SYSTEM SET synchronous_commit = 'remote_apply';",
          'SELECT pg_reload_conf();',
        ].join('\n'),
      );
    }
    const expectedState = opts.synchronous ? 'sync' : 'async';
    await pollUntil(
      async () =>
        (await primary.psql(`SELECT sync_state FROM pg_stat_replication WHERE application_name = ${quoteLiteral(applicationName)} AND state = 'streaming';`)) ===
        expectedState,
      { what: `${applicationName} to stream from port ${primary.port} as ${expectedState}` },
    );
  } catch (error) {
    await instance.stop();
    throw error;
  }
  return instance;
}

/**
 * The base backup copies the primary's postgresql.auto.conf. If that names a synchronous standby
 * (because the primary already has one), this server would hang every commit once promoted.
 */
async function dropInheritedSynchronousSettings(dataDir: string): Promise<void> {
  const autoConf = path.join(dataDir, 'postgresql.auto.conf');
  const lines = (await fsp.readFile(autoConf, 'utf8')).split('\n');
  const kept = lines.filter((line) => !/^\s*synchronous_(standby_names|commit)\s*=/.test(line));
  // Rewrite in place so ownership and mode stay the service account's.
  if (kept.length !== lines.length) await fsp.writeFile(autoConf, kept.join('\n'));
}
