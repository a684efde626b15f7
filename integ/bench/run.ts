/**
 * `npm run bench`: Tidepool against PgBouncer (transaction pooling, same pool size) and
 * direct connections, all measured in this one run on this machine, with pgbench at
 * scale 10 over 20 server connections. Prints a Markdown table with ratios.
 *
 * Environment: BENCH_SECONDS (default 10) per pgbench run, BENCH_SCALE (default 10),
 * BENCH_ONLY (comma-separated row ids, see select.ts), BENCH_IDLE_CLIENTS (default 10,000).
 */
import { execFileSync } from 'node:child_process';
import { PgServer, startPostgres } from '../harness/postgres';
import { PgbouncerServer, startPgbouncer } from '../harness/pgbouncer';
import { cpuTimeMicros } from '../harness/processes';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { runBinary } from '../pg/support';
import { runMysqlBench } from './mysql';
import { NaivePipe, startNaivePipe } from './naive-pipe';
import { FloorFigures, failoverRow, idleClientsRow, tlsRow } from './pg-extra';
import { benchSelected } from './select';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SCALE = Number(process.env.BENCH_SCALE ?? 10);
const POOL_SIZE = 20;
const USER = 'bench';
const PASSWORD = 'bench-password';

interface Endpoint {
  name: 'direct' | 'PgBouncer' | 'Tidepool' | 'naive';
  host: string;
  port: number;
  /** Process whose CPU time counts as pooler overhead. */
  pid?: number;
}

interface PgbenchResult {
  tps: number;
  transactions: number;
  failed: number;
  latencyMs: number;
  cpuMicrosPerTransaction?: number;
  error?: string;
}

async function pgbench(endpoint: Endpoint, args: string[], seconds = SECONDS): Promise<PgbenchResult> {
  const cpuBefore = endpoint.pid ? cpuTimeMicros(endpoint.pid) : 0;
  const out = await runBinary(
    'pgbench',
    [...args, '-n', '-j', '2', '-T', String(seconds), '-h', endpoint.host, '-p', String(endpoint.port), '-U', USER, 'postgres'],
    { env: { PGPASSWORD: PASSWORD, PGSSLMODE: 'disable' }, timeoutMs: (seconds + 60) * 1000 },
  );
  const cpuAfter = endpoint.pid ? cpuTimeMicros(endpoint.pid) : 0;
  const transactions = Number(/number of transactions actually processed: (\d+)/.exec(out.stdout)?.[1] ?? 0);
  const failed = Number(/number of failed transactions: (\d+)/.exec(out.stdout)?.[1] ?? 0);
  const tps = Number(/tps = ([\d.]+)/.exec(out.stdout)?.[1] ?? 0);
  const latencyMs = Number(/latency average = ([\d.]+) ms/.exec(out.stdout)?.[1] ?? 0);
  const errorLine = out.stderr.split('\n').find((line) => /error|FATAL/i.test(line));
  return {
    tps,
    transactions,
    failed,
    latencyMs,
    cpuMicrosPerTransaction: endpoint.pid && transactions > 0 ? (cpuAfter - cpuBefore) / transactions : undefined,
    error: out.code !== 0 || (errorLine && transactions === 0) ? (errorLine ?? `exit ${out.code}`).slice(0, 90) : undefined,
  };
}

interface Scenario {
  /** Name for BENCH_ONLY (see select.ts). */
  id: string;
  label: string;
  args: string[];
  metric: 'tps' | 'latency' | 'cpu';
  /** Arguments of the direct run when its baseline differs (-M simple as the baseline for prepared). */
  directArgs?: string[];
}

const SCENARIOS: Scenario[] = [
  { id: 'simple', label: '`-S -c100` simple, tps', args: ['-S', '-M', 'simple', '-c', '100'], metric: 'tps' },
  { id: 'simple', label: 'pooler CPU µs per transaction (`-S -c100`)', args: ['-S', '-M', 'simple', '-c', '100'], metric: 'cpu' },
  {
    id: 'prepared',
    label: '`-S -M prepared -c50`, tps (direct: `-M simple -c50`)',
    args: ['-S', '-M', 'prepared', '-c', '50'],
    metric: 'tps',
    directArgs: ['-S', '-M', 'simple', '-c', '50'],
  },
  { id: 'prepared', label: 'pooler CPU µs per transaction (`-S -M prepared -c50`)', args: ['-S', '-M', 'prepared', '-c', '50'], metric: 'cpu' },
  { id: 'extended', label: '`-S -M extended -c50`, tps', args: ['-S', '-M', 'extended', '-c', '50'], metric: 'tps' },
  { id: 'churn', label: '`-S -C -c20` (new connection per transaction), tps', args: ['-S', '-C', '-c', '20'], metric: 'tps' },
  { id: 'latency', label: '`-S -c1` average latency, ms (added over direct)', args: ['-S', '-c', '1'], metric: 'latency' },
];

function format(result: PgbenchResult | undefined, metric: Scenario['metric'], direct?: PgbenchResult): string {
  if (!result) return '—';
  if (result.error && result.transactions === 0) return `fails: ${result.error}`;
  const failures = result.failed > 0 ? ` (${result.failed} failed)` : '';
  if (metric === 'tps') return `${Math.round(result.tps).toLocaleString('en-US')}${failures}`;
  if (metric === 'latency') {
    const added = direct && direct.transactions > 0 ? ` (+${(result.latencyMs - direct.latencyMs).toFixed(3)})` : '';
    return `${result.latencyMs.toFixed(3)}${added}`;
  }
  return result.cpuMicrosPerTransaction === undefined ? '—' : result.cpuMicrosPerTransaction.toFixed(1);
}

/** Tidepool's figure over the other's; for latency, the ratio of the latency each adds over `direct` when given. */
function ratio(tidepool: PgbenchResult | undefined, other: PgbenchResult | undefined, metric: Scenario['metric'], direct?: PgbenchResult): string {
  if (!tidepool || !other || other.transactions === 0 || tidepool.transactions === 0) return '—';
  if (metric === 'tps') return `${(tidepool.tps / other.tps).toFixed(2)}×`;
  if (metric === 'latency') {
    if (direct && direct.transactions > 0) {
      const otherAdded = other.latencyMs - direct.latencyMs;
      return otherAdded > 0 ? `${((tidepool.latencyMs - direct.latencyMs) / otherAdded).toFixed(2)}× (added latency)` : '—';
    }
    return `${(tidepool.latencyMs / other.latencyMs).toFixed(2)}×`;
  }
  if (tidepool.cpuMicrosPerTransaction === undefined || other.cpuMicrosPerTransaction === undefined) return '—';
  return `${(tidepool.cpuMicrosPerTransaction / other.cpuMicrosPerTransaction).toFixed(2)}×`;
}

/** Two equally long runs of one endpoint as one: transactions and CPU add up, rates and latencies are averaged. */
function combine(first: PgbenchResult, second: PgbenchResult): PgbenchResult {
  const transactions = first.transactions + second.transactions;
  const cpu = (result: PgbenchResult) => (result.cpuMicrosPerTransaction ?? 0) * result.transactions;
  return {
    tps: (first.tps + second.tps) / 2,
    transactions,
    failed: first.failed + second.failed,
    latencyMs: transactions > 0 ? (first.latencyMs * first.transactions + second.latencyMs * second.transactions) / transactions : 0,
    cpuMicrosPerTransaction:
      first.cpuMicrosPerTransaction === undefined || second.cpuMicrosPerTransaction === undefined || transactions === 0
        ? undefined
        : (cpu(first) + cpu(second)) / transactions,
    error: first.error ?? second.error,
  };
}

async function main(): Promise<void> {
  let server: PgServer | undefined;
  let bouncer: PgbouncerServer | undefined;
  let proxy: TidepoolProcess | undefined;
  let naive: NaivePipe | undefined;
  try {
    // max_connections 210 (so 100 direct clients fit) and maxConnectionsPercent 10: 21 connections, one
    // of them Tidepool's writer probe — a pool of 20, like PgBouncer's pool_size.
    server = await startPostgres({ maxConnections: 210 });
    await server.createUser(USER, PASSWORD, { superuser: true });
    process.stderr.write(`initialising pgbench at scale ${SCALE}…\n`);
    const init = await runBinary('pgbench', ['-i', '-q', '-s', String(SCALE), '-h', server.host, '-p', String(server.port), '-U', USER, 'postgres'], {
      env: { PGPASSWORD: PASSWORD },
      timeoutMs: 600_000,
    });
    if (init.code !== 0) throw new Error(`pgbench -i failed: ${init.stderr}`);
    bouncer = await startPgbouncer(server, { poolSize: POOL_SIZE, poolMode: 'transaction', users: [{ name: USER, password: PASSWORD }], maxClientConn: 1000 });
    proxy = await startTidepool({
      targets: [{ host: server.host, port: server.port }],
      users: [{ name: USER, password: PASSWORD }],
      config: { connectionPoolConfig: { maxConnectionsPercent: 10 } },
      env: { TIDEPOOL_LOG_LEVEL: 'info' },
    });
    // Node's own floor for a proxy: a bare pipe, measured in the `-S -c100` run only.
    if (benchSelected('simple')) naive = await startNaivePipe(server);
    const endpoints: Endpoint[] = [
      { name: 'direct', host: server.host, port: server.port },
      { name: 'PgBouncer', host: bouncer.host, port: bouncer.port, pid: bouncer.pid },
      { name: 'Tidepool', host: proxy.host, port: proxy.port, pid: proxy.pid },
    ];
    const naiveEndpoint: Endpoint | undefined = naive ? { name: 'naive', host: naive.host, port: naive.port, pid: naive.pid } : undefined;
    // Warm up both poolers (Tidepool's JIT, both pools' connections) before anything is measured.
    for (const endpoint of endpoints.slice(1)) {
      process.stderr.write(`warming up ${endpoint.name}…\n`);
      await pgbench(endpoint, ['-S', '-M', 'simple', '-c', '100']);
    }
    const results = new Map<string, PgbenchResult>();
    const distinctRuns = new Map<string, Scenario>();
    for (const scenario of SCENARIOS.filter((candidate) => benchSelected(candidate.id))) {
      // Rows sharing one run (tps and CPU of the same arguments) share one measurement; the first row's baseline counts.
      const argsKey = scenario.args.join(' ');
      if (!distinctRuns.has(argsKey)) distinctRuns.set(argsKey, scenario);
    }
    // Each endpoint runs twice for half the time, in the order direct, PgBouncer, Tidepool and then
    // back: on a machine whose load drifts (other work starting or ending), no endpoint is
    // systematically measured in the quieter or the busier part.
    const halfSeconds = Math.max(1, Math.ceil(SECONDS / 2));
    for (const [argsKey, scenario] of distinctRuns) {
      const runEndpoints = scenario.id === 'simple' && naiveEndpoint ? [...endpoints, naiveEndpoint] : endpoints;
      for (const endpoint of [...runEndpoints, ...[...runEndpoints].reverse()]) {
        const args = endpoint.name === 'direct' && scenario.directArgs ? scenario.directArgs : scenario.args;
        process.stderr.write(`pgbench ${args.join(' ')} → ${endpoint.name}…\n`);
        const key = `${argsKey}|${endpoint.name}`;
        const result = await pgbench(endpoint, args, halfSeconds);
        const earlier = results.get(key);
        results.set(key, earlier === undefined ? result : combine(earlier, result));
      }
    }
    const rows = SCENARIOS.filter((scenario) => benchSelected(scenario.id)).map((scenario) => {
      const key = scenario.args.join(' ');
      const direct = results.get(`${key}|direct`);
      const bouncerResult = results.get(`${key}|PgBouncer`);
      const tidepool = results.get(`${key}|Tidepool`);
      const latencyBase = scenario.metric === 'latency' ? direct : undefined;
      const directCell = scenario.metric === 'cpu' ? '—' : format(direct, scenario.metric);
      const directRatio = scenario.metric === 'cpu' || scenario.metric === 'latency' ? '—' : ratio(tidepool, direct, scenario.metric);
      return `| ${scenario.label} | ${directCell} | ${format(bouncerResult, scenario.metric, latencyBase)} | ${format(tidepool, scenario.metric, latencyBase)} | ${ratio(tidepool, bouncerResult, scenario.metric, latencyBase)} | ${directRatio} |`;
    });
    const header = [
      `pgbench scale ${SCALE}, ${SECONDS} s per endpoint and run (two halves, in mirrored order), pool of ${POOL_SIZE} server connections (PgBouncer transaction mode; Tidepool maxConnectionsPercent 10 of max_connections 210, less its writer probe); PostgreSQL ${await server.psql('SHOW server_version')}, Node ${process.version}, ${new Date().toISOString()}`,
      '',
      '| run | direct | PgBouncer | Tidepool | Tidepool / PgBouncer | Tidepool / direct |',
      '|---|---|---|---|---|---|',
    ];
    await proxy.stop();
    proxy = undefined;
    await bouncer.stop();
    bouncer = undefined;
    naive?.stop();
    naive = undefined;
    const simpleKey = SCENARIOS.find((scenario) => scenario.id === 'simple')!.args.join(' ');
    const figures = (name: Endpoint['name']) => {
      const result = results.get(`${simpleKey}|${name}`);
      return { tps: result?.tps ?? 0, cpu: result?.cpuMicrosPerTransaction ?? 0 };
    };
    const plainFloor: FloorFigures | undefined = benchSelected('simple') ? { bouncer: figures('PgBouncer'), tidepool: figures('Tidepool'), naive: figures('naive') } : undefined;
    let tlsFloor: FloorFigures | undefined;
    const user = { name: USER, password: PASSWORD };
    if (benchSelected('tls')) {
      process.stderr.write('TLS runs…\n');
      const tls = await tlsRow(server, user, SECONDS);
      rows.push(tls.row);
      tlsFloor = tls.floor;
    }
    if (benchSelected('idle')) {
      process.stderr.write('idle clients…\n');
      rows.push(await idleClientsRow(server, user, SECONDS));
    }
    if (benchSelected('failover')) {
      process.stderr.write('failover…\n');
      rows.push(await failoverRow(user));
    }
    await server.stop();
    server = undefined;
    process.stderr.write('MySQL (sysbench)…\n');
    const mysqlRows = await runMysqlBench(SECONDS).catch((error: unknown) => [`| MySQL bench failed: ${error instanceof Error ? error.message : String(error)} | | | | |`]);
    process.stdout.write(`${[...header, ...rows].join('\n')}\n\n${floorTable(plainFloor, tlsFloor)}`);
    process.stdout.write(
      `\nMySQL (MariaDB ${mariadbVersion()}), sysbench with 100 threads, Tidepool over 20 server connections:\n\n` +
        `| run | direct | Tidepool | Tidepool / direct | Tidepool CPU µs per query |\n|---|---|---|---|---|\n${mysqlRows.join('\n')}\n`,
    );
  } finally {
    naive?.stop();
    await proxy?.stop();
    await bouncer?.stop();
    await server?.stop();
  }
}

/** PgBouncer, Tidepool and a bare Node.js pipe side by side: how much of Tidepool's cost is Node's own. */
function floorTable(plain: FloorFigures | undefined, tls: FloorFigures | undefined): string {
  const lines = [
    'Node.js floor: a bare Node.js pipe (no pooling, no parsing, one server connection per client; `integ/bench/naive-pipe.ts`), `-S -c100` in the same run:',
    '',
    '| `-S -c100` | PgBouncer | Tidepool | bare Node.js pipe | Tidepool − pipe | PgBouncer / pipe |',
    '|---|---|---|---|---|---|',
  ];
  for (const [label, figures] of [
    ['plaintext', plain],
    ['TLS', tls],
  ] as const) {
    if (!figures) continue;
    lines.push(`| ${label}: tps | ${Math.round(figures.bouncer.tps).toLocaleString('en-US')} | ${Math.round(figures.tidepool.tps).toLocaleString('en-US')} | ${Math.round(figures.naive.tps).toLocaleString('en-US')} | — | — |`);
    lines.push(
      `| ${label}: CPU µs per transaction | ${figures.bouncer.cpu.toFixed(1)} | ${figures.tidepool.cpu.toFixed(1)} | ${figures.naive.cpu.toFixed(1)} | ${(figures.tidepool.cpu - figures.naive.cpu).toFixed(1)} | ${(figures.bouncer.cpu / figures.naive.cpu).toFixed(2)}× |`,
    );
  }
  return lines.length > 4 ? `${lines.join('\n')}\n` : '';
}

function mariadbVersion(): string {
  try {
    return /Distrib ([\d.]+)|Ver ([\d.]+)/.exec(execFileSync('mariadbd', ['--version'], { encoding: 'utf8' }))?.slice(1).find(Boolean) ?? '';
  } catch {
    return '';
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
