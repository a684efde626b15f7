/**
 * The long fuzz run (`npm run fuzz`): by default 1,000,000 inputs per engine against a live
 * proxy in front of real PostgreSQL and MariaDB, then a table per engine.
 *
 *   FUZZ_INPUTS=1000000  inputs per engine
 *   FUZZ_SEED=<n>        seed (default: random, printed)
 *   FUZZ_ENGINES=pg,mysql
 *   FUZZ_CONCURRENCY=16  fuzz connections at once
 *   FUZZ_MAX_MINUTES=12  per engine
 *   FUZZ_ONLY=<n>        replay only connection n of FUZZ_SEED
 *
 * Exits 1 when anything was found: a crash, a hang, a bystander error, a pool-watcher error or
 * wait over the bound, a pool not drained or a client left open at the end.
 */
import { Engine, FuzzReport, formatReport, poolsDrained, runFuzz } from './fuzz';

async function main(): Promise<void> {
  const inputs = Number(process.env.FUZZ_INPUTS ?? 1_000_000);
  const seed = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 0x7fffffff);
  const engines = (process.env.FUZZ_ENGINES ?? 'pg,mysql').split(',').map((name) => name.trim()) as Engine[];
  const concurrency = Number(process.env.FUZZ_CONCURRENCY ?? 16);
  const maxDurationMs = Number(process.env.FUZZ_MAX_MINUTES ?? 12) * 60_000;
  const onlyConnection = process.env.FUZZ_ONLY !== undefined ? Number(process.env.FUZZ_ONLY) : undefined;
  console.log(`fuzz: ${inputs} inputs per engine, seed ${seed}, ${concurrency} connections at once`);
  const reports: FuzzReport[] = [];
  for (const engine of engines) {
    const report = await runFuzz({ engine, inputs, seed, concurrency, maxDurationMs, onlyConnection, onProgress: (line) => console.log(line) });
    reports.push(report);
    console.log(`\n${formatReport(report)}`);
    console.log(`outcomes: ${JSON.stringify(report.outcomes)}`);
    console.log(`error codes answered: ${JSON.stringify(report.errorCodes)}`);
    console.log(`probes unanswered until the idle timeout: ${report.silentUntilIdle} ${JSON.stringify(report.silentUntilIdleSamples)}`);
    console.log(`proxy error-level logs: ${JSON.stringify(report.errorLogs)}`);
    for (const line of report.clientsLeftOpenDetails) console.log(`  left open: ${line}`);
    for (const line of [...report.crashDetails, ...report.hangDetails, ...report.bystander.errorSamples, ...report.poolWatcher.errorSamples]) console.log(`  ! ${line}`);
    console.log('');
  }
  // Bystander and watcher errors fail the run unless the database itself crashed meanwhile: then
  // every session on it was ended by the postmaster, and the proxy can only report them lost.
  const found = reports.some((report) => {
    const clientErrors = report.bystander.errors > 0 || report.poolWatcher.errors > 0;
    if (clientErrors && (report.databaseCrashes ?? 0) > 0) console.log(`${report.engine}: client errors during ${report.databaseCrashes} database crash(es); not counted as the proxy's`);
    return (
      report.crashes > 0 ||
      report.hangs > 0 ||
      (clientErrors && (report.databaseCrashes ?? 0) === 0) ||
      report.poolWatcher.stalls > 0 ||
      !poolsDrained(report.poolsAfter) ||
      report.clientsLeftOpen !== 0
    );
  });
  process.exitCode = found ? 1 : 0;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 2;
});
