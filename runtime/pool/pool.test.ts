import { ProxyError } from '../errors';
import { BorrowRequest, PoolKey, ReleaseMode, ServerConnection } from '../session/types';
import { ConnectionPool, GroupStats, PoolEvent, PoolLimits } from './pool';

// ---------- test doubles ----------

let nextConnId = 1;

/** An in-memory server connection: no socket, just the contract the pool relies on. */
class FakeConn implements ServerConnection {
  readonly id = nextConnId++;
  onClosed: ((conn: ServerConnection, reason: string) => void) | null = null;
  isClosed = false;
  closeReason: string | null = null;
  /** reset() callbacks not yet settled by the test. */
  readonly pendingResets: ((reusable: boolean) => void)[] = [];
  resetCalls = 0;

  constructor(readonly key: PoolKey) {}

  reset(done: (reusable: boolean) => void): void {
    this.resetCalls++;
    this.pendingResets.push(done);
  }

  close(reason: string): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.closeReason = reason;
    // Per the ServerConnection contract: onClosed exactly once, whatever the reason.
    const onClosed = this.onClosed;
    if (onClosed) onClosed(this, reason);
  }

  finishReset(reusable: boolean): void {
    const done = this.pendingResets.shift();
    if (!done) throw new Error(`connection ${this.id} has no reset in progress`);
    done(reusable);
  }
}

interface PendingOpen {
  key: PoolKey;
  resolve(conn: FakeConn): void;
  reject(error: unknown): void;
}

/** A borrow and what came back. */
class Borrow {
  readonly results: { error: ProxyError | null; conn: FakeConn | null }[] = [];
  readonly request: BorrowRequest<FakeConn>;

  constructor(readonly key: PoolKey, onResult?: (b: Borrow) => void) {
    this.request = {
      key,
      callback: (error, conn) => {
        this.results.push({ error, conn });
        onResult?.(this);
      },
    };
  }

  get settled(): boolean {
    return this.results.length > 0;
  }

  get conn(): FakeConn | null {
    return this.results[0]?.conn ?? null;
  }

  get error(): ProxyError | null {
    return this.results[0]?.error ?? null;
  }
}

const flush = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

class Harness {
  clock = 0;
  readonly pendingOpens: PendingOpen[] = [];
  openCount = 0;
  readonly conns: FakeConn[] = [];
  readonly events: PoolEvent[] = [];
  readonly pool: ConnectionPool<FakeConn>;

  constructor(limits: PoolLimits, borrowTimeoutMs = 1000) {
    this.pool = new ConnectionPool<FakeConn>({
      open: (key) => {
        this.openCount++;
        return new Promise<FakeConn>((resolve, reject) => this.pendingOpens.push({ key, resolve, reject }));
      },
      borrowTimeoutMs,
      onEvent: (event) => this.events.push(event),
      now: () => this.clock,
    });
    this.pool.setLimits(limits);
  }

  borrow(key: PoolKey, onResult?: (b: Borrow) => void): Borrow {
    const b = new Borrow(key, onResult);
    this.pool.borrow(b.request);
    return b;
  }

  /** Completes the oldest (or the given) pending open with a fresh connection. */
  async openNext(index = 0): Promise<FakeConn> {
    const pending = this.pendingOpens.splice(index, 1)[0];
    if (!pending) throw new Error('no open in progress');
    const conn = new FakeConn(pending.key);
    this.conns.push(conn);
    pending.resolve(conn);
    await flush();
    return conn;
  }

  async failNext(error: unknown, index = 0): Promise<void> {
    const pending = this.pendingOpens.splice(index, 1)[0];
    if (!pending) throw new Error('no open in progress');
    pending.reject(error);
    await flush();
  }

  /** Borrows for `key`, completes the open, and returns the lent connection. */
  async lendNew(key: PoolKey): Promise<FakeConn> {
    const b = this.borrow(key);
    expect(b.settled).toBe(false);
    const conn = await this.openNext(this.pendingOpens.length - 1);
    expect(b.conn).toBe(conn);
    return conn;
  }

  group(key: PoolKey): GroupStats {
    const s = this.pool.stats().find((g) => g.user === key.user && g.database === key.database);
    return s ?? { user: key.user, database: key.database, idle: 0, lent: 0, pinned: 0, resetting: 0, opening: 0, waiting: 0 };
  }

  totals(): Omit<GroupStats, 'user' | 'database'> {
    const t = { idle: 0, lent: 0, pinned: 0, resetting: 0, opening: 0, waiting: 0 };
    for (const g of this.pool.stats()) {
      t.idle += g.idle;
      t.lent += g.lent;
      t.pinned += g.pinned;
      t.resetting += g.resetting;
      t.opening += g.opening;
      t.waiting += g.waiting;
    }
    return t;
  }

  /** Structural invariants that must hold after every operation (plain checks: this runs thousands of times). */
  checkInvariants(): void {
    const t = this.totals();
    const size = t.idle + t.lent + t.pinned + t.resetting + t.opening;
    const max = this.pool.currentLimits.maxConnections;
    if (size !== this.pool.totalConnections) throw new Error(`stats add up to ${size}, totalConnections is ${this.pool.totalConnections}`);
    if (size > max) throw new Error(`${size} connections open or opening, ceiling is ${max}: ${JSON.stringify(this.pool.stats())}`);
    if (t.opening !== this.pendingOpens.length) throw new Error(`stats say ${t.opening} opening, ${this.pendingOpens.length} opens are in flight`);
    // Every connection the pool tracks is open, and every open connection it received is tracked.
    const live = this.conns.filter((c) => !c.isClosed).length;
    const tracked = t.idle + t.lent + t.pinned + t.resetting;
    if (tracked !== live) throw new Error(`pool tracks ${tracked} connections, ${live} are open`);
  }
}

const A: PoolKey = { user: 'alice', database: 'app' };
const B: PoolKey = { user: 'bob', database: 'app' };
const C: PoolKey = { user: 'alice', database: 'reports' };

let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};
beforeEach(() => {
  unhandled = [];
  process.on('unhandledRejection', onUnhandled);
});
afterEach(async () => {
  await flush();
  process.off('unhandledRejection', onUnhandled);
  // A throw inside the pool's open() continuation (e.g. an illegal transition) would surface here.
  expect(unhandled).toEqual([]);
});

// ---------- tests ----------

describe('borrowing', () => {
  test('the first borrow opens a connection and lends it', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 2 });
    const b = h.borrow(A);
    expect(h.openCount).toBe(1);
    expect(h.pendingOpens[0]!.key).toEqual(A);
    expect(h.group(A)).toMatchObject({ opening: 1, waiting: 1 });
    const conn = await h.openNext();
    expect(b.conn).toBe(conn);
    expect(b.error).toBeNull();
    expect(conn.onClosed).not.toBeNull();
    expect(h.group(A)).toMatchObject({ opening: 0, waiting: 0, lent: 1 });
    h.checkInvariants();
  });

  test('an idle connection is lent synchronously, most recently released first (LIFO)', async () => {
    const h = new Harness({ maxConnections: 3, maxIdleConnections: 3 });
    const c1 = await h.lendNew(A);
    const c2 = await h.lendNew(A);
    const c3 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.Clean);
    h.pool.release(c2, ReleaseMode.Clean);
    h.pool.release(c3, ReleaseMode.Clean);
    expect(h.group(A)).toMatchObject({ idle: 3, lent: 0 });
    expect(h.borrow(A).conn).toBe(c3);
    expect(h.borrow(A).conn).toBe(c2);
    expect(h.borrow(A).conn).toBe(c1);
    expect(h.openCount).toBe(3);
    h.checkInvariants();
  });

  test('connections are only shared within the same (user, database)', async () => {
    const h = new Harness({ maxConnections: 3, maxIdleConnections: 3 });
    const a = await h.lendNew(A);
    h.pool.release(a, ReleaseMode.Clean);
    const b = h.borrow(C);
    expect(b.settled).toBe(false);
    expect(h.openCount).toBe(2);
    expect(h.pendingOpens[0]!.key).toEqual(C);
    expect(h.group(A).idle).toBe(1);
  });

  test('the ceiling is never exceeded by many concurrent borrows', async () => {
    const h = new Harness({ maxConnections: 5, maxIdleConnections: 5 });
    const borrows: Borrow[] = [];
    for (let i = 0; i < 50; i++) {
      borrows.push(h.borrow(A));
      h.checkInvariants();
    }
    expect(h.openCount).toBe(5);
    expect(h.group(A)).toMatchObject({ opening: 5, waiting: 50 });
    const conns: FakeConn[] = [];
    for (let i = 0; i < 5; i++) {
      conns.push(await h.openNext());
      h.checkInvariants();
    }
    expect(h.openCount).toBe(5);
    expect(h.group(A)).toMatchObject({ lent: 5, waiting: 45 });
    // The first five borrowers were served, in order.
    expect(borrows.slice(0, 5).map((b) => b.conn)).toEqual(conns);
    expect(borrows.slice(5).some((b) => b.settled)).toBe(false);
  });

  test('the ceiling is shared by all groups', async () => {
    const h = new Harness({ maxConnections: 4, maxIdleConnections: 4 });
    for (let i = 0; i < 10; i++) {
      h.borrow(A);
      h.borrow(B);
      h.borrow(C);
      h.checkInvariants();
    }
    expect(h.openCount).toBe(4);
    for (let i = 0; i < 10 && h.pendingOpens.length > 0; i++) {
      await h.openNext();
      h.checkInvariants();
    }
    expect(h.pool.totalConnections).toBe(4);
    // (How the 4 slots end up split between groups is covered by the eviction tests below.)
  });

  test('raising the ceiling opens connections for those waiting', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    h.borrow(A);
    h.borrow(A);
    h.borrow(A);
    expect(h.openCount).toBe(1);
    h.pool.setLimits({ maxConnections: 3, maxIdleConnections: 3 });
    expect(h.openCount).toBe(3);
    h.checkInvariants();
  });

  test('setLimits clamps maxConnections to at least 1 and maxIdleConnections to at least 0', () => {
    const h = new Harness({ maxConnections: 0, maxIdleConnections: -5 });
    expect(h.pool.currentLimits).toEqual({ maxConnections: 1, maxIdleConnections: 0 });
  });

  test('waiters are served first-in first-out as connections are released', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 2 });
    const c1 = await h.lendNew(A);
    const c2 = await h.lendNew(A);
    const waiters = [h.borrow(A), h.borrow(A), h.borrow(A), h.borrow(A)];
    expect(h.openCount).toBe(2);
    h.pool.release(c2, ReleaseMode.Clean);
    expect(waiters.map((w) => w.conn)).toEqual([c2, null, null, null]);
    h.pool.release(c1, ReleaseMode.Clean);
    expect(waiters.map((w) => w.conn)).toEqual([c2, c1, null, null]);
    h.pool.release(c2, ReleaseMode.Clean);
    h.pool.release(c1, ReleaseMode.Clean);
    expect(waiters.map((w) => w.conn)).toEqual([c2, c1, c2, c1]);
    expect(waiters.every((w) => w.results.length === 1)).toBe(true);
    h.checkInvariants();
  });

  test('a borrower that releases inside its callback hands the connection to the next waiter', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) =>
      h.borrow(A, (b) => {
        order.push(n);
        if (n < 3) h.pool.release(b.conn!, ReleaseMode.Clean);
      }),
    );
    h.pool.release(c1, ReleaseMode.Clean);
    expect(order).toEqual([1, 2, 3]);
    expect(waiters.map((w) => w.conn)).toEqual([c1, c1, c1]);
    expect(h.group(A)).toMatchObject({ lent: 1, idle: 0, waiting: 0 });
    h.checkInvariants();
  });

  test('pool close() refuses new borrows with SHUTTING_DOWN', () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    h.pool.close();
    const b = h.borrow(A);
    expect(b.error).toBeInstanceOf(ProxyError);
    expect(b.error!.code).toBe('SHUTTING_DOWN');
    expect(h.openCount).toBe(0);
  });
});

describe('borrow timeout', () => {
  test('sweep() fails waiters whose deadline passed with BORROW_TIMEOUT, oldest first', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 }, 1000);
    const c1 = await h.lendNew(A);
    h.clock = 100;
    const first = h.borrow(A);
    h.clock = 600;
    const second = h.borrow(A);

    h.clock = 1099;
    h.pool.sweep();
    expect(first.settled).toBe(false);
    expect(second.settled).toBe(false);

    h.clock = 1100;
    h.pool.sweep();
    expect(first.results).toHaveLength(1);
    expect(first.conn).toBeNull();
    expect(first.error).toBeInstanceOf(ProxyError);
    expect(first.error!.code).toBe('BORROW_TIMEOUT');
    expect(first.error!.message).toBe('Timed-out waiting to acquire database connection');
    expect(second.settled).toBe(false);
    expect(h.events).toContainEqual({ kind: 'borrow-timeout', key: A, waitedMs: 1000 });
    expect(h.group(A).waiting).toBe(1);

    h.clock = 5000;
    h.pool.sweep();
    expect(second.error!.code).toBe('BORROW_TIMEOUT');
    expect(h.events.filter((e) => e.kind === 'borrow-timeout')).toEqual([
      { kind: 'borrow-timeout', key: A, waitedMs: 1000 },
      { kind: 'borrow-timeout', key: A, waitedMs: 4400 },
    ]);

    // The connection released later goes idle; the timed-out borrowers are not called again.
    h.pool.release(c1, ReleaseMode.Clean);
    expect(first.results).toHaveLength(1);
    expect(second.results).toHaveLength(1);
    expect(h.group(A).idle).toBe(1);
    h.checkInvariants();
  });

  test('a borrow served before its deadline is not timed out later', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 }, 1000);
    const c1 = await h.lendNew(A);
    const waiter = h.borrow(A);
    h.clock = 500;
    h.pool.release(c1, ReleaseMode.Clean);
    expect(waiter.conn).toBe(c1);
    h.clock = 10_000;
    h.pool.sweep();
    expect(waiter.results).toHaveLength(1);
  });
});

describe('cancelBorrow', () => {
  test('removes the waiter: it is never called and the next one is served', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    const gone = h.borrow(A);
    const next = h.borrow(A);
    expect(h.group(A).waiting).toBe(2);
    h.pool.cancelBorrow(gone.request);
    expect(gone.request.cancelled).toBe(true);
    expect(h.group(A).waiting).toBe(1);
    h.pool.release(c1, ReleaseMode.Clean);
    expect(gone.settled).toBe(false);
    expect(next.conn).toBe(c1);
    h.clock = 1_000_000;
    h.pool.sweep();
    expect(gone.settled).toBe(false);
  });

  test('a connection opened for a cancelled borrow goes idle', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 2 });
    const b = h.borrow(A);
    expect(h.group(A).opening).toBe(1);
    h.pool.cancelBorrow(b.request);
    const conn = await h.openNext();
    expect(b.settled).toBe(false);
    expect(h.group(A)).toMatchObject({ idle: 1, waiting: 0 });
    expect(h.borrow(A).conn).toBe(conn);
    h.checkInvariants();
  });

  test('is a no-op for an unknown group or a borrow already served', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const stranger = new Borrow({ user: 'nobody', database: 'none' });
    expect(() => h.pool.cancelBorrow(stranger.request)).not.toThrow();
    const served = h.borrow(A);
    await h.openNext();
    const waiting = h.borrow(A);
    h.pool.cancelBorrow(served.request);
    expect(h.group(A).waiting).toBe(1);
    expect(waiting.settled).toBe(false);
  });
});

describe('release', () => {
  test('Clean returns the connection to idle', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.Clean);
    expect(c1.resetCalls).toBe(0);
    expect(h.group(A)).toMatchObject({ idle: 1, lent: 0 });
    h.checkInvariants();
  });

  test('NeedsReset resets, and the connection is reused only once reset succeeded', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.NeedsReset);
    expect(c1.resetCalls).toBe(1);
    expect(h.group(A)).toMatchObject({ resetting: 1, lent: 0, idle: 0 });
    const waiter = h.borrow(A);
    expect(waiter.settled).toBe(false); // not lent while resetting
    expect(h.openCount).toBe(1); // and the slot it holds is still counted
    h.checkInvariants();
    c1.finishReset(true);
    expect(waiter.conn).toBe(c1);
    expect(h.group(A)).toMatchObject({ resetting: 0, lent: 1 });
    h.checkInvariants();
  });

  test('NeedsReset with a failed reset closes the connection and frees its slot', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.NeedsReset);
    const waiter = h.borrow(A);
    expect(h.openCount).toBe(1);
    c1.finishReset(false);
    expect(c1.isClosed).toBe(true);
    expect(c1.closeReason).toBe('reset failed');
    expect(waiter.settled).toBe(false);
    expect(h.openCount).toBe(2); // the freed slot goes to the waiter
    const c2 = await h.openNext();
    expect(waiter.conn).toBe(c2);
    h.checkInvariants();
  });

  test('a reset that reports back twice is acted on once', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.NeedsReset);
    const done = c1.pendingResets[0]!;
    c1.finishReset(true);
    const again = h.borrow(A);
    expect(again.conn).toBe(c1);
    expect(() => done(true)).not.toThrow();
    expect(() => done(false)).not.toThrow();
    expect(c1.isClosed).toBe(false);
    expect(h.group(A)).toMatchObject({ lent: 1, idle: 0, resetting: 0 });
    h.checkInvariants();
  });

  test('a pinned connection goes through reset even when released Clean', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.pin(c1, 'SET statement');
    expect(h.group(A)).toMatchObject({ pinned: 1, lent: 0 });
    h.checkInvariants();
    h.pool.release(c1, ReleaseMode.Clean);
    expect(c1.resetCalls).toBe(1);
    expect(h.group(A)).toMatchObject({ pinned: 0, resetting: 1 });
    c1.finishReset(true);
    expect(h.group(A)).toMatchObject({ resetting: 0, idle: 1 });
    h.checkInvariants();
  });

  test('pin only applies to a lent connection', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.Clean);
    h.pool.pin(c1, 'too late');
    expect(h.group(A)).toMatchObject({ idle: 1, pinned: 0 });
    h.pool.release(h.borrow(A).conn!, ReleaseMode.NeedsReset);
    h.pool.pin(c1, 'while resetting');
    expect(h.group(A)).toMatchObject({ resetting: 1, pinned: 0 });
    h.checkInvariants();
  });

  test('Discard closes the connection and frees its slot', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    const waiter = h.borrow(A);
    h.pool.pin(c1, 'x');
    h.pool.release(c1, ReleaseMode.Discard);
    expect(c1.isClosed).toBe(true);
    expect(c1.closeReason).toBe('discarded on release');
    expect(c1.resetCalls).toBe(0);
    expect(h.openCount).toBe(2);
    expect(await h.openNext()).toBe(waiter.conn);
    h.checkInvariants();
  });

  test('releasing a connection the pool already forgot is a no-op', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.Discard);
    expect(() => h.pool.release(c1, ReleaseMode.Clean)).not.toThrow();
    expect(() => h.pool.release(c1, ReleaseMode.NeedsReset)).not.toThrow();
    expect(h.pool.totalConnections).toBe(0);
  });
});

describe('connections that close by themselves', () => {
  test('a lent connection that closes is forgotten and its slot reused', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    const waiter = h.borrow(A);
    c1.close('server closed the connection');
    expect(h.group(A).lent).toBe(0);
    expect(h.openCount).toBe(2);
    const c2 = await h.openNext();
    expect(waiter.conn).toBe(c2);
    // The session releasing the dead connection afterwards changes nothing.
    h.pool.release(c1, ReleaseMode.Clean);
    expect(h.group(A)).toMatchObject({ lent: 1, idle: 0 });
    h.checkInvariants();
  });

  test('an idle connection that closes is forgotten: the next borrow opens a new one', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.Clean);
    c1.close('server closed the connection');
    expect(h.group(A).idle).toBe(0);
    const b = h.borrow(A);
    expect(b.settled).toBe(false);
    expect(h.openCount).toBe(2);
    h.checkInvariants();
  });

  test('a connection that closes while resetting is not returned to idle when the reset reports back', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.NeedsReset);
    c1.close('server closed the connection');
    expect(h.group(A).resetting).toBe(0);
    c1.finishReset(true);
    expect(h.group(A).idle).toBe(0);
    expect(h.pool.totalConnections).toBe(0);
    h.checkInvariants();
  });

  test('a pinned connection that closes frees its slot', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.pin(c1, 'x');
    c1.close('boom');
    expect(h.pool.totalConnections).toBe(0);
    h.checkInvariants();
  });

  test('a connection that is already closed when its open resolves is not tracked', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const b = h.borrow(A);
    const pending = h.pendingOpens.shift()!;
    const conn = new FakeConn(A);
    conn.close('died during startup');
    h.conns.push(conn);
    pending.resolve(conn);
    await flush();
    expect(b.settled).toBe(false);
    expect(h.pool.totalConnections).toBe(1); // a new open was started for the waiter
    expect(h.openCount).toBe(2);
    h.checkInvariants();
  });

  test('closeAll closes every connection, lent or idle', async () => {
    const h = new Harness({ maxConnections: 3, maxIdleConnections: 3 });
    const c1 = await h.lendNew(A);
    const c2 = await h.lendNew(B);
    h.pool.release(c2, ReleaseMode.Clean);
    h.pool.closeAll('target is gone');
    expect(c1.closeReason).toBe('target is gone');
    expect(c2.closeReason).toBe('target is gone');
    expect(h.pool.totalConnections).toBe(0);
    h.checkInvariants();
  });
});

describe('eviction across groups', () => {
  test('when the ceiling is full, the longest-idle connection of another group is evicted for a waiter', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 2 });
    const a1 = await h.lendNew(A);
    const a2 = await h.lendNew(A);
    h.clock = 10;
    h.pool.release(a1, ReleaseMode.Clean);
    h.clock = 20;
    h.pool.release(a2, ReleaseMode.Clean);
    const b = h.borrow(B);
    expect(a1.isClosed).toBe(true);
    expect(a1.closeReason).toBe('evicted for another pool');
    expect(a2.isClosed).toBe(false);
    expect(h.events).toContainEqual({ kind: 'evicted', key: A, reason: 'another user/database needs the slot' });
    expect(h.openCount).toBe(3);
    expect(h.pendingOpens[0]!.key).toEqual(B);
    h.checkInvariants();
    const b1 = await h.openNext();
    expect(b.conn).toBe(b1);
    expect(h.group(A)).toMatchObject({ idle: 1 });
    h.checkInvariants();
  });

  test('the victim is the longest-idle across all other groups', async () => {
    const h = new Harness({ maxConnections: 3, maxIdleConnections: 3 });
    const a1 = await h.lendNew(A);
    const c1 = await h.lendNew(C);
    const c2 = await h.lendNew(C);
    h.clock = 5;
    h.pool.release(c2, ReleaseMode.Clean);
    h.clock = 6;
    h.pool.release(a1, ReleaseMode.Clean);
    h.clock = 7;
    h.pool.release(c1, ReleaseMode.Clean);
    h.borrow(B);
    expect([a1, c1, c2].map((c) => c.isClosed)).toEqual([false, false, true]);
    h.checkInvariants();
  });

  test('nothing is evicted when no other group has an idle connection: the waiter waits', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 2 });
    const a1 = await h.lendNew(A);
    await h.lendNew(A);
    const b = h.borrow(B);
    expect(h.openCount).toBe(2);
    expect(b.settled).toBe(false);
    // As soon as group A has an idle connection and no waiter, it moves to group B.
    h.pool.release(a1, ReleaseMode.Clean);
    expect(a1.closeReason).toBe('evicted for another pool');
    expect(h.openCount).toBe(3);
    expect(await h.openNext()).toBe(b.conn);
    h.checkInvariants();
  });

  test('idle connections of the waiting group itself are used, not evicted', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const a1 = await h.lendNew(A);
    h.pool.release(a1, ReleaseMode.Clean);
    expect(h.borrow(A).conn).toBe(a1);
    expect(a1.isClosed).toBe(false);
  });

  // Regression test for a bug found in review (see the commit that fixed it).
  test('a released connection goes to a waiter of its own group rather than being evicted', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 2 });
    await h.lendNew(A); // group A first in iteration order
    const b1 = await h.lendNew(B);
    const waitB = h.borrow(B);
    h.borrow(A);
    expect(h.openCount).toBe(2);
    h.pool.release(b1, ReleaseMode.Clean);
    expect(b1.isClosed).toBe(false);
    expect(waitB.conn).toBe(b1);
    expect(h.openCount).toBe(2);
  });

  // Regression test for a bug found in review (see the commit that fixed it).
  test('a connection opened for a waiter is not evicted before it reaches that waiter', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 2 });
    const a1Waiter = h.borrow(A);
    const b1Waiter = h.borrow(B);
    h.borrow(A);
    h.borrow(B);
    expect(h.pendingOpens.map((p) => p.key)).toEqual([A, B]);
    const a1 = await h.openNext();
    expect(a1Waiter.conn).toBe(a1);
    const b1 = await h.openNext(); // opened for B's first waiter
    expect(b1.closeReason).toBeNull();
    expect(b1Waiter.conn).toBe(b1);
    expect(h.openCount).toBe(2);
  });

  // Regression test for a bug found in review (see the commit that fixed it).
  test('no new connection is opened while the pool is above a lowered ceiling', async () => {
    const h = new Harness({ maxConnections: 3, maxIdleConnections: 3 });
    await h.lendNew(A);
    await h.lendNew(A);
    const b1 = await h.lendNew(B);
    h.pool.release(b1, ReleaseMode.Clean);
    h.pool.setLimits({ maxConnections: 1, maxIdleConnections: 1 });
    const opensBefore = h.openCount;
    h.borrow(A);
    expect(h.openCount).toBe(opensBefore);
    expect(h.pool.totalConnections).toBeLessThanOrEqual(2);
  });
});

describe('trimming idle connections', () => {
  test('sweep closes the longest-idle connections above maxIdleConnections', async () => {
    const h = new Harness({ maxConnections: 10, maxIdleConnections: 2 });
    const a1 = await h.lendNew(A);
    const b1 = await h.lendNew(B);
    const a2 = await h.lendNew(A);
    const b2 = await h.lendNew(B);
    h.clock = 1;
    h.pool.release(a1, ReleaseMode.Clean);
    h.clock = 2;
    h.pool.release(b1, ReleaseMode.Clean);
    h.clock = 3;
    h.pool.release(a2, ReleaseMode.Clean);
    h.clock = 4;
    h.pool.release(b2, ReleaseMode.Clean);
    expect(h.totals().idle).toBe(4); // trimming only happens in sweep
    h.clock = 100;
    h.pool.sweep();
    expect([a1, b1, a2, b2].map((c) => c.isClosed)).toEqual([true, true, false, false]);
    expect(a1.closeReason).toBe('idle connections above maxIdleConnectionsPercent');
    expect(h.totals().idle).toBe(2);
    h.checkInvariants();
  });

  test('reuse refreshes idleness: a connection lent and released again is trimmed last', async () => {
    const h = new Harness({ maxConnections: 10, maxIdleConnections: 1 });
    const a1 = await h.lendNew(A);
    const a2 = await h.lendNew(A);
    h.clock = 1;
    h.pool.release(a1, ReleaseMode.Clean);
    h.clock = 2;
    h.pool.release(a2, ReleaseMode.Clean);
    h.clock = 3;
    const again = h.borrow(A).conn!; // LIFO: a2
    expect(again).toBe(a2);
    h.clock = 4;
    h.pool.release(a2, ReleaseMode.Clean);
    h.pool.sweep();
    expect(a1.isClosed).toBe(true);
    expect(a2.isClosed).toBe(false);
  });

  test('maxIdleConnections 0 closes every idle connection but leaves lent ones', async () => {
    const h = new Harness({ maxConnections: 3, maxIdleConnections: 0 });
    const a1 = await h.lendNew(A);
    const a2 = await h.lendNew(A);
    h.pool.release(a1, ReleaseMode.Clean);
    h.pool.sweep();
    expect(a1.isClosed).toBe(true);
    expect(a2.isClosed).toBe(false);
    expect(h.group(A)).toMatchObject({ idle: 0, lent: 1 });
    h.checkInvariants();
  });

  test('sweep drops empty groups, and a later borrow for them works', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 0 });
    const a1 = await h.lendNew(A);
    h.pool.release(a1, ReleaseMode.Clean);
    h.pool.sweep();
    expect(h.pool.stats()).toEqual([]);
    const b = h.borrow(A);
    const a2 = await h.openNext();
    expect(b.conn).toBe(a2);
    h.checkInvariants();
  });
});

describe('open failures', () => {
  test('fail every waiter of that group with the error, and only that group', async () => {
    const h = new Harness({ maxConnections: 3, maxIdleConnections: 3 });
    const a1 = h.borrow(A);
    const a2 = h.borrow(A);
    const b1 = h.borrow(B);
    expect(h.pendingOpens.map((p) => p.key)).toEqual([A, A, B]);
    const error = new ProxyError('SERVER_CONNECT_FAILED', 'password authentication failed', { sqlState: '28P01' });
    await h.failNext(error);
    expect(a1.error).toBe(error);
    expect(a2.error).toBe(error);
    expect(b1.settled).toBe(false);
    expect(h.events).toContainEqual({ kind: 'open-failed', key: A, error });
    expect(h.group(A)).toMatchObject({ waiting: 0, opening: 1 });
    h.checkInvariants();
    // The other open of group A still completes and its connection goes idle.
    const late = await h.openNext();
    expect(late.key).toEqual(A);
    expect(h.group(A).idle).toBe(1);
    const b = await h.openNext();
    expect(b1.conn).toBe(b);
    h.checkInvariants();
  });

  test('an unreachable target keeps waiters waiting; the next sweep retries; the borrow timeout ends the wait', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const b = h.borrow(A);
    await h.failNext(new ProxyError('SERVER_CONNECT_FAILED', 'connect ECONNREFUSED 10.0.0.1:5432', undefined, true));
    expect(b.settled).toBe(false);
    expect(h.events[0]).toMatchObject({ kind: 'open-failed', key: A });
    expect(h.openCount).toBe(1);
    h.pool.sweep();
    expect(h.openCount).toBe(2);
    const conn = await h.openNext();
    expect(b.conn).toBe(conn);
    conn.close('the target went away');
    const late = h.borrow(A);
    await h.failNext(new ProxyError('SERVER_CONNECT_FAILED', 'target unreachable', undefined, true));
    h.clock += 60_000;
    h.pool.sweep();
    expect(late.error?.code).toBe('BORROW_TIMEOUT');
    h.checkInvariants();
  });

  test('a non-ProxyError rejection becomes SERVER_CONNECT_FAILED and fails the waiters', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const b = h.borrow(A);
    await h.failNext(new Error('unexpected'));
    expect(b.error).toBeInstanceOf(ProxyError);
    expect(b.error!.code).toBe('SERVER_CONNECT_FAILED');
  });

  test('a refused open frees its slot for other groups', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    h.borrow(A);
    const b = h.borrow(B);
    expect(h.openCount).toBe(1);
    await h.failNext(new ProxyError('SERVER_CONNECT_FAILED', 'database "nope" does not exist', { sqlState: '3D000' }));
    expect(h.openCount).toBe(2);
    expect(h.pendingOpens[0]!.key).toEqual(B);
    expect(await h.openNext()).toBe(b.conn);
    h.checkInvariants();
  });
});

describe('close()', () => {
  test('fails waiters with SHUTTING_DOWN, closes idle connections, closes lent ones on release', async () => {
    // Room for one more connection, so the waiter below gets an open rather than evicting the idle one.
    const h = new Harness({ maxConnections: 4, maxIdleConnections: 4 });
    const lent = await h.lendNew(A);
    const idle = await h.lendNew(B);
    const pinned = await h.lendNew(C);
    h.pool.release(idle, ReleaseMode.Clean);
    h.pool.pin(pinned, 'x');
    const waiters = [h.borrow(A)];
    expect(h.group(A)).toMatchObject({ waiting: 1, opening: 1 });
    h.pool.close();
    for (const w of waiters) {
      expect(w.results).toHaveLength(1);
      expect(w.error).toBeInstanceOf(ProxyError);
      expect(w.error!.code).toBe('SHUTTING_DOWN');
    }
    expect(idle.closeReason).toBe('pool closed');
    expect(lent.isClosed).toBe(false);
    h.pool.release(lent, ReleaseMode.Clean);
    expect(lent.closeReason).toBe('discarded on release');
    h.pool.release(pinned, ReleaseMode.Clean);
    expect(pinned.isClosed).toBe(true);
    expect(pinned.resetCalls).toBe(0);
    expect((await h.openNext()).closeReason).toBe('pool closed');
    expect(h.pool.totalConnections).toBe(0);
    h.checkInvariants();
  });

  test('fails every waiting borrow of every group', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    await h.lendNew(A);
    const waiters = [h.borrow(A), h.borrow(B), h.borrow(C), h.borrow(A)];
    h.pool.close();
    expect(waiters.map((w) => w.error?.code)).toEqual(['SHUTTING_DOWN', 'SHUTTING_DOWN', 'SHUTTING_DOWN', 'SHUTTING_DOWN']);
    expect(waiters.every((w) => w.results.length === 1)).toBe(true);
    expect(h.totals().waiting).toBe(0);
  });

  test('a connection whose open completes after close is closed', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const b = h.borrow(A);
    h.pool.close();
    expect(b.error!.code).toBe('SHUTTING_DOWN');
    const conn = await h.openNext();
    expect(conn.closeReason).toBe('pool closed');
    expect(h.pool.totalConnections).toBe(0);
    h.checkInvariants();
  });

  test('a reset that completes after close closes the connection', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.release(c1, ReleaseMode.NeedsReset);
    h.pool.close();
    c1.finishReset(true);
    expect(c1.isClosed).toBe(true);
    expect(h.pool.totalConnections).toBe(0);
  });

  test('no connection is opened after close, even when a slot frees up', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const c1 = await h.lendNew(A);
    h.pool.close();
    c1.close('gone');
    expect(h.openCount).toBe(1);
  });
});

describe('random operation sequences (seeded)', () => {
  function prng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  const KEYS: readonly PoolKey[] = [A, B, C];

  async function run(seed: number, steps: number): Promise<void> {
    const rand = prng(seed);
    const pick = <T>(items: readonly T[]): T | undefined => (items.length === 0 ? undefined : items[Math.floor(rand() * items.length)]);
    const maxConnections = 1 + Math.floor(rand() * 5);
    const h = new Harness({ maxConnections, maxIdleConnections: Math.floor(rand() * (maxConnections + 1)) }, 50);

    /** Connections a borrower holds (lent or pinned, not yet released). */
    const held = new Set<FakeConn>();
    const pending = new Set<Borrow>();
    const cancelled = new Set<Borrow>();
    const log: string[] = [];

    const onResult = (b: Borrow): void => {
      if (b.results.length !== 1) throw new Error(`borrow called ${b.results.length} times`);
      if (cancelled.has(b)) throw new Error('cancelled borrow was called');
      pending.delete(b);
      const { conn, error } = b.results[0]!;
      if (conn) {
        if (error) throw new Error('both a connection and an error');
        if (conn.isClosed) throw new Error(`lent a closed connection ${conn.id}`);
        if (conn.key.user !== b.key.user || conn.key.database !== b.key.database) {
          throw new Error('lent a connection of another group');
        }
        if (held.has(conn)) throw new Error(`connection ${conn.id} lent twice`);
        held.add(conn);
        // Sometimes hand it straight back from inside the callback (re-entrancy).
        if (rand() < 0.15) {
          held.delete(conn);
          h.pool.release(conn, ReleaseMode.Clean);
        }
      } else if (!error) {
        throw new Error('neither a connection nor an error');
      }
    };

    const check = (): void => {
      try {
        h.checkInvariants();
        const t = h.totals();
        const heldLive = [...held].filter((c) => !c.isClosed).length;
        if (t.lent + t.pinned !== heldLive) throw new Error(`lent+pinned ${t.lent + t.pinned}, borrowers hold ${heldLive}`);
        if (t.waiting !== pending.size) throw new Error(`waiting ${t.waiting}, pending borrows ${pending.size}`);
        const resetting = h.conns.filter((c) => !c.isClosed && c.pendingResets.length > 0).length;
        if (t.resetting !== resetting) throw new Error(`resetting ${t.resetting}, resets in progress ${resetting}`);
      } catch (e) {
        throw new Error(`seed ${seed}, after: ${log.slice(-8).join(' | ')}\n${String(e)}`);
      }
    };

    for (let step = 0; step < steps; step++) {
      const r = rand();
      if (r < 0.25) {
        const key = pick(KEYS)!;
        log.push(`borrow ${key.user}/${key.database}`);
        const b = new Borrow(key, onResult);
        pending.add(b);
        h.pool.borrow(b.request);
      } else if (r < 0.3) {
        const b = pick([...pending]);
        if (b) {
          log.push('cancel');
          pending.delete(b);
          cancelled.add(b);
          h.pool.cancelBorrow(b.request);
        }
      } else if (r < 0.45) {
        if (h.pendingOpens.length > 0) {
          const index = Math.floor(rand() * h.pendingOpens.length);
          if (rand() < 0.1) {
            log.push('open fails');
            await h.failNext(new ProxyError('SERVER_CONNECT_FAILED', 'refused'), index);
          } else {
            log.push('open succeeds');
            await h.openNext(index);
          }
        }
      } else if (r < 0.65) {
        const conn = pick([...held]);
        if (conn) {
          const mode = pick([ReleaseMode.Clean, ReleaseMode.Clean, ReleaseMode.NeedsReset, ReleaseMode.Discard])!;
          log.push(`release ${conn.id} mode ${mode}`);
          held.delete(conn);
          h.pool.release(conn, mode);
        }
      } else if (r < 0.7) {
        const conn = pick([...held].filter((c) => !c.isClosed));
        if (conn) {
          log.push(`pin ${conn.id}`);
          h.pool.pin(conn, 'random');
        }
      } else if (r < 0.82) {
        const conn = pick(h.conns.filter((c) => c.pendingResets.length > 0));
        if (conn) {
          const reusable = rand() < 0.8;
          log.push(`reset ${conn.id} ${reusable}`);
          conn.finishReset(reusable);
        }
      } else if (r < 0.87) {
        const conn = pick(h.conns.filter((c) => !c.isClosed));
        if (conn) {
          log.push(`self-close ${conn.id}`);
          conn.close('server went away');
          held.delete(conn);
        }
      } else if (r < 0.99) {
        h.clock += Math.floor(rand() * 30);
        log.push(`sweep @${h.clock}`);
        h.pool.sweep();
      } else {
        log.push('closeAll');
        h.pool.closeAll('failover');
        held.clear();
      }
      // Borrowers whose connection closed under them drop it.
      for (const c of [...held]) if (c.isClosed) held.delete(c);
      check();
    }

    // Shut down and drain: everything ends up closed, nothing is left counted.
    h.pool.close();
    expect(pending.size).toBe(0);
    for (const conn of [...held]) h.pool.release(conn, ReleaseMode.Clean);
    held.clear();
    for (const conn of h.conns) while (conn.pendingResets.length > 0) conn.finishReset(true);
    while (h.pendingOpens.length > 0) await h.openNext();
    check();
    expect(h.pool.totalConnections).toBe(0);
    expect(h.conns.every((c) => c.isClosed)).toBe(true);
  }

  test('ceiling and bookkeeping hold at every step (40 seeds × 400 steps)', async () => {
    for (let seed = 1; seed <= 40; seed++) await run(seed, 400);
  });
});

describe('release hand-off (the hot path)', () => {
  test('a released connection goes straight to the oldest waiter of its group, with its wait reported', async () => {
    const waited: number[] = [];
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const pool = new ConnectionPool<FakeConn>({
      open: (key) => new Promise<FakeConn>((resolve, reject) => h.pendingOpens.push({ key, resolve, reject })),
      borrowTimeoutMs: 1000,
      onBorrowed: (ms) => waited.push(ms),
      now: () => h.clock,
    });
    pool.setLimits({ maxConnections: 1, maxIdleConnections: 1 });
    const first = new Borrow(A);
    pool.borrow(first.request);
    const conn = await h.openNext();
    expect(first.conn).toBe(conn);
    h.clock = 10;
    const second = new Borrow(A);
    const third = new Borrow(A);
    pool.borrow(second.request);
    pool.borrow(third.request);
    h.clock = 25;
    pool.release(conn, ReleaseMode.Clean);
    expect(second.conn).toBe(conn);
    expect(third.settled).toBe(false);
    expect(waited).toEqual([0, 15]);
    expect(pool.stats()).toEqual([expect.objectContaining({ idle: 0, lent: 1, waiting: 1 })]);
    pool.release(conn, ReleaseMode.Clean);
    expect(third.conn).toBe(conn);
    pool.release(conn, ReleaseMode.Clean);
    expect(pool.stats()).toEqual([expect.objectContaining({ idle: 1, lent: 0, waiting: 0 })]);
  });

  test('a connection that finished its reset goes to a waiter, never one still resetting', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const conn = await h.lendNew(A);
    const waiter = h.borrow(A);
    h.pool.release(conn, ReleaseMode.NeedsReset);
    expect(waiter.settled).toBe(false);
    expect(h.group(A)).toMatchObject({ resetting: 1, waiting: 1 });
    conn.finishReset(true);
    expect(waiter.conn).toBe(conn);
    expect(h.group(A)).toMatchObject({ resetting: 0, lent: 1, idle: 0, waiting: 0 });
    h.checkInvariants();
  });

  test('a release with nobody waiting in its group still frees the slot for another group at the ceiling', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const conn = await h.lendNew(A);
    const other = h.borrow(B);
    expect(h.openCount).toBe(1);
    h.pool.release(conn, ReleaseMode.Clean);
    expect(conn.isClosed).toBe(true);
    expect(h.openCount).toBe(2);
    const forB = await h.openNext();
    expect(other.conn).toBe(forB);
    h.checkInvariants();
  });

  test('a session keeps borrowing with the same key object after its empty group was dropped', async () => {
    const h = new Harness({ maxConnections: 2, maxIdleConnections: 0 });
    const key: PoolKey = { user: 'carol', database: 'app' };
    const conn = await h.lendNew(key);
    h.pool.release(conn, ReleaseMode.Clean);
    h.pool.sweep(); // trims the idle connection (maxIdle 0), then drops the empty group
    expect(conn.isClosed).toBe(true);
    expect(h.pool.stats()).toEqual([]);
    const again = h.borrow(key);
    expect(h.group(key)).toMatchObject({ opening: 1, waiting: 1 });
    const fresh = await h.openNext();
    expect(again.conn).toBe(fresh);
    h.checkInvariants();
  });

  test('moving a connection in a way the transition table forbids is refused', async () => {
    const h = new Harness({ maxConnections: 1, maxIdleConnections: 1 });
    const conn = await h.lendNew(A);
    h.pool.release(conn, ReleaseMode.Clean);
    // pin() on an idle connection is ignored (only lent ones pin); the state stays consistent.
    h.pool.pin(conn, 'test');
    expect(h.group(A)).toMatchObject({ idle: 1, pinned: 0 });
    const move = (h.pool as unknown as { move(c: FakeConn, from: string, to: string): void }).move.bind(h.pool);
    expect(() => move(conn, 'idle', 'pinned')).toThrow(/illegal transition idle -> pinned/);
    expect(() => move(conn, 'lent', 'idle')).toThrow(/is idle, not lent/);
    expect(h.group(A)).toMatchObject({ idle: 1, pinned: 0, lent: 0 });
  });
});
