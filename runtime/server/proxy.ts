/**
 * The proxy process: one listener, one engine, one scheduler for all periodic work
 * (borrow timeouts, idle trimming, idle and login timeouts, shutdown draining).
 */
import { AddressInfo, Server, Socket, createServer } from 'node:net';
import type { Logger } from 'pino';
import { TidepoolConfig, defaultPortFor } from '../config/schema';
import { ProxyError } from '../errors';
import { createMetricsRuntime, targetDimensionValue, type TargetGauges } from '../metrics';
import { CombinedCredentialSource, startSecretsManagerSource } from '../secrets/secrets-manager';
import { createIamTokenVerifier } from '../secrets/iam-token';
import type { Credential } from '../session/types';
import { startAdminServer } from './admin';
import { StaticCredentialSource, loadFileCredentials } from './credentials';
import type { ClientHandle, Engine, EngineStats } from './engine';
import { MysqlEngine } from './mysql-engine';
import { PgEngine } from './pg-engine';
import { TargetTlsPolicy } from './target-tls';
import { startTlsSource } from './tls';

const SCHEDULER_TICK_MS = 250;

export interface ProxyOptions {
  config: TidepoolConfig;
  log: Logger;
  /** Folder relative secret and certificate paths resolve against. */
  baseDir: string;
}

export interface RunningProxy {
  readonly host: string;
  readonly port: number;
  readonly clientCount: number;
  stats(): EngineStats;
  /** Stops accepting, lets open transactions finish (up to limits.shutdownTimeout), then closes everything. */
  shutdown(): Promise<void>;
}

export async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const { config, log } = options;
  const fileCredentials: StaticCredentialSource = loadFileCredentials(config.engineFamily, config.auth, options.baseDir);
  const secretsManager = await startSecretsManagerSource({
    engine: config.engineFamily,
    auth: config.auth,
    aws: { region: config.aws.region, secretsManagerEndpoint: config.aws.secretsManagerEndpoint },
    refreshIntervalSeconds: config.secretsRefreshInterval,
    logger: log,
  });
  const credentials = new CombinedCredentialSource(secretsManager ? [fileCredentials, secretsManager] : [fileCredentials]);
  // The writer probes log in with the first secret that can be read, as RDS Proxy uses a secret for its health checks.
  const probeCredential = (): Credential | undefined =>
    fileCredentials.all()[0] ??
    secretsManager
      ?.status()
      .map((status) => (status.username === undefined ? undefined : credentials.lookup(status.username)))
      .find((credential) => credential !== undefined);
  const tls = await startTlsSource(config, options.baseDir, log);
  const iamVerifier = config.auth.some((entry) => entry.iamAuth === 'REQUIRED')
    ? createIamTokenVerifier({
        proxyName: config.proxyName,
        ...(config.aws.region !== undefined ? { region: config.aws.region } : {}),
        ...(config.iam.stsHostAllowList !== undefined ? { stsHostAllowList: config.iam.stsHostAllowList } : {}),
        allowList: config.iam.allowList,
        cacheTtlSeconds: config.iam.cacheTtl,
        rateLimit: { perSecond: config.iam.rateLimit },
      })
    : null;
  const targetTls = new TargetTlsPolicy(config.targetTls, options.baseDir);
  const metricsRuntime = createMetricsRuntime({
    proxyName: config.proxyName,
    metrics: config.metrics,
    aws: { region: config.aws.region, endpoint: config.aws.cloudWatchEndpoint },
    // Read at publish time only, once the engine below exists.
    gauges: { targets: () => engineGauges(engine) },
    log,
  });
  const engine: Engine =
    config.engineFamily === 'MYSQL'
      ? new MysqlEngine(config, credentials, probeCredential, tls, log, metricsRuntime.metrics, iamVerifier, targetTls)
      : new PgEngine(config, credentials, probeCredential, tls, log, metricsRuntime.metrics, iamVerifier, targetTls);
  engine.start?.();
  metricsRuntime.start();
  const clients = new Set<ClientHandle>();
  let draining = false;
  const admission = new ClientAdmission(config.limits.maxClientConnections, config.limits.clientConnectionsPerSecond);

  const server: Server = createServer({ noDelay: true, pauseOnConnect: true }, (socket: Socket) => {
    if (draining) {
      socket.destroy();
      return;
    }
    const refusal = admission.admit(clients.size);
    if (refusal !== null) {
      log.warn({ event: 'client-refused', reason: refusal.message }, refusal.message);
      if (engine.refuseClient) engine.refuseClient(socket, refusal);
      else socket.destroy();
      return;
    }
    if (!engine.takesPausedSockets) socket.resume();
    metricsRuntime.metrics.clientConnectionOpened(false);
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const client = engine.acceptClient(socket, (closed) => {
      clients.delete(closed);
      metricsRuntime.metrics.clientConnectionClosed(closed.isTls ?? false);
      log.info({ event: 'connection-closed', client: closed.id, remote, tls: closed.isTls ?? false, durationMs: Date.now() - closed.connectedAt }, 'client connection closed');
    });
    log.info({ event: 'connection-opened', client: client.id, remote }, 'client connection opened');
    clients.add(client);
  });
  server.on('error', (error) => log.error({ event: 'listener-error', error: error.message }, 'listener error'));

  const idleTimeoutMs = config.idleClientTimeout * 1000;
  const loginTimeoutMs = config.limits.loginTimeout * 1000;
  const scheduler = setInterval(() => {
    engine.sweep();
    const now = Date.now();
    for (const client of clients) {
      if (!client.isReady) {
        if (now - client.connectedAt > loginTimeoutMs) {
          client.terminate(new ProxyError('LOGIN_TIMEOUT', 'canceling authentication due to timeout'));
        }
      } else if (now - client.lastActivity > idleTimeoutMs) {
        client.terminate(new ProxyError('IDLE_TIMEOUT', 'terminating connection due to idle-client timeout'));
      } else if (draining && client.isIdle) {
        client.terminate(new ProxyError('SHUTTING_DOWN', 'the proxy is shutting down'));
      }
    }
  }, SCHEDULER_TICK_MS);
  scheduler.unref();

  const listenPort = config.listen.port ?? defaultPortFor(config.engineFamily);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: config.listen.host, port: listenPort, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const admin = await startAdminServer({
    host: config.admin.host,
    port: config.admin.port,
    proxyName: config.proxyName,
    engineFamily: config.engineFamily,
    prometheus: metricsRuntime.prometheus,
    log,
    provider: {
      isListening: () => !draining,
      targets: () =>
        (engine.stats().targets ?? []).map((health) => ({
          host: health.target.host,
          port: health.target.port,
          role: health.role,
          state: health.state,
          ...(health.reason !== undefined ? { reason: health.reason } : {}),
          ...(health.description !== undefined ? { description: health.description } : {}),
        })),
      pools: () =>
        engine.stats().pool.map((group) => ({
          user: group.user,
          database: group.database,
          idle: group.idle,
          // The admin document counts pinned connections separately (Size = Idle + Borrowed + Pinned + Other).
          borrowed: group.lent,
          pinned: group.pinned,
          other: group.resetting + group.opening,
          waiting: group.waiting,
        })),
      clients: () => metricsRuntime.metrics.clientConnections,
      maxDatabaseConnections: () => engine.stats().limits.maxConnections,
      statementCache: () => engine.stats().statementCache,
    },
  });
  log.info({ event: 'admin-listening', host: admin.host, port: admin.port }, `admin endpoint on ${admin.url}`);
  log.info({ event: 'listening', host: address.address, port: address.port, engine: config.engineFamily }, `Tidepool listening on ${address.address}:${address.port}`);

  return {
    host: address.address,
    port: address.port,
    get clientCount() {
      return clients.size;
    },
    stats: () => engine.stats(),
    shutdown: async () => {
      if (draining) return;
      draining = true;
      server.close();
      log.info({ event: 'shutdown', clients: clients.size }, 'draining: waiting for open transactions');
      const deadline = Date.now() + config.limits.shutdownTimeout * 1000;
      while (clients.size > 0 && Date.now() < deadline) {
        for (const client of clients) if (client.isIdle) client.terminate(new ProxyError('SHUTTING_DOWN', 'the proxy is shutting down'));
        await new Promise((r) => setTimeout(r, 50));
      }
      for (const client of clients) client.terminate(new ProxyError('SHUTTING_DOWN', 'the proxy is shutting down'));
      engine.close();
      clearInterval(scheduler);
      secretsManager?.stop();
      tls.stop();
      await metricsRuntime.stop();
      await admin.close();
      log.info({ event: 'stopped' }, 'Tidepool stopped');
    },
  };
}

/** What the metrics need from the engine at publish time: every target, the pool's numbers on the writer. */
function engineGauges(engine: Engine): TargetGauges[] {
  const stats = engine.stats();
  let borrowed = 0;
  let pinned = 0;
  for (const group of stats.pool) {
    borrowed += group.lent + group.pinned;
    pinned += group.pinned;
  }
  return (stats.targets ?? []).map((health) => {
    const isWriter = stats.writer !== undefined && stats.writer !== null && stats.writer.host === health.target.host && stats.writer.port === health.target.port;
    return {
      target: targetDimensionValue(health.target),
      role: health.role,
      state: health.state,
      borrowed: isWriter ? borrowed : 0,
      // Lent connections are the ones in a transaction (or a pinned session) by construction.
      inTransaction: isWriter ? borrowed : 0,
      sessionPinned: isWriter ? pinned : 0,
      maxConnectionsAllowed: isWriter ? stats.limits.maxConnections : 0,
    };
  });
}

/**
 * The client connection limits, checked at accept time before any authentication work, with
 * RDS Proxy's messages. The rate limit is a token bucket refilled continuously.
 */
export class ClientAdmission {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly maxClients: number,
    private readonly perSecond: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = perSecond;
    this.refilledAt = now();
  }

  admit(openClients: number): ProxyError | null {
    if (openClients >= this.maxClients) {
      return new ProxyError('CLIENT_LIMIT', `Number simultaneous connections exceeded (${this.maxClients})`);
    }
    if (this.perSecond === 0) return null;
    const now = this.now();
    this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.refilledAt) * this.perSecond) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) return new ProxyError('CLIENT_LIMIT', `Connections rate limit exceeded (${this.perSecond})`);
    this.tokens -= 1;
    return null;
  }
}
