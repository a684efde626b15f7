/**
 * The proxy process: one listener, one engine, one scheduler for all periodic work
 * (borrow timeouts, idle trimming, idle and login timeouts, shutdown draining).
 */
import { AddressInfo, Server, Socket, createServer } from 'node:net';
import type { Logger } from 'pino';
import { TidepoolConfig, defaultPortFor } from '../config/schema';
import { ProxyError } from '../errors';
import { StaticCredentialSource, loadFileCredentials } from './credentials';
import type { ClientHandle, Engine, EngineStats } from './engine';
import { MysqlEngine } from './mysql-engine';
import { PgEngine } from './pg-engine';
import { loadTlsMaterial, secureContextFor } from './tls';

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
  const credentials: StaticCredentialSource = loadFileCredentials(config.engineFamily, config.auth, options.baseDir);
  const tlsMaterial = await loadTlsMaterial(config.tls, options.baseDir, config.proxyName);
  if (tlsMaterial.selfSigned) log.info({ event: 'tls-self-signed' }, 'no certificate configured: using a self-signed one');
  const secureContext = secureContextFor(tlsMaterial);
  const probeCredential = credentials.all()[0];
  if (!probeCredential) throw new ProxyError('INTERNAL', 'no credentials loaded');
  const engine: Engine =
    config.engineFamily === 'MYSQL'
      ? new MysqlEngine(config, config.targets[0]!, credentials, secureContext, log)
      : new PgEngine(config, credentials, probeCredential, secureContext, log);
  engine.start?.();
  const clients = new Set<ClientHandle>();
  let draining = false;

  const server: Server = createServer({ noDelay: true, pauseOnConnect: true }, (socket: Socket) => {
    if (draining) {
      socket.destroy();
      return;
    }
    if (!engine.takesPausedSockets) socket.resume();
    const client = engine.acceptClient(socket, (closed) => clients.delete(closed));
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
      log.info({ event: 'stopped' }, 'Tidepool stopped');
    },
  };
}
