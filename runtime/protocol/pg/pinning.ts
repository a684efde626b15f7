/**
 * Decides from SQL text whether a client's session must be pinned to its server
 * connection — the statements whose effects outlive the transaction (the RDS Proxy
 * guide's "Avoiding Pinning" list for PostgreSQL) — and whether a statement destroys the
 * server connection's prepared statements.
 *
 * This runs for every simple Query and every Parse, so it is built to say "nothing to see"
 * quickly: a regular expression or two (mightHaveEffects) reject text without any trigger
 * word, and only the rest goes through a small lexer. The lexer skips everything
 * PostgreSQL would not read as a keyword or a name — string constants (standard, E'',
 * B''/X''/N''/U&''), quoted identifiers, `--` and nested `/* *\/` comments, dollar quotes —
 * and splits statements at `;`.
 *
 * Mistakes are made only on the safe side: an unusual statement may pin needlessly, but a
 * statement in the list is not missed. Two known blind spots, shared with RDS Proxy, are
 * code the server runs on our behalf: function bodies and DO blocks (a SET inside a
 * dollar-quoted body) and SQL-standard function bodies (`BEGIN ATOMIC … END`, whose inner
 * `;` we split at — which can only add pins).
 *
 * Cost, measured as CPU time per call on Node 20 on a slow, shared 2-vCPU machine (where an
 * empty loop iteration costs ~2.4 ns): the pgbench SELECT
 * `SELECT abalance FROM pgbench_accounts WHERE aid = 12345;` 0.18 µs, pgbench's
 * `UPDATE … SET …` 0.23 µs (both pre-filter only), `SET search_path = app` 0.45 µs and
 * `SELECT set_config('search_path', 'app', false)` 1.1 µs (lexed).
 */

export interface StatementEffects {
  /** Why the session must stay on its server connection; absent when it need not. */
  readonly pinReason?: string;
  /** DEALLOCATE ALL / DISCARD ALL: the server connection's prepared statements are gone. */
  readonly invalidatesPreparedStatements?: boolean;
}

export interface ClassifyOptions {
  /** The EXCLUDE_VARIABLE_SETS session pinning filter: SET, RESET and set_config do not pin. */
  excludeVariableSets: boolean;
  /**
   * The session's standard_conforming_strings. Only `off` changes how '…' constants are
   * read (backslash escapes, as in E'…'); getting it wrong could hide a statement inside
   * what looks like a string.
   * @default true
   */
  standardConformingStrings?: boolean;
}

/** RDS Proxy pins on any statement text over 16 KB. */
export const MAX_UNPINNED_STATEMENT_BYTES = 16 * 1024;

export const PIN_REASONS = {
  setStatement: 'SET statement',
  setRole: 'SET ROLE',
  setSessionAuthorization: 'SET SESSION AUTHORIZATION',
  reset: 'RESET',
  setConfig: 'set_config(is_local=false)',
  temporaryTable: 'temporary table',
  temporarySequence: 'temporary sequence',
  temporaryView: 'temporary view',
  temporaryObject: 'temporary object',
  withHoldCursor: 'WITH HOLD cursor',
  discard: 'DISCARD',
  listen: 'LISTEN',
  load: 'LOAD',
  advisoryLock: 'session advisory lock',
  sqlPrepare: 'SQL PREPARE',
  oversized: 'statement larger than 16 KB',
} as const;

/** Session-level advisory locks; the _xact_ variants end with the transaction. */
const SESSION_ADVISORY_LOCKS = new Set([
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
]);

const NO_EFFECTS: StatementEffects = Object.freeze({});
const OVERSIZED: StatementEffects = Object.freeze({ pinReason: PIN_REASONS.oversized });

/** Below this many UTF-16 code units the text cannot exceed 16 KB of UTF-8 (3 bytes per unit at most). */
const SURELY_SMALL_LENGTH = Math.floor(MAX_UNPINNED_STATEMENT_BYTES / 3);

export function classifySql(sql: string, options: ClassifyOptions): StatementEffects {
  const oversized = sql.length > SURELY_SMALL_LENGTH && Buffer.byteLength(sql, 'utf8') > MAX_UNPINNED_STATEMENT_BYTES;
  if (!mightHaveEffects(sql)) return oversized ? OVERSIZED : NO_EFFECTS;

  const effects = new EffectsCollector(options.excludeVariableSets);
  // Oversized text is pinned, but still lexed: a DEALLOCATE ALL inside must be reported.
  if (oversized) effects.pin(PIN_REASONS.oversized);
  const lexer = new SqlLexer(sql, options.standardConformingStrings ?? true);
  const statement: Token[] = [];
  for (;;) {
    const token = lexer.next();
    if (token === undefined || (token.kind === 'punct' && token.text === ';')) {
      if (statement.length > 0) classifyStatement(statement, effects);
      if (token === undefined) break;
      statement.length = 0;
    } else {
      statement.push(token);
    }
  }
  return effects.result();
}

/*
 * ---------------------------------------------------------------------------------------
 * Pre-filter
 * ---------------------------------------------------------------------------------------
 */

/*
 * Regular expressions, because V8 runs them as native code: a hand-written character loop
 * measured about twice as slow. Both over-approximate — they ignore strings and comments,
 * which can only make them say yes more often.
 */

/**
 * Function names and temporary-table markers matter anywhere in a statement; commands
 * only as the first word of one, after the start of the text or a ";" and whitespace —
 * which keeps `UPDATE t SET …` on the fast path.
 */
const LIKELY_EFFECTS =
  /set_config|advisory|temp|u&|(?:^|;)\s*(?:set|reset|discard|listen|load|prepare|deallocate|declare)\b/i;
/**
 * A comment may sit between ";" and a command, so when there is one, commands count
 * anywhere. (`set` covers reset and set_config; `temp` covers temporary and pg_temp; `u&`
 * catches U&"…" names, which can spell anything with escapes.)
 */
const ANY_TRIGGER_WORD = /set|temp|discard|listen|load|advisory|prepare|deallocate|declare|u&/i;

function mightHaveEffects(sql: string): boolean {
  if (LIKELY_EFFECTS.test(sql)) return true;
  return (sql.includes('--') || sql.includes('/*')) && ANY_TRIGGER_WORD.test(sql);
}

/*
 * ---------------------------------------------------------------------------------------
 * Effects of one statement
 * ---------------------------------------------------------------------------------------
 */

/** How a pin reason interacts with the EXCLUDE_VARIABLE_SETS filter. */
type PinKind = 'always' | 'variable-set';

class EffectsCollector {
  private pinReason: string | undefined;
  private invalidates = false;

  constructor(private readonly excludeVariableSets: boolean) {}

  pin(reason: string, kind: PinKind = 'always'): void {
    if (this.pinReason !== undefined) return;
    if (kind === 'variable-set' && this.excludeVariableSets) return;
    this.pinReason = reason;
  }

  invalidatePreparedStatements(): void {
    this.invalidates = true;
  }

  result(): StatementEffects {
    if (this.pinReason === undefined) return this.invalidates ? { invalidatesPreparedStatements: true } : NO_EFFECTS;
    return this.invalidates ? { pinReason: this.pinReason, invalidatesPreparedStatements: true } : { pinReason: this.pinReason };
  }
}

function classifyStatement(tokens: readonly Token[], effects: EffectsCollector): void {
  const start = skipExplain(tokens);
  switch (keywordAt(tokens, start)) {
    case 'set':
      classifySet(tokens, start + 1, effects);
      break;
    case 'reset':
      effects.pin(PIN_REASONS.reset, 'variable-set');
      break;
    case 'discard':
      effects.pin(PIN_REASONS.discard);
      // DISCARD PLANS only drops cached plans; the statements themselves survive.
      if (keywordAt(tokens, start + 1) === 'all') effects.invalidatePreparedStatements();
      break;
    case 'listen':
      effects.pin(PIN_REASONS.listen);
      break;
    case 'load':
      effects.pin(PIN_REASONS.load);
      break;
    case 'prepare':
      // PREPARE TRANSACTION is two-phase commit: it detaches the transaction from the session.
      if (keywordAt(tokens, start + 1) !== 'transaction') effects.pin(PIN_REASONS.sqlPrepare);
      break;
    case 'deallocate': {
      const target = keywordAt(tokens, start + 1) === 'prepare' ? start + 2 : start + 1;
      if (keywordAt(tokens, target) === 'all') effects.invalidatePreparedStatements();
      break;
    }
    case 'declare':
      classifyDeclare(tokens, start + 1, effects);
      break;
    case 'create':
      classifyCreate(tokens, start + 1, effects);
      break;
    default:
      break;
  }
  scanExpressions(tokens, start, effects);
}

const EXPLAIN_OPTIONS = new Set(['analyze', 'analyse', 'verbose']);

/** EXPLAIN ANALYZE runs its statement, so classify what follows it. */
function skipExplain(tokens: readonly Token[]): number {
  if (keywordAt(tokens, 0) !== 'explain') return 0;
  let index = 1;
  if (isPunct(tokens, index, '(')) return indexAfterClosingParen(tokens, index);
  while (EXPLAIN_OPTIONS.has(keywordAt(tokens, index) ?? '')) index++;
  return index;
}

function indexAfterClosingParen(tokens: readonly Token[], openIndex: number): number {
  let depth = 0;
  for (let index = openIndex; index < tokens.length; index++) {
    if (isPunct(tokens, index, '(')) depth++;
    else if (isPunct(tokens, index, ')') && --depth === 0) return index + 1;
  }
  return tokens.length;
}

function classifySet(tokens: readonly Token[], index: number, effects: EffectsCollector): void {
  const word = keywordAt(tokens, index);
  // "SET local.x = 1" names a custom variable, not the LOCAL keyword.
  const isKeyword = word !== undefined && !isPunct(tokens, index + 1, '.');
  if (isKeyword && (word === 'local' || word === 'transaction' || word === 'constraints')) {
    return; // these last until the end of the transaction only
  }
  // Identity changes pin even under EXCLUDE_VARIABLE_SETS: a server connection lent out
  // under another role would run the next client's queries with that role's privileges.
  if (isKeyword && word === 'role') {
    effects.pin(PIN_REASONS.setRole);
    return;
  }
  if (word === 'session_authorization') {
    effects.pin(PIN_REASONS.setSessionAuthorization);
    return;
  }
  if (isKeyword && word === 'session') {
    const what = keywordAt(tokens, index + 1);
    if (what === 'authorization') effects.pin(PIN_REASONS.setSessionAuthorization);
    else if (what === 'role') effects.pin(PIN_REASONS.setRole);
    // SET SESSION CHARACTERISTICS and SET SESSION x = … are session state like any SET.
    else effects.pin(PIN_REASONS.setStatement, 'variable-set');
    return;
  }
  effects.pin(PIN_REASONS.setStatement, 'variable-set');
}

function classifyDeclare(tokens: readonly Token[], index: number, effects: EffectsCollector): void {
  // Cursor options sit between the name and FOR; past FOR is the query, whose own
  // "WITH hold AS (…)" must not count.
  for (let i = index; i < tokens.length; i++) {
    const word = keywordAt(tokens, i);
    if (word === 'for') return;
    if (word === 'with' && keywordAt(tokens, i + 1) === 'hold') {
      effects.pin(PIN_REASONS.withHoldCursor);
      return;
    }
  }
}

function classifyCreate(tokens: readonly Token[], index: number, effects: EffectsCollector): void {
  let i = index;
  if (keywordAt(tokens, i) === 'or' && keywordAt(tokens, i + 1) === 'replace') i += 2;
  if (keywordAt(tokens, i) === 'global' || keywordAt(tokens, i) === 'local') i++;
  const modifier = keywordAt(tokens, i);
  if (modifier === 'temp' || modifier === 'temporary') {
    switch (keywordAt(tokens, i + 1)) {
      case 'table':
        // ON COMMIT DROP tables die with the transaction, which holds the connection anyway.
        if (!containsKeywords(tokens, i + 2, 'on', 'commit', 'drop')) effects.pin(PIN_REASONS.temporaryTable);
        return;
      case 'sequence':
        effects.pin(PIN_REASONS.temporarySequence);
        return;
      case 'view':
      case 'recursive':
        effects.pin(PIN_REASONS.temporaryView);
        return;
      default:
        effects.pin(PIN_REASONS.temporaryObject);
        return;
    }
  }
  // Anything created in (or, for a view, over a table in) pg_temp is temporary too.
  for (let j = index; j < tokens.length; j++) {
    if (nameAt(tokens, j) === 'pg_temp' && isPunct(tokens, j + 1, '.')) {
      effects.pin(PIN_REASONS.temporaryObject);
      return;
    }
  }
}

/** Words that may follow an INTO target in SELECT: "INTO temp FROM" makes a table named temp. */
const AFTER_INTO_TARGET = new Set([
  'from',
  'where',
  'group',
  'having',
  'window',
  'order',
  'limit',
  'offset',
  'fetch',
  'for',
  'union',
  'intersect',
  'except',
]);

/** Pins that can appear anywhere in a statement: function calls and SELECT … INTO TEMP. */
function scanExpressions(tokens: readonly Token[], start: number, effects: EffectsCollector): void {
  for (let i = start; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind === 'punct' || token.kind === 'string' || token.kind === 'literal') continue;
    const name = token.text;
    if (isPunct(tokens, i + 1, '(')) {
      if (SESSION_ADVISORY_LOCKS.has(name)) effects.pin(PIN_REASONS.advisoryLock);
      else if (name === 'set_config') classifySetConfig(tokens, i + 1, effects);
    } else if (token.kind === 'word' && name === 'into') {
      classifySelectInto(tokens, i, effects);
    }
  }
}

function classifySetConfig(tokens: readonly Token[], openParen: number, effects: EffectsCollector): void {
  const args = splitArguments(tokens, openParen);
  if (args[2] !== undefined && isTrueLiteral(args[2])) return;
  const variable = args[0]?.length === 1 && args[0][0]!.kind === 'string' ? args[0][0]!.text.toLowerCase() : undefined;
  const changesIdentity = variable === 'role' || variable === 'session_authorization';
  // A non-literal is_local might be false: pin.
  effects.pin(PIN_REASONS.setConfig, changesIdentity ? 'always' : 'variable-set');
}

function classifySelectInto(tokens: readonly Token[], intoIndex: number, effects: EffectsCollector): void {
  const previous = keywordAt(tokens, intoIndex - 1);
  if (previous === 'insert' || previous === 'merge') return;
  let i = intoIndex + 1;
  if (keywordAt(tokens, i) === 'global' || keywordAt(tokens, i) === 'local') i++;
  const temporary = keywordAt(tokens, i) === 'temp' || keywordAt(tokens, i) === 'temporary';
  if (temporary) i++;
  if (keywordAt(tokens, i) === 'table') i++;
  if (temporary) {
    const target = tokens[i];
    const isTableName =
      target !== undefined && (target.kind === 'identifier' || (target.kind === 'word' && !AFTER_INTO_TARGET.has(target.text)));
    if (isTableName) effects.pin(PIN_REASONS.temporaryTable);
  } else if (nameAt(tokens, i) === 'pg_temp' && isPunct(tokens, i + 1, '.')) {
    effects.pin(PIN_REASONS.temporaryTable);
  }
}

/** The top-level, comma-separated arguments of the call whose "(" is at openParen. */
function splitArguments(tokens: readonly Token[], openParen: number): Token[][] {
  const args: Token[][] = [[]];
  let depth = 0;
  for (let i = openParen + 1; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind === 'punct') {
      if (token.text === '(' || token.text === '[') depth++;
      else if (token.text === ')' || token.text === ']') {
        if (depth === 0) break;
        depth--;
      } else if (token.text === ',' && depth === 0) {
        args.push([]);
        continue;
      }
    }
    args[args.length - 1]!.push(token);
  }
  return args;
}

/** TRUE, 'true', 'on', 'yes', … optionally cast with ::bool / ::boolean. */
function isTrueLiteral(arg: readonly Token[]): boolean {
  let length = arg.length;
  if (
    length === 4 &&
    isPunct(arg, 1, ':') &&
    isPunct(arg, 2, ':') &&
    (keywordAt(arg, 3) === 'bool' || keywordAt(arg, 3) === 'boolean')
  ) {
    length = 1;
  }
  if (length !== 1) return false;
  const value = arg[0]!;
  if (value.kind === 'word') return value.text === 'true';
  if (value.kind !== 'string') return false;
  // PostgreSQL's boolin: trimmed, case-insensitive, unambiguous prefixes of true/yes, or on/1.
  const text = value.text.trim().toLowerCase();
  return text.length > 0 && ('true'.startsWith(text) || 'yes'.startsWith(text) || text === 'on' || text === '1');
}

function containsKeywords(tokens: readonly Token[], from: number, ...words: string[]): boolean {
  for (let i = from; i + words.length <= tokens.length; i++) {
    if (words.every((word, offset) => keywordAt(tokens, i + offset) === word)) return true;
  }
  return false;
}

/** The lower-cased text of an unquoted word (keywords can't be quoted). */
function keywordAt(tokens: readonly Token[], index: number): string | undefined {
  const token = tokens[index];
  return token !== undefined && token.kind === 'word' ? token.text : undefined;
}

/** The name a word or quoted identifier stands for. */
function nameAt(tokens: readonly Token[], index: number): string | undefined {
  const token = tokens[index];
  return token !== undefined && (token.kind === 'word' || token.kind === 'identifier') ? token.text : undefined;
}

function isPunct(tokens: readonly Token[], index: number, char: string): boolean {
  const token = tokens[index];
  return token !== undefined && token.kind === 'punct' && token.text === char;
}

/*
 * ---------------------------------------------------------------------------------------
 * Lexer
 * ---------------------------------------------------------------------------------------
 */

type TokenKind =
  /** An unquoted identifier or keyword, lower-cased as PostgreSQL folds it. */
  | 'word'
  /** A quoted identifier, exactly as it names something. */
  | 'identifier'
  /** A plain string constant whose value we know ('…' under standard_conforming_strings, N'…'). */
  | 'string'
  /** Any other constant or parameter: numbers, $1, E'…', U&'…', B'…', X'…', dollar quotes. */
  | 'literal'
  /** One character of punctuation or operator. */
  | 'punct';

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
}

const CHAR = {
  tab: 0x09,
  newline: 0x0a,
  carriageReturn: 0x0d,
  space: 0x20,
  doubleQuote: 0x22,
  dollar: 0x24,
  ampersand: 0x26,
  singleQuote: 0x27,
  asterisk: 0x2a,
  minus: 0x2d,
  dot: 0x2e,
  slash: 0x2f,
  digit0: 0x30,
  digit9: 0x39,
  backslash: 0x5c,
  underscore: 0x5f,
} as const;

/** PostgreSQL's whitespace: space, \t, \n, \v, \f, \r. */
function isWhitespace(c: number): boolean {
  return c === CHAR.space || (c >= CHAR.tab && c <= CHAR.carriageReturn);
}

function isDigit(c: number): boolean {
  return c >= CHAR.digit0 && c <= CHAR.digit9;
}

/** PostgreSQL's ident_start: letters, underscore, and any non-ASCII character. */
function isIdentifierStart(c: number): boolean {
  return ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) || c === CHAR.underscore || c >= 0x80;
}

function isIdentifierPart(c: number): boolean {
  return isIdentifierStart(c) || isDigit(c) || c === CHAR.dollar;
}

class SqlLexer {
  private position = 0;

  constructor(
    private readonly sql: string,
    private readonly standardConformingStrings: boolean,
  ) {}

  next(): Token | undefined {
    this.skipWhitespaceAndComments();
    const sql = this.sql;
    const start = this.position;
    if (start >= sql.length) return undefined;
    const c = sql.charCodeAt(start);
    const following = sql.charCodeAt(start + 1);

    if (isIdentifierStart(c)) {
      const lower = c | 0x20;
      if (following === CHAR.singleQuote) {
        if (lower === 0x65 /* e */) return this.escapeString(start + 1);
        if (lower === 0x62 /* b */ || lower === 0x78 /* x */) return this.literalFrom(this.standardStringEnd(start + 1));
        if (lower === 0x6e /* n */) return this.plainString(start + 1);
      }
      if (lower === 0x75 /* u */ && following === CHAR.ampersand) {
        const quote = sql.charCodeAt(start + 2);
        if (quote === CHAR.singleQuote) return this.literalFrom(this.standardStringEnd(start + 2));
        if (quote === CHAR.doubleQuote) return this.unicodeIdentifier(start + 2);
      }
      let end = start + 1;
      while (end < sql.length && isIdentifierPart(sql.charCodeAt(end))) end++;
      this.position = end;
      return { kind: 'word', text: sql.slice(start, end).toLowerCase() };
    }
    if (c === CHAR.singleQuote) return this.plainString(start);
    if (c === CHAR.doubleQuote) return this.quotedIdentifier(start);
    if (c === CHAR.dollar) {
      if (isDigit(following)) return this.literalWhile(start + 1, isDigit); // $1
      const dollarQuoted = this.dollarQuote(start);
      if (dollarQuoted !== undefined) return dollarQuoted;
    }
    if (isDigit(c) || (c === CHAR.dot && isDigit(following))) {
      // Numbers, including 1.5e10, 0x1F and 1_000; an exponent's sign becomes punctuation, harmlessly.
      return this.literalWhile(start + 1, (d) => isIdentifierPart(d) || d === CHAR.dot);
    }
    this.position = start + 1;
    return { kind: 'punct', text: sql[start]! };
  }

  private skipWhitespaceAndComments(): void {
    const sql = this.sql;
    let i = this.position;
    for (;;) {
      while (i < sql.length && isWhitespace(sql.charCodeAt(i))) i++;
      const c = sql.charCodeAt(i);
      if (c === CHAR.minus && sql.charCodeAt(i + 1) === CHAR.minus) {
        while (i < sql.length && sql.charCodeAt(i) !== CHAR.newline && sql.charCodeAt(i) !== CHAR.carriageReturn) i++;
      } else if (c === CHAR.slash && sql.charCodeAt(i + 1) === CHAR.asterisk) {
        i = this.blockCommentEnd(i);
      } else {
        break;
      }
    }
    this.position = i;
  }

  /** Block comments nest in PostgreSQL, unlike in the SQL standard. */
  private blockCommentEnd(start: number): number {
    const sql = this.sql;
    let depth = 0;
    let i = start;
    while (i < sql.length) {
      const c = sql.charCodeAt(i);
      if (c === CHAR.slash && sql.charCodeAt(i + 1) === CHAR.asterisk) {
        depth++;
        i += 2;
      } else if (c === CHAR.asterisk && sql.charCodeAt(i + 1) === CHAR.slash) {
        i += 2;
        if (--depth === 0) return i;
      } else {
        i++;
      }
    }
    return sql.length; // unterminated: the server will reject it
  }

  /** '…' as standard_conforming_strings has it read. */
  private plainString(quoteIndex: number): Token {
    return this.standardConformingStrings ? this.standardString(quoteIndex) : this.escapeString(quoteIndex);
  }

  /** '…' with '' for a quote and backslashes taken literally; quoteIndex is the opening quote. */
  private standardString(quoteIndex: number): Token {
    const end = this.standardStringEnd(quoteIndex);
    this.position = end;
    const inner = this.sql.slice(quoteIndex + 1, end - 1);
    return { kind: 'string', text: inner.includes("'") ? inner.replace(/''/g, "'") : inner };
  }

  /** Index just past the closing quote of a '…' constant without backslash escapes. */
  private standardStringEnd(quoteIndex: number): number {
    const sql = this.sql;
    let i = quoteIndex + 1;
    for (;;) {
      const close = sql.indexOf("'", i);
      if (close < 0) return sql.length;
      if (sql.charCodeAt(close + 1) !== CHAR.singleQuote) return close + 1;
      i = close + 2;
    }
  }

  /** E'…' (or '…' with standard_conforming_strings off): backslash escapes anything. */
  private escapeString(quoteIndex: number): Token {
    const sql = this.sql;
    let i = quoteIndex + 1;
    while (i < sql.length) {
      const c = sql.charCodeAt(i);
      if (c === CHAR.backslash) {
        i += 2;
      } else if (c === CHAR.singleQuote) {
        if (sql.charCodeAt(i + 1) !== CHAR.singleQuote) {
          i++;
          break;
        }
        i += 2;
      } else {
        i++;
      }
    }
    return this.literalFrom(Math.min(i, sql.length));
  }

  private quotedIdentifier(quoteIndex: number): Token {
    return { kind: 'identifier', text: this.quotedIdentifierRaw(quoteIndex) };
  }

  /** The name inside "…" with "" unescaped; moves past the closing quote. */
  private quotedIdentifierRaw(quoteIndex: number): string {
    const sql = this.sql;
    let i = quoteIndex + 1;
    let text = '';
    for (;;) {
      const close = sql.indexOf('"', i);
      if (close < 0) {
        this.position = sql.length;
        return text + sql.slice(i);
      }
      text += sql.slice(i, close);
      if (sql.charCodeAt(close + 1) !== CHAR.doubleQuote) {
        this.position = close + 1;
        return text;
      }
      text += '"';
      i = close + 2;
    }
  }

  /** U&"…" [UESCAPE 'c']: decoded, so that U&"pg\0061dvisory_lock" is recognised. */
  private unicodeIdentifier(quoteIndex: number): Token {
    const raw = this.quotedIdentifierRaw(quoteIndex);
    let escape = '\\';
    const afterIdentifier = this.position;
    this.skipWhitespaceAndComments();
    const sql = this.sql;
    const keywordEnd = this.position + 'uescape'.length;
    if (sql.slice(this.position, keywordEnd).toLowerCase() === 'uescape' && !isIdentifierPart(sql.charCodeAt(keywordEnd))) {
      this.position = keywordEnd;
      this.skipWhitespaceAndComments();
      if (sql.charCodeAt(this.position) === CHAR.singleQuote) {
        const escapeToken = this.standardString(this.position);
        if (escapeToken.text.length === 1) escape = escapeToken.text;
      }
    } else {
      this.position = afterIdentifier;
    }
    // An invalid escape is a syntax error for the server; keep the raw text, which matches nothing.
    return { kind: 'identifier', text: decodeUnicodeEscapes(raw, escape) ?? raw };
  }

  /** $$…$$ or $tag$…$tag$; undefined when the "$" does not open one. */
  private dollarQuote(start: number): Token | undefined {
    const sql = this.sql;
    let i = start + 1;
    if (sql.charCodeAt(i) !== CHAR.dollar) {
      // A tag is an identifier without "$"; anything else after "$" is not a dollar quote.
      if (!isIdentifierStart(sql.charCodeAt(i))) return undefined;
      while (i < sql.length && isIdentifierPart(sql.charCodeAt(i)) && sql.charCodeAt(i) !== CHAR.dollar) i++;
      if (sql.charCodeAt(i) !== CHAR.dollar) return undefined;
    }
    const delimiter = sql.slice(start, i + 1);
    const close = sql.indexOf(delimiter, i + 1);
    return this.literalFrom(close < 0 ? sql.length : close + delimiter.length);
  }

  private literalWhile(from: number, accepts: (c: number) => boolean): Token {
    let i = from;
    while (i < this.sql.length && accepts(this.sql.charCodeAt(i))) i++;
    return this.literalFrom(i);
  }

  private literalFrom(end: number): Token {
    this.position = end;
    return { kind: 'literal', text: '' };
  }
}

const HEX4 = /^[0-9A-Fa-f]{4}$/;
const HEX6 = /^[0-9A-Fa-f]{6}$/;

function decodeUnicodeEscapes(raw: string, escape: string): string | undefined {
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const c = raw[i]!;
    if (c !== escape) {
      out += c;
      i++;
    } else if (raw[i + 1] === escape) {
      out += escape;
      i += 2;
    } else if (raw[i + 1] === '+') {
      const hex = raw.slice(i + 2, i + 8);
      if (!HEX6.test(hex) || Number.parseInt(hex, 16) > 0x10ffff) return undefined;
      out += String.fromCodePoint(Number.parseInt(hex, 16));
      i += 8;
    } else {
      const hex = raw.slice(i + 1, i + 5);
      if (!HEX4.test(hex)) return undefined;
      out += String.fromCharCode(Number.parseInt(hex, 16)); // surrogate pairs come as two escapes
      i += 5;
    }
  }
  return out;
}
