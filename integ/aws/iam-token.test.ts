/**
 * IAM auth tokens end to end: minted with the real SDK signer (generateAuthToken), and
 * verified by replaying them to a local STS endpoint that checks SigV4 the way STS does.
 */
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import {
  RATE_LIMIT_MESSAGE,
  TLS_REQUIRED_MESSAGE,
  TOKEN_PREFIX,
  createIamTokenVerifier,
  generateAuthToken,
  uriEscape,
  type IamTokenVerifier,
  type IamTokenVerifierOptions,
  type IamVerifyResult,
} from '../../runtime/secrets/iam-token';
import { startLocalStsEndpoint, type LocalStsEndpoint } from './sts-endpoint';

const REGION = 'us-east-1';
const PROXY = 'prod-proxy';
const ALICE = { accessKeyId: 'AKIDALICE', secretAccessKey: 'alice-secret-key' };
const ROLE = { accessKeyId: 'ASIAROLE', secretAccessKey: 'role-secret-key', sessionToken: 'role-session-token' };

describe('IAM auth tokens (real SDK signing, local STS endpoint)', () => {
  let sts: LocalStsEndpoint;
  const verifiers: IamTokenVerifier[] = [];
  const failures: IamVerifyResult[] = [];
  const minted: string[] = [];

  beforeAll(async () => {
    sts = await startLocalStsEndpoint({
      identities: [
        { ...ALICE, arn: 'arn:aws:iam::123456789012:user/alice', userId: 'AIDAALICE' },
        { ...ROLE, arn: 'arn:aws:sts::123456789012:assumed-role/app-role/i-0abc', userId: 'AROAROLE:i-0abc' },
      ],
    });
  });
  afterAll(async () => {
    for (const v of verifiers) v.close();
    await sts.close();
    // No failure reason may carry a token or any of its signature.
    for (const result of failures) {
      if (result.ok) continue;
      for (const token of minted) {
        expect(result.reason).not.toContain(token);
        expect(result.reason).not.toContain(token.slice(TOKEN_PREFIX.length, TOKEN_PREFIX.length + 40));
        const signature = /X-Amz-Signature=([0-9a-f]+)/.exec(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString())?.[1];
        if (signature !== undefined) expect(result.reason).not.toContain(signature);
      }
    }
  });

  function verifier(extra: Partial<IamTokenVerifierOptions> = {}): IamTokenVerifier {
    const v = createIamTokenVerifier({
      proxyName: PROXY,
      stsHostAllowList: [sts.host],
      ca: sts.ca,
      allowList: [
        { principalArn: 'arn:aws:iam::123456789012:user/alice', dbUser: 'app' },
        // A role path in the grant still matches the path-less assumed-role ARN.
        { principalArn: 'arn:aws:iam::123456789012:role/service/app-role', dbUser: 'report*' },
      ],
      ...extra,
    });
    verifiers.push(v);
    return v;
  }

  async function mint(options: Partial<Parameters<typeof generateAuthToken>[0]> = {}): Promise<string> {
    const token = await generateAuthToken({ proxyName: PROXY, region: REGION, stsEndpoint: sts.url, credentials: ALICE, ...options });
    minted.push(token);
    return token;
  }

  async function check(v: IamTokenVerifier, token: string, dbUser: string, tls = true): Promise<IamVerifyResult> {
    const result = await v.verify(token, dbUser, { tls });
    if (!result.ok) failures.push(result);
    return result;
  }

  /** A presigned URL built by hand with the SDK signer, for shapes generateAuthToken never makes. */
  async function craft(query: Record<string, string>, headers: Record<string, string>): Promise<string> {
    const signer = new SignatureV4({ service: 'sts', region: REGION, credentials: ALICE, sha256: Hash.bind(null, 'sha256') });
    const host = sts.host;
    const signed = await signer.presign(
      new HttpRequest({ method: 'GET', protocol: 'https:', hostname: '127.0.0.1', port: Number(host.split(':')[1]), path: '/', query, headers: { host, ...headers } }),
      { expiresIn: 900 },
    );
    const q = Object.entries(signed.query ?? {})
      .map(([k, v]) => `${uriEscape(k)}=${uriEscape(String(v))}`)
      .join('&');
    const token = TOKEN_PREFIX + Buffer.from(`https://${host}/?${q}`).toString('base64url');
    minted.push(token);
    return token;
  }

  it('accepts a valid token and replays it with the signed proxy header', async () => {
    const v = verifier();
    const token = await mint();
    const before = sts.calls.length;
    expect(await check(v, token, 'app')).toEqual({
      ok: true,
      arn: 'arn:aws:iam::123456789012:user/alice',
      callerArn: 'arn:aws:iam::123456789012:user/alice',
      account: '123456789012',
      userId: 'AIDAALICE',
    });
    const call = sts.calls[before]!;
    expect(call).toMatchObject({ method: 'GET', action: 'GetCallerIdentity', status: 200 });
    expect(call.headers['x-tidepool-proxy']).toBe(PROXY);
  });

  it('refuses plaintext connections before any STS call', async () => {
    const v = verifier();
    const token = await mint();
    expect(await check(v, token, 'app', false)).toEqual({ ok: false, code: 'TLS_REQUIRED', reason: TLS_REQUIRED_MESSAGE });
    expect(v.stsRequests).toBe(0);
  });

  it('refuses an expired token locally, and STS refuses it too (ExpiredToken)', async () => {
    const token = await mint({ signingDate: new Date(Date.now() - 16 * 60 * 1000) });
    const v = verifier();
    expect(await check(v, token, 'app')).toMatchObject({ ok: false, code: 'EXPIRED' });
    expect(v.stsRequests).toBe(0);
    // A verifier with a slow clock lets it through to STS, which has the last word.
    const slow = verifier({ now: () => Date.now() - 16 * 60 * 1000 });
    const result = await check(slow, token, 'app');
    expect(result).toMatchObject({ ok: false, code: 'STS_REJECTED' });
    expect(!result.ok && result.reason).toContain('ExpiredToken');
  });

  it('refuses a token asking for more than 15 minutes', async () => {
    await expect(mint({ expiresIn: 901 })).rejects.toThrow(RangeError);
    const token = await craft({ Action: 'GetCallerIdentity', Version: '2011-06-15' }, { 'x-tidepool-proxy': PROXY });
    const long = TOKEN_PREFIX + Buffer.from(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString().replace('X-Amz-Expires=900', 'X-Amz-Expires=3600')).toString('base64url');
    expect(await check(verifier(), long, 'app')).toMatchObject({ ok: false, code: 'EXPIRED' });
  });

  it('refuses a forged signature and a token signed with the wrong secret key', async () => {
    const v = verifier();
    const token = await mint();
    const url = Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString();
    const forgedUrl = url.replace(/X-Amz-Signature=([0-9a-f])/, (_, c: string) => `X-Amz-Signature=${c === '0' ? '1' : '0'}`);
    expect(forgedUrl).not.toBe(url);
    const forged = TOKEN_PREFIX + Buffer.from(forgedUrl).toString('base64url');
    minted.push(forged);
    const r1 = await check(v, forged, 'app');
    expect(r1).toMatchObject({ ok: false, code: 'STS_REJECTED' });
    expect(!r1.ok && r1.reason).toContain('SignatureDoesNotMatch');

    const wrongKey = await mint({ credentials: { accessKeyId: ALICE.accessKeyId, secretAccessKey: 'guessed' } });
    expect(await check(v, wrongKey, 'app')).toMatchObject({ ok: false, code: 'STS_REJECTED' });
    const unknownKey = await mint({ credentials: { accessKeyId: 'AKIDNOBODY', secretAccessKey: 'x' } });
    const r3 = await check(v, unknownKey, 'app');
    expect(!r3.ok && r3.reason).toContain('InvalidClientTokenId');
  });

  it('refuses a token that does not sign the proxy header', async () => {
    const v = verifier();
    const token = await craft({ Action: 'GetCallerIdentity', Version: '2011-06-15' }, {});
    expect(await check(v, token, 'app')).toMatchObject({ ok: false, code: 'PROXY_HEADER_NOT_SIGNED' });
    expect(v.stsRequests).toBe(0);
  });

  it('refuses a token minted for another proxy (STS sees the signature fail)', async () => {
    const v = verifier();
    const token = await mint({ proxyName: 'staging-proxy' });
    const before = sts.calls.length;
    const result = await check(v, token, 'app');
    expect(result).toMatchObject({ ok: false, code: 'STS_REJECTED' });
    expect(sts.calls[before]).toMatchObject({ status: 403, code: 'SignatureDoesNotMatch' });
    expect(sts.calls[before]!.headers['x-tidepool-proxy']).toBe(PROXY);
  });

  it('refuses a presigned request for another action', async () => {
    const v = verifier();
    const token = await craft({ Action: 'GetSessionToken', Version: '2011-06-15' }, { 'x-tidepool-proxy': PROXY });
    expect(await check(v, token, 'app')).toMatchObject({ ok: false, code: 'WRONG_ACTION' });
    expect(v.stsRequests).toBe(0);
  });

  it('refuses STS hosts outside the allow-list, and allows the regional and global hosts by default', async () => {
    const v = verifier();
    const elsewhere = await mint({ stsEndpoint: 'https://evil.example.com' });
    expect(await check(v, elsewhere, 'app')).toMatchObject({ ok: false, code: 'HOST_NOT_ALLOWED' });
    const realSts = await mint({ stsEndpoint: 'https://sts.us-east-1.amazonaws.com' });
    expect(await check(v, realSts, 'app')).toMatchObject({ ok: false, code: 'HOST_NOT_ALLOWED' });
    expect(v.stsRequests).toBe(0);
    // The default list: the region's and the global STS hosts pass the host check (a bucket with no tokens then stops them before any
    // network call), a local host does not.
    const defaults = verifier({ stsHostAllowList: undefined, region: 'us-east-1', rateLimit: { perSecond: 0.001, burst: 0 } });
    expect(await check(defaults, await mint(), 'app')).toMatchObject({ ok: false, code: 'HOST_NOT_ALLOWED' });
    expect(await check(defaults, realSts, 'app')).toMatchObject({ ok: false, code: 'RATE_LIMITED' });
    const globalSts = await mint({ stsEndpoint: 'https://sts.amazonaws.com' });
    expect(await check(defaults, globalSts, 'app')).toMatchObject({ ok: false, code: 'RATE_LIMITED' });
    expect(await check(defaults, await mint({ stsEndpoint: 'https://sts.us-west-2.amazonaws.com' }), 'app')).toMatchObject({
      ok: false,
      code: 'HOST_NOT_ALLOWED',
    });
  });

  it('refuses a principal not granted the database user', async () => {
    const result = await check(verifier(), await mint(), 'admin');
    expect(result).toMatchObject({ ok: false, code: 'NOT_AUTHORIZED' });
    expect(!result.ok && result.reason).toContain('arn:aws:iam::123456789012:user/alice');
  });

  it('maps an assumed-role session to its role and honours wildcard grants', async () => {
    const v = verifier();
    const token = await mint({ credentials: ROLE });
    expect(Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString()).toContain('X-Amz-Security-Token=');
    expect(await check(v, token, 'reporting')).toMatchObject({
      ok: true,
      arn: 'arn:aws:iam::123456789012:role/app-role',
      callerArn: 'arn:aws:sts::123456789012:assumed-role/app-role/i-0abc',
    });
    expect(await check(v, token, 'app')).toMatchObject({ ok: false, code: 'NOT_AUTHORIZED' });
  });

  it('binds a token minted for one database user to that user', async () => {
    const v = verifier();
    const token = await mint({ credentials: ROLE, dbUser: 'report1' });
    expect(await check(v, token, 'report1')).toMatchObject({ ok: true });
    // report2 is granted too, but the token signs x-tidepool-db-user: report1.
    expect(await check(v, token, 'report2')).toMatchObject({ ok: false, code: 'STS_REJECTED' });
  });

  it('caches verified tokens briefly', async () => {
    let clock = Date.now();
    const v = verifier({ cacheTtlSeconds: 30, now: () => clock });
    const token = await mint();
    expect(await check(v, token, 'app')).toMatchObject({ ok: true });
    expect(await check(v, token, 'app')).toMatchObject({ ok: true });
    expect(v.stsRequests).toBe(1);
    clock += 31_000;
    expect(await check(v, token, 'app')).toMatchObject({ ok: true });
    expect(v.stsRequests).toBe(2);
  });

  it('rate-limits STS round trips while cached logins keep working', async () => {
    let clock = Date.now();
    const v = verifier({ rateLimit: { perSecond: 1, burst: 2 }, now: () => clock });
    const tokens = await Promise.all([0, 1, 2].map((i) => mint({ signingDate: new Date(clock - i * 1000) })));
    expect(await check(v, tokens[0]!, 'app')).toMatchObject({ ok: true });
    expect(await check(v, tokens[1]!, 'app')).toMatchObject({ ok: true });
    expect(await check(v, tokens[2]!, 'app')).toEqual({ ok: false, code: 'RATE_LIMITED', reason: RATE_LIMIT_MESSAGE });
    expect(v.stsRequests).toBe(2);
    expect(await check(v, tokens[0]!, 'app')).toMatchObject({ ok: true });
    clock += 1000;
    expect(await check(v, tokens[2]!, 'app')).toMatchObject({ ok: true });
  });

  it('shares one STS call between concurrent logins with the same token', async () => {
    const v = verifier();
    const token = await mint();
    const results = await Promise.all(Array.from({ length: 10 }, () => check(v, token, 'app')));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(v.stsRequests).toBe(1);
  });
});
