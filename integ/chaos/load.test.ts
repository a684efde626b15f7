/**
 * Load, both engines, at jest sizes: 500 idle clients (10,000 in `npm run chaos`), a slow
 * reader of a 40 MB result (200 MB), slowloris handshakes, and connection storms against the
 * rate and concurrency limits. See scenarios/load.ts for what each checks.
 */
import { scenarioTests } from './jest-support';

scenarioTests((entry) => entry.group === 'load');
