/**
 * The certificate clients see: from files, or self-signed at start when none is given
 * (clients with sslmode=require accept it; verify-full needs a real one).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SecureContext, createSecureContext } from 'node:tls';
import * as selfsigned from 'selfsigned';

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
    keySize: 2048,
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }],
  });
  return { cert: generated.cert, key: generated.private, selfSigned: true };
}

export function secureContextFor(material: TlsMaterial): SecureContext {
  return createSecureContext({ cert: material.cert, key: material.key, minVersion: 'TLSv1.2' });
}
