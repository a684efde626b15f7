/**
 * MySQL password authentication, both directions, as pure functions over the bytes the
 * plugins exchange: the proxy verifying its clients (it holds the plaintext password from
 * the secret, RDS Proxy's model) and the proxy logging in to a database.
 *
 * - mysql_native_password: token = SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
 * - caching_sha2_password: token = SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble);
 *   the server answers AuthMoreData 0x03 (fast auth success, OK follows) or 0x04 (perform
 *   full authentication: the client sends the clear password over TLS, or asks for the
 *   RSA public key with 0x02 and sends RSA-OAEP(password + NUL XOR scramble)).
 * - mysql_clear_password: password + NUL, only acceptable over TLS (the caller's rule).
 *
 * Comparisons of secrets are constant-time. No sockets, no state machines here: the
 * session layer sequences the exchange.
 */
import { createHash, generateKeyPairSync, privateDecrypt, publicEncrypt, randomBytes, timingSafeEqual, constants as cryptoConstants } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { SCRAMBLE_LENGTH } from './constants';

type Secret = string | Buffer;

function toBytes(secret: Secret): Buffer {
  return typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret;
}

function sha1(...parts: Buffer[]): Buffer {
  const hash = createHash('sha1');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

function sha256(...parts: Buffer[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

function xor(left: Buffer, right: Buffer): Buffer {
  const out = Buffer.allocUnsafe(left.length);
  for (let i = 0; i < left.length; i++) out[i] = left[i]! ^ right[i]!;
  return out;
}

/** XOR with a key repeated over the data's length (the RSA exchange's obfuscation step). */
function xorRotating(data: Buffer, key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i]! ^ key[i % key.length]!;
  return out;
}

/**
 * Constant-time equality. Different lengths compare unequal (without leaking where they
 * differ; the length itself of a hash-sized token is not secret).
 */
export function constantTimeEqual(left: Buffer, right: Buffer): boolean {
  if (left.length !== right.length) return false;
  return timingSafeEqual(left, right);
}

/**
 * A fresh 20-byte scramble as MySQL makes them: 7-bit bytes, never NUL or '$', because
 * some clients treat the scramble as a C string and the plugin data ends with a NUL.
 */
export function generateScramble(): Buffer {
  const scramble = randomBytes(SCRAMBLE_LENGTH);
  for (let i = 0; i < scramble.length; i++) {
    let byte = scramble[i]! & 0x7f;
    if (byte === 0 || byte === 0x24 /* '$' */) byte += 1;
    scramble[i] = byte;
  }
  return scramble;
}

/** Servers send the scramble followed by a NUL (21 bytes); the plugins use the first 20. */
function scrambleBytes(scramble: Buffer): Buffer {
  return scramble.length > SCRAMBLE_LENGTH ? scramble.subarray(0, SCRAMBLE_LENGTH) : scramble;
}

/* ------------------------------------------------------------------------------------ */
/* mysql_native_password                                                                 */
/* ------------------------------------------------------------------------------------ */

/** SHA1(SHA1(password)): what mysql.user stores, and all the server side needs. */
export function nativePasswordHash(password: Secret): Buffer {
  return sha1(sha1(toBytes(password)));
}

/** The client's response to `scramble`; empty for an empty password, as clients send. */
export function nativePasswordToken(password: Secret, scramble: Buffer): Buffer {
  const bytes = toBytes(password);
  if (bytes.length === 0) return Buffer.alloc(0);
  const stage1 = sha1(bytes);
  return xor(stage1, sha1(scrambleBytes(scramble), sha1(stage1)));
}

/**
 * Checks a client's mysql_native_password response against the stored SHA1(SHA1(pw)):
 * recover SHA1(pw) = response XOR SHA1(scramble + stored) and check SHA1 of it.
 * `storedHash` undefined means the account has an empty password.
 */
export function verifyNativePasswordHash(response: Buffer, scramble: Buffer, storedHash: Buffer | undefined): boolean {
  if (storedHash === undefined) return response.length === 0;
  if (response.length !== 20) return false;
  const candidateStage1 = xor(response, sha1(scrambleBytes(scramble), storedHash));
  return constantTimeEqual(sha1(candidateStage1), storedHash);
}

/** Checks a client's mysql_native_password response given the plaintext password. */
export function verifyNativePassword(response: Buffer, scramble: Buffer, password: Secret): boolean {
  const bytes = toBytes(password);
  return verifyNativePasswordHash(response, scramble, bytes.length === 0 ? undefined : nativePasswordHash(bytes));
}

/* ------------------------------------------------------------------------------------ */
/* caching_sha2_password                                                                 */
/* ------------------------------------------------------------------------------------ */

/** SHA256(SHA256(password)): the server's cache entry, all that fast auth needs. */
export function cachingSha2PasswordDigest(password: Secret): Buffer {
  return sha256(sha256(toBytes(password)));
}

/** The client's fast-auth response to `scramble`; empty for an empty password. */
export function cachingSha2PasswordToken(password: Secret, scramble: Buffer): Buffer {
  const bytes = toBytes(password);
  if (bytes.length === 0) return Buffer.alloc(0);
  const stage1 = sha256(bytes);
  const stage2 = sha256(stage1);
  return xor(stage1, sha256(stage2, scrambleBytes(scramble)));
}

/**
 * libmysqlclient answers with a single NUL for an empty password, mysql2 with nothing;
 * servers accept both.
 */
function isEmptyPasswordResponse(response: Buffer): boolean {
  return response.length === 0 || (response.length === 1 && response[0] === 0);
}

/**
 * Checks a caching_sha2_password fast-auth response against the cached
 * SHA256(SHA256(pw)): recover SHA256(pw) = response XOR SHA256(digest + scramble), then
 * compare its SHA256 with the digest. `digest` undefined means an empty password.
 */
export function verifyCachingSha2PasswordDigest(response: Buffer, scramble: Buffer, digest: Buffer | undefined): boolean {
  if (digest === undefined) return isEmptyPasswordResponse(response);
  if (response.length !== 32) return false;
  const candidateStage1 = xor(response, sha256(digest, scrambleBytes(scramble)));
  return constantTimeEqual(sha256(candidateStage1), digest);
}

/** Checks a caching_sha2_password fast-auth response given the plaintext password. */
export function verifyCachingSha2Password(response: Buffer, scramble: Buffer, password: Secret): boolean {
  const bytes = toBytes(password);
  return verifyCachingSha2PasswordDigest(response, scramble, bytes.length === 0 ? undefined : cachingSha2PasswordDigest(bytes));
}

/** An RSA key pair for the public-key exchange of caching_sha2_password (and sha256_password). */
export interface RsaKeyPair {
  /** SPKI PEM, sent to clients in AuthMoreData when they ask with 0x02. */
  publicKeyPem: string;
  privateKey: KeyObject;
}

/** Generates the proxy's RSA key pair (2048 bits, as MySQL's auto-generated keys). */
export function generateRsaKeyPair(modulusLength = 2048): RsaKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength });
  return { publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), privateKey };
}

/**
 * Client side of full authentication without TLS: RSA-OAEP (SHA-1, as MySQL ≥ 8.0.5 and
 * mysql2 use) of the NUL-terminated password XORed with the scramble.
 */
export function encryptPasswordWithPublicKey(password: Secret, scramble: Buffer, publicKeyPem: string | Buffer): Buffer {
  const plain = xorRotating(Buffer.concat([toBytes(password), Buffer.from([0])]), scrambleBytes(scramble));
  return publicEncrypt({ key: publicKeyPem, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, plain);
}

/**
 * Server side: recovers the password a client encrypted with our public key. Returns
 * undefined when the ciphertext does not decrypt (wrong key, garbage) — treat as a
 * failed login, not as a protocol error.
 */
export function decryptPasswordWithPrivateKey(encrypted: Buffer, scramble: Buffer, privateKey: KeyObject | string): string | undefined {
  let plain: Buffer;
  try {
    plain = privateDecrypt({ key: privateKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, encrypted);
  } catch {
    return undefined;
  }
  return stripTrailingNul(xorRotating(plain, scrambleBytes(scramble))).toString('utf8');
}

/* ------------------------------------------------------------------------------------ */
/* Clear-text passwords (mysql_clear_password, and caching_sha2 full auth over TLS)      */
/* ------------------------------------------------------------------------------------ */

/** password + NUL, as mysql_clear_password and caching_sha2_password over TLS send it. */
export function encodeClearTextPassword(password: Secret): Buffer {
  return Buffer.concat([toBytes(password), Buffer.from([0])]);
}

/** The password from a clear-text response (trailing NUL removed; tolerated when absent). */
export function decodeClearTextPassword(response: Buffer): string {
  return stripTrailingNul(response).toString('utf8');
}

/** Constant-time check of a clear-text response against the expected password. */
export function verifyClearTextPassword(response: Buffer, password: Secret): boolean {
  // Hash both sides so the comparison does not depend on the password's length.
  return constantTimeEqual(sha256(stripTrailingNul(response)), sha256(toBytes(password)));
}

function stripTrailingNul(bytes: Buffer): Buffer {
  return bytes.length > 0 && bytes[bytes.length - 1] === 0 ? bytes.subarray(0, bytes.length - 1) : bytes;
}
