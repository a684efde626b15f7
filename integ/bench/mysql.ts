/**
 * The MySQL part of `npm run bench`: sysbench oltp_point_select and oltp_read_only with 100
 * threads, direct to MariaDB (100 server connections) and through Tidepool (20 server
 * connections: maxConnectionsPercent 10 of max_connections 200), measured in the same run.
 */
import { MariadbServer, startMariadb } from '../harness/mariadb';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { SysbenchResult, sysbench } from '../mysql/support';

const THREADS = 100;
const USER = 'bench';
const PASSWORD = 'bench-password';
const DATABASE = 'sbtest';
const TABLE_ARGS = ['--tables=4', '--table-size=10000'];

interface Scenario {
  label: string;
  test: string;
  args: string[];
}

const SCENARIOS: Scenario[] = [
  { label: 'sysbench `oltp_point_select` 100 threads (ps-mode auto), tps', test: 'oltp_point_select', args: ['--db-ps-mode=auto'] },
  { label: 'sysbench `oltp_point_select` 100 threads (ps-mode disable), tps', test: 'oltp_point_select', args: ['--db-ps-mode=disable'] },
  { label: 'sysbench `oltp_read_only` 100 threads (ps-mode auto), tps', test: 'oltp_read_only', args: ['--db-ps-mode=auto'] },
];

function describe(result: SysbenchResult): string {
  if (result.output.code !== 0 || result.transactions === 0) {
    const fatal = result.output.stdout.split('\n').find((line) => line.startsWith('FATAL')) ?? result.output.stderr.split('\n')[0] ?? `exit ${result.output.code}`;
    return `fails: ${fatal.slice(0, 90)}`;
  }
  const errors = result.errors > 0 ? ` (${result.errors} errors)` : '';
  return `${result.tps.toFixed(0)}${errors}`;
}

/** Markdown rows `| run | direct | Tidepool | ratio |`. */
export async function runMysqlBench(seconds: number): Promise<string[]> {
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
    });
    const timeoutMs = (seconds + 60) * 1000;
    for (const scenario of SCENARIOS) {
      const args = [...TABLE_ARGS, `--threads=${THREADS}`, `--time=${seconds}`, ...scenario.args];
      const directResult = await sysbench(direct, scenario.test, args, 'run', credentials, timeoutMs);
      const proxied = await sysbench({ host: proxy.host, port: proxy.port }, scenario.test, args, 'run', credentials, timeoutMs);
      const ratio = directResult.tps > 0 && proxied.tps > 0 ? `${((proxied.tps / directResult.tps) * 100).toFixed(0)} %` : '—';
      rows.push(`| ${scenario.label} | ${describe(directResult)} | ${describe(proxied)} | ${ratio} |`);
    }
  } finally {
    await proxy?.stop();
    await server?.stop();
  }
  return rows;
}

if (require.main === module) {
  const seconds = Number(process.env.BENCH_SECONDS ?? 10);
  runMysqlBench(seconds).then(
    (rows) => {
      console.log('| run | direct | Tidepool | ratio |');
      console.log('| --- | --- | --- | --- |');
      for (const row of rows) console.log(row);
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
