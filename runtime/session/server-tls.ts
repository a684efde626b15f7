/**
 * TLS from the proxy to a database, shared by both engines' server connections: what the
 * server layer decided for one connection (the config's targetTls), and the upgrade of an
 * open socket once the protocol's own negotiation (PostgreSQL SSLRequest, MySQL SSL request
 * packet) said the server is ready for a TLS handshake.
 */
import type { Socket } from 'node:net';
import { ConnectionOptions, TLSSocket, connect as tlsConnect } from 'node:tls';
import { ProxyError } from '../errors';

export interface ServerTlsRequest {
  /** Refuse a server that does not offer TLS (REQUIRED mode, or a CA to verify against); otherwise fall back to plaintext. */
  readonly required: boolean;
  /** Handed to tls.connect: the CA bundle, whether to verify, the name to check. */
  readonly options: Omit<ConnectionOptions, 'socket' | 'host' | 'port'>;
}

/**
 * Why a server connection could not be made secure. Never transient: a wrong CA or a server
 * without TLS does not fix itself within a borrow timeout, so the client hears at once.
 */
export class ServerTlsError extends ProxyError {
  constructor(message: string) {
    super('SERVER_CONNECT_FAILED', message, { sqlState: '08001' });
    this.name = 'ServerTlsError';
  }
}

export function serverOffersNoTlsError(): ServerTlsError {
  return new ServerTlsError('TLS to the database is required but the server does not offer it');
}

/** Runs the TLS handshake over `socket`; resolves once the certificate was checked as `request` says. */
export function upgradeToTls(socket: Socket, request: ServerTlsRequest): Promise<TLSSocket> {
  return new Promise<TLSSocket>((resolve, reject) => {
    const secure = tlsConnect({ ...request.options, socket });
    const onError = (error: Error): void => {
      secure.destroy();
      reject(new ServerTlsError(`TLS handshake with the database failed: ${error.message}`));
    };
    secure.once('error', onError);
    secure.once('secureConnect', () => {
      secure.off('error', onError);
      resolve(secure);
    });
  });
}
