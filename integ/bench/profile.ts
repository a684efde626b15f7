/**
 * `node -r ts-node/register/transpile-only integ/bench/profile.ts [pgbench args…]`: runs one
 * pgbench load through Tidepool (started with --cpu-prof) and PgBouncer side by side, prints
 * each pooler's CPU µs per transaction and the top functions of Tidepool's profile by self time.
 * A tool for working on performance, not part of `npm run bench`.
 *
 * Environment: BENCH_SECONDS (default 10), PROFILE_TOP (default 25), PROFILE_TLS=1 (clients on TLS),
 * PROFILE_OFF=1 (no profiler: the figures alone), PROFILE_NAIVE=1 (also measure `naive-pipe.ts`: Node's own floor, no pooling or parsing).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres } from '../harness/postgres';
import { startPgbouncer } from '../harness/pgbouncer';
import { cpuTimeMicros, createSelfSignedCert } from '../harness/processes';
import { startTidepool } from '../harness/tidepool';
import { runBinary } from '../pg/support';
import { startNaivePipe } from './naive-pipe';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const TOP = Number(process.env.PROFILE_TOP ?? 25);
const TLS = process.env.PROFILE_TLS === '1';
/** PROFILE_STRACE=1: count each pooler's system calls during its run (strace -c). */
const STRACE = process.env.PROFILE_STRACE === '1';
/** PROFILE_PERF=1: sample Tidepool with Linux perf (kernel and native frames too) instead of --cpu-prof. */
const PERF = process.env.PROFILE_PERF === '1';
/** PROFILE_NAIVE=1: also measure a bare Node.js pipe (one server connection per client, no parsing). */
const NAIVE = process.env.PROFILE_NAIVE === '1';
/** PROFILE_OFF=1: no profiler attached (the sampler's own interrupts cost Tidepool CPU): figures only. */
const OFF = process.env.PROFILE_OFF === '1';
const USER = { name: 'bench', password: 'bench-password' };

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function (name + file:line), largest first, as shares of all samples. */
export function summariseProfile(profile: CpuProfile, top: number): string[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMicros = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const node = byId.get(id);
    const delta = profile.timeDeltas[index] ?? 0;
    total += delta;
    if (!node) return;
    const frame = node.callFrame;
    const file = frame.url.split('/').pop() ?? '';
    const key = `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
    selfMicros.set(key, (selfMicros.get(key) ?? 0) + delta);
  });
  return [...selfMicros.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([key, micros]) => `${((micros / total) * 100).toFixed(1).padStart(5)} %  ${key}`);
}

/** Kernel-mode clock ticks (stime) of a process; one tick is 10 ms at CLK_TCK 100. */
function systemTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[12]);
}

/** Busy and total jiffies of the whole machine (all CPUs), from /proc/stat. */
function machineJiffies(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** Read and write system calls a process made so far (/proc/<pid>/io). */
function syscallCounts(pid: number): { reads: number; writes: number } {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return { reads: Number(/syscr: (\d+)/.exec(io)?.[1] ?? 0), writes: Number(/syscw: (\d+)/.exec(io)?.[1] ?? 0) };
}

/** Context switches on the whole machine so far (/proc/stat ctxt). */
function machineContextSwitches(): number {
  return Number(/^ctxt (\d+)/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? 0);
}

/** CPU time (µs) of every PostgreSQL process now alive: per-transaction differences show what the database spent. */
function postgresMicros(): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (!stat.includes('(postgres)')) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended between listing and reading.
    }
  }
  return ticks * 10_000;
}

async function pgbench(host: string, port: number, args: string[]): Promise<{ tps: number; transactions: number; stderr: string }> {
  const out = await runBinary('pgbench', [...args, '-n', '-j', '2', '-T', String(SECONDS), '-h', host, '-p', String(port), '-U', USER.name, 'postgres'], {
    env: { PGPASSWORD: USER.password, PGSSLMODE: TLS ? 'require' : 'disable' },
    timeoutMs: (SECONDS + 60) * 1000,
  });
  return {
    tps: Number(/tps = ([\d.]+)/.exec(out.stdout)?.[1] ?? 0),
    transactions: Number(/number of transactions actually processed: (\d+)/.exec(out.stdout)?.[1] ?? 0),
    stderr: out.stderr.split('\n').slice(0, 3).join('\n'),
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['-S', '-M', 'simple', '-c', '100'];
  const profileDir = mkdtempSync(join(tmpdir(), 'tidepool-prof-'));
  const server = await startPostgres({ maxConnections: 210 });
  const cert = TLS ? await createSelfSignedCert(profileDir) : undefined;
  try {
    await server.createUser(USER.name, USER.password, { superuser: true });
    const init = await runBinary('pgbench', ['-i', '-q', '-s', '10', '-h', server.host, '-p', String(server.port), '-U', USER.name, 'postgres'], {
      env: { PGPASSWORD: USER.password },
      timeoutMs: 600_000,
    });
    if (init.code !== 0) throw new Error(init.stderr);
    const bouncer = await startPgbouncer(server, { poolSize: 20, poolMode: 'transaction', users: [USER], maxClientConn: 1000, tls: cert });
    const proxy = await startTidepool({
      targets: [{ host: server.host, port: server.port }],
      users: [USER],
      config: { connectionPoolConfig: { maxConnectionsPercent: 10 }, ...(cert ? { tls: { certFile: cert.certFile, keyFile: cert.keyFile } } : {}) },
      env: { TIDEPOOL_LOG_LEVEL: 'info' },
      nodeFlags: [
        ...(PERF ? ['--perf-basic-prof'] : OFF ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]),
        // PROFILE_NODE_FLAGS: extra V8/Node flags for Tidepool (e.g. GC settings) to compare.
        ...(process.env.PROFILE_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== ''),
      ],
    });
    const naive = NAIVE ? await startNaivePipe(server, cert) : undefined;
    try {
      await pgbench(proxy.host, proxy.port, ['-S', '-c', '100']);
      const endpoints: [string, { host: string; port: number; pid: number }][] = [
        ['PgBouncer', bouncer],
        ['Tidepool', proxy],
      ];
      if (naive) endpoints.push(['naive Node.js pipe', naive]);
      for (const [name, endpoint] of endpoints) {
        const perfData = join(profileDir, 'perf.data');
        const perf = PERF && name === 'Tidepool' ? spawn('perf', ['record', '-F', '1999', '-g', '-o', perfData, '-p', String(endpoint.pid)], { stdio: 'ignore' }) : undefined;
        const tracer = STRACE ? spawn('strace', ['-c', '-f', '-p', String(endpoint.pid)], { stdio: ['ignore', 'ignore', 'pipe'] }) : undefined;
        let traced = '';
        tracer?.stderr!.on('data', (chunk: Buffer) => (traced += chunk.toString()));
        const before = cpuTimeMicros(endpoint.pid);
        const systemBefore = systemTicks(endpoint.pid);
        const machineBefore = machineJiffies();
        const syscallsBefore = syscallCounts(endpoint.pid);
        const switchesBefore = machineContextSwitches();
        const postgresBefore = postgresMicros();
        const result = await pgbench(endpoint.host, endpoint.port, args);
        const cpu = (cpuTimeMicros(endpoint.pid) - before) / Math.max(1, result.transactions);
        const machineAfter = machineJiffies();
        const syscallsAfter = syscallCounts(endpoint.pid);
        const perTxn = (count: number) => (count / Math.max(1, result.transactions)).toFixed(2);
        const syscallLine = `  per transaction: ${perTxn(syscallsAfter.reads - syscallsBefore.reads)} reads, ${perTxn(syscallsAfter.writes - syscallsBefore.writes)} writes by the pooler; ${perTxn(machineContextSwitches() - switchesBefore)} context switches machine-wide; PostgreSQL ${((postgresMicros() - postgresBefore) / Math.max(1, result.transactions)).toFixed(0)} µs CPU\n`;
        const machineBusy = (machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total);
        // All processes' CPU per transaction (pgbench, PostgreSQL, the pooler): jiffies are 10 ms.
        const machineMicrosPerTxn = ((machineAfter.busy - machineBefore.busy) * 10_000) / Math.max(1, result.transactions);
        const systemShare = ((systemTicks(endpoint.pid) - systemBefore) * 10_000) / Math.max(1, cpuTimeMicros(endpoint.pid) - before);
        if (perf) {
          const done = new Promise((resolve) => perf.once('exit', resolve));
          perf.kill('SIGINT');
          await done;
          const report = await runBinary('perf', ['report', '-i', perfData, '--no-children', '--sort', process.env.PROFILE_PERF_SORT ?? 'sym', '--stdio', '-g', 'none', '--percent-limit', '0.3'], { timeoutMs: 120_000 });
          process.stdout.write(report.stdout.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#')).slice(0, Number(process.env.PROFILE_TOP ?? 60)).join('\n') + '\n');
        }
        if (tracer) {
          const done = new Promise((resolve) => tracer.once('exit', resolve));
          tracer.kill('SIGINT');
          await done;
        }
        process.stdout.write(`${name}: ${Math.round(result.tps)} tps, ${cpu.toFixed(1)} µs CPU per transaction (${(systemShare * 100).toFixed(0)} % in the kernel; machine ${(machineBusy * 100).toFixed(0)} % busy, ${machineMicrosPerTxn.toFixed(0)} µs CPU/txn all processes)${result.stderr ? `\n${result.stderr}` : ''}\n${syscallLine}${traced}`);
      }
    } finally {
      naive?.stop();
      await proxy.stop();
      await bouncer.stop();
    }
    if (PERF || OFF) return;
    const file = readdirSync(profileDir).find((name) => name.endsWith('.cpuprofile'));
    if (!file) throw new Error('no profile written');
    const profile = JSON.parse(readFileSync(join(profileDir, file), 'utf8')) as CpuProfile;
    process.stdout.write(`${summariseProfile(profile, TOP).join('\n')}\n`);
  } finally {
    await server.stop();
    rmSync(profileDir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`profile failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
}
