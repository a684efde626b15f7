/**
 * The small interface each wire protocol implements for the server layer. Listeners,
 * timeouts, shutdown and metrics work on these handles whatever the engine.
 */
import type { Socket } from 'node:net';
import type { EngineFamily } from '../config/schema';
import type { ProxyError } from '../errors';
import type { GroupStats, PoolLimits } from '../pool/pool';
import type { Target, TargetHealth } from '../pool/target-group';

export interface ClientHandle {
  readonly id: number;
  readonly lastActivity: number;
  readonly connectedAt: number;
  /** Authenticated and serving requests. */
  readonly isReady: boolean;
  /** Holds no server connection and waits for none: safe to close without losing work. */
  readonly isIdle: boolean;
  /** Whether the client negotiated TLS. */
  readonly isTls: boolean;
  terminate(error: ProxyError): void;
}

export interface EngineStats {
  pool: GroupStats[];
  limits: PoolLimits;
  serverConnections: number;
  targets?: TargetHealth[];
  writer?: Target | null;
  /** PostgreSQL: the proxy-wide statement-name registry (bounded; see StatementRegistry). */
  statementCache?: { entries: number; textBytes: number };
}

export interface Engine {
  readonly family: EngineFamily;
  /**
   * The listener accepts sockets paused (pauseOnConnect) so an engine can re-wrap them for
   * onread (see sockets.ts). Engines that do not set this get them resumed.
   */
  readonly takesPausedSockets?: boolean;
  /** Starts background work (writer probing). */
  start?(): void;
  /** Refuses a freshly accepted client in the protocol's own form (before any authentication work). */
  refuseClient?(socket: Socket, error: ProxyError): void;
  /** Takes over a freshly accepted client socket. */
  acceptClient(socket: Socket, onClosed: (client: ClientHandle) => void): ClientHandle;
  /** Periodic pool work (borrow timeouts, idle trimming); called by the proxy's one scheduler. */
  sweep(): void;
  stats(): EngineStats;
  /** Stops lending connections and closes idle ones. */
  close(): void;
}
