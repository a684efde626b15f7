import { targetDimensionValue } from '../metrics/definitions';
import { createPrometheusExporter } from '../metrics/prometheus';
import { ProxyMetrics } from '../metrics/proxy-metrics';
import { AdminPoolStatus, AdminServer, AdminStatusProvider, AdminTargetStatus, startAdminServer } from './admin';

/** A provider the test mutates, the way the engine's state changes during a failover. */
class FakeProxyState implements AdminStatusProvider {
  listening = true;
  targetList: AdminTargetStatus[] = [
    { host: 'db-a', port: 5432, role: 'READ_WRITE', state: 'AVAILABLE' },
    { host: 'db-b', port: 5432, role: 'READ_ONLY', state: 'AVAILABLE' },
  ];
  poolList: AdminPoolStatus[] = [{ user: 'app', database: 'orders', idle: 2, borrowed: 3, pinned: 1, other: 1, waiting: 4 }];
  clientCounts = { tls: 3, noTls: 7 };
  failWith: Error | null = null;

  isListening(): boolean {
    return this.listening;
  }
  targets(): readonly AdminTargetStatus[] {
    if (this.failWith) throw this.failWith;
    return this.targetList;
  }
  pools(): readonly AdminPoolStatus[] {
    return this.poolList;
  }
  clients() {
    return this.clientCounts;
  }
  maxDatabaseConnections(): number {
    return 90;
  }
}

let server: AdminServer;
let state: FakeProxyState;
let metrics: ProxyMetrics;

beforeEach(async () => {
  state = new FakeProxyState();
  metrics = new ProxyMetrics({ proxyName: 'orders' });
  server = await startAdminServer({
    host: '127.0.0.1',
    port: 0,
    proxyName: 'orders',
    engineFamily: 'POSTGRESQL',
    provider: state,
    prometheus: createPrometheusExporter(metrics),
  });
});

afterEach(async () => {
  await server.close();
});

const get = (path: string, init?: RequestInit) => fetch(`${server.url}${path}`, init);

describe('admin server', () => {
  it('/healthz answers 200 "ok" even when no writer is available (liveness is not readiness)', async () => {
    state.targetList = state.targetList.map((t) => ({ ...t, state: 'UNAVAILABLE' as const }));
    const response = await get('/healthz');
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('ok\n');
    expect(response.headers.get('cache-control')).toBe('no-store');
  });

  it('/readyz is 200 with a listener and an available writer, 503 otherwise', async () => {
    expect((await get('/readyz')).status).toBe(200);

    state.targetList = [{ host: 'db-a', port: 5432, role: 'UNKNOWN', state: 'UNAVAILABLE', reason: 'UNREACHABLE' }];
    const noWriter = await get('/readyz');
    expect(noWriter.status).toBe(503);
    expect(await noWriter.text()).toMatch(/no writer/);

    state.targetList = [{ host: 'db-b', port: 5432, role: 'READ_WRITE', state: 'AVAILABLE' }];
    state.listening = false;
    const draining = await get('/readyz');
    expect(draining.status).toBe(503);
    expect(await draining.text()).toMatch(/listener/);
  });

  it('/metrics serves the Prometheus text of this proxy', async () => {
    metrics.clientConnectionOpened(true);
    const response = await get('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    expect(text).toMatch(/^tidepool_client_connections_tls\{proxy_name="orders"\} 1$/m);
  });

  it('/status reports targets like describe-db-proxy-targets, pools and clients', async () => {
    const response = await get('/status');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.json()).toEqual({
      DBProxyName: 'orders',
      EngineFamily: 'POSTGRESQL',
      Status: 'available',
      Targets: [
        { Endpoint: 'db-a', Port: 5432, Type: 'RDS_INSTANCE', Role: 'READ_WRITE', TargetHealth: { State: 'AVAILABLE' } },
        { Endpoint: 'db-b', Port: 5432, Type: 'RDS_INSTANCE', Role: 'READ_ONLY', TargetHealth: { State: 'AVAILABLE' } },
      ],
      Pools: [{ User: 'app', Database: 'orders', Idle: 2, Borrowed: 3, Pinned: 1, Other: 1, Waiting: 4, Size: 7 }],
      Clients: { Total: 10, TLS: 3, NoTLS: 7 },
      MaxDatabaseConnectionsAllowed: 90,
      Memory: {
        RssBytes: expect.any(Number),
        HeapUsedBytes: expect.any(Number),
        HeapTotalBytes: expect.any(Number),
        ExternalBytes: expect.any(Number),
        ArrayBuffersBytes: expect.any(Number),
      },
    });
    const { Memory } = (await (await get('/status')).json()) as { Memory: Record<string, number> };
    expect(Memory.RssBytes).toBeGreaterThan(Memory.HeapUsedBytes!);
    expect(Memory.HeapUsedBytes).toBeGreaterThan(1 << 20);
  });

  it('/status reflects a failover as it happens', async () => {
    state.targetList = [
      { host: 'db-a', port: 5432, role: 'UNKNOWN', state: 'UNAVAILABLE', reason: 'CONNECTION_FAILED', description: 'connect ECONNREFUSED' },
      { host: 'db-b', port: 5432, role: 'READ_ONLY', state: 'AVAILABLE' },
    ];
    const during = (await (await get('/status')).json()) as { Status: string; Targets: { Role: string; TargetHealth: object }[] };
    expect(during.Status).toBe('unavailable');
    expect(during.Targets[0]!.TargetHealth).toEqual({ State: 'UNAVAILABLE', Reason: 'CONNECTION_FAILED', Description: 'connect ECONNREFUSED' });

    state.targetList = [
      { host: 'db-a', port: 5432, role: 'UNKNOWN', state: 'UNAVAILABLE', reason: 'CONNECTION_FAILED' },
      { host: 'db-b', port: 5432, role: 'READ_WRITE', state: 'AVAILABLE' },
    ];
    const after = (await (await get('/status')).json()) as { Status: string; Targets: { Endpoint: string; Role: string }[] };
    expect(after.Status).toBe('available');
    expect(after.Targets.find((t) => t.Role === 'READ_WRITE')!.Endpoint).toBe('db-b');
  });

  it('answers 404 for unknown paths and 405 for other methods, and HEAD without a body', async () => {
    expect((await get('/nope')).status).toBe(404);
    const post = await get('/status', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    const head = await get('/healthz', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    // Query strings do not change the route (load balancers sometimes add them).
    expect((await get('/healthz?from=nlb')).status).toBe(200);
  });

  it('turns a provider failure into a 500 and keeps serving', async () => {
    state.failWith = new Error('engine state unavailable');
    expect((await get('/status')).status).toBe(500);
    expect((await get('/readyz')).status).toBe(500);
    expect((await get('/healthz')).status).toBe(200);
    state.failWith = null;
    expect((await get('/status')).status).toBe(200);
  });

  it('serves 404 on /metrics when metrics are disabled', async () => {
    const bare = await startAdminServer({ host: '127.0.0.1', port: 0, proxyName: 'orders', provider: state });
    try {
      expect((await fetch(`${bare.url}/metrics`)).status).toBe(404);
      expect((await fetch(`${bare.url}/healthz`)).status).toBe(200);
    } finally {
      await bare.close();
    }
  });

  it('rejects a port that is already taken instead of running without an admin port', async () => {
    await expect(startAdminServer({ host: '127.0.0.1', port: server.port, proxyName: 'orders', provider: state })).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('targetDimensionValue', () => {
  it('names a target like RDS Proxy names its instances, with host and port standing in for the identifier', () => {
    expect(targetDimensionValue({ host: 'db-a', port: 5432 })).toBe('db:db-a:5432');
  });
});
