import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres } from '../harness/postgres';
import { cpuTimeMicros, createSelfSignedCert } from '../harness/processes';
import { startTidepool } from '../harness/tidepool';
import { runBinary } from '../pg/support';

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'spin-'));
  const server = await startPostgres({ maxConnections: 210 });
  const cert = await createSelfSignedCert(dir);
  const user = { name: 'bench', password: 'bench-password' };
  await server.createUser(user.name, user.password, { superuser: true });
  const proxy = await startTidepool({ targets: [{ host: server.host, port: server.port }], users: [user], config: { connectionPoolConfig: { maxConnectionsPercent: 10 }, tls: { certFile: cert.certFile, keyFile: cert.keyFile } }, env: { TIDEPOOL_LOG_LEVEL: 'info' } });
  const idle = async (label: string) => {
    const before = cpuTimeMicros(proxy.pid);
    await new Promise((r) => setTimeout(r, 3000));
    console.log(label, 'CPU ms over 3 s idle:', (cpuTimeMicros(proxy.pid) - before) / 1000);
  };
  await runBinary('pgbench', ['-S', '-c', '10', '-n', '-T', '2', '-h', proxy.host, '-p', String(proxy.port), '-U', user.name, 'postgres'], { env: { PGPASSWORD: user.password, PGSSLMODE: 'require' }, timeoutMs: 60000 }).then((r) => console.log('pgbench TLS no tables', r.code));
  for (let i = 0; i < 3; i++) await idle('after pgbench TLS error');
  await runBinary('pgbench', ['-i', '-q', '-s', '1', '-h', server.host, '-p', String(server.port), '-U', user.name, 'postgres'], { env: { PGPASSWORD: user.password }, timeoutMs: 60000 });
  await idle('fresh');
  await runBinary('pgbench', ['-S', '-c', '10', '-n', '-T', '2', '-h', proxy.host, '-p', String(proxy.port), '-U', user.name, 'postgres'], { env: { PGPASSWORD: user.password, PGSSLMODE: 'disable' }, timeoutMs: 60000 }).then((r) => console.log('pgbench plain', r.code, r.stderr.slice(0, 200)));
  await idle('after pgbench plain');
  await idle('after pgbench plain');
  const out = await runBinary('openssl', ['s_client', '-starttls', 'postgres', '-connect', `${proxy.host}:${proxy.port}`, '-brief'], { timeoutMs: 10000 });
  console.log('s_client exit', out.code);
  await idle('after s_client');
  await runBinary('pgbench', ['-S', '-c', '10', '-n', '-T', '2', '-h', proxy.host, '-p', String(proxy.port), '-U', user.name, 'postgres'], { env: { PGPASSWORD: user.password, PGSSLMODE: 'require' }, timeoutMs: 60000 }).then((r) => console.log('pgbench', r.code, r.stderr.slice(0, 200)));
  for (let i = 0; i < 4; i++) await idle('after pgbench TLS');
  await proxy.stop();
  await server.stop();
}
main().catch((e) => { console.error(e); process.exit(1); });
