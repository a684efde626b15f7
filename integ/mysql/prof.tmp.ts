import { startMariadb } from '../harness/mariadb';
import { sysbench } from './support';
async function main() {
  const server = await startMariadb({ maxConnections: 200 });
  await server.createUser('bench', 'pw', { superuser: true });
  await server.mysql('CREATE DATABASE sbtest;');
  const cred = { user: 'bench', password: 'pw', database: 'sbtest' };
  await sysbench({ host: server.host, port: server.port }, 'oltp_point_select', ['--tables=4', '--table-size=10000'], 'prepare', cred);
  const fs = await import('node:fs');
  const cp = await import('node:child_process');
  fs.mkdirSync('/tmp/mysqlprof', { recursive: true });
  fs.writeFileSync('/tmp/mysqlprof/secret.json', JSON.stringify({ username: 'bench', password: 'pw' }));
  fs.writeFileSync('/tmp/mysqlprof/config.json', JSON.stringify({ engineFamily: 'MYSQL', listen: { host: '127.0.0.1', port: 39999 }, targets: [{ host: server.host, port: server.port }], auth: [{ secretFile: '/tmp/mysqlprof/secret.json' }], connectionPoolConfig: { maxConnectionsPercent: 10 } }));
  const child = cp.spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir=/tmp/mysqlprof', 'dist/tidepool.js', 'serve', '--config', '/tmp/mysqlprof/config.json'], { stdio: 'ignore', env: { ...process.env, TIDEPOOL_LOG_LEVEL: 'warn' } });
  await new Promise((r) => setTimeout(r, 2000));
  const proxy = { host: '127.0.0.1', port: 39999, stop: async () => { child.kill('SIGINT'); await new Promise((r) => child.once('exit', r)); } };
  for (const mode of ['disable', 'auto']) {
    const d = await sysbench({ host: server.host, port: server.port }, 'oltp_point_select', ['--tables=4', '--table-size=10000', '--threads=100', '--time=6', `--db-ps-mode=${mode}`], 'run', cred);
    const r = await sysbench({ host: proxy.host, port: proxy.port }, 'oltp_point_select', ['--tables=4', '--table-size=10000', '--threads=100', '--time=6', `--db-ps-mode=${mode}`], 'run', cred);
    console.log(mode, 'direct', d.tps, 'proxy', r.tps, r.errors, r.output.stdout.split('\n').filter((l) => l.startsWith('FATAL')).slice(0, 2));
  }
  await proxy.stop(); await server.stop();
}
void main();
