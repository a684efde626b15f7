/**
 * MySQL fuzz inputs, per phase: handshake responses (to the proxy's HandshakeV10), answers
 * during authentication, and command packets after a real login. Packets carry a 3-byte
 * length and a sequence id, both of which are fuzzed along with the payloads.
 */
import { fuzzText, interestingUint32, mutateBytes, randomAscii, splice } from './mutate';
import { Random } from './random';

const MAX_PAYLOAD = 0xffffff;

const CAP = {
  LONG_PASSWORD: 0x1,
  CONNECT_WITH_DB: 0x8,
  COMPRESS: 0x20,
  LOCAL_FILES: 0x80,
  PROTOCOL_41: 0x200,
  SSL: 0x800,
  TRANSACTIONS: 0x2000,
  SECURE_CONNECTION: 0x8000,
  MULTI_STATEMENTS: 0x10000,
  MULTI_RESULTS: 0x20000,
  PS_MULTI_RESULTS: 0x40000,
  PLUGIN_AUTH: 0x80000,
  CONNECT_ATTRS: 0x100000,
  LENENC_CLIENT_DATA: 0x200000,
  SESSION_TRACK: 0x800000,
  DEPRECATE_EOF: 0x1000000,
  OPTIONAL_RESULTSET_METADATA: 0x2000000,
  QUERY_ATTRIBUTES: 0x8000000,
} as const;

/** What a modern driver (mysql2, libmariadb) announces. */
export const MYSQL_CLIENT_CAPABILITIES =
  CAP.LONG_PASSWORD | CAP.CONNECT_WITH_DB | CAP.PROTOCOL_41 | CAP.TRANSACTIONS | CAP.SECURE_CONNECTION | CAP.MULTI_STATEMENTS | CAP.MULTI_RESULTS | CAP.PS_MULTI_RESULTS | CAP.PLUGIN_AUTH | CAP.LENENC_CLIENT_DATA;

/** SQL a user without privileges beyond its database may run without touching other sessions. */
export const MYSQL_SQL_CORPUS: readonly string[] = [
  'SELECT 1',
  'SELECT ?',
  'SELECT ? + ?',
  'SELECT * FROM fuzz_t',
  'INSERT INTO fuzz_t VALUES (1)',
  'INSERT INTO fuzz_t VALUES (?)',
  'BEGIN',
  'START TRANSACTION READ ONLY',
  'COMMIT',
  'ROLLBACK',
  'SAVEPOINT a',
  'ROLLBACK TO SAVEPOINT a',
  'SET @x = 1',
  'SET NAMES utf8mb4',
  'SET NAMES latin1',
  'SET autocommit = 0',
  'SET autocommit = 1',
  'SET SESSION sql_mode = ""',
  "SET character_set_client = 'ucs2'",
  'USE appdb',
  'USE nosuchdb',
  'PREPARE s FROM "SELECT 1"',
  'EXECUTE s',
  'DEALLOCATE PREPARE s',
  'CREATE TEMPORARY TABLE IF NOT EXISTS fuzz_tmp (x int)',
  'SELECT 1/0',
  "SELECT REPEAT('x', 200000)",
  'SELECT seq FROM seq_1_to_500',
  'SELECT 1; SELECT 2',
  'SELECT SLEEP(0)',
  'SHOW VARIABLES',
  'SHOW WARNINGS',
  'DO 1',
  'SELECT LAST_INSERT_ID()',
  'SELECT ',
  ';;;',
  'SELECT \u00e9\u4e2d\ud83d\ude00',
  'LOAD DATA LOCAL INFILE "/etc/passwd" INTO TABLE fuzz_t',
];

export function packet(payload: Buffer, sequenceId: number): Buffer {
  const out = Buffer.allocUnsafe(4 + payload.length);
  out.writeUIntLE(Math.min(payload.length, MAX_PAYLOAD), 0, 3);
  out[3] = sequenceId & 0xff;
  payload.copy(out, 4);
  return out;
}

function u16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16LE(value & 0xffff);
  return out;
}

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(value >>> 0);
  return out;
}

function nul(text: Buffer | string): Buffer {
  return Buffer.concat([typeof text === 'string' ? Buffer.from(text, 'utf8') : text, Buffer.alloc(1)]);
}

function lenenc(value: number): Buffer {
  if (value < 0xfb) return Buffer.from([value]);
  if (value < 0x10000) return Buffer.concat([Buffer.from([0xfc]), u16(value)]);
  if (value < 0x1000000) {
    const out = Buffer.from([0xfd, 0, 0, 0]);
    out.writeUIntLE(value, 1, 3);
    return out;
  }
  const out = Buffer.alloc(9);
  out[0] = 0xfe;
  out.writeUInt32LE(value >>> 0, 1);
  return out;
}

/*
 * ---------------------------------------------------------------------------------------
 * Handshake response
 * ---------------------------------------------------------------------------------------
 */

const PLUGINS = ['mysql_native_password', 'caching_sha2_password', 'mysql_clear_password', 'sha256_password', 'client_ed25519', 'dialog', 'auth_gssapi_client', ''];

function capabilities(random: Random): number {
  return random.weighted<number>([
    [5, MYSQL_CLIENT_CAPABILITIES],
    [2, (MYSQL_CLIENT_CAPABILITIES ^ (1 << random.int(32))) >>> 0],
    [1, MYSQL_CLIENT_CAPABILITIES | random.pick([CAP.SSL, CAP.COMPRESS, CAP.QUERY_ATTRIBUTES, CAP.OPTIONAL_RESULTSET_METADATA, CAP.CONNECT_ATTRS, CAP.LOCAL_FILES, CAP.SESSION_TRACK, CAP.DEPRECATE_EOF])],
    [1, MYSQL_CLIENT_CAPABILITIES & ~random.pick([CAP.PROTOCOL_41, CAP.SECURE_CONNECTION, CAP.PLUGIN_AUTH, CAP.LENENC_CLIENT_DATA])],
    [1, random.next()],
  ]);
}

/** A HandshakeResponse41 built field by field, so each field can be wrong on its own. */
export function handshakeResponsePayload(random: Random, users: readonly string[]): Buffer {
  const flags = capabilities(random);
  const user = random.chance(0.8) ? Buffer.from(random.pick(users)) : fuzzText(random);
  const authLength = random.pick([0, 20, 20, 32, random.size(300)]);
  const auth = random.bytes(authLength);
  const parts: Buffer[] = [u32(flags), u32(random.chance(0.8) ? MAX_PAYLOAD : interestingUint32(random)), Buffer.from([random.pick([45, 33, 8, 63, 224, 0, 255, random.next() & 0xff])]), Buffer.alloc(19), u32(random.chance(0.8) ? 0 : random.next())];
  parts.push(random.chance(0.95) ? nul(user) : user);
  if (flags & CAP.LENENC_CLIENT_DATA) parts.push(random.chance(0.9) ? lenenc(authLength) : lenenc(interestingUint32(random) & 0xffffff), auth);
  else if (flags & CAP.SECURE_CONNECTION) parts.push(Buffer.from([random.chance(0.9) ? authLength & 0xff : random.next() & 0xff]), auth.subarray(0, 255));
  else parts.push(nul(Buffer.from(auth.filter((byte) => byte !== 0))));
  if (flags & CAP.CONNECT_WITH_DB) parts.push(nul(random.chance(0.7) ? 'appdb' : fuzzText(random)));
  if (flags & CAP.PLUGIN_AUTH) parts.push(random.chance(0.9) ? nul(random.pick(PLUGINS)) : fuzzText(random));
  if (flags & CAP.CONNECT_ATTRS) {
    const attributes = random.chance(0.7) ? Buffer.concat([lenenc(4), Buffer.from('_pid'), lenenc(3), Buffer.from('123')]) : random.bytes(random.size(32));
    parts.push(lenenc(random.chance(0.8) ? attributes.length : interestingUint32(random) & 0xffff), attributes);
  }
  const payload = Buffer.concat(parts);
  return random.chance(0.25) ? mutateBytes(random, payload) : payload;
}

/** The client's first packet(s) after the proxy's HandshakeV10: a response, an SSLRequest, garbage, several. */
export function mysqlHandshakeInputs(random: Random, users: readonly string[]): Buffer[] {
  const inputs: Buffer[] = [];
  for (let i = random.weighted([[6, 1], [2, 2], [1, 3]]); i > 0; i--) {
    const sequenceId = random.chance(0.85) ? 1 + inputs.length : random.next() & 0xff;
    inputs.push(
      random.weighted<() => Buffer>([
        [10, () => packet(handshakeResponsePayload(random, users), sequenceId)],
        // SSLRequest (32 bytes) on a proxy without TLS, or with the wrong length.
        [2, () => packet(Buffer.concat([u32(MYSQL_CLIENT_CAPABILITIES | CAP.SSL), u32(MAX_PAYLOAD), Buffer.from([45]), Buffer.alloc(random.pick([23, 22, 10, 0]))]), sequenceId)],
        // HandshakeResponse320 (pre-4.1).
        [1, () => packet(Buffer.concat([u16(CAP.LONG_PASSWORD), Buffer.from([0xff, 0xff, 0xff]), nul('app'), nul(randomAscii(random, 8))]), sequenceId)],
        [2, () => lengthEdited(random, packet(handshakeResponsePayload(random, users), sequenceId))],
        [1, () => packet(handshakeResponsePayload(random, users), sequenceId).subarray(0, random.int(40))],
        [1, () => random.bytes(random.size(64))],
        // Huge declared length with no body.
        [1, () => Buffer.from([0xff, 0xff, 0xff, sequenceId])],
      ])(),
    );
  }
  return inputs;
}

/** Answers to an AuthSwitchRequest / AuthMoreData that are wrong for what was asked. */
export function mysqlAuthGarbage(random: Random, sequenceId: number): Buffer {
  const seq = random.chance(0.8) ? sequenceId : random.next() & 0xff;
  return random.weighted<() => Buffer>([
    [3, () => packet(random.bytes(random.pick([0, 1, 19, 20, 21, 32, 256, 512])), seq)],
    [2, () => packet(Buffer.from([random.pick([0x01, 0x02, 0x03, 0x04, 0xfe, 0x00])]), seq)],
    [2, () => packet(nul(fuzzText(random)), seq)],
    [1, () => packet(Buffer.from([0x03]), seq)],
    [1, () => lengthEdited(random, packet(random.bytes(20), seq))],
    [1, () => packet(Buffer.from([0x03, ...Buffer.from('SELECT 1')]), 0)],
  ])();
}

/*
 * ---------------------------------------------------------------------------------------
 * Commands after login
 * ---------------------------------------------------------------------------------------
 */

const COM = {
  QUIT: 0x01,
  INIT_DB: 0x02,
  QUERY: 0x03,
  FIELD_LIST: 0x04,
  STATISTICS: 0x09,
  PROCESS_KILL: 0x0c,
  PING: 0x0e,
  CHANGE_USER: 0x11,
  STMT_PREPARE: 0x16,
  STMT_EXECUTE: 0x17,
  STMT_SEND_LONG_DATA: 0x18,
  STMT_CLOSE: 0x19,
  STMT_RESET: 0x1a,
  SET_OPTION: 0x1b,
  STMT_FETCH: 0x1c,
  RESET_CONNECTION: 0x1f,
} as const;

function sql(random: Random): Buffer {
  return random.chance(0.8) ? Buffer.from(random.pick(MYSQL_SQL_CORPUS), 'utf8') : fuzzText(random, MYSQL_SQL_CORPUS);
}

function statementId(random: Random): number {
  // The proxy numbers a client's statements from 1; unknown ones are the interesting part too.
  return random.chance(0.7) ? random.range(1, 6) : interestingUint32(random);
}

function executePayload(random: Random): Buffer {
  const paramCount = random.int(4);
  const parts: Buffer[] = [Buffer.from([COM.STMT_EXECUTE]), u32(statementId(random)), Buffer.from([random.pick([0, 0, 1, 2, 4, 8, 0x80, random.next() & 0xff])]), u32(random.chance(0.9) ? 1 : interestingUint32(random))];
  if (random.chance(0.9)) {
    parts.push(random.bytes(Math.ceil(paramCount / 8) || random.int(2)));
    parts.push(Buffer.from([random.chance(0.8) ? 1 : random.next() & 0xff]));
    for (let i = 0; i < paramCount; i++) parts.push(Buffer.from([random.pick([0x01, 0x02, 0x03, 0x08, 0x0f, 0xfd, 0xfe, 0xfc, 0x06, random.next() & 0xff]), random.pick([0, 0x80])]));
    for (let i = 0; i < paramCount; i++) {
      const value = fuzzText(random);
      parts.push(random.chance(0.85) ? lenenc(value.length) : Buffer.from([random.pick([0xfb, 0xfc, 0xfd, 0xfe, 0xff])]), value);
    }
  }
  return Buffer.concat(parts);
}

/** One command payload (first byte the command), with content that may be nonsense. */
export function mysqlCommandPayload(random: Random): Buffer {
  return random.weighted<() => Buffer>([
    [20, () => Buffer.concat([Buffer.from([COM.QUERY]), sql(random)])],
    [8, () => Buffer.concat([Buffer.from([COM.STMT_PREPARE]), sql(random)])],
    [10, () => executePayload(random)],
    [3, () => Buffer.concat([Buffer.from([COM.STMT_SEND_LONG_DATA]), u32(statementId(random)), u16(random.int(4)), random.bytes(random.size(128))])],
    [3, () => Buffer.concat([Buffer.from([COM.STMT_CLOSE]), u32(statementId(random))])],
    [2, () => Buffer.concat([Buffer.from([COM.STMT_RESET]), u32(statementId(random))])],
    [2, () => Buffer.concat([Buffer.from([COM.STMT_FETCH]), u32(statementId(random)), u32(random.pick([0, 1, 100, 0xffffffff]))])],
    [2, () => Buffer.concat([Buffer.from([COM.INIT_DB]), random.chance(0.5) ? Buffer.from('appdb') : fuzzText(random)])],
    [2, () => Buffer.concat([Buffer.from([COM.FIELD_LIST]), nul(random.chance(0.5) ? 'fuzz_t' : fuzzText(random)), fuzzText(random)])],
    [3, () => Buffer.from([COM.PING])],
    [1, () => Buffer.from([COM.STATISTICS])],
    [2, () => Buffer.concat([Buffer.from([COM.SET_OPTION]), u16(random.pick([0, 1, 2, 0xffff]))])],
    [2, () => Buffer.from([COM.RESET_CONNECTION])],
    // Rare: the proxy then waits for the re-authentication answer, and the rest of the chunk stalls until its idle timeout.
    [0.3, () => Buffer.concat([Buffer.from([COM.CHANGE_USER]), nul(random.pick(['fuzz', 'nobody', ''])), Buffer.from([20]), random.bytes(random.chance(0.8) ? 20 : random.int(40)), nul('appdb'), u16(45), nul(random.pick(PLUGINS))])],
    // Ids no connection has: killing a real one would test MariaDB, not the proxy.
    [1, () => Buffer.concat([Buffer.from([COM.PROCESS_KILL]), u32(random.range(100_000_000, 0x7fffffff))])],
    [2, () => Buffer.concat([Buffer.from([random.next() & 0xff]), random.bytes(random.size(32))])],
    [1, () => Buffer.alloc(0)],
  ])();
}

/**
 * One post-login input: mostly well-framed commands, some with mutated payloads or headers,
 * wrong sequence ids, pipelined pairs, spliced packets, and now and then a broken 16 MB
 * multi-packet command.
 */
export function mysqlPostLoginInput(random: Random): Buffer {
  const roll = random.int(10_000);
  if (roll < 8000) return packet(mysqlCommandPayload(random), 0);
  if (roll < 9700) return packet(mutateBytes(random, mysqlCommandPayload(random)), 0);
  // What follows usually breaks framing or the session: rarer, so a session lives for hundreds of inputs.
  if (roll < 9760) return packet(mysqlCommandPayload(random), random.pick([1, 2, 255, random.next() & 0xff]));
  if (roll < 9820) return mutateBytes(random, packet(mysqlCommandPayload(random), 0));
  if (roll < 9880) return splice(random, packet(mysqlCommandPayload(random), 0), packet(mysqlCommandPayload(random), 0));
  if (roll < 9940) return lengthEdited(random, packet(mysqlCommandPayload(random), 0));
  if (roll < 9995) return Buffer.concat([packet(mysqlCommandPayload(random), 0), Buffer.from([0x05, 0x00, 0x00, 0x01, 0x03, 0x41, 0x42, 0x43, 0x44])]);
  return brokenLargeCommand(random);
}

/** A COM_QUERY spanning a full 16 MB packet whose continuation is wrong or missing. */
function brokenLargeCommand(random: Random): Buffer {
  const first = Buffer.alloc(4 + MAX_PAYLOAD, 0x20);
  first.writeUIntLE(MAX_PAYLOAD, 0, 3);
  first[3] = 0;
  first[4] = COM.QUERY;
  first.write('SELECT 1 -- ', 5, 'latin1');
  const continuation = random.weighted<Buffer>([
    [2, packet(Buffer.from(' '), random.pick([0, 2, 7]))],
    [1, packet(Buffer.from([COM.QUERY, 0x31]), 0)],
    [1, Buffer.alloc(0)],
    [1, Buffer.from([0x10, 0x00])],
  ]);
  return Buffer.concat([first, continuation]);
}

function lengthEdited(random: Random, wire: Buffer): Buffer {
  const out = Buffer.from(wire);
  if (out.length >= 3) out.writeUIntLE(random.pick([0, 1, Math.max(0, out.length - 5), out.length - 3, out.length + 10, 70_000, MAX_PAYLOAD, MAX_PAYLOAD - 1]), 0, 3);
  return out;
}

/**
 * Follows the packet framing of what was sent (3-byte length, sequence id, payload; a
 * 0xFFFFFF length continues in the next packet) to know where the next packet starts.
 */
export class MysqlClientStreamModel {
  private header = Buffer.alloc(4);
  private headerFilled = 0;
  remaining = 0;
  /** The last packet was full-size: the command continues in the next packet. */
  continues = false;
  lastSequenceId = 0;
  logicalBytes = 0;
  ended: 'too-large' | null = null;

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
      const take = Math.min(4 - this.headerFilled, bytes.length - offset);
      bytes.copy(this.header, this.headerFilled, offset, offset + take);
      this.headerFilled += take;
      offset += take;
      if (this.headerFilled < 4) return;
      this.headerFilled = 0;
      const length = this.header.readUIntLE(0, 3);
      this.lastSequenceId = this.header[3]!;
      this.logicalBytes = (this.continues ? this.logicalBytes : 0) + length;
      if (this.logicalBytes > this.maxMessageBytes) this.ended = 'too-large';
      this.continues = length === MAX_PAYLOAD;
      this.remaining = length;
    }
  }

  /** Bytes (header or body) needed before the next packet starts. */
  get owed(): number {
    return this.headerFilled > 0 ? 4 - this.headerFilled : this.remaining;
  }
}
