/**
 * `targetTls`: whether a server connection uses TLS, and how its certificate is checked.
 *
 * - FOLLOW_CLIENT (default): TLS clients get TLS server connections and plaintext clients
 *   plaintext ones (they borrow from separate pools, PoolKey.tls). Without `caFile` a server
 *   that offers no TLS is used in plaintext; with it, TLS is required.
 * - REQUIRED: every pooled server connection uses TLS; a server without TLS is refused.
 * - DISABLED: never.
 *
 * With `caFile` the chain must lead to one of its CAs and, with `verifyHostname`, the
 * certificate must name the target host; without it nothing is verified (libpq's
 * sslmode=require). A failure reaches the client as PostgreSQL SQLSTATE 08001 or MySQL error
 * 2026 (CR_SSL_CONNECTION_ERROR) with the TLS library's reason.
 *
 * Writer probes use TLS whenever the server offers it (unless DISABLED), unverified: see forProbe.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { checkServerIdentity } from 'node:tls';
import type { TidepoolConfig } from '../config/schema';
import type { ServerTlsRequest } from '../session/server-tls';
import type { PoolKey } from '../session/types';

function readCaFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`targetTls.caFile: cannot read ${path}: ${(error as Error).message}`);
  }
}

export class TargetTlsPolicy {
  private readonly ca: string | undefined;

  constructor(
    private readonly settings: TidepoolConfig['targetTls'],
    baseDir: string,
  ) {
    this.ca = settings.caFile === undefined ? undefined : readCaFile(resolve(baseDir, settings.caFile));
  }

  /** Whether TLS and plaintext clients need separate pools. */
  get followsClient(): boolean {
    return this.settings.mode === 'FOLLOW_CLIENT';
  }

  /** TLS for a pooled connection of `key` to `target`; null for plaintext. */
  forPool(key: PoolKey, target: { host: string }): ServerTlsRequest | null {
    switch (this.settings.mode) {
      case 'DISABLED':
        return null;
      case 'REQUIRED':
        return this.request(target, true);
      case 'FOLLOW_CLIENT':
        return key.tls === true ? this.request(target, this.ca !== undefined) : null;
    }
  }

  /**
   * TLS for a writer probe: whenever the server offers it (so a database that insists on TLS
   * can still be probed), falling back to plaintext, and without checking the certificate. A
   * probe only learns whether the target is writable; a wrong certificate is reported where it
   * matters, on the clients' connections, rather than making the target look down.
   */
  forProbe(target: { host: string }): ServerTlsRequest | null {
    if (this.settings.mode === 'DISABLED') return null;
    const servername = isIP(target.host) === 0 ? target.host : undefined;
    return { required: false, options: { rejectUnauthorized: false, ...(servername !== undefined ? { servername } : {}) } };
  }

  private request(target: { host: string }, required: boolean): ServerTlsRequest {
    // SNI takes host names only.
    const servername = isIP(target.host) === 0 ? target.host : undefined;
    if (this.ca === undefined) {
      return { required, options: { rejectUnauthorized: false, ...(servername !== undefined ? { servername } : {}) } };
    }
    const verifyHostname = this.settings.verifyHostname;
    return {
      required,
      options: {
        ca: this.ca,
        rejectUnauthorized: true,
        ...(servername !== undefined ? { servername } : {}),
        // Node checks the name given as servername (or host); an IP target is checked against the certificate's IP SANs.
        checkServerIdentity: (_name, certificate) => (verifyHostname ? checkServerIdentity(target.host, certificate) : undefined),
      },
    };
  }
}
