/**
 * The connection pool shared by both engines. One pool serves one target (the writer);
 * inside it, connections are grouped per (user, database) and all groups share one
 * ceiling: maxConnectionsPercent of the target's max_connections.
 *
 * A connection's state is recorded in one place (its entry; idle connections are also in
 * their group's idle list, lent/pinned/resetting ones are counted) and changes only through
 * `move`, which checks the transition. `move` runs twice per transaction, so the check is a
 * bit test and the bookkeeping is counters, not Set/Map churn.
 */
import { ProxyError } from '../errors';
import {
  BorrowRequest,
  ConnectionBroker,
  PoolKey,
  ReleaseMode,
  ServerConnection,
  poolKeyString,
} from '../session/types';

export type ConnectionState = 'idle' | 'lent' | 'pinned' | 'resetting';

const ALLOWED_TRANSITIONS: Record<ConnectionState | 'new', readonly (ConnectionState | 'gone')[]> = {
  new: ['lent', 'idle'],
  idle: ['lent', 'gone'],
  lent: ['idle', 'pinned', 'resetting', 'gone'],
  pinned: ['resetting', 'gone'],
  resetting: ['idle', 'gone'],
};

const TARGET_BIT: Record<ConnectionState | 'gone', number> = { idle: 1, lent: 2, pinned: 4, resetting: 8, gone: 16 };

/** ALLOWED_TRANSITIONS as one bit mask per source state, so that checking a move costs a lookup and an AND. */
const ALLOWED_MASK = Object.fromEntries(
  Object.entries(ALLOWED_TRANSITIONS).map(([from, targets]) => [from, targets.reduce((mask, to) => mask | TARGET_BIT[to], 0)]),
) as Record<ConnectionState | 'new', number>;

interface Entry<C extends ServerConnection> {
  readonly group: Group<C>;
  state: ConnectionState;
  /** When it last went idle, for trimming the longest-idle first. */
  idleSince: number;
}

interface Waiter<C extends ServerConnection> {
  request: BorrowRequest<C>;
  deadline: number;
  enqueuedAt: number;
}

class Group<C extends ServerConnection> {
  /** Most recently used last: lending pops from the end so warm connections are reused first. */
  readonly idle: C[] = [];
  lent = 0;
  pinned = 0;
  resetting = 0;
  opening = 0;
  readonly waiters: Waiter<C>[] = [];

  constructor(
    readonly key: PoolKey,
    readonly keyString: string,
  ) {}

  get size(): number {
    return this.idle.length + this.lent + this.pinned + this.resetting + this.opening;
  }
}

export interface PoolLimits {
  /** Most server connections the pool may have open or opening at once. */
  maxConnections: number;
  /** Most idle connections kept across all groups; more are closed by `sweep`. */
  maxIdleConnections: number;
}

export interface PoolOptions<C extends ServerConnection> {
  open(key: PoolKey): Promise<C>;
  borrowTimeoutMs: number;
  /** Called for pool events worth a log line. */
  onEvent?(event: PoolEvent): void;
  /** Called for every lend with how long the borrower waited (no allocation: hot path). */
  onBorrowed?(waitedMs: number): void;
  now?(): number;
}

export type PoolEvent =
  | { kind: 'open-failed'; key: PoolKey; error: ProxyError }
  | { kind: 'borrow-timeout'; key: PoolKey; waitedMs: number }
  | { kind: 'evicted'; key: PoolKey; reason: string };

export interface GroupStats {
  user: string;
  database: string;
  idle: number;
  lent: number;
  pinned: number;
  resetting: number;
  opening: number;
  waiting: number;
}

export class ConnectionPool<C extends ServerConnection> implements ConnectionBroker<C> {
  private readonly groups = new Map<string, Group<C>>();
  private readonly stateOf = new Map<C, Entry<C>>();
  /**
   * Groups by the identity of the key object a session borrows with (each session keeps one),
   * so the hot borrow path skips building the key string. Replaced whenever a group is dropped.
   */
  private groupByKeyObject = new WeakMap<PoolKey, Group<C>>();
  private limits: PoolLimits = { maxConnections: 1, maxIdleConnections: 1 };
  private dispatching = false;
  private redispatch = false;
  private closed = false;
  private readonly now: () => number;

  constructor(private readonly options: PoolOptions<C>) {
    this.now = options.now ?? Date.now;
  }

  /** Updates the ceiling (e.g. once the target's max_connections is known). */
  setLimits(limits: PoolLimits): void {
    this.limits = { maxConnections: Math.max(1, limits.maxConnections), maxIdleConnections: Math.max(0, limits.maxIdleConnections) };
    this.dispatch();
  }

  get currentLimits(): PoolLimits {
    return this.limits;
  }

  /** Connections open or opening, across all groups. */
  get totalConnections(): number {
    let total = 0;
    for (const group of this.groups.values()) total += group.size;
    return total;
  }

  borrow(request: BorrowRequest<C>): void {
    if (this.closed) {
      request.callback(new ProxyError('SHUTTING_DOWN', 'the proxy is shutting down'), null);
      return;
    }
    const group = this.groupFor(request.key);
    const now = this.now();
    // Fast path: an idle connection and nobody queued ahead.
    if (group.waiters.length === 0 && group.idle.length > 0) {
      const conn = group.idle[group.idle.length - 1]!;
      this.move(conn, 'idle', 'lent');
      this.options.onBorrowed?.(0);
      request.callback(null, conn);
      return;
    }
    group.waiters.push({ request, deadline: now + this.options.borrowTimeoutMs, enqueuedAt: now });
    this.dispatch();
  }

  cancelBorrow(request: BorrowRequest<C>): void {
    request.cancelled = true;
    const group = this.groupByKeyObject.get(request.key) ?? this.groups.get(poolKeyString(request.key));
    if (!group) return;
    const index = group.waiters.findIndex((w) => w.request === request);
    if (index >= 0) group.waiters.splice(index, 1);
  }

  release(conn: C, mode: ReleaseMode): void {
    const entry = this.stateOf.get(conn);
    if (!entry) return; // already closed and forgotten
    if (mode === ReleaseMode.Discard || conn.isClosed || this.closed) {
      conn.close('discarded on release');
      return;
    }
    if (mode === ReleaseMode.NeedsReset || entry.state === 'pinned') {
      this.move(conn, entry.state, 'resetting');
      conn.reset((reusable) => {
        const now = this.stateOf.get(conn);
        if (!now || now.state !== 'resetting') return;
        if (!reusable || this.closed) {
          conn.close('reset failed');
          return;
        }
        this.returnToIdle(conn, 'resetting');
      });
      return;
    }
    this.returnToIdle(conn, entry.state, entry);
  }

  pin(conn: C, _reason: string): void {
    const entry = this.stateOf.get(conn);
    if (entry && entry.state === 'lent') this.move(conn, 'lent', 'pinned');
  }

  /** Periodic work: borrow timeouts, retrying failed opens, idle trimming. Called by the one scheduler. */
  sweep(): void {
    this.dispatch();
    const now = this.now();
    for (const group of this.groups.values()) {
      // Waiters are FIFO with one timeout, so expired ones are at the head.
      while (group.waiters.length > 0 && group.waiters[0]!.deadline <= now) {
        const waiter = group.waiters.shift()!;
        this.options.onEvent?.({ kind: 'borrow-timeout', key: group.key, waitedMs: now - waiter.enqueuedAt });
        waiter.request.callback(
          new ProxyError('BORROW_TIMEOUT', 'Timed-out waiting to acquire database connection'),
          null,
        );
      }
    }
    this.trimIdle();
    for (const [keyString, group] of this.groups) {
      if (group.size === 0 && group.waiters.length === 0) {
        this.groups.delete(keyString);
        this.groupByKeyObject = new WeakMap();
      }
    }
  }

  stats(): GroupStats[] {
    return [...this.groups.values()].map((g) => ({
      user: g.key.user,
      database: g.key.database,
      idle: g.idle.length,
      lent: g.lent,
      pinned: g.pinned,
      resetting: g.resetting,
      opening: g.opening,
      waiting: g.waiters.length,
    }));
  }

  /** Closes idle connections, fails waiters and refuses new borrows. Lent ones close when released. */
  close(): void {
    this.closed = true;
    for (const group of this.groups.values()) {
      for (const waiter of group.waiters.splice(0)) {
        waiter.request.callback(new ProxyError('SHUTTING_DOWN', 'the proxy is shutting down'), null);
      }
      for (const conn of [...group.idle]) conn.close('pool closed');
    }
  }

  /** Closes every connection, lent or not (e.g. the target is gone). */
  closeAll(reason: string): void {
    for (const conn of [...this.stateOf.keys()]) conn.close(reason);
  }

  /**
   * A connection back from a borrower goes straight to the first waiter of its group, if any
   * (what `dispatch` would do, without walking every group); otherwise it goes idle, and
   * `dispatch` runs only when some other group may be waiting for a slot it could free.
   */
  private returnToIdle(conn: C, from: ConnectionState, known?: Entry<C>): void {
    const entry = known ?? this.stateOf.get(conn)!;
    const group = entry.group;
    if (group.waiters.length > 0) {
      const waiter = group.waiters.shift()!;
      // Through idle (a push and a pop): the transition table allows lending only from there.
      this.move(conn, from, 'idle', false, entry);
      this.move(conn, 'idle', 'lent', false, entry);
      this.options.onBorrowed?.(this.now() - waiter.enqueuedAt);
      waiter.request.callback(null, conn);
      return;
    }
    this.move(conn, from, 'idle', false, entry);
    entry.idleSince = this.now();
    if (this.groups.size > 1) this.dispatch();
  }

  private groupFor(key: PoolKey): Group<C> {
    const cached = this.groupByKeyObject.get(key);
    if (cached !== undefined) return cached;
    const keyString = poolKeyString(key);
    let group = this.groups.get(keyString);
    if (!group) {
      group = new Group<C>(key, keyString);
      this.groups.set(keyString, group);
    }
    this.groupByKeyObject.set(key, group);
    return group;
  }

  /**
   * The one place a connection changes state. `newIn` is the group of a connection entering
   * the pool; `known` saves a lookup when the caller already holds the entry.
   */
  private move(conn: C, from: ConnectionState | 'new', to: ConnectionState | 'gone', newIn: Group<C> | false = false, known?: Entry<C>): void {
    if ((ALLOWED_MASK[from] & TARGET_BIT[to]) === 0) {
      throw new ProxyError('INTERNAL', `pool: illegal transition ${from} -> ${to} for connection ${conn.id}`);
    }
    let entry: Entry<C> | undefined;
    if (from === 'new') {
      if (newIn === false || this.stateOf.has(conn)) throw new ProxyError('INTERNAL', `pool: connection ${conn.id} is already pooled`);
      entry = { group: newIn, state: to as ConnectionState, idleSince: 0 };
      this.stateOf.set(conn, entry);
    } else {
      entry = known ?? this.stateOf.get(conn);
      if (entry === undefined || entry.state !== from) {
        throw new ProxyError('INTERNAL', `pool: connection ${conn.id} is ${entry?.state ?? 'unknown'}, not ${from}`);
      }
      this.leave(entry.group, from, conn);
      if (to === 'gone') {
        this.stateOf.delete(conn);
        return;
      }
      entry.state = to as ConnectionState;
    }
    this.enter(entry.group, to as ConnectionState, conn);
  }

  private enter(group: Group<C>, state: ConnectionState, conn: C): void {
    if (state === 'lent') group.lent++;
    else if (state === 'idle') group.idle.push(conn);
    else if (state === 'pinned') group.pinned++;
    else group.resetting++;
  }

  private leave(group: Group<C>, state: ConnectionState, conn: C): void {
    if (state === 'lent') group.lent--;
    else if (state === 'idle') {
      // Usually the last one (lending pops from the end).
      const idle = group.idle;
      if (idle[idle.length - 1] === conn) idle.pop();
      else {
        const index = idle.lastIndexOf(conn);
        if (index >= 0) idle.splice(index, 1);
      }
    } else if (state === 'pinned') group.pinned--;
    else group.resetting--;
  }

  private forget(conn: C): void {
    const entry = this.stateOf.get(conn);
    if (!entry) return;
    this.move(conn, entry.state, 'gone');
    this.dispatch();
  }

  /** Matches waiters with idle connections, opens new ones within the ceiling, evicts idle ones of other groups when full. */
  private dispatch(): void {
    if (this.dispatching) {
      this.redispatch = true;
      return;
    }
    this.dispatching = true;
    try {
      do {
        this.redispatch = false;
        this.dispatchOnce();
      } while (this.redispatch);
    } finally {
      this.dispatching = false;
    }
  }

  private dispatchOnce(): void {
    // First every group's waiters take the group's own idle connections, so a connection is
    // never evicted for another group while someone in its own group waits for it.
    for (const group of this.groups.values()) {
      while (group.waiters.length > 0 && group.idle.length > 0) {
        const waiter = group.waiters.shift()!;
        const conn = group.idle[group.idle.length - 1]!;
        this.move(conn, 'idle', 'lent');
        this.options.onBorrowed?.(this.now() - waiter.enqueuedAt);
        waiter.request.callback(null, conn);
      }
    }
    // Then unmet demand opens connections within the ceiling, evicting idle connections of
    // groups nobody waits for when the ceiling is reached.
    for (const group of this.groups.values()) {
      while (group.waiters.length > group.opening && !this.closed) {
        if (this.totalConnections >= this.limits.maxConnections) {
          if (!this.evictIdleFromOtherGroup(group)) break;
          continue;
        }
        this.openFor(group);
      }
    }
  }

  private evictIdleFromOtherGroup(needy: Group<C>): boolean {
    let victim: C | undefined;
    let oldest = Infinity;
    for (const group of this.groups.values()) {
      if (group === needy || group.idle.length === 0 || group.waiters.length > 0) continue;
      const candidate = group.idle[0]!;
      const since = this.stateOf.get(candidate)?.idleSince ?? 0;
      if (since < oldest) {
        oldest = since;
        victim = candidate;
      }
    }
    if (!victim) return false;
    const group = this.stateOf.get(victim)!.group;
    this.options.onEvent?.({ kind: 'evicted', key: group.key, reason: 'another user/database needs the slot' });
    this.move(victim, 'idle', 'gone');
    victim.close('evicted for another pool');
    return true;
  }

  private openFor(group: Group<C>): void {
    group.opening++;
    this.options.open(group.key).then(
      (conn) => {
        group.opening--;
        if (this.closed || conn.isClosed) {
          conn.close('pool closed');
          this.dispatch();
          return;
        }
        conn.onClosed = (closed) => this.forget(closed as C);
        this.move(conn, 'new', 'idle', group);
        this.stateOf.get(conn)!.idleSince = this.now();
        if (!this.groups.has(group.keyString)) this.groups.set(group.keyString, group);
        this.dispatch();
      },
      (error: unknown) => {
        group.opening--;
        const proxyError =
          error instanceof ProxyError ? error : new ProxyError('SERVER_CONNECT_FAILED', String(error));
        this.options.onEvent?.({ kind: 'open-failed', key: group.key, error: proxyError });
        if (!proxyError.transient) {
          // The database answered and refused (unknown database, rejected password): everyone
          // queued for this group would hit the same wall, so tell them now.
          for (const waiter of group.waiters.splice(0)) waiter.request.callback(proxyError, null);
          this.dispatch();
        }
        // A transient failure (a failover, a restart): waiters keep waiting, up to
        // connectionBorrowTimeout, and the next sweep tries again.
      },
    );
  }

  private trimIdle(): void {
    let idleTotal = 0;
    for (const group of this.groups.values()) idleTotal += group.idle.length;
    while (idleTotal > this.limits.maxIdleConnections) {
      let victim: C | undefined;
      let oldest = Infinity;
      for (const group of this.groups.values()) {
        if (group.idle.length === 0) continue;
        const since = this.stateOf.get(group.idle[0]!)?.idleSince ?? 0;
        if (since < oldest) {
          oldest = since;
          victim = group.idle[0];
        }
      }
      if (!victim) break;
      this.move(victim, 'idle', 'gone');
      victim.close('idle connections above maxIdleConnectionsPercent');
      idleTotal--;
    }
  }
}
