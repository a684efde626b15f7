/**
 * Nothing lost, both engines: 10 writers (20 in `npm run chaos`) under ~8 s of random faults
 * (server connections killed, the primary restarted, a failover to a synchronous standby /
 * semi-synchronous replica). Every acknowledged commit is there exactly once, the counter matches
 * the rows, and a failed COMMIT only ever reports "outcome unknown".
 */
import { scenarioTests } from './jest-support';

// The two engines' runs measure no latency, so they run side by side.
scenarioTests((entry) => entry.group === 'nothing lost', { concurrently: true });
