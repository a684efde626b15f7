/**
 * The target group: which of the configured database instances is the writer right now,
 * and how healthy each one is. Shared by both engines; the engine supplies the probe
 * (PostgreSQL: pg_is_in_recovery(); MySQL: @@read_only).
 *
 * Rules:
 * - A target becomes the writer only after it reports itself writable.
 * - The writer is sticky: while it stays writable, another target that also claims to be
 *   writable (a former writer coming back after a failover) is not used.
 * - When no writer is known, probing speeds up so that a promoted standby is found fast.
 */

export interface Target {
  readonly host: string;
  readonly port: number;
}

export type TargetHealthState = 'AVAILABLE' | 'UNAVAILABLE' | 'UNKNOWN';
export type TargetRole = 'READ_WRITE' | 'READ_ONLY' | 'UNKNOWN';

/** As describe-db-proxy-targets reports it. */
export interface TargetHealth {
  readonly target: Target;
  readonly role: TargetRole;
  readonly state: TargetHealthState;
  readonly reason?: 'UNREACHABLE' | 'CONNECTION_FAILED' | 'AUTH_FAILURE' | 'PENDING_PROXY_CAPACITY' | 'INVALID_REPLICATION_STATE';
  readonly description?: string;
}

export interface ProbeResult {
  writable: boolean;
}

/** Engine-specific probing of one target; keeps whatever connection it needs between probes. */
export interface TargetProber {
  probe(): Promise<ProbeResult>;
  close(): void;
}

export interface TargetGroupOptions {
  createProber(target: Target): TargetProber;
  /** Probe period while a writer is known. */
  intervalMs: number;
  /** Probe period while no writer is known. */
  fastIntervalMs: number;
  /** A probe that takes longer counts as a failure. */
  probeTimeoutMs: number;
  onWriterChanged(writer: Target | null, previous: Target | null): void;
  now?(): number;
}

interface TargetEntry {
  target: Target;
  prober: TargetProber;
  health: TargetHealth;
  probing: boolean;
}

export class TargetGroup {
  private readonly entries: TargetEntry[];
  private currentWriter: TargetEntry | null = null;
  private readonly formerWriters = new Set<TargetEntry>();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private writerWaiters: ((writer: Target) => void)[] = [];
  private readonly now: () => number;
  /** When the current writer became available (for TargetGroupWriterAvailableDuration). */
  private writerSince: number | null = null;

  constructor(targets: readonly Target[], private readonly options: TargetGroupOptions) {
    this.now = options.now ?? Date.now;
    this.entries = targets.map((target) => ({
      target,
      prober: options.createProber(target),
      health: { target, role: 'UNKNOWN', state: 'UNKNOWN', description: 'not probed yet' },
      probing: false,
    }));
  }

  get writer(): Target | null {
    return this.currentWriter?.target ?? null;
  }

  /** Milliseconds the current writer has been available, or 0 without one. */
  get writerAvailableMs(): number {
    return this.writerSince === null ? 0 : this.now() - this.writerSince;
  }

  health(): TargetHealth[] {
    return this.entries.map((e) => e.health);
  }

  start(): void {
    void this.probeAll();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const entry of this.entries) entry.prober.close();
  }

  /** Resolves with the writer as soon as one is known. */
  waitForWriter(): Promise<Target> {
    if (this.currentWriter) return Promise.resolve(this.currentWriter.target);
    return new Promise((resolve) => this.writerWaiters.push(resolve));
  }

  /** A connection to `target` just failed: re-check everything now instead of at the next tick. */
  suspect(target: Target): void {
    const entry = this.entries.find((e) => e.target === target);
    if (entry && entry === this.currentWriter) void this.probeAll();
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const delay = this.currentWriter ? this.options.intervalMs : this.options.fastIntervalMs;
    this.timer = setTimeout(() => void this.probeAll(), delay);
    this.timer.unref();
  }

  private async probeAll(): Promise<void> {
    if (this.stopped) return;
    await Promise.all(this.entries.map((entry) => this.probeOne(entry)));
    this.electWriter();
    this.schedule();
  }

  private async probeOne(entry: TargetEntry): Promise<void> {
    if (entry.probing) return;
    entry.probing = true;
    try {
      const result = await withTimeout(entry.prober.probe(), this.options.probeTimeoutMs);
      entry.health = { target: entry.target, role: result.writable ? 'READ_WRITE' : 'READ_ONLY', state: 'AVAILABLE' };
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      entry.health = {
        target: entry.target,
        role: 'UNKNOWN',
        state: 'UNAVAILABLE',
        reason: /auth/i.test(message) ? 'AUTH_FAILURE' : /timed out|ECONNREFUSED|ENOTFOUND|EHOSTUNREACH/i.test(message) ? 'UNREACHABLE' : 'CONNECTION_FAILED',
        description: message,
      };
    } finally {
      entry.probing = false;
    }
  }

  private electWriter(): void {
    const writable = (e: TargetEntry) => e.health.state === 'AVAILABLE' && e.health.role === 'READ_WRITE';
    const current = this.currentWriter;
    if (current && writable(current)) return;
    const candidates = this.entries.filter(writable);
    // Prefer a target that has never been the writer: a former writer that comes back
    // writable is stale (its standby was promoted in the meantime).
    const next = candidates.find((e) => !this.formerWriters.has(e)) ?? candidates[0] ?? null;
    if (next === current) return;
    if (current) this.formerWriters.add(current);
    this.currentWriter = next;
    this.writerSince = next ? this.now() : null;
    if (next) this.formerWriters.delete(next);
    this.options.onWriterChanged(next?.target ?? null, current?.target ?? null);
    if (next) {
      const waiters = this.writerWaiters;
      this.writerWaiters = [];
      for (const resolve of waiters) resolve(next.target);
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`probe timed out after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
