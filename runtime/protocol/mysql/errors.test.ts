import { ProxyError } from '../../errors';
import { MysqlError } from './constants';
import { MysqlCodedError, MysqlServerError, isFatalForMysqlClient, mysqlErrPayload, mysqlErrorFields } from './errors';
import { parseErrPacket } from './packets';

describe('proxy errors as MySQL ERR packets', () => {
  test.each([
    ['AUTH_FAILED', 1045, '28000'],
    ['BORROW_TIMEOUT', 9501, 'HY000'],
    ['MESSAGE_TOO_LARGE', 1153, '08S01'],
    ['IDLE_TIMEOUT', 4031, 'HY000'],
    ['SHUTTING_DOWN', 1053, '08S01'],
    ['INTERNAL', 1105, 'HY000'],
  ] as const)('%s → %i (%s)', (code, errno, sqlState) => {
    const packet = parseErrPacket(mysqlErrPayload(new ProxyError(code, 'message text')));
    expect(packet).toEqual({ code: errno, sqlState, message: 'message text' });
  });

  test('a borrow timeout leaves the session usable; an auth failure ends it', () => {
    expect(isFatalForMysqlClient(new ProxyError('BORROW_TIMEOUT', 'x'))).toBe(false);
    expect(isFatalForMysqlClient(new ProxyError('AUTH_FAILED', 'x'))).toBe(true);
  });

  test('protocol violations before login are "Bad handshake"', () => {
    expect(mysqlErrorFields(new ProxyError('PROTOCOL_VIOLATION', 'x'), { duringLogin: true }).code).toBe(1043);
    expect(mysqlErrorFields(new ProxyError('PROTOCOL_VIOLATION', 'x')).code).toBe(1835);
  });

  test('the database’s own error and chosen codes pass through', () => {
    expect(mysqlErrorFields(new MysqlServerError('SERVER_CONNECT_FAILED', 1049, '42000', "Unknown database 'x'"))).toEqual({ code: 1049, sqlState: '42000', message: "Unknown database 'x'" });
    expect(mysqlErrorFields(new MysqlCodedError('FEATURE_NOT_SUPPORTED', MysqlError.ER_WRONG_VALUE_FOR_VAR, 'ucs2')).code).toBe(1231);
  });
});
