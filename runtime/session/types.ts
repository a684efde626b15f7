/**
 * The seam between the per-protocol session state machines (below) and the shared pool
 * and server layers (above). Sessions only see these interfaces; the pool implements the
 * broker, the server layer implements the connector. Nothing here is engine-specific.
 */
import type { ProxyError } from '../errors';

/** Identifies one pool: server connections are shared only between clients of the same user and database. */
export interface PoolKey {
  readonly user: string;
  readonly database: string;
  /**
   * The client came over TLS. With targetTls FOLLOW_CLIENT its server connections use TLS
   * too, so TLS and plaintext clients never share a connection (absent: plaintext).
   */
  readonly tls?: boolean;
}

export function poolKeyString(key: PoolKey): string {
  return key.tls === true ? `${key.user}\u0000${key.database}\u0000tls` : `${key.user}\u0000${key.database}`;
}

/** A server connection as the pool sees it. */
export interface ServerConnection {
  readonly id: number;
  readonly key: PoolKey;
  /** Set once by the pool; the connection calls it exactly once when it closes for any reason. */
  onClosed: ((conn: ServerConnection, reason: string) => void) | null;
  /** Brings the connection back to a clean, reusable state (end any transaction, drop session state). */
  reset(done: (reusable: boolean) => void): void;
  /** Closes the connection (idempotent). */
  close(reason: string): void;
  readonly isClosed: boolean;
}

/** How a session gives a connection back. */
export const enum ReleaseMode {
  /** Clean: transaction finished, no session state. */
  Clean = 0,
  /** Carries session state or an unfinished transaction: reset before reuse. */
  NeedsReset = 1,
  /** Unusable (protocol state unknown): close it. */
  Discard = 2,
}

export interface BorrowRequest<C extends ServerConnection> {
  readonly key: PoolKey;
  /** Called once with a connection lent to the borrower, or with the reason none came. */
  readonly callback: (error: ProxyError | null, conn: C | null) => void;
  /** Set by the pool; a borrower that goes away cancels with it. */
  cancelled?: boolean;
}

/** What a session uses to borrow and return server connections. */
export interface ConnectionBroker<C extends ServerConnection> {
  borrow(request: BorrowRequest<C>): void;
  /** Withdraws a waiting borrow (the client went away). */
  cancelBorrow(request: BorrowRequest<C>): void;
  release(conn: C, mode: ReleaseMode): void;
  /** Marks a lent connection as pinned to its client until the client leaves. */
  pin(conn: C, reason: string): void;
}

/** Secrets the proxy authenticates clients against and logs in to the database with. */
export interface Credential {
  readonly username: string;
  readonly password: string;
  readonly clientPasswordAuthType: string;
  readonly iamAuth: 'DISABLED' | 'REQUIRED';
}

export interface CredentialSource {
  /** The credential of a database user, or undefined when the proxy has no secret for it. */
  lookup(username: string): Credential | undefined;
}
