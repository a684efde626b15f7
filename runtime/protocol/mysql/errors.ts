/**
 * The one place where proxy errors become MySQL ERR packets (error number, SQL state,
 * message), following RDS Proxy's troubleshooting table where it names a code:
 *
 * - AUTH_FAILED: 1045 (28000), "Access denied for user 'x'@'%' (using password: YES|NO)",
 *   the same for unknown users and wrong passwords (the session builds the message).
 * - TLS_REQUIRED: 3159 (HY000), "This Tidepool proxy requires TLS connections".
 * - BORROW_TIMEOUT: 9501 (HY000), "Timed-out waiting to acquire database connection".
 * - PROTOCOL_VIOLATION: 1835 (HY000) malformed packet; 1043 (08S01) before login.
 * - MESSAGE_TOO_LARGE: 1153 (08S01), as a server past max_allowed_packet.
 * - IDLE_TIMEOUT: 4031 (HY000), MySQL 8's inactivity disconnect.
 * - LOGIN_TIMEOUT: 1043 (08S01) bad handshake.
 * - SERVER_CONNECTION_LOST: 1317 (70100) "query execution was interrupted": the statement is gone, the
 *   session goes on. Not 2013: that is a client-side number (CR_SERVER_LOST), and libmariadb reports a
 *   server-sent 2xxx as a malformed packet (2027).
 * - SERVER_CONNECT_FAILED: the database's own error when it gave one (e.g. 1049 unknown
 *   database), else 1105.
 * - SHUTTING_DOWN: 1053 (08S01) server shutdown in progress.
 * - FEATURE_NOT_SUPPORTED: 1235 (42000).
 * - INTERNAL and anything else: 1105 (HY000) unknown error.
 */
import { ProxyError, ProxyErrorCode } from '../../errors';
import { MysqlError } from './constants';
import { encodeErrPacket } from './packets';

interface Mapping {
  code: number;
  sqlState: string;
  /** The client's connection ends after this error. */
  fatal: boolean;
}

const MAPPINGS: Record<ProxyErrorCode, Mapping> = {
  AUTH_FAILED: { code: 1045, sqlState: '28000', fatal: true },
  TLS_REQUIRED: { code: 3159, sqlState: 'HY000', fatal: true },
  BORROW_TIMEOUT: { code: 9501, sqlState: 'HY000', fatal: false },
  PROTOCOL_VIOLATION: { code: 1835, sqlState: 'HY000', fatal: true },
  MESSAGE_TOO_LARGE: { code: 1153, sqlState: '08S01', fatal: true },
  IDLE_TIMEOUT: { code: 4031, sqlState: 'HY000', fatal: true },
  LOGIN_TIMEOUT: { code: 1043, sqlState: '08S01', fatal: true },
  SERVER_CONNECTION_LOST: { code: 1317, sqlState: '70100', fatal: false },
  SERVER_CONNECT_FAILED: { code: 1105, sqlState: 'HY000', fatal: false },
  SHUTTING_DOWN: { code: 1053, sqlState: '08S01', fatal: true },
  FEATURE_NOT_SUPPORTED: { code: 1235, sqlState: '42000', fatal: false },
  INTERNAL: { code: 1105, sqlState: 'HY000', fatal: false },
  CLIENT_LIMIT: { code: 1040, sqlState: 'HY000', fatal: true },
};

/** A database's own ERR (from a server connection's login or the proxy's own queries), passed through as is. */
export class MysqlServerError extends ProxyError {
  constructor(
    code: ProxyErrorCode,
    readonly mysqlCode: number,
    readonly mysqlSqlState: string | undefined,
    message: string,
  ) {
    super(code, message, { sqlState: mysqlSqlState, message });
  }
}

/** A proxy error with a MySQL error number of its own choosing (1231 for a bad client charset, 1047…). */
export class MysqlCodedError extends ProxyError {
  constructor(
    code: ProxyErrorCode,
    readonly definition: { code: number; sqlState: string },
    message: string,
  ) {
    super(code, message);
  }
}

export function isFatalForMysqlClient(error: ProxyError): boolean {
  return MAPPINGS[error.code].fatal;
}

export interface MysqlErrorFields {
  code: number;
  sqlState: string;
  message: string;
}

export function mysqlErrorFields(error: ProxyError, options: { duringLogin?: boolean } = {}): MysqlErrorFields {
  if (error instanceof MysqlServerError) {
    return { code: error.mysqlCode, sqlState: error.mysqlSqlState ?? 'HY000', message: error.message };
  }
  if (error instanceof MysqlCodedError) {
    return { code: error.definition.code, sqlState: error.definition.sqlState, message: error.message };
  }
  if (error.code === 'PROTOCOL_VIOLATION' && options.duringLogin) {
    return { code: MysqlError.ER_HANDSHAKE_ERROR.code, sqlState: MysqlError.ER_HANDSHAKE_ERROR.sqlState, message: error.message };
  }
  const mapping = MAPPINGS[error.code];
  return { code: mapping.code, sqlState: mapping.sqlState, message: error.message };
}

/** The ERR payload (without packet header) for a proxy error. */
export function mysqlErrPayload(error: ProxyError, options: { duringLogin?: boolean } = {}): Buffer {
  return encodeErrPacket(mysqlErrorFields(error, options));
}
