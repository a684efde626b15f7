/**
 * The protocol-fuzzing scenario (integ/fuzz, issue #9's other half) as one row of the chaos
 * table: a moderate number of malformed inputs while bystanders query; it passes when the proxy
 * neither crashed nor left a connection unanswered and no bystander saw an error.
 */
import { runFuzz } from '../../fuzz/fuzz';
import { Checks, ScenarioContext, ScenarioOutcome } from '../kit';

export async function protocolFuzz(ctx: ScenarioContext): Promise<ScenarioOutcome> {
  const checks = new Checks();
  const report = await runFuzz({
    engine: ctx.engine === 'postgresql' ? 'pg' : 'mysql',
    inputs: ctx.size === 'full' ? 5_000 : 500,
    seed: Date.now() % 1_000_000,
    maxDurationMs: ctx.size === 'full' ? 240_000 : 30_000,
  });
  checks.record('seed', report.seed);
  checks.record('inputs', report.inputs);
  checks.record('connections', report.connections);
  checks.record('crashes', report.crashes);
  checks.record('hangs', report.hangs);
  checks.record('bystander errors', report.bystander.errors);
  checks.record('peak RSS MiB', report.rssKb.peak / 1024);
  checks.that(report.crashes === 0, `no proxy crash: ${report.crashDetails.slice(0, 2).join('; ')}`);
  checks.that(report.hangs === 0, `every fuzz connection answered or closed in time: ${report.hangDetails.slice(0, 2).join('; ')}`);
  checks.that(report.bystander.errors === 0, `bystanders saw no error: ${report.bystander.errorSamples.slice(0, 2).join('; ')}`);
  return checks.outcome();
}
