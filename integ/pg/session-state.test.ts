/**
 * Per-client session state without pinning (issue 2, "ParameterStatus values …", "Better than
 * RDS Proxy"): startup parameters follow each client across a shared server connection,
 * bad ones are refused like PostgreSQL refuses them, initQuery prepares every server
 * connection, and the extended protocol — unnamed and named prepared statements — is
 * multiplexed with no pin.
 *
 * Pools: `one` has 1 server connection (maxConnectionsPercent 5 of max_connections 20),
 * `two` and `init` have 2 (15 %, less the connection the writer probe holds).
 */
import type { Client } from 'pg';
import { runCommand } from '../harness/processes';
import type { TidepoolProcess } from '../harness/tidepool';
import { APP_PASSWORD, APP_USER, logBarrier, pinLines, ProxyClient, ProxyClientOptions, repeat, TestBed } from './fixtures';

const bed = new TestBed();
let one: TidepoolProcess;
let two: TidepoolProcess;
let init: TidepoolProcess;
const INIT_QUERY_TIMEOUT = '4321ms';

beforeAll(async () => {
  await bed.start({ maxConnections: 20 });
  await bed.pg.psql(
    [
      'CREATE SCHEMA alpha_schema; CREATE SCHEMA beta_schema;',
      "CREATE TABLE public.whoami AS SELECT 'public'::text AS v;",
      "CREATE TABLE alpha_schema.whoami AS SELECT 'alpha'::text AS v;",
      "CREATE TABLE beta_schema.whoami AS SELECT 'beta'::text AS v;",
    ].join('\n'),
  );
  [one, two, init] = await Promise.all([
    bed.proxy({ connectionPoolConfig: { maxConnectionsPercent: 5 } }),
    bed.proxy({ connectionPoolConfig: { maxConnectionsPercent: 15 } }),
    bed.proxy({ connectionPoolConfig: { maxConnectionsPercent: 15, initQuery: 'SET statement_timeout = 4321' } }),
  ]);
});

afterEach(() => bed.closeClients());
afterAll(() => bed.stop());

/** Asserts that none of these sessions pinned (after a log barrier). */
async function expectNoPins(proxy: TidepoolProcess, clients: ProxyClient[]): Promise<void> {
  await logBarrier(clients[0]!);
  const sessions = await Promise.all(clients.map((client) => client.sessionId()));
  expect(pinLines(proxy).filter((line) => sessions.includes(line.client as number))).toEqual([]);
}

// ---------------------------------------------------------------------------------------
// Startup parameters

const ALPHA: ProxyClientOptions = {
  applicationName: 'alpha',
  options: '-c statement_timeout=1234',
  startupParams: { TimeZone: 'Asia/Tokyo', DateStyle: 'SQL, DMY', search_path: 'alpha_schema, public' },
};
const BETA: ProxyClientOptions = {
  applicationName: 'beta',
  options: '-c statement_timeout=5678',
  startupParams: { TimeZone: 'America/New_York', DateStyle: 'German, DMY', search_path: 'beta_schema, public' },
};
const PLAIN: ProxyClientOptions = {};

interface SessionView {
  app: string;
  tz: string;
  datestyle: string;
  search_path: string;
  statement_timeout: string;
  who: string;
  /** A date as DateStyle renders it. */
  date: string;
  /** 2024-01-01 00:00 UTC's hour in the session time zone. */
  hour: string;
}

const PROBE = `SELECT current_setting('application_name') AS app, current_setting('TimeZone') AS tz,
  current_setting('DateStyle') AS datestyle, current_setting('search_path') AS search_path,
  current_setting('statement_timeout') AS statement_timeout, (SELECT v FROM whoami) AS who,
  DATE '2024-03-05'::text AS date, to_char(TIMESTAMPTZ '2024-01-01 00:00:00+00', 'HH24') AS hour,
  pg_backend_pid() AS pid`;

async function probe(client: ProxyClient): Promise<{ view: SessionView; pid: number }> {
  const [row] = await client.rows<SessionView & { pid: number }>(PROBE);
  const { pid, ...view } = row!;
  return { view, pid };
}

/** What PostgreSQL itself shows a direct connection with these startup parameters. */
async function referenceView(options: ProxyClientOptions): Promise<{ view: SessionView; parameters: Map<string, string> }> {
  const direct: Client = await bed.connectDirect(options);
  try {
    const { rows } = await direct.query<SessionView & { pid: number }>(PROBE);
    const { pid: _pid, ...view } = rows[0]!;
    const parameters = new Map<string, string>();
    for (const name of ['application_name', 'TimeZone', 'DateStyle']) {
      parameters.set(name, (await direct.query<{ v: string }>(`SELECT current_setting('${name}') AS v`)).rows[0]!.v);
    }
    return { view, parameters };
  } finally {
    await direct.end();
  }
}

describe('startup parameters', () => {
  test('are applied per client without pinning: two clients with different values share one server connection', async () => {
    const profiles = [ALPHA, BETA, PLAIN];
    const references = await Promise.all(profiles.map(referenceView));
    // The reference itself tells the profiles apart, so a mix-up cannot go unnoticed.
    expect(references.map((r) => [r.view.who, r.view.hour, r.view.date, r.view.statement_timeout])).toEqual([
      ['alpha', '09', '05/03/2024', '1234ms'],
      ['beta', '19', '05.03.2024', '5678ms'],
      ['public', references[2]!.view.hour, '2024-03-05', '0'],
    ]);

    const clients: ProxyClient[] = [];
    for (const profile of profiles) clients.push(await bed.connect(one, profile));

    // ParameterStatus at connect: what PostgreSQL reports for the same startup packet.
    clients.forEach((client, i) => {
      for (const [name, value] of references[i]!.parameters) expect([name, client.startupParameters.get(name)]).toEqual([name, value]);
    });

    const pids = new Set<number>();
    await repeat(15, async (round) => {
      await Promise.all(
        clients.map(async (client, i) => {
          // Alternate explicit and implicit transactions; the order of arrival varies by round.
          if ((round + i) % 2 === 0) await client.pg.query('BEGIN');
          const { view, pid } = await probe(client);
          if ((round + i) % 2 === 0) await client.pg.query('COMMIT');
          pids.add(pid);
          expect([i, view]).toEqual([i, references[i]!.view]);
        }),
      );
    });
    expect(pids.size).toBe(1); // all of it over the one server connection

    // No ParameterStatus from another client's settings ever reached a client.
    clients.forEach((client) => {
      const changed = client.laterParameterStatus.filter(({ name, value }) => client.startupParameters.get(name) !== value);
      expect(changed).toEqual([]);
    });
    await expectNoPins(one, clients);
  });

  test('psql with PGTZ / PGAPPNAME / PGDATESTYLE / PGOPTIONS sees through the proxy what it sees directly', async () => {
    const env = {
      PGPASSWORD: APP_PASSWORD,
      PGTZ: 'Pacific/Auckland',
      PGAPPNAME: 'psql-app',
      PGDATESTYLE: 'Postgres, DMY',
      PGOPTIONS: '-c statement_timeout=2468 -c search_path=beta_schema',
    };
    const sql = `SELECT current_setting('application_name'), current_setting('TimeZone'), current_setting('DateStyle'),
      current_setting('search_path'), current_setting('statement_timeout'), (SELECT v FROM whoami)`;
    const run = async (port: number) =>
      (await runCommand('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-U', APP_USER, '-d', 'postgres', '-c', sql], { env })).stdout.trim();
    // A plain client keeps the one server connection busy in between, with its own (default) settings.
    const plain = await bed.connect(one);
    const direct = await run(bed.pg.port);
    expect(direct).toBe('psql-app|Pacific/Auckland|Postgres, DMY|beta_schema|2468ms|beta');
    for (let i = 0; i < 3; i++) {
      expect(await run(one.port)).toBe(direct);
      expect(await plain.value("SELECT current_setting('TimeZone') <> 'Pacific/Auckland' AND current_setting('application_name') = ''")).toBe('true');
    }
  });

  test.each([
    ['TimeZone', { startupParams: { TimeZone: 'Not/AZone' } }],
    ['DateStyle', { startupParams: { DateStyle: 'Klingon' } }],
    ['options -c with a bad value', { options: '-c statement_timeout=soon' }],
    ['options -c with an unknown setting', { options: '-c no_such_setting=1' }],
  ] as [string, ProxyClientOptions][])('a bad startup value (%s) is refused at connect with the server\'s error', async (_title, options) => {
    const directError = await bed.connectDirect(options).then(
      async (client) => {
        await client.end();
        return new Error('PostgreSQL accepted it');
      },
      (error: Error) => error,
    );
    const proxyError = await bed.connect(one, options).then(
      () => new Error('the proxy accepted it'),
      (error: Error) => error,
    );
    expect(proxyError.message).toBe(directError.message);
    expect((proxyError as Error & { code?: string }).code).toBe((directError as Error & { code?: string }).code);

    // The pool is unharmed, and the next client has none of the refused settings.
    const next = await bed.connect(one);
    const { view } = await probe(next);
    const reference = await referenceView(PLAIN);
    expect(view).toEqual(reference.view);
  });
});

// ---------------------------------------------------------------------------------------
// initQuery

describe('initQuery', () => {
  test('runs on each new server connection', async () => {
    const first = await bed.hold(init);
    const second = await bed.hold(init);
    expect(first.pid).not.toBe(second.pid);
    expect(await first.client.value('SHOW statement_timeout')).toBe(INIT_QUERY_TIMEOUT);
    expect(await second.client.value('SHOW statement_timeout')).toBe(INIT_QUERY_TIMEOUT);
    await first.release();
    await second.release();
  });

  test('runs again when a pinned client left its connection to be reset', async () => {
    const pinned = await bed.connect(init);
    // Long enough that no query here runs into it on a busy machine (1 ms once cancelled the pid lookup).
    await pinned.pg.query('SET statement_timeout = 98765');
    const pinnedPid = await pinned.pid();
    await bed.disconnect(pinned);
    const inspectors = [await bed.hold(init), await bed.hold(init)];
    if (!inspectors.some((inspector) => inspector.pid === pinnedPid)) await bed.waitForBackendExit(pinnedPid);
    for (const inspector of inspectors) expect(await inspector.client.value('SHOW statement_timeout')).toBe(INIT_QUERY_TIMEOUT);
    for (const inspector of inspectors) await inspector.release();
  });

  // RESET would go back to the server default ('0'), past initQuery: the proxy restores the
  // value the setting had before it first changed it on that connection.
  test('a client without its own setting sees the initQuery value even after a client with one used the connection', async () => {
    const own = await bed.connect(init, { options: '-c statement_timeout=1234' });
    const plain = await bed.connect(init);
    let sharedAtLeastOnce = false;
    await repeat(5, async () => {
      const ownPid = await own.pid();
      expect(await own.value('SHOW statement_timeout')).toBe('1234ms');
      // The most recently used idle connection is lent first: usually own's.
      const [row] = await plain.rows<{ timeout: string; pid: number }>('SELECT current_setting(\'statement_timeout\') AS timeout, pg_backend_pid() AS pid');
      if (row!.pid === ownPid) sharedAtLeastOnce = true;
      expect(row!.timeout).toBe(INIT_QUERY_TIMEOUT);
    });
    expect(sharedAtLeastOnce).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------
// Extended protocol

describe('extended protocol', () => {
  test('parameterised queries (unnamed statements) are multiplexed without pinning', async () => {
    const clients: ProxyClient[] = [];
    for (let i = 0; i < 6; i++) clients.push(await bed.connect(one));
    const pids = new Set<number>();
    await Promise.all(
      clients.map((client, i) =>
        repeat(15, async (round) => {
          const inTransaction = round % 3 === 0;
          if (inTransaction) await client.pg.query('BEGIN');
          const rows = await client.rows<{ doubled: number; tag: string; pid: number }>(
            'SELECT $1::int * 2 AS doubled, $2::text AS tag, pg_backend_pid() AS pid',
            [round * 100 + i, `client-${i}`],
          );
          if (inTransaction) await client.pg.query('COMMIT');
          expect(rows).toEqual([{ doubled: 2 * (round * 100 + i), tag: `client-${i}`, pid: expect.any(Number) }]);
          pids.add(rows[0]!.pid);
        }),
      ),
    );
    // Six clients took turns on the one server connection; a pinned one would have starved the others into the borrow timeout.
    expect(pids.size).toBe(1);
    await expectNoPins(one, clients);
  });

  test('a named prepared statement works when its next use lands on another server connection', async () => {
    const client = await bed.connect(two);
    const run = async (value: number) => {
      const { rows } = await client.pg.query<{ n: number; pid: number }>({
        name: 'get_n',
        text: 'SELECT $1::int * 10 AS n, pg_backend_pid() AS pid',
        values: [value],
      });
      expect(rows).toEqual([{ n: value * 10, pid: expect.any(Number) }]);
      return rows[0]!.pid;
    };
    let lastPid = await run(1);
    const usedPids = new Set([lastPid]);
    for (let i = 2; i <= 6; i++) {
      // Keep the connection it last ran on busy in another client's transaction.
      const held = await bed.holdBackend(two, lastPid, 2);
      const pid = await run(i);
      expect(pid).not.toBe(lastPid);
      usedPids.add(pid);
      await held.release();
      lastPid = pid;
    }
    expect(usedPids.size).toBe(2);
    expect(client.backgroundErrors).toEqual([]);
    await expectNoPins(two, [client]);
  });

  test('20 clients preparing the same name with different SQL over a pool of 2 never see each other\'s statement', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => bed.connect(two)));
    const pids = new Set<number>();
    await Promise.all(
      clients.map((client, i) =>
        repeat(10, async (round) => {
          // Clients i and i + 10 share the text (and so may share the server-side statement).
          const variant = i % 10;
          const { rows } = await client.pg.query<{ v: number; who: number; pid: number }>({
            name: 'stmt',
            text: `SELECT $1::int + ${variant} AS v, ${variant} AS who, pg_backend_pid() AS pid`,
            values: [round],
          });
          expect([i, rows]).toEqual([i, [{ v: round + variant, who: variant, pid: expect.any(Number) }]]);
          pids.add(rows[0]!.pid);
        }),
      ),
    );
    expect(pids.size).toBe(2);
    await expectNoPins(two, clients);
  });

  test('DEALLOCATE ALL from one client does not break the others\' prepared statements', async () => {
    const users = await Promise.all(Array.from({ length: 4 }, () => bed.connect(two)));
    const use = (client: ProxyClient, i: number, value: number) =>
      client.pg
        .query<{ v: number }>({ name: 'mine', text: `SELECT $1::int + ${1000 * (i + 1)} AS v`, values: [value] })
        .then(({ rows }) => expect([i, rows]).toEqual([i, [{ v: value + 1000 * (i + 1) }]]));
    await Promise.all(users.map((client, i) => repeat(3, (round) => use(client, i, round))));

    // DEALLOCATE ALL on both server connections: once as a simple query, once through the extended protocol.
    const first = await bed.hold(two);
    const second = await bed.hold(two);
    const preparedBefore = await Promise.all([first, second].map((held) => held.client.value('SELECT count(*) FROM pg_prepared_statements')));
    expect(preparedBefore.reduce((sum, count) => sum + Number(count), 0)).toBeGreaterThan(0);
    await first.client.pg.query('DEALLOCATE ALL');
    const extendedDeallocate = { text: 'DEALLOCATE ALL', queryMode: 'extended' };
    await second.client.pg.query(extendedDeallocate);
    for (const held of [first, second]) expect(await held.client.value('SELECT count(*) FROM pg_prepared_statements')).toBe('0');
    await first.release();
    await second.release();

    await Promise.all(users.map((client, i) => repeat(5, (round) => use(client, i, 100 + round))));
    for (const client of users) expect(client.backgroundErrors).toEqual([]);
    await expectNoPins(two, users);
  });
});
