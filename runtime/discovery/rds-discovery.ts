/**
 * Database instances listed through the RDS API (`rdsTargets`), as RDS Proxy finds the
 * instances of its registered cluster or instances: DescribeDBClusters names a cluster's
 * members and which one RDS calls the writer; DescribeDBInstances gives each instance's
 * endpoint and status. Re-listed every refreshInterval (sooner while something is changing),
 * so added, removed, rebooting and promoted instances are noticed.
 *
 * What RDS says about the writer is passed on as a hint only: the target group still waits
 * for the instance to report itself writable (fencing). A listing that fails is logged and
 * the last good list is kept: an API outage must not take the database away from clients.
 */
import { DescribeDBClustersCommand, DescribeDBInstancesCommand, RDSClient, type DBInstance } from '@aws-sdk/client-rds';
import type { TargetDescription, TargetHealthReason } from '../pool/target-group';

/** The part of a logger this module uses (pino's Logger fits). */
export interface DiscoveryLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface RdsClientSettings {
  readonly region?: string | undefined;
  readonly rdsEndpoint?: string | undefined;
}

export function createRdsClient(settings: RdsClientSettings): RDSClient {
  return new RDSClient({
    ...(settings.region !== undefined ? { region: settings.region } : {}),
    ...(settings.rdsEndpoint !== undefined ? { endpoint: settings.rdsEndpoint } : {}),
    // Bounded: a slow API must not delay the next listing by minutes.
    maxAttempts: 3,
  });
}

export interface RdsDiscoveryOptions {
  readonly client: RDSClient;
  readonly dbClusterIdentifier?: string | undefined;
  readonly dbInstanceIdentifiers?: readonly string[] | undefined;
  readonly refreshIntervalSeconds: number;
  /** Used when an instance's endpoint has no port (it always has one on RDS). */
  readonly defaultPort: number;
  readonly log: DiscoveryLogger;
  /** Every successful listing, whether or not it changed. */
  onTargets(targets: TargetDescription[]): void;
}

/**
 * Statuses in which an instance serves connections as usual: the probe decides about them.
 * Every other status (rebooting, failing-over, stopping, deleting, upgrading…) means the
 * instance is going away or not back yet.
 */
const SERVING_STATUSES: ReadonlySet<string> = new Set([
  'available',
  'backing-up',
  'modifying',
  'storage-optimization',
  'configuring-enhanced-monitoring',
  'configuring-iam-database-auth',
  'configuring-log-exports',
]);

/** While something is changing (a status other than available, a listing failure) re-list at least this often. */
const CHANGING_REFRESH_SECONDS = 5;
/** DescribeDBInstances' largest page; filters take at most 100 values. */
const PAGE_SIZE = 100;

export class RdsDiscovery {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private lastGood: TargetDescription[] | null = null;
  private lastSignature = '';
  private listing: Promise<void> | null = null;

  constructor(private readonly options: RdsDiscoveryOptions) {}

  /** The last good listing, or null before the first one. */
  get targets(): readonly TargetDescription[] | null {
    return this.lastGood;
  }

  start(): void {
    void this.refresh();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.options.client.destroy();
  }

  /** Lists now (one listing at a time); failures are logged and keep the last good list. */
  refresh(): Promise<void> {
    this.listing ??= this.listOnce().finally(() => {
      this.listing = null;
    });
    return this.listing;
  }

  private async listOnce(): Promise<void> {
    let changing = false;
    try {
      const targets = await this.list();
      if (this.stopped) return;
      changing = targets.some((t) => t.unavailable !== undefined);
      const signature = JSON.stringify(targets);
      if (signature !== this.lastSignature) {
        this.lastSignature = signature;
        this.options.log.info(
          {
            event: 'rds-targets',
            targets: targets.map((t) => ({
              instance: t.instanceId,
              endpoint: `${t.host}:${t.port}`,
              ...(t.writerHint ? { clusterWriter: true } : {}),
              ...(t.unavailable ? { unavailable: t.unavailable.description } : {}),
            })),
          },
          `RDS lists ${targets.length} target instance(s)`,
        );
      }
      this.lastGood = targets;
      this.options.onTargets(targets);
    } catch (error) {
      if (this.stopped) return;
      changing = true;
      const e = error as { name?: string; message?: string };
      this.options.log.warn(
        { event: 'rds-discovery-failed', error: e.name ?? 'Error', message: e.message ?? String(error), keptTargets: this.lastGood?.length ?? 0 },
        `listing the RDS targets failed; keeping the last list`,
      );
    } finally {
      this.schedule(changing);
    }
  }

  private schedule(changing: boolean): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const seconds = changing ? Math.min(this.options.refreshIntervalSeconds, CHANGING_REFRESH_SECONDS) : this.options.refreshIntervalSeconds;
    this.timer = setTimeout(() => void this.refresh(), seconds * 1000);
    this.timer.unref();
  }

  /** One listing: the cluster's members (with RDS's writer) and the named instances, in that order. */
  async list(): Promise<TargetDescription[]> {
    const { client, dbClusterIdentifier, dbInstanceIdentifiers } = this.options;
    const clusterWriters = new Set<string>();
    const identifiers: string[] = [];
    if (dbClusterIdentifier !== undefined) {
      const answer = await client.send(new DescribeDBClustersCommand({ DBClusterIdentifier: dbClusterIdentifier }));
      const cluster = answer.DBClusters?.find((c) => c.DBClusterIdentifier === dbClusterIdentifier) ?? answer.DBClusters?.[0];
      if (cluster === undefined) throw new Error(`DescribeDBClusters returned no cluster ${dbClusterIdentifier}`);
      for (const member of cluster.DBClusterMembers ?? []) {
        if (member.DBInstanceIdentifier === undefined) continue;
        identifiers.push(member.DBInstanceIdentifier);
        if (member.IsClusterWriter === true) clusterWriters.add(member.DBInstanceIdentifier);
      }
    }
    for (const id of dbInstanceIdentifiers ?? []) if (!identifiers.includes(id)) identifiers.push(id);
    if (identifiers.length === 0) return [];

    const instances = new Map<string, DBInstance>();
    for (let start = 0; start < identifiers.length; start += PAGE_SIZE) {
      // A filter, not DBInstanceIdentifier: an instance deleted since the cluster was described
      // is simply absent instead of failing the whole listing with DBInstanceNotFound.
      const filter = [{ Name: 'db-instance-id', Values: identifiers.slice(start, start + PAGE_SIZE) }];
      let marker: string | undefined;
      do {
        const page = await client.send(new DescribeDBInstancesCommand({ Filters: filter, MaxRecords: PAGE_SIZE, ...(marker !== undefined ? { Marker: marker } : {}) }));
        for (const instance of page.DBInstances ?? []) {
          if (instance.DBInstanceIdentifier !== undefined) instances.set(instance.DBInstanceIdentifier, instance);
        }
        marker = page.Marker;
      } while (marker !== undefined && marker !== '');
    }

    const targets: TargetDescription[] = [];
    for (const id of identifiers) {
      const instance = instances.get(id);
      const host = instance?.Endpoint?.Address;
      // Deleted since the cluster listing, or still being created (no endpoint yet): nothing to connect to.
      if (instance === undefined || host === undefined || host === '') continue;
      const unavailable = unavailability(id, instance.DBInstanceStatus);
      targets.push({
        host,
        port: instance.Endpoint?.Port ?? instance.DbInstancePort ?? this.options.defaultPort,
        instanceId: id,
        ...(clusterWriters.has(id) ? { writerHint: true } : {}),
        ...(unavailable !== undefined ? { unavailable } : {}),
      });
    }
    return targets;
  }
}

function unavailability(id: string, status: string | undefined): TargetDescription['unavailable'] {
  const normalised = (status ?? 'unknown').toLowerCase();
  if (SERVING_STATUSES.has(normalised)) return undefined;
  const reason: TargetHealthReason = normalised === 'incompatible-replica' ? 'INVALID_REPLICATION_STATE' : 'UNREACHABLE';
  return { reason, description: `DB instance ${id} is ${normalised}` };
}
