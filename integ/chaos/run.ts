/**
 * `npm run chaos`: runs every reliability scenario for both engines at full size (10,000
 * clients, a 200 MB result, ~20 s of faults under writes), each under its own timeout, prints a
 * markdown table `scenario | engine | outcome | key numbers` and exits non-zero on any failure.
 * The protocol-fuzzing row calls integ/fuzz's runFuzz with 5,000 inputs per engine.
 *
 *   npm run chaos                      # everything, full size
 *   npm run chaos -- --only storm      # scenarios whose name contains "storm"
 *   npm run chaos -- --engine mysql --size quick
 */
import { ENGINES, Engine, ScenarioOutcome, Size, withTimeout } from './kit';
import { SCENARIOS } from './scenarios';

interface Row {
  scenario: string;
  engine: string;
  outcome: ScenarioOutcome;
  seconds: number;
}

function argument(name: string): string | undefined {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

function formatNumbers(numbers: Record<string, string | number>): string {
  return Object.entries(numbers)
    .map(([key, value]) => `${key}: ${value}`)
    .join(', ');
}

async function main(): Promise<void> {
  const only = argument('only');
  const engineFilter = argument('engine') as Engine | undefined;
  const size = (argument('size') ?? 'full') as Size;
  const rows: Row[] = [];
  const started = Date.now();
  for (const entry of SCENARIOS) {
    if (only !== undefined && !entry.name.includes(only)) continue;
    for (const engine of ENGINES) {
      if (!entry.engines.includes(engine) || (engineFilter !== undefined && engine !== engineFilter)) continue;
      const notes: string[] = [];
      const scenarioStarted = Date.now();
      process.stderr.write(`chaos: ${entry.name} (${engine}) …\n`);
      let outcome: ScenarioOutcome;
      try {
        outcome = await withTimeout(entry.run({ engine, size, note: (text) => notes.push(text) }), entry.timeoutMs, entry.name);
      } catch (error) {
        outcome = { pass: false, numbers: {}, failures: [`threw: ${(error as Error).stack ?? String(error)}`] };
      }
      const row = { scenario: entry.name, engine, outcome, seconds: (Date.now() - scenarioStarted) / 1000 };
      rows.push(row);
      process.stderr.write(`chaos: ${entry.name} (${engine}): ${outcome.pass ? 'pass' : 'FAIL'} in ${row.seconds.toFixed(1)} s — ${formatNumbers(outcome.numbers)}\n`);
      for (const failure of outcome.failures) process.stderr.write(`    ✗ ${failure}\n`);
      for (const note of notes) process.stderr.write(`    · ${note}\n`);
    }
  }
  const lines = ['| scenario | engine | outcome | key numbers |', '|---|---|---|---|'];
  for (const row of rows) {
    const engineName = row.engine === 'postgresql' ? 'PostgreSQL 15' : row.engine === 'mysql' ? 'MariaDB 10.11' : row.engine;
    lines.push(`| ${row.scenario} | ${engineName} | ${row.outcome.pass ? 'pass' : '**fail**'} | ${formatNumbers(row.outcome.numbers)}, ${row.seconds.toFixed(1)} s |`);
  }
  process.stdout.write(`\n${lines.join('\n')}\n\n${rows.filter((r) => r.outcome.pass).length}/${rows.length} passed in ${((Date.now() - started) / 1000).toFixed(0)} s (size: ${size})\n`);
  const failed = rows.filter((r) => !r.outcome.pass);
  if (failed.length > 0) {
    process.stdout.write('\nFailures:\n');
    for (const row of failed) process.stdout.write(`- ${row.scenario} (${row.engine}): ${row.outcome.failures.join(' | ')}\n`);
  }
  // Open sockets of a timed-out scenario must not keep the process alive.
  process.exit(failed.length > 0 ? 1 : 0);
}

void main();
