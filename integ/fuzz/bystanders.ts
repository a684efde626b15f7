/**
 * Well-behaved clients that query through the proxy for the whole fuzz run, in their own
 * process so the fuzz driver's CPU use does not show up as their latency. Controlled over
 * the fork IPC channel: {start} → runs; {phase} → labels later samples; {stop} → replies
 * with latencies per phase and every error seen.
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
}

export type BystanderCommand = BystanderStart | { type: 'phase'; phase: string } | { type: 'stop' };

export interface BystanderResult {
  type: 'result';
  /** Latencies in ms, per phase label. */
  latencies: Record<string, number[]>;
  errors: string[];
  queries: number;
}

let phase = 'before';
let running = true;
const latencies: Record<string, number[]> = {};
const errors: string[] = [];
let queries = 0;

function record(ms: number): void {
  (latencies[phase] ??= []).push(ms);
  queries++;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function pgLoop(options: BystanderStart, index: number): Promise<void> {
  const client = new Client({ host: options.host, port: options.port, user: options.user, password: options.password, database: options.database });
  client.on('error', (error) => errors.push(`client ${index}: ${error.message}`));
  await client.connect();
  let round = 0;
  while (running) {
    const started = performance.now();
    try {
      if (round % 4 === 3) {
        await client.query('BEGIN');
        await client.query('SELECT count(*) FROM fuzz_t');
        await client.query('COMMIT');
      } else {
        const result = await client.query('SELECT $1::int + 1 AS n', [round]);
        if (result.rows[0].n !== round + 1) throw new Error(`wrong answer ${JSON.stringify(result.rows)}`);
      }
      record(performance.now() - started);
    } catch (error) {
      errors.push(`client ${index}: ${(error as Error).message}`);
    }
    round++;
    await pause(options.pauseMs);
  }
  await client.end();
}

async function mysqlLoop(options: BystanderStart, index: number): Promise<void> {
  const connection = await mysql.createConnection({ host: options.host, port: options.port, user: options.user, password: options.password, database: options.database });
  connection.on('error', (error) => errors.push(`client ${index}: ${error.message}`));
  let round = 0;
  while (running) {
    const started = performance.now();
    try {
      if (round % 4 === 3) {
        await connection.query('BEGIN');
        await connection.query('SELECT COUNT(*) FROM fuzz_t');
        await connection.query('COMMIT');
      } else {
        const [rows] = await connection.execute<mysql.RowDataPacket[]>('SELECT ? + 1 AS n', [round]);
        if (Number(rows[0]!.n) !== round + 1) throw new Error(`wrong answer ${JSON.stringify(rows)}`);
      }
      record(performance.now() - started);
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
    loops = Array.from({ length: command.clients }, (_, index) =>
      loop(command, index).catch((error: Error) => {
        errors.push(`client ${index} failed: ${error.message}`);
      }),
    );
    process.send!({ type: 'started' });
  } else if (command.type === 'phase') {
    phase = command.phase;
  } else {
    running = false;
    void Promise.all(loops).then(() => {
      const result: BystanderResult = { type: 'result', latencies, errors, queries };
      process.send!(result, () => process.exit(0));
    });
  }
});
// The parent died or gave up: nothing else will stop us.
process.on('disconnect', () => process.exit(0));
