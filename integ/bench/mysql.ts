/**
 * The MySQL part of `npm run bench`: sysbench oltp_point_select and oltp_read_only with 100
 * threads, direct to MariaDB (100 server connections) and through Tidepool (20 server
 * connections: maxConnectionsPercent 10 of max_connections 200), measured in the same run;
 * and the time from a promoted replica accepting writes to the first write through Tidepool.
 */
import * as mysql from 'mysql2/promise';
import { MariadbServer, startMariadb, startReplica } from '../harness/mariadb';
import { cpuTimeMicros } from '../harness/processes';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { SysbenchResult, sysbench } from '../mysql/support';
import { benchSelected } from './select';

const THREADS = 100;
const USER = 'bench';
const PASSWORD = 'bench-password';
const DATABASE = 'sbtest';
const TABLE_ARGS = ['--tables=4', '--table-size=10000'];

interface Scenario {
  /** Name for BENCH_ONLY. */
  id: string;
  label: string;
  test: string;
  args: string[];
}

const SCENARIOS: Scenario[] = [
  { id: 'mysql-point-select', label: 'sysbench `oltp_point_select` 100 threads (ps-mode auto), tps', test: 'oltp_point_select', args: ['--db-ps-mode=auto'] },
  { id: 'mysql-point-select-text', label: 'sysbench `oltp_point_select` 100 threads (ps-mode disable), tps', test: 'oltp_point_select', args: ['--db-ps-mode=disable'] },
  { id: 'mysql-read-only', label: 'sysbench `oltp_read_only` 100 threads (ps-mode auto), tps', test: 'oltp_read_only', args: ['--db-ps-mode=auto'] },
];

function describe(result: SysbenchResult): string {
  if (result.output.code !== 0 || result.transactions === 0) {
    const fatal = result.output.stdout.split('\n').find((line) => line.startsWith('FATAL')) ?? result.output.stderr.split('\n')[0] ?? `exit ${result.output.code}`;
    return `fails: ${fatal.slice(0, 90)}`;
  }
  const errors = result.errors > 0 ? ` (${result.errors} errors)` : '';
  return `${Math.round(result.tps).toLocaleString('en-US')}${errors}`;
}

/** Markdown rows `| run | direct | Tidepool | Tidepool / direct | Tidepool CPU µs per query |`. */
export async function runMysqlBench(seconds: number): Promise<string[]> {
  const scenarios = SCENARIOS.filter((scenario) => benchSelected(scenario.id));
  const rows: string[] = [];
  if (scenarios.length > 0) rows.push(...(await throughputRows(scenarios, seconds)));
  if (benchSelected('mysql-failover')) rows.push(await failoverRow());
  return rows;
}

async function throughputRows(scenarios: Scenario[], seconds: number): Promise<string[]> {
  let server: MariadbServer | undefined;
  let proxy: TidepoolProcess | undefined;
  const rows: string[] = [];
  try {
    server = await startMariadb({ maxConnections: 200 });
    await server.createUser(USER, PASSWORD, { superuser: true });
    await server.mysql(`CREATE DATABASE ${DATABASE};`);
    const credentials = { user: USER, password: PASSWORD, database: DATABASE };
    const direct = { host: server.host, port: server.port };
    const prepared = await sysbench(direct, 'oltp_read_only', TABLE_ARGS, 'prepare', credentials);
    if (prepared.output.code !== 0) throw new Error(`sysbench prepare failed: ${prepared.output.stderr || prepared.output.stdout}`);
    proxy = await startTidepool({
      engineFamily: 'MYSQL',
      targets: [direct],
      users: [{ name: USER, password: PASSWORD }],
      config: { connectionPoolConfig: { maxConnectionsPercent: 10, connectionBorrowTimeout: 60 } },
      env: { TIDEPOOL_LOG_LEVEL: 'info' },
      // BENCH_CPU_PROF=<dir>: write Tidepool's CPU profile there (summarise it with profile.ts's summariseProfile).
      nodeFlags: process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [],
    });
    const timeoutMs = (seconds + 60) * 1000;
    // Warm-up (JIT, the pool's connections), not measured.
    await sysbench({ host: proxy.host, port: proxy.port }, 'oltp_point_select', [...TABLE_ARGS, `--threads=${THREADS}`, '--time=3'], 'run', credentials, timeoutMs);
    for (const scenario of scenarios) {
      const args = [...TABLE_ARGS, `--threads=${THREADS}`, `--time=${seconds}`, ...scenario.args];
      const directResult = await sysbench(direct, scenario.test, args, 'run', credentials, timeoutMs);
      const cpuBefore = cpuTimeMicros(proxy.pid);
      const proxied = await sysbench({ host: proxy.host, port: proxy.port }, scenario.test, args, 'run', credentials, timeoutMs);
      const cpuPerQuery = proxied.queries > 0 ? ((cpuTimeMicros(proxy.pid) - cpuBefore) / proxied.queries).toFixed(1) : '—';
      const ratio = directResult.tps > 0 && proxied.tps > 0 ? `${(proxied.tps / directResult.tps).toFixed(2)}×` : '—';
      rows.push(`| ${scenario.label} | ${describe(directResult)} | ${describe(proxied)} | ${ratio} | ${cpuPerQuery} |`);
    }
  } finally {
    await proxy?.stop();
    await server?.stop();
  }
  return rows;
}

/**
 * Kill -9 the primary, promote the replica; the figure is the time from the replica
 * accepting writes (promote() returned) to the first INSERT that succeeds through Tidepool
 * on a client connection opened before the failover.
 */
async function failoverRow(): Promise<string> {
  const primary = await startMariadb({ maxConnections: 50 });
  let replica: MariadbServer | undefined;
  let proxy: TidepoolProcess | undefined;
  try {
    await primary.createUser(USER, PASSWORD, { superuser: true });
    await primary.mysql(`CREATE DATABASE ${DATABASE}; CREATE TABLE ${DATABASE}.failover_probe (at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;`);
    replica = await startReplica(primary);
    proxy = await startTidepool({
      engineFamily: 'MYSQL',
      targets: [
        { host: primary.host, port: primary.port },
        { host: replica.host, port: replica.port },
      ],
      users: [{ name: USER, password: PASSWORD }],
      config: { connectionPoolConfig: { maxConnectionsPercent: 40, connectionBorrowTimeout: 60 } },
      env: { TIDEPOOL_LOG_LEVEL: 'info' },
    });
    const client = await mysql.createConnection({ host: proxy.host, port: proxy.port, user: USER, password: PASSWORD, database: DATABASE });
    client.on('error', () => undefined);
    try {
      await client.query('INSERT INTO failover_probe () VALUES ()');
      await replica.waitForReplication();
      await primary.kill9();
      await replica.promote();
      const writable = Date.now();
      const deadline = writable + 60_000;
      let firstWrite = 0;
      while (firstWrite === 0 && Date.now() < deadline) {
        try {
          await client.query('INSERT INTO failover_probe () VALUES ()');
          firstWrite = Date.now();
        } catch {
          // The statement that meets the dead writer gets the error; the next waits for the new one.
        }
      }
      const figure = firstWrite === 0 ? 'no write within 60 s' : String(firstWrite - writable);
      return `| MySQL failover: new writer accepting writes → first write through Tidepool, ms | — | ${figure} | — | — |`;
    } finally {
      await client.end().catch(() => undefined);
    }
  } finally {
    await proxy?.stop();
    await replica?.stop();
    await primary.stop();
  }
}

if (require.main === module) {
  const seconds = Number(process.env.BENCH_SECONDS ?? 10);
  runMysqlBench(seconds).then(
    (rows) => {
      console.log('| run | direct | Tidepool | Tidepool / direct | Tidepool CPU µs per query |');
      console.log('|---|---|---|---|---|');
      for (const row of rows) console.log(row);
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
