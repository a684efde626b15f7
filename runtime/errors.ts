/**
 * Typed proxy errors with stable codes. Each protocol maps a code to its own wire form
 * (SQLSTATE + message for PostgreSQL, error number + SQL state for MySQL) in exactly one
 * place; the code is what logs and metrics record.
 */
export type ProxyErrorCode =
  /** Unknown user or wrong password. The message never tells which. */
  | 'AUTH_FAILED'
  /** The proxy requires TLS and the client did not use it. */
  | 'TLS_REQUIRED'
  /** No server connection became available within connectionBorrowTimeout. */
  | 'BORROW_TIMEOUT'
  /** The client broke the wire protocol (bad length, unknown message, wrong state). */
  | 'PROTOCOL_VIOLATION'
  /** A client message exceeded limits.maxMessageBytes. */
  | 'MESSAGE_TOO_LARGE'
  /** The client stayed idle longer than idleClientTimeout. */
  | 'IDLE_TIMEOUT'
  /** The client took longer than limits.loginTimeout to authenticate. */
  | 'LOGIN_TIMEOUT'
  /** The server connection died while serving this client. */
  | 'SERVER_CONNECTION_LOST'
  /** The proxy could not open a server connection (unreachable, refused, auth rejected by the database). */
  | 'SERVER_CONNECT_FAILED'
  /** The proxy is shutting down. */
  | 'SHUTTING_DOWN'
  /** A feature the client asked for is not supported (e.g. a protocol version). */
  | 'FEATURE_NOT_SUPPORTED'
  /** Too many client connections, or too many new ones per second. */
  | 'CLIENT_LIMIT'
  /** Anything unexpected: a bug, reported without internals. */
  | 'INTERNAL';

export class ProxyError extends Error {
  constructor(
    readonly code: ProxyErrorCode,
    message: string,
    /** A database's own error to pass through verbatim, when there is one. */
    readonly serverDetail?: { sqlState?: string; message?: string },
    /**
     * The target could not be reached or is changing roles (a failover, a restart): worth
     * waiting for, up to connectionBorrowTimeout, rather than failing the client at once.
     */
    readonly transient = false,
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

export function isProxyError(error: unknown): error is ProxyError {
  return error instanceof ProxyError;
}

/** Wraps anything thrown into a ProxyError, keeping typed ones as they are. */
export function toProxyError(error: unknown): ProxyError {
  if (error instanceof ProxyError) return error;
  return new ProxyError('INTERNAL', error instanceof Error ? error.message : String(error));
}
