/**
 * Well-behaved clients that query through the proxy for the whole fuzz run, in their own
 * process so the fuzz driver's CPU use does not show up as their latency. Controlled over
 * the fork IPC channel: {start} → runs; {phase} → labels later samples; {stop} → replies
 * with latencies per phase and every error seen.
 *
 * Bystanders use their own user (their own pool). Watchers log in as the fuzzed user, so
 * they borrow from the very pool the fuzz sessions return connections to: a pool that
 * stops draining (connections stuck in reset, leaked borrows) shows up as their stalls.
 */
import { Client } from 'pg';
import * as mysql from 'mysql2/promise';

export interface BystanderStart {
  type: 'start';
  engine: 'pg' | 'mysql';
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  clients: number;
  /** Pause between a client's queries: a steady application, not a load generator. */
  pauseMs: number;
  /** Clients that log in as the fuzzed user and query only what fuzz sessions cannot lock (no tables). */
  watchers: { clients: number; user: string; password: string };
}

export type BystanderCommand = BystanderStart | { type: 'phase'; phase: string } | { type: 'stop' };

export interface GroupResult {
  /** Latencies in ms, per phase label. */
  latencies: Record<string, number[]>;
  errors: string[];
  queries: number;
}

export interface BystanderResult extends GroupResult {
  type: 'result';
  watchers: GroupResult;
}

type Group = 'bystander' | 'watcher';

let phase = 'before';
let running = true;
const groups: Record<Group, GroupResult> = {
  bystander: { latencies: {}, errors: [], queries: 0 },
  watcher: { latencies: {}, errors: [], queries: 0 },
};

function record(group: Group, ms: number): void {
  (groups[group].latencies[phase] ??= []).push(ms);
  groups[group].queries++;
}

interface LoopOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  pauseMs: number;
  group: Group;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function pgLoop(options: LoopOptions, index: number): Promise<void> {
  const errors = groups[options.group].errors;
  const client = new Client({ host: options.host, port: options.port, user: options.user, password: options.password, database: options.database });
  client.on('error', (error) => errors.push(`client ${index}: ${error.message}`));
  await client.connect();
  let round = 0;
  while (running) {
    const started = performance.now();
    try {
      if (round % 4 === 3) {
        await client.query('BEGIN');
        await client.query(options.group === 'watcher' ? 'SELECT 1' : 'SELECT count(*) FROM fuzz_t');
        await client.query('COMMIT');
      } else {
        const result = await client.query('SELECT $1::int + 1 AS n', [round]);
        if (result.rows[0].n !== round + 1) throw new Error(`wrong answer ${JSON.stringify(result.rows)}`);
      }
      record(options.group, performance.now() - started);
    } catch (error) {
      errors.push(`client ${index}: ${(error as Error).message}`);
    }
    round++;
    await pause(options.pauseMs);
  }
  await client.end();
}

async function mysqlLoop(options: LoopOptions, index: number): Promise<void> {
  const errors = groups[options.group].errors;
  const connection = await mysql.createConnection({ host: options.host, port: options.port, user: options.user, password: options.password, database: options.database });
  connection.on('error', (error) => errors.push(`client ${index}: ${error.message}`));
  let round = 0;
  while (running) {
    const started = performance.now();
    try {
      if (round % 4 === 3) {
        await connection.query('BEGIN');
        await connection.query(options.group === 'watcher' ? 'SELECT 1' : 'SELECT COUNT(*) FROM fuzz_t');
        await connection.query('COMMIT');
      } else {
        const [rows] = await connection.execute<mysql.RowDataPacket[]>('SELECT ? + 1 AS n', [round]);
        if (Number(rows[0]!.n) !== round + 1) throw new Error(`wrong answer ${JSON.stringify(rows)}`);
      }
      record(options.group, performance.now() - started);
    } catch (error) {
      errors.push(`client ${index}: ${(error as Error).message}`);
    }
    round++;
    await pause(options.pauseMs);
  }
  await connection.end();
}

let loops: Promise<void>[] = [];

process.on('message', (command: BystanderCommand) => {
  if (command.type === 'start') {
    const loop = command.engine === 'pg' ? pgLoop : mysqlLoop;
    const bystander: LoopOptions = { ...command, group: 'bystander' };
    const watcher: LoopOptions = { ...command, user: command.watchers.user, password: command.watchers.password, group: 'watcher' };
    const start = (options: LoopOptions, index: number) =>
      loop(options, index).catch((error: Error) => {
        groups[options.group].errors.push(`client ${index} failed: ${error.message}`);
      });
    loops = [
      ...Array.from({ length: command.clients }, (_, index) => start(bystander, index)),
      ...Array.from({ length: command.watchers.clients }, (_, index) => start(watcher, index)),
    ];
    process.send!({ type: 'started' });
  } else if (command.type === 'phase') {
    phase = command.phase;
  } else {
    running = false;
    void Promise.all(loops).then(() => {
      const result: BystanderResult = { type: 'result', ...groups.bystander, watchers: groups.watcher };
      process.send!(result, () => process.exit(0));
    });
  }
});
// The parent died or gave up: nothing else will stop us.
process.on('disconnect', () => process.exit(0));
