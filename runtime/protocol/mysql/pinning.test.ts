import { MysqlClassifyOptions, MysqlSqlClassification, classifyMysqlSql, describePinReason, isTrackedSessionVariable } from './pinning';

const classify = (sql: string, options?: MysqlClassifyOptions): MysqlSqlClassification => classifyMysqlSql(sql, options);
const pinOf = (sql: string, options?: MysqlClassifyOptions): string | undefined => classify(sql, options).pinReason;
const EXCLUDE = { excludeVariableSets: true };

describe('statements that never pin', () => {
  it.each([
    'SELECT 1',
    'SELECT c FROM sbtest1 WHERE id=42',
    'UPDATE sbtest1 SET k=k+1 WHERE id=5',
    'INSERT INTO t SET a = 1, b = @x',
    'INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = 2',
    'SELECT @x, @@autocommit, @@session.sql_mode',
    'BEGIN',
    'COMMIT',
    'CALL refresh_totals(3)',
    'SELECT * FROM t FOR UPDATE',
    'SELECT * FROM t LOCK IN SHARE MODE',
    'SELECT RELEASE_LOCK(\'x\')',
    'DROP TEMPORARY TABLE tmp',
    'EXECUTE stmt USING @a',
    'DEALLOCATE PREPARE stmt',
    "SELECT * INTO OUTFILE '/tmp/out' FROM t",
    'SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t',
    'SELECT mydb.get_lock(1)',
    'CREATE TABLE temporary_things (id INT)',
    'FLUSH TABLES',
    'SET GLOBAL max_connections = 500',
    "SET @@global.sql_mode = ''",
    'SET GLOBAL wait_timeout = 10, interactive_timeout = 10',
    "SET PASSWORD = 'new'",
    "SET DEFAULT ROLE admin TO 'u'@'%'",
    'SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED',
    'SET STATEMENT max_statement_time=1 FOR SELECT * FROM t',
  ])('%s', (sql) => {
    expect(classify(sql)).toEqual({});
  });

  it('answers without lexing when no trigger word occurs (the shared empty result)', () => {
    expect(classify('SELECT a FROM b')).toBe(classify('DELETE FROM c WHERE d = 1'));
  });
});

describe('user variables', () => {
  it.each([
    ['SET @x = 1', '@x'],
    ['set @`my var` := 5', '@my var'],
    ["SET @'quoted' = 'v'", '@quoted'],
    ['SELECT id INTO @id FROM t LIMIT 1', 'INTO @id'],
    ['SELECT a, b FROM t INTO @a, @b', 'INTO @a'],
    ['SELECT @rownum := @rownum + 1 AS n FROM t', '@rownum :='],
    ['DO @a:=1', '@a :='],
    ['SET autocommit = (@a := 1)', '@a :='],
  ])('%s pins (%s)', (sql, detail) => {
    expect(classify(sql)).toMatchObject({ pinReason: 'user-variable', pinDetail: detail });
  });

  it('reports both the pin and the tracked part of a mixed SET', () => {
    expect(classify('SET autocommit=1, @x=2')).toEqual({
      pinReason: 'user-variable',
      pinDetail: '@x',
      trackedSets: [{ name: 'autocommit', value: '1', isLiteral: true }],
    });
  });

  it('stops pinning SET @x with EXCLUDE_VARIABLE_SETS, but not INTO @x or :=', () => {
    expect(classify('SET @x = 1', EXCLUDE)).toEqual({});
    expect(pinOf('SELECT 1 INTO @x', EXCLUDE)).toBe('user-variable');
    expect(pinOf('SELECT @x := 1', EXCLUDE)).toBe('user-variable');
  });
});

describe('system variables', () => {
  it('tracks the tracked variables instead of pinning, with scope forms', () => {
    expect(classify("SET sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES'")).toEqual({
      trackedSets: [{ name: 'sql_mode', value: 'ANSI_QUOTES,STRICT_ALL_TABLES', isLiteral: true }],
    });
    expect(classify("SET SESSION time_zone = '+00:00', autocommit = 0, LOCAL session_track_schema = ON").trackedSets).toEqual([
      { name: 'time_zone', value: '+00:00', isLiteral: true },
      { name: 'autocommit', value: '0', isLiteral: true },
      { name: 'session_track_schema', value: 'ON', isLiteral: true },
    ]);
    expect(classify('SET @@session.autocommit = OFF, @@character_set_results = NULL').trackedSets).toEqual([
      { name: 'autocommit', value: 'OFF', isLiteral: true },
      { name: 'character_set_results', value: 'NULL', isLiteral: true },
    ]);
    expect(classify('SET collation_connection = utf8mb4_bin')).toEqual({ trackedSets: [{ name: 'collation_connection', value: 'utf8mb4_bin', isLiteral: true }] });
  });

  it('tracks SET NAMES (with COLLATE) and SET CHARACTER SET', () => {
    expect(classify('SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci').trackedSets).toEqual([
      { name: 'names', value: 'utf8mb4', isLiteral: true },
      { name: 'collation_connection', value: 'utf8mb4_unicode_ci', isLiteral: true },
    ]);
    expect(classify("SET NAMES 'latin1'").trackedSets).toEqual([{ name: 'names', value: 'latin1', isLiteral: true }]);
    expect(classify('SET CHARACTER SET utf8mb4').trackedSets).toEqual([{ name: 'character set', value: 'utf8mb4', isLiteral: true }]);
    expect(classify('SET CHARSET DEFAULT').trackedSets).toEqual([{ name: 'character set', value: 'DEFAULT', isLiteral: false }]);
  });

  it('keeps expressions as written and marks them non-literal', () => {
    expect(classify("SET sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES'), time_zone = DEFAULT").trackedSets).toEqual([
      { name: 'sql_mode', value: "CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')", isLiteral: false },
      { name: 'time_zone', value: 'DEFAULT', isLiteral: false },
    ]);
  });

  it('pins SETs of untracked session variables unless EXCLUDE_VARIABLE_SETS', () => {
    expect(classify('SET max_execution_time = 1000')).toEqual({ pinReason: 'system-variable', pinDetail: 'max_execution_time' });
    expect(classify("SET SESSION transaction_isolation = 'READ-COMMITTED'").pinDetail).toBe('transaction_isolation');
    expect(classify('SET @@local.foreign_key_checks = 0').pinDetail).toBe('foreign_key_checks');
    expect(classify('SET validate_password.length = 4').pinDetail).toBe('validate_password.length');
    expect(classify('SET GLOBAL wait_timeout = 1, SESSION wait_timeout = 2').pinDetail).toBe('wait_timeout');
    expect(pinOf('SET ROLE admin')).toBe('system-variable');
    expect(classify('SET max_execution_time = 1000, sql_mode = ""', EXCLUDE)).toEqual({
      trackedSets: [{ name: 'sql_mode', value: '', isLiteral: true }],
    });
  });

  it('knows which names are tracked', () => {
    expect(isTrackedSessionVariable('character_set_database')).toBe(true);
    expect(isTrackedSessionVariable('time_zone')).toBe(true);
    expect(isTrackedSessionVariable('wait_timeout')).toBe(false);
  });
});

describe('SET TRANSACTION', () => {
  it('pins for the next transaction; SESSION characteristics pin as an untracked variable', () => {
    expect(classify('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE')).toEqual({ pinReason: 'set-transaction', pinDetail: 'SET TRANSACTION' });
    expect(classify('SET SESSION TRANSACTION READ ONLY')).toEqual({ pinReason: 'system-variable', pinDetail: 'SET SESSION TRANSACTION' });
    expect(classify('SET TRANSACTION READ WRITE', EXCLUDE)).toEqual({});
  });
});

describe('locks, temporary tables, prepare, found rows', () => {
  it.each([
    ['LOCK TABLES t READ, u WRITE', 'table-lock'],
    ['lock table t write', 'table-lock'],
    ['LOCK INSTANCE FOR BACKUP', 'table-lock'],
    ['FLUSH TABLES WITH READ LOCK', 'table-lock'],
    ['FLUSH TABLES t1, t2 WITH READ LOCK', 'table-lock'],
    ['FLUSH TABLES t1 FOR EXPORT', 'table-lock'],
    ["SELECT GET_LOCK('lock1', 10)", 'get-lock'],
    ["DO get_lock ('x', 1)", 'get-lock'],
    ["SELECT service_get_write_locks('ns', 'l', 10)", 'get-lock'],
    ['CREATE TEMPORARY TABLE tmp (id INT)', 'temporary-table'],
    ['create or replace temporary table tmp as select 1', 'temporary-table'],
    ["PREPARE stmt FROM 'SELECT ?'", 'text-prepare'],
    ['SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10', 'found-rows'],
    ['SELECT FOUND_ROWS()', 'found-rows'],
    ['INSERT INTO log VALUES (LAST_INSERT_ID())', 'last-insert-id'],
    ['UPDATE seq SET id = LAST_INSERT_ID(id + 1)', 'last-insert-id'],
    ['SELECT LAST_INSERT_ID() + 1', 'last-insert-id'],
  ])('%s → %s', (sql, reason) => {
    expect(pinOf(sql)).toBe(reason);
  });

  it('notes UNLOCK TABLES without pinning', () => {
    expect(classify('UNLOCK TABLES')).toEqual({ unlockTables: true });
  });

  it('reports USE as the schema it selects', () => {
    expect(classify('USE shop')).toEqual({ useSchema: 'shop' });
    expect(classify('use `my db`')).toEqual({ useSchema: 'my db' });
  });
});

describe('LAST_INSERT_ID() that the proxy can answer itself', () => {
  it.each([
    ['SELECT LAST_INSERT_ID()', 'LAST_INSERT_ID()'],
    ['select last_insert_id() as id', 'id'],
    ['SELECT LAST_INSERT_ID() `new id`', 'new id'],
    ['SELECT LAST_INSERT_ID() FROM DUAL LIMIT 1', 'LAST_INSERT_ID()'],
    ['SELECT @@identity', '@@identity'],
    ['SELECT @@last_insert_id AS x;', 'x'],
  ])('%s (column %s)', (sql, columnName) => {
    expect(classify(sql)).toEqual({ pinReason: 'last-insert-id', pinDetail: expect.any(String), lastInsertIdQuery: { columnName } });
  });

  it('is not offered for anything more complex', () => {
    expect(classify('SELECT LAST_INSERT_ID(), 1').lastInsertIdQuery).toBeUndefined();
    expect(classify('SELECT LAST_INSERT_ID() FROM t').lastInsertIdQuery).toBeUndefined();
    expect(classify('SELECT LAST_INSERT_ID(); SELECT 1').lastInsertIdQuery).toBeUndefined();
  });
});

describe('statement size and version comments', () => {
  it('pins statements over 16 KB, measured in UTF-8 bytes', () => {
    expect(pinOf(`SELECT '${'x'.repeat(16_384 - 9)}'`)).toBeUndefined(); // exactly 16384 bytes
    expect(pinOf(`SELECT '${'x'.repeat(16_384 - 8)}'`)).toBe('statement-too-large');
    expect(pinOf(`SELECT '${'é'.repeat(8_200)}'`)).toBe('statement-too-large'); // 8 209 characters, 16 409 bytes
    expect(pinOf('SELECT 1234567890', { maxStatementBytes: 10 })).toBe('statement-too-large');
  });

  it('pins /*! and /*M! version comments, still reading what is inside', () => {
    expect(classify('/*!40101 SET NAMES utf8 */')).toEqual({
      pinReason: 'version-comment',
      pinDetail: '/*!',
      trackedSets: [{ name: 'names', value: 'utf8', isLiteral: true }],
    });
    expect(pinOf('/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */')).toBe('user-variable');
    expect(pinOf('SELECT /*M!100100 1, */ 2')).toBe('version-comment');
    expect(pinOf('/*!SET autocommit=0*/')).toBe('version-comment');
  });
});

describe('lookalikes in strings, identifiers and comments do not pin', () => {
  it.each([
    "SELECT 'SET @x = 1'",
    'SELECT "GET_LOCK(\'x\', 1)"',
    "SELECT 'it''s LOCK TABLES t' AS s",
    "SELECT 'a\\'b GET_LOCK(1) c'",
    'SELECT 1 -- SET @x = 1',
    'SELECT 1 # LOCK TABLES t READ',
    'SELECT /* CREATE TEMPORARY TABLE x */ 1',
    'SELECT 1 /* unterminated SET @x := 1',
    'SELECT `set`, `get_lock` FROM `lock`',
    'INSERT INTO `temporary` VALUES (1)',
    "SELECT 'LAST_INSERT_ID()'",
    'SELECT "/*!40101 nope */"',
  ])('%s', (sql) => {
    expect(classify(sql).pinReason).toBeUndefined();
  });

  it('treats "--" without a following space as two minus signs', () => {
    expect(pinOf("SELECT 1--1, GET_LOCK('a', 1)")).toBe('get-lock');
  });

  it('ends # comments at the newline', () => {
    expect(pinOf('SELECT 1 # comment\n; SET @x = 1')).toBe('user-variable');
  });

  it('honours NO_BACKSLASH_ESCAPES', () => {
    const sql = "SELECT 'C:\\', @x := 1";
    expect(pinOf(sql)).toBeUndefined(); // the backslash escapes the quote: all one string
    expect(pinOf(sql, { noBackslashEscapes: true })).toBe('user-variable');
  });
});

describe('multiple statements and stored routines', () => {
  it('classifies every statement of a multi-statement query, first pin wins', () => {
    expect(classify("SET time_zone = 'UTC'; SET sql_mode = ''; SELECT 1").trackedSets).toHaveLength(2);
    expect(classify('SELECT 1; SET @a = 2; LOCK TABLES t READ')).toMatchObject({ pinReason: 'user-variable' });
  });

  it('does not look into routine bodies (RDS Proxy does not either)', () => {
    const body = "BEGIN SET @x = 1; SELECT GET_LOCK('a', 1); CREATE TEMPORARY TABLE t (i INT); END";
    expect(classify(`CREATE PROCEDURE p() ${body}`)).toEqual({});
    expect(classify(`CREATE DEFINER=\`root\`@\`%\` PROCEDURE p() ${body}`)).toEqual({});
    expect(classify(`CREATE DEFINER = CURRENT_USER() FUNCTION f() RETURNS INT ${body}`)).toEqual({});
    expect(classify(`CREATE OR REPLACE DEFINER='app'@'localhost' TRIGGER trg BEFORE INSERT ON t FOR EACH ROW ${body}`)).toEqual({});
  });

  it('classifies the statement of a MariaDB SET STATEMENT … FOR', () => {
    expect(pinOf('SET STATEMENT max_statement_time=1 FOR SELECT 1 INTO @v')).toBe('user-variable');
  });
});

describe('robustness', () => {
  it('never throws on arbitrary text', () => {
    const alphabet = ['SET', ' ', '@', '@@', "'", '"', '`', '\\', '/*', '*/', '/*!', '--', '#', '\n', ':=', '=', ',', '(', ')', ';', 'x', 'NAMES', 'INTO', 'LOCK', 'é'];
    let seed = 7;
    for (let i = 0; i < 2000; i++) {
      let sql = '';
      const length = 1 + (i % 30);
      for (let j = 0; j < length; j++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        sql += alphabet[seed % alphabet.length];
      }
      expect(() => classifyMysqlSql(sql)).not.toThrow();
    }
  });

  it('describes each pin reason for the log line', () => {
    expect(describePinReason('system-variable')).toBe("SQL changed session settings that the proxy doesn't track");
    expect(describePinReason('statement-too-large')).toMatch(/16 KB/);
  });
});
