/**
 * Multiplexing, pinning and tracked session state end to end: many mysql2 clients over a
 * pool of two MariaDB connections.
 */
import * as mysql from 'mysql2/promise';
import type { Connection } from 'mysql2/promise';
import type { MariadbServer } from '../harness/mariadb';
import { TidepoolProcess, startTidepool } from '../harness/tidepool';
import { APP_DB, APP_PASSWORD, APP_USER, RawMysqlClient, connectError, connectThroughProxy, mariadbThroughProxy, queryValue, serverConnectionCount, startServerWithAppUser } from './support';

let server: MariadbServer;
let proxy: TidepoolProcess;

beforeAll(async () => {
  server = await startServerWithAppUser({ maxConnections: 20, settings: { 'max-allowed-packet': String(64 * 1024 * 1024) } });
  await server.mysql(`CREATE TABLE ${APP_DB}.items (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB; INSERT INTO ${APP_DB}.items (name) VALUES ('a'), ('b'), ('c');`);
  await server.mysql(`CREATE PROCEDURE ${APP_DB}.make_scratch() CREATE TEMPORARY TABLE proc_scratch (id INT)`);
  proxy = await startTidepool({
    engineFamily: 'MYSQL',
    targets: [{ host: server.host, port: server.port }],
    users: [{ name: APP_USER, password: APP_PASSWORD }],
    // 15% of max_connections 20 is 3, one of them held by the writer probe: a pool of 2 server connections.
    config: { connectionPoolConfig: { maxConnectionsPercent: 15, connectionBorrowTimeout: 10 } },
  });
});

afterAll(async () => {
  await proxy?.stop();
  await server?.stop();
});

function pinLines(): Record<string, unknown>[] {
  return proxy.logs().filter((line) => line.event === 'pinned');
}

let barriers = 0;
/**
 * Waits until every log line the proxy wrote so far has arrived here: a failed login by a
 * made-up user logs a line, and log lines arrive in order.
 */
async function logBarrier(): Promise<void> {
  const user = `barrier-${++barriers}`;
  await connectError(proxy, { user, password: 'x' });
  await proxy.waitForLog((line) => line.event === 'auth-failed' && line.user === user, 5000);
}

/** Pin log lines after the first `before`, once at least one arrived (logs come from the proxy process asynchronously). */
async function pinLinesAfter(before: number): Promise<Record<string, unknown>[]> {
  await proxy.waitForLog(() => pinLines().length > before, 5000);
  return pinLines().slice(before);
}

describe('multiplexing', () => {
  test('twelve clients share two server connections', async () => {
    const clients = await Promise.all(Array.from({ length: 12 }, () => connectThroughProxy(proxy)));
    const ids = new Set<number>();
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(clients.map((c) => queryValue<number>(c, 'SELECT CONNECTION_ID()')));
      for (const id of results) ids.add(id);
    }
    expect(ids.size).toBeGreaterThanOrEqual(1);
    expect(ids.size).toBeLessThanOrEqual(2);
    expect(await serverConnectionCount(server)).toBeLessThanOrEqual(3);
    await Promise.all(clients.map((c) => c.end()));
  });

  test('a transaction keeps its connection until COMMIT, detected from the status flags', async () => {
    const [a, b] = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
    await a.query('START TRANSACTION');
    const first = await queryValue<number>(a, 'SELECT CONNECTION_ID()');
    await a.query("UPDATE items SET name = 'in-trans' WHERE id = 1");
    // b's work goes to the other connection meanwhile and does not see the uncommitted row.
    expect(await queryValue(b, 'SELECT name FROM items WHERE id = 1')).toBe('a');
    expect(await queryValue<number>(a, 'SELECT CONNECTION_ID()')).toBe(first);
    await a.query('ROLLBACK');
    expect(await queryValue(b, 'SELECT name FROM items WHERE id = 1')).toBe('a');
    await Promise.all([a.end(), b.end()]);
  });

  test('multi-statement results and a multi-result CALL are relayed whole', async () => {
    const connection = await connectThroughProxy(proxy, { multipleStatements: true });
    const [results] = await connection.query('SELECT 1 AS one; SELECT 2 AS two');
    expect(results).toEqual([[{ one: 1 }], [{ two: 2 }]]);
    await connection.query('CREATE PROCEDURE IF NOT EXISTS two_results() BEGIN SELECT 1 AS x; SELECT 2 AS y; END');
    const [called] = await connection.query('CALL two_results()');
    expect((called as unknown[]).slice(0, 2)).toEqual([[{ x: 1 }], [{ y: 2 }]]);
    await connection.end();
  });

  test('payloads of 16 MB and more are split and joined correctly both ways', async () => {
    const connection = await connectThroughProxy(proxy);
    await connection.query('CREATE TABLE IF NOT EXISTS blobs (id INT PRIMARY KEY, body LONGBLOB)');
    const body = Buffer.alloc(17 * 1024 * 1024 + 3, 0x61);
    body.write('end', body.length - 3);
    // A 17 MB COM_QUERY (several packets to the server) …
    await connection.query('REPLACE INTO blobs VALUES (1, ?)', [body]);
    // … and a 17 MB row back (several packets to the client).
    const [rows] = await connection.query<import('mysql2/promise').RowDataPacket[]>('SELECT body, LENGTH(body) AS length FROM blobs WHERE id = 1');
    expect(rows[0]!.length).toBe(body.length);
    expect(Buffer.compare(rows[0]!.body as Buffer, body)).toBe(0);
    // The session goes on normally afterwards (the statement pinned it as larger than 16 KB).
    expect(await queryValue(connection, 'SELECT 1')).toBe(1);
    await connection.query('DROP TABLE blobs');
    await connection.end();
  });

  test('a client without multi-statements cannot run two statements, whoever used the connection before', async () => {
    const multi = await connectThroughProxy(proxy, { multipleStatements: true });
    await multi.query('SELECT 1; SELECT 2');
    const single = await connectThroughProxy(proxy);
    for (let i = 0; i < 3; i++) {
      await expect(single.query('SELECT 1; SELECT 2')).rejects.toMatchObject({ errno: 1064 });
    }
    await Promise.all([multi.end(), single.end()]);
  });
});

describe('big results through a reused read buffer', () => {
  // The proxy reads server bytes into one reused buffer and forwards views of it; while a client
  // reads slowly those views wait in its socket's queue and must not be overwritten by later reads.
  test('a client that stops reading mid-result gets every byte right, and others keep working meanwhile', async () => {
    const sql = 'SELECT seq, REPEAT(MD5(seq), 8) AS body FROM seq_1_to_30000';
    const slow = await connectThroughProxy(proxy);
    const other = await connectThroughProxy(proxy);
    try {
      const directConnection = await mysql.createConnection({ host: server.host, port: server.port, user: APP_USER, password: APP_PASSWORD, database: APP_DB });
      const [direct] = await directConnection.query<mysql.RowDataPacket[]>({ sql, rowsAsArray: true });
      await directConnection.end();
      const socket = (slow as unknown as { connection: { stream: { pause(): void; resume(): void } } }).connection.stream;
      socket.pause();
      const result = slow.query<mysql.RowDataPacket[]>({ sql, rowsAsArray: true });
      // Meanwhile the other server connection serves big results too, through the same proxy.
      for (let i = 0; i < 5; i++) {
        const [rows] = await other.query<mysql.RowDataPacket[]>({ sql: 'SELECT seq, REPEAT(SHA1(seq), 6) FROM seq_1_to_3000', rowsAsArray: true });
        expect(rows.length).toBe(3000);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      socket.resume();
      const [rows] = await result;
      expect(rows.length).toBe(30_000);
      const text = (all: mysql.RowDataPacket[]) => all.map((row) => `${String(row[0])}:${String(row[1])}`);
      expect(direct.length).toBe(30_000);
      expect(text(rows)).toEqual(text(direct));
    } finally {
      await slow.end();
      await other.end();
    }
  });
});

describe('binary prepared statements multiplex', () => {
  test('statements prepared once run on either connection, with proxy-side ids', async () => {
    const [a, b] = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
    const seen = new Set<number>();
    for (let i = 0; i < 6; i++) {
      // b holds one connection in a transaction every other round, so a's statement lands on both.
      if (i % 2 === 0) await b.query('BEGIN');
      if (i % 2 === 0) await b.query('SELECT 1');
      const [rows] = await a.execute<import('mysql2/promise').RowDataPacket[]>('SELECT name, CONNECTION_ID() AS cid FROM items WHERE id = ?', [2]);
      expect(rows[0]!.name).toBe('b');
      seen.add(rows[0]!.cid as number);
      if (i % 2 === 0) await b.query('COMMIT');
    }
    expect(seen.size).toBe(2);
    await logBarrier();
    expect(pinLines().filter((line) => line.reason === 'text-prepare')).toHaveLength(0);
    await Promise.all([a.end(), b.end()]);
  });

  test('a statement re-prepared on another connection resolves names in the schema it was prepared in', async () => {
    const [a, b] = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
    const sql = 'SELECT name, CONNECTION_ID() AS cid, DATABASE() AS db FROM items WHERE id = ?';
    await a.execute(sql, [1]);
    await a.query('USE otherdb');
    const seen = new Set<number>();
    for (let i = 0; i < 4; i++) {
      if (i % 2 === 0) {
        await b.query('BEGIN');
        await b.query('SELECT 1');
      }
      const [rows] = await a.execute<import('mysql2/promise').RowDataPacket[]>(sql, [1]);
      expect(rows[0]!.name).toBe('a');
      seen.add(rows[0]!.cid as number);
      expect(await queryValue(a, 'SELECT DATABASE()')).toBe('otherdb');
      if (i % 2 === 0) await b.query('COMMIT');
    }
    expect(seen.size).toBe(2);
    await Promise.all([a.end(), b.end()]);
  });

  test('a server-side cursor keeps its connection until the last row is fetched; COM_STMT_SEND_LONG_DATA reaches the execute', async () => {
    const raw = await RawMysqlClient.connect(proxy);
    const other = await connectThroughProxy(proxy);
    try {
      const prepare = (sql: string) => raw.command(Buffer.concat([Buffer.from([0x16]), Buffer.from(sql)]));
      const prepared = await prepare('SELECT seq FROM seq_1_to_5');
      const statementId = prepared.tracker.prepareOk!.statementId;
      const execute = Buffer.alloc(10);
      execute[0] = 0x17;
      execute.writeUInt32LE(statementId, 1);
      execute[5] = 0x01; // CURSOR_TYPE_READ_ONLY
      execute.writeUInt32LE(1, 6);
      const opened = await raw.command(execute);
      expect(opened.tracker.cursorOpen).toBe(true);
      const fetch = Buffer.alloc(9);
      fetch[0] = 0x1c;
      fetch.writeUInt32LE(statementId, 1);
      fetch.writeUInt32LE(3, 5);
      const rowsSeen: number[] = [];
      for (let round = 0; round < 2; round++) {
        // Another client's transaction in between: it must get the other connection, not the cursor's.
        await other.query('BEGIN');
        await other.query('SELECT 1');
        const fetched = await raw.command(fetch);
        await other.query('COMMIT');
        // Binary rows: 0x00 header, NULL bitmap, then the BIGINT UNSIGNED value.
        for (const payload of fetched.payloads) if (payload[0] === 0x00 && payload.length === 10) rowsSeen.push(Number(payload.readBigUInt64LE(2)));
      }
      expect(rowsSeen).toEqual([1, 2, 3, 4, 5]);

      // Long data: the parameter sent in pieces must reach the execute on the same connection.
      const withParameter = await prepare('SELECT CONCAT(?, \'!\')');
      const parameterStatement = withParameter.tracker.prepareOk!.statementId;
      for (const piece of ['long ', 'data']) {
        const longData = Buffer.concat([Buffer.from([0x18]), Buffer.alloc(6), Buffer.from(piece)]);
        longData.writeUInt32LE(parameterStatement, 1);
        raw.send(longData);
      }
      // Execute: no cursor, 1 iteration, NULL bitmap 0, types bound: MYSQL_TYPE_STRING (0xfe).
      const executeLong = Buffer.from([0x17, 0, 0, 0, 0, 0x00, 1, 0, 0, 0, 0x00, 0x01, 0xfe, 0x00]);
      executeLong.writeUInt32LE(parameterStatement, 1);
      const result = await raw.command(executeLong);
      const row = result.payloads.find((payload) => payload[0] === 0x00 && payload.length > 2 && payload.includes(0x21));
      expect(row?.toString('utf8', 3)).toBe('long data!');
    } finally {
      raw.close();
      await other.end();
    }
  });

  test('parameter types stay right when the same SQL is shared by clients binding different types', async () => {
    const [a, b] = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
    const [ra] = await a.execute<import('mysql2/promise').RowDataPacket[]>('SELECT CONCAT(?, "") AS v', [5]);
    const [rb] = await b.execute<import('mysql2/promise').RowDataPacket[]>('SELECT CONCAT(?, "") AS v', ['text']);
    expect(ra[0]!.v).toBe('5');
    expect(rb[0]!.v).toBe('text');
    await a.unprepare('SELECT CONCAT(?, "") AS v');
    await Promise.all([a.end(), b.end()]);
  });
});

interface PinCase {
  name: string;
  setup: string;
  reason: string;
  /** Shows the pinned state is there on the same connection. */
  check?: { sql: string; expected: unknown };
  /** Run by a later client: the state must not have leaked. */
  leak?: { sql: string; expected?: unknown; errno?: number };
}

const BIG_STATEMENT = `SELECT '${'x'.repeat(17 * 1024)}' IS NOT NULL`;

const PIN_CASES: PinCase[] = [
  { name: 'SET @user variable', setup: 'SET @pinned_var = 42', reason: 'user-variable', check: { sql: 'SELECT @pinned_var', expected: 42 }, leak: { sql: 'SELECT @pinned_var', expected: null } },
  { name: 'SELECT … INTO @var', setup: 'SELECT 7 INTO @into_var', reason: 'user-variable', check: { sql: 'SELECT @into_var', expected: 7 }, leak: { sql: 'SELECT @into_var', expected: null } },
  { name: ':= assignment', setup: 'SELECT @assigned := 3', reason: 'user-variable', check: { sql: 'SELECT @assigned', expected: 3 } },
  { name: 'SET of an untracked system variable', setup: 'SET SESSION max_join_size = 12345', reason: 'system-variable', check: { sql: 'SELECT @@max_join_size', expected: 12345 }, leak: { sql: 'SELECT @@max_join_size = 12345', expected: 0 } },
  { name: 'LOCK TABLES', setup: 'LOCK TABLES items READ', reason: 'table-lock', check: { sql: 'SELECT COUNT(*) FROM items', expected: 3 } },
  { name: 'GET_LOCK', setup: "SELECT GET_LOCK('tidepool_lock', 0)", reason: 'get-lock', check: { sql: "SELECT IS_USED_LOCK('tidepool_lock') = CONNECTION_ID()", expected: 1 }, leak: { sql: "SELECT IS_FREE_LOCK('tidepool_lock')", expected: 1 } },
  { name: 'CREATE TEMPORARY TABLE', setup: 'CREATE TEMPORARY TABLE scratch (id INT)', reason: 'temporary-table', check: { sql: 'SELECT COUNT(*) FROM scratch', expected: 0 }, leak: { sql: 'SELECT COUNT(*) FROM scratch', errno: 1146 } },
  { name: 'text PREPARE', setup: "PREPARE text_stmt FROM 'SELECT 5'", reason: 'text-prepare', check: { sql: 'EXECUTE text_stmt', expected: 5 }, leak: { sql: 'EXECUTE text_stmt', errno: 1243 } },
  { name: 'SQL_CALC_FOUND_ROWS', setup: 'SELECT SQL_CALC_FOUND_ROWS id FROM items LIMIT 1', reason: 'found-rows', check: { sql: 'SELECT FOUND_ROWS()', expected: 3 } },
  { name: 'LAST_INSERT_ID() in an expression', setup: 'SELECT LAST_INSERT_ID() + 0', reason: 'last-insert-id' },
  { name: 'a statement over 16 KB', setup: BIG_STATEMENT, reason: 'statement-too-large' },
  { name: 'a /*! version comment */', setup: '/*!40101 SELECT 1 */', reason: 'version-comment' },
  {
    name: 'a stored procedure that makes a temporary table (seen by the server’s state-change tracker)',
    setup: 'CALL make_scratch()',
    reason: 'session-state-change',
    check: { sql: 'SELECT COUNT(*) FROM proc_scratch', expected: 0 },
    leak: { sql: 'SELECT COUNT(*) FROM proc_scratch', errno: 1146 },
  },
  { name: 'SET TRANSACTION', setup: 'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', reason: 'set-transaction' },
];

describe('pinning', () => {
  test.each(PIN_CASES)('$name pins with reason $reason and leaks nothing after disconnect', async (pinCase) => {
    await logBarrier();
    const before = pinLines().length;
    const pinned = await connectThroughProxy(proxy);
    const other = await connectThroughProxy(proxy);
    try {
      await pinned.query(pinCase.setup);
      if (pinCase.check) expect(await queryValue(pinned, pinCase.check.sql)).toEqual(pinCase.check.expected);
      const cid = await queryValue<number>(pinned, 'SELECT CONNECTION_ID()');
      // Another client working in between cannot take the pinned connection.
      await other.query('BEGIN');
      expect(await queryValue<number>(other, 'SELECT CONNECTION_ID()')).not.toBe(cid);
      expect(await queryValue<number>(pinned, 'SELECT CONNECTION_ID()')).toBe(cid);
      await other.query('COMMIT');
      await pinLinesAfter(before);
      await logBarrier();
      const lines = pinLines().slice(before);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ reason: pinCase.reason, msg: expect.stringContaining(`pinned: ${pinCase.reason}`) });
    } finally {
      pinned.destroy();
      other.destroy();
    }
    if (pinCase.leak) {
      // Later clients, whichever connection they get, see none of it.
      const later = await Promise.all([connectThroughProxy(proxy), connectThroughProxy(proxy)]);
      await later[0]!.query('BEGIN');
      await later[0]!.query('SELECT 1');
      for (const client of later) {
        const leak = pinCase.leak;
        if (leak.errno !== undefined) {
          await expect(client.query(leak.sql)).rejects.toMatchObject({ errno: leak.errno });
        } else {
          expect(await queryValue(client, leak.sql)).toEqual(leak.expected);
        }
      }
      await later[0]!.query('COMMIT');
      await Promise.all(later.map((c) => c.end()));
    }
  });

  test('UNLOCK TABLES ends a table-lock pin', async () => {
    const client = await connectThroughProxy(proxy);
    await client.query('LOCK TABLES items WRITE');
    await client.query('UNLOCK TABLES');
    const holder = await connectThroughProxy(proxy);
    await holder.query('BEGIN');
    const holderCid = await queryValue<number>(holder, 'SELECT CONNECTION_ID()');
    // Unpinned: the client now runs on whichever connection is free.
    expect(await queryValue<number>(client, 'SELECT CONNECTION_ID()')).not.toBe(holderCid);
    await holder.query('COMMIT');
    await Promise.all([client.end(), holder.end()]);
  });

  test('SELECT LAST_INSERT_ID() is answered from the client’s own last insert, without pinning', async () => {
    await logBarrier();
    const before = pinLines().length;
    const a = await connectThroughProxy(proxy);
    const b = await connectThroughProxy(proxy);
    const [result] = await a.query<import('mysql2/promise').ResultSetHeader>("INSERT INTO items (name) VALUES ('new')");
    await b.query("INSERT INTO items (name) VALUES ('other')");
    expect(Number(await queryValue(a, 'SELECT LAST_INSERT_ID()'))).toBe(result.insertId);
    await logBarrier();
    expect(pinLines().length).toBe(before);
    await a.query('DELETE FROM items WHERE id > 3');
    await Promise.all([a.end(), b.end()]);
  });

  test('pins survive the mariadb CLI too', async () => {
    const out = await mariadbThroughProxy(proxy, 'SET @cli = 9; SELECT @cli;');
    expect(out.stderr).toBe('');
    expect(out.stdout.trim()).toBe('9');
  });
});

describe('tracked session state', () => {
  /** Alternates `client` between the two pooled connections by holding one in a transaction every other round. */
  async function onBothConnections(client: Connection, sql: string, rounds = 4): Promise<{ cids: Set<number>; rows: unknown[][] }> {
    const holder = await connectThroughProxy(proxy);
    const cids = new Set<number>();
    const rows: unknown[][] = [];
    for (let i = 0; i < rounds; i++) {
      if (i % 2 === 0) {
        await holder.query('BEGIN');
        await holder.query('SELECT 1');
      }
      const [result] = await client.query<import('mysql2/promise').RowDataPacket[]>({ sql: `SELECT CONNECTION_ID(), ${sql}`, rowsAsArray: true });
      const row = result[0] as unknown as unknown[];
      cids.add(row[0] as number);
      rows.push(row.slice(1));
      if (i % 2 === 0) await holder.query('COMMIT');
    }
    await holder.end();
    return { cids, rows };
  }

  test('USE, SET NAMES, time_zone, sql_mode and autocommit follow the client to another connection, without pinning', async () => {
    await logBarrier();
    const before = pinLines().length;
    const client = await connectThroughProxy(proxy);
    await client.query('USE otherdb');
    await client.query('SET NAMES latin1');
    await client.query("SET time_zone = '+05:00'");
    await client.query("SET sql_mode = 'ANSI_QUOTES'");
    await client.query('SET autocommit = 0');
    const { cids, rows } = await onBothConnections(client, 'DATABASE(), @@character_set_client, @@collation_connection, @@time_zone, @@sql_mode, @@autocommit');
    expect(cids.size).toBe(2);
    for (const row of rows) expect(row).toEqual(['otherdb', 'latin1', 'latin1_swedish_ci', '+05:00', 'ANSI_QUOTES', 0]);
    await logBarrier();
    expect(pinLines().length).toBe(before);

    // A fresh client on the same connections sees its own (default) state.
    const fresh = await connectThroughProxy(proxy);
    const seen = await onBothConnections(fresh, 'DATABASE(), @@character_set_client, @@time_zone, @@sql_mode, @@autocommit');
    expect(seen.cids.size).toBe(2);
    const defaultMode = await server.mysql('SELECT @@GLOBAL.sql_mode');
    for (const row of seen.rows) expect(row).toEqual([APP_DB, 'utf8mb4', 'SYSTEM', defaultMode, 1]);
    await Promise.all([client.end(), fresh.end()]);
  });

  test('a client that logged in without a database and ran USE keeps its connection warm; clients without one never see another’s', async () => {
    const client = await connectThroughProxy(proxy, { database: undefined });
    expect(await queryValue(client, 'SELECT DATABASE()')).toBeNull();
    await client.query('USE otherdb');
    const ids = new Set<number>();
    for (let i = 0; i < 4; i++) ids.add(await queryValue<number>(client, 'SELECT CONNECTION_ID()'));
    expect(ids.size).toBe(1);
    expect(await queryValue(client, 'SELECT DATABASE()')).toBe('otherdb');
    const fresh = await connectThroughProxy(proxy, { database: undefined });
    for (let i = 0; i < 3; i++) expect(await queryValue(fresh, 'SELECT DATABASE()')).toBeNull();
    await Promise.all([client.end(), fresh.end()]);
  });

  test('autocommit=0 keeps the connection from the first write until COMMIT', async () => {
    const client = await connectThroughProxy(proxy);
    const watcher = await connectThroughProxy(proxy);
    await client.query('SET autocommit = 0');
    await client.query("UPDATE items SET name = 'uncommitted' WHERE id = 3");
    expect(await queryValue(watcher, 'SELECT name FROM items WHERE id = 3')).toBe('c');
    await client.query('COMMIT');
    expect(await queryValue(watcher, 'SELECT name FROM items WHERE id = 3')).toBe('uncommitted');
    await client.query("UPDATE items SET name = 'c' WHERE id = 3");
    await client.query('COMMIT');
    await Promise.all([client.end(), watcher.end()]);
  });
});
