/**
 * Starts the bundled proxy (dist/tidepool.js, what the container ships) as a child
 * process with a config and secret files in a throwaway folder, listening on a free port.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TidepoolConfigInput } from '../../runtime/config/schema';
import { trackProcess, untrackProcess } from './processes';

export const BUNDLE = resolve(__dirname, '../../dist/tidepool.js');

export interface ProxyUser {
  name: string;
  password: string;
  clientPasswordAuthType?: 'POSTGRES_SCRAM_SHA_256' | 'POSTGRES_MD5' | 'MYSQL_NATIVE_PASSWORD' | 'MYSQL_CACHING_SHA2_PASSWORD';
}

export interface StartTidepoolOptions {
  engineFamily?: 'POSTGRESQL' | 'MYSQL';
  targets: { host: string; port: number }[];
  users: ProxyUser[];
  /** Extra config fields, merged over the generated ones. */
  config?: Partial<TidepoolConfigInput>;
  env?: Record<string, string>;
  /** Extra node flags, e.g. ['--cpu-prof'] to profile the proxy. */
  nodeFlags?: string[];
}

export interface TidepoolProcess {
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  readonly dir: string;
  /** The admin HTTP endpoint (/healthz, /readyz, /metrics, /status). */
  readonly adminUrl: string;
  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[];
  /** What the proxy wrote to stderr (nothing, unless something went badly wrong). */
  stderr(): string;
  /** Resolves with the first log line matching `predicate`. */
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export async function startTidepool(options: StartTidepoolOptions): Promise<TidepoolProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'tidepool-proxy-'));
  const auth = options.users.map((user, index) => {
    const secretFile = join(dir, `secret-${index}.json`);
    writeFileSync(secretFile, JSON.stringify({ username: user.name, password: user.password, engine: 'postgres' }));
    return { secretFile, ...(user.clientPasswordAuthType ? { clientPasswordAuthType: user.clientPasswordAuthType } : {}) };
  });
  const config = {
    proxyName: 'test',
    engineFamily: options.engineFamily ?? 'POSTGRESQL',
    listen: { host: '127.0.0.1', port: 0 },
    targets: options.targets,
    auth,
    // A free admin port per proxy, and no CloudWatch pushes unless a test points them at a local endpoint.
    admin: { host: '127.0.0.1', port: 0 },
    metrics: { enabled: false },
    ...options.config,
  };
  const configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const child: ChildProcess = spawn(process.execPath, [...(options.nodeFlags ?? []), BUNDLE, 'serve', '--config', configFile], {
    env: { ...process.env, TIDEPOOL_LOG_LEVEL: 'debug', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const watchers: { predicate: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        line = { msg: text };
      }
      lines.push(line);
      for (const watcher of [...watchers]) {
        if (watcher.predicate(line)) {
          watchers.splice(watchers.indexOf(watcher), 1);
          watcher.resolve(line);
        }
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  // A test that dies before stop() must not leave the proxy running.
  trackProcess(child.pid!);

  const waitForLog = (predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 15_000) =>
    new Promise<Record<string, unknown>>((resolveLine, reject) => {
      const found = lines.find(predicate);
      if (found) return resolveLine(found);
      const timer = setTimeout(() => reject(new Error(`timed out waiting for a proxy log line; stderr: ${stderr}; last logs: ${JSON.stringify(lines.slice(-5))}`)), timeoutMs);
      watchers.push({
        predicate,
        resolve: (line) => {
          clearTimeout(timer);
          resolveLine(line);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`proxy exited with ${code}: ${stderr}`));
      });
    });

  const listening = await waitForLog((line) => line.event === 'listening');
  const adminLine = await waitForLog((line) => line.event === 'admin-listening');
  return {
    host: '127.0.0.1',
    port: listening.port as number,
    pid: child.pid!,
    dir,
    adminUrl: `http://${String(adminLine.host)}:${String(adminLine.port)}`,
    logs: () => lines,
    stderr: () => stderr,
    waitForLog,
    exited,
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      untrackProcess(child.pid!);
      rmSync(dir, { recursive: true, force: true });
      // The proxy survives its own bugs by logging them; a test that provoked one must still fail.
      const bug = stderr.split('\n').find((line) => line.includes('"uncaught-exception"') || line.includes('"unhandled-rejection"'));
      if (bug !== undefined) throw new Error(`the proxy hit a bug during the test: ${bug}`);
      return code;
    },
  };
}
