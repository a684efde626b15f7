/**
 * IAM authentication end to end: `tidepool token` mints a presigned GetCallerIdentity token
 * with the real SDK signer, psql sends it as the password over TLS, the proxy replays it to
 * a local STS endpoint (speaking STS's wire protocol, checking the signature), authorizes the
 * caller against iam.allowList, and logs in to PostgreSQL with the user's secret.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PgServer } from '../harness/postgres';
import { BUNDLE, TidepoolProcess, startTidepool } from '../harness/tidepool';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { LocalStsEndpoint, startLocalStsEndpoint } from '../aws/sts-endpoint';
import { TOKEN_PREFIX, generateAuthToken, uriEscape } from '../../runtime/secrets/iam-token';
import { APP_PASSWORD, APP_USER, runBinary, startServerWithAppUser } from './support';

const ALLOWED = { accessKeyId: 'AKIDALLOWED', secretAccessKey: 'allowed-secret', arn: 'arn:aws:iam::123456789012:user/deployer' };
const STRANGER = { accessKeyId: 'AKIDSTRANGER', secretAccessKey: 'stranger-secret', arn: 'arn:aws:iam::123456789012:user/stranger' };

let server: PgServer;
let sts: LocalStsEndpoint;
let proxy: TidepoolProcess;
let caDir: string;

beforeAll(async () => {
  server = await startServerWithAppUser();
  sts = await startLocalStsEndpoint({ identities: [ALLOWED, STRANGER] });
  caDir = mkdtempSync(join(tmpdir(), 'tidepool-sts-ca-'));
  writeFileSync(join(caDir, 'sts.pem'), sts.ca);
  proxy = await startTidepool({
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    config: {
      proxyName: 'iam-proxy',
      auth: [{ secretFile: 'secret-0.json', iamAuth: 'REQUIRED' }],
      iam: { allowList: [{ principalArn: ALLOWED.arn, dbUser: APP_USER }], stsHostAllowList: [sts.host] },
    },
    // The local STS endpoint has a self-signed certificate.
    env: { NODE_EXTRA_CA_CERTS: join(caDir, 'sts.pem') },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await sts?.close();
  await server?.stop();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

async function mintToken(identity: { accessKeyId: string; secretAccessKey: string }, proxyName = 'iam-proxy'): Promise<string> {
  const out = await runBinary(process.execPath, [BUNDLE, 'token', '--proxy', proxyName, '--user', APP_USER, '--region', 'us-east-1', '--sts-endpoint', sts.url], {
    env: { AWS_ACCESS_KEY_ID: identity.accessKeyId, AWS_SECRET_ACCESS_KEY: identity.secretAccessKey },
  });
  expect(out.stderr).toBe('');
  expect(out.code).toBe(0);
  return out.stdout.trim();
}

function psqlWithPassword(password: string, sslmode: string) {
  return runBinary('psql', ['-X', '-At', '-h', proxy.host, '-p', String(proxy.port), '-U', APP_USER, '-d', 'postgres', '-c', 'SELECT current_user'], {
    env: { PGPASSWORD: password, PGSSLMODE: sslmode, PGCONNECT_TIMEOUT: '10' },
  });
}

test('a valid token from `tidepool token` logs in over TLS as the database user', async () => {
  const token = await mintToken(ALLOWED);
  expect(token.startsWith('tidepool-v1.')).toBe(true);
  const out = await psqlWithPassword(token, 'require');
  expect(out.stderr).toBe('');
  expect(out.stdout.trim()).toBe(APP_USER);
});

test('over plaintext the spec message refuses the login', async () => {
  const token = await mintToken(ALLOWED);
  const out = await psqlWithPassword(token, 'disable');
  expect(out.code).not.toBe(0);
  expect(out.stderr).toContain('IAM authentication is allowed only with SSL connections.');
});

test('the secret password is not accepted for a user that requires IAM', async () => {
  const out = await psqlWithPassword(APP_PASSWORD, 'require');
  expect(out.code).not.toBe(0);
  expect(out.stderr).toContain(`IAM authentication failed for user ${APP_USER}`);
});

test('a principal outside the allow-list is refused', async () => {
  const out = await psqlWithPassword(await mintToken(STRANGER), 'require');
  expect(out.code).not.toBe(0);
  expect(out.stderr).toContain(`IAM authentication failed for user ${APP_USER}`);
});

test('a token minted for another proxy is refused', async () => {
  const out = await psqlWithPassword(await mintToken(ALLOWED, 'some-other-proxy'), 'require');
  expect(out.code).not.toBe(0);
  expect(out.stderr).toContain('IAM authentication failed');
});

test('a forged token (signature altered) is refused', async () => {
  const token = await mintToken(ALLOWED);
  const url = Buffer.from(token.slice('tidepool-v1.'.length), 'base64url').toString();
  const forged = url.replace(/X-Amz-Signature=([0-9a-f])/, (_, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`);
  const out = await psqlWithPassword(`tidepool-v1.${Buffer.from(forged).toString('base64url')}`, 'require');
  expect(out.code).not.toBe(0);
  expect(out.stderr).toContain('IAM authentication failed');
});

test('an expired token is refused', async () => {
  const expired = await generateAuthToken({
    proxyName: 'iam-proxy',
    dbUser: APP_USER,
    region: 'us-east-1',
    credentials: ALLOWED,
    stsEndpoint: sts.url,
    signingDate: new Date(Date.now() - 16 * 60 * 1000),
  });
  const out = await psqlWithPassword(expired, 'require');
  expect(out.code).not.toBe(0);
  expect(out.stderr).toContain(`IAM authentication failed for user ${APP_USER}`);
});

test('a token whose signature does not cover the proxy-name header is refused', async () => {
  // Signed by an allowed identity, but any proxy could replay it: the header is absent from SignedHeaders.
  const signer = new SignatureV4({ service: 'sts', region: 'us-east-1', credentials: ALLOWED, sha256: Hash.bind(null, 'sha256') });
  const [hostname, port] = sts.host.split(':');
  const signed = await signer.presign(
    new HttpRequest({ method: 'GET', protocol: 'https:', hostname, port: Number(port), path: '/', query: { Action: 'GetCallerIdentity', Version: '2011-06-15' }, headers: { host: sts.host } }),
    { expiresIn: 900 },
  );
  const query = Object.entries(signed.query ?? {})
    .map(([k, v]) => `${uriEscape(k)}=${uriEscape(String(v))}`)
    .join('&');
  const out = await psqlWithPassword(TOKEN_PREFIX + Buffer.from(`https://${sts.host}/?${query}`).toString('base64url'), 'require');
  expect(out.code).not.toBe(0);
  expect(out.stderr).toContain(`IAM authentication failed for user ${APP_USER}`);
  // Refused for the missing header, not for anything else.
  await expect(proxy.waitForLog((line) => line.event === 'auth-failed' && String(line.reason).includes('does not sign the x-tidepool-proxy header'), 5000)).resolves.toBeDefined();
});
