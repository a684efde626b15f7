/**
 * A local STS endpoint for tests: HTTPS on 127.0.0.1, speaking STS's query protocol for
 * GetCallerIdentity (presigned GET, or a signed POST form), with XML answers shaped as
 * STS's. It verifies SigV4 itself, with its own implementation (not the SDK's signer, so
 * a signing bug on the client side is not mirrored here), against test credentials whose
 * access key maps to a configured identity. As on AWS, every signed header must be sent
 * with the signed value, so a token minted for another proxy fails with
 * SignatureDoesNotMatch when the proxy replays it with its own name.
 */
import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as selfsigned from 'selfsigned';

export interface StsTestIdentity {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Required in X-Amz-Security-Token when set (temporary credentials). */
  readonly sessionToken?: string;
  /** What GetCallerIdentity answers, e.g. arn:aws:sts::123456789012:assumed-role/app/session. */
  readonly arn: string;
  readonly userId?: string;
}

export interface StsCall {
  readonly method: string;
  readonly action: string | undefined;
  readonly status: number;
  readonly code: string | undefined;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface LocalStsEndpoint {
  /** `https://127.0.0.1:PORT` */
  readonly url: string;
  /** `127.0.0.1:PORT`, for a verifier's STS host allow-list. */
  readonly host: string;
  /** PEM of the endpoint's self-signed certificate, for clients to trust. */
  readonly ca: string;
  readonly calls: StsCall[];
  addIdentity(identity: StsTestIdentity): void;
  close(): Promise<void>;
}

/** STS refuses signed requests older than this. */
const MAX_PRESIGN_MS = 15 * 60 * 1000;
const STS_NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

class StsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function rfc3986(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function xmlEscape(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function parsePairs(text: string): [string, string][] {
  if (text === '') return [];
  return text.split('&').map((pair) => {
    const eq = pair.indexOf('=');
    const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'));
    return eq < 0 ? [decode(pair), ''] : [decode(pair.slice(0, eq)), decode(pair.slice(eq + 1))];
  });
}

function amzDateToMs(text: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (m === null) throw new StsError(400, 'IncompleteSignature', `Invalid X-Amz-Date: ${text}`);
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const kDate = createHmac('sha256', `AWS4${secret}`).update(date).digest();
  const kRegion = createHmac('sha256', kDate).update(region).digest();
  const kService = createHmac('sha256', kRegion).update(service).digest();
  return createHmac('sha256', kService).update('aws4_request').digest();
}

export async function startLocalStsEndpoint(options: { identities?: StsTestIdentity[]; now?: () => number } = {}): Promise<LocalStsEndpoint> {
  const now = options.now ?? Date.now;
  const identities = new Map<string, StsTestIdentity>();
  for (const identity of options.identities ?? []) identities.set(identity.accessKeyId, identity);
  const calls: StsCall[] = [];
  const pems = await selfsigned.generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }, { type: 2, value: 'localhost' }] }],
  });

  /** SigV4 verification of a query-signed (presigned) or header-signed request; returns the caller. */
  function authenticate(req: IncomingMessage, query: [string, string][], body: Buffer): StsTestIdentity {
    const q = new Map(query.map(([k, v]) => [k, v]));
    const authorization = req.headers.authorization;
    let credential: string;
    let signedHeaders: string;
    let signature: string;
    let amzDate: string;
    let expiresMs: number;
    let sessionToken: string | undefined;
    let canonicalQueryPairs: [string, string][];
    if (q.has('X-Amz-Signature')) {
      if (q.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') throw new StsError(400, 'IncompleteSignature', 'Unsupported AWS authentication algorithm');
      credential = q.get('X-Amz-Credential') ?? '';
      signedHeaders = q.get('X-Amz-SignedHeaders') ?? '';
      signature = q.get('X-Amz-Signature') ?? '';
      amzDate = q.get('X-Amz-Date') ?? '';
      const expires = Number(q.get('X-Amz-Expires') ?? 'NaN');
      if (!Number.isInteger(expires) || expires < 0) throw new StsError(400, 'IncompleteSignature', 'Invalid X-Amz-Expires');
      // STS ignores X-Amz-Expires on presigned GetCallerIdentity and honours 15 minutes from
      // X-Amz-Date (aws-iam-authenticator#160); the proxy enforces X-Amz-Expires itself.
      expiresMs = MAX_PRESIGN_MS;
      sessionToken = q.get('X-Amz-Security-Token');
      canonicalQueryPairs = query.filter(([k]) => k !== 'X-Amz-Signature');
    } else if (typeof authorization === 'string') {
      const m = /^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(authorization);
      if (m === null) throw new StsError(400, 'IncompleteSignature', 'Authorization header requires Credential, SignedHeaders and Signature');
      [, credential, signedHeaders, signature] = m as unknown as [string, string, string, string];
      amzDate = String(req.headers['x-amz-date'] ?? '');
      expiresMs = MAX_PRESIGN_MS;
      const token = req.headers['x-amz-security-token'];
      sessionToken = typeof token === 'string' ? token : undefined;
      canonicalQueryPairs = query;
    } else {
      throw new StsError(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
    }

    const [accessKeyId, shortDate, region, service, terminator] = credential.split('/');
    const identity = identities.get(accessKeyId ?? '');
    if (identity === undefined) throw new StsError(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    if (identity.sessionToken !== undefined && sessionToken !== identity.sessionToken) {
      throw new StsError(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    }
    if (service !== 'sts' || terminator !== 'aws4_request' || region === undefined || shortDate === undefined) {
      throw new StsError(403, 'SignatureDoesNotMatch', `Credential should be scoped to correct service: 'sts'.`);
    }
    const signedAt = amzDateToMs(amzDate);
    if (!amzDate.startsWith(shortDate)) throw new StsError(403, 'SignatureDoesNotMatch', 'Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP');
    // Real STS words this either way (ExpiredToken, or SignatureDoesNotMatch "Signature expired"); both are a 403 refusal.
    if (now() > signedAt + expiresMs) throw new StsError(403, 'ExpiredToken', 'The security token included in the request is expired');
    if (signedAt > now() + 5 * 60 * 1000) throw new StsError(403, 'SignatureDoesNotMatch', 'Signature not yet current');

    const headerNames = signedHeaders.split(';');
    if (!headerNames.includes('host')) throw new StsError(403, 'SignatureDoesNotMatch', "'Host' must be a 'SignedHeader' in the AWS Authorization.");
    const canonicalHeaders = headerNames
      .map((name) => {
        const raw = req.headers[name];
        const value = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
        return `${name}:${value.trim().replace(/\s+/g, ' ')}\n`;
      })
      .join('');
    const canonicalQuery = canonicalQueryPairs
      .map(([k, v]) => [rfc3986(k), rfc3986(v)] as const)
      .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    const path = (req.url ?? '/').split('?')[0]!;
    const canonicalRequest = [req.method, path, canonicalQuery, canonicalHeaders, signedHeaders, sha256Hex(body)].join('\n');
    const scope = `${shortDate}/${region}/${service}/${terminator}`;
    const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
    const expected = createHmac('sha256', signingKey(identity.secretAccessKey, shortDate, region, service)).update(stringToSign).digest();
    const given = Buffer.from(signature, 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new StsError(
        403,
        'SignatureDoesNotMatch',
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      );
    }
    return identity;
  }

  function send(res: ServerResponse, status: number, xml: string): void {
    res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': randomUUID() });
    res.end(xml);
  }

  function handle(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
    let action: string | undefined;
    try {
      const rawUrl = req.url ?? '/';
      const queryText = rawUrl.includes('?') ? rawUrl.slice(rawUrl.indexOf('?') + 1) : '';
      const query = parsePairs(queryText);
      const isForm = req.method === 'POST' && String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded');
      const params = new Map([...query, ...(isForm ? parsePairs(body.toString('utf8')) : [])]);
      action = params.get('Action');
      if (req.method !== 'GET' && req.method !== 'POST') throw new StsError(405, 'InvalidAction', 'Unsupported method');
      const identity = authenticate(req, query, body);
      if (action !== 'GetCallerIdentity') {
        throw new StsError(400, 'InvalidAction', `Could not find operation ${action ?? ''} for version ${params.get('Version') ?? 'NO_VERSION_SPECIFIED'}`);
      }
      if (params.get('Version') !== '2011-06-15') throw new StsError(400, 'InvalidAction', `Could not find operation GetCallerIdentity for version ${params.get('Version') ?? 'NO_VERSION_SPECIFIED'}`);
      const account = /^arn:[^:]+:[^:]+::(\d{12}):/.exec(identity.arn)?.[1] ?? '000000000000';
      calls.push({ method: req.method, action, status: 200, code: undefined, headers: { ...req.headers } });
      send(
        res,
        200,
        `<GetCallerIdentityResponse xmlns="${STS_NS}">\n  <GetCallerIdentityResult>\n    <Arn>${xmlEscape(identity.arn)}</Arn>\n` +
          `    <UserId>${xmlEscape(identity.userId ?? identity.accessKeyId)}</UserId>\n    <Account>${account}</Account>\n` +
          `  </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>${randomUUID()}</RequestId>\n  </ResponseMetadata>\n</GetCallerIdentityResponse>\n`,
      );
    } catch (error) {
      const e = error instanceof StsError ? error : new StsError(400, 'MalformedQueryString', error instanceof Error ? error.message : String(error));
      calls.push({ method: req.method ?? '', action, status: e.status, code: e.code, headers: { ...req.headers } });
      send(
        res,
        e.status,
        `<ErrorResponse xmlns="${STS_NS}">\n  <Error>\n    <Type>Sender</Type>\n    <Code>${e.code}</Code>\n    <Message>${xmlEscape(e.message)}</Message>\n` +
          `  </Error>\n  <RequestId>${randomUUID()}</RequestId>\n</ErrorResponse>\n`,
      );
    }
  }

  const server: Server = createServer({ cert: pems.cert, key: pems.private }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    ca: pems.cert,
    calls,
    addIdentity(identity) {
      identities.set(identity.accessKeyId, identity);
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
