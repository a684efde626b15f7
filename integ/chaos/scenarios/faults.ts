/**
 * Faults: a server connection killed mid-result (by the DBA, and for PostgreSQL by kill -9 of its
 * backend), the server restarted while clients are idle and while they are busy, a server that
 * stops answering (SIGSTOP), a target whose name does not resolve, the server's max_connections
 * taken by someone else, and the proxy's own pool exhausted. Each checks that the affected
 * clients get the protocol's own error code, unaffected ones keep working, and the proxy recovers
 * without a restart.
 */
import {
  APP_DB,
  APP_PASSWORD,
  APP_USER,
  Checks,
  DbClient,
  Engine,
  ScenarioContext,
  ScenarioOutcome,
  appConnectionIds,
  bigResultSql,
  connectDirect,
  connectToProxy,
  describeError,
  formatError,
  killServerConnection,
  pinningSql,
  proxyStatus,
  queryError,
  serverIdsRunning,
  signalServerTree,
  sleep,
  startProxy,
  startServer,
  waitForWriter,
  withCleanup,
  withTimeout,
  type ClientError,
  type DbServer,
} from '../kit';
import type { TidepoolProcess } from '../../harness/tidepool';
import { runBinary } from '../../pg/support';

/** What a client may see when the server connection serving it is lost mid-statement. */
export function connectionLostCodes(engine: Engine): string[] {
  // PostgreSQL: the server's own reason when it gave one (57P01 terminated by administrator,
  // 57P02 crash of another process, 57P03 starting up), else 08006. MySQL: 1317 (the proxy's "query execution was interrupted" for a lost server connection).
  return engine === 'postgresql' ? ['08006', '57P01', '57P02', '57P03'] : ['1317'];
}

function borrowTimeoutCode(engine: Engine): string {
  return engine === 'postgresql' ? '53300' : '9501';
}

async function pollUntilSucceeds(what: () => Promise<unknown>, timeoutMs: number): Promise<{ ok: boolean; ms: number; lastError?: string }> {
  const started = Date.now();
  let lastError: string | undefined;
  while (Date.now() - started < timeoutMs) {
    try {
      await what();
      return { ok: true, ms: Date.now() - started };
    } catch (error) {
      lastError = formatError(describeError(error));
      await sleep(100);
    }
  }
  return { ok: false, ms: Date.now() - started, lastError };
}

/** A fresh client connects through the proxy and runs SELECT 1 (the proxy recovered without a restart). */
async function freshClientWorks(engine: Engine, proxy: TidepoolProcess): Promise<void> {
  const client = await connectToProxy(engine, proxy, { connectTimeoutMs: 10_000 });
  try {
    await withTimeout(client.query('SELECT 1'), 10_000, 'SELECT 1 on a fresh client');
  } finally {
    await client.end();
  }
}

async function openIdleClients(engine: Engine, proxy: TidepoolProcess, count: number): Promise<DbClient[]> {
  const clients = await Promise.all(Array.from({ length: count }, () => connectToProxy(engine, proxy)));
  for (const client of clients) await client.query('SELECT 1');
  return clients;
}

async function waitForStatement(server: DbServer, marker: string, timeoutMs = 10_000): Promise<number[]> {
  const started = Date.now();
  for (;;) {
    const ids = await serverIdsRunning(server, marker);
    if (ids.length > 0) return ids;
    if (Date.now() - started > timeoutMs) return [];
    await sleep(50);
  }
}

/**
 * A big SELECT streams (the server produced half of it, then sleeps); its server connection is
 * killed with pg_terminate_backend / KILL, or (`kill9`) its PostgreSQL backend gets SIGKILL,
 * which makes the postmaster restart every backend.
 */
export async function killMidResult(ctx: ScenarioContext, how: 'terminate' | 'kill9' = 'terminate'): Promise<ScenarioOutcome> {
  const { engine } = ctx;
  const checks = new Checks();
  return withCleanup(async (defer) => {
    const server = await startServer(engine);
    defer(() => server.stop());
    const proxy = await startProxy(engine, [server], { connectionPoolConfig: { connectionBorrowTimeout: 10 } });
    defer(() => proxy.stop());
    await waitForWriter(proxy);
    const bystanders = await openIdleClients(engine, proxy, 5);
    defer(() => Promise.all(bystanders.map((c) => c.end())));
    const victim = await connectToProxy(engine, proxy);
    defer(() => victim.end());

    const marker = `chaos_kill_${how}_${Date.now()}`;
    const rows = ctx.size === 'full' ? 100_000 : 20_000;
    const streaming = queryError(victim, bigResultSql(engine, rows, 1000, marker, rows / 2));
    const ids = await waitForStatement(server, marker);
    checks.that(ids.length === 1, `the big SELECT runs on exactly one server connection (found ${ids.length})`);
    await sleep(300); // the first half (about rows/2 KB) is on its way to the client
    const killedAt = Date.now();
    if (how === 'terminate') {
      for (const id of ids) await killServerConnection(server, id);
    } else {
      for (const id of ids) process.kill(id, 'SIGKILL');
    }
    const error = await withTimeout(streaming, 15_000, 'the killed SELECT');
    checks.record('error after ms', Date.now() - killedAt);
    checks.record('victim got', error === undefined ? 'success' : (error.code ?? 'no code'));
    checks.that(error !== undefined && connectionLostCodes(engine).includes(error.code ?? ''), `the victim gets a connection-lost error with its code, got ${error ? formatError(error) : 'success'}`);

    // kill -9 of a backend makes the postmaster crash-restart: everyone recovers, after a while.
    const recovery = await pollUntilSucceeds(() => victim.query('SELECT 1'), 20_000);
    checks.that(recovery.ok, `the victim's session stays usable after the error (last: ${recovery.lastError})`);
    checks.record('victim usable after ms', recovery.ms);
    let bystanderFailures = 0;
    for (const bystander of bystanders) {
      const result = await pollUntilSucceeds(() => bystander.query('SELECT 1'), 20_000);
      if (!result.ok) bystanderFailures++;
    }
    checks.that(bystanderFailures === 0, `idle bystanders keep working (${bystanderFailures} did not)`);
    const fresh = await pollUntilSucceeds(() => freshClientWorks(engine, proxy), 20_000);
    checks.that(fresh.ok, `a new client works afterwards (last: ${fresh.lastError})`);

    if (engine === 'mysql' && how === 'terminate') {
      // libmysqlclient checks sequence ids strictly (mysql2 only warns): the error that ends a
      // half-received result must continue its numbering, or the CLI reports packets out of order.
      const cliMarker = `${marker}_cli`;
      const cli = runBinary(
        'mariadb',
        ['--no-defaults', '--protocol=TCP', `--host=${proxy.host}`, `--port=${proxy.port}`, `--user=${APP_USER}`, '--batch', '--comments', '--skip-column-names', `--database=${APP_DB}`, '-e', bigResultSql(engine, rows, 1000, cliMarker, rows / 2)],
        { env: { MYSQL_PWD: APP_PASSWORD }, timeoutMs: 30_000 },
      );
      const cliIds = await waitForStatement(server, cliMarker);
      await sleep(300);
      for (const id of cliIds) await killServerConnection(server, id);
      const output = await cli;
      const errorLine = output.stderr.trim().split('\n').pop() ?? '';
      checks.record('mariadb CLI got', errorLine.slice(0, 60));
      checks.that(output.code !== 0 && /ERROR 1317/.test(output.stderr) && !/out of order/i.test(output.stderr), `the mariadb CLI reports ERROR 1317, got: ${output.stderr.trim().slice(0, 200)}`);
    }
    return checks.outcome();
  });
}

/** The server restarts (stop + start, same data dir and port) while clients are idle, or while they run statements. */
export async function serverRestart(ctx: ScenarioContext, load: 'idle' | 'busy'): Promise<ScenarioOutcome> {
  const { engine } = ctx;
  const checks = new Checks();
  return withCleanup(async (defer) => {
    const server = await startServer(engine);
    defer(() => server.stop());
    const proxy = await startProxy(engine, [server], { connectionPoolConfig: { connectionBorrowTimeout: 15 } });
    defer(() => proxy.stop());
    await waitForWriter(proxy);
    const clients = await openIdleClients(engine, proxy, 10);
    defer(() => Promise.all(clients.map((c) => c.end())));

    const sleepSql = engine === 'postgresql' ? 'SELECT pg_sleep(0.05)' : 'SELECT SLEEP(0.05)';
    let running = load === 'busy';
    const errors: ClientError[] = [];
    let completed = 0;
    const workers = clients.map(async (client) => {
      while (running) {
        const error = await queryError(client, sleepSql);
        if (error) errors.push(error);
        else completed++;
      }
    });
    await sleep(300);
    const restartStarted = Date.now();
    await server.restart();
    checks.record('restart ms', Date.now() - restartStarted);
    await sleep(300);
    running = false;
    await Promise.all(workers);

    // Every client is usable after the restart; an idle one must not even see an error.
    const firstQueryErrors: ClientError[] = [];
    for (const client of clients) {
      const error = await queryError(client, 'SELECT 1');
      if (error) firstQueryErrors.push(error);
    }
    if (load === 'idle') {
      checks.that(firstQueryErrors.length === 0, `idle clients notice nothing: ${firstQueryErrors.length} got ${firstQueryErrors.map(formatError).slice(0, 3).join('; ')}`);
    } else {
      const allowed = connectionLostCodes(engine);
      const unclear = errors.filter((e) => !allowed.includes(e.code ?? ''));
      checks.record('busy errors', errors.length);
      checks.record('statements ok', completed);
      checks.that(unclear.length === 0, `busy clients get connection-lost codes only, got ${unclear.map(formatError).slice(0, 3).join('; ')}`);
      checks.that(firstQueryErrors.length === 0, `busy clients are usable after the restart: ${firstQueryErrors.map(formatError).slice(0, 3).join('; ')}`);
    }
    const fresh = await pollUntilSucceeds(() => freshClientWorks(engine, proxy), 15_000);
    checks.that(fresh.ok, `a new client works afterwards (last: ${fresh.lastError})`);
    return checks.outcome();
  });
}

/**
 * The server stops answering (SIGSTOP of its whole process group: TCP stays up, nothing
 * replies). New work must fail within a bounded time instead of hanging, the proxy itself
 * (logins, /status) stays responsive, and after SIGCONT everything works again.
 */
export async function stalledServer(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { engine } = ctx;
  const checks = new Checks();
  const borrowTimeoutSeconds = 2;
  return withCleanup(async (defer) => {
    const server = await startServer(engine);
    defer(() => server.stop());
    const proxy = await startProxy(engine, [server], { connectionPoolConfig: { connectionBorrowTimeout: borrowTimeoutSeconds } });
    defer(() => proxy.stop());
    await waitForWriter(proxy);
    const clients = await openIdleClients(engine, proxy, 3);
    defer(() => Promise.all(clients.map((c) => c.end())));

    const serverPid = server.pid;
    signalServerTree(serverPid, 'SIGSTOP');
    let resumed = false;
    const resume = () => {
      if (!resumed) signalServerTree(serverPid, 'SIGCONT');
      resumed = true;
    };
    defer(resume);
    const stalledAt = Date.now();
    try {
      // A bounded answer for everyone: the statement timeout of a stalled peer is the borrow
      // timeout plus the time the proxy needs to notice the peer is gone.
      const boundMs = (borrowTimeoutSeconds + 10) * 1000;
      const inFlight = clients.map(async (client) => {
        const started = Date.now();
        const error = await withTimeout(queryError(client, 'SELECT 1'), boundMs + 5_000, 'a statement on a stalled server').catch((e: Error) => ({ message: e.message }) as ClientError);
        return { error, ms: Date.now() - started };
      });
      // The proxy itself stays responsive: /status answers and a new client logs in.
      const statusStarted = Date.now();
      const status = await withTimeout(proxyStatus(proxy), 5_000, '/status during the stall').catch(() => undefined);
      checks.that(status !== undefined, '/status answers while the server is stalled');
      checks.record('/status ms', Date.now() - statusStarted);
      const answers = await Promise.all(inFlight);
      const slowest = Math.max(...answers.map((a) => a.ms));
      checks.record('slowest answer ms', slowest);
      checks.record('answers', answers.map((a) => (a.error === undefined ? 'ok' : (a.error.code ?? 'none'))).join(','));
      checks.that(slowest <= boundMs, `every statement gets an answer within ${boundMs} ms of the stall (slowest ${slowest} ms)`);
      for (const answer of answers) {
        if (answer.error !== undefined) {
          const allowed = [...connectionLostCodes(engine), borrowTimeoutCode(engine), engine === 'postgresql' ? '08001' : '1105'];
          checks.that(allowed.includes(answer.error.code ?? ''), `a stalled statement fails with a clear code, got ${formatError(answer.error)}`);
        }
      }
    } finally {
      resume();
    }
    checks.record('stalled for ms', Date.now() - stalledAt);
    const recovered = await pollUntilSucceeds(async () => {
      for (const client of clients) await client.query('SELECT 1');
    }, 20_000);
    checks.that(recovered.ok, `clients work again after SIGCONT (last: ${recovered.lastError})`);
    checks.record('recovered after ms', recovered.ms);
    const fresh = await pollUntilSucceeds(() => freshClientWorks(engine, proxy), 15_000);
    checks.that(fresh.ok, `a new client works afterwards (last: ${fresh.lastError})`);
    return checks.outcome();
  });
}

/** A target whose host name does not resolve: next to a real one (ignored, reported), and alone (clients get a clear error). */
export async function unresolvableTarget(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { engine } = ctx;
  const checks = new Checks();
  const badHost = 'no-such-host.invalid';
  return withCleanup(async (defer) => {
    const server = await startServer(engine);
    defer(() => server.stop());
    const mixed = await startProxy(engine, [{ host: badHost, port: server.port }, server], { connectionPoolConfig: { connectionBorrowTimeout: 3 } });
    defer(() => mixed.stop());
    await waitForWriter(mixed, server);
    const client = await connectToProxy(engine, mixed);
    defer(() => client.end());
    const mixedError = await queryError(client, 'SELECT 1');
    checks.that(mixedError === undefined, `a bad target next to a good one does not affect clients: ${mixedError ? formatError(mixedError) : ''}`);
    const mixedStatus = await proxyStatus(mixed);
    const badEntry = mixedStatus.Targets.find((t) => t.Endpoint === badHost);
    checks.that(badEntry?.TargetHealth.State === 'UNAVAILABLE' && badEntry.TargetHealth.Reason !== undefined, `/status shows the bad target UNAVAILABLE with a reason: ${JSON.stringify(badEntry)}`);
    checks.record('reason', badEntry?.TargetHealth.Reason ?? 'none');

    const alone = await startProxy(engine, [{ host: badHost, port: server.port }], { connectionPoolConfig: { connectionBorrowTimeout: 2 } });
    defer(() => alone.stop());
    const started = Date.now();
    let error: ClientError | undefined;
    try {
      const lonely = await connectToProxy(engine, alone, { connectTimeoutMs: 15_000 });
      error = await queryError(lonely, 'SELECT 1');
      await lonely.end();
    } catch (connectFailure) {
      error = describeError(connectFailure);
    }
    const errorMs = Date.now() - started;
    checks.record('alone: error', error ? (error.code ?? 'none') : 'success');
    checks.record('alone: error after ms', errorMs);
    const allowed = engine === 'postgresql' ? ['08001', '53300', '08006'] : ['1105', '9501', '2003', '1317'];
    checks.that(error !== undefined && allowed.includes(error.code ?? ''), `only a bad target: a clear error, got ${error ? formatError(error) : 'success'}`);
    checks.that(errorMs < 10_000, `the error comes within a bounded time (${errorMs} ms)`);
    const aloneStatus = await proxyStatus(alone);
    const aloneEntry = aloneStatus.Targets[0];
    checks.that(aloneStatus.Status === 'unavailable' && aloneEntry?.TargetHealth.State === 'UNAVAILABLE' && aloneEntry.TargetHealth.Reason !== undefined, `/status: unavailable, target UNAVAILABLE with reason: ${JSON.stringify(aloneStatus.Targets)}`);
    return checks.outcome();
  });
}

/**
 * Someone else takes every connection the server allows. Clients through the proxy get the
 * server's "too many connections" error or a borrow timeout, never a hang; once the other
 * connections close, a waiting client succeeds and new clients work.
 */
export async function serverConnectionsTaken(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { engine } = ctx;
  const checks = new Checks();
  return withCleanup(async (defer) => {
    const server = await startServer(engine, { maxConnections: 12 });
    defer(() => server.stop());
    const proxy = await startProxy(engine, [server], { connectionPoolConfig: { connectionBorrowTimeout: 3 } });
    defer(() => proxy.stop());
    await waitForWriter(proxy);
    const hogs: DbClient[] = [];
    defer(() => Promise.all(hogs.map((c) => c.end())));
    let refusal: ClientError | undefined;
    for (let i = 0; i < 40 && refusal === undefined; i++) {
      try {
        hogs.push(await connectDirect(server));
      } catch (error) {
        refusal = describeError(error);
      }
    }
    checks.that(refusal !== undefined, 'the server refuses once someone else holds every connection');
    checks.record('taken by others', hogs.length);

    // 1) A client while the server is full: a clear error within the borrow timeout, no hang.
    const started = Date.now();
    let fullError: ClientError | undefined;
    try {
      const client = await connectToProxy(engine, proxy, { connectTimeoutMs: 15_000 });
      defer(() => client.end());
      fullError = await withTimeout(queryError(client, 'SELECT 1'), 15_000, 'SELECT 1 while the server is full');
    } catch (error) {
      fullError = describeError(error);
    }
    const fullMs = Date.now() - started;
    checks.record('while full', fullError ? (fullError.code ?? 'none') : 'success');
    checks.record('answer ms', fullMs);
    const allowed = engine === 'postgresql' ? ['53300'] : ['1040', '9501'];
    checks.that(fullError !== undefined && allowed.includes(fullError.code ?? ''), `a client gets "too many connections" or a borrow timeout, got ${fullError ? formatError(fullError) : 'success'}`);
    checks.that(fullMs < 10_000, `within a bounded time (${fullMs} ms)`);

    // 2) A client waiting when the connections are freed succeeds.
    const waiter = await connectToProxy(engine, proxy, { connectTimeoutMs: 15_000 }).catch((error: unknown) => describeError(error));
    const waiting = 'query' in waiter ? queryError(waiter, 'SELECT 1') : Promise.resolve(waiter);
    await sleep(800);
    await Promise.all(hogs.splice(0).map((c) => c.end()));
    const waitedError = await waiting;
    // The proxy may pass the server's refusal on at once or wait for a connection; either is clear.
    checks.record('client during release', waitedError ? (waitedError.code ?? 'none') : 'success');
    checks.that(waitedError === undefined || allowed.includes(waitedError.code ?? ''), `a client while the connections are freed succeeds or gets a clear error: ${waitedError ? formatError(waitedError) : ''}`);
    if ('query' in waiter) await waiter.end();
    const fresh = await pollUntilSucceeds(() => freshClientWorks(engine, proxy), 15_000);
    checks.that(fresh.ok, `a new client works afterwards (last: ${fresh.lastError})`);
    return checks.outcome();
  });
}

/**
 * Pinned clients hold every connection of the proxy's pool; another client gets the spec's
 * borrow-timeout error after connectionBorrowTimeout, keeps its session, and succeeds once a
 * pinned client leaves.
 */
export async function poolExhausted(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const { engine } = ctx;
  const checks = new Checks();
  return withCleanup(async (defer) => {
    const server = await startServer(engine, { maxConnections: 20 });
    defer(() => server.stop());
    const proxy = await startProxy(engine, [server], { connectionPoolConfig: { connectionBorrowTimeout: 1, maxConnectionsPercent: 25 } });
    defer(() => proxy.stop());
    await waitForWriter(proxy);
    const pinned: DbClient[] = [];
    defer(() => Promise.all(pinned.map((c) => c.end())));
    let exhaustedError: ClientError | undefined;
    for (let i = 0; i < 20 && exhaustedError === undefined; i++) {
      try {
        const client = await connectToProxy(engine, proxy);
        const error = await queryError(client, pinningSql(engine));
        if (error === undefined) pinned.push(client);
        else {
          exhaustedError = error;
          await client.end();
        }
      } catch (connectFailure) {
        exhaustedError = describeError(connectFailure);
      }
    }
    checks.record('pinned clients', pinned.length);
    checks.that(exhaustedError !== undefined, 'pinned clients eventually hold every pooled connection');

    // The MySQL proxy borrows a connection during the login (to check the schema), so there the
    // borrow timeout may come with the connect rather than the first statement.
    const started = Date.now();
    let other: DbClient | undefined;
    let error: ClientError | undefined;
    try {
      other = await connectToProxy(engine, proxy);
      defer(() => other?.end());
      error = await queryError(other, 'SELECT 1');
    } catch (connectFailure) {
      error = describeError(connectFailure);
    }
    const waitedMs = Date.now() - started;
    checks.record('failed at', other === undefined ? 'connect' : 'statement');
    checks.record('error', error ? (error.code ?? 'none') : 'success');
    checks.record('after ms', waitedMs);
    checks.that(error?.code === borrowTimeoutCode(engine) && /Timed-out waiting to acquire database connection/.test(error.message), `the spec's borrow-timeout error, got ${error ? formatError(error) : 'success'}`);
    checks.that(waitedMs >= 900 && waitedMs < 4_000, `after about connectionBorrowTimeout (1 s), took ${waitedMs} ms`);

    await pinned.pop()!.end();
    const after = await pollUntilSucceeds(() => (other !== undefined ? other.query('SELECT 1') : freshClientWorks(engine, proxy)), 5_000);
    checks.that(after.ok, `${other !== undefined ? 'the same session' : 'a new client'} succeeds once a pinned client leaves (last: ${after.lastError})`);
    const ids = await appConnectionIds(server);
    checks.record('server connections', ids.length);
    return checks.outcome();
  });
}
