/**
 * Numbers of the MySQL client/server protocol (4.1 and later, as spoken by MySQL 5.7/8.x
 * and MariaDB 10.6+) that the proxy reads, writes or reasons about. Plain `as const`
 * objects rather than `const enum`s: ts-jest compiles files in isolation, where const
 * enums imported from another module do not inline.
 *
 * Sources: MySQL's include/mysql_com.h and my_command.h, the MySQL "Client/Server
 * Protocol" pages (Protocol::HandshakeV10, OK_Packet, Session State Information) and
 * MariaDB's protocol pages (extended capabilities, COM_STMT_EXECUTE).
 */

/* ------------------------------------------------------------------------------------ */
/* Packet framing                                                                        */
/* ------------------------------------------------------------------------------------ */

/** Bytes of the packet header: int<3> payload length + int<1> sequence id. */
export const PACKET_HEADER_LENGTH = 4;
/**
 * The largest payload one physical packet carries (2^24 − 1). A payload of this size means
 * "more follows": a logical payload of N ≥ 0xFFFFFF bytes travels as max-size packets
 * followed by one shorter packet, which is empty when N is a multiple of 0xFFFFFF.
 */
export const MAX_PACKET_PAYLOAD_LENGTH = 0xffffff;

/* ------------------------------------------------------------------------------------ */
/* Capability flags (int<4> in the handshake; MariaDB adds 32 more bits, see below)      */
/* ------------------------------------------------------------------------------------ */

export const CapabilityFlag = {
  /** Old "long password" flag. MariaDB reads it as CLIENT_MYSQL: unset means the peer speaks the MariaDB extensions. */
  CLIENT_LONG_PASSWORD: 0x00000001,
  /** affected_rows counts found (matched) rows instead of changed rows; changes OK-packet semantics, so pooled connections must match. */
  CLIENT_FOUND_ROWS: 0x00000002,
  CLIENT_LONG_FLAG: 0x00000004,
  /** The handshake response carries an initial database. */
  CLIENT_CONNECT_WITH_DB: 0x00000008,
  CLIENT_NO_SCHEMA: 0x00000010,
  /** Compressed protocol: the proxy does not advertise it (RDS Proxy does not support it either). */
  CLIENT_COMPRESS: 0x00000020,
  CLIENT_ODBC: 0x00000040,
  /** LOAD DATA LOCAL INFILE is allowed: the server may answer a query with a 0xFB file request. */
  CLIENT_LOCAL_FILES: 0x00000080,
  CLIENT_IGNORE_SPACE: 0x00000100,
  /** The 4.1 protocol; the proxy refuses clients without it. */
  CLIENT_PROTOCOL_41: 0x00000200,
  CLIENT_INTERACTIVE: 0x00000400,
  /** The client wants TLS: it sends the 32-byte SSLRequest and then the handshake response over TLS. */
  CLIENT_SSL: 0x00000800,
  CLIENT_IGNORE_SIGPIPE: 0x00001000,
  /** OK packets carry status flags (always with 4.1). */
  CLIENT_TRANSACTIONS: 0x00002000,
  CLIENT_RESERVED: 0x00004000,
  /** 4.1 authentication: the auth response is length-prefixed (int<1>) instead of NUL-terminated. */
  CLIENT_SECURE_CONNECTION: 0x00008000,
  CLIENT_MULTI_STATEMENTS: 0x00010000,
  /** The client understands SERVER_MORE_RESULTS_EXISTS (multi-statements, CALL). */
  CLIENT_MULTI_RESULTS: 0x00020000,
  /** Same for COM_STMT_EXECUTE of a CALL. */
  CLIENT_PS_MULTI_RESULTS: 0x00040000,
  /** The handshake names an authentication plugin. */
  CLIENT_PLUGIN_AUTH: 0x00080000,
  /** The handshake response carries connection attributes. */
  CLIENT_CONNECT_ATTRS: 0x00100000,
  /** The auth response is a length-encoded string (may exceed 255 bytes). */
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: 0x00200000,
  CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS: 0x00400000,
  /** OK packets may carry session-state-change information (the proxy's source of truth for tracked state). */
  CLIENT_SESSION_TRACK: 0x00800000,
  /** No EOF packets: metadata is not followed by EOF and result sets end with an OK packet whose header is 0xFE. */
  CLIENT_DEPRECATE_EOF: 0x01000000,
  CLIENT_OPTIONAL_RESULTSET_METADATA: 0x02000000,
  CLIENT_ZSTD_COMPRESSION_ALGORITHM: 0x04000000,
  /** COM_QUERY / COM_STMT_EXECUTE carry query attributes (changes their layout). */
  CLIENT_QUERY_ATTRIBUTES: 0x08000000,
  MULTI_FACTOR_AUTHENTICATION: 0x10000000,
  CLIENT_CAPABILITY_EXTENSION: 0x20000000,
  CLIENT_SSL_VERIFY_SERVER_CERT: 0x40000000,
  /** Bit 31: compare with hasCapability(), as `flags & 0x80000000` is negative in JavaScript. */
  CLIENT_REMEMBER_OPTIONS: 0x80000000,
} as const;

/**
 * MariaDB's extended capabilities: bits 32..63, carried in the last 4 bytes of the
 * handshake's reserved filler when CLIENT_LONG_PASSWORD (CLIENT_MYSQL) is unset. Given
 * here as the 32-bit value of those 4 bytes.
 */
export const MariadbExtendedCapability = {
  MARIADB_CLIENT_PROGRESS: 0x00000001,
  MARIADB_CLIENT_COM_MULTI: 0x00000002,
  MARIADB_CLIENT_STMT_BULK_OPERATIONS: 0x00000004,
  MARIADB_CLIENT_EXTENDED_METADATA: 0x00000008,
  /** Result-set metadata may be skipped on COM_STMT_EXECUTE: the proxy must not negotiate it (the response tracker does not model it). */
  MARIADB_CLIENT_CACHE_METADATA: 0x00000010,
  MARIADB_CLIENT_BULK_UNIT_RESULTS: 0x00000020,
} as const;

/** True when `flag` is set in `flags`; safe for bit 31 too. */
export function hasCapability(flags: number, flag: number): boolean {
  return (flags & flag) !== 0;
}

/* ------------------------------------------------------------------------------------ */
/* Server status flags (int<2> in OK and EOF packets)                                    */
/* ------------------------------------------------------------------------------------ */

export const ServerStatus = {
  /** A transaction is open: the server connection must stay with its client. */
  SERVER_STATUS_IN_TRANS: 0x0001,
  SERVER_STATUS_AUTOCOMMIT: 0x0002,
  /** Another result follows this OK/EOF (multi-statements, CALL): the response is not complete yet. */
  SERVER_MORE_RESULTS_EXISTS: 0x0008,
  SERVER_QUERY_NO_GOOD_INDEX_USED: 0x0010,
  SERVER_QUERY_NO_INDEX_USED: 0x0020,
  /** A COM_STMT_EXECUTE opened a cursor (or a COM_STMT_FETCH left rows): more COM_STMT_FETCH may follow. */
  SERVER_STATUS_CURSOR_EXISTS: 0x0040,
  /** A COM_STMT_FETCH read the cursor to its end. */
  SERVER_STATUS_LAST_ROW_SENT: 0x0080,
  SERVER_STATUS_DB_DROPPED: 0x0100,
  /** sql_mode contains NO_BACKSLASH_ESCAPES: backslashes in string literals are literal. */
  SERVER_STATUS_NO_BACKSLASH_ESCAPES: 0x0200,
  SERVER_STATUS_METADATA_CHANGED: 0x0400,
  SERVER_QUERY_WAS_SLOW: 0x0800,
  SERVER_PS_OUT_PARAMS: 0x1000,
  SERVER_STATUS_IN_TRANS_READONLY: 0x2000,
  /** The OK packet carries session-state-change information. */
  SERVER_SESSION_STATE_CHANGED: 0x4000,
} as const;

/* ------------------------------------------------------------------------------------ */
/* Commands (first byte of a command-phase payload)                                      */
/* ------------------------------------------------------------------------------------ */

export const Command = {
  COM_SLEEP: 0x00,
  /** No response; the server closes the connection. */
  COM_QUIT: 0x01,
  /** Payload: the schema name (rest of packet). Response: OK/ERR. */
  COM_INIT_DB: 0x02,
  /** Text query. Response: OK, ERR, LOCAL INFILE request or a text result set (possibly several). */
  COM_QUERY: 0x03,
  /** Deprecated. Response: column definitions then EOF, or ERR. */
  COM_FIELD_LIST: 0x04,
  COM_CREATE_DB: 0x05,
  COM_DROP_DB: 0x06,
  COM_REFRESH: 0x07,
  COM_SHUTDOWN: 0x08,
  /** Response: one human-readable string packet (not an OK packet). */
  COM_STATISTICS: 0x09,
  COM_PROCESS_INFO: 0x0a,
  COM_CONNECT: 0x0b,
  COM_PROCESS_KILL: 0x0c,
  COM_DEBUG: 0x0d,
  COM_PING: 0x0e,
  COM_TIME: 0x0f,
  COM_DELAYED_INSERT: 0x10,
  /** Re-authenticates and resets the session; may involve an auth switch exchange. */
  COM_CHANGE_USER: 0x11,
  COM_BINLOG_DUMP: 0x12,
  COM_TABLE_DUMP: 0x13,
  COM_CONNECT_OUT: 0x14,
  COM_REGISTER_SLAVE: 0x15,
  /** Response: COM_STMT_PREPARE_OK + parameter and column definitions, or ERR. */
  COM_STMT_PREPARE: 0x16,
  /** Response: OK, ERR or binary result set(s); with a cursor only the metadata. */
  COM_STMT_EXECUTE: 0x17,
  /** No response. */
  COM_STMT_SEND_LONG_DATA: 0x18,
  /** No response. */
  COM_STMT_CLOSE: 0x19,
  COM_STMT_RESET: 0x1a,
  /** Turns multi-statements on/off for the session. Response: EOF (older servers) or OK, or ERR. */
  COM_SET_OPTION: 0x1b,
  /** Response: binary rows then EOF/OK, or ERR. */
  COM_STMT_FETCH: 0x1c,
  COM_DAEMON: 0x1d,
  COM_BINLOG_DUMP_GTID: 0x1e,
  /** Resets session state without re-authenticating (MySQL 5.7.3+, MariaDB 10.2.4+). Response: OK/ERR. */
  COM_RESET_CONNECTION: 0x1f,
  COM_CLONE: 0x20,
  COM_SUBSCRIBE_GROUP_REPLICATION_STREAM: 0x21,
  /** MariaDB bulk execution; never negotiated by the proxy. */
  COM_STMT_BULK_EXECUTE: 0xfa,
} as const;

/** COM_STMT_EXECUTE flags byte (cursor type). */
export const CursorType = {
  CURSOR_TYPE_NO_CURSOR: 0x00,
  CURSOR_TYPE_READ_ONLY: 0x01,
  CURSOR_TYPE_FOR_UPDATE: 0x02,
  CURSOR_TYPE_SCROLLABLE: 0x04,
  /** MySQL 8.0.26+ with CLIENT_QUERY_ATTRIBUTES: a parameter count follows. */
  PARAMETER_COUNT_AVAILABLE: 0x08,
} as const;

/** COM_SET_OPTION argument (int<2>). */
export const SetOption = {
  MYSQL_OPTION_MULTI_STATEMENTS_ON: 0,
  MYSQL_OPTION_MULTI_STATEMENTS_OFF: 1,
} as const;

/* ------------------------------------------------------------------------------------ */
/* Response headers (first payload byte)                                                 */
/* ------------------------------------------------------------------------------------ */

export const ResponseHeader = {
  OK: 0x00,
  /** Auth phase only: AuthMoreData. */
  AUTH_MORE_DATA: 0x01,
  /** In a COM_QUERY response: LOAD DATA LOCAL INFILE request. (In a row: a NULL column.) */
  LOCAL_INFILE: 0xfb,
  /** EOF (payload < 9 bytes), an OK packet under CLIENT_DEPRECATE_EOF, or in the auth phase AuthSwitchRequest. */
  EOF: 0xfe,
  ERR: 0xff,
} as const;

/** An EOF packet is 0xFE + warnings<2> + status<2> (5 bytes); anything shorter than 9 bytes starting with 0xFE is one. */
export const EOF_PACKET_MAX_PAYLOAD_LENGTH = 8;

/* ------------------------------------------------------------------------------------ */
/* Session state tracking (types in the OK packet's session-state-change block)          */
/* ------------------------------------------------------------------------------------ */

export const SessionTrackType = {
  /** Data: lenenc name, lenenc value. Enabled by session_track_system_variables. */
  SESSION_TRACK_SYSTEM_VARIABLES: 0x00,
  /** Data: lenenc schema name. Enabled by session_track_schema. */
  SESSION_TRACK_SCHEMA: 0x01,
  /** Data: lenenc "1": some untracked session state changed (user variable, temporary table, prepared statement…). */
  SESSION_TRACK_STATE_CHANGE: 0x02,
  /** Data: int<1> encoding specification (0), lenenc GTID set. */
  SESSION_TRACK_GTIDS: 0x03,
  /** Data: lenenc SQL that would replay the transaction characteristics (e.g. "SET TRANSACTION READ ONLY;"). */
  SESSION_TRACK_TRANSACTION_CHARACTERISTICS: 0x04,
  /** Data: lenenc 8-character transaction state string (e.g. "T_R_____"). */
  SESSION_TRACK_TRANSACTION_STATE: 0x05,
} as const;

/* ------------------------------------------------------------------------------------ */
/* Authentication                                                                        */
/* ------------------------------------------------------------------------------------ */

export const AuthPlugin = {
  MYSQL_NATIVE_PASSWORD: 'mysql_native_password',
  CACHING_SHA2_PASSWORD: 'caching_sha2_password',
  MYSQL_CLEAR_PASSWORD: 'mysql_clear_password',
  SHA256_PASSWORD: 'sha256_password',
} as const;

/** Bytes after the 0x01 AuthMoreData header in the caching_sha2_password exchange. */
export const CachingSha2Byte = {
  /** Client → server: "send me your RSA public key". */
  REQUEST_PUBLIC_KEY: 0x02,
  /** Server → client: the scramble matched the cache; an OK packet follows. */
  FAST_AUTH_SUCCESS: 0x03,
  /** Server → client: send the password in full (clear text over TLS, RSA-encrypted otherwise). */
  PERFORM_FULL_AUTHENTICATION: 0x04,
} as const;

/** Length of the authentication scramble (nonce) in the handshake. */
export const SCRAMBLE_LENGTH = 20;

/** The protocol version byte of Handshake V10. */
export const PROTOCOL_VERSION_10 = 10;

/* ------------------------------------------------------------------------------------ */
/* Error codes the proxy sends or reacts to                                              */
/* ------------------------------------------------------------------------------------ */

export interface MysqlErrorDefinition {
  readonly code: number;
  readonly sqlState: string;
  /** The server's message (a printf-style template where it has arguments). */
  readonly message: string;
}

export const MysqlError = {
  /** Client connection limit reached (the proxy's maxConnections / client limits). */
  ER_CON_COUNT_ERROR: { code: 1040, sqlState: '08004', message: 'Too many connections' },
  ER_HANDSHAKE_ERROR: { code: 1043, sqlState: '08S01', message: 'Bad handshake' },
  ER_DBACCESS_DENIED_ERROR: { code: 1044, sqlState: '42000', message: "Access denied for user '%s'@'%s' to database '%s'" },
  /** Unknown user or wrong password: the same message for both. See accessDeniedMessage(). */
  ER_ACCESS_DENIED_ERROR: { code: 1045, sqlState: '28000', message: "Access denied for user '%s'@'%s' (using password: %s)" },
  ER_NO_DB_ERROR: { code: 1046, sqlState: '3D000', message: 'No database selected' },
  /** A command the proxy does not relay (replication, COM_BINLOG_DUMP…). */
  ER_UNKNOWN_COM_ERROR: { code: 1047, sqlState: '08S01', message: 'Unknown command' },
  ER_BAD_DB_ERROR: { code: 1049, sqlState: '42000', message: "Unknown database '%s'" },
  ER_SERVER_SHUTDOWN: { code: 1053, sqlState: '08S01', message: 'Server shutdown in progress' },
  /** Anything unexpected inside the proxy. */
  ER_UNKNOWN_ERROR: { code: 1105, sqlState: 'HY000', message: 'Unknown error' },
  ER_UNKNOWN_CHARACTER_SET: { code: 1115, sqlState: '42000', message: "Unknown character set: '%s'" },
  /** A client packet exceeded the proxy's packet limit. */
  ER_NET_PACKET_TOO_LARGE: { code: 1153, sqlState: '08S01', message: "Got a packet bigger than 'max_allowed_packet' bytes" },
  ER_NET_PACKETS_OUT_OF_ORDER: { code: 1156, sqlState: '08S01', message: 'Got packets out of order' },
  ER_NET_READ_ERROR: { code: 1158, sqlState: '08S01', message: 'Got an error reading communication packets' },
  ER_NET_READ_INTERRUPTED: { code: 1159, sqlState: '08S01', message: 'Got timeout reading communication packets' },
  ER_TOO_MANY_USER_CONNECTIONS: { code: 1203, sqlState: '42000', message: "User %s already has more than 'max_user_connections' active connections" },
  ER_LOCK_WAIT_TIMEOUT: { code: 1205, sqlState: 'HY000', message: 'Lock wait timeout exceeded; try restarting transaction' },
  ER_LOCK_DEADLOCK: { code: 1213, sqlState: '40001', message: 'Deadlock found when trying to get lock; try restarting transaction' },
  /** E.g. a client asking for a character_set_client of ucs2/utf16/utf32. */
  ER_WRONG_VALUE_FOR_VAR: { code: 1231, sqlState: '42000', message: "Variable '%s' can't be set to the value of '%s'" },
  ER_NOT_SUPPORTED_YET: { code: 1235, sqlState: '42000', message: "This version of MySQL doesn't yet support '%s'" },
  ER_UNKNOWN_STMT_HANDLER: { code: 1243, sqlState: 'HY000', message: 'Unknown prepared statement handler (%s) given to %s' },
  ER_NOT_SUPPORTED_AUTH_MODE: { code: 1251, sqlState: '08004', message: 'Client does not support authentication protocol requested by server; consider upgrading MySQL client' },
  /** Server running with --read-only: a write reached a former writer (failover signal). */
  ER_OPTION_PREVENTS_STATEMENT: { code: 1290, sqlState: 'HY000', message: 'The MySQL server is running with the %s option so it cannot execute this statement' },
  ER_QUERY_INTERRUPTED: { code: 1317, sqlState: '70100', message: 'Query execution was interrupted' },
  ER_MALFORMED_PACKET: { code: 1835, sqlState: 'HY000', message: 'Malformed communication packet.' },
  /** requireTls and the client did not use TLS (MySQL's own wording for require_secure_transport). */
  ER_SECURE_TRANSPORT_REQUIRED: { code: 3159, sqlState: 'HY000', message: 'Connections using insecure transport are prohibited while --require_secure_transport=ON.' },
  /** MySQL 8.0.24+ sends this before closing an idle connection (idleClientTimeout). */
  ER_CLIENT_INTERACTION_TIMEOUT: { code: 4031, sqlState: 'HY000', message: 'The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior.' },
  /** RDS Proxy's own code: no server connection within ConnectionBorrowTimeout. */
  PROXY_BORROW_TIMEOUT: { code: 9501, sqlState: 'HY000', message: 'Timed-out waiting to acquire database connection' },
} as const satisfies Record<string, MysqlErrorDefinition>;

/** The exact ER_ACCESS_DENIED_ERROR text MySQL sends, e.g. `Access denied for user 'x'@'%' (using password: YES)`. */
export function accessDeniedMessage(user: string, host: string, usingPassword: boolean): string {
  return `Access denied for user '${user}'@'${host}' (using password: ${usingPassword ? 'YES' : 'NO'})`;
}

/* ------------------------------------------------------------------------------------ */
/* Character sets (collation ids as carried in the handshake's 1-byte charset field)     */
/* ------------------------------------------------------------------------------------ */

export const CollationId = {
  BIG5_CHINESE_CI: 1,
  LATIN1_SWEDISH_CI: 8,
  ASCII_GENERAL_CI: 11,
  UJIS_JAPANESE_CI: 12,
  SJIS_JAPANESE_CI: 13,
  EUCKR_KOREAN_CI: 19,
  GB2312_CHINESE_CI: 24,
  GBK_CHINESE_CI: 28,
  /** utf8 (utf8mb3) — MySQL 5.x's "utf8". */
  UTF8MB3_GENERAL_CI: 33,
  UCS2_GENERAL_CI: 35,
  UTF8MB4_GENERAL_CI: 45,
  UTF8MB4_BIN: 46,
  LATIN1_BIN: 47,
  LATIN1_GENERAL_CI: 48,
  CP1251_GENERAL_CI: 51,
  UTF16_GENERAL_CI: 54,
  UTF16LE_GENERAL_CI: 56,
  UTF32_GENERAL_CI: 60,
  BINARY: 63,
  UTF8MB3_BIN: 83,
  CP932_JAPANESE_CI: 95,
  EUCJPMS_JAPANESE_CI: 97,
  UTF8MB3_UNICODE_CI: 192,
  UTF8MB4_UNICODE_CI: 224,
  UTF8MB4_UNICODE_520_CI: 246,
  /** MySQL 8.0's default collation. */
  UTF8MB4_0900_AI_CI: 255,
} as const;

interface CollationInfo {
  readonly collation: string;
  readonly charset: string;
}

const KNOWN_COLLATIONS: ReadonlyMap<number, CollationInfo> = new Map<number, CollationInfo>([
  [1, { collation: 'big5_chinese_ci', charset: 'big5' }],
  [8, { collation: 'latin1_swedish_ci', charset: 'latin1' }],
  [11, { collation: 'ascii_general_ci', charset: 'ascii' }],
  [12, { collation: 'ujis_japanese_ci', charset: 'ujis' }],
  [13, { collation: 'sjis_japanese_ci', charset: 'sjis' }],
  [19, { collation: 'euckr_korean_ci', charset: 'euckr' }],
  [24, { collation: 'gb2312_chinese_ci', charset: 'gb2312' }],
  [28, { collation: 'gbk_chinese_ci', charset: 'gbk' }],
  [33, { collation: 'utf8mb3_general_ci', charset: 'utf8mb3' }],
  [35, { collation: 'ucs2_general_ci', charset: 'ucs2' }],
  [45, { collation: 'utf8mb4_general_ci', charset: 'utf8mb4' }],
  [46, { collation: 'utf8mb4_bin', charset: 'utf8mb4' }],
  [47, { collation: 'latin1_bin', charset: 'latin1' }],
  [48, { collation: 'latin1_general_ci', charset: 'latin1' }],
  [51, { collation: 'cp1251_general_ci', charset: 'cp1251' }],
  [54, { collation: 'utf16_general_ci', charset: 'utf16' }],
  [55, { collation: 'utf16_bin', charset: 'utf16' }],
  [56, { collation: 'utf16le_general_ci', charset: 'utf16le' }],
  [60, { collation: 'utf32_general_ci', charset: 'utf32' }],
  [61, { collation: 'utf32_bin', charset: 'utf32' }],
  [62, { collation: 'utf16le_bin', charset: 'utf16le' }],
  [63, { collation: 'binary', charset: 'binary' }],
  [83, { collation: 'utf8mb3_bin', charset: 'utf8mb3' }],
  [90, { collation: 'ucs2_bin', charset: 'ucs2' }],
  [95, { collation: 'cp932_japanese_ci', charset: 'cp932' }],
  [97, { collation: 'eucjpms_japanese_ci', charset: 'eucjpms' }],
  [192, { collation: 'utf8mb3_unicode_ci', charset: 'utf8mb3' }],
  [224, { collation: 'utf8mb4_unicode_ci', charset: 'utf8mb4' }],
  [246, { collation: 'utf8mb4_unicode_520_ci', charset: 'utf8mb4' }],
  [255, { collation: 'utf8mb4_0900_ai_ci', charset: 'utf8mb4' }],
]);

/**
 * The character set of a collation id, or undefined when the id is not one the proxy
 * knows. Covers the whole ucs2/utf16/utf32 ranges (the unicode_* collations, 101–183)
 * so that impermissible client character sets are recognised whatever the collation.
 */
export function charsetOfCollationId(collationId: number): string | undefined {
  const known = KNOWN_COLLATIONS.get(collationId);
  if (known !== undefined) return known.charset;
  if ((collationId >= 128 && collationId <= 151) || collationId === 159) return 'ucs2';
  if (collationId >= 101 && collationId <= 124) return 'utf16';
  if (collationId >= 160 && collationId <= 183) return 'utf32';
  return undefined;
}

/** The collation name of a known id (e.g. 45 → "utf8mb4_general_ci"). */
export function collationNameOf(collationId: number): string | undefined {
  return KNOWN_COLLATIONS.get(collationId)?.collation;
}

/**
 * MySQL refuses these as character_set_client (their code units are not ASCII-compatible,
 * so SQL text could not be parsed); a handshake asking for one gets ER_WRONG_VALUE_FOR_VAR (1231).
 */
export function isImpermissibleClientCharset(collationId: number): boolean {
  const charset = charsetOfCollationId(collationId);
  return charset === 'ucs2' || charset === 'utf16' || charset === 'utf16le' || charset === 'utf32';
}
