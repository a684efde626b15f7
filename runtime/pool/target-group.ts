/**
 * The target group: which of the database instances is the writer right now, and how
 * healthy each one is. Shared by both engines; the engine supplies the probe (PostgreSQL:
 * pg_is_in_recovery(); MySQL: @@read_only). The list of instances may change while the
 * proxy runs (instances listed through the RDS API are added, removed, rebooted).
 *
 * Rules:
 * - A target becomes the writer only after it reports itself writable.
 * - The writer is sticky: while it stays writable, another target that also claims to be
 *   writable (a former writer coming back after a failover) is not used.
 * - A hint (the RDS API's IsClusterWriter, Aurora's topology view) never replaces the probe:
 *   it only makes the group probe at once and prefer the hinted target among writable ones
 *   that have never been the writer. A stale hint naming a former writer is ignored.
 * - A target the RDS API reports as not serving (rebooting, failing-over, deleting…) is
 *   UNAVAILABLE whatever its probe says; a writer that disappears from the list is dropped
 *   like a lost writer.
 * - When no writer is known, probing speeds up so that a promoted standby is found fast.
 */

export interface Target {
  readonly host: string;
  readonly port: number;
}

export type TargetHealthState = 'AVAILABLE' | 'UNAVAILABLE' | 'UNKNOWN';
export type TargetRole = 'READ_WRITE' | 'READ_ONLY' | 'UNKNOWN';
export type TargetHealthReason = 'UNREACHABLE' | 'CONNECTION_FAILED' | 'AUTH_FAILURE' | 'PENDING_PROXY_CAPACITY' | 'INVALID_REPLICATION_STATE';

/** As describe-db-proxy-targets reports it. */
export interface TargetHealth {
  readonly target: Target;
  readonly role: TargetRole;
  readonly state: TargetHealthState;
  readonly reason?: TargetHealthReason;
  readonly description?: string;
}

/** One entry of the target list, with what the RDS API said about it (nothing for static targets). */
export interface TargetDescription extends Target {
  /** The RDS DB instance identifier, matched against the writer named by Aurora's topology view. */
  readonly instanceId?: string;
  /** The RDS API lists this instance as its cluster's writer (IsClusterWriter). A hint only. */
  readonly writerHint?: boolean;
  /** The target must not be used whatever its probe says (e.g. its DB instance status is "rebooting"). */
  readonly unavailable?: { readonly reason: TargetHealthReason; readonly description: string };
}

export interface ProbeResult {
  writable: boolean;
  /** The writer's instance identifier, when the target exposes a cluster topology view (Aurora). A hint only. */
  topologyWriterId?: string;
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
  /** Probe period while no writer is known (or a hinted writer is not the writer yet). */
  fastIntervalMs: number;
  /** A probe that takes longer counts as a failure. */
  probeTimeoutMs: number;
  onWriterChanged(writer: Target | null, previous: Target | null): void;
  /** The target list changed (added or removed targets, by host:port). */
  onTargetsChanged?(added: readonly Target[], removed: readonly Target[]): void;
  now?(): number;
}

interface TargetEntry {
  readonly key: string;
  /** Stable for the entry's lifetime: connections and callers compare targets by identity. */
  readonly target: Target;
  description: TargetDescription;
  prober: TargetProber;
  health: TargetHealth;
  probing: boolean;
  removed: boolean;
}

/** How long a hint naming a target other than the writer keeps probing at the fast interval. */
const HINT_FAST_PROBING_MS = 30_000;

export function targetKey(target: Target): string {
  return `${target.host}:${target.port}`;
}

export class TargetGroup {
  private entries: TargetEntry[] = [];
  private currentWriter: TargetEntry | null = null;
  /** By host:port, so that a former writer removed from the list and listed again stays fenced. */
  private readonly formerWriters = new Set<string>();
  /** The writer's instance identifier as a topology view last reported it. */
  private topologyWriterId: string | undefined;
  /** The target hints last named as the writer, and since when. */
  private lastHint: string | undefined;
  private hintSince = 0;
  private timer: NodeJS.Timeout | null = null;
  private started = false;
  private stopped = false;
  private writerWaiters: ((writer: Target) => void)[] = [];
  private readonly now: () => number;
  /** When the current writer became available (for TargetGroupWriterAvailableDuration). */
  private writerSince: number | null = null;

  constructor(targets: readonly TargetDescription[], private readonly options: TargetGroupOptions) {
    this.now = options.now ?? Date.now;
    this.setTargets(targets);
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

  /**
   * Replaces the target list. Targets already known keep their prober, health and identity;
   * new ones are probed at once; removed ones stop being probed, and a removed writer is
   * dropped like a lost one.
   */
  setTargets(targets: readonly TargetDescription[]): void {
    if (this.stopped) return;
    const byKey = new Map<string, TargetDescription>();
    for (const description of targets) byKey.set(targetKey(description), description);
    const added: TargetEntry[] = [];
    const removed = this.entries.filter((entry) => !byKey.has(entry.key));
    const kept = new Map(this.entries.filter((entry) => byKey.has(entry.key)).map((entry) => [entry.key, entry]));
    this.entries = [...byKey].map(([key, description]) => {
      const existing = kept.get(key);
      if (existing) {
        existing.description = description;
        if (description.unavailable) existing.health = unavailableHealth(existing.target, description.unavailable);
        return existing;
      }
      const target: Target = { host: description.host, port: description.port };
      const entry: TargetEntry = {
        key,
        target,
        description,
        prober: this.options.createProber(target),
        health: description.unavailable
          ? unavailableHealth(target, description.unavailable)
          : { target, role: 'UNKNOWN', state: 'UNKNOWN', description: 'not probed yet' },
        probing: false,
        removed: false,
      };
      added.push(entry);
      return entry;
    });
    for (const entry of removed) {
      entry.removed = true;
      entry.prober.close();
    }
    if (this.started && (added.length > 0 || removed.length > 0)) {
      this.options.onTargetsChanged?.(
        added.map((e) => e.target),
        removed.map((e) => e.target),
      );
    }
    const writer = this.currentWriter;
    if (writer && (writer.removed || writer.description.unavailable)) {
      // The listing says the writer is gone or not serving: stop writing to it now rather than at the next probe.
      this.formerWriters.add(writer.key);
      this.replaceWriter(null);
    }
    if (!this.started) return;
    const hinted = this.hintedWriter();
    if (added.length > 0 || this.currentWriter === null || (hinted !== null && hinted !== this.currentWriter)) void this.probeAll();
  }

  start(): void {
    this.started = true;
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
    const hinted = this.hintedWriter();
    if (hinted?.key !== this.lastHint) {
      this.lastHint = hinted?.key;
      this.hintSince = this.now();
    }
    // A hint naming another target means a failover is under way: probe fast while it
    // completes, but not forever when the hint never comes true (the probe has the last word).
    const hintPending = hinted !== null && hinted !== this.currentWriter && this.now() - this.hintSince < HINT_FAST_PROBING_MS;
    const settled = this.currentWriter !== null && !hintPending;
    this.timer = setTimeout(() => void this.probeAll(), settled ? this.options.intervalMs : this.options.fastIntervalMs);
    this.timer.unref();
  }

  private async probeAll(): Promise<void> {
    if (this.stopped) return;
    await Promise.all(this.entries.map((entry) => this.probeOne(entry)));
    if (this.stopped) return;
    this.electWriter();
    this.schedule();
  }

  private async probeOne(entry: TargetEntry): Promise<void> {
    if (entry.probing || entry.removed) return;
    const unavailable = entry.description.unavailable;
    if (unavailable) {
      // Not serving per the RDS API: no probe connection is held open to it meanwhile.
      entry.prober.close();
      entry.health = unavailableHealth(entry.target, unavailable);
      return;
    }
    entry.probing = true;
    try {
      const result = await withTimeout(entry.prober.probe(), this.options.probeTimeoutMs);
      if (entry.removed || entry.description.unavailable) return;
      entry.health = { target: entry.target, role: result.writable ? 'READ_WRITE' : 'READ_ONLY', state: 'AVAILABLE' };
      if (result.topologyWriterId !== undefined) this.topologyWriterId = result.topologyWriterId;
    } catch (error) {
      if (entry.removed || entry.description.unavailable) return;
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

  /**
   * The target a hint names as the writer: Aurora's topology view (read at every probe) over
   * the RDS API listing (read every refreshInterval). Former writers are never hinted: a
   * listing taken before a failover still names the old writer.
   */
  private hintedWriter(): TargetEntry | null {
    const usable = (e: TargetEntry) => !this.formerWriters.has(e.key) && !e.description.unavailable;
    const id = this.topologyWriterId;
    if (id !== undefined) {
      const named = this.entries.find((e) => e.description.instanceId === id || e.target.host.startsWith(`${id}.`));
      if (named && usable(named)) return named;
    }
    return this.entries.find((e) => e.description.writerHint === true && usable(e)) ?? null;
  }

  private electWriter(): void {
    const writable = (e: TargetEntry) => e.health.state === 'AVAILABLE' && e.health.role === 'READ_WRITE' && !e.description.unavailable;
    const current = this.currentWriter;
    const hinted = this.hintedWriter();
    // Two writable targets: the one a hint names is the newer writer (an Aurora failover the
    // probes cannot tell apart from a stale writer), unless it has been the writer before.
    if (current && writable(current) && !(hinted !== null && hinted !== current && writable(hinted))) return;
    const candidates = this.entries.filter(writable);
    // Prefer a target that has never been the writer: a former writer that comes back
    // writable is stale (its standby was promoted in the meantime).
    const fresh = candidates.filter((e) => !this.formerWriters.has(e.key));
    const next = (hinted !== null && writable(hinted) ? hinted : null) ?? fresh[0] ?? candidates[0] ?? null;
    if (next === current) return;
    if (current) this.formerWriters.add(current.key);
    this.replaceWriter(next);
  }

  private replaceWriter(next: TargetEntry | null): void {
    const previous = this.currentWriter;
    this.currentWriter = next;
    this.writerSince = next ? this.now() : null;
    if (next) this.formerWriters.delete(next.key);
    this.options.onWriterChanged(next?.target ?? null, previous?.target ?? null);
    if (next) {
      const waiters = this.writerWaiters;
      this.writerWaiters = [];
      for (const resolve of waiters) resolve(next.target);
    }
  }
}

function unavailableHealth(target: Target, unavailable: NonNullable<TargetDescription['unavailable']>): TargetHealth {
  return { target, role: 'UNKNOWN', state: 'UNAVAILABLE', reason: unavailable.reason, description: unavailable.description };
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
