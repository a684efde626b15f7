import {
  IamAllowList,
  TOKEN_PREFIX,
  canonicalPrincipalArn,
  generateAuthToken,
  normalizeAllowedPrincipal,
  parseAmzDate,
  parseAuthToken,
  parseGetCallerIdentityXml,
  parseStsErrorCode,
} from './iam-token';

const CREDS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const SIGNED_AT = new Date('2026-01-02T03:04:05Z');

function tokenFor(url: string): string {
  return TOKEN_PREFIX + Buffer.from(url).toString('base64url');
}

function urlOf(token: string): string {
  return Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url').toString();
}

describe('generateAuthToken', () => {
  it('presigns GetCallerIdentity on the regional STS host, signing host and the proxy header', async () => {
    const token = await generateAuthToken({ proxyName: 'p1', region: 'eu-west-1', credentials: CREDS, signingDate: SIGNED_AT });
    expect(token.startsWith(TOKEN_PREFIX)).toBe(true);
    const url = new URL(urlOf(token));
    expect(url.host).toBe('sts.eu-west-1.amazonaws.com');
    expect(url.searchParams.get('Action')).toBe('GetCallerIdentity');
    expect(url.searchParams.get('Version')).toBe('2011-06-15');
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host;x-tidepool-proxy');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('900');
    expect(url.searchParams.get('X-Amz-Credential')).toBe('AKIDEXAMPLE/20260102/eu-west-1/sts/aws4_request');
    // The proxy name is signed, not sent: the verifier supplies its own on replay.
    expect(urlOf(token)).not.toContain('p1');
    const parsed = parseAuthToken(token, SIGNED_AT.getTime() + 1000);
    expect(parsed).toMatchObject({ ok: true, token: { host: 'sts.eu-west-1.amazonaws.com', port: 443, accessKeyId: 'AKIDEXAMPLE' } });
  });

  it('signs the database user when given, and uses the China partition host', async () => {
    const token = await generateAuthToken({ proxyName: 'p1', dbUser: 'app', region: 'cn-north-1', credentials: CREDS });
    const url = new URL(urlOf(token));
    expect(url.host).toBe('sts.cn-north-1.amazonaws.com.cn');
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('host;x-tidepool-db-user;x-tidepool-proxy');
  });

  it('refuses lifetimes over 15 minutes and non-https endpoints', async () => {
    await expect(generateAuthToken({ proxyName: 'p', region: 'us-east-1', credentials: CREDS, expiresIn: 901 })).rejects.toThrow(/900/);
    await expect(generateAuthToken({ proxyName: 'p', region: 'us-east-1', credentials: CREDS, expiresIn: 0 })).rejects.toThrow(/900/);
    await expect(generateAuthToken({ proxyName: 'p', region: 'us-east-1', credentials: CREDS, stsEndpoint: 'http://127.0.0.1:1' })).rejects.toThrow(/https/);
  });
});

describe('parseAuthToken', () => {
  let good: string;
  const now = SIGNED_AT.getTime() + 60_000;
  beforeAll(async () => {
    good = await generateAuthToken({ proxyName: 'p1', region: 'us-east-1', credentials: CREDS, signingDate: SIGNED_AT });
  });

  const mutate = (replace: (url: string) => string) => tokenFor(replace(urlOf(good)));

  it.each<[string, (url: string) => string, string]>([
    ['http scheme', (u) => u.replace('https://', 'http://'), 'MALFORMED'],
    ['other path', (u) => u.replace('amazonaws.com/?', 'amazonaws.com/x?'), 'MALFORMED'],
    ['extra parameter', (u) => `${u}&Foo=bar`, 'MALFORMED'],
    ['repeated parameter', (u) => `${u}&Action=GetCallerIdentity`, 'MALFORMED'],
    ['user info', (u) => u.replace('https://', 'https://a:b@'), 'MALFORMED'],
    ['fragment', (u) => `${u}#x`, 'MALFORMED'],
    ['other action', (u) => u.replace('Action=GetCallerIdentity', 'Action=AssumeRole'), 'WRONG_ACTION'],
    ['other version', (u) => u.replace('Version=2011-06-15', 'Version=2012-01-01'), 'MALFORMED'],
    ['proxy header not signed', (u) => u.replace('host%3Bx-tidepool-proxy', 'host'), 'PROXY_HEADER_NOT_SIGNED'],
    ['extra signed header', (u) => u.replace('host%3Bx-tidepool-proxy', 'host%3Bx-other%3Bx-tidepool-proxy'), 'MALFORMED'],
    ['host not signed', (u) => u.replace('host%3Bx-tidepool-proxy', 'x-tidepool-proxy'), 'MALFORMED'],
    ['lifetime over 900 s', (u) => u.replace('X-Amz-Expires=900', 'X-Amz-Expires=901'), 'EXPIRED'],
    ['bad date', (u) => u.replace(/X-Amz-Date=\w+/, 'X-Amz-Date=yesterday'), 'MALFORMED'],
    ['non-STS scope', (u) => u.replace('%2Fsts%2F', '%2Fs3%2F'), 'MALFORMED'],
  ])('refuses %s', (_, change, code) => {
    const token = mutate(change);
    expect(token).not.toBe(good);
    expect(parseAuthToken(token, now)).toMatchObject({ ok: false, code });
  });

  it('refuses a missing prefix, non-base64url, oversized input, expiry and future dates', () => {
    expect(parseAuthToken(good.slice(TOKEN_PREFIX.length), now)).toMatchObject({ ok: false, code: 'MALFORMED' });
    expect(parseAuthToken(`${TOKEN_PREFIX}a+b/c=`, now)).toMatchObject({ ok: false, code: 'MALFORMED' });
    expect(parseAuthToken(TOKEN_PREFIX + 'A'.repeat(9000), now)).toMatchObject({ ok: false, code: 'MALFORMED' });
    expect(parseAuthToken(good, SIGNED_AT.getTime() + 900_000)).toMatchObject({ ok: false, code: 'EXPIRED' });
    expect(parseAuthToken(good, SIGNED_AT.getTime() + 899_000)).toMatchObject({ ok: true });
    expect(parseAuthToken(good, SIGNED_AT.getTime() - 6 * 60_000)).toMatchObject({ ok: false, code: 'EXPIRED' });
  });

  it('parses X-Amz-Date', () => {
    expect(parseAmzDate('20260102T030405Z')).toBe(SIGNED_AT.getTime());
    expect(parseAmzDate('2026-01-02T03:04:05Z')).toBeUndefined();
  });
});

describe('principals and the allow-list', () => {
  it('maps assumed-role sessions to their role and leaves other principals alone', () => {
    expect(canonicalPrincipalArn('arn:aws:sts::123456789012:assumed-role/app/i-0abc')).toBe('arn:aws:iam::123456789012:role/app');
    expect(canonicalPrincipalArn('arn:aws-us-gov:sts::123456789012:assumed-role/app/s/x')).toBe('arn:aws-us-gov:iam::123456789012:role/app');
    expect(canonicalPrincipalArn('arn:aws:iam::123456789012:user/ops/alice')).toBe('arn:aws:iam::123456789012:user/ops/alice');
    expect(canonicalPrincipalArn('arn:aws:sts::123456789012:federated-user/bob')).toBe('arn:aws:sts::123456789012:federated-user/bob');
    expect(normalizeAllowedPrincipal('arn:aws:iam::123456789012:role/a/b/app')).toBe('arn:aws:iam::123456789012:role/app');
  });

  it('matches principal and user, with * patterns', () => {
    const list = new IamAllowList([
      { principalArn: 'arn:aws:iam::123456789012:role/app', dbUser: 'app' },
      { principalArn: 'arn:aws:iam::123456789012:role/ci-*', dbUser: '*' },
      { principalArn: 'arn:aws:iam::*:user/alice', dbUser: 'read.only' },
    ]);
    expect(list.allows('arn:aws:iam::123456789012:role/app', 'app')).toBe(true);
    expect(list.allows('arn:aws:iam::123456789012:role/app', 'admin')).toBe(false);
    expect(list.allows('arn:aws:iam::123456789012:role/app2', 'app')).toBe(false);
    expect(list.allows('arn:aws:iam::123456789012:role/ci-build', 'anyone')).toBe(true);
    expect(list.allows('arn:aws:iam::999999999999:user/alice', 'read.only')).toBe(true);
    // "." is literal, not a regex wildcard.
    expect(list.allows('arn:aws:iam::999999999999:user/alice', 'readxonly')).toBe(false);
  });
});

describe('STS XML', () => {
  it('reads the caller and decodes entities', () => {
    const xml = `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>
      <Arn>arn:aws:iam::123456789012:user/a&amp;b</Arn><UserId>AIDA</UserId><Account>123456789012</Account>
      </GetCallerIdentityResult></GetCallerIdentityResponse>`;
    expect(parseGetCallerIdentityXml(xml)).toEqual({ arn: 'arn:aws:iam::123456789012:user/a&b', userId: 'AIDA', account: '123456789012' });
    expect(parseGetCallerIdentityXml('<ErrorResponse/>')).toBeUndefined();
    expect(parseStsErrorCode('<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>')).toBe(
      'SignatureDoesNotMatch',
    );
  });
});
