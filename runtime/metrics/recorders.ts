/**
 * The three primitive recorders behind every metric. Each keeps two views of the same
 * events because its two readers want different things: CloudWatch wants what happened
 * since the last publish (deltas, per-period min/max), Prometheus wants totals since start
 * (it computes rates itself). Recording is a few number updates on preallocated fields:
 * these run on the hot path, once or a few times per query.
 */

/** A monotonically increasing event count. */
export class EventCounter {
  /** Events since the process started. */
  total = 0;
  private totalAtLastPeriod = 0;

  inc(): void {
    this.total++;
  }

  /** Events since the previous call (CloudWatch publishes per period). */
  takePeriod(): number {
    const delta = this.total - this.totalAtLastPeriod;
    this.totalAtLastPeriod = this.total;
    return delta;
  }
}

/** A CloudWatch StatisticSet: what the API needs to compute Average, Sum, Minimum, Maximum and SampleCount. */
export interface StatisticSet {
  sampleCount: number;
  sum: number;
  minimum: number;
  maximum: number;
}

/**
 * Upper bounds (in microseconds) of the cumulative histogram Prometheus exposes: from 100 µs
 * (a pooled borrow) to 120 s (the default connectionBorrowTimeout). Shared by every recorder
 * so a record is one short scan with no allocation.
 */
export const LATENCY_BUCKET_BOUNDS_MICROS: readonly number[] = [
  100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
  5_000_000, 10_000_000, 30_000_000, 60_000_000, 120_000_000,
];

export interface HistogramView {
  /** Per-bucket (not cumulative) counts; index i counts samples <= LATENCY_BUCKET_BOUNDS_MICROS[i], the last entry counts the rest (+Inf). */
  readonly bucketCounts: readonly number[];
  readonly count: number;
  readonly sumMicros: number;
}

/** Durations in microseconds: a statistic set per CloudWatch period plus a cumulative histogram for Prometheus. */
export class LatencyRecorder implements HistogramView {
  readonly bucketCounts: number[] = new Array<number>(LATENCY_BUCKET_BOUNDS_MICROS.length + 1).fill(0);
  count = 0;
  sumMicros = 0;
  private periodCount = 0;
  private periodSum = 0;
  private periodMin = Infinity;
  private periodMax = -Infinity;

  record(micros: number): void {
    // A clock step backwards or a caller bug must not poison the sums with NaN or negatives.
    if (!(micros >= 0) || micros === Infinity) return;
    this.count++;
    this.sumMicros += micros;
    this.periodCount++;
    this.periodSum += micros;
    if (micros < this.periodMin) this.periodMin = micros;
    if (micros > this.periodMax) this.periodMax = micros;
    let bucket = 0;
    while (bucket < LATENCY_BUCKET_BOUNDS_MICROS.length && micros > LATENCY_BUCKET_BOUNDS_MICROS[bucket]!) bucket++;
    this.bucketCounts[bucket]!++;
  }

  /** The period's statistics, or null when nothing was recorded (CloudWatch rejects SampleCount 0). */
  takePeriod(): StatisticSet | null {
    if (this.periodCount === 0) return null;
    const stats: StatisticSet = {
      sampleCount: this.periodCount,
      sum: this.periodSum,
      minimum: this.periodMin,
      maximum: this.periodMax,
    };
    this.periodCount = 0;
    this.periodSum = 0;
    this.periodMin = Infinity;
    this.periodMax = -Infinity;
    return stats;
  }
}

/**
 * Integrates "is this role available" over time, so AvailabilityPercentage is the share of
 * the period it was available, not whatever the state happened to be at publish time.
 */
export class AvailabilityTracker {
  private available = false;
  private changedAt: number;
  private periodStart: number;
  private availableMsInPeriod = 0;
  private availableMsBeforePeriod = 0;

  constructor(now: number) {
    this.changedAt = now;
    this.periodStart = now;
  }

  get isAvailable(): boolean {
    return this.available;
  }

  set(available: boolean, now: number): void {
    if (available === this.available) return;
    if (this.available) this.availableMsInPeriod += Math.max(0, now - Math.max(this.changedAt, this.periodStart));
    this.available = available;
    this.changedAt = now;
  }

  /** Available milliseconds since start, for a Prometheus counter. */
  availableMsTotal(now: number): number {
    return this.availableMsBeforePeriod + this.availableMsInPeriodUntil(now);
  }

  /** Ends the current period at `now`. */
  takePeriod(now: number): { availableMs: number; periodMs: number } {
    const availableMs = this.availableMsInPeriodUntil(now);
    const periodMs = Math.max(0, now - this.periodStart);
    this.availableMsBeforePeriod += availableMs;
    this.availableMsInPeriod = 0;
    this.periodStart = now;
    return { availableMs, periodMs };
  }

  private availableMsInPeriodUntil(now: number): number {
    const running = this.available ? Math.max(0, now - Math.max(this.changedAt, this.periodStart)) : 0;
    return this.availableMsInPeriod + running;
  }
}
