/**
 * Property tests of the pure decoders against arbitrary and mutated bytes: a decoder may
 * reject input, but only with its protocol's typed error (which the sessions map to the
 * client's error packet), never with a TypeError/RangeError from reading past a buffer.
 */
import fc from 'fast-check';
import { decodeDataRow, decodeErrorFields, decodeParameterStatus, readCString, startupMessage } from './pg/messages';
import { classifySql } from './pg/pinning';
import { decodeStartupPacket, parseOptionsParameter } from './pg/startup';
import { MysqlProtocolError } from './mysql/framing';
import { CapabilityFlag } from './mysql/constants';
import {
  MysqlResponseTracker,
  encodeHandshakeResponse41,
  parseAuthSwitchRequest,
  parseChangeUser,
  parseErrPacket,
  parseHandshakeResponse,
  parseHandshakeV10,
  parseOkPacket,
  parsePrepareOk,
  parseSessionStateChanges,
  readStatementId,
} from './mysql/packets';
import { classifyMysqlSql } from './mysql/pinning';

const RUNS = { numRuns: 3000, seed: 20261126 };

/** Valid-looking starts with a random tail, or random bytes outright. */
function bytesAround(valid: Buffer[]): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.uint8Array({ maxLength: 96 }).map((bytes) => Buffer.from(bytes)),
    fc.tuple(fc.constantFrom(...valid), fc.nat(), fc.uint8Array({ maxLength: 16 }), fc.nat()).map(([base, cut, insert, at]) => {
      const head = base.subarray(0, cut % (base.length + 1));
      const position = at % (head.length + 1);
      return Buffer.concat([head.subarray(0, position), Buffer.from(insert), head.subarray(position)]);
    }),
  );
}

function onlyTypedErrors(run: () => unknown): void {
  try {
    run();
  } catch (error) {
    if (!(error instanceof MysqlProtocolError)) throw error;
  }
}

describe('PostgreSQL decoders never throw on bad bytes', () => {
  test('decodeStartupPacket (the framer guarantees at least 8 bytes)', () => {
    const valid = [startupMessage({ user: 'app', database: 'db', options: '-c a=b' })];
    fc.assert(
      fc.property(bytesAround(valid), (packet) => {
        if (packet.length < 8) return;
        decodeStartupPacket(packet);
      }),
      RUNS,
    );
  });

  test('ErrorResponse / ParameterStatus / DataRow bodies and C strings', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)), fc.nat(80), (body, offset) => {
        decodeErrorFields(body);
        decodeParameterStatus(body);
        readCString(body, offset);
        decodeDataRow(body);
      }),
      RUNS,
    );
  });

  test('SQL classification and the options parameter take any text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), fc.boolean(), (text, standardConformingStrings) => {
        classifySql(text, { excludeVariableSets: false, standardConformingStrings });
        parseOptionsParameter(text);
        classifyMysqlSql(text);
      }),
      { ...RUNS, numRuns: 800 },
    );
  });
});

describe('MySQL decoders reject bad bytes only with MysqlProtocolError', () => {
  const capabilities =
    CapabilityFlag.CLIENT_PROTOCOL_41 |
    CapabilityFlag.CLIENT_SECURE_CONNECTION |
    CapabilityFlag.CLIENT_PLUGIN_AUTH |
    CapabilityFlag.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA |
    CapabilityFlag.CLIENT_CONNECT_WITH_DB |
    CapabilityFlag.CLIENT_CONNECT_ATTRS |
    CapabilityFlag.CLIENT_SESSION_TRACK |
    CapabilityFlag.CLIENT_DEPRECATE_EOF;
  const handshakeResponse = encodeHandshakeResponse41({
    capabilityFlags: capabilities,
    characterSet: 45,
    username: 'app',
    authResponse: Buffer.alloc(20, 7),
    database: 'appdb',
    authPluginName: 'mysql_native_password',
    connectAttributes: new Map([['_client_name', 'fuzz']]),
  });

  test('client packets: handshake response, COM_CHANGE_USER, statement ids', () => {
    fc.assert(
      fc.property(bytesAround([handshakeResponse, Buffer.concat([Buffer.from([0x11]), Buffer.from('app\0'), Buffer.from([20]), Buffer.alloc(20), Buffer.from('appdb\0')])]), fc.integer(), (payload, flags) => {
        onlyTypedErrors(() => parseHandshakeResponse(payload));
        onlyTypedErrors(() => parseChangeUser(payload, capabilities));
        onlyTypedErrors(() => parseChangeUser(payload, flags >>> 0));
        onlyTypedErrors(() => readStatementId(payload));
      }),
      RUNS,
    );
  });

  test('server packets: handshake, OK/ERR, prepare OK, auth switch, session state', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }).map((bytes) => Buffer.from(bytes)), (payload) => {
        onlyTypedErrors(() => parseHandshakeV10(payload));
        onlyTypedErrors(() => parseOkPacket(payload, capabilities));
        onlyTypedErrors(() => parseErrPacket(payload));
        onlyTypedErrors(() => parsePrepareOk(payload));
        onlyTypedErrors(() => parseAuthSwitchRequest(payload));
        onlyTypedErrors(() => parseSessionStateChanges(payload));
      }),
      RUNS,
    );
  });

  test('the response tracker fed any command and any response packets', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 24 }).map((bytes) => Buffer.from(bytes)),
        fc.array(fc.uint8Array({ maxLength: 24 }).map((bytes) => Buffer.from(bytes)), { maxLength: 8 }),
        (command, responses) => {
          onlyTypedErrors(() => {
            const tracker = new MysqlResponseTracker(capabilities).start(command[0]!, command);
            for (const response of responses) {
              if (tracker.isComplete) break;
              tracker.feed(response);
            }
          });
        },
      ),
      RUNS,
    );
  });
});
