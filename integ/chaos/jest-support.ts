/** Runs chaos scenarios as jest tests (quick sizes), one test per scenario and engine. */
import { ENGINES } from './kit';
import { SCENARIOS, type ScenarioEntry } from './scenarios';

/**
 * `concurrently`: scenarios that measure no latency run side by side (each has its own servers
 * and ports), which keeps the file's wall time near its slowest scenario.
 */
export function scenarioTests(filter: (entry: ScenarioEntry) => boolean, options: { concurrently?: boolean } = {}): void {
  const define = options.concurrently === true ? test.concurrent : test;
  // At most three scenarios at once: more starve each other's servers on a 2-core machine.
  const slots = new Semaphore(3);
  const cases = SCENARIOS.filter(filter).flatMap((entry) => ENGINES.filter((engine) => entry.engines.includes(engine)).map((engine) => ({ entry, engine })));
  define.each(cases.map((c) => [`${c.entry.name} (${c.engine})`, c] as const))('%s', async (_name, { entry, engine }) => {
    const outcome = await slots.run(() => entry.run({ engine, size: 'quick', note: () => undefined }));
    process.stdout.write(`chaos ${entry.name} (${engine}): ${JSON.stringify(outcome.numbers)}\n`);
    // Every broken expectation at once, so one run tells the whole story.
    expect(outcome.failures).toEqual([]);
    expect(outcome.pass).toBe(true);
  }, 120_000);
}

class Semaphore {
  private readonly queue: (() => void)[] = [];

  constructor(private free: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.queue.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.free++;
    }
  }
}
