/**
 * PostgreSQL fuzz inputs, per phase: untyped startup-phase packets, authentication-phase
 * answers, and frontend messages after a real login. Messages are built field by field
 * with broken counts, lengths and names, mutated from valid ones, or made from scratch.
 */
import { fuzzText, interestingInt16, interestingUint32, mutateBytes, randomAscii, splice } from './mutate';
import { Random } from './random';

export const PG_PROTOCOL_3_0 = 196608;
const SSL_REQUEST_CODE = 80877103;
const GSSENC_REQUEST_CODE = 80877104;
const CANCEL_REQUEST_CODE = 80877102;

/** Frontend message types the proxy forwards after login; anything else ends the session. */
const FORWARDED_TYPES = new Set('QPBDCSFEHdcf'.split('').map((c) => c.charCodeAt(0)));
const TERMINATE = 'X'.charCodeAt(0);

/** SQL a non-superuser may run without touching other sessions (no locks, sleeps or kills). */
export const PG_SQL_CORPUS: readonly string[] = [
  'SELECT 1',
  'SELECT $1',
  'SELECT $1::int + $2::int',
  "SELECT 'x' || $1",
  'SELECT * FROM fuzz_t',
  'INSERT INTO fuzz_t VALUES ($1)',
  'INSERT INTO fuzz_t VALUES (1)',
  'BEGIN',
  'COMMIT',
  'ROLLBACK',
  'SAVEPOINT a',
  'RELEASE a',
  'ROLLBACK TO a',
  'SET search_path = public',
  'SET application_name = fuzz',
  'SET LOCAL statement_timeout = 1000',
  'RESET ALL',
  'DISCARD ALL',
  'DEALLOCATE ALL',
  'PREPARE p1 AS SELECT 1',
  'EXECUTE p1',
  'DEALLOCATE p1',
  'LISTEN fuzz_channel',
  'UNLISTEN *',
  'CREATE TEMP TABLE IF NOT EXISTS fuzz_tmp (x int)',
  'SELECT 1/0',
  "SELECT repeat('x', 200000)",
  'SELECT generate_series(1, 500)',
  'COPY (SELECT generate_series(1, 50)) TO STDOUT',
  'COPY fuzz_t FROM STDIN',
  'SHOW ALL',
  'SELECT ',
  ';;;',
  'SELECT 1; SELECT 2',
  'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
  'FETCH ALL c',
  'CLOSE c',
  "SELECT set_config('fuzz.x', 'y', false)",
  'SELECT $1000',
  'SELECT \u00e9\u4e2d\ud83d\ude00',
];

export function typed(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(body.length + 4, 1);
  body.copy(out, 5);
  return out;
}

function cstr(text: Buffer | string): Buffer {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  return Buffer.concat([bytes, Buffer.alloc(1)]);
}

function int16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeInt16BE(((value + 0x8000) & 0xffff) - 0x8000);
  return out;
}

function int32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0);
  return out;
}

function untyped(body: Buffer): Buffer {
  return Buffer.concat([int32(body.length + 4), body]);
}

/*
 * ---------------------------------------------------------------------------------------
 * Startup phase
 * ---------------------------------------------------------------------------------------
 */

export function startupMessage(params: [Buffer | string, Buffer | string][], protocol = PG_PROTOCOL_3_0): Buffer {
  return untyped(Buffer.concat([int32(protocol), ...params.flatMap(([name, value]) => [cstr(name), cstr(value)]), Buffer.alloc(1)]));
}

const PARAM_NAMES = ['user', 'database', 'options', 'application_name', 'client_encoding', 'replication', 'DateStyle', '_pq_.x', 'search_path', ''];

/** One startup-phase packet: valid, odd, or broken. Users are drawn from `users` (known and not). */
export function pgStartupPacket(random: Random, users: readonly string[]): Buffer {
  const protocol = random.weighted<number>([
    [6, PG_PROTOCOL_3_0],
    [1, PG_PROTOCOL_3_0 + random.range(1, 5)],
    [1, 2 << 16],
    [1, (random.range(4, 1000) << 16) | random.int(65536)],
    [1, random.next()],
  ]);
  const params: [Buffer | string, Buffer | string][] = [];
  if (random.chance(0.9)) params.push(['user', random.chance(0.7) ? random.pick(users) : fuzzText(random)]);
  for (let i = random.int(4); i > 0; i--) {
    const name = random.chance(0.7) ? random.pick(PARAM_NAMES) : fuzzText(random);
    const value = random.chance(0.3) ? random.pick(['-c search_path=x', '-c a', '--b=c', 'true', 'database', 'UTF8', 'SQL_ASCII']) : fuzzText(random);
    params.push([name, value]);
  }
  switch (random.int(12)) {
    case 0:
      return untyped(Buffer.concat([int32(SSL_REQUEST_CODE)]));
    case 1:
      return untyped(int32(GSSENC_REQUEST_CODE));
    case 2:
      return untyped(Buffer.concat([int32(CANCEL_REQUEST_CODE), int32(random.next()), int32(random.next())]));
    case 3: {
      // A well-known code with the wrong length.
      const code = random.pick([SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE]);
      return untyped(Buffer.concat([int32(code), random.bytes(random.pick([0, 1, 3, 7, 12, 100]) + (code === CANCEL_REQUEST_CODE ? 0 : 1))]));
    }
    case 4: {
      // Declared length disagreeing with the body: bigger (the proxy must wait, then time out), smaller, absurd.
      const packet = startupMessage(params, protocol);
      packet.writeInt32BE(random.pick([0, 4, 7, 8, packet.length - 1, packet.length + 1, packet.length + 5000, 9999, 10_001, 0x7fffffff, -1, -0x80000000]), 0);
      return packet;
    }
    case 5:
      // Missing the terminating NUL(s).
      return untyped(startupMessage(params, protocol).subarray(4, -1 - random.int(2)));
    case 6:
      // Odd number of strings.
      return untyped(Buffer.concat([int32(protocol), cstr('user'), Buffer.alloc(1)]));
    case 7:
      return startupMessage(params, protocol).subarray(0, random.int(8));
    case 8:
      return mutateBytes(random, startupMessage(params, protocol));
    case 9:
      return random.bytes(random.size(64));
    default:
      return startupMessage(params, protocol);
  }
}

/** A pre-login connection: 1–4 startup-phase packets back to back (SSLRequest then startup, twice, ...). */
export function pgPreStartupInputs(random: Random, users: readonly string[]): Buffer[] {
  const inputs: Buffer[] = [];
  for (let i = random.range(1, 4); i > 0; i--) inputs.push(pgStartupPacket(random, users));
  return inputs;
}

/*
 * ---------------------------------------------------------------------------------------
 * Authentication phase (after a valid StartupMessage for a real user)
 * ---------------------------------------------------------------------------------------
 */

/** Garbage where SASLInitialResponse / SASLResponse / PasswordMessage belong, or other messages entirely. */
export function pgAuthGarbage(random: Random, validClientFinal?: Buffer): Buffer {
  const p = 'p'.charCodeAt(0);
  switch (random.int(10)) {
    case 0:
      return typed(p, Buffer.concat([cstr(random.pick(['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS', 'PLAIN', ''])), int32(random.pick([-1, 0, 5, 0x7fffffff, 100])), random.bytes(random.size(32))]));
    case 1: {
      const first = random.pick(['n,,n=,r=abc', 'y,,n=,r=', 'p=tls-server-end-point,,n=,r=x', 'n,,r=abc', 'n,,n=,r=\u0001', 'n,a=x,n=,r=abc', ',,,,', '']);
      const data = Buffer.from(first, 'latin1');
      return typed(p, Buffer.concat([cstr('SCRAM-SHA-256'), int32(data.length), data]));
    }
    case 2:
      return typed(p, validClientFinal ? mutateBytes(random, validClientFinal) : random.bytes(random.size(128)));
    case 3:
      return typed(p, Buffer.from(random.pick(['c=biws,r=x,p=AAAA', 'c=biws,r=', 'c=,r=,p=', 'p=====', 'c=biws'])));
    case 4:
      return typed(p, cstr(fuzzText(random)));
    case 5:
      return typed(random.pick([...'QPBSXdH'].map((c) => c.charCodeAt(0))), random.bytes(random.size(16)));
    case 6:
      return startupMessage([['user', 'fuzz']]);
    case 7:
      return mutateBytes(random, typed(p, cstr('md5' + randomAscii(random, 32))));
    case 8:
      return typed(p, Buffer.alloc(0));
    default: {
      const message = typed(p, random.bytes(random.size(64)));
      message.writeInt32BE(random.pick([0, 3, 4, 100_000, 0x7fffffff, -5]), 1);
      return message;
    }
  }
}

/*
 * ---------------------------------------------------------------------------------------
 * After login
 * ---------------------------------------------------------------------------------------
 */

const STATEMENT_NAMES = ['', '', 's1', 's2', 'S_1', 'p1'];

function fuzzName(random: Random, names: readonly string[]): Buffer {
  return random.chance(0.95) ? Buffer.from(random.pick(names)) : fuzzText(random);
}

function sql(random: Random): Buffer {
  return random.chance(0.8) ? Buffer.from(random.pick(PG_SQL_CORPUS), 'utf8') : fuzzText(random, PG_SQL_CORPUS);
}

function parseMessage(random: Random): Buffer {
  const declared = random.chance(0.9) ? random.int(3) : interestingInt16(random);
  const actual = random.chance(0.95) ? Math.max(0, Math.min(declared, 8)) : random.int(6);
  const oids: Buffer[] = [];
  for (let i = 0; i < actual; i++) oids.push(int32(random.pick([0, 23, 25, 16, 17, 1043, interestingUint32(random)])));
  return typed(0x50, Buffer.concat([cstr(fuzzName(random, STATEMENT_NAMES)), cstr(sql(random)), int16(declared), ...oids]));
}

function bindMessage(random: Random): Buffer {
  const parts: Buffer[] = [cstr(fuzzName(random, ['', '', 'portal1'])), cstr(fuzzName(random, STATEMENT_NAMES))];
  const formatCount = random.chance(0.95) ? random.int(3) : interestingInt16(random);
  parts.push(int16(formatCount));
  for (let i = 0; i < Math.min(Math.max(formatCount, 0), 4) - (random.chance(0.03) ? 1 : 0); i++) parts.push(int16(random.pick([0, 1, 2, -1])));
  const paramCount = random.chance(0.95) ? random.int(3) : interestingInt16(random);
  parts.push(int16(paramCount));
  for (let i = 0; i < Math.min(Math.max(paramCount, 0), 6) - (random.chance(0.03) ? 1 : 0); i++) {
    if (random.chance(0.05)) {
      parts.push(int32(random.pick([-1, -2, 0x7fffffff, 1000, -0x80000000])));
    } else {
      const value = random.chance(0.5) ? Buffer.from(String(random.int(1000))) : fuzzText(random);
      parts.push(int32(value.length), value);
    }
  }
  const resultCount = random.chance(0.95) ? random.int(2) : interestingInt16(random);
  parts.push(int16(resultCount));
  for (let i = 0; i < Math.min(Math.max(resultCount, 0), 3); i++) parts.push(int16(random.pick([0, 1, 7])));
  return typed(0x42, Buffer.concat(parts));
}

function describeOrClose(random: Random, type: number): Buffer {
  const kind = random.chance(0.85) ? random.pick([0x53, 0x50]) : random.next() & 0xff;
  const name = kind === 0x50 ? fuzzName(random, ['', 'portal1']) : fuzzName(random, STATEMENT_NAMES);
  return typed(type, Buffer.concat([Buffer.from([kind]), random.chance(0.98) ? cstr(name) : name]));
}

function executeMessage(random: Random): Buffer {
  return typed(0x45, Buffer.concat([cstr(fuzzName(random, ['', 'portal1'])), int32(random.pick([0, 1, 10, -1, 0x7fffffff]))]));
}

function functionCall(random: Random): Buffer {
  // Only OIDs no function has: calling a real one (pg_sleep, ...) would test PostgreSQL, not the proxy.
  const oid = random.chance(0.5) ? 0 : random.range(2_000_000_000, 0x7fffffff);
  const argCount = random.int(3);
  const parts = [int32(oid), int16(1), int16(0), int16(argCount)];
  for (let i = 0; i < argCount; i++) {
    const value = fuzzText(random);
    parts.push(int32(value.length), value);
  }
  parts.push(int16(random.pick([0, 1, 5])));
  return typed(0x46, Buffer.concat(parts));
}

/** One well-formed-length frontend message whose content may be nonsense. */
export function pgFrontendMessage(random: Random): Buffer {
  return random.weighted<() => Buffer>([
    [14, () => typed(0x51, cstr(sql(random)))],
    [10, () => parseMessage(random)],
    [10, () => bindMessage(random)],
    [6, () => describeOrClose(random, 0x44)],
    [5, () => describeOrClose(random, 0x43)],
    [8, () => executeMessage(random)],
    [8, () => typed(0x53, Buffer.alloc(0))],
    [3, () => typed(0x48, Buffer.alloc(0))],
    [2, () => functionCall(random)],
    [3, () => typed(0x64, random.bytes(random.size(256)))],
    [2, () => typed(0x63, Buffer.alloc(random.chance(0.8) ? 0 : random.int(8)))],
    [2, () => typed(0x66, cstr(fuzzText(random)))],
    [1, () => typed(0x51, random.bytes(random.size(64)))],
  ])();
}

/** Messages that are invalid after login and must end the session cleanly. */
function wrongStateMessage(random: Random): Buffer {
  return random.weighted<() => Buffer>([
    [3, () => typed(0x70, cstr('password'))],
    [2, () => startupMessage([['user', 'fuzz']])],
    [1, () => untyped(int32(SSL_REQUEST_CODE))],
    [1, () => untyped(Buffer.concat([int32(CANCEL_REQUEST_CODE), int32(1), int32(2)]))],
    [3, () => typed(random.next() & 0xff, random.bytes(random.size(32)))],
    [1, () => typed(0x58, Buffer.alloc(0))],
  ])();
}

/**
 * One post-login input: mostly well-framed messages (so the session survives and keeps
 * receiving inputs), some mutated or spliced (framing may break), a few wrong-state ones.
 */
export function pgPostLoginInput(random: Random): Buffer {
  const roll = random.int(1000);
  if (roll < 900) return pgFrontendMessage(random);
  if (roll < 960) return mutateBody(random, random.chance(0.7) ? typed(0x51, cstr(sql(random))) : pgFrontendMessage(random));
  if (roll < 985) return copyInSequence(random);
  // What follows usually breaks framing or the session: rarer, so a session lives for hundreds of inputs.
  if (roll < 990) return mutateBytes(random, pgFrontendMessage(random));
  if (roll < 994) return splice(random, pgFrontendMessage(random), pgFrontendMessage(random));
  if (roll < 997) return lengthEdit(random, pgFrontendMessage(random));
  return wrongStateMessage(random);
}

/** Mutates a message's body and fixes its length: the frame stays valid, the content does not. */
function mutateBody(random: Random, message: Buffer): Buffer {
  return typed(message[0]!, mutateBytes(random, message.subarray(5)));
}

/** COPY FROM STDIN followed by data, then (usually) its end, a failure, or nothing. */
function copyInSequence(random: Random): Buffer {
  const parts = [typed(0x51, cstr('COPY fuzz_t FROM STDIN'))];
  for (let i = random.int(4); i > 0; i--) parts.push(typed(0x64, random.chance(0.6) ? Buffer.from(`${random.int(100)}\n`) : random.bytes(random.size(64))));
  parts.push(random.weighted<Buffer>([[5, typed(0x63, Buffer.alloc(0))], [2, typed(0x66, cstr('fuzz'))], [1, typed(0x53, Buffer.alloc(0))], [1, Buffer.alloc(0)]]));
  return Buffer.concat(parts);
}

function lengthEdit(random: Random, message: Buffer): Buffer {
  const out = Buffer.from(message);
  out.writeInt32BE(random.pick([0, 3, 4, message.length - 2, message.length, message.length + 3, 70_000, 10_000_000, 0x7fffffff, -1]) | 0, 1);
  return out;
}

/**
 * Follows the proxy's framing of what was sent (Int8 type, Int32 length) to know whether
 * the next byte starts a message and whether the proxy will drop the connection.
 */
export class PgFrontendStreamModel {
  private header = Buffer.alloc(5);
  private headerFilled = 0;
  /** Body bytes still owed by the message in progress. */
  remaining = 0;
  /** Set once the stream holds something the proxy must refuse (bad length, unknown type, Terminate). */
  ended: 'invalid-length' | 'too-large' | 'bad-type' | 'terminate' | null = null;

  constructor(private readonly maxMessageBytes: number) {}

  feed(bytes: Buffer): void {
    let offset = 0;
    while (offset < bytes.length && this.ended === null) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, bytes.length - offset);
        this.remaining -= take;
        offset += take;
        continue;
      }
      const take = Math.min(5 - this.headerFilled, bytes.length - offset);
      bytes.copy(this.header, this.headerFilled, offset, offset + take);
      this.headerFilled += take;
      offset += take;
      if (this.headerFilled < 5) return;
      this.headerFilled = 0;
      const length = this.header.readInt32BE(1);
      if (length < 4) this.ended = 'invalid-length';
      else if (length + 1 > this.maxMessageBytes) this.ended = 'too-large';
      else if (this.header[0] === TERMINATE) this.ended = 'terminate';
      else if (!FORWARDED_TYPES.has(this.header[0]!)) this.ended = 'bad-type';
      else this.remaining = length - 4;
    }
  }

  /** Bytes needed to reach the next message boundary. */
  get owed(): number {
    return this.headerFilled > 0 ? 5 - this.headerFilled : this.remaining;
  }
}
