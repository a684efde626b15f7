/**
 * The one place where proxy errors become PostgreSQL ErrorResponse fields.
 *
 * SQLSTATE choices (documented in the README):
 * - AUTH_FAILED: 28P01, the same message for unknown users and wrong passwords.
 * - TLS_REQUIRED: 28000, "This Tidepool proxy requires TLS connections".
 * - BORROW_TIMEOUT: 53300 (too_many_connections): the pool stayed full for connectionBorrowTimeout.
 * - PROTOCOL_VIOLATION / MESSAGE_TOO_LARGE: 08P01, as PostgreSQL reports broken framing.
 * - IDLE_TIMEOUT: 57P05, PostgreSQL's own idle_session_timeout code.
 * - SERVER_CONNECTION_LOST: 08006; SERVER_CONNECT_FAILED: the database's own code when it gave one, else 08001.
 * - SHUTTING_DOWN: 57P01 (admin_shutdown).
 * - CLIENT_LIMIT: 53300 (too_many_connections): limits.maxClientConnections or clientConnectionsPerSecond.
 */
import type { ProxyError, ProxyErrorCode } from '../../errors';
import type { ErrorFields } from './messages';

interface Mapping {
  sqlState: string;
  /** FATAL errors end the client's connection; ERROR leaves it usable. */
  fatal: boolean;
}

const MAPPINGS: Record<ProxyErrorCode, Mapping> = {
  AUTH_FAILED: { sqlState: '28P01', fatal: true },
  TLS_REQUIRED: { sqlState: '28000', fatal: true },
  BORROW_TIMEOUT: { sqlState: '53300', fatal: false },
  PROTOCOL_VIOLATION: { sqlState: '08P01', fatal: true },
  MESSAGE_TOO_LARGE: { sqlState: '08P01', fatal: true },
  IDLE_TIMEOUT: { sqlState: '57P05', fatal: true },
  LOGIN_TIMEOUT: { sqlState: '08006', fatal: true },
  SERVER_CONNECTION_LOST: { sqlState: '08006', fatal: false },
  SERVER_CONNECT_FAILED: { sqlState: '08001', fatal: false },
  SHUTTING_DOWN: { sqlState: '57P01', fatal: true },
  FEATURE_NOT_SUPPORTED: { sqlState: '0A000', fatal: true },
  INTERNAL: { sqlState: 'XX000', fatal: false },
  CLIENT_LIMIT: { sqlState: '53300', fatal: true },
};

export function isFatalForClient(error: ProxyError): boolean {
  return MAPPINGS[error.code].fatal;
}

export function pgErrorFields(error: ProxyError, options: { duringStartup?: boolean } = {}): ErrorFields {
  const mapping = MAPPINGS[error.code];
  const fatal = mapping.fatal || options.duringStartup === true;
  // A database's own code passes through (e.g. 3D000 for an unknown database), and so does
  // a more precise code the session chose (08007 for a COMMIT whose outcome is unknown).
  const sqlState =
    (error.code === 'SERVER_CONNECT_FAILED' || error.code === 'SERVER_CONNECTION_LOST') && error.serverDetail?.sqlState
      ? error.serverDetail.sqlState
      : mapping.sqlState;
  return { severity: fatal ? 'FATAL' : 'ERROR', sqlState, message: error.message };
}
