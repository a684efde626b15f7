/** Every chaos scenario by name, with the engines it applies to and how long it may take. */
import type { Engine, Scenario } from '../kit';
import { killMidResult, poolExhausted, serverConnectionsTaken, serverRestart, stalledServer, unresolvableTarget } from './faults';
import { protocolFuzz } from './fuzz';
import { connectionStorm, manyIdleClients, slowReader, slowloris } from './load';
import { nothingLost } from './nothing-lost';

export interface ScenarioEntry {
  name: string;
  group: 'fault' | 'load' | 'nothing lost';
  engines: readonly Engine[];
  run: Scenario;
  /** Upper bound for the full size; the runner fails the scenario when it is exceeded. */
  timeoutMs: number;
}

const BOTH: readonly Engine[] = ['postgresql', 'mysql'];

export const SCENARIOS: readonly ScenarioEntry[] = [
  { name: 'server connection killed mid-result', group: 'fault', engines: BOTH, run: (ctx) => killMidResult(ctx, 'terminate'), timeoutMs: 60_000 },
  { name: 'backend kill -9 mid-result', group: 'fault', engines: ['postgresql'], run: (ctx) => killMidResult(ctx, 'kill9'), timeoutMs: 60_000 },
  { name: 'server restart, clients idle', group: 'fault', engines: BOTH, run: (ctx) => serverRestart(ctx, 'idle'), timeoutMs: 60_000 },
  { name: 'server restart, clients busy', group: 'fault', engines: BOTH, run: (ctx) => serverRestart(ctx, 'busy'), timeoutMs: 60_000 },
  { name: 'stalled server (SIGSTOP)', group: 'fault', engines: BOTH, run: stalledServer, timeoutMs: 90_000 },
  { name: 'target name does not resolve', group: 'fault', engines: BOTH, run: unresolvableTarget, timeoutMs: 60_000 },
  { name: 'server max_connections taken by others', group: 'fault', engines: BOTH, run: serverConnectionsTaken, timeoutMs: 60_000 },
  { name: 'proxy pool exhausted by pinned clients', group: 'fault', engines: BOTH, run: poolExhausted, timeoutMs: 60_000 },
  { name: 'many idle clients', group: 'load', engines: BOTH, run: manyIdleClients, timeoutMs: 240_000 },
  { name: 'slow reader of a big result', group: 'load', engines: BOTH, run: slowReader, timeoutMs: 180_000 },
  { name: 'slowloris handshakes', group: 'load', engines: BOTH, run: slowloris, timeoutMs: 60_000 },
  { name: 'connection storm', group: 'load', engines: BOTH, run: connectionStorm, timeoutMs: 90_000 },
  { name: 'protocol fuzzing (integ/fuzz)', group: 'fault', engines: BOTH, run: protocolFuzz, timeoutMs: 300_000 },
  { name: 'writes under random faults', group: 'nothing lost', engines: BOTH, run: nothingLost, timeoutMs: 180_000 },
];
