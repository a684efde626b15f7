/**
 * The certificate clients see: from files, or self-signed at start when none is given
 * (clients with sslmode=require accept it; verify-full needs a real one).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SecureContext, createSecureContext } from 'node:tls';
import { GetSecretValueCommand } from '@aws-sdk/client-secrets-manager';
import * as selfsigned from 'selfsigned';
import type { TidepoolConfig, TlsVersion } from '../config/schema';
import { createSecretsManagerClient } from '../secrets/secrets-manager';

export interface TlsMaterial {
  cert: string;
  key: string;
  selfSigned: boolean;
}

export async function loadTlsMaterial(tls: { certFile?: string; keyFile?: string }, baseDir: string, commonName: string): Promise<TlsMaterial> {
  if (tls.certFile !== undefined && tls.keyFile !== undefined) {
    return {
      cert: readFileSync(resolve(baseDir, tls.certFile), 'utf8'),
      key: readFileSync(resolve(baseDir, tls.keyFile), 'utf8'),
      selfSigned: false,
    };
  }
  const generated = await selfsigned.generate([{ name: 'commonName', value: commonName }], {
    // P-256: generated in a millisecond at start (RSA-2048 takes far longer on a busy task), and cheaper per handshake.
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
  });
  return { cert: generated.cert, key: generated.private, selfSigned: true };
}

/**
 * OpenSSL 3 refuses TLS 1.0 and 1.1 at its default security level, so opting in to them
 * (tls.minVersion) also lowers the level; with 1.2 and up the defaults stay.
 */
export function secureContextFor(material: TlsMaterial, minVersion: TlsVersion = 'TLSv1.2'): SecureContext {
  const legacy = minVersion === 'TLSv1' || minVersion === 'TLSv1.1';
  return createSecureContext({ cert: material.cert, key: material.key, minVersion, ...(legacy ? { ciphers: 'DEFAULT@SECLEVEL=0' } : {}) });
}

/** The certificate clients get right now; a rotated secret swaps it for new connections. */
export interface TlsSource {
  readonly secureContext: SecureContext;
  stop(): void;
}

interface TlsLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/**
 * Loads the certificate from files, from a Secrets Manager secret (SecretString
 * `{"certificate","privateKey"}`, re-read every secretsRefreshInterval), or self-signs one.
 */
export async function startTlsSource(config: TidepoolConfig, baseDir: string, log: TlsLog): Promise<TlsSource> {
  const secretArn = config.tls.secretArn;
  if (secretArn === undefined) {
    const material = await loadTlsMaterial(config.tls, baseDir, config.proxyName);
    if (material.selfSigned) log.info({ event: 'tls-self-signed' }, 'no certificate configured: using a self-signed one');
    const secureContext = secureContextFor(material, config.tls.minVersion);
    return { secureContext, stop: () => undefined };
  }
  const client = createSecretsManagerClient({ region: config.aws.region, secretsManagerEndpoint: config.aws.secretsManagerEndpoint });
  const read = async (): Promise<SecureContext> => {
    const response = await client.send(new GetSecretValueCommand({ SecretId: secretArn }));
    const parsed = JSON.parse(response.SecretString ?? '{}') as { certificate?: unknown; privateKey?: unknown };
    if (typeof parsed.certificate !== 'string' || typeof parsed.privateKey !== 'string') {
      throw new Error('the TLS secret must hold {"certificate": "<PEM>", "privateKey": "<PEM>"}');
    }
    return secureContextFor({ cert: parsed.certificate, key: parsed.privateKey, selfSigned: false }, config.tls.minVersion);
  };
  let current = await read();
  log.info({ event: 'tls-from-secret', secretArn }, 'TLS certificate loaded from Secrets Manager');
  const timer = setInterval(() => {
    read().then(
      (next) => {
        current = next;
      },
      (error: unknown) => log.warn({ event: 'tls-secret-refresh-failed', secretArn, error: error instanceof Error ? error.name : String(error) }, 'could not re-read the TLS secret; keeping the current certificate'),
    );
  }, config.secretsRefreshInterval * 1000);
  timer.unref();
  return {
    get secureContext() {
      return current;
    },
    stop: () => clearInterval(timer),
  };
}
