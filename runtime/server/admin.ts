/**
 * The admin HTTP port: health checks for the NLB and ECS, Prometheus metrics, and a status
 * document shaped like `aws rds describe-db-proxy-targets` for people debugging a proxy.
 *
 * - GET /healthz  liveness: 200 "ok" as long as the process serves HTTP. It deliberately
 *                 ignores the database: a failover must not make the NLB drain every task.
 * - GET /readyz   200 when the client listener is up and a writer target is AVAILABLE, else 503.
 * - GET /metrics  Prometheus text (see runtime/metrics/prometheus.ts).
 * - GET /status   JSON: targets with role and TargetHealth, pools per (user, database), clients.
 *
 * It is a separate listener from the database port so health checks and scrapes never queue
 * behind client traffic, and it reads state only through AdminStatusProvider.
 */
import { IncomingMessage, Server, ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { TargetHealthState, TargetRole } from '../pool/target-group';

export type AdminTargetRole = TargetRole;
export type AdminTargetHealthState = TargetHealthState;

export interface AdminTargetStatus {
  readonly host: string;
  readonly port: number;
  readonly role: AdminTargetRole;
  readonly state: AdminTargetHealthState;
  /** As the RDS API's TargetHealth.Reason (UNREACHABLE, CONNECTION_FAILED, AUTH_FAILURE, ...). */
  readonly reason?: string;
  readonly description?: string;
}

export interface AdminPoolStatus {
  readonly user: string;
  readonly database: string;
  readonly idle: number;
  /** Lent to clients, pinned ones excluded. */
  readonly borrowed: number;
  readonly pinned: number;
  /** Being reset or opened: counted in the pool size but neither idle nor lent. */
  readonly other?: number;
  /** Clients waiting to borrow. */
  readonly waiting: number;
}

export interface AdminClientCounts {
  readonly tls: number;
  readonly noTls: number;
}

/** What the proxy must expose to the admin server. Every method is called per request only. */
export interface AdminStatusProvider {
  /** True once the client listener is bound and until shutdown starts draining. */
  isListening(): boolean;
  targets(): readonly AdminTargetStatus[];
  pools(): readonly AdminPoolStatus[];
  clients(): AdminClientCounts;
  /** The pool ceiling (MaxDatabaseConnectionsAllowed). */
  maxDatabaseConnections?(): number;
  /** PostgreSQL's statement-name registry, a bounded proxy-wide cache. */
  statementCache?(): { entries: number; textBytes: number } | undefined;
}

export interface PrometheusSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export interface AdminServerOptions {
  /** @default "0.0.0.0" */
  host?: string;
  /** 0 picks a free port (tests). @default 8080 */
  port?: number;
  proxyName: string;
  engineFamily?: string;
  provider: AdminStatusProvider;
  /** Serves /metrics when given; 404 otherwise. */
  prometheus?: PrometheusSource;
  log?: { error(fields: object, message: string): void };
}

export interface AdminServer {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** The /status document. PascalCase like the RDS API it imitates. */
export interface AdminStatusDocument {
  DBProxyName: string;
  EngineFamily?: string;
  Status: 'available' | 'unavailable';
  Targets: {
    Endpoint: string;
    Port: number;
    Type: 'RDS_INSTANCE';
    Role: AdminTargetRole;
    TargetHealth: { State: AdminTargetHealthState; Reason?: string; Description?: string };
  }[];
  Pools: { User: string; Database: string; Idle: number; Borrowed: number; Pinned: number; Other: number; Waiting: number; Size: number }[];
  Clients: { Total: number; TLS: number; NoTLS: number };
  MaxDatabaseConnectionsAllowed?: number;
  /** The proxy process's memory, to tell a leak (heap or buffers growing) from the allocator keeping freed pages (RSS only). */
  Memory: { RssBytes: number; HeapUsedBytes: number; HeapTotalBytes: number; ExternalBytes: number; ArrayBuffersBytes: number };
  /**
   * PostgreSQL: the proxy-wide cache of statement texts → server names (at most 100,000 texts and
   * 16 MiB of text), so that live memory held by it is told apart from a leak.
   */
  StatementCache?: { Entries: number; TextBytes: number };
}

export function writerAvailable(targets: readonly AdminTargetStatus[]): boolean {
  return targets.some((t) => t.role === 'READ_WRITE' && t.state === 'AVAILABLE');
}

function memoryDocument(): AdminStatusDocument['Memory'] {
  const usage = process.memoryUsage();
  return { RssBytes: usage.rss, HeapUsedBytes: usage.heapUsed, HeapTotalBytes: usage.heapTotal, ExternalBytes: usage.external, ArrayBuffersBytes: usage.arrayBuffers };
}

export function buildStatusDocument(options: Pick<AdminServerOptions, 'proxyName' | 'engineFamily' | 'provider'>): AdminStatusDocument {
  const { provider } = options;
  const targets = provider.targets();
  const clients = provider.clients();
  const document: AdminStatusDocument = {
    DBProxyName: options.proxyName,
    ...(options.engineFamily !== undefined ? { EngineFamily: options.engineFamily } : {}),
    Status: writerAvailable(targets) ? 'available' : 'unavailable',
    Targets: targets.map((t) => ({
      Endpoint: t.host,
      Port: t.port,
      Type: 'RDS_INSTANCE' as const,
      Role: t.role,
      TargetHealth: {
        State: t.state,
        ...(t.reason !== undefined ? { Reason: t.reason } : {}),
        ...(t.description !== undefined ? { Description: t.description } : {}),
      },
    })),
    Pools: provider.pools().map((p) => {
      const other = p.other ?? 0;
      return {
        User: p.user,
        Database: p.database,
        Idle: p.idle,
        Borrowed: p.borrowed,
        Pinned: p.pinned,
        Other: other,
        Waiting: p.waiting,
        Size: p.idle + p.borrowed + p.pinned + other,
      };
    }),
    Clients: { Total: clients.tls + clients.noTls, TLS: clients.tls, NoTLS: clients.noTls },
    Memory: memoryDocument(),
  };
  if (provider.maxDatabaseConnections) document.MaxDatabaseConnectionsAllowed = provider.maxDatabaseConnections();
  const statementCache = provider.statementCache?.();
  if (statementCache !== undefined) document.StatementCache = { Entries: statementCache.entries, TextBytes: statementCache.textBytes };
  return document;
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const server: Server = createServer((req, res) => {
    handle(options, req, res).catch((error: unknown) => {
      // A provider bug must answer 500, not kill the process or leave the check hanging.
      options.log?.error({ event: 'admin-error', path: req.url, error: error instanceof Error ? error.message : String(error) }, 'admin request failed');
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: 'internal error' }));
      else res.destroy();
    });
  });
  // Health checks are tiny; a stuck client must not hold sockets forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host ?? '0.0.0.0', port: options.port ?? 8080 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    host: address.address,
    port: address.port,
    url: `http://${urlHost === '0.0.0.0' ? '127.0.0.1' : urlHost}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function handle(options: AdminServerOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://admin').pathname;
  const known = path === '/healthz' || path === '/readyz' || path === '/metrics' || path === '/status';
  if (!known) {
    send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    return;
  }
  switch (path) {
    case '/healthz':
      send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
      return;
    case '/readyz': {
      const listening = options.provider.isListening();
      const writer = writerAvailable(options.provider.targets());
      const ready = listening && writer;
      const body = ready ? 'ready\n' : `not ready: ${!listening ? 'client listener is not accepting' : 'no writer target is available'}\n`;
      send(res, ready ? 200 : 503, 'text/plain; charset=utf-8', body);
      return;
    }
    case '/metrics': {
      if (!options.prometheus) {
        send(res, 404, 'text/plain; charset=utf-8', 'metrics are disabled\n');
        return;
      }
      const text = await options.prometheus.metrics();
      send(res, 200, options.prometheus.contentType, text);
      return;
    }
    case '/status':
      send(res, 200, 'application/json', `${JSON.stringify(buildStatusDocument(options), null, 2)}\n`);
      return;
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    // Status and health change by the second; no cache may serve a stale answer.
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
