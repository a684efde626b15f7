/**
 * A short seeded fuzz sample per engine (the long run is `npm run fuzz`): random, mutated,
 * truncated and wrong-state inputs in every phase against a live proxy in front of a real
 * server, with well-behaved clients querying alongside.
 */
import { FuzzReport, formatReport, poolsDrained, runFuzz } from './fuzz';

const INPUTS = 3000;
const SEED = 20261126;

function expectClean(report: FuzzReport): void {
  // Printed so a failure shows the table, the hang/crash details and the replay coordinates.
  const details = [formatReport(report), ...report.crashDetails, ...report.hangDetails, ...report.bystander.errorSamples, ...report.poolWatcher.errorSamples].join('\n');
  const found = report.crashes + report.hangs + report.bystander.errors + report.poolWatcher.errors;
  expect({ crashes: report.crashes, hangs: report.hangs, bystanderErrors: report.bystander.errors, poolWatcherErrors: report.poolWatcher.errors, details: found > 0 ? details : '' }).toEqual({
    crashes: 0,
    hangs: 0,
    bystanderErrors: 0,
    poolWatcherErrors: 0,
    details: '',
  });
  expect(report.inputs).toBeGreaterThanOrEqual(INPUTS);
  // Every phase was reached, and sessions lived long enough to take many inputs each.
  expect(report.byKind['pre-startup'].inputs).toBeGreaterThan(50);
  expect(report.byKind.auth.inputs).toBeGreaterThan(10);
  expect(report.byKind['post-login'].inputs).toBeGreaterThan(INPUTS / 2);
  expect(report.bystander.during.queries).toBeGreaterThan(100);
  // The fuzzed user's own pool kept serving a well-behaved client of that user.
  expect(report.poolWatcher.during.queries).toBeGreaterThan(20);
  // With every client gone, no server connection may stay lent out, in reset, or awaited.
  expect({ drained: poolsDrained(report.poolsAfter), pools: report.poolsAfter }).toEqual({ drained: true, pools: report.poolsAfter });
  expect({ clientsLeftOpen: report.clientsLeftOpen, which: report.clientsLeftOpenDetails }).toEqual({ clientsLeftOpen: 0, which: [] });
}

test.each(['pg', 'mysql'] as const)('%s: a seeded fuzz sample crashes nothing, hangs nothing, and bystanders see no errors', async (engine) => {
  const report = await runFuzz({ engine, inputs: INPUTS, seed: SEED, concurrency: 12, bystanders: 2 });
  expectClean(report);
}, 120_000);
