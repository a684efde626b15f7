/**
 * The engine-agnostic metric model. Sessions, the pool and the engines report events through
 * the methods of `ProxyMetrics` (hot path: counter increments and small fixed-size recorders,
 * no allocation after a target's first event); current pool state is pulled from a
 * `GaugeProvider` only when a reader asks (CloudWatch publish, Prometheus scrape).
 *
 * Readers:
 * - `takePeriod()` for the CloudWatch publisher: deltas and statistic sets since the previous
 *   call, with the RDS Proxy metric names, units and dimension sets (see definitions.ts).
 * - `cumulative()` for Prometheus: totals since start.
 */
import type { TargetHealthState, TargetRole } from '../pool/target-group';
import {
  DEFAULT_TARGET_GROUP,
  DimensionSet,
  MetricName,
  MetricUnit,
  TARGET_ROLE_DIMENSION,
  TargetRoleDimension,
  metricDefinition,
} from './definitions';
import { AvailabilityTracker, EventCounter, HistogramView, LatencyRecorder, StatisticSet } from './recorders';

/** The pool's own types (the RDS API's spellings), so its values pass straight through. */
export type { TargetHealthState, TargetRole };

/** What the engine/pool reports about one target at publish time. */
export interface TargetGauges {
  /** The Target dimension value: the same string passed to the database* event methods (see targetDimensionValue). */
  readonly target: string;
  readonly role: TargetRole;
  readonly state: TargetHealthState;
  /** Connections lent to clients (DatabaseConnectionsCurrentlyBorrowed), pinned ones included. */
  readonly borrowed: number;
  /** Connections inside a transaction (DatabaseConnectionsCurrentlyInTransaction). */
  readonly inTransaction: number;
  /** Connections pinned to one client (DatabaseConnectionsCurrentlySessionPinned). */
  readonly sessionPinned: number;
  /** The pool ceiling for this target (MaxDatabaseConnectionsAllowed); 0 for targets the pool does not use. */
  readonly maxConnectionsAllowed: number;
}

/**
 * What the engine/pool must expose for the "current number of ..." metrics that events cannot
 * derive. Called once per publish or scrape, never on the hot path; it should return every
 * configured target, including unavailable ones (they drive AvailabilityPercentage).
 */
export interface GaugeProvider {
  targets(): readonly TargetGauges[];
}

export interface Dimension {
  readonly Name: string;
  readonly Value: string;
}

/** One CloudWatch datum, SDK-independent (the publisher maps it to PutMetricData's MetricDatum). */
export type MetricDatum = {
  readonly metricName: MetricName;
  readonly unit: MetricUnit;
  readonly dimensions: readonly Dimension[];
  readonly timestamp: Date;
} & ({ readonly value: number; readonly statistics?: undefined } | { readonly statistics: StatisticSet; readonly value?: undefined });

export interface ProxyMetricsOptions {
  /** The ProxyName dimension. */
  proxyName: string;
  /** Adds the ProxyName+EndpointName dimension set for client-side metrics when set. */
  endpointName?: string;
  /** @default "default", as RDS Proxy names its only target group */
  targetGroup?: string;
  gauges?: GaugeProvider;
  /** Milliseconds clock, replaceable in tests. @default Date.now */
  now?: () => number;
}

/** Event counts on the database side, kept per target and per role. */
class DatabaseSide {
  readonly requests = new EventCounter();
  readonly requestsWithTls = new EventCounter();
  readonly setupSucceeded = new EventCounter();
  readonly setupFailed = new EventCounter();
  readonly queryDatabaseResponseLatency = new LatencyRecorder();
  /** Live counts from opened/closed events. */
  connections = 0;
  connectionsWithTls = 0;
}

class TargetRecord {
  readonly side = new DatabaseSide();
  role: TargetRole = 'UNKNOWN';
  state: TargetHealthState = 'UNKNOWN';
  /** The role's counters the target's events also go to, following the role at event time. */
  roleSide: DatabaseSide | null = null;
  constructor(readonly target: string) {}
}

export interface ClientConnectionCounts {
  readonly tls: number;
  readonly noTls: number;
}

/** Totals since start, for Prometheus. */
export interface CumulativeMetrics {
  readonly clientConnectionsReceived: number;
  readonly clientConnectionsSetupSucceeded: number;
  readonly clientConnectionsSetupFailedAuth: number;
  readonly clientConnectionsClosed: number;
  readonly clientConnections: ClientConnectionCounts;
  readonly queryRequests: number;
  readonly queryRequestsTls: number;
  readonly queryRequestsNoTls: number;
  readonly borrowTimeouts: number;
  readonly borrowLatency: HistogramView;
  readonly queryResponseLatency: HistogramView;
  readonly targets: readonly CumulativeTargetMetrics[];
  readonly availability: readonly { role: TargetRoleDimension; availableNow: boolean; availableSecondsTotal: number }[];
}

export interface CumulativeTargetMetrics {
  readonly target: string;
  readonly role: TargetRole;
  readonly state: TargetHealthState;
  readonly connectionRequests: number;
  readonly connectionRequestsWithTls: number;
  readonly connectionsSetupSucceeded: number;
  readonly connectionsSetupFailed: number;
  readonly connections: number;
  readonly connectionsWithTls: number;
  readonly borrowed: number;
  readonly inTransaction: number;
  readonly sessionPinned: number;
  readonly maxConnectionsAllowed: number;
  readonly queryDatabaseResponseLatency: HistogramView;
}

const MICROS_PER_MS = 1000;
const ROLE_DIMENSIONS: readonly TargetRoleDimension[] = [TARGET_ROLE_DIMENSION.READ_WRITE, TARGET_ROLE_DIMENSION.READ_ONLY];

function roleDimension(role: TargetRole): TargetRoleDimension | null {
  return role === 'READ_WRITE' ? TARGET_ROLE_DIMENSION.READ_WRITE : role === 'READ_ONLY' ? TARGET_ROLE_DIMENSION.READ_ONLY : null;
}

/**
 * One per proxy process. Contract for callers: every `...Opened` is matched by exactly one
 * `...Closed` with the same `tls` flag (and target), or the live counts drift.
 */
export class ProxyMetrics {
  readonly proxyName: string;
  readonly endpointName: string | undefined;
  readonly targetGroup: string;
  private readonly now: () => number;
  private gaugeProvider: GaugeProvider | undefined;
  /** Guards targetRecord's provider refresh against re-entering itself through observeTargets. */
  private refreshing = false;

  // Client side (dimension sets ProxyName and ProxyName+EndpointName).
  private readonly clientReceived = new EventCounter();
  private readonly clientSetupSucceededCount = new EventCounter();
  private readonly clientSetupFailedAuth = new EventCounter();
  private readonly clientClosed = new EventCounter();
  private clientsTls = 0;
  private clientsNoTls = 0;
  private readonly queries = new EventCounter();
  private readonly queriesTls = new EventCounter();
  private readonly queriesNoTls = new EventCounter();
  private readonly borrowTimeouts = new EventCounter();
  private readonly borrowLatency = new LatencyRecorder();
  private readonly queryLatency = new LatencyRecorder();
  /** Proxy-wide QueryDatabaseResponseLatency (sets ProxyName and ProxyName+EndpointName). */
  private readonly queryDatabaseLatency = new LatencyRecorder();

  // Database side.
  private readonly targetRecords = new Map<string, TargetRecord>();
  private readonly roleSides = new Map<TargetRoleDimension, DatabaseSide>();
  private readonly availability: Map<TargetRoleDimension, AvailabilityTracker>;
  /** Roles seen at least once: a READ_ONLY availability of 0 % is noise for a proxy that never had a reader. */
  private readonly rolesSeen = new Set<TargetRoleDimension>([TARGET_ROLE_DIMENSION.READ_WRITE]);

  constructor(options: ProxyMetricsOptions) {
    this.proxyName = options.proxyName;
    this.endpointName = options.endpointName;
    this.targetGroup = options.targetGroup ?? DEFAULT_TARGET_GROUP;
    this.now = options.now ?? Date.now;
    this.gaugeProvider = options.gauges;
    const start = this.now();
    this.availability = new Map(ROLE_DIMENSIONS.map((role) => [role, new AvailabilityTracker(start)]));
    for (const role of ROLE_DIMENSIONS) this.roleSides.set(role, new DatabaseSide());
  }

  /** Sets the provider later, for when the engine is built after the metrics. */
  setGaugeProvider(provider: GaugeProvider): void {
    this.gaugeProvider = provider;
  }

  // ---- client events -------------------------------------------------------------------

  /** A client's TCP connection was accepted (ClientConnectionsReceived). `tls` is usually false here; see clientConnectionUpgradedToTls. */
  clientConnectionOpened(tls: boolean): void {
    this.clientReceived.inc();
    if (tls) this.clientsTls++;
    else this.clientsNoTls++;
  }

  /** The client negotiated TLS after connecting (PostgreSQL SSLRequest, MySQL SSL request). */
  clientConnectionUpgradedToTls(): void {
    if (this.clientsNoTls > 0) this.clientsNoTls--;
    this.clientsTls++;
  }

  /** Authentication succeeded (ClientConnectionsSetupSucceeded). */
  clientSetupSucceeded(): void {
    this.clientSetupSucceededCount.inc();
  }

  /** Authentication or TLS setup failed: wrong password, unknown user, TLS required (ClientConnectionsSetupFailedAuth). */
  clientSetupFailed(): void {
    this.clientSetupFailedAuth.inc();
  }

  /** The client connection closed for any reason (ClientConnectionsClosed). `tls` is its final state. */
  clientConnectionClosed(tls: boolean): void {
    this.clientClosed.inc();
    // Clamped at zero: an unmatched close must not turn a gauge negative.
    if (tls) this.clientsTls = Math.max(0, this.clientsTls - 1);
    else this.clientsNoTls = Math.max(0, this.clientsNoTls - 1);
  }

  /** A client sent a query (a simple-query message, an extended-protocol Sync, a COM_QUERY...). */
  queryRequest(tls: boolean): void {
    this.queries.inc();
    if (tls) this.queriesTls.inc();
    else this.queriesNoTls.inc();
  }

  /** Client request received → first response byte sent to the client (QueryResponseLatency). */
  queryResponseLatency(ms: number): void {
    this.queryLatency.record(ms * MICROS_PER_MS);
  }

  /** Request forwarded to the database → first response byte from it (QueryDatabaseResponseLatency). */
  queryDatabaseResponseLatency(ms: number, target: string): void {
    const micros = ms * MICROS_PER_MS;
    this.queryDatabaseLatency.record(micros);
    const record = this.targetRecord(target);
    record.side.queryDatabaseResponseLatency.record(micros);
    record.roleSide?.queryDatabaseResponseLatency.record(micros);
  }

  /** A client got a database connection after waiting `latencyMs` (DatabaseConnectionsBorrowLatency). */
  borrowed(latencyMs: number): void {
    this.borrowLatency.record(latencyMs * MICROS_PER_MS);
  }

  /** A client gave up after connectionBorrowTimeout (DatabaseConnectionsBorrowTimeouts, Tidepool only). */
  borrowTimedOut(): void {
    this.borrowTimeouts.inc();
  }

  // ---- database events -----------------------------------------------------------------

  /** The pool starts opening a database connection (DatabaseConnectionRequests[WithTLS]). */
  databaseConnectionRequest(tls: boolean, target: string): void {
    const record = this.targetRecord(target);
    record.side.requests.inc();
    record.roleSide?.requests.inc();
    if (tls) {
      record.side.requestsWithTls.inc();
      record.roleSide?.requestsWithTls.inc();
    }
  }

  /** The database connection is logged in and usable (DatabaseConnectionsSetupSucceeded, DatabaseConnections[WithTLS]). */
  databaseConnectionOpened(tls: boolean, target: string): void {
    const record = this.targetRecord(target);
    record.side.setupSucceeded.inc();
    record.roleSide?.setupSucceeded.inc();
    record.side.connections++;
    if (tls) record.side.connectionsWithTls++;
  }

  /** Opening a database connection failed (DatabaseConnectionsSetupFailed). */
  databaseConnectionFailed(target: string): void {
    const record = this.targetRecord(target);
    record.side.setupFailed.inc();
    record.roleSide?.setupFailed.inc();
  }

  /** A database connection that databaseConnectionOpened reported has closed. */
  databaseConnectionClosed(tls: boolean, target: string): void {
    const side = this.targetRecord(target).side;
    side.connections = Math.max(0, side.connections - 1);
    if (tls) side.connectionsWithTls = Math.max(0, side.connectionsWithTls - 1);
  }

  /**
   * Target roles and health changed (a probe round, a failover). Call it on every change so
   * availability is integrated exactly and events are attributed to the role the target had
   * at the time; publish and scrape also call it with the provider's view.
   */
  observeTargets(targets: readonly Pick<TargetGauges, 'target' | 'role' | 'state'>[]): void {
    const now = this.now();
    const availableRoles = new Set<TargetRoleDimension>();
    for (const t of targets) {
      const record = this.targetRecord(t.target);
      record.state = t.state;
      if (record.role !== t.role) {
        record.role = t.role;
        const role = roleDimension(t.role);
        record.roleSide = role === null ? null : this.roleSides.get(role)!;
        if (role !== null) this.rolesSeen.add(role);
      }
      const role = roleDimension(t.role);
      if (role !== null && t.state === 'AVAILABLE') availableRoles.add(role);
    }
    for (const [role, tracker] of this.availability) tracker.set(availableRoles.has(role), now);
  }

  // ---- readers ---------------------------------------------------------------------------

  get clientConnections(): ClientConnectionCounts {
    return { tls: this.clientsTls, noTls: this.clientsNoTls };
  }

  /** True while some target is AVAILABLE in the READ_WRITE role (as of the last observeTargets). */
  get writerAvailable(): boolean {
    return this.availability.get(TARGET_ROLE_DIMENSION.READ_WRITE)!.isAvailable;
  }

  /**
   * Ends the current period and returns its CloudWatch data: counter deltas, current gauges,
   * latency statistic sets (omitted when nothing was recorded) and availability over the period.
   */
  takePeriod(): MetricDatum[] {
    const gauges = this.refreshFromProvider();
    const now = this.now();
    const timestamp = new Date(Math.floor(now / 1000) * 1000);
    const data: MetricDatum[] = [];
    const proxyDims: Dimension[] = [{ Name: 'ProxyName', Value: this.proxyName }];
    const endpointDims: Dimension[] | null =
      this.endpointName === undefined ? null : [...proxyDims, { Name: 'EndpointName', Value: this.endpointName }];
    const targetDims = (target: string): Dimension[] => [
      ...proxyDims,
      { Name: 'TargetGroup', Value: this.targetGroup },
      { Name: 'Target', Value: target },
    ];
    const roleDims = (role: TargetRoleDimension): Dimension[] => [
      ...proxyDims,
      { Name: 'TargetGroup', Value: this.targetGroup },
      { Name: 'TargetRole', Value: role },
    ];

    const push = (name: MetricName, dims: Dimension[], value: number | StatisticSet | null): void => {
      if (value === null) return;
      const unit = metricDefinition(name).unit;
      if (typeof value === 'number') data.push({ metricName: name, unit, dimensions: dims, timestamp, value });
      else data.push({ metricName: name, unit, dimensions: dims, timestamp, statistics: value });
    };
    /** Client-side metrics go to ProxyName and, when configured, ProxyName+EndpointName (one endpoint per process). */
    const pushClientSide = (name: MetricName, value: number | StatisticSet | null): void => {
      push(name, proxyDims, value);
      if (endpointDims) push(name, endpointDims, value);
    };

    pushClientSide('ClientConnectionsReceived', this.clientReceived.takePeriod());
    pushClientSide('ClientConnectionsSetupSucceeded', this.clientSetupSucceededCount.takePeriod());
    pushClientSide('ClientConnectionsSetupFailedAuth', this.clientSetupFailedAuth.takePeriod());
    pushClientSide('ClientConnectionsClosed', this.clientClosed.takePeriod());
    pushClientSide('ClientConnections', this.clientsTls + this.clientsNoTls);
    pushClientSide('ClientConnectionsTLS', this.clientsTls);
    pushClientSide('ClientConnectionsNoTLS', this.clientsNoTls);
    pushClientSide('QueryRequests', this.queries.takePeriod());
    pushClientSide('QueryRequestsTLS', this.queriesTls.takePeriod());
    pushClientSide('QueryRequestsNoTLS', this.queriesNoTls.takePeriod());
    pushClientSide('DatabaseConnectionsBorrowLatency', this.borrowLatency.takePeriod());
    pushClientSide('QueryResponseLatency', this.queryLatency.takePeriod());
    pushClientSide('QueryDatabaseResponseLatency', this.queryDatabaseLatency.takePeriod());
    push('DatabaseConnectionsBorrowTimeouts', proxyDims, this.borrowTimeouts.takePeriod());

    // Database side: per target, per role (events at the role they had; gauges at the current role), and proxy-wide.
    const gaugeByTarget = new Map(gauges.map((g) => [g.target, g]));
    const sums = new Map<'proxy' | TargetRoleDimension, DatabaseTotals>([['proxy', emptyTotals()]]);
    for (const role of this.rolesSeen) sums.set(role, emptyTotals());
    for (const record of this.targetRecords.values()) {
      const g = gaugeByTarget.get(record.target);
      const totals: DatabaseTotals = {
        requests: record.side.requests.takePeriod(),
        requestsWithTls: record.side.requestsWithTls.takePeriod(),
        setupSucceeded: record.side.setupSucceeded.takePeriod(),
        setupFailed: record.side.setupFailed.takePeriod(),
        connections: record.side.connections,
        connectionsWithTls: record.side.connectionsWithTls,
        borrowed: g?.borrowed ?? 0,
        inTransaction: g?.inTransaction ?? 0,
        sessionPinned: g?.sessionPinned ?? 0,
        maxConnectionsAllowed: g?.maxConnectionsAllowed ?? 0,
      };
      pushDatabaseSide(push, targetDims(record.target), totals);
      push('QueryDatabaseResponseLatency', targetDims(record.target), record.side.queryDatabaseResponseLatency.takePeriod());
      addTotals(sums.get('proxy')!, totals);
      const role = roleDimension(record.role);
      if (role !== null) addGauges(sums.get(role)!, totals);
    }
    pushDatabaseSide(push, proxyDims, sums.get('proxy')!);
    for (const role of this.rolesSeen) {
      const side = this.roleSides.get(role)!;
      const roleTotals = sums.get(role)!;
      roleTotals.requests = side.requests.takePeriod();
      roleTotals.requestsWithTls = side.requestsWithTls.takePeriod();
      roleTotals.setupSucceeded = side.setupSucceeded.takePeriod();
      roleTotals.setupFailed = side.setupFailed.takePeriod();
      pushDatabaseSide(push, roleDims(role), roleTotals);
      push('QueryDatabaseResponseLatency', roleDims(role), side.queryDatabaseResponseLatency.takePeriod());
    }

    for (const [role, tracker] of this.availability) {
      const { availableMs, periodMs } = tracker.takePeriod(now);
      // A zero-length period (two publishes in the same millisecond) has no meaningful share.
      const share = periodMs > 0 ? availableMs / periodMs : tracker.isAvailable ? 1 : 0;
      if (this.rolesSeen.has(role)) push('AvailabilityPercentage', roleDims(role), roundTo(share * 100, 3));
      // "Seconds over a minute duration": scaled to a minute whatever the publish interval.
      if (role === TARGET_ROLE_DIMENSION.READ_WRITE) push('TargetGroupWriterAvailableDuration', proxyDims, roundTo(share * 60, 3));
    }
    return data;
  }

  /** Totals since start, for Prometheus. */
  cumulative(): CumulativeMetrics {
    const gauges = this.refreshFromProvider();
    const now = this.now();
    const gaugeByTarget = new Map(gauges.map((g) => [g.target, g]));
    return {
      clientConnectionsReceived: this.clientReceived.total,
      clientConnectionsSetupSucceeded: this.clientSetupSucceededCount.total,
      clientConnectionsSetupFailedAuth: this.clientSetupFailedAuth.total,
      clientConnectionsClosed: this.clientClosed.total,
      clientConnections: this.clientConnections,
      queryRequests: this.queries.total,
      queryRequestsTls: this.queriesTls.total,
      queryRequestsNoTls: this.queriesNoTls.total,
      borrowTimeouts: this.borrowTimeouts.total,
      borrowLatency: this.borrowLatency,
      queryResponseLatency: this.queryLatency,
      targets: [...this.targetRecords.values()].map((record) => {
        const g = gaugeByTarget.get(record.target);
        return {
          target: record.target,
          role: record.role,
          state: record.state,
          connectionRequests: record.side.requests.total,
          connectionRequestsWithTls: record.side.requestsWithTls.total,
          connectionsSetupSucceeded: record.side.setupSucceeded.total,
          connectionsSetupFailed: record.side.setupFailed.total,
          connections: record.side.connections,
          connectionsWithTls: record.side.connectionsWithTls,
          borrowed: g?.borrowed ?? 0,
          inTransaction: g?.inTransaction ?? 0,
          sessionPinned: g?.sessionPinned ?? 0,
          maxConnectionsAllowed: g?.maxConnectionsAllowed ?? 0,
          queryDatabaseResponseLatency: record.side.queryDatabaseResponseLatency,
        };
      }),
      availability: [...this.availability]
        .filter(([role]) => this.rolesSeen.has(role))
        .map(([role, tracker]) => ({
          role,
          availableNow: tracker.isAvailable,
          availableSecondsTotal: tracker.availableMsTotal(now) / 1000,
        })),
    };
  }

  private refreshFromProvider(): readonly TargetGauges[] {
    if (!this.gaugeProvider) return [];
    this.refreshing = true;
    try {
      const gauges = this.gaugeProvider.targets();
      this.observeTargets(gauges);
      return gauges;
    } finally {
      this.refreshing = false;
    }
  }

  private targetRecord(target: string): TargetRecord {
    let record = this.targetRecords.get(target);
    if (record === undefined) {
      record = new TargetRecord(target);
      this.targetRecords.set(target, record);
      // First event for this target: learn its role now (once per target, not per event), so
      // the first period's events reach the TargetRole set even if observeTargets was never called.
      if (this.gaugeProvider && !this.refreshing) {
        try {
          this.refreshFromProvider();
        } catch {
          // A failing provider must not fail a client's query; the next publish retries it.
        }
      }
    }
    return record;
  }
}

interface DatabaseTotals {
  requests: number;
  requestsWithTls: number;
  setupSucceeded: number;
  setupFailed: number;
  connections: number;
  connectionsWithTls: number;
  borrowed: number;
  inTransaction: number;
  sessionPinned: number;
  maxConnectionsAllowed: number;
}

function emptyTotals(): DatabaseTotals {
  return {
    requests: 0,
    requestsWithTls: 0,
    setupSucceeded: 0,
    setupFailed: 0,
    connections: 0,
    connectionsWithTls: 0,
    borrowed: 0,
    inTransaction: 0,
    sessionPinned: 0,
    maxConnectionsAllowed: 0,
  };
}

function addGauges(into: DatabaseTotals, from: DatabaseTotals): void {
  into.connections += from.connections;
  into.connectionsWithTls += from.connectionsWithTls;
  into.borrowed += from.borrowed;
  into.inTransaction += from.inTransaction;
  into.sessionPinned += from.sessionPinned;
  into.maxConnectionsAllowed += from.maxConnectionsAllowed;
}

function addTotals(into: DatabaseTotals, from: DatabaseTotals): void {
  into.requests += from.requests;
  into.requestsWithTls += from.requestsWithTls;
  into.setupSucceeded += from.setupSucceeded;
  into.setupFailed += from.setupFailed;
  addGauges(into, from);
}

function pushDatabaseSide(
  push: (name: MetricName, dims: Dimension[], value: number) => void,
  dims: Dimension[],
  totals: DatabaseTotals,
): void {
  push('DatabaseConnectionRequests', dims, totals.requests);
  push('DatabaseConnectionRequestsWithTLS', dims, totals.requestsWithTls);
  push('DatabaseConnectionsSetupSucceeded', dims, totals.setupSucceeded);
  push('DatabaseConnectionsSetupFailed', dims, totals.setupFailed);
  push('DatabaseConnections', dims, totals.connections);
  push('DatabaseConnectionsWithTLS', dims, totals.connectionsWithTls);
  push('DatabaseConnectionsCurrentlyBorrowed', dims, totals.borrowed);
  push('DatabaseConnectionsCurrentlyInTransaction', dims, totals.inTransaction);
  push('DatabaseConnectionsCurrentlySessionPinned', dims, totals.sessionPinned);
  push('MaxDatabaseConnectionsAllowed', dims, totals.maxConnectionsAllowed);
}

function roundTo(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** Which dimension sets a datum's dimensions form; for tests and the README table. */
export function dimensionSetOf(dimensions: readonly Dimension[]): DimensionSet {
  const names = dimensions.map((d) => d.Name).join(',');
  switch (names) {
    case 'ProxyName':
      return 'proxy';
    case 'ProxyName,EndpointName':
      return 'endpoint';
    case 'ProxyName,TargetGroup,Target':
      return 'target';
    case 'ProxyName,TargetGroup,TargetRole':
      return 'targetRole';
    default:
      throw new Error(`not an RDS Proxy dimension set: ${names}`);
  }
}
