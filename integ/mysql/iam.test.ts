/**
 * IAM authentication for MySQL end to end: tokens minted with the real SDK signer
 * (generateAuthToken, as `tidepool token` does), sent by mysql2 as a mysql_clear_password
 * password over TLS after the proxy's AuthSwitchRequest; the proxy replays them to a local STS
 * endpoint (STS's wire protocol, checking the signature), authorizes the caller against
 * iam.allowList, and logs in to a real MariaDB with the user's secret.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type { MariadbServer } from '../harness/mariadb';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { LocalStsEndpoint, startLocalStsEndpoint } from '../aws/sts-endpoint';
import { TOKEN_PREFIX, generateAuthToken, uriEscape } from '../../runtime/secrets/iam-token';
import { APP_DB, APP_PASSWORD, APP_USER, connectError, connectThroughProxy, mariadbThroughProxy, queryValue, startServerWithAppUser } from './support';

const PROXY_NAME = 'iam-mysql';
const REGION = 'us-east-1';
const ALLOWED = { accessKeyId: 'AKIDALLOWED', secretAccessKey: 'allowed-secret', arn: 'arn:aws:iam::123456789012:user/deployer' };
const STRANGER = { accessKeyId: 'AKIDSTRANGER', secretAccessKey: 'stranger-secret', arn: 'arn:aws:iam::123456789012:user/stranger' };
/** mysql2 sends a cleartext password only when told to (as the mysql CLI's --enable-cleartext-plugin). */
const TLS = { ssl: { rejectUnauthorized: false }, enableCleartextPlugin: true };
const IAM_FAILED = `IAM authentication failed for user ${APP_USER}. Check the IAM token for this user and try again.`;

let server: MariadbServer;
let sts: LocalStsEndpoint;
let proxy: TidepoolProcess;
let caDir: string;

beforeAll(async () => {
  [server, sts] = await Promise.all([startServerWithAppUser(), startLocalStsEndpoint({ identities: [ALLOWED, STRANGER] })]);
  caDir = mkdtempSync(join(tmpdir(), 'tidepool-sts-ca-'));
  writeFileSync(join(caDir, 'sts.pem'), sts.ca);
  proxy = await startTidepool({
    engineFamily: 'MYSQL',
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config: {
      proxyName: PROXY_NAME,
      auth: [{ secretFile: 'secret-0.json', iamAuth: 'REQUIRED' }],
      iam: { allowList: [{ principalArn: ALLOWED.arn, dbUser: APP_USER }], stsHostAllowList: [sts.host] },
    },
    // The local STS endpoint has a self-signed certificate.
    env: { NODE_EXTRA_CA_CERTS: join(caDir, 'sts.pem') },
  });
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await sts?.close();
  await server?.stop();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

function mintToken(identity: { accessKeyId: string; secretAccessKey: string }, extra: { proxyName?: string; signingDate?: Date } = {}): Promise<string> {
  return generateAuthToken({
    proxyName: extra.proxyName ?? PROXY_NAME,
    dbUser: APP_USER,
    region: REGION,
    credentials: identity,
    stsEndpoint: sts.url,
    ...(extra.signingDate !== undefined ? { signingDate: extra.signingDate } : {}),
  });
}

test('a valid token sent with mysql_clear_password over TLS logs in as the database user', async () => {
  const connection = await connectThroughProxy(proxy, { password: await mintToken(ALLOWED), ...TLS });
  try {
    expect(await queryValue(connection, 'SELECT CURRENT_USER()')).toBe(`${APP_USER}@%`);
    expect(await queryValue(connection, 'SELECT DATABASE()')).toBe(APP_DB);
    // The proxy logged in to MariaDB with the secret, not the token.
    expect(await queryValue(connection, 'SELECT 6 * 7')).toBe(42);
  } finally {
    await connection.end();
  }
});

test('a custom mysql_clear_password plugin (authPlugins) answers the switch', async () => {
  let switched = false;
  const token = await mintToken(ALLOWED);
  const connection = await connectThroughProxy(proxy, {
    password: token,
    ssl: TLS.ssl,
    authPlugins: {
      mysql_clear_password: () => () => {
        switched = true;
        return Buffer.from(`${token}\0`);
      },
    },
  });
  try {
    // mysql2 starts with mysql_native_password, so the proxy switches it to the cleartext plugin.
    expect(switched).toBe(true);
    expect(await queryValue(connection, 'SELECT CURRENT_USER()')).toBe(`${APP_USER}@%`);
  } finally {
    await connection.end();
  }
});

test('the mariadb CLI (which needs no opt-in for the cleartext plugin) logs in with a token, switched to or starting with mysql_clear_password', async () => {
  const switched = await mariadbThroughProxy(proxy, 'SELECT CURRENT_USER()', ['--ssl'], APP_USER, await mintToken(ALLOWED));
  expect(switched.stderr).toBe('');
  expect(switched.stdout.trim()).toBe(`${APP_USER}@%`);
  // The client's first HandshakeResponse already carries the token: verified without a switch.
  const direct = await mariadbThroughProxy(
    proxy,
    'SELECT CURRENT_USER()',
    ['--ssl', '--default-auth=mysql_clear_password'],
    APP_USER,
    await mintToken(ALLOWED),
  );
  expect(direct.stderr).toBe('');
  expect(direct.stdout.trim()).toBe(`${APP_USER}@%`);
});

test('over plaintext the spec message refuses the login before any token is read', async () => {
  const error = await connectError(proxy, { password: await mintToken(ALLOWED), enableCleartextPlugin: true });
  expect(error?.message).toBe('IAM authentication is allowed only with SSL connections.');
  expect(error?.errno).toBe(1045);
});

test('the secret password is not accepted for a user that requires IAM', async () => {
  const error = await connectError(proxy, TLS);
  expect(error?.message).toBe(IAM_FAILED);
  expect(error?.errno).toBe(1045);
  expect(error?.sqlState).toBe('28000');
});

test('an expired token is refused', async () => {
  const error = await connectError(proxy, { password: await mintToken(ALLOWED, { signingDate: new Date(Date.now() - 16 * 60 * 1000) }), ...TLS });
  expect(error?.message).toBe(IAM_FAILED);
});

test('a forged token (signature altered) is refused', async () => {
  const token = await mintToken(ALLOWED);
  const url = Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString();
  const forged = url.replace(/X-Amz-Signature=([0-9a-f])/, (_, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`);
  expect(forged).not.toBe(url);
  const error = await connectError(proxy, { password: TOKEN_PREFIX + Buffer.from(forged).toString('base64url'), ...TLS });
  expect(error?.message).toBe(IAM_FAILED);
});

test('a token whose signature does not cover the proxy-name header is refused', async () => {
  // Signed by a real identity, but any proxy could replay it: the header is absent from SignedHeaders.
  const signer = new SignatureV4({ service: 'sts', region: REGION, credentials: ALLOWED, sha256: Hash.bind(null, 'sha256') });
  const [hostname, port] = sts.host.split(':');
  const signed = await signer.presign(
    new HttpRequest({ method: 'GET', protocol: 'https:', hostname, port: Number(port), path: '/', query: { Action: 'GetCallerIdentity', Version: '2011-06-15' }, headers: { host: sts.host } }),
    { expiresIn: 900 },
  );
  const query = Object.entries(signed.query ?? {})
    .map(([k, v]) => `${uriEscape(k)}=${uriEscape(String(v))}`)
    .join('&');
  const unsigned = TOKEN_PREFIX + Buffer.from(`https://${sts.host}/?${query}`).toString('base64url');
  const error = await connectError(proxy, { password: unsigned, ...TLS });
  expect(error?.message).toBe(IAM_FAILED);
  // Refused for the missing header, not for anything else.
  await proxy.waitForLog((line) => line.event === 'auth-failed' && String(line.reason).includes('does not sign the x-tidepool-proxy header'), 5000);
});

test('a token minted for another proxy is refused', async () => {
  const error = await connectError(proxy, { password: await mintToken(ALLOWED, { proxyName: 'some-other-proxy' }), ...TLS });
  expect(error?.message).toBe(IAM_FAILED);
});

test('a principal outside the allow-list is refused', async () => {
  const error = await connectError(proxy, { password: await mintToken(STRANGER), ...TLS });
  expect(error?.message).toBe(IAM_FAILED);
});

test('every refusal was logged with its reason, and the proxy still serves valid tokens', async () => {
  const reasons = () =>
    proxy
      .logs()
      .filter((line) => line.event === 'auth-failed')
      .map((line) => String(line.reason));
  // The proxy's log arrives through a pipe, possibly after the client saw its error.
  const deadline = Date.now() + 15000;
  while (reasons().filter((r) => r.startsWith('IAM:')).length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(reasons().some((r) => r.includes('without TLS'))).toBe(true);
  expect(reasons().filter((r) => r.startsWith('IAM:')).length).toBeGreaterThanOrEqual(6);
  const connection = await connectThroughProxy(proxy, { password: await mintToken(ALLOWED), ...TLS });
  expect(await queryValue(connection, 'SELECT 1')).toBe(1);
  await connection.end();
});
