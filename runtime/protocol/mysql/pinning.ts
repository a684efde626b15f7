/**
 * Classifies MySQL SQL text for pinning, per the spec's list for MySQL/MariaDB:
 *
 * - user variables: `SET @x = …`, `SELECT … INTO @x`, `@x := …` anywhere;
 * - `SET` of system variables the proxy does not track (tracked ones — character_set_*,
 *   collation_connection, NAMES, CHARACTER SET, time_zone, autocommit, sql_mode,
 *   session_track_schema — come back as `trackedSets` instead of a pin);
 * - `LOCK TABLES` / `FLUSH TABLES … WITH READ LOCK` (until `UNLOCK TABLES`, reported as
 *   `unlockTables`), and the other lock holders `FLUSH TABLES … FOR EXPORT` and
 *   `LOCK INSTANCE FOR BACKUP`;
 * - `GET_LOCK()`, `CREATE TEMPORARY TABLE`, text `PREPARE`, `SQL_CALC_FOUND_ROWS` /
 *   `FOUND_ROWS()`, `LAST_INSERT_ID()` (and `@@identity`);
 * - statements over 16 KB, `/*! … *\/` and `/*M! … *\/` version comments (what runs
 *   inside depends on the server version, so the proxy does not guess);
 * - `SET TRANSACTION …` (applies to the next transaction, which may otherwise start on
 *   another server connection).
 *
 * With `excludeVariableSets` (RDS Proxy's EXCLUDE_VARIABLE_SETS) no SET statement pins;
 * `SELECT … INTO @x` and `:=` still do.
 *
 * Stored routines are not looked into (RDS Proxy's behaviour): a `CREATE PROCEDURE/
 * FUNCTION/TRIGGER/EVENT` body is not classified. Session state changed inside routines
 * is caught by the server's session trackers instead.
 *
 * The hot path is the pre-filter: one regular expression over the text; when no trigger
 * word occurs, the shared empty result is returned without lexing. Otherwise a small
 * hand-written lexer skips strings ('…' and "…" with backslash escapes unless
 * NO_BACKSLASH_ESCAPES), `…` identifiers and comments (#, -- , /* *\/), so lookalikes in
 * literals and comments do not pin.
 */

export type MysqlPinReason =
  | 'user-variable'
  | 'system-variable'
  | 'set-transaction'
  | 'table-lock'
  | 'get-lock'
  | 'temporary-table'
  | 'text-prepare'
  | 'found-rows'
  | 'last-insert-id'
  | 'statement-too-large'
  | 'version-comment'
  /**
   * Not from the SQL text: the server's session_track_state_change reported a change the
   * proxy does not track (e.g. a stored procedure set a user variable or made a temporary table).
   */
  | 'session-state-change';

const PIN_REASON_MESSAGES: Record<MysqlPinReason, string> = {
  'user-variable': 'The statement sets a user variable',
  'system-variable': "SQL changed session settings that the proxy doesn't track",
  'set-transaction': 'SET TRANSACTION applies to the next transaction',
  'table-lock': 'The statement locks tables (LOCK TABLES / FLUSH TABLES WITH READ LOCK)',
  'get-lock': 'The statement takes a named lock (GET_LOCK)',
  'temporary-table': 'The statement creates a temporary table',
  'text-prepare': 'The statement prepares a statement with text PREPARE',
  'found-rows': 'The statement uses SQL_CALC_FOUND_ROWS or FOUND_ROWS()',
  'last-insert-id': 'The statement reads or sets LAST_INSERT_ID()',
  'statement-too-large': 'The statement text is larger than 16 KB',
  'version-comment': 'The statement contains a /*! */ version comment',
  'session-state-change': 'The server reported a session state change the proxy does not track',
};

/** The log line text for a pin reason. */
export function describePinReason(reason: MysqlPinReason): string {
  return PIN_REASON_MESSAGES[reason];
}

/** A `SET` of a tracked session variable. */
export interface TrackedSet {
  /**
   * Lower-case variable name without scope (`sql_mode`, `time_zone`, `character_set_client`…),
   * or the statement forms `names` and `character set`.
   */
  readonly name: string;
  /** The value: unquoted for a single literal; the expression text as written otherwise (e.g. `DEFAULT`, `CONCAT(@@sql_mode, ',X')`). */
  readonly value: string;
  /** True when `value` is a literal; false for expressions and DEFAULT (the server's tracker then tells the result). */
  readonly isLiteral: boolean;
}

export interface MysqlSqlClassification {
  /** Why the session must stay on its server connection; the first one found. */
  readonly pinReason?: MysqlPinReason;
  /** What triggered it (a variable name, a function, a keyword), for the pin log line. */
  readonly pinDetail?: string;
  /** SETs of tracked variables, in order. */
  readonly trackedSets?: readonly TrackedSet[];
  /** The text contains UNLOCK TABLES (ends a table-lock pin once the server acknowledged it). */
  readonly unlockTables?: true;
  /** `USE db` in a COM_QUERY: the schema it selects. */
  readonly useSchema?: string;
  /**
   * The whole text is `SELECT LAST_INSERT_ID()` (or `@@identity`, with an optional alias,
   * `FROM DUAL`, `LIMIT 1`): the proxy may answer it from the last OK packet instead of
   * pinning. `columnName` is the result column's name as MySQL would report it.
   */
  readonly lastInsertIdQuery?: { readonly columnName: string };
}

export interface MysqlClassifyOptions {
  /** RDS Proxy's EXCLUDE_VARIABLE_SETS: SET statements never pin. */
  excludeVariableSets?: boolean;
  /** The session's sql_mode has NO_BACKSLASH_ESCAPES (SERVER_STATUS_NO_BACKSLASH_ESCAPES): backslashes in strings are literal. */
  noBackslashEscapes?: boolean;
  /** Statements longer than this many UTF-8 bytes pin. Default 16384 (RDS Proxy's 16 KB). */
  maxStatementBytes?: number;
}

export const DEFAULT_MAX_UNPINNED_STATEMENT_BYTES = 16 * 1024;

/**
 * Session variables whose SET the proxy tracks instead of pinning (RDS Proxy's list:
 * character set, collation, time zone, autocommit, SQL mode, session_track_schema;
 * the current database is tracked through USE / COM_INIT_DB). Every character_set_*
 * variable counts too.
 */
export const TRACKED_SESSION_VARIABLES: ReadonlySet<string> = new Set([
  'names',
  'character set',
  'collation_connection',
  'time_zone',
  'autocommit',
  'sql_mode',
  'session_track_schema',
]);

export function isTrackedSessionVariable(name: string): boolean {
  return TRACKED_SESSION_VARIABLES.has(name) || name.startsWith('character_set_');
}

const NOTHING: MysqlSqlClassification = Object.freeze({});

/**
 * Words and marks that can make a statement pin or carry tracked state. Anything else is
 * answered without lexing. `set` also matches UPDATE … SET, which the lexer then rules out.
 */
const TRIGGERS =
  /\b(?:set|into|lock|unlock|flush|temporary|prepare|found_rows|sql_calc_found_rows|last_insert_id|identity|get_lock|service_get_(?:read|write)_locks|use)\b|:=|\/\*M?!/i;

/** Classifies one COM_QUERY text (possibly several statements). Never throws. */
export function classifyMysqlSql(sql: string, options: MysqlClassifyOptions = {}): MysqlSqlClassification {
  const maxBytes = options.maxStatementBytes ?? DEFAULT_MAX_UNPINNED_STATEMENT_BYTES;
  // A UTF-16 code unit is 1–3 UTF-8 bytes: only measure when the length is ambiguous.
  if (sql.length > maxBytes || (sql.length * 3 > maxBytes && Buffer.byteLength(sql, 'utf8') > maxBytes)) {
    return { pinReason: 'statement-too-large', pinDetail: `${Buffer.byteLength(sql, 'utf8')} bytes` };
  }
  if (!TRIGGERS.test(sql)) return NOTHING;
  const lexed = lex(sql, options.noBackslashEscapes === true);
  const analysis = new Analysis(sql, lexed.tokens, options.excludeVariableSets === true);
  analysis.run();
  if (analysis.pinReason === undefined && lexed.sawVersionComment) analysis.pin('version-comment', '/*!');
  return analysis.result();
}

/* ------------------------------------------------------------------------------------ */
/* Lexer                                                                                 */
/* ------------------------------------------------------------------------------------ */

const TokenKind = {
  /** Unquoted identifier, keyword or number. `text` is lower-cased. */
  Word: 0,
  /** `…` identifier. `text` is the unquoted name. */
  QuotedIdentifier: 1,
  /** '…' or "…" literal. `text` is the raw slice, quotes included. */
  String: 2,
  /** @name, @'name', @`name`. `text` is the name. */
  UserVariable: 3,
  /** @@name, @@session.name… `text` is lower-cased, without the @@. */
  SystemVariable: 4,
  /** Punctuation/operator: `text` is the character, or ":=". */
  Punct: 5,
} as const;
type TokenKind = (typeof TokenKind)[keyof typeof TokenKind];

interface Token {
  readonly kind: TokenKind;
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

interface Lexed {
  tokens: Token[];
  sawVersionComment: boolean;
}

function isWordChar(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x5f || // _
    code === 0x24 || // $
    code >= 0x80
  );
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d || code === 0x0b || code === 0x0c;
}

/** End index (exclusive) of a quoted run starting at `start` (the opening quote). */
function skipQuoted(sql: string, start: number, quote: number, backslashEscapes: boolean): number {
  let i = start + 1;
  const length = sql.length;
  while (i < length) {
    const code = sql.charCodeAt(i);
    if (code === 0x5c /* \ */ && backslashEscapes) {
      i += 2;
      continue;
    }
    if (code === quote) {
      if (sql.charCodeAt(i + 1) === quote) {
        i += 2; // doubled quote stands for itself
        continue;
      }
      return i + 1;
    }
    i++;
  }
  return length; // unterminated: the rest is the literal
}

function lex(sql: string, noBackslashEscapes: boolean): Lexed {
  const tokens: Token[] = [];
  const length = sql.length;
  const backslashEscapes = !noBackslashEscapes;
  let sawVersionComment = false;
  let insideVersionComment = false;
  let i = 0;
  while (i < length) {
    const code = sql.charCodeAt(i);
    if (isSpace(code)) {
      i++;
      continue;
    }
    // Comments.
    if (code === 0x23 /* # */) {
      const newline = sql.indexOf('\n', i);
      i = newline === -1 ? length : newline + 1;
      continue;
    }
    if (code === 0x2d /* - */ && sql.charCodeAt(i + 1) === 0x2d) {
      const after = sql.charCodeAt(i + 2);
      // "-- " needs whitespace or a control character after the dashes (or the end).
      if (Number.isNaN(after) || after <= 0x20) {
        const newline = sql.indexOf('\n', i);
        i = newline === -1 ? length : newline + 1;
        continue;
      }
    }
    if (code === 0x2f /* / */ && sql.charCodeAt(i + 1) === 0x2a /* * */) {
      const third = sql.charCodeAt(i + 2);
      if (third === 0x21 /* ! */ || (third === 0x4d /* M */ && sql.charCodeAt(i + 3) === 0x21)) {
        // Version comment: its content is executed (by servers at least that version), so
        // lex it as SQL and remember that one was seen.
        sawVersionComment = true;
        insideVersionComment = true;
        i += third === 0x21 ? 3 : 4;
        while (i < length && sql.charCodeAt(i) >= 0x30 && sql.charCodeAt(i) <= 0x39) i++; // version digits
        continue;
      }
      const close = sql.indexOf('*/', i + 2);
      i = close === -1 ? length : close + 2;
      continue;
    }
    if (code === 0x2a /* * */ && insideVersionComment && sql.charCodeAt(i + 1) === 0x2f) {
      insideVersionComment = false;
      i += 2;
      continue;
    }
    // Literals and quoted identifiers.
    if (code === 0x27 /* ' */ || code === 0x22 /* " */) {
      const end = skipQuoted(sql, i, code, backslashEscapes);
      tokens.push({ kind: TokenKind.String, start: i, end, text: sql.slice(i, end) });
      i = end;
      continue;
    }
    if (code === 0x60 /* ` */) {
      const end = skipQuoted(sql, i, code, false);
      tokens.push({ kind: TokenKind.QuotedIdentifier, start: i, end, text: unquote(sql.slice(i, end), false) });
      i = end;
      continue;
    }
    // Variables.
    if (code === 0x40 /* @ */) {
      if (sql.charCodeAt(i + 1) === 0x40) {
        let end = i + 2;
        while (end < length) {
          const c = sql.charCodeAt(end);
          if (isWordChar(c) || c === 0x2e /* . */) end++;
          else if (c === 0x60) end = skipQuoted(sql, end, c, false);
          else break;
        }
        tokens.push({ kind: TokenKind.SystemVariable, start: i, end, text: sql.slice(i + 2, end).replace(/`/g, '').toLowerCase() });
        i = end;
        continue;
      }
      const next = sql.charCodeAt(i + 1);
      if (next === 0x27 || next === 0x22 || next === 0x60) {
        const end = skipQuoted(sql, i + 1, next, next !== 0x60 && backslashEscapes);
        tokens.push({ kind: TokenKind.UserVariable, start: i, end, text: unquote(sql.slice(i + 1, end), backslashEscapes) });
        i = end;
        continue;
      }
      let end = i + 1;
      while (end < length && (isWordChar(sql.charCodeAt(end)) || sql.charCodeAt(end) === 0x2e)) end++;
      if (end > i + 1) {
        tokens.push({ kind: TokenKind.UserVariable, start: i, end, text: sql.slice(i + 1, end) });
        i = end;
        continue;
      }
      tokens.push({ kind: TokenKind.Punct, start: i, end: i + 1, text: '@' });
      i++;
      continue;
    }
    if (isWordChar(code)) {
      let end = i + 1;
      while (end < length && isWordChar(sql.charCodeAt(end))) end++;
      tokens.push({ kind: TokenKind.Word, start: i, end, text: sql.slice(i, end).toLowerCase() });
      i = end;
      continue;
    }
    if (code === 0x3a /* : */ && sql.charCodeAt(i + 1) === 0x3d /* = */) {
      tokens.push({ kind: TokenKind.Punct, start: i, end: i + 2, text: ':=' });
      i += 2;
      continue;
    }
    tokens.push({ kind: TokenKind.Punct, start: i, end: i + 1, text: sql[i]! });
    i++;
  }
  return { tokens, sawVersionComment };
}

/** The value of a quoted literal or identifier (quotes removed, escapes resolved). */
function unquote(raw: string, backslashEscapes: boolean): string {
  const quote = raw[0];
  if (quote !== "'" && quote !== '"' && quote !== '`') return raw;
  const closed = raw.length >= 2 && raw[raw.length - 1] === quote;
  const body = raw.slice(1, closed ? raw.length - 1 : raw.length);
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const ch = body[i]!;
    if (ch === '\\' && backslashEscapes && quote !== '`' && i + 1 < body.length) {
      const next = body[++i]!;
      out += BACKSLASH_ESCAPES[next] ?? next;
      continue;
    }
    if (ch === quote && body[i + 1] === quote) i++;
    out += ch;
  }
  return out;
}

const BACKSLASH_ESCAPES: Record<string, string> = {
  '0': '\0',
  b: '\b',
  n: '\n',
  r: '\r',
  t: '\t',
  Z: '\x1a',
  // LIKE wildcards keep their backslash.
  '%': '\\%',
  _: '\\_',
};

/* ------------------------------------------------------------------------------------ */
/* Statement analysis                                                                    */
/* ------------------------------------------------------------------------------------ */

const SCOPE_WORDS = new Set(['global', 'session', 'local', 'persist', 'persist_only']);
const ROUTINE_WORDS = new Set(['procedure', 'function', 'trigger', 'event']);
const NAMED_LOCK_FUNCTIONS = new Set(['get_lock', 'service_get_read_locks', 'service_get_write_locks']);

class Analysis {
  pinReason: MysqlPinReason | undefined;
  private pinDetail: string | undefined;
  private trackedSets: TrackedSet[] | undefined;
  private unlockTables = false;
  private useSchema: string | undefined;
  private lastInsertIdQuery: { columnName: string } | undefined;
  private statementCount = 0;

  constructor(
    private readonly sql: string,
    private readonly tokens: readonly Token[],
    private readonly excludeVariableSets: boolean,
  ) {}

  run(): void {
    const tokens = this.tokens;
    let start = 0;
    while (start < tokens.length) {
      let end = start;
      if (this.startsRoutineDefinition(start)) {
        end = tokens.length; // the body's semicolons belong to the routine
      } else {
        while (end < tokens.length && !(tokens[end]!.kind === TokenKind.Punct && tokens[end]!.text === ';')) end++;
      }
      if (end > start) {
        this.statementCount++;
        this.statement(start, end);
      }
      start = end + 1;
    }
  }

  pin(reason: MysqlPinReason, detail: string): void {
    if (this.pinReason !== undefined) return;
    this.pinReason = reason;
    this.pinDetail = detail;
  }

  result(): MysqlSqlClassification {
    if (
      this.pinReason === undefined &&
      this.trackedSets === undefined &&
      !this.unlockTables &&
      this.useSchema === undefined &&
      this.lastInsertIdQuery === undefined
    ) {
      return NOTHING;
    }
    const result: {
      pinReason?: MysqlPinReason;
      pinDetail?: string;
      trackedSets?: TrackedSet[];
      unlockTables?: true;
      useSchema?: string;
      lastInsertIdQuery?: { columnName: string };
    } = {};
    if (this.pinReason !== undefined) {
      result.pinReason = this.pinReason;
      if (this.pinDetail !== undefined) result.pinDetail = this.pinDetail;
    }
    if (this.trackedSets !== undefined) result.trackedSets = this.trackedSets;
    if (this.unlockTables) result.unlockTables = true;
    if (this.useSchema !== undefined) result.useSchema = this.useSchema;
    if (this.lastInsertIdQuery !== undefined && this.statementCount === 1) result.lastInsertIdQuery = this.lastInsertIdQuery;
    return result;
  }

  private word(index: number): string | undefined {
    const token = this.tokens[index];
    return token !== undefined && token.kind === TokenKind.Word ? token.text : undefined;
  }

  private isPunct(index: number, text: string): boolean {
    const token = this.tokens[index];
    return token !== undefined && token.kind === TokenKind.Punct && token.text === text;
  }

  /** CREATE [OR REPLACE] [DEFINER = …] [AGGREGATE] PROCEDURE|FUNCTION|TRIGGER|EVENT. */
  private startsRoutineDefinition(start: number): boolean {
    if (this.word(start) !== 'create') return false;
    let i = start + 1;
    if (this.word(i) === 'or' && this.word(i + 1) === 'replace') i += 2;
    if (this.word(i) === 'definer') {
      i++;
      if (this.isPunct(i, '=')) i++;
      // The account: CURRENT_USER[()], or user[@host] with user and host as a word, a
      // string or a quoted identifier (the lexer reads "@host" as a user variable).
      if (this.word(i) === 'current_user') {
        i++;
        if (this.isPunct(i, '(') && this.isPunct(i + 1, ')')) i += 2;
      } else {
        i++;
        if (this.tokens[i]?.kind === TokenKind.UserVariable) i++;
      }
    }
    if (this.word(i) === 'aggregate') i++;
    return ROUTINE_WORDS.has(this.word(i) ?? '');
  }

  private statement(start: number, end: number): void {
    let first = start;
    while (first < end && this.isPunct(first, '(')) first++; // (SELECT …) UNION …
    const keyword = this.word(first);
    switch (keyword) {
      case 'set':
        this.setStatement(first + 1, end);
        break;
      case 'lock':
        if (this.word(first + 1) === 'table' || this.word(first + 1) === 'tables') this.pin('table-lock', 'LOCK TABLES');
        else if (this.word(first + 1) === 'instance') this.pin('table-lock', 'LOCK INSTANCE FOR BACKUP');
        break;
      case 'unlock':
        if (this.word(first + 1) === 'table' || this.word(first + 1) === 'tables') this.unlockTables = true;
        break;
      case 'flush':
        if (this.flushHoldsLock(first + 1, end)) this.pin('table-lock', 'FLUSH TABLES WITH READ LOCK');
        break;
      case 'create': {
        let i = first + 1;
        if (this.word(i) === 'or' && this.word(i + 1) === 'replace') i += 2;
        if (this.word(i) === 'temporary') {
          this.pin('temporary-table', 'CREATE TEMPORARY TABLE');
          return;
        }
        if (this.startsRoutineDefinition(first)) return; // the body runs later, if ever
        break;
      }
      case 'prepare':
        this.pin('text-prepare', 'PREPARE');
        break;
      case 'use': {
        const target = this.tokens[first + 1];
        if (target !== undefined && (target.kind === TokenKind.Word || target.kind === TokenKind.QuotedIdentifier)) {
          this.useSchema = target.kind === TokenKind.Word ? this.sql.slice(target.start, target.end) : target.text;
        }
        break;
      }
      case 'select':
        if (first === start) this.matchLastInsertIdQuery(first, end);
        break;
      default:
        break;
    }
    this.scanExpressions(start, end, keyword === 'set');
  }

  /** Statement-wide scan for functions and assignments that pin wherever they appear. */
  private scanExpressions(start: number, end: number, isSet: boolean): void {
    const tokens = this.tokens;
    for (let i = start; i < end; i++) {
      const token = tokens[i]!;
      switch (token.kind) {
        case TokenKind.Word: {
          const text = token.text;
          if (text === 'sql_calc_found_rows') {
            this.pin('found-rows', 'SQL_CALC_FOUND_ROWS');
          } else if (this.isFunctionCall(i)) {
            if (NAMED_LOCK_FUNCTIONS.has(text)) this.pin('get-lock', `${text.toUpperCase()}()`);
            else if (text === 'found_rows') this.pin('found-rows', 'FOUND_ROWS()');
            else if (text === 'last_insert_id') this.pin('last-insert-id', 'LAST_INSERT_ID()');
          } else if (text === 'into' && !isSet && tokens[i + 1]?.kind === TokenKind.UserVariable) {
            this.pin('user-variable', `INTO @${tokens[i + 1]!.text}`);
          }
          break;
        }
        case TokenKind.SystemVariable:
          if (token.text === 'identity' || token.text === 'last_insert_id' || token.text.endsWith('.last_insert_id')) {
            this.pin('last-insert-id', `@@${token.text}`);
          }
          break;
        case TokenKind.Punct:
          // In SET statements the assignment ":=" is handled by setStatement.
          if (token.text === ':=' && !isSet) this.pin('user-variable', this.assignedVariable(i));
          break;
        default:
          break;
      }
    }
  }

  /** A word followed by "(", and not a qualified name (db.get_lock is a stored function). */
  private isFunctionCall(index: number): boolean {
    return this.isPunct(index + 1, '(') && !this.isPunct(index - 1, '.');
  }

  private assignedVariable(assignIndex: number): string {
    const target = this.tokens[assignIndex - 1];
    return target !== undefined && target.kind === TokenKind.UserVariable ? `@${target.text} :=` : ':=';
  }

  /** FLUSH TABLES [t, …] WITH READ LOCK, or FLUSH TABLES t FOR EXPORT (both hold locks). */
  private flushHoldsLock(start: number, end: number): boolean {
    for (let i = start; i < end; i++) {
      if (this.word(i) === 'with' && this.word(i + 1) === 'read' && this.word(i + 2) === 'lock') return true;
      if (this.word(i) === 'for' && this.word(i + 1) === 'export') return true;
    }
    return false;
  }

  private setStatement(start: number, end: number): void {
    const next = this.word(start);
    const afterNext = this.word(start + 1);
    if (next === 'transaction') {
      if (!this.excludeVariableSets) this.pin('set-transaction', 'SET TRANSACTION');
      return;
    }
    if (next !== undefined && SCOPE_WORDS.has(next) && afterNext === 'transaction') {
      // SESSION characteristics last for the session: an untracked variable. GLOBAL ones are not session state.
      if ((next === 'session' || next === 'local') && !this.excludeVariableSets) this.pin('system-variable', 'SET SESSION TRANSACTION');
      return;
    }
    if (next === 'password' || (next === 'default' && afterNext === 'role')) return; // account changes, not session state
    if (next === 'role' || (next === 'resource' && afterNext === 'group')) {
      if (!this.excludeVariableSets) this.pin('system-variable', next === 'role' ? 'SET ROLE' : 'SET RESOURCE GROUP');
      return;
    }
    if (next === 'statement') {
      // MariaDB: SET STATEMENT var=value[, …] FOR <statement>: the settings last one statement.
      for (let i = start + 1; i < end; i++) {
        if (this.word(i) === 'for' && this.depthBetween(start, i) === 0) {
          this.statement(i + 1, end);
          return;
        }
      }
      return;
    }
    this.assignments(start, end);
  }

  /** Parenthesis depth at `index` counting from `start`. */
  private depthBetween(start: number, index: number): number {
    let depth = 0;
    for (let i = start; i < index; i++) {
      if (this.isPunct(i, '(')) depth++;
      else if (this.isPunct(i, ')')) depth--;
    }
    return depth;
  }

  /** SET [scope] target = value [, [scope] target = value]… */
  private assignments(start: number, end: number): void {
    let scope = 'session';
    let i = start;
    while (i < end) {
      const scopeWord = this.word(i);
      if (scopeWord !== undefined && SCOPE_WORDS.has(scopeWord) && i + 1 < end && !this.isAssignment(i + 1)) {
        scope = scopeWord === 'local' ? 'session' : scopeWord;
        i++;
      }
      const target = this.tokens[i];
      if (target === undefined) return;
      let name: string | undefined;
      let targetScope = scope;
      let valueStart: number;
      if (target.kind === TokenKind.UserVariable) {
        if (!this.excludeVariableSets) this.pin('user-variable', `@${target.text}`);
        valueStart = this.skipAssignment(i + 1);
      } else if (target.kind === TokenKind.SystemVariable) {
        const parts = target.text.split('.');
        if (parts.length > 1 && SCOPE_WORDS.has(parts[0]!)) {
          targetScope = parts[0] === 'local' ? 'session' : parts[0]!;
          parts.shift();
        } else {
          targetScope = 'session';
        }
        name = parts.join('.');
        valueStart = this.skipAssignment(i + 1);
      } else if (target.kind === TokenKind.Word && target.text === 'names' && !this.isAssignment(i + 1)) {
        i = this.setNames(i + 1, end);
        continue;
      } else if (target.kind === TokenKind.Word && (target.text === 'charset' || (target.text === 'character' && this.word(i + 1) === 'set')) && !this.isAssignment(i + 1)) {
        const valueIndex = target.text === 'charset' ? i + 1 : i + 2;
        const valueEnd = this.valueEnd(valueIndex, end);
        this.track('character set', valueIndex, valueEnd);
        i = valueEnd + 1;
        continue;
      } else if (target.kind === TokenKind.Word || target.kind === TokenKind.QuotedIdentifier) {
        // Possibly dotted (component variables such as validate_password.length).
        let j = i;
        const parts = [target.text];
        while (this.isPunct(j + 1, '.') && this.tokens[j + 2] !== undefined && this.tokens[j + 2]!.kind !== TokenKind.Punct) {
          parts.push(this.tokens[j + 2]!.text);
          j += 2;
        }
        name = parts.join('.');
        i = j;
        valueStart = this.skipAssignment(i + 1);
      } else {
        return; // not a SET we understand; other checks still ran
      }
      const valueEnd = this.valueEnd(valueStart, end);
      for (let k = valueStart; k < valueEnd; k++) {
        if (this.isPunct(k, ':=')) this.pin('user-variable', this.assignedVariable(k));
      }
      if (name !== undefined && targetScope === 'session') {
        if (isTrackedSessionVariable(name)) this.track(name, valueStart, valueEnd);
        else if (!this.excludeVariableSets) this.pin('system-variable', name);
      }
      i = valueEnd + 1; // past the comma
    }
  }

  private isAssignment(index: number): boolean {
    return this.isPunct(index, '=') || this.isPunct(index, ':=');
  }

  private skipAssignment(index: number): number {
    return this.isAssignment(index) ? index + 1 : index;
  }

  /** Index of the comma ending a value at depth 0, or `end`. */
  private valueEnd(start: number, end: number): number {
    let depth = 0;
    for (let i = start; i < end; i++) {
      if (this.isPunct(i, '(')) depth++;
      else if (this.isPunct(i, ')')) depth--;
      else if (depth === 0 && this.isPunct(i, ',')) return i;
    }
    return end;
  }

  /** SET NAMES charset [COLLATE collation]; returns the index after the assignment's comma. */
  private setNames(start: number, end: number): number {
    const valueEnd = this.valueEnd(start, end);
    let collateAt = -1;
    for (let i = start; i < valueEnd; i++) {
      if (this.word(i) === 'collate') {
        collateAt = i;
        break;
      }
    }
    this.track('names', start, collateAt === -1 ? valueEnd : collateAt);
    if (collateAt !== -1) this.track('collation_connection', collateAt + 1, valueEnd);
    return valueEnd + 1;
  }

  private track(name: string, valueStart: number, valueEnd: number): void {
    if (this.trackedSets === undefined) this.trackedSets = [];
    if (valueEnd <= valueStart) {
      this.trackedSets.push({ name, value: '', isLiteral: false });
      return;
    }
    const single = valueEnd - valueStart === 1 ? this.tokens[valueStart]! : undefined;
    if (single !== undefined && single.kind === TokenKind.String) {
      this.trackedSets.push({ name, value: unquote(single.text, true), isLiteral: true });
    } else if (single !== undefined && (single.kind === TokenKind.Word || single.kind === TokenKind.QuotedIdentifier)) {
      const written = single.kind === TokenKind.Word ? this.sql.slice(single.start, single.end) : single.text;
      this.trackedSets.push({ name, value: written, isLiteral: single.text !== 'default' || single.kind === TokenKind.QuotedIdentifier });
    } else {
      const text = this.sql.slice(this.tokens[valueStart]!.start, this.tokens[valueEnd - 1]!.end).trim();
      this.trackedSets.push({ name, value: text, isLiteral: false });
    }
  }

  /** SELECT LAST_INSERT_ID() | @@identity | @@last_insert_id [[AS] alias] [FROM DUAL] [LIMIT 1]. */
  private matchLastInsertIdQuery(first: number, end: number): void {
    const tokens = this.tokens;
    let i = first + 1;
    let expressionEnd: number;
    const expression = tokens[i];
    if (expression === undefined) return;
    if (expression.kind === TokenKind.Word && expression.text === 'last_insert_id' && this.isPunct(i + 1, '(') && this.isPunct(i + 2, ')')) {
      expressionEnd = tokens[i + 2]!.end;
      i += 3;
    } else if (expression.kind === TokenKind.SystemVariable && (expression.text === 'identity' || expression.text === 'last_insert_id')) {
      expressionEnd = expression.end;
      i += 1;
    } else {
      return;
    }
    let columnName = this.sql.slice(expression.start, expressionEnd);
    if (this.word(i) === 'as') i++;
    const alias = tokens[i];
    if (alias !== undefined && i < end && this.word(i) !== 'from' && this.word(i) !== 'limit') {
      if (alias.kind === TokenKind.QuotedIdentifier) columnName = alias.text;
      else if (alias.kind === TokenKind.String) columnName = unquote(alias.text, true);
      else if (alias.kind === TokenKind.Word) columnName = this.sql.slice(alias.start, alias.end);
      else return;
      i++;
    }
    if (this.word(i) === 'from') {
      if (this.word(i + 1) !== 'dual') return;
      i += 2;
    }
    if (this.word(i) === 'limit') {
      if (this.word(i + 1) !== '1') return;
      i += 2;
    }
    if (i !== end) return;
    this.lastInsertIdQuery = { columnName };
  }
}
