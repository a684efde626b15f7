/**
 * Credentials and the TLS certificate from AWS Secrets Manager, end to end: the bundled
 * proxy reads `auth[].secretArn` and `tls.secretArn` through the real SDK client from a local
 * Secrets Manager endpoint, with real PostgreSQL behind it and real clients (pg, psql) in front.
 *
 * - a user whose secret lives in Secrets Manager logs in;
 * - a rotated password (ALTER ROLE + a new secret version) is picked up at the refresh
 *   interval without a restart: the new password works, the old one is refused with 28P01;
 * - a secret that cannot be read (access denied, deleted) fails only its own user's logins,
 *   with the ordinary 28P01, while another user keeps working;
 * - the certificate from `tls.secretArn` passes psql's sslmode=verify-full for host localhost.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { PgServer } from '../harness/postgres';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { LocalSecretsManagerEndpoint, startLocalSecretsManagerEndpoint } from '../aws/secrets-manager-endpoint';
import { runBinary, startServerWithAppUser } from './support';

const ACCESS_KEY = 'AKIDTESTSECRETS';
const REFRESH_SECONDS = 1;

let server: PgServer;
let endpoint: LocalSecretsManagerEndpoint;
const proxies: TidepoolProcess[] = [];
let certDir: string;

function awsEnv(): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY: 'test-secret-key',
    AWS_REGION: endpoint.region,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PROFILE: '',
  };
}

async function proxyWithSecrets(arns: string[], extra: Record<string, unknown> = {}): Promise<TidepoolProcess> {
  const proxy = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [],
    env: awsEnv(),
    config: {
      auth: arns.map((secretArn) => ({ secretArn })),
      aws: { region: endpoint.region, secretsManagerEndpoint: endpoint.url },
      secretsRefreshInterval: REFRESH_SECONDS,
      ...extra,
    },
  });
  proxies.push(proxy);
  return proxy;
}

function secretJson(username: string, password: string): string {
  return JSON.stringify({ username, password, engine: 'postgres', host: server.host, port: server.port });
}

async function login(proxy: TidepoolProcess, user: string, password: string): Promise<string> {
  const client = new Client({ host: proxy.host, port: proxy.port, user, password, database: 'postgres', connectionTimeoutMillis: 10_000, query_timeout: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const result = await client.query<{ u: string }>('SELECT current_user AS u');
    return result.rows[0]!.u;
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function loginError(proxy: TidepoolProcess, user: string, password: string): Promise<{ code?: string; message: string }> {
  try {
    const who = await login(proxy, user, password);
    return { message: `unexpectedly logged in as ${who}` };
  } catch (error) {
    return { code: (error as { code?: string }).code, message: (error as Error).message };
  }
}

/** Resolves once the proxy logged a secret-read outcome for this ARN after `since` lines. */
function waitForSecretLog(proxy: TidepoolProcess, arn: string, msgPart: string, since: number): Promise<Record<string, unknown>> {
  return proxy.waitForLog((line) => {
    const index = proxy.logs().indexOf(line);
    return index >= since && line.secretArn === arn && String(line.msg ?? '').includes(msgPart);
  }, 15_000);
}

beforeAll(async () => {
  [server, endpoint] = await Promise.all([startServerWithAppUser({ maxConnections: 40 }), startLocalSecretsManagerEndpoint({ accessKeyIds: [ACCESS_KEY] })]);
  certDir = mkdtempSync(join(tmpdir(), 'tidepool-secrets-cert-'));
});

afterAll(async () => {
  for (const proxy of proxies.splice(0)) await proxy.stop().catch(() => undefined);
  await endpoint?.close();
  await server?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

test('a user whose secret is in Secrets Manager logs in through the proxy (pg and psql)', async () => {
  await server.createUser('sm_login', 'sm-login-pw');
  const arn = endpoint.putSecret('tidepool/sm_login', secretJson('sm_login', 'sm-login-pw'));
  const proxy = await proxyWithSecrets([arn]);

  expect(await login(proxy, 'sm_login', 'sm-login-pw')).toBe('sm_login');
  const psql = await runBinary('psql', ['-X', '-At', '-h', proxy.host, '-p', String(proxy.port), '-U', 'sm_login', '-d', 'postgres', '-c', 'SELECT current_user'], {
    env: { PGPASSWORD: 'sm-login-pw', PGSSLMODE: 'disable', PGCONNECT_TIMEOUT: '10' },
  });
  expect(psql).toMatchObject({ code: 0, stdout: 'sm_login\n' });
  // A wrong password is still refused: the secret is what the proxy checks against.
  expect(await loginError(proxy, 'sm_login', 'not-the-password')).toMatchObject({ code: '28P01' });
  // The proxy really read the secret through the SDK (signed with our key).
  expect(endpoint.calls.some((c) => c.target === 'secretsmanager.GetSecretValue' && c.secretId === arn && c.status === 200)).toBe(true);
});

test('a rotated password is picked up at the refresh interval without a restart', async () => {
  await server.createUser('sm_rot', 'rot-old');
  const arn = endpoint.putSecret('tidepool/sm_rot', secretJson('sm_rot', 'rot-old'));
  const proxy = await proxyWithSecrets([arn]);
  // A client holding a session across the rotation keeps working.
  const held = new Client({ host: proxy.host, port: proxy.port, user: 'sm_rot', password: 'rot-old', database: 'postgres' });
  held.on('error', () => undefined);
  await held.connect();
  try {
    expect(await login(proxy, 'sm_rot', 'rot-old')).toBe('sm_rot');

    // Rotation as the Secrets Manager rotation Lambda does it: database first, then the secret.
    await server.psql(`ALTER ROLE sm_rot PASSWORD 'rot-new';`);
    const since = proxy.logs().length;
    endpoint.putSecret('tidepool/sm_rot', secretJson('sm_rot', 'rot-new'));
    await waitForSecretLog(proxy, arn, 'secret rotated', since);

    expect(await login(proxy, 'sm_rot', 'rot-new')).toBe('sm_rot');
    expect(await loginError(proxy, 'sm_rot', 'rot-old')).toMatchObject({ code: '28P01' });
    // Same process: no restart happened.
    expect(proxy.logs().filter((l) => l.event === 'listening')).toHaveLength(1);
    expect((await held.query('SELECT 1 AS one')).rows[0]).toEqual({ one: 1 });
  } finally {
    await held.end().catch(() => undefined);
  }
});

// On demand: with a refresh interval of an hour, the rotation can only be picked up because the
// database rejected the cached password (PgEngine.openServerConnection → credentials.refresh()).
test('a rotated password is picked up on demand, long before the refresh interval, once the database rejects the old one', async () => {
  await server.createUser('sm_od', 'od-old');
  await server.createUser('sm_od_probe', 'od-probe-pw');
  // Listed first, so the writer probe logs in with it and the target stays healthy throughout.
  const probeArn = endpoint.putSecret('tidepool/sm_od_probe', secretJson('sm_od_probe', 'od-probe-pw'));
  const arn = endpoint.putSecret('tidepool/sm_od', secretJson('sm_od', 'od-old'));
  const proxy = await proxyWithSecrets([probeArn, arn], { secretsRefreshInterval: 3600, connectionPoolConfig: { connectionBorrowTimeout: 3 } });
  expect(await login(proxy, 'sm_od', 'od-old')).toBe('sm_od');
  const readsAtStart = endpoint.readsOf('tidepool/sm_od');

  await server.psql(`ALTER ROLE sm_od PASSWORD 'od-new';`);
  endpoint.putSecret('tidepool/sm_od', secretJson('sm_od', 'od-new'));
  // The pool's connections were authenticated with the old password: drop them so the next
  // server connection has to log in again, and the database rejects the cached password.
  await server.psql(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'sm_od';`);

  // Bounded wait (the on-demand re-read is rate-limited per secret, 10 s by default).
  let lastError = '';
  const deadline = Date.now() + 20_000;
  let worked = false;
  while (!worked && Date.now() < deadline) {
    // Old-password client: passes the proxy's (stale) check, then the database refuses the old password.
    await login(proxy, 'sm_od', 'od-old').catch(() => undefined);
    try {
      worked = (await login(proxy, 'sm_od', 'od-new')) === 'sm_od';
    } catch (error) {
      lastError = `${(error as { code?: string }).code}: ${(error as Error).message}`;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  expect({ worked, lastError }).toEqual({ worked: true, lastError: expect.any(String) });
  // The probe user was never affected.
  expect(await login(proxy, 'sm_od_probe', 'od-probe-pw')).toBe('sm_od_probe');
  expect(endpoint.readsOf('tidepool/sm_od')).toBeGreaterThan(readsAtStart);
  expect(await loginError(proxy, 'sm_od', 'od-old')).toMatchObject({ code: '28P01' });
}, 60_000);

test('an unreadable secret (denied, then deleted) fails only its own user with 28P01; another user keeps working; access restored works again', async () => {
  await server.createUser('sm_ok', 'ok-pw');
  await server.createUser('sm_lost', 'lost-pw');
  // The readable one first: the writer probe uses the first secret it can read.
  const okArn = endpoint.putSecret('tidepool/sm_ok', secretJson('sm_ok', 'ok-pw'));
  const lostArn = endpoint.putSecret('tidepool/sm_lost', secretJson('sm_lost', 'lost-pw'));
  const proxy = await proxyWithSecrets([okArn, lostArn]);
  expect(await login(proxy, 'sm_lost', 'lost-pw')).toBe('sm_lost');
  expect(await login(proxy, 'sm_ok', 'ok-pw')).toBe('sm_ok');

  // The task role loses access to one secret.
  let since = proxy.logs().length;
  endpoint.setDenied('tidepool/sm_lost', true);
  const denied = await waitForSecretLog(proxy, lostArn, 'cannot read secret', since);
  expect(String(denied.error)).toContain('AccessDeniedException');
  // The secret value never reaches the logs.
  expect(JSON.stringify(proxy.logs())).not.toContain('lost-pw');

  const deniedLogin = await loginError(proxy, 'sm_lost', 'lost-pw');
  expect(deniedLogin).toMatchObject({ code: '28P01' });
  expect(deniedLogin.message).toBe('password authentication failed for user "sm_lost"');
  expect(await login(proxy, 'sm_ok', 'ok-pw')).toBe('sm_ok');

  // Access comes back: the next refresh makes the user work again.
  since = proxy.logs().length;
  endpoint.setDenied('tidepool/sm_lost', false);
  await waitForSecretLog(proxy, lostArn, 'secret readable again', since);
  expect(await login(proxy, 'sm_lost', 'lost-pw')).toBe('sm_lost');

  // The secret is deleted.
  since = proxy.logs().length;
  endpoint.deleteSecret('tidepool/sm_lost');
  const deleted = await waitForSecretLog(proxy, lostArn, 'cannot read secret', since);
  expect(String(deleted.error)).toContain('ResourceNotFoundException');
  expect(await loginError(proxy, 'sm_lost', 'lost-pw')).toMatchObject({ code: '28P01' });
  expect(await login(proxy, 'sm_ok', 'ok-pw')).toBe('sm_ok');
  // The proxy is still up and healthy.
  expect((await fetch(`${proxy.adminUrl}/readyz`)).status).toBe(200);
});

test('the TLS certificate from tls.secretArn passes psql sslmode=verify-full for host localhost', async () => {
  const certFile = join(certDir, 'cert.pem');
  const keyFile = join(certDir, 'key.pem');
  const generated = await runBinary('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
    '-keyout', keyFile, '-out', certFile,
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  expect(generated.code).toBe(0);
  const tlsArn = endpoint.putSecret('tidepool/tls', JSON.stringify({ certificate: readFileSync(certFile, 'utf8'), privateKey: readFileSync(keyFile, 'utf8') }));
  await server.createUser('sm_tls', 'tls-pw');
  const userArn = endpoint.putSecret('tidepool/sm_tls', secretJson('sm_tls', 'tls-pw'));
  const tlsProxy = await proxyWithSecrets([userArn], { tls: { secretArn: tlsArn }, requireTls: true });
  await tlsProxy.waitForLog((l) => l.event === 'tls-from-secret' && l.secretArn === tlsArn);

  const psql = (sslmode: string, host: string, rootCert: string) =>
    runBinary('psql', ['-X', '-At', '-c', 'SELECT current_user', '-c', '\\conninfo', `host=${host} port=${tlsProxy.port} user=sm_tls dbname=postgres sslmode=${sslmode} sslrootcert=${rootCert}`], {
      env: { PGPASSWORD: 'tls-pw', PGCONNECT_TIMEOUT: '10' },
    });

  const verified = await psql('verify-full', 'localhost', certFile);
  expect(verified.stderr).toBe('');
  expect(verified.code).toBe(0);
  expect(verified.stdout).toMatch(/^sm_tls\n/);
  expect(verified.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);

  // The check is real: a different CA (a freshly generated certificate) is refused by verify-full.
  const otherCert = join(certDir, 'other.pem');
  const other = await runBinary('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-keyout', join(certDir, 'other.key'), '-out', otherCert,
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  expect(other.code).toBe(0);
  const wrongCa = await psql('verify-full', 'localhost', otherCert);
  expect(wrongCa.code).not.toBe(0);
  expect(wrongCa.stderr).toMatch(/certificate verify failed/);
});
