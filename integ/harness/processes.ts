/**
 * Process plumbing shared by the PostgreSQL, MariaDB and PgBouncer harnesses: running commands
 * as a service account, long-lived servers with captured output, readiness waits, CPU accounting,
 * temp dirs, self-signed certificates, and a last-resort cleanup when the test process exits.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Writable } from 'node:stream';

/** An OS account a server runs as. PostgreSQL, MariaDB and PgBouncer all refuse to run as root. */
export interface ServiceAccount {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

const accountsByName = new Map<string, ServiceAccount>();

/**
 * The account to run servers as: `name` when we are root (CI), otherwise `undefined`, meaning
 * "run as ourselves" because an unprivileged user cannot switch accounts and doesn't need to.
 */
export function serviceAccount(name: string): ServiceAccount | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const cached = accountsByName.get(name);
  if (cached) return cached;
  let account: ServiceAccount;
  try {
    const idOf = (flag: string): number => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
    account = { name, uid: idOf('-u'), gid: idOf('-g') };
  } catch {
    throw new Error(`OS account "${name}" is missing; install the server package that creates it`);
  }
  accountsByName.set(name, account);
  return account;
}

// ---------------------------------------------------------------------------------------------
// Last-resort cleanup: a crashed or forgotten test must not leave servers or data dirs behind.
//
// A process 'exit' handler cannot do this job: jest hands every test file its own copy of
// `process` whose events never fire, and nothing runs in-process after a SIGKILL. Instead a tiny
// detached "reaper" process learns about every server, command and temp dir over a pipe; when
// the pipe closes, which the kernel does however we die, it kills and deletes whatever is left.

const REAPER_SCRIPT = `
const fs = require('fs');
const tracked = { group: new Set(), pid: new Set(), dir: new Set() };
let pending = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  pending += chunk;
  const lines = pending.split('\\n');
  pending = lines.pop();
  for (const line of lines) {
    const [operation, kind, ...value] = line.split(' ');
    const set = tracked[kind];
    if (!set) continue;
    const item = kind === 'dir' ? value.join(' ') : Number(value[0]);
    if (operation === '+') set.add(item); else set.delete(item);
  }
});
const kill = (target) => { try { process.kill(target, 'SIGKILL'); } catch {} };
const reap = () => {
  for (const group of tracked.group) kill(-group);
  for (const pid of tracked.pid) kill(pid);
  const deadline = Date.now() + 5000;
  const removeDirsOnceDead = () => {
    const alive = [...tracked.group].some((group) => { try { process.kill(-group, 0); return true; } catch { return false; } });
    if (alive && Date.now() < deadline) return setTimeout(removeDirsOnceDead, 20);
    for (const dir of tracked.dir) { try { fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 }); } catch {} }
    process.exit(0);
  };
  removeDirsOnceDead();
};
process.stdin.on('end', reap);
process.stdin.on('error', reap);
`;

type TrackedKind = 'group' | 'pid' | 'dir';

let reaperInput: Writable | undefined;

function tellReaper(operation: '+' | '-', kind: TrackedKind, value: number | string): void {
  if (!reaperInput) {
    const reaper = spawn(process.execPath, ['-e', REAPER_SCRIPT], {
      stdio: ['pipe', 'ignore', 'ignore'],
      // Its own process group, so a Ctrl-C aimed at us doesn't kill it before it has reaped.
      detached: true,
    });
    reaper.unref();
    const input = reaper.stdin as Writable;
    if (input instanceof net.Socket) input.unref();
    // If the reaper is gone there is nobody left to tell; the servers still get stopped normally.
    input.on('error', () => undefined);
    reaperInput = input;
  }
  reaperInput.write(`${operation} ${kind} ${value}\n`);
}

/** Has the reaper kill `pid` if this process dies before `untrackProcess(pid)`. */
export function trackProcess(pid: number): void {
  tellReaper('+', 'pid', pid);
}

export function untrackProcess(pid: number): void {
  tellReaper('-', 'pid', pid);
}

function killQuietly(target: number): void {
  try {
    process.kill(target, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

// ---------------------------------------------------------------------------------------------
// Temp dirs and files owned by a service account.

function othersMayTraverse(dir: string): boolean {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    if ((fs.statSync(current).mode & 0o001) === 0) return false;
    if (current === path.dirname(current)) return true;
  }
}

function tempBaseFor(owner: ServiceAccount | undefined): string {
  // A TMPDIR under /root would hide the data dir from the service account even after chown.
  const candidates = [os.tmpdir(), '/tmp'];
  const base = owner === undefined ? candidates[0] : candidates.find(othersMayTraverse);
  if (base === undefined) throw new Error(`no temp dir that "${owner?.name}" can reach: tried ${candidates.join(', ')}`);
  return base;
}

/**
 * Creates a private temp dir (mode 0700) owned by `owner`, removed by `removeTempDir` or, at the
 * latest, when the process exits. Names stay short because unix socket paths are limited to 107 bytes.
 */
export async function makeTempDir(purpose: string, owner?: ServiceAccount): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(tempBaseFor(owner), `tidepool-${purpose}-`));
  tellReaper('+', 'dir', dir);
  if (owner) await fsp.chown(dir, owner.uid, owner.gid);
  await fsp.chmod(dir, 0o700);
  return dir;
}

export async function removeTempDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
  tellReaper('-', 'dir', dir);
}

/** Writes a file the service account can read (servers reject config or keys they cannot open). */
export async function writeOwnedFile(file: string, content: string, owner?: ServiceAccount, mode = 0o600): Promise<void> {
  await fsp.writeFile(file, content, { mode });
  await fsp.chmod(file, mode); // writeFile's mode is filtered by the umask and ignored for existing files.
  if (owner) await fsp.chown(file, owner.uid, owner.gid);
}

// ---------------------------------------------------------------------------------------------
// Spawning.

export interface SpawnOptions {
  /** Run as this account (see `serviceAccount`); omitted means as ourselves. */
  runAs?: ServiceAccount;
  /** Added to the environment. */
  env?: Record<string, string>;
  /** Working dir; must be reachable by `runAs`. Defaults to `/` in that case. */
  cwd?: string;
}

/**
 * Our environment minus client variables (PGHOST, PGPASSWORD, MYSQL_HOST, …) that would silently
 * point a child at another server or user.
 */
function childEnvironment(options: SpawnOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(PG|MYSQL|MARIADB)/.test(key)) env[key] = value;
  }
  if (options.runAs) {
    env.USER = options.runAs.name;
    env.LOGNAME = options.runAs.name;
    env.HOME = options.cwd ?? '/';
  }
  return { ...env, ...options.env };
}

function spawnChild(command: string, args: readonly string[], options: SpawnOptions, detached: boolean): ChildProcess {
  // spawn's uid/gid (instead of `runuser`) keeps the server as our direct child, so `pid` is the
  // real server pid: signals reach it and /proc/PID/stat measures it, not a wrapper.
  return spawn(command, args, {
    cwd: options.cwd ?? (options.runAs ? '/' : undefined),
    env: childEnvironment(options),
    stdio: ['pipe', 'pipe', 'pipe'],
    detached,
    ...(options.runAs ? { uid: options.runAs.uid, gid: options.runAs.gid } : {}),
  });
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** A command exited non-zero; the message carries its stderr so test failures explain themselves. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(stderr.trim() || stdout.trim() || `${path.basename(command)} exited with ${exitCode}`);
    this.name = 'CommandError';
  }
}

export interface CommandOptions extends SpawnOptions {
  /** Fed to stdin, which is then closed. */
  input?: string;
  timeoutMs?: number;
}

/** Runs a command to completion; rejects with `CommandError` on a non-zero exit or timeout. */
export function runCommand(command: string, args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawnChild(command, args, options, false);
    const pid = child.pid;
    if (pid !== undefined) tellReaper('+', 'pid', pid);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new CommandError(command, null, stdout, `${error.message}\n${stderr}`));
    });
    child.once('close', (exitCode) => {
      clearTimeout(timer);
      if (pid !== undefined) tellReaper('-', 'pid', pid);
      if (timedOut) reject(new CommandError(command, exitCode, stdout, `timed out after ${timeoutMs} ms\n${stderr}`));
      else if (exitCode === 0) resolve({ stdout, stderr });
      else reject(new CommandError(command, exitCode, stdout, stderr));
    });
    // A command that exits without reading stdin makes the write fail with EPIPE; its exit code tells the story.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
  });
}

// ---------------------------------------------------------------------------------------------
// Long-running servers.

export interface ServiceOptions extends SpawnOptions {
  /** A line the server logs once it accepts connections. */
  readyLine: RegExp;
  /** Checked after the ready line too, because "ready" is only as good as the server's own logging. */
  port?: number;
  startTimeoutMs?: number;
}

const OUTPUT_TAIL_CHARS = 64 * 1024;

/**
 * A server in its own process group, so killing the group takes its worker processes with it
 * (a PostgreSQL backend outliving a SIGKILLed postmaster would block the restart).
 */
export class ServiceProcess {
  private outputTail = '';
  private exitStatus: string | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly pid: number,
    readonly description: string,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitStatus = signal ? `killed by ${signal}` : `exited with code ${code}`;
        resolve();
      });
    });
    const append = (chunk: string): void => {
      this.outputTail = (this.outputTail + chunk).slice(-OUTPUT_TAIL_CHARS);
      if (this.lineCounters.length > 0) this.countLines(chunk);
    };
    // Keep draining after startup: a full pipe would block the server's logging, then the server.
    child.stdout?.setEncoding('utf8').on('data', append);
    child.stderr?.setEncoding('utf8').on('data', append);
    // A forgotten server must not keep the test process alive; the reaper kills it instead.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) {
      if (stream instanceof net.Socket) stream.unref();
    }
  }

  /** Starts `command` and resolves once it logged `readyLine` (and accepts TCP on `port`, if given). */
  static async start(command: string, args: readonly string[], options: ServiceOptions): Promise<ServiceProcess> {
    const description = path.basename(command);
    const child = spawnChild(command, args, options, true);
    const spawned = await new Promise<ServiceProcess>((resolve, reject) => {
      child.once('error', (error) => reject(new Error(`cannot start ${description}: ${error.message}`)));
      child.once('spawn', () => {
        tellReaper('+', 'group', child.pid as number);
        resolve(new ServiceProcess(child, child.pid as number, description));
      });
    });
    const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
    try {
      await spawned.waitForOutput(options.readyLine, deadline);
      if (options.port !== undefined) await waitForPort(options.port, '127.0.0.1', deadline - Date.now());
    } catch (error) {
      await spawned.kill();
      throw error;
    }
    return spawned;
  }

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  private readonly lineCounters: { pattern: RegExp; count: number }[] = [];
  private partialLine = '';

  /**
   * Counts output lines matching `pattern` from now on (the tail alone would lose them on a
   * chatty server); call the returned function for the count so far.
   */
  countOutputLines(pattern: RegExp): () => number {
    const counter = { pattern, count: 0 };
    this.lineCounters.push(counter);
    return () => counter.count;
  }

  private countLines(chunk: string): void {
    const lines = (this.partialLine + chunk).split('\n');
    this.partialLine = lines.pop() ?? '';
    for (const line of lines) {
      for (const counter of this.lineCounters) if (counter.pattern.test(line)) counter.count++;
    }
  }

  /** The last 64 KiB of stdout+stderr, for error messages. */
  get output(): string {
    return this.outputTail;
  }

  private waitForOutput(pattern: RegExp, deadline: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (pattern.test(this.outputTail)) finish(undefined);
        else if (!this.running) finish(new Error(`${this.description} ${this.exitStatus} before it was ready:\n${this.outputTail}`));
        else if (Date.now() >= deadline) finish(new Error(`${this.description} not ready in time:\n${this.outputTail}`));
      };
      const timer = setInterval(check, 20);
      const finish = (error: Error | undefined): void => {
        clearInterval(timer);
        if (error) reject(error);
        else resolve();
      };
      check();
    });
  }

  /** Sends `signal` (the server's graceful shutdown), then SIGKILLs whatever is left after `graceMs`. */
  async stop(signal: NodeJS.Signals, graceMs = 15_000): Promise<void> {
    if (this.running) {
      try {
        process.kill(this.pid, signal);
      } catch {
        // Exited on its own between the check and the signal.
      }
      let graceTimer: NodeJS.Timeout | undefined;
      await Promise.race([this.untilExited(), new Promise((resolve) => (graceTimer = setTimeout(resolve, graceMs)))]);
      clearTimeout(graceTimer);
    }
    await this.kill();
  }

  /** The child is unref'd, so someone awaiting its exit must hold the event loop open meanwhile. */
  private async untilExited(): Promise<void> {
    if (!this.running) return;
    this.child.ref();
    try {
      await this.exited;
    } finally {
      this.child.unref();
    }
  }

  /** SIGKILLs the whole process group, like a crashed host, and waits until every member is gone. */
  async kill(): Promise<void> {
    killQuietly(-this.pid);
    await this.untilExited();
    await pollUntil(async () => !processGroupExists(this.pid), {
      timeoutMs: 10_000,
      what: `process group ${this.pid} of ${this.description} to exit`,
    });
    tellReaper('-', 'group', this.pid);
  }
}

/**
 * Whether any member of the group is still alive. Zombies don't count: a SIGKILLed postmaster's
 * backends are reparented to PID 1, and a container's PID 1 may never reap them.
 */
function processGroupExists(groupId: number): boolean {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = readStatFields(Number(entry));
    if (fields && Number(fields[2]) === groupId && fields[0] !== 'Z') return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Waiting.

export interface PollOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Completes "timed out waiting for …" in the error. */
  what: string;
}

/** Re-evaluates `condition` until it returns true; a throwing condition counts as "not yet". */
export async function pollUntil(condition: () => Promise<boolean>, options: PollOptions): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  let lastError: unknown;
  for (;;) {
    try {
      if (await condition()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out waiting for ${options.what}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

function acceptsConnections(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Waits until something accepts TCP connections on host:port. */
export function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 15_000): Promise<void> {
  return pollUntil(() => acceptsConnections(port, host), { timeoutMs, what: `${host}:${port} to accept connections` });
}

// ---------------------------------------------------------------------------------------------
// Measuring.

let clockTicksPerSecond: number | undefined;

/**
 * CPU time (user + system) a process has used so far, in microseconds, from /proc/PID/stat.
 * Benchmarks diff two readings to compare the proxy's CPU cost with PgBouncer's.
 */
export function cpuTimeMicros(pid: number): number {
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const fields = readStatFields(pid);
  if (!fields) throw new Error(`no process ${pid}`);
  const userTicks = Number(fields[11]); // field 14, utime
  const systemTicks = Number(fields[12]); // field 15, stime
  return Math.round(((userTicks + systemTicks) * 1_000_000) / clockTicksPerSecond);
}

/**
 * /proc/PID/stat from field 3 (state) on, so index 0 is field 3; undefined if the process is gone.
 * Field 2 (comm) may contain spaces and parentheses, hence splitting after its last ')'.
 */
function readStatFields(pid: number): string[] | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

// ---------------------------------------------------------------------------------------------
// TLS.

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/**
 * Writes a self-signed certificate for `localhost` / 127.0.0.1 into `dir`, readable by `owner`
 * (servers read their key after dropping to that account). Clients trust it by using the
 * certificate itself as the CA.
 */
export async function createSelfSignedCert(dir: string, owner?: ServiceAccount): Promise<TlsFiles> {
  const files = { certFile: path.join(dir, 'server.crt'), keyFile: path.join(dir, 'server.key') };
  // P-256 instead of RSA: key generation is instant and every client we test supports it.
  await runCommand('openssl', [
    'req', '-x509', '-nodes', '-days', '7',
    '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', files.keyFile, '-out', files.certFile,
  ]);
  // PostgreSQL insists the key is private to the account that reads it.
  await fsp.chmod(files.keyFile, 0o600);
  await fsp.chmod(files.certFile, 0o644);
  if (owner) {
    await fsp.chown(files.keyFile, owner.uid, owner.gid);
    await fsp.chown(files.certFile, owner.uid, owner.gid);
  }
  return files;
}
