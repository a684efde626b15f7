import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import * as selfsigned from 'selfsigned';
import { targetTlsSchema } from '../config/schema';
import { TargetTlsPolicy } from './target-tls';

let dir: string;
let cert: string;
let otherCert: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'target-tls-'));
  cert = (await selfsigned.generate([{ name: 'commonName', value: 'db.internal' }], { keySize: 2048, extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'db.internal' }] }] })).cert;
  otherCert = (await selfsigned.generate([{ name: 'commonName', value: 'other' }], { keySize: 2048, extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '10.0.0.1' }] }] })).cert;
  writeFileSync(join(dir, 'ca.pem'), cert);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const policy = (settings: object) => new TargetTlsPolicy(targetTlsSchema.parse(settings), dir);
const target = { host: 'db.internal' };

test('FOLLOW_CLIENT: TLS only for TLS clients, falling back to plaintext without a CA', () => {
  const follow = policy({});
  expect(follow.followsClient).toBe(true);
  expect(follow.forPool({ user: 'u', database: 'd' }, target)).toBeNull();
  expect(follow.forPool({ user: 'u', database: 'd', tls: false }, target)).toBeNull();
  expect(follow.forPool({ user: 'u', database: 'd', tls: true }, target)).toEqual({
    required: false,
    options: { rejectUnauthorized: false, servername: 'db.internal' },
  });
});

test('FOLLOW_CLIENT with caFile: TLS clients require a verified server', () => {
  const request = policy({ caFile: 'ca.pem' }).forPool({ user: 'u', database: 'd', tls: true }, target)!;
  expect(request.required).toBe(true);
  expect(request.options.rejectUnauthorized).toBe(true);
  expect(request.options.ca).toBe(cert);
});

test('REQUIRED and DISABLED ignore the client', () => {
  const required = policy({ mode: 'REQUIRED' });
  expect(required.followsClient).toBe(false);
  expect(required.forPool({ user: 'u', database: 'd' }, target)?.required).toBe(true);
  expect(policy({ mode: 'DISABLED' }).forPool({ user: 'u', database: 'd', tls: true }, target)).toBeNull();
});

test('no SNI for an IP address target', () => {
  expect(policy({ mode: 'REQUIRED' }).forPool({ user: 'u', database: 'd' }, { host: '127.0.0.1' })?.options.servername).toBeUndefined();
});

test('the host-name check uses the target host, and can be turned off', () => {
  const peer = (pem: string) => {
    const x509 = new X509Certificate(pem);
    return { subject: { CN: x509.subject.split('=')[1] }, subjectaltname: x509.subjectAltName } as unknown as PeerCertificate;
  };
  const check = policy({ mode: 'REQUIRED', caFile: 'ca.pem' }).forPool({ user: 'u', database: 'd' }, target)!.options.checkServerIdentity!;
  expect(check('db.internal', peer(cert))).toBeUndefined();
  // (An Error from Node's realm, so its message rather than instanceof.)
  expect(check('db.internal', peer(otherCert))?.message).toMatch(/db\.internal/);
  const lax = policy({ mode: 'REQUIRED', caFile: 'ca.pem', verifyHostname: false }).forPool({ user: 'u', database: 'd' }, target)!.options.checkServerIdentity!;
  expect(lax('db.internal', peer(otherCert))).toBeUndefined();
});

test('an unreadable caFile stops the start with a message naming the field', () => {
  expect(() => policy({ caFile: 'missing.pem' })).toThrow(/targetTls\.caFile: cannot read .*missing\.pem/);
});

test('writer probes use opportunistic, unverified TLS unless DISABLED', () => {
  expect(policy({ mode: 'REQUIRED', caFile: 'ca.pem' }).forProbe(target)).toEqual({ required: false, options: { rejectUnauthorized: false, servername: 'db.internal' } });
  expect(policy({}).forProbe({ host: '127.0.0.1' })).toEqual({ required: false, options: { rejectUnauthorized: false } });
  expect(policy({ mode: 'DISABLED' }).forProbe(target)).toBeNull();
});
