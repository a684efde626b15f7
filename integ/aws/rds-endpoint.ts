/**
 * A local RDS endpoint for tests: plain HTTP on 127.0.0.1, speaking RDS's Query protocol
 * (form-encoded POST with `Action` and `Version=2014-10-31`, XML answers in the
 * `http://rds.amazonaws.com/doc/2014-10-31/` namespace) for DescribeDBClusters and
 * DescribeDBInstances, with RDS's XML error shape (`DBClusterNotFoundFault`,
 * `DBInstanceNotFound`, throttling). Requests must carry a SigV4 Authorization header scoped
 * to service `rds` with a known access key (the signature itself is verified by the local STS
 * endpoint's tests; here it is enough that the SDK signed for this service and credentials).
 *
 * The topology is mutable, so a test can play an Aurora failover (flip IsClusterWriter),
 * add and delete instances, set instance statuses, and make the next calls fail.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { credentialScopeOf } from './credential-scope';

const RDS_NS = 'http://rds.amazonaws.com/doc/2014-10-31/';
const API_VERSION = '2014-10-31';
const ACCOUNT = '123456789012';

export interface RdsInstanceSpec {
  readonly id: string;
  /** What the instance's Endpoint.Address says (an IP address or host name the proxy can connect to). */
  readonly host: string;
  readonly port: number;
  /** Makes the instance a member of this cluster (the cluster must exist). */
  readonly clusterId?: string;
  /** @default "available" */
  readonly status?: string;
  /** @default the cluster's engine, or "postgres" */
  readonly engine?: string;
  /** Cluster members only. @default false */
  readonly isClusterWriter?: boolean;
}

export interface RdsCall {
  readonly action: string | undefined;
  readonly params: ReadonlyMap<string, string>;
  readonly status: number;
  readonly code: string | undefined;
}

export interface LocalRdsEndpoint {
  /** `http://127.0.0.1:PORT`, for the SDK client's `endpoint` (config `aws.rdsEndpoint`). */
  readonly url: string;
  readonly region: string;
  readonly calls: RdsCall[];
  /** Creates an (Aurora) DB cluster with no members. */
  putCluster(id: string, engine: 'aurora-postgresql' | 'aurora-mysql' | 'postgres' | 'mysql'): void;
  /** Creates or replaces an instance (and its cluster membership). */
  putInstance(spec: RdsInstanceSpec): void;
  /** Deletes an instance (and its cluster membership). */
  removeInstance(id: string): void;
  setStatus(id: string, status: string): void;
  /** Makes `instanceId` the cluster's only writer, as an Aurora failover does. */
  setClusterWriter(clusterId: string, instanceId: string): void;
  /** Makes the next `count` calls fail with a service error. */
  failNext(count: number, code: 'Throttling' | 'InternalFailure'): void;
  close(): Promise<void>;
}

class RdsError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly type: 'Sender' | 'Receiver' = 'Sender',
  ) {
    super(message);
  }
}

interface StoredCluster {
  readonly id: string;
  readonly engine: string;
  readonly created: Date;
  /** Member instance ids in creation order, and which one is the writer. */
  readonly members: string[];
  writer: string | undefined;
}

interface StoredInstance {
  spec: RdsInstanceSpec;
  status: string;
  readonly created: Date;
  readonly resourceId: string;
}

function xmlEscape(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function element(name: string, value: string | number | boolean | undefined): string {
  return value === undefined ? '' : `<${name}>${xmlEscape(String(value))}</${name}>`;
}

function parseForm(text: string): Map<string, string> {
  const params = new Map<string, string>();
  if (text === '') return params;
  for (const pair of text.split('&')) {
    const eq = pair.indexOf('=');
    const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, '%20'));
    if (eq < 0) params.set(decode(pair), '');
    else params.set(decode(pair.slice(0, eq)), decode(pair.slice(eq + 1)));
  }
  return params;
}

/** `Filters.Filter.N.Name` / `Filters.Filter.N.Values.Value.M`, as the Query protocol flattens lists. */
function parseFilters(params: ReadonlyMap<string, string>): Map<string, string[]> {
  const filters = new Map<string, string[]>();
  for (const [key, name] of params) {
    const m = /^Filters\.Filter\.(\d+)\.Name$/.exec(key);
    if (m === null) continue;
    const values: string[] = [];
    for (let i = 1; params.has(`Filters.Filter.${m[1]}.Values.Value.${i}`); i++) values.push(params.get(`Filters.Filter.${m[1]}.Values.Value.${i}`)!);
    if (values.length === 0) throw new RdsError(400, 'InvalidParameterCombination', `Filter ${name} requires at least one value`);
    filters.set(name, values);
  }
  return filters;
}

export async function startLocalRdsEndpoint(options: { region?: string; accessKeyIds?: string[] } = {}): Promise<LocalRdsEndpoint> {
  const region = options.region ?? 'us-east-1';
  const accessKeyIds = new Set(options.accessKeyIds ?? ['AKIDTESTRDS']);
  const clusters = new Map<string, StoredCluster>();
  const instances = new Map<string, StoredInstance>();
  const calls: RdsCall[] = [];
  const failures = { count: 0, code: '' };

  function checkAuthorization(req: IncomingMessage): void {
    const scope = credentialScopeOf(req);
    if (scope === null) throw new RdsError(403, 'MissingAuthenticationToken', 'Missing Authentication Token');
    if (!accessKeyIds.has(scope.accessKeyId)) throw new RdsError(403, 'InvalidClientTokenId', 'The security token included in the request is invalid.');
    if (scope.service !== 'rds' || scope.region !== region) {
      throw new RdsError(403, 'SignatureDoesNotMatch', `Credential should be scoped to a valid region and to service 'rds'.`);
    }
  }

  function clusterArn(id: string): string {
    return `arn:aws:rds:${region}:${ACCOUNT}:cluster:${id}`;
  }

  function instanceXml(instance: StoredInstance): string {
    const { spec } = instance;
    const cluster = spec.clusterId !== undefined ? clusters.get(spec.clusterId) : undefined;
    const engine = spec.engine ?? cluster?.engine ?? 'postgres';
    return (
      '<DBInstance>' +
      element('DBInstanceIdentifier', spec.id) +
      element('DBInstanceClass', 'db.r6g.large') +
      element('Engine', engine) +
      element('DBInstanceStatus', instance.status) +
      `<Endpoint>${element('Address', spec.host)}${element('Port', spec.port)}${element('HostedZoneId', 'Z2R2ITUGPM61AM')}</Endpoint>` +
      element('InstanceCreateTime', instance.created.toISOString()) +
      element('AvailabilityZone', `${region}a`) +
      element('MultiAZ', false) +
      element('PubliclyAccessible', false) +
      element('StorageEncrypted', true) +
      element('DbiResourceId', instance.resourceId) +
      element('DBClusterIdentifier', spec.clusterId) +
      element('DBInstanceArn', `arn:aws:rds:${region}:${ACCOUNT}:db:${spec.id}`) +
      element('DbInstancePort', 0) +
      element('IAMDatabaseAuthenticationEnabled', false) +
      element('PromotionTier', 1) +
      '</DBInstance>'
    );
  }

  function clusterXml(cluster: StoredCluster): string {
    const members = cluster.members
      .map(
        (id) =>
          '<DBClusterMember>' +
          element('DBInstanceIdentifier', id) +
          element('IsClusterWriter', cluster.writer === id) +
          element('DBClusterParameterGroupStatus', 'in-sync') +
          element('PromotionTier', 1) +
          '</DBClusterMember>',
      )
      .join('');
    const writer = cluster.writer !== undefined ? instances.get(cluster.writer) : undefined;
    return (
      '<DBCluster>' +
      element('DBClusterIdentifier', cluster.id) +
      element('Status', 'available') +
      element('Engine', cluster.engine) +
      element('Endpoint', `${cluster.id}.cluster-abcdefghijkl.${region}.rds.amazonaws.com`) +
      element('ReaderEndpoint', `${cluster.id}.cluster-ro-abcdefghijkl.${region}.rds.amazonaws.com`) +
      element('Port', writer?.spec.port ?? 5432) +
      element('MultiAZ', cluster.members.length > 1) +
      element('ClusterCreateTime', cluster.created.toISOString()) +
      `<DBClusterMembers>${members}</DBClusterMembers>` +
      element('DBClusterArn', clusterArn(cluster.id)) +
      element('StorageEncrypted', true) +
      '</DBCluster>'
    );
  }

  /** MaxRecords (20–100, default 100) and Marker (an offset here; opaque to clients). */
  function page<T>(items: T[], params: ReadonlyMap<string, string>): { items: T[]; marker: string | undefined } {
    const maxText = params.get('MaxRecords');
    const max = maxText === undefined ? 100 : Number(maxText);
    if (!Number.isInteger(max) || max < 20 || max > 100) {
      throw new RdsError(400, 'InvalidParameterValue', `Invalid value ${maxText ?? ''} for MaxRecords. Must be between 20 and 100`);
    }
    const markerText = params.get('Marker');
    const start = markerText === undefined ? 0 : Number(Buffer.from(markerText, 'base64').toString('utf8'));
    if (!Number.isInteger(start) || start < 0) throw new RdsError(400, 'InvalidParameterValue', 'Invalid Marker');
    const end = start + max;
    return { items: items.slice(start, end), marker: end < items.length ? Buffer.from(String(end)).toString('base64') : undefined };
  }

  function describeDBClusters(params: ReadonlyMap<string, string>): string {
    const id = params.get('DBClusterIdentifier');
    let selected: StoredCluster[];
    if (id !== undefined) {
      const cluster = clusters.get(id) ?? [...clusters.values()].find((c) => clusterArn(c.id) === id);
      if (cluster === undefined) throw new RdsError(404, 'DBClusterNotFoundFault', `DBCluster ${id} not found.`);
      selected = [cluster];
    } else {
      selected = [...clusters.values()];
    }
    const { items, marker } = page(selected, params);
    return `<DBClusters>${items.map(clusterXml).join('')}</DBClusters>${element('Marker', marker)}`;
  }

  function describeDBInstances(params: ReadonlyMap<string, string>): string {
    const id = params.get('DBInstanceIdentifier');
    let selected = [...instances.values()];
    if (id !== undefined) {
      const instance = instances.get(id);
      if (instance === undefined) throw new RdsError(404, 'DBInstanceNotFound', `DBInstance ${id} not found.`);
      selected = [instance];
    }
    for (const [name, values] of parseFilters(params)) {
      if (name === 'db-instance-id') selected = selected.filter((i) => values.includes(i.spec.id) || values.includes(`arn:aws:rds:${region}:${ACCOUNT}:db:${i.spec.id}`));
      else if (name === 'db-cluster-id') selected = selected.filter((i) => i.spec.clusterId !== undefined && (values.includes(i.spec.clusterId) || values.includes(clusterArn(i.spec.clusterId))));
      else if (name === 'engine') selected = selected.filter((i) => values.includes(i.spec.engine ?? clusters.get(i.spec.clusterId ?? '')?.engine ?? 'postgres'));
      else throw new RdsError(400, 'InvalidParameterValue', `Unrecognized filter name: ${name}.`);
    }
    const { items, marker } = page(selected, params);
    return `<DBInstances>${items.map(instanceXml).join('')}</DBInstances>${element('Marker', marker)}`;
  }

  function send(res: ServerResponse, status: number, xml: string): void {
    res.writeHead(status, { 'content-type': 'text/xml', 'content-length': Buffer.byteLength(xml), 'x-amzn-requestid': randomUUID() });
    res.end(xml);
  }

  function handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    let params = new Map<string, string>();
    let action: string | undefined;
    try {
      if (req.method !== 'POST') throw new RdsError(405, 'InvalidAction', 'Only POST is supported by this endpoint');
      if (!String(req.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
        throw new RdsError(400, 'MalformedQueryString', 'Content-Type must be application/x-www-form-urlencoded');
      }
      params = parseForm(body);
      action = params.get('Action');
      checkAuthorization(req);
      if (params.get('Version') !== API_VERSION) {
        throw new RdsError(400, 'InvalidAction', `Could not find operation ${action ?? ''} for version ${params.get('Version') ?? 'NO_VERSION_SPECIFIED'}`);
      }
      if (failures.count > 0) {
        failures.count--;
        throw failures.code === 'Throttling'
          ? new RdsError(400, 'Throttling', 'Rate exceeded')
          : new RdsError(500, 'InternalFailure', 'An internal error has occurred. Please try your query again at a later time.', 'Receiver');
      }
      let result: string;
      if (action === 'DescribeDBClusters') result = describeDBClusters(params);
      else if (action === 'DescribeDBInstances') result = describeDBInstances(params);
      else throw new RdsError(400, 'InvalidAction', `Could not find operation ${action ?? ''} for version ${API_VERSION}`);
      calls.push({ action, params, status: 200, code: undefined });
      send(
        res,
        200,
        `<${action}Response xmlns="${RDS_NS}">\n  <${action}Result>${result}</${action}Result>\n` +
          `  <ResponseMetadata>\n    <RequestId>${randomUUID()}</RequestId>\n  </ResponseMetadata>\n</${action}Response>\n`,
      );
    } catch (error) {
      const e = error instanceof RdsError ? error : new RdsError(500, 'InternalFailure', error instanceof Error ? error.message : String(error), 'Receiver');
      calls.push({ action, params, status: e.status, code: e.code });
      send(
        res,
        e.status,
        `<ErrorResponse xmlns="${RDS_NS}">\n  <Error>\n    <Type>${e.type}</Type>\n    <Code>${e.code}</Code>\n    <Message>${xmlEscape(e.message)}</Message>\n` +
          `  </Error>\n  <RequestId>${randomUUID()}</RequestId>\n</ErrorResponse>\n`,
      );
    }
  }

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  function detach(id: string): void {
    for (const cluster of clusters.values()) {
      const index = cluster.members.indexOf(id);
      if (index >= 0) cluster.members.splice(index, 1);
      if (cluster.writer === id) cluster.writer = undefined;
    }
  }

  return {
    url: `http://127.0.0.1:${port}`,
    region,
    calls,
    putCluster(id, engine) {
      if (!clusters.has(id)) clusters.set(id, { id, engine, created: new Date(), members: [], writer: undefined });
    },
    putInstance(spec) {
      const existing = instances.get(spec.id);
      detach(spec.id);
      instances.set(spec.id, {
        spec,
        status: spec.status ?? 'available',
        created: existing?.created ?? new Date(),
        resourceId: existing?.resourceId ?? `db-${randomUUID().replace(/-/g, '').slice(0, 26).toUpperCase()}`,
      });
      if (spec.clusterId !== undefined) {
        const cluster = clusters.get(spec.clusterId);
        if (cluster === undefined) throw new Error(`no cluster ${spec.clusterId}`);
        cluster.members.push(spec.id);
        if (spec.isClusterWriter === true) cluster.writer = spec.id;
      }
    },
    removeInstance(id) {
      detach(id);
      instances.delete(id);
    },
    setStatus(id, status) {
      const instance = instances.get(id);
      if (instance === undefined) throw new Error(`no instance ${id}`);
      instance.status = status;
    },
    setClusterWriter(clusterId, instanceId) {
      const cluster = clusters.get(clusterId);
      if (cluster === undefined || !cluster.members.includes(instanceId)) throw new Error(`${instanceId} is not a member of ${clusterId}`);
      cluster.writer = instanceId;
    },
    failNext(count, code) {
      failures.count = count;
      failures.code = code;
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
