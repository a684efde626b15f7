import { createHash, createPublicKey } from 'node:crypto';
import * as path from 'node:path';
import {
  RsaKeyPair,
  cachingSha2PasswordDigest,
  cachingSha2PasswordToken,
  constantTimeEqual,
  decodeClearTextPassword,
  decryptPasswordWithPrivateKey,
  encodeClearTextPassword,
  encryptPasswordWithPublicKey,
  generateRsaKeyPair,
  generateScramble,
  nativePasswordHash,
  nativePasswordToken,
  verifyCachingSha2Password,
  verifyCachingSha2PasswordDigest,
  verifyClearTextPassword,
  verifyNativePassword,
  verifyNativePasswordHash,
} from './auth';
import { CachingSha2Byte, SCRAMBLE_LENGTH } from './constants';

// mysql2's client-side plugins (not exported by the package, so loaded by path): the
// tokens our server side verifies must be the ones a real client computes.
const mysql2Lib = path.join(path.dirname(require.resolve('mysql2')), 'lib');
const auth41 = require(path.join(mysql2Lib, 'auth_41.js')) as {
  calculateToken(password: string, scramble1: Buffer, scramble2: Buffer): Buffer;
  verifyToken(seed1: Buffer, seed2: Buffer, token: Buffer, doubleSha: Buffer): boolean;
  doubleSha1(password: string): Buffer;
};
type Mysql2PluginStep = (data: Buffer) => Buffer | null;
interface Mysql2PluginFactory {
  (options: { serverPublicKey?: string }): (context: { connection: { config: { password: string; ssl?: boolean } } }) => Mysql2PluginStep;
  calculateToken(password: string, scramble: Buffer): Buffer;
}
const mysql2CachingSha2 = require(path.join(mysql2Lib, 'auth_plugins/caching_sha2_password.js')) as Mysql2PluginFactory;

const sha1 = (...parts: Buffer[]): Buffer => parts.reduce((hash, part) => hash.update(part), createHash('sha1')).digest();
const sha256 = (...parts: Buffer[]): Buffer => parts.reduce((hash, part) => hash.update(part), createHash('sha256')).digest();
const xor = (a: Buffer, b: Buffer): Buffer => Buffer.from(a.map((byte, i) => byte ^ b[i]!));

const SCRAMBLE = Buffer.from('Wv4#tb5&#7Yl)a[Y<Fpq', 'latin1');
const SCRAMBLE_WITH_NUL = Buffer.concat([SCRAMBLE, Buffer.from([0])]);

describe('generateScramble', () => {
  it('makes 20 seven-bit bytes without NUL or $', () => {
    for (let i = 0; i < 200; i++) {
      const scramble = generateScramble();
      expect(scramble.length).toBe(SCRAMBLE_LENGTH);
      for (const byte of scramble) {
        expect(byte).toBeGreaterThan(0);
        expect(byte).toBeLessThan(0x80);
        expect(byte).not.toBe(0x24);
      }
    }
    expect(generateScramble().equals(generateScramble())).toBe(false);
  });
});

describe('mysql_native_password', () => {
  it("stores SHA1(SHA1(pw)) — MySQL's PASSWORD('password') is *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19", () => {
    expect(nativePasswordHash('password').toString('hex').toUpperCase()).toBe('2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19');
  });

  it('computes SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))), as node:crypto and mysql2 do', () => {
    const password = 'correct horse battery staple';
    const stage1 = sha1(Buffer.from(password));
    const expected = xor(stage1, sha1(SCRAMBLE, sha1(stage1)));
    expect(nativePasswordToken(password, SCRAMBLE)).toEqual(expected);
    expect(nativePasswordToken(password, SCRAMBLE_WITH_NUL)).toEqual(expected);
    expect(auth41.calculateToken(password, SCRAMBLE.subarray(0, 8), SCRAMBLE.subarray(8))).toEqual(expected);
    expect(auth41.verifyToken(SCRAMBLE.subarray(0, 8), SCRAMBLE.subarray(8), nativePasswordToken(password, SCRAMBLE), auth41.doubleSha1(password))).toBe(true);
  });

  it("verifies a client's response from the plaintext or from the stored hash", () => {
    const token = auth41.calculateToken('s3cret', SCRAMBLE.subarray(0, 8), SCRAMBLE.subarray(8));
    expect(verifyNativePassword(token, SCRAMBLE, 's3cret')).toBe(true);
    expect(verifyNativePassword(token, SCRAMBLE_WITH_NUL, 's3cret')).toBe(true);
    expect(verifyNativePasswordHash(token, SCRAMBLE, nativePasswordHash('s3cret'))).toBe(true);
    expect(verifyNativePassword(token, SCRAMBLE, 's3cret!')).toBe(false);
    expect(verifyNativePassword(token, generateScramble(), 's3cret')).toBe(false);
    expect(verifyNativePassword(token.subarray(0, 19), SCRAMBLE, 's3cret')).toBe(false);
    expect(verifyNativePassword(Buffer.alloc(0), SCRAMBLE, 's3cret')).toBe(false);
  });

  it('treats an empty password as an empty response, both ways', () => {
    expect(nativePasswordToken('', SCRAMBLE)).toEqual(Buffer.alloc(0));
    expect(verifyNativePassword(Buffer.alloc(0), SCRAMBLE, '')).toBe(true);
    expect(verifyNativePassword(nativePasswordToken('x', SCRAMBLE), SCRAMBLE, '')).toBe(false);
  });
});

describe('caching_sha2_password', () => {
  it('computes SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble), as node:crypto and mysql2 do', () => {
    const password = 'pässwörd';
    const stage1 = sha256(Buffer.from(password, 'utf8'));
    const expected = xor(stage1, sha256(sha256(stage1), SCRAMBLE));
    expect(cachingSha2PasswordToken(password, SCRAMBLE)).toEqual(expected);
    expect(cachingSha2PasswordToken(password, SCRAMBLE_WITH_NUL)).toEqual(expected);
    expect(mysql2CachingSha2.calculateToken(password, SCRAMBLE)).toEqual(expected);
  });

  it("verifies mysql2's fast-auth response from the plaintext or the cached digest", () => {
    const step = mysql2CachingSha2({})({ connection: { config: { password: 'hunter2' } } });
    const token = step(SCRAMBLE_WITH_NUL)!;
    expect(verifyCachingSha2Password(token, SCRAMBLE, 'hunter2')).toBe(true);
    expect(verifyCachingSha2PasswordDigest(token, SCRAMBLE, cachingSha2PasswordDigest('hunter2'))).toBe(true);
    expect(verifyCachingSha2Password(token, SCRAMBLE, 'hunter3')).toBe(false);
    expect(verifyCachingSha2Password(token.subarray(1), SCRAMBLE, 'hunter2')).toBe(false);
    // mysql2 then reacts to our status bytes: fast-auth success ends its exchange.
    expect(step(Buffer.from([CachingSha2Byte.FAST_AUTH_SUCCESS]))).toBeNull();
  });

  it('accepts both empty-password encodings (nothing, or a single NUL)', () => {
    expect(cachingSha2PasswordToken('', SCRAMBLE)).toEqual(Buffer.alloc(0));
    expect(verifyCachingSha2Password(Buffer.alloc(0), SCRAMBLE, '')).toBe(true);
    expect(verifyCachingSha2Password(Buffer.from([0]), SCRAMBLE, '')).toBe(true);
    expect(verifyCachingSha2Password(Buffer.from([0]), SCRAMBLE, 'x')).toBe(false);
  });

  describe('RSA public-key exchange', () => {
    let keys: RsaKeyPair;
    beforeAll(() => {
      keys = generateRsaKeyPair();
    });

    it('generates a PEM public key a client can load', () => {
      expect(keys.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
      expect(createPublicKey(keys.publicKeyPem).asymmetricKeyDetails?.modulusLength).toBe(2048);
    });

    it("decrypts mysql2's RSA-OAEP encrypted password (after 0x04 perform-full-authentication)", () => {
      const step = mysql2CachingSha2({ serverPublicKey: keys.publicKeyPem })({ connection: { config: { password: 'l0ng & wïde password', ssl: false } } });
      step(SCRAMBLE_WITH_NUL);
      const encrypted = step(Buffer.from([CachingSha2Byte.PERFORM_FULL_AUTHENTICATION]))!;
      expect(encrypted.length).toBe(256);
      expect(decryptPasswordWithPrivateKey(encrypted, SCRAMBLE, keys.privateKey)).toBe('l0ng & wïde password');
      // With the wrong scramble the XOR mask is wrong: not the password.
      expect(decryptPasswordWithPrivateKey(encrypted, generateScramble(), keys.privateKey)).not.toBe('l0ng & wïde password');
    });

    it('round-trips our own client side, and fails soft on garbage', () => {
      const encrypted = encryptPasswordWithPublicKey('pw', SCRAMBLE_WITH_NUL, keys.publicKeyPem);
      expect(decryptPasswordWithPrivateKey(encrypted, SCRAMBLE_WITH_NUL, keys.privateKey)).toBe('pw');
      expect(decryptPasswordWithPrivateKey(Buffer.alloc(256, 1), SCRAMBLE, keys.privateKey)).toBeUndefined();
      expect(decryptPasswordWithPrivateKey(Buffer.alloc(3), SCRAMBLE, keys.privateKey)).toBeUndefined();
    });
  });
});

describe('clear-text passwords', () => {
  it('encodes password + NUL and decodes it back', () => {
    expect(encodeClearTextPassword('tok€n')).toEqual(Buffer.from('tok€n\0', 'utf8'));
    expect(decodeClearTextPassword(Buffer.from('tok€n\0', 'utf8'))).toBe('tok€n');
    expect(decodeClearTextPassword(Buffer.from('no-nul'))).toBe('no-nul');
  });

  it('verifies in constant time whatever the lengths', () => {
    expect(verifyClearTextPassword(Buffer.from('secret\0'), 'secret')).toBe(true);
    expect(verifyClearTextPassword(Buffer.from('secret'), 'secret')).toBe(true);
    expect(verifyClearTextPassword(Buffer.from('secre\0'), 'secret')).toBe(false);
    expect(verifyClearTextPassword(Buffer.from('a-much-longer-guess\0'), 'secret')).toBe(false);
  });
});

describe('constantTimeEqual', () => {
  it('compares equal-length buffers and rejects different lengths without throwing', () => {
    expect(constantTimeEqual(Buffer.from('abc'), Buffer.from('abc'))).toBe(true);
    expect(constantTimeEqual(Buffer.from('abc'), Buffer.from('abd'))).toBe(false);
    expect(constantTimeEqual(Buffer.from('abc'), Buffer.from('abcd'))).toBe(false);
  });
});
