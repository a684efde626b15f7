/**
 * Faults, both engines: a server connection killed mid-result (pg_terminate_backend / KILL, and
 * kill -9 of a PostgreSQL backend), the server restarted with clients idle and busy, a stalled
 * server (SIGSTOP), a target name that does not resolve, max_connections taken by others, and
 * the proxy's pool exhausted by pinned clients. See scenarios/faults.ts for what each checks.
 */
import { scenarioTests } from './jest-support';

// The fuzzing row has jest tests of its own in integ/fuzz.
scenarioTests((entry) => entry.group === 'fault' && !entry.name.startsWith('protocol fuzzing'), { concurrently: true });
