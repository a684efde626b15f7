/**
 * PostgreSQL password authentication, both directions, as pure functions over message
 * payloads: the proxy authenticating its clients (server side) and the proxy logging in to
 * the database (client side). No sockets and no wire framing here: callers pass the SCRAM
 * payload carried by SASLInitialResponse / SASLResponse (and get back the payload for
 * AuthenticationSASLContinue / AuthenticationSASLFinal), or the md5 PasswordMessage text.
 *
 * SCRAM-SHA-256 follows RFC 5802 / RFC 7677 the way PostgreSQL's auth-scram.c does:
 * - only "SCRAM-SHA-256" is offered; channel binding ("SCRAM-SHA-256-PLUS") is not, so a
 *   client-first message asking for it (`p=…`) is refused, while `n,,` and `y,,` are fine;
 * - the user name inside client-first is ignored (the startup packet's user counts), and
 *   authorization identities (`a=`) and mandatory extensions (`m=`) are refused;
 * - a wrong password is not a protocol error: `handleClientFinal` returns `{ ok: false }`
 *   and the caller answers with SQLSTATE 28P01, as PostgreSQL does.
 *
 * Every malformed message raises AuthProtocolError (never a TypeError or a crash), so the
 * caller can map it to SQLSTATE 08P01 and close the connection.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
/** PostgreSQL's default `scram_iterations`. */
export const DEFAULT_SCRAM_ITERATIONS = 4096;
/** Highest iteration count the client side accepts from a server, as node-postgres does: a
 * hostile or misconfigured server could otherwise stall the event loop in PBKDF2. */
export const DEFAULT_MAX_SCRAM_ITERATIONS = 100_000;

const SCRAM_SALT_LENGTH = 16; // PostgreSQL's SCRAM_DEFAULT_SALT_LEN
const SCRAM_RAW_NONCE_LENGTH = 18; // PostgreSQL's SCRAM_RAW_NONCE_LEN
const SCRAM_KEY_LENGTH = 32; // SHA-256 output
const MD5_SALT_LENGTH = 4;
/** PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: the largest SASL payload it reads. */
const MAX_SCRAM_MESSAGE_LENGTH = 65535;

export type AuthProtocolErrorCode =
  /** The message does not follow the SCRAM grammar. */
  | 'malformed-message'
  /** The client asked for SCRAM channel binding, which the proxy does not offer. */
  | 'channel-binding-unsupported'
  /** A SCRAM feature PostgreSQL does not support either (authzid, mandatory extensions). */
  | 'unsupported-feature'
  /** A method was called out of order (e.g. client-final before client-first). */
  | 'unexpected-message'
  /** The nonce or channel-binding echo in the final message does not match. */
  | 'verification-mismatch'
  /** Client side: the server's iteration count exceeds the configured ceiling. */
  | 'iterations-too-high'
  /** Client side: the server answered with a SCRAM `e=` error. */
  | 'server-error'
  /** Client side: the server's signature does not prove knowledge of the password. */
  | 'server-signature-mismatch';

/** A malformed, unexpected or unverifiable authentication message. */
export class AuthProtocolError extends Error {
  readonly code: AuthProtocolErrorCode;

  constructor(code: AuthProtocolErrorCode, message: string) {
    super(message);
    this.name = 'AuthProtocolError';
    this.code = code;
  }
}

/*
 * ---------------------------------------------------------------------------------------
 * SASLprep
 * ---------------------------------------------------------------------------------------
 */

// RFC 3454 table C.1.2: non-ASCII spaces, mapped to U+0020.
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/gu;
// RFC 3454 table B.1: "commonly mapped to nothing".
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/gu;
// RFC 4013 §2.3 prohibited output (tables C.1.2, C.2.1, C.2.2, C.3–C.9), plus unassigned
// code points (table A.1, approximated by the engine's \p{Cn}), plus lone surrogates.
const PROHIBITED = new RegExp(
  '[' +
    '\\u00A0\\u1680\\u2000-\\u200B\\u202F\\u205F\\u3000' + // C.1.2
    '\\u0000-\\u001F\\u007F' + // C.2.1
    '\\u0080-\\u009F\\u06DD\\u070F\\u180E\\u200C\\u200D\\u2028\\u2029\\u2060-\\u2063\\u206A-\\u206F\\uFEFF\\uFFF9-\\uFFFC\\u{1D173}-\\u{1D17A}' + // C.2.2
    '\\uE000-\\uF8FF\\u{F0000}-\\u{FFFFD}\\u{100000}-\\u{10FFFD}' + // C.3
    '\\uFDD0-\\uFDEF\\uFFFE\\uFFFF\\u{1FFFE}\\u{1FFFF}\\u{2FFFE}\\u{2FFFF}\\u{3FFFE}\\u{3FFFF}\\u{4FFFE}\\u{4FFFF}' +
    '\\u{5FFFE}\\u{5FFFF}\\u{6FFFE}\\u{6FFFF}\\u{7FFFE}\\u{7FFFF}\\u{8FFFE}\\u{8FFFF}\\u{9FFFE}\\u{9FFFF}' +
    '\\u{AFFFE}\\u{AFFFF}\\u{BFFFE}\\u{BFFFF}\\u{CFFFE}\\u{CFFFF}\\u{DFFFE}\\u{DFFFF}\\u{EFFFE}\\u{EFFFF}' +
    '\\u{FFFFE}\\u{FFFFF}\\u{10FFFE}\\u{10FFFF}' + // C.4
    '\\uD800-\\uDFFF' + // C.5 (only lone surrogates can match under the u flag)
    '\\uFFF9-\\uFFFD' + // C.6
    '\\u2FF0-\\u2FFB' + // C.7
    '\\u0340\\u0341\\u200E\\u200F\\u202A-\\u202E' + // C.8
    '\\u{E0001}\\u{E0020}-\\u{E007F}' + // C.9
    '\\p{Cn}' + // A.1
    ']',
  'u',
);
const ASCII_ONLY = /^[\x00-\x7F]*$/;

/**
 * Normalises a password with SASLprep (RFC 4013) the way PostgreSQL's pg_saslprep does,
 * including its fallback: a password SASLprep rejects is used as-is rather than refused,
 * so every password PostgreSQL accepts authenticates here too.
 *
 * Simplifications, all of which only matter for exotic non-ASCII passwords:
 * - "unassigned" uses the JavaScript engine's Unicode version rather than Unicode 3.2, so
 *   a character assigned after 3.2 is normalised here but left raw by PostgreSQL;
 * - the RFC 3454 §6 bidirectional check is skipped (JavaScript regular expressions cannot
 *   query Bidi_Class), so a mixed left-to-right / right-to-left password is normalised here
 *   but left raw by PostgreSQL.
 */
export function saslPrep(password: string): string {
  // PostgreSQL short-cuts pure ASCII as well, control characters included.
  if (ASCII_ONLY.test(password)) return password;
  const mapped = password.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '');
  // PostgreSQL checks prohibited characters on the mapped input, before normalisation.
  if (mapped.length === 0 || PROHIBITED.test(mapped)) return password;
  return mapped.normalize('NFKC');
}

/*
 * ---------------------------------------------------------------------------------------
 * Key derivation, cached
 * ---------------------------------------------------------------------------------------
 */

interface ScramKeys {
  readonly clientKey: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/** A small LRU on top of Map's insertion order. */
class LruCache<V> {
  private readonly entries = new Map<string, V>();

  constructor(private readonly capacity: number) {}

  get(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (oldest.done !== true) this.entries.delete(oldest.value);
    }
  }
}

/**
 * Keys the cache and derives the per-process salts. Random per process so that neither
 * the cache keys nor the salts a client sees reveal anything about a password offline.
 */
const PROCESS_SECRET = randomBytes(32);
const DERIVED_KEY_CACHE_CAPACITY = 1024;
// Login storms hit the same few passwords; PBKDF2 with 4096 iterations costs ~1-2 ms of
// blocked event loop each, so it runs once per (password, salt, iterations).
const derivedKeyCache = new LruCache<ScramKeys>(DERIVED_KEY_CACHE_CAPACITY);

function processHmac(...parts: (string | Buffer)[]): Buffer {
  const hmac = createHmac('sha256', PROCESS_SECRET);
  for (const part of parts) {
    hmac.update(part);
    hmac.update('\0');
  }
  return hmac.digest();
}

function hmacSha256(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

function md5Hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

function deriveScramKeys(password: string, salt: Buffer, iterations: number): ScramKeys {
  const cacheKey = `${processHmac(password).toString('base64')}:${salt.toString('base64')}:${iterations}`;
  const cached = derivedKeyCache.get(cacheKey);
  if (cached !== undefined) return cached;
  const saltedPassword = pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, SCRAM_KEY_LENGTH, 'sha256');
  const clientKey = hmacSha256(saltedPassword, 'Client Key');
  const keys: ScramKeys = {
    clientKey,
    storedKey: sha256(clientKey),
    serverKey: hmacSha256(saltedPassword, 'Server Key'),
  };
  derivedKeyCache.set(cacheKey, keys);
  return keys;
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

function constantTimeEquals(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/*
 * ---------------------------------------------------------------------------------------
 * SCRAM message grammar helpers
 * ---------------------------------------------------------------------------------------
 */

// SCRAM messages are ASCII apart from the (ignored) user name; latin1 maps bytes 1:1 to
// UTF-16 code units, so the AuthMessage can be rebuilt byte-exact from the parsed text.
function decodeScramMessage(message: Buffer, what: string): string {
  if (!Buffer.isBuffer(message)) throw malformed(`${what} is not a buffer`);
  if (message.length === 0) throw malformed(`${what} is empty`);
  if (message.length > MAX_SCRAM_MESSAGE_LENGTH) throw malformed(`${what} is longer than ${MAX_SCRAM_MESSAGE_LENGTH} bytes`);
  if (message.includes(0)) throw malformed(`${what} contains a NUL byte`);
  return message.toString('latin1');
}

function malformed(detail: string): AuthProtocolError {
  return new AuthProtocolError('malformed-message', `malformed SCRAM message: ${detail}`);
}

/** RFC 5802 `printable`: %x21-2B / %x2D-7E (printable ASCII except ","). */
function isPrintable(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x21 || c > 0x7e || c === 0x2c) return false;
  }
  return true;
}

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(value: string, what: string): Buffer {
  // Buffer.from(…, 'base64') silently skips garbage; the protocol deserves a clear error.
  if (!STRICT_BASE64.test(value)) throw malformed(`${what} is not valid base64`);
  return Buffer.from(value, 'base64');
}

/** Splits `a=1,b=2` into attributes, keeping order; every part must be `<letter>=<value>`. */
function parseAttributes(text: string, what: string): { name: string; value: string }[] {
  return text.split(',').map((part) => {
    if (part.length < 2 || part[1] !== '=' || !/^[A-Za-z]$/.test(part[0]!)) {
      throw malformed(`${what} has an invalid attribute "${part.slice(0, 20)}"`);
    }
    return { name: part[0]!, value: part.slice(2) };
  });
}

function expectAttribute(attribute: { name: string; value: string } | undefined, name: string, what: string): string {
  if (attribute === undefined || attribute.name !== name) {
    throw malformed(`${what} lacks the "${name}=" attribute where it is expected`);
  }
  return attribute.value;
}

function makeNonce(): string {
  return randomBytes(SCRAM_RAW_NONCE_LENGTH).toString('base64');
}

/*
 * ---------------------------------------------------------------------------------------
 * SCRAM server side (the proxy authenticating a client)
 * ---------------------------------------------------------------------------------------
 */

export type ScramFinalResult = { ok: true; serverFinal: Buffer } | { ok: false };

export interface ScramServer {
  /** Mechanisms to list in AuthenticationSASL. */
  readonly mechanisms: string[];
  /** Takes client-first-message, returns server-first-message. */
  handleClientFirst(message: Buffer): Buffer;
  /**
   * Takes client-final-message. `{ ok: false }` means a wrong password (answer 28P01);
   * a malformed message or a mismatched nonce throws AuthProtocolError instead.
   */
  handleClientFinal(message: Buffer): ScramFinalResult;
}

export interface ScramServerOptions {
  /** @default DEFAULT_SCRAM_ITERATIONS (4096, as PostgreSQL) */
  iterations?: number;
  /**
   * The salt to present. By default one is derived per process from (user, password), so
   * that it stays stable across logins (and the derived-key cache hits) yet differs between
   * processes.
   */
  salt?: Buffer;
  /**
   * The startup user. Mixed into the default salt: without it, two roles sharing a password
   * would see the same salt, telling one of them the other's password.
   */
  user?: string;
  /** Tests only: a fixed server part of the nonce. A repeated nonce would allow replaying a login. */
  nonce?: string;
}

interface ServerCredentials {
  readonly salt: Buffer;
  readonly iterations: number;
  readonly keys: () => Pick<ScramKeys, 'storedKey' | 'serverKey'>;
}

/** Authenticates a client against a known plaintext password. */
export function createScramServer(password: string, options: ScramServerOptions = {}): ScramServer {
  const iterations = validateIterations(options.iterations ?? DEFAULT_SCRAM_ITERATIONS);
  const salt = options.salt ?? processHmac('salt', options.user ?? '', password).subarray(0, SCRAM_SALT_LENGTH);
  // Derived on client-final, not up front: a client that gives up after server-first
  // should not cost a PBKDF2 run.
  return createScramServerFor({ salt, iterations, keys: () => deriveScramKeys(password, salt, iterations) }, options.nonce);
}

/**
 * A SCRAM exchange for a user that does not exist, which always fails — after the same
 * messages, the same work and a salt as stable per user name as a real one — so that
 * clients cannot enumerate users (PostgreSQL's "mock authentication").
 */
export function createMockScramServer(user: string, options: Pick<ScramServerOptions, 'iterations'> = {}): ScramServer {
  const iterations = validateIterations(options.iterations ?? DEFAULT_SCRAM_ITERATIONS);
  const salt = processHmac('mock-salt', user).subarray(0, SCRAM_SALT_LENGTH);
  // Random keys: no password can match them, and verification costs what a real one does.
  const keys = { storedKey: randomBytes(SCRAM_KEY_LENGTH), serverKey: randomBytes(SCRAM_KEY_LENGTH) };
  return createScramServerFor({ salt, iterations, keys: () => keys });
}

function validateIterations(iterations: number): number {
  if (!Number.isSafeInteger(iterations) || iterations < 1) {
    throw new RangeError(`SCRAM iteration count must be a positive integer, got ${iterations}`);
  }
  return iterations;
}

function createScramServerFor(credentials: ServerCredentials, fixedNonce?: string): ScramServer {
  type State =
    | { step: 'awaiting-client-first' }
    | { step: 'awaiting-client-final'; clientFirstBare: string; serverFirst: string; nonce: string; channelBinding: string }
    | { step: 'done' };
  let state: State = { step: 'awaiting-client-first' };

  return {
    mechanisms: [SCRAM_SHA_256],

    handleClientFirst(message: Buffer): Buffer {
      if (state.step !== 'awaiting-client-first') {
        throw new AuthProtocolError('unexpected-message', 'unexpected SCRAM client-first-message');
      }
      state = { step: 'done' }; // any failure below ends the exchange
      const parsed = parseClientFirst(decodeScramMessage(message, 'client-first-message'));
      const nonce = parsed.clientNonce + (fixedNonce ?? makeNonce());
      const serverFirst = `r=${nonce},s=${credentials.salt.toString('base64')},i=${credentials.iterations}`;
      state = { step: 'awaiting-client-final', clientFirstBare: parsed.bare, serverFirst, nonce, channelBinding: parsed.channelBinding };
      return Buffer.from(serverFirst, 'latin1');
    },

    handleClientFinal(message: Buffer): ScramFinalResult {
      if (state.step !== 'awaiting-client-final') {
        throw new AuthProtocolError('unexpected-message', 'unexpected SCRAM client-final-message');
      }
      const exchange = state;
      state = { step: 'done' };
      const parsed = parseClientFinal(decodeScramMessage(message, 'client-final-message'));
      if (parsed.channelBinding !== exchange.channelBinding) {
        throw new AuthProtocolError(
          'verification-mismatch',
          'SCRAM channel-binding attribute in client-final-message does not match client-first-message',
        );
      }
      if (!constantTimeEquals(Buffer.from(parsed.nonce, 'latin1'), Buffer.from(exchange.nonce, 'latin1'))) {
        throw new AuthProtocolError('verification-mismatch', 'SCRAM nonce in client-final-message does not match');
      }

      const { storedKey, serverKey } = credentials.keys();
      const authMessage = Buffer.from(`${exchange.clientFirstBare},${exchange.serverFirst},${parsed.withoutProof}`, 'latin1');
      const clientKey = xor(parsed.proof, hmacSha256(storedKey, authMessage));
      if (!constantTimeEquals(sha256(clientKey), storedKey)) return { ok: false };
      const serverSignature = hmacSha256(serverKey, authMessage);
      return { ok: true, serverFinal: Buffer.from(`v=${serverSignature.toString('base64')}`, 'latin1') };
    },
  };
}

interface ClientFirst {
  /** client-first-message-bare, part of the AuthMessage. */
  bare: string;
  clientNonce: string;
  /** What the client must echo, base64-encoded, in client-final's `c=`. */
  channelBinding: string;
}

function parseClientFirst(text: string): ClientFirst {
  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  const flagEnd = text.indexOf(',');
  if (flagEnd < 0) throw malformed('client-first-message has no GS2 header');
  const flag = text.slice(0, flagEnd);
  if (flag.startsWith('p=') || flag === 'p') {
    throw new AuthProtocolError(
      'channel-binding-unsupported',
      `the client requested SCRAM channel binding (${flag.slice(0, 40)}), but only ${SCRAM_SHA_256} without channel binding is supported`,
    );
  }
  if (flag !== 'n' && flag !== 'y') throw malformed(`unexpected channel-binding flag "${flag.slice(0, 20)}"`);

  const authzidEnd = text.indexOf(',', flagEnd + 1);
  if (authzidEnd < 0) throw malformed('client-first-message has an incomplete GS2 header');
  if (authzidEnd !== flagEnd + 1) {
    if (text.startsWith('a=', flagEnd + 1)) {
      throw new AuthProtocolError('unsupported-feature', 'client uses a SCRAM authorization identity, which is not supported');
    }
    throw malformed('unexpected attribute in the GS2 header');
  }

  const bare = text.slice(authzidEnd + 1);
  if (bare.startsWith('m=')) {
    throw new AuthProtocolError('unsupported-feature', 'client requires an unsupported SCRAM extension');
  }
  const attributes = parseAttributes(bare, 'client-first-message');
  // The user name (n=) is required by the grammar but ignored: the startup user counts.
  expectAttribute(attributes[0], 'n', 'client-first-message');
  const clientNonce = expectAttribute(attributes[1], 'r', 'client-first-message');
  if (clientNonce.length === 0 || !isPrintable(clientNonce)) throw malformed('the client nonce is empty or not printable');
  // Optional extensions after the nonce are ignored, as PostgreSQL does.

  return { bare, clientNonce, channelBinding: Buffer.from(`${flag},,`, 'latin1').toString('base64') };
}

interface ClientFinal {
  channelBinding: string;
  nonce: string;
  proof: Buffer;
  /** client-final-message-without-proof, part of the AuthMessage. */
  withoutProof: string;
}

function parseClientFinal(text: string): ClientFinal {
  const attributes = parseAttributes(text, 'client-final-message');
  const channelBinding = expectAttribute(attributes[0], 'c', 'client-final-message');
  const nonce = expectAttribute(attributes[1], 'r', 'client-final-message');
  // Extensions may sit between the nonce and the proof; the proof must come last.
  const proofIndex = attributes.findIndex((attribute, index) => index >= 2 && attribute.name === 'p');
  if (proofIndex < 0) throw malformed('client-final-message has no proof');
  if (proofIndex !== attributes.length - 1) throw malformed('garbage after the proof in client-final-message');
  const proof = decodeBase64(attributes[proofIndex]!.value, 'the client proof');
  if (proof.length !== SCRAM_KEY_LENGTH) throw malformed('the client proof has the wrong length');
  const withoutProof = text.slice(0, text.length - attributes[proofIndex]!.value.length - ',p='.length);
  return { channelBinding, nonce, proof, withoutProof };
}

/*
 * ---------------------------------------------------------------------------------------
 * SCRAM client side (the proxy logging in to PostgreSQL)
 * ---------------------------------------------------------------------------------------
 */

export interface ScramClient {
  /** The client-first-message, to send in SASLInitialResponse with mechanism SCRAM-SHA-256. */
  clientFirst(): Buffer;
  /** Takes AuthenticationSASLContinue's payload, returns client-final-message for SASLResponse. */
  handleServerFirst(message: Buffer): Buffer;
  /** Takes AuthenticationSASLFinal's payload; throws AuthProtocolError unless the server proved the password. */
  verifyServerFinal(message: Buffer): void;
}

export interface ScramClientOptions {
  /**
   * The user name to put in client-first-message. PostgreSQL ignores it (the startup
   * packet's user counts), so the default is empty, as libpq sends.
   */
  user?: string;
  /** @default DEFAULT_MAX_SCRAM_ITERATIONS */
  maxIterations?: number;
  /** Tests only: a fixed client nonce. */
  nonce?: string;
}

/** RFC 5802 saslname: "=" and "," escaped, UTF-8 bytes carried as latin1 code units. */
function encodeSaslName(name: string): string {
  return Buffer.from(name.replace(/=/g, '=3D').replace(/,/g, '=2C'), 'utf8').toString('latin1');
}

export function createScramClient(password: string, options: ScramClientOptions = {}): ScramClient {
  const maxIterations = options.maxIterations ?? DEFAULT_MAX_SCRAM_ITERATIONS;
  const clientNonce = options.nonce ?? makeNonce();
  if (clientNonce.length === 0 || !isPrintable(clientNonce)) throw new RangeError('SCRAM client nonce must be printable ASCII');
  const clientFirstBare = `n=${encodeSaslName(options.user ?? '')},r=${clientNonce}`;
  type State =
    | { step: 'initial' }
    | { step: 'awaiting-server-first' }
    | { step: 'awaiting-server-final'; expectedServerSignature: Buffer }
    | { step: 'done' };
  let state: State = { step: 'initial' };

  return {
    clientFirst(): Buffer {
      if (state.step !== 'initial') throw new AuthProtocolError('unexpected-message', 'SCRAM client-first-message already sent');
      state = { step: 'awaiting-server-first' };
      return Buffer.from(`n,,${clientFirstBare}`, 'latin1');
    },

    handleServerFirst(message: Buffer): Buffer {
      if (state.step !== 'awaiting-server-first') {
        throw new AuthProtocolError('unexpected-message', 'unexpected SCRAM server-first-message');
      }
      state = { step: 'done' };
      const serverFirst = decodeScramMessage(message, 'server-first-message');
      if (serverFirst.startsWith('m=')) {
        throw new AuthProtocolError('unsupported-feature', 'server requires an unsupported SCRAM extension');
      }
      const attributes = parseAttributes(serverFirst, 'server-first-message');
      const nonce = expectAttribute(attributes[0], 'r', 'server-first-message');
      const saltText = expectAttribute(attributes[1], 's', 'server-first-message');
      const iterationText = expectAttribute(attributes[2], 'i', 'server-first-message');
      if (!nonce.startsWith(clientNonce) || nonce.length === clientNonce.length || !isPrintable(nonce)) {
        throw new AuthProtocolError('verification-mismatch', 'the server nonce does not extend the client nonce');
      }
      const salt = decodeBase64(saltText, 'the salt');
      if (salt.length === 0) throw malformed('the salt is empty');
      if (!/^[1-9][0-9]{0,9}$/.test(iterationText)) throw malformed('the iteration count is not a positive integer');
      const iterations = Number(iterationText);
      if (maxIterations > 0 && iterations > maxIterations) {
        throw new AuthProtocolError(
          'iterations-too-high',
          `the server asks for ${iterations} SCRAM iterations, more than the allowed ${maxIterations}`,
        );
      }

      const keys = deriveScramKeys(password, salt, iterations);
      const withoutProof = `c=biws,r=${nonce}`; // biws = base64("n,,")
      const authMessage = Buffer.from(`${clientFirstBare},${serverFirst},${withoutProof}`, 'latin1');
      const proof = xor(keys.clientKey, hmacSha256(keys.storedKey, authMessage));
      state = { step: 'awaiting-server-final', expectedServerSignature: hmacSha256(keys.serverKey, authMessage) };
      return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'latin1');
    },

    verifyServerFinal(message: Buffer): void {
      if (state.step !== 'awaiting-server-final') {
        throw new AuthProtocolError('unexpected-message', 'unexpected SCRAM server-final-message');
      }
      const { expectedServerSignature } = state;
      state = { step: 'done' };
      const attributes = parseAttributes(decodeScramMessage(message, 'server-final-message'), 'server-final-message');
      const first = attributes[0]!; // split() always yields at least one part
      if (first.name === 'e') throw new AuthProtocolError('server-error', `the server rejected SCRAM authentication: ${first.value}`);
      const signature = decodeBase64(expectAttribute(first, 'v', 'server-final-message'), 'the server signature');
      if (!constantTimeEquals(signature, expectedServerSignature)) {
        throw new AuthProtocolError('server-signature-mismatch', 'the SCRAM server signature does not match');
      }
    },
  };
}

/*
 * ---------------------------------------------------------------------------------------
 * md5
 * ---------------------------------------------------------------------------------------
 */

/** The 4-byte salt to send in AuthenticationMD5Password. */
export function md5ServerSalt(): Buffer {
  return randomBytes(MD5_SALT_LENGTH);
}

/** The PasswordMessage text answering AuthenticationMD5Password: "md5" + md5(md5(password + user) + salt). */
export function md5PasswordResponse(user: string, password: string, salt: Buffer): string {
  if (!Buffer.isBuffer(salt) || salt.length !== MD5_SALT_LENGTH) {
    throw new AuthProtocolError('malformed-message', `the md5 salt must be ${MD5_SALT_LENGTH} bytes`);
  }
  // No SASLprep here: PostgreSQL hashes md5 passwords as raw bytes.
  const inner = md5Hex(Buffer.from(password + user, 'utf8'));
  return `md5${md5Hex(Buffer.concat([Buffer.from(inner, 'latin1'), salt]))}`;
}

/** Checks a client's md5 PasswordMessage text, in constant time. */
export function verifyMd5Response(user: string, password: string, salt: Buffer, response: string): boolean {
  const expected = Buffer.from(md5PasswordResponse(user, password, salt), 'utf8');
  return typeof response === 'string' && constantTimeEquals(Buffer.from(response, 'utf8'), expected);
}
