import { MAX_UNPINNED_STATEMENT_BYTES, PIN_REASONS, classifySql } from './pinning';

const pinReasonOf = (sql: string, excludeVariableSets = false): string | undefined =>
  classifySql(sql, { excludeVariableSets }).pinReason;

describe('statements that pin', () => {
  it.each([
    // SET and friends
    ['SET search_path = app', PIN_REASONS.setStatement],
    ['set statement_timeout to 0', PIN_REASONS.setStatement],
    ['SET SESSION work_mem = 65536', PIN_REASONS.setStatement],
    ['SET TIME ZONE UTC', PIN_REASONS.setStatement],
    ['SET SCHEMA \'app\'', PIN_REASONS.setStatement],
    ['SET myapp.tenant = 42', PIN_REASONS.setStatement],
    ['SET local.tenant = 42', PIN_REASONS.setStatement],
    ['SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE', PIN_REASONS.setStatement],
    ['SET ROLE reporting', PIN_REASONS.setRole],
    ['SET SESSION ROLE reporting', PIN_REASONS.setRole],
    ['SET role = reporting', PIN_REASONS.setRole],
    ['SET SESSION AUTHORIZATION alice', PIN_REASONS.setSessionAuthorization],
    ['RESET search_path', PIN_REASONS.reset],
    ['RESET ALL', PIN_REASONS.reset],
    ['RESET ROLE', PIN_REASONS.reset],
    // set_config
    ["SELECT set_config('search_path', 'app', false)", PIN_REASONS.setConfig],
    ["SELECT pg_catalog.set_config('search_path', '', false)", PIN_REASONS.setConfig],
    ['SELECT "pg_catalog"."set_config"(\'a.b\', \'1\', FALSE)', PIN_REASONS.setConfig],
    ["SELECT set_config('a.b', '1', 'off')", PIN_REASONS.setConfig],
    ["SELECT set_config('a.b', '1', $3)", PIN_REASONS.setConfig],
    ["SELECT set_config('a.b', '1', is_local)", PIN_REASONS.setConfig],
    ["SELECT set_config('a.b', '1', NOT false)", PIN_REASONS.setConfig],
    ["SELECT set_config('a.b', upper('x'), false)", PIN_REASONS.setConfig],
    ["SELECT SET_CONFIG('a.b', '1', false)", PIN_REASONS.setConfig],
    // temporary objects
    ['CREATE TEMP TABLE t (a int)', PIN_REASONS.temporaryTable],
    ['create temporary table t as select 1', PIN_REASONS.temporaryTable],
    ['CREATE GLOBAL TEMPORARY TABLE t (a int)', PIN_REASONS.temporaryTable],
    ['CREATE LOCAL TEMP TABLE IF NOT EXISTS t (a int)', PIN_REASONS.temporaryTable],
    ['CREATE TEMP TABLE t (a int) ON COMMIT PRESERVE ROWS', PIN_REASONS.temporaryTable],
    ['CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS', PIN_REASONS.temporaryTable],
    ['CREATE TEMP SEQUENCE s', PIN_REASONS.temporarySequence],
    ['CREATE TEMPORARY VIEW v AS SELECT 1', PIN_REASONS.temporaryView],
    ['CREATE OR REPLACE TEMP VIEW v AS SELECT 1', PIN_REASONS.temporaryView],
    ['CREATE TEMP RECURSIVE VIEW v (n) AS SELECT 1', PIN_REASONS.temporaryView],
    ['CREATE TABLE pg_temp.t (a int)', PIN_REASONS.temporaryObject],
    ['CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', PIN_REASONS.temporaryObject],
    ['CREATE VIEW v AS SELECT * FROM "pg_temp".t', PIN_REASONS.temporaryObject],
    ['SELECT * INTO TEMP t FROM accounts', PIN_REASONS.temporaryTable],
    ['SELECT * INTO TEMPORARY TABLE t FROM accounts', PIN_REASONS.temporaryTable],
    ['SELECT 1 AS a INTO LOCAL TEMP "T"', PIN_REASONS.temporaryTable],
    ['SELECT 1 AS a INTO pg_temp.t', PIN_REASONS.temporaryTable],
    ['WITH x AS (SELECT 1 AS a) SELECT * INTO TEMP t FROM x', PIN_REASONS.temporaryTable],
    // cursors, DISCARD, LISTEN, LOAD, PREPARE
    ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', PIN_REASONS.withHoldCursor],
    ['DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1', PIN_REASONS.withHoldCursor],
    ['declare "c" binary insensitive scroll cursor with hold for select 1', PIN_REASONS.withHoldCursor],
    ['DISCARD ALL', PIN_REASONS.discard],
    ['DISCARD PLANS', PIN_REASONS.discard],
    ['DISCARD SEQUENCES', PIN_REASONS.discard],
    ['DISCARD TEMP', PIN_REASONS.discard],
    ['LISTEN orders', PIN_REASONS.listen],
    ['LISTEN "Orders"', PIN_REASONS.listen],
    ["LOAD 'auto_explain'", PIN_REASONS.load],
    ['PREPARE q (int) AS SELECT $1', PIN_REASONS.sqlPrepare],
    ['prepare q as select 1', PIN_REASONS.sqlPrepare],
    // session-level advisory locks
    ['SELECT pg_advisory_lock(1)', PIN_REASONS.advisoryLock],
    ['SELECT pg_advisory_lock_shared(1, 2)', PIN_REASONS.advisoryLock],
    ['SELECT pg_try_advisory_lock(hashtext($1))', PIN_REASONS.advisoryLock],
    ['SELECT pg_try_advisory_lock_shared(7)', PIN_REASONS.advisoryLock],
    ['SELECT PG_ADVISORY_LOCK (1)', PIN_REASONS.advisoryLock],
    ['SELECT pg_catalog.pg_advisory_lock(1)', PIN_REASONS.advisoryLock],
    ['SELECT "pg_catalog"."pg_advisory_lock"(1)', PIN_REASONS.advisoryLock],
    ['SELECT pg_advisory_lock /* why not */ (1)', PIN_REASONS.advisoryLock],
    ['SELECT id FROM jobs WHERE pg_try_advisory_lock(id) LIMIT 1', PIN_REASONS.advisoryLock],
    ['SELECT U&"pg_\\0061dvisory_lock"(1)', PIN_REASONS.advisoryLock],
    ["SELECT U&\"pg_!0061dvisory_lock\" UESCAPE '!'(1)", PIN_REASONS.advisoryLock],
    ['SELECT u&"pg_\\+000061dvisory_lock"(1)', PIN_REASONS.advisoryLock],
    // EXPLAIN ANALYZE runs the statement
    ['EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1', PIN_REASONS.temporaryTable],
    ['EXPLAIN (ANALYZE, BUFFERS) SELECT pg_advisory_lock(1)', PIN_REASONS.advisoryLock],
  ])('%s', (sql, reason) => {
    expect(pinReasonOf(sql)).toBe(reason);
  });
});

describe('lookalikes that do not pin', () => {
  it.each([
    // SET-shaped but transaction-scoped or not a SET command at all
    'SET LOCAL search_path = app',
    'set local statement_timeout = 0',
    'SET LOCAL ROLE reporting',
    'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
    "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
    'SET CONSTRAINTS ALL DEFERRED',
    'UPDATE t SET a = 1 WHERE id = 2',
    'INSERT INTO t (id, a) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET a = excluded.a',
    'ALTER TABLE t ALTER COLUMN a SET DEFAULT 0',
    'ALTER TABLE t SET SCHEMA archive',
    'ALTER ROLE app SET search_path = app',
    'ALTER DATABASE app SET work_mem = 65536',
    'ALTER SYSTEM SET work_mem = 65536',
    'CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = app, pg_temp AS $$ SELECT 1 $$',
    'SELECT * FROM t OFFSET 10',
    'SELECT settings, dataset FROM reset_log',
    // the word hidden from the parser
    "SELECT 'SET search_path = x'",
    "SELECT 'it''s; SET x = 1'",
    "SELECT E'\\'; SET x = 1; --'",
    "SELECT e'a\\\\', 'SET x = 1'",
    'SELECT "SET" FROM t',
    'SELECT "set_config"',
    'SELECT 1 -- SET x = 1',
    'SELECT 1 /* SET x = 1 */',
    'SELECT 1 /* nested /* */ SET x = 1 */',
    'SELECT $$SET x = 1; SELECT pg_advisory_lock(1)$$',
    'SELECT $tag$ $$ SET x = 1 $$ $tag$',
    'DO $body$ BEGIN PERFORM set_config(\'a.b\', \'1\', false); END $body$',
    "SELECT B'1010', X'FF', N'SET', U&'SET'",
    // advisory locks that end with the transaction, or unlocks
    'SELECT pg_advisory_xact_lock(1)',
    'SELECT pg_try_advisory_xact_lock_shared(1)',
    'SELECT pg_advisory_unlock(1)',
    'SELECT pg_advisory_unlock_all()',
    'SELECT pg_advisory_lock',
    'SELECT myschema.my_pg_advisory_lock(1)',
    'SELECT "PG_ADVISORY_LOCK"(1)',
    // set_config that is local, or not set_config
    "SELECT set_config('search_path', 'app', true)",
    "SELECT set_config('search_path', 'app', TRUE)",
    "SELECT set_config('a.b', '1', 't')",
    "SELECT set_config('a.b', '1', 'on')",
    "SELECT set_config('a.b', '1', ' Yes ')",
    "SELECT set_config('a.b', '1', 'true'::boolean)",
    "SELECT set_config('a.b', f(1, 2), true)",
    "SELECT current_setting('a.b')",
    // cursors without hold, the hold word elsewhere
    'DECLARE c CURSOR FOR SELECT 1',
    'DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1',
    'DECLARE hold CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold',
    'SELECT hold FROM t',
    // other session-neutral commands
    'UNLISTEN orders',
    'UNLISTEN *',
    "NOTIFY orders, 'payload'",
    "SELECT payload, download FROM loads",
    "PREPARE TRANSACTION 'tx1'",
    "COMMIT PREPARED 'tx1'",
    'EXECUTE q(1)',
    'DEALLOCATE q',
    'CREATE TABLE temp (a int)',
    'CREATE UNLOGGED TABLE t (a int)',
    'CREATE TEMP TABLE t (a int) ON COMMIT DROP',
    'INSERT INTO temp VALUES (1)',
    'INSERT INTO temp SELECT 1',
    'MERGE INTO temp t USING s ON t.id = s.id WHEN MATCHED THEN DELETE',
    'SELECT * INTO temp FROM accounts',
    'SELECT * INTO archive FROM accounts',
    'SELECT template FROM templates',
    'EXPLAIN SELECT 1',
    '',
    ';;',
  ])('%s', (sql) => {
    expect(pinReasonOf(sql)).toBeUndefined();
  });
});

describe('multi-statement strings', () => {
  it('pins when any statement pins', () => {
    expect(pinReasonOf('SELECT 1; SET search_path = app; SELECT 2')).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('BEGIN; SELECT 1; LISTEN x; COMMIT;')).toBe(PIN_REASONS.listen);
  });

  it('reports the first reason', () => {
    expect(pinReasonOf('LISTEN x; SET a = 1')).toBe(PIN_REASONS.listen);
  });

  it('does not pin when every statement is harmless', () => {
    expect(pinReasonOf('BEGIN; SET LOCAL search_path = app; UPDATE t SET a = 1; COMMIT')).toBeUndefined();
  });

  it('splits only at semicolons outside strings, identifiers, comments and dollar quotes', () => {
    expect(pinReasonOf("SELECT ';'; SELECT 1")).toBeUndefined();
    expect(pinReasonOf("SELECT ';SET x = 1'")).toBeUndefined();
    expect(pinReasonOf('SELECT ";SET x"')).toBeUndefined();
    expect(pinReasonOf('SELECT 1 -- ;\nSET x = 1')).toBeUndefined(); // one (invalid) statement
    expect(pinReasonOf('SELECT 1 -- ;\n; SET x = 1')).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('SELECT 1 -- ;\r; SET x = 1')).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('SELECT 1 /* ; */; SET x = 1')).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('SELECT $$;$$;SET x = 1')).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('SELECT 1;SET x=1')).toBe(PIN_REASONS.setStatement);
  });

  it('keeps a SET after a statement that ends in a quoted string or comment', () => {
    expect(pinReasonOf("SELECT 'a'; SET x = 1")).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf("SELECT E'\\\\'; SET x = 1")).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf("SELECT 'it''s'; SET x = 1")).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('SELECT "a""b"; SET x = 1')).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('SELECT $a$ $b$ $a$; SET x = 1')).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('SELECT $1; SET x = 1')).toBe(PIN_REASONS.setStatement);
    expect(pinReasonOf('SELECT a$b$c FROM t; SET x = 1')).toBe(PIN_REASONS.setStatement);
  });
});

describe('statement starts the pre-filter must not miss', () => {
  it.each([
    'SET x = 1',
    '  \t\r\n\fSET x = 1',
    'SELECT 1;SET x = 1',
    'SELECT 1;\n  SET x = 1',
    '/* leading comment */ SET x = 1',
    '/**/SET x = 1',
    '-- leading comment\nSET x = 1',
    'SELECT 1; /* c */ SET x = 1',
    'SELECT 1; -- c\n SET x = 1',
    'sEt x = 1',
    'SET"x" = 1',
  ])('%s', (sql) => {
    expect(pinReasonOf(sql)).toBe(PIN_REASONS.setStatement);
  });

  it('ignores the same words mid-statement or glued to other identifier characters', () => {
    expect(pinReasonOf('UPDATE t SET a = 1; UPDATE u SET b = 2')).toBeUndefined();
    expect(pinReasonOf('SELECT 1 AS listen, 2 AS load, 3 AS discard')).toBeUndefined();
    expect(pinReasonOf('SETTINGS x')).toBeUndefined();
    expect(pinReasonOf('set$x = 1')).toBeUndefined();
    expect(pinReasonOf('\u00e9SET x = 1')).toBeUndefined();
  });
});

describe('standard_conforming_strings', () => {
  // With it on, backslash is an ordinary character and the string ends at the second quote;
  // with it off, \' escapes the quote and the SET is inside the string.
  const sql = "SELECT 'a\\'; SET x = 1; --'";

  it('reads backslashes literally by default', () => {
    expect(pinReasonOf(sql)).toBe(PIN_REASONS.setStatement);
  });

  it('honours backslash escapes when off', () => {
    expect(classifySql(sql, { excludeVariableSets: false, standardConformingStrings: false }).pinReason).toBeUndefined();
    const hidden = "SELECT 'a\\' '; SET x = 1; SELECT '";
    expect(classifySql(hidden, { excludeVariableSets: false, standardConformingStrings: true }).pinReason).toBeUndefined();
    expect(classifySql(hidden, { excludeVariableSets: false, standardConformingStrings: false }).pinReason).toBe(
      PIN_REASONS.setStatement,
    );
  });
});

describe('EXCLUDE_VARIABLE_SETS filter', () => {
  it.each([
    'SET search_path = app',
    'SET SESSION work_mem = 65536',
    'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY',
    'RESET search_path',
    'RESET ALL',
    "SELECT set_config('search_path', 'app', false)",
    "SELECT set_config($1, $2, false)",
  ])('does not pin %s', (sql) => {
    expect(pinReasonOf(sql, true)).toBeUndefined();
  });

  it.each([
    ['SET ROLE reporting', PIN_REASONS.setRole],
    ['SET SESSION AUTHORIZATION alice', PIN_REASONS.setSessionAuthorization],
    ["SELECT set_config('role', 'reporting', false)", PIN_REASONS.setConfig],
    ["SELECT set_config('ROLE', 'reporting', false)", PIN_REASONS.setConfig],
  ])('still pins identity changes: %s', (sql, reason) => {
    expect(pinReasonOf(sql, true)).toBe(reason);
  });

  it('still pins everything else, including in the same statement or string as a SET', () => {
    expect(pinReasonOf('LISTEN x', true)).toBe(PIN_REASONS.listen);
    expect(pinReasonOf('SET a = 1; CREATE TEMP TABLE t (a int)', true)).toBe(PIN_REASONS.temporaryTable);
    expect(pinReasonOf("SELECT set_config('a.b', '1', false), pg_advisory_lock(1)", true)).toBe(PIN_REASONS.advisoryLock);
  });
});

describe('statements larger than 16 KB', () => {
  const padding = (bytes: number): string => `SELECT '${'x'.repeat(bytes - "SELECT ''".length)}'`;

  it('pins above 16384 bytes, not at it', () => {
    expect(padding(MAX_UNPINNED_STATEMENT_BYTES)).toHaveLength(16384);
    expect(pinReasonOf(padding(MAX_UNPINNED_STATEMENT_BYTES))).toBeUndefined();
    expect(pinReasonOf(padding(MAX_UNPINNED_STATEMENT_BYTES + 1))).toBe(PIN_REASONS.oversized);
  });

  it('counts UTF-8 bytes, not characters', () => {
    const text = `SELECT '${'é'.repeat(8200)}'`; // 8209 characters, 16409 bytes
    expect(pinReasonOf(text)).toBe(PIN_REASONS.oversized);
  });

  it('applies regardless of the variable-set filter and still reports invalidation', () => {
    const big = `${padding(20000)}; DEALLOCATE ALL`;
    expect(classifySql(big, { excludeVariableSets: true })).toEqual({
      pinReason: PIN_REASONS.oversized,
      invalidatesPreparedStatements: true,
    });
  });
});

describe('invalidatesPreparedStatements', () => {
  const effectsOf = (sql: string): ReturnType<typeof classifySql> => classifySql(sql, { excludeVariableSets: false });

  it.each(['DEALLOCATE ALL', 'deallocate prepare all', 'DISCARD ALL'])('%s invalidates', (sql) => {
    expect(effectsOf(sql).invalidatesPreparedStatements).toBe(true);
  });

  it.each(['DEALLOCATE q', 'DEALLOCATE PREPARE q', 'DISCARD PLANS', 'DISCARD TEMP', 'SELECT 1', "SELECT 'DEALLOCATE ALL'"])(
    '%s does not',
    (sql) => {
      expect(effectsOf(sql).invalidatesPreparedStatements).toBeUndefined();
    },
  );

  it('DEALLOCATE ALL does not pin; DISCARD ALL pins and invalidates', () => {
    expect(effectsOf('DEALLOCATE ALL')).toEqual({ invalidatesPreparedStatements: true });
    expect(effectsOf('DISCARD ALL')).toEqual({ pinReason: PIN_REASONS.discard, invalidatesPreparedStatements: true });
  });

  it('is reported from any statement of a multi-statement string, even after a pin', () => {
    expect(effectsOf('SET a = 1; DEALLOCATE ALL')).toEqual({
      pinReason: PIN_REASONS.setStatement,
      invalidatesPreparedStatements: true,
    });
  });
});

describe('fast path', () => {
  it('returns an empty result for ordinary queries', () => {
    expect(classifySql('SELECT abalance FROM pgbench_accounts WHERE aid = 12345;', { excludeVariableSets: false })).toEqual({});
    expect(classifySql('UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1', { excludeVariableSets: false })).toEqual({});
  });

  it('survives unterminated strings, identifiers, comments and dollar quotes', () => {
    for (const sql of ["SELECT 'abc", 'SELECT "abc', 'SELECT /* abc', 'SELECT $x$ abc', "SELECT E'abc\\", 'SET', 'SET SESSION', 'SELECT set_config(', 'DECLARE c', 'SELECT 1 INTO', 'SELECT U&"a\\zzzz" UESCAPE']) {
      expect(() => classifySql(sql, { excludeVariableSets: false })).not.toThrow();
    }
  });
});
